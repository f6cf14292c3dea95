/* test_layer_grad: vkd_layer_backward (models/layer.h) on its own, as a target's causal
 * decoder layer, against central finite differences of a plain-C double forward.
 * Odd sizes (hidden 36, 3 query heads over 1 kv head of 12, ffn 52), m = 7 rows at
 * position pos = 4 with 4 earlier K/V rows already in the cache (random), f32 weights
 * (random, one per linear and norm), loss L = sum(R * y) for the layer's output y, so
 * dy = R. Both flavours: Qwen3 (q_norm/k_norm) and Llama (none). Checked:
 *   - the forward's y against the double forward;
 *   - dx (the gradient of the layer's input), every linear's grad_w, every norm weight's
 *     gradient, and the gradients of the earlier cache rows (ws.dk / ws.dv rows [0, pos))
 *     against central differences (worst error relative to the largest gradient). */
#include <string.h>

#include "layer.h"
#include "ref_grad.h"
#include "vkd_test.h"

#define NEW(n) calloc((size_t)(n), sizeof(double))

enum { H = 36, NQ = 3, NKV = 1, D = 12, F = 52, M = 7, POS = 4, Q = NQ * D, KV = NKV * D };
static const double EPS = 1e-6;
static unsigned long long seed = 1234;

typedef struct hl {
    bool qk;
    double *x, *kprev, *vprev;           /* M x H, POS x KV, POS x KV */
    double *w[7], *ln1, *ln2, *qn, *kn;  /* q k v o gate up down */
    float inv[D / 2];
} hl;

static const uint32_t wout[7] = {Q, KV, KV, H, F, F, H}, win[7] = {H, H, H, Q, H, H, F};

/* y: M x H */
static void host_forward(const hl *P, double *y) {
    double *a = NEW(M * H), *q = NEW(M * Q), *qn = NEW(M * Q), *kr = NEW(M * KV),
           *k = NEW((POS + M) * KV), *v = NEW((POS + M) * KV), *o = NEW(M * Q), *t = NEW(M * H),
           *g = NEW(M * F), *u = NEW(M * F), *h = NEW(M * F);
    memcpy(y, P->x, sizeof(double) * M * H);
    memcpy(k, P->kprev, sizeof(double) * POS * KV);
    memcpy(v, P->vprev, sizeof(double) * POS * KV);
    rg_rmsnorm_fwd(a, y, P->ln1, M, H, EPS);
    rg_matmul_fwd(q, a, P->w[0], M, Q, H);
    rg_matmul_fwd(kr, a, P->w[1], M, KV, H);
    rg_matmul_fwd(v + POS * KV, a, P->w[2], M, KV, H);
    if (P->qk) {
        rg_rmsnorm_fwd(qn, q, P->qn, M * NQ, D, EPS);
        rg_rmsnorm_fwd(k + POS * KV, kr, P->kn, M * NKV, D, EPS);
    } else {
        memcpy(qn, q, sizeof(double) * M * Q);
        memcpy(k + POS * KV, kr, sizeof(double) * M * KV);
    }
    rg_rope_fwd(qn, M, NQ, D, POS, P->inv);
    rg_rope_fwd(k + POS * KV, M, NKV, D, POS, P->inv);
    rg_attn at = {M, POS + M, NQ, NKV, D, KV, POS, true, 1 / sqrt((double)D)};
    rg_attention_fwd(o, NULL, qn, k, v, &at);
    rg_matmul_fwd(t, o, P->w[3], M, H, Q);
    for (int i = 0; i < M * H; i++) y[i] += t[i];
    rg_rmsnorm_fwd(a, y, P->ln2, M, H, EPS);
    rg_matmul_fwd(g, a, P->w[4], M, F, H);
    rg_matmul_fwd(u, a, P->w[5], M, F, H);
    rg_swiglu_fwd(h, g, u, (uint64_t)M * F);
    rg_matmul_fwd(t, h, P->w[6], M, H, F);
    for (int i = 0; i < M * H; i++) y[i] += t[i];
    double *all[] = {a, q, qn, kr, k, v, o, t, g, u, h};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static double loss(const hl *P, const double *R) {
    double *y = NEW(M * H), L = 0;
    host_forward(P, y);
    for (int i = 0; i < M * H; i++) L += R[i] * y[i];
    free(y);
    return L;
}

/* worst |gpu - fd| over every entry of p (n entries, gpu the same layout),
 * relative to the largest |fd| */
static double fd_check(const hl *P, const double *R, double *p, size_t n, const float *gpu,
                       double *gmax) {
    double worst = 0, big = 0;
    double *fd = NEW(n);
    for (size_t i = 0; i < n; i++) {
        double x0 = p[i], h = 1e-5 * (1 + fabs(x0));
        p[i] = x0 + h;
        double lp = loss(P, R);
        p[i] = x0 - h;
        double lm = loss(P, R);
        p[i] = x0;
        fd[i] = (lp - lm) / (2 * h);
        big = fmax(big, fabs(fd[i]));
    }
    for (size_t i = 0; i < n; i++) {
        double e = fabs(gpu[i] - fd[i]);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    free(fd);
    *gmax = big;
    return worst / (big > 0 ? big : 1);
}

static vkd_tensor *up(vkd_ctx *ctx, const double *x, uint32_t rows, uint32_t cols, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, rows, cols, name, &t, &err), "%s", err.msg);
    float *f = malloc((size_t)rows * cols * 4);
    for (size_t i = 0; i < (size_t)rows * cols; i++) f[i] = (float)x[i];
    REQUIRE(!vkd_tensor_upload(t, 0, f, (size_t)rows * cols * 4, &err), "%s", err.msg);
    free(f);
    return t;
}

static float *down(const vkd_tensor *t, uint64_t row0, uint64_t rows) {
    vkd_error err = {0};
    size_t n = rows * t->cols;
    float *x = malloc(n * 4);
    REQUIRE(!vkd_tensor_download(t, row0 * t->cols * 4, x, n * 4, &err), "%s", err.msg);
    return x;
}

static double *randn(size_t n, double s) {
    double *x = NEW(n);
    for (size_t i = 0; i < n; i++) x[i] = s * vkd_test_rand_normal(&seed);
    return x;
}

static double run(vkd_ctx *ctx, bool qk) {
    vkd_error err = {0};
    hl P = {.qk = qk};
    P.x = randn(M * H, 1), P.kprev = randn(POS * KV, 1), P.vprev = randn(POS * KV, 1);
    for (int j = 0; j < 7; j++) P.w[j] = randn((size_t)wout[j] * win[j], 1 / sqrt((double)win[j]));
    P.ln1 = randn(H, 0.2), P.ln2 = randn(H, 0.2), P.qn = randn(D, 0.2), P.kn = randn(D, 0.2);
    double *norms[4] = {P.ln1, P.ln2, P.qn, P.kn};
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < (j < 2 ? H : D); i++) norms[j][i] += 1;
    for (int i = 0; i < D / 2; i++) P.inv[i] = powf(10000.0f, -2.0f * i / D);
    double *R = randn(M * H, 1);

    vkd_layer L = {0};
    vkd_linear *lin[7];
    vkd_layer_linears(&L, lin);
    static const char *const wn[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate", "up", "down"};
    for (int j = 0; j < 7; j++) lin[j]->w = up(ctx, P.w[j], wout[j], win[j], wn[j]);
    L.ln1 = up(ctx, P.ln1, 1, H, "ln1"), L.ln2 = up(ctx, P.ln2, 1, H, "ln2");
    L.q_norm = up(ctx, P.qn, 1, D, "q_norm"), L.k_norm = up(ctx, P.kn, 1, D, "k_norm");
    double *kv0 = NEW((POS + M) * KV);
    memcpy(kv0, P.kprev, sizeof(double) * POS * KV);
    L.kc = up(ctx, kv0, POS + M, KV, "kc");
    memcpy(kv0, P.vprev, sizeof(double) * POS * KV);
    L.vc = up(ctx, kv0, POS + M, KV, "vc");
    free(kv0);
    vkd_layer_dims dims = {H, NQ, NKV, D, F, qk};
    REQUIRE(!vkd_layer_weight_grads(ctx, &L, &dims, &err), "%s", err.msg);
    vkd_layer_acts A;
    vkd_layer_grad_ws ws;
    REQUIRE(!vkd_layer_acts_create(ctx, &dims, M, &A, &err), "%s", err.msg);
    REQUIRE(!vkd_layer_grad_ws_create(ctx, &dims, M, POS + M, &ws, &err), "%s", err.msg);
    vkd_tensor *x = up(ctx, P.x, M, H, "x"), *dy = up(ctx, R, M, H, "dy"), *inv;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, D / 2, "inv_freq", &inv, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(inv, 0, P.inv, sizeof P.inv, &err), "%s", err.msg);

    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    float *y = malloc(M * H * 4), *dx = malloc(M * H * 4);
    vkd_layer_step s = {.m = M, .pos = POS, .causal = true, .kc = L.kc, .vc = L.vc, .inv_freq = inv, .eps = EPS};
    vkd_rec_begin(rec);
    vkd_layer_zero_grads(rec, &L, &dims);
    vkd_layer_forward(rec, &L, &dims, x, &A, &s);
    vkd_rec_read(rec, x, 0, y, M * H * 4);
    vkd_layer_backward(rec, &L, &dims, dy, &A, &s, &ws);
    vkd_rec_read(rec, dy, 0, dx, M * H * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);

    double *ref = NEW(M * H), fw = 0, big = 0;
    host_forward(&P, ref);
    for (int i = 0; i < M * H; i++) big = fmax(big, fabs(ref[i]));
    for (int i = 0; i < M * H; i++) {
        double e = fabs(y[i] - ref[i]);
        if (!(e <= fw)) fw = isnan(e) ? INFINITY : e;
    }
    fw /= 1 + big;
    const char *tag = qk ? "qwen3" : "llama";
    fprintf(stderr, "%s layer forward vs double: worst rel err %.3g\n", tag, fw);
    CHECK(fw < 1e-5, "%s forward error %.3g", tag, fw);

    struct chk { const char *name; double *p; size_t n; float *g; } c[16];
    int nc = 0;
    c[nc++] = (struct chk){"dx", P.x, M * H, dx};
    for (int j = 0; j < 7; j++) c[nc++] = (struct chk){wn[j], P.w[j], (size_t)wout[j] * win[j], down(lin[j]->grad_w, 0, wout[j])};
    c[nc++] = (struct chk){"ln1", P.ln1, H, down(L.grad_ln1, 0, 1)};
    c[nc++] = (struct chk){"ln2", P.ln2, H, down(L.grad_ln2, 0, 1)};
    if (qk) {
        c[nc++] = (struct chk){"q_norm", P.qn, D, down(L.grad_q_norm, 0, 1)};
        c[nc++] = (struct chk){"k_norm", P.kn, D, down(L.grad_k_norm, 0, 1)};
    } else {
        CHECK(!L.grad_q_norm && !L.grad_k_norm, "llama layer got q/k_norm gradients");
    }
    c[nc++] = (struct chk){"cache k rows < pos", P.kprev, POS * KV, down(ws.dk, 0, POS)};
    c[nc++] = (struct chk){"cache v rows < pos", P.vprev, POS * KV, down(ws.dv, 0, POS)};
    double worst = 0;
    for (int i = 0; i < nc; i++) {
        double gmax, e = fd_check(&P, R, c[i].p, c[i].n, c[i].g, &gmax);
        fprintf(stderr, "  %s %-20s err %.2g (|grad| up to %.2g)\n", tag, c[i].name, e, gmax);
        CHECK(e < 1e-3, "%s %s: gradient vs finite differences %.3g", tag, c[i].name, e);
        CHECK(gmax > 1e-6, "%s %s: gradients vanish (%.3g)", tag, c[i].name, gmax);
        worst = fmax(worst, e);
        if (c[i].g != dx) free(c[i].g);
    }
    fprintf(stderr, "%s layer backward vs finite differences: worst %.3g\n", tag, worst);

    /* bad input: a forward that kept no activations */
    vkd_layer_acts none = {.a1 = A.a1, .a2 = A.a1, .q = A.q, .k = A.k, .v = A.v, .o = A.o, .g = A.g, .h = A.g};
    vkd_rec_begin(rec);
    CHECK(vkd_layer_backward(rec, &L, &dims, dy, &none, &s, &ws) == VKD_ERR_INVALID,
          "backward without kept activations accepted");
    vkd_rec_submit(rec);

    vkd_rec_destroy(rec);
    vkd_layer_acts_free(&A);
    vkd_layer_grad_ws_free(&ws);
    vkd_layer_free(&L);
    vkd_tensor_destroy(x), vkd_tensor_destroy(dy), vkd_tensor_destroy(inv);
    free(y), free(dx), free(ref), free(R);
    free(P.x), free(P.kprev), free(P.vprev), free(P.ln1), free(P.ln2), free(P.qn), free(P.kn);
    for (int j = 0; j < 7; j++) free(P.w[j]);
    return worst;
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), "%s", err.msg);
    double a = run(ctx, true), b = run(ctx, false);
    fprintf(stderr, "causal layer backward: worst %.3g (qwen3), %.3g (llama)\n", a, b);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_layer_grad");
}
