/* test_dflash_grad: the DFlash draft's training backward (models/dflash_train.h) against
 * central finite differences of a plain-C double forward of the same draft.
 * usage: test_dflash_grad TARGET_DIR DRAFT_DIR (a tiny generated pair with odd sizes, see
 * test_dflash_grad.py). Rank-3 adapters with non-zero A and B on every linear (fc and the
 * seven of each layer); loss L = sum(R * out) over the normed output rows 1..B-1 (R random,
 * row 0 zero), so dout = R. Checked:
 *   - the training forward's out against the double forward (relative error);
 *   - every adapter's grad_a / grad_b against central differences of the double L, on a
 *     spread sample of entries of each matrix (worst error per matrix relative to its
 *     largest sampled gradient);
 *   - the full-weight gradients (vkd_dflash_train_weight_grads, filled by the same backward):
 *     every linear's grad_w (fc and each layer's seven), every norm weight's gradient
 *     (input/post-attention layernorms, q_norm, k_norm, hidden_norm, norm), the same way;
 *   - a second backward accumulates (gradients double), zero_grads clears them. */
#include <string.h>

#include "dflash_train.h"
#include "ref_grad.h"
#include "vkd_test.h"

static unsigned long long seed = 99;

typedef struct hlin {
    double *w, *a, *b;
    uint32_t out, in, r;
    double s;
} hlin;

typedef struct hlayer {
    double *ln1, *ln2, *qn, *kn;
    hlin l[7];
} hlayer;

typedef struct hmodel {
    uint32_t H, nq, nkv, D, F, B, n, W, L;
    double eps;
    double *fc_in;             /* n x W features */
    double *emb;               /* B x H block embeddings */
    double *hn, *norm;
    float *inv;
    hlin fc;
    hlayer *layers;
} hmodel;

static double *dl(const vkd_tensor *t) {
    vkd_error err = {0};
    size_t n = t->rows * t->cols;
    void *raw = malloc(t->bytes);
    REQUIRE(!vkd_tensor_download(t, 0, raw, t->bytes, &err), "%s", err.msg);
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = t->dtype == VKD_DTYPE_F32 ? ((float *)raw)[i]
             : t->dtype == VKD_DTYPE_BF16 ? vkd_bf16_to_f32(((uint16_t *)raw)[i])
                                          : vkd_f16_to_f32(((uint16_t *)raw)[i]);
    free(raw);
    return x;
}

static hlin host_lin(const vkd_linear *l) {
    hlin h = {.w = dl(l->w), .out = vkd_linear_out(l), .in = vkd_linear_in(l)};
    if (l->lora_a) h.a = dl(l->lora_a), h.b = dl(l->lora_b), h.r = l->rank, h.s = l->scale;
    return h;
}

static void lin_fwd(double *y, const double *x, uint32_t m, const hlin *l) {
    rg_matmul_fwd(y, x, l->w, m, l->out, l->in);
    if (!l->a) return;
    double *t = malloc((size_t)m * l->r * 8), *y2 = malloc((size_t)m * l->out * 8);
    rg_matmul_fwd(t, x, l->a, m, l->r, l->in);
    rg_matmul_fwd(y2, t, l->b, m, l->out, l->r);
    for (size_t i = 0; i < (size_t)m * l->out; i++) y[i] += l->s * y2[i];
    free(t), free(y2);
}

#define NEW(n) calloc((size_t)(n), sizeof(double))

/* out: B x H, the double forward of the draft */
static void host_forward(const hmodel *M, double *out) {
    const uint32_t H = M->H, B = M->B, n = M->n, D = M->D, Q = M->nq * D, KV = M->nkv * D, F = M->F;
    double *craw = NEW(n * H), *c = NEW(n * H), *h = NEW(B * H), *a = NEW(B * H), *q = NEW(B * Q),
           *qn = NEW(B * Q), *kb = NEW(B * KV), *kc = NEW(n * KV), *kall = NEW((n + B) * KV),
           *vall = NEW((n + B) * KV), *o = NEW(B * Q), *y = NEW(B * H), *g = NEW(B * F), *u = NEW(B * F),
           *hm = NEW(B * F);
    lin_fwd(craw, M->fc_in, n, &M->fc);
    rg_rmsnorm_fwd(c, craw, M->hn, n, H, M->eps);
    memcpy(h, M->emb, (size_t)B * H * 8);
    for (uint32_t l = 0; l < M->L; l++) {
        const hlayer *Y = &M->layers[l];
        rg_rmsnorm_fwd(a, h, Y->ln1, B, H, M->eps);
        lin_fwd(q, a, B, &Y->l[0]);
        rg_rmsnorm_fwd(qn, q, Y->qn, B * M->nq, D, M->eps);
        rg_rope_fwd(qn, B, M->nq, D, n, M->inv);
        lin_fwd(kb, a, B, &Y->l[1]);
        rg_rmsnorm_fwd(kall + (size_t)n * KV, kb, Y->kn, B * M->nkv, D, M->eps);
        rg_rope_fwd(kall + (size_t)n * KV, B, M->nkv, D, n, M->inv);
        lin_fwd(vall + (size_t)n * KV, a, B, &Y->l[2]);
        lin_fwd(kc, c, n, &Y->l[1]);
        rg_rmsnorm_fwd(kall, kc, Y->kn, n * M->nkv, D, M->eps);
        rg_rope_fwd(kall, n, M->nkv, D, 0, M->inv);
        lin_fwd(vall, c, n, &Y->l[2]);
        rg_attn at = {B, n + B, M->nq, M->nkv, D, KV, n, false, 1 / sqrt((double)D)};
        rg_attention_fwd(o, NULL, qn, kall, vall, &at);
        lin_fwd(y, o, B, &Y->l[3]);
        for (size_t i = 0; i < (size_t)B * H; i++) h[i] += y[i];
        rg_rmsnorm_fwd(a, h, Y->ln2, B, H, M->eps);
        lin_fwd(g, a, B, &Y->l[4]);
        lin_fwd(u, a, B, &Y->l[5]);
        rg_swiglu_fwd(hm, g, u, (uint64_t)B * F);
        lin_fwd(y, hm, B, &Y->l[6]);
        for (size_t i = 0; i < (size_t)B * H; i++) h[i] += y[i];
    }
    rg_rmsnorm_fwd(out, h, M->norm, B, H, M->eps);
    double *all[] = {craw, c, h, a, q, qn, kb, kc, kall, vall, o, y, g, u, hm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static double loss(const hmodel *M, const double *R) {
    double *out = NEW(M->B * M->H), L = 0;
    host_forward(M, out);
    for (size_t i = 0; i < (size_t)M->B * M->H; i++) L += R[i] * out[i];
    free(out);
    return L;
}

/* worst |gpu - fd| / max|fd| over a spread sample of `cnt` entries of p (n entries) */
static double fd_compare(const hmodel *M, const double *R, double *p, size_t n, const float *gpu,
                         size_t cnt, double *gmax) {
    double worst = 0, big = 0;
    double *fd = NEW(cnt);
    size_t *idx = malloc(cnt * sizeof *idx), k = 0;
    for (size_t j = 0; j < cnt && j < n; j++, k++) {
        size_t i = (size_t)((j * 2654435761ULL + 7) % n);
        idx[k] = i;
        double x0 = p[i], h = 1e-5 * (1 + fabs(x0));
        p[i] = x0 + h;
        double lp = loss(M, R);
        p[i] = x0 - h;
        double lm = loss(M, R);
        p[i] = x0;
        fd[k] = (lp - lm) / (2 * h);
        big = fmax(big, fabs(fd[k]));
    }
    for (size_t j = 0; j < k; j++) {
        double e = fabs(gpu[idx[j]] - fd[j]);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    free(fd), free(idx);
    *gmax = big;
    return worst / (big > 0 ? big : 1);
}

static float *dlf(const vkd_tensor *t) {
    vkd_error err = {0};
    float *x = malloc(t->bytes);
    REQUIRE(!vkd_tensor_download(t, 0, x, t->bytes, &err), "%s", err.msg);
    return x;
}

int main(int argc, char **argv) {
    REQUIRE(argc == 3, "usage: test_dflash_grad TARGET_DIR DRAFT_DIR");
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_target *t;
    vkd_target_options to = {.ctx_len = 64, .max_rows = 32};
    REQUIRE(!vkd_target_load(ctx, argv[1], &to, &t, &err), "%s", err.msg);
    vkd_dflash *d;
    REQUIRE(!vkd_dflash_load(ctx, t, argv[2], NULL, &d, &err), "%s", err.msg);
    const uint32_t n = 9, B = d->block, H = d->hidden, W = d->ntaps * H;
    fprintf(stderr, "draft: hidden %u, %u layers, heads %u/%u of %u, ffn %u, block %u, %u taps; "
            "context %u rows\n", H, d->n_layers, d->n_q, d->n_kv, d->head_dim, d->ffn, B, d->ntaps, n);

    /* rank-3 adapters, A and B non-zero, on every linear */
    vkd_linear *lins[1 + 7 * 8];
    uint32_t nl = 0;
    lins[nl++] = &d->fc;
    for (uint32_t l = 0; l < d->n_layers && l < 8; l++) {
        vkd_linear *x[7];
        vkd_layer_linears(&d->layers[l], x);
        for (int j = 0; j < 7; j++) lins[nl++] = x[j];
    }
    for (uint32_t i = 0; i < nl; i++) {
        REQUIRE(!vkd_linear_lora_attach(ctx, lins[i], 3, 7.0f, 16, &err), "%s", err.msg);
        for (int ab = 0; ab < 2; ab++) {
            vkd_tensor *m = ab ? lins[i]->lora_b : lins[i]->lora_a;
            size_t k = m->rows * m->cols;
            float *v = malloc(k * 4);
            for (size_t j = 0; j < k; j++) v[j] = (float)(0.2 * vkd_test_rand_normal(&seed));
            REQUIRE(!vkd_tensor_upload(m, 0, v, k * 4, &err), "%s", err.msg);
            free(v);
        }
    }
    vkd_dflash_train *T;
    REQUIRE(!vkd_dflash_train_create(d, 12, &T, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_grads(T, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_weight_grads(T, &err), "%s", err.msg);

    float *Ff = malloc((size_t)n * W * 4);
    for (size_t i = 0; i < (size_t)n * W; i++) Ff[i] = (float)vkd_test_rand_normal(&seed);
    vkd_tensor *tf;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, n + 2, W, "features", &tf, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tf, (uint64_t)2 * W * 4, Ff, (size_t)n * W * 4, &err), "%s", err.msg);
    int32_t *block = malloc(B * 4);
    block[0] = 5;
    for (uint32_t i = 1; i < B; i++) block[i] = d->mask_id;
    double *R = NEW(B * H);
    float *Rf = calloc((size_t)B * H, 4);
    for (size_t i = H; i < (size_t)B * H; i++) R[i] = Rf[i] = (float)vkd_test_rand_normal(&seed);
    vkd_tensor *tr;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, H, "dout", &tr, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tr, 0, Rf, (size_t)B * H * 4, &err), "%s", err.msg);

    float *out = malloc((size_t)B * H * 4);
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_train_zero_grads(T, rec, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_forward(T, rec, tf, 2, n, block, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_backward(T, rec, tr, &err), "%s", err.msg);
    vkd_rec_read(rec, T->out, 0, out, (uint64_t)B * H * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);

    /* host model from the device's own weights */
    hmodel M = {.H = H, .nq = d->n_q, .nkv = d->n_kv, .D = d->head_dim, .F = d->ffn, .B = B, .n = n,
                .W = W, .L = d->n_layers, .eps = d->cfg.rms_norm_eps};
    M.fc_in = NEW(n * W);
    for (size_t i = 0; i < (size_t)n * W; i++) M.fc_in[i] = Ff[i];
    double *emb = dl(t->embed);
    M.emb = NEW(B * H);
    for (uint32_t i = 0; i < B; i++) memcpy(M.emb + (size_t)i * H, emb + (size_t)block[i] * H, H * 8);
    free(emb);
    M.hn = dl(d->hidden_norm), M.norm = dl(d->norm);
    M.inv = malloc(d->head_dim / 2 * 4);
    REQUIRE(!vkd_tensor_download(d->inv_freq, 0, M.inv, d->head_dim / 2 * 4, &err), "%s", err.msg);
    M.fc = host_lin(&d->fc);
    M.layers = calloc(d->n_layers, sizeof *M.layers);
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_layer *L = &d->layers[l];
        hlayer *Y = &M.layers[l];
        Y->ln1 = dl(L->ln1), Y->ln2 = dl(L->ln2), Y->qn = dl(L->q_norm), Y->kn = dl(L->k_norm);
        vkd_linear *x[7];
        vkd_layer_linears(L, x);
        for (int j = 0; j < 7; j++) Y->l[j] = host_lin(x[j]);
    }
    double *ref = NEW(B * H), scale = 0, worst = 0;
    host_forward(&M, ref);
    for (size_t i = 0; i < (size_t)B * H; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < (size_t)B * H; i++) {
        double e = fabs(out[i] - ref[i]);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    worst /= 1 + scale;
    fprintf(stderr, "training forward vs double forward: worst rel err %.3g\n", worst);
    CHECK(worst < 1e-4, "training forward error %.3g", worst);

    /* gradients vs central differences, 12 entries per matrix */
    static const char *names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    double all_worst = 0;
    float **ga = calloc(nl, sizeof *ga), **gb = calloc(nl, sizeof *gb);
    for (uint32_t i = 0; i < nl; i++) {
        hlin *hl = i == 0 ? &M.fc : &M.layers[(i - 1) / 7].l[(i - 1) % 7];
        ga[i] = dlf(lins[i]->grad_a), gb[i] = dlf(lins[i]->grad_b);
        double ma, mb;
        double ea = fd_compare(&M, R, hl->a, (size_t)hl->r * hl->in, ga[i], 12, &ma);
        double eb = fd_compare(&M, R, hl->b, (size_t)hl->out * hl->r, gb[i], 12, &mb);
        char nm[48];
        if (i == 0) snprintf(nm, sizeof nm, "fc");
        else snprintf(nm, sizeof nm, "layers.%u.%s", (i - 1) / 7, names[(i - 1) % 7]);
        fprintf(stderr, "  %-22s lora_A err %.2g (|grad| up to %.2g)  lora_B err %.2g (|grad| up to %.2g)\n",
                nm, ea, ma, eb, mb);
        CHECK(ea < 2e-3 && eb < 2e-3, "%s: LoRA gradients vs finite differences %.3g %.3g", nm, ea, eb);
        CHECK(ma > 1e-6 && mb > 1e-6, "%s: gradients vanish (%.3g %.3g): the check would be empty", nm, ma, mb);
        all_worst = fmax(all_worst, fmax(ea, eb));
    }
    fprintf(stderr, "draft backward vs finite differences: worst %.3g over %u adapters\n", all_worst, nl);

    /* full-weight gradients: every linear's W, every norm weight */
    double w_worst = 0;
    for (uint32_t i = 0; i < nl; i++) {
        hlin *hl = i == 0 ? &M.fc : &M.layers[(i - 1) / 7].l[(i - 1) % 7];
        REQUIRE(lins[i]->grad_w, "linear %u: no weight gradient", i);
        float *gw = dlf(lins[i]->grad_w);
        double mw, ew = fd_compare(&M, R, hl->w, (size_t)hl->out * hl->in, gw, 16, &mw);
        free(gw);
        CHECK(ew < 2e-3, "linear %u: weight gradient vs finite differences %.3g", i, ew);
        CHECK(mw > 1e-6, "linear %u: weight gradients vanish (%.3g)", i, mw);
        w_worst = fmax(w_worst, ew);
    }
    struct hnorm { const char *name; double *p; const vkd_tensor *g; uint32_t n; } norms[2 + 4 * 8];
    uint32_t nn = 0;
    norms[nn++] = (struct hnorm){"hidden_norm", M.hn, T->grad_hidden_norm, H};
    norms[nn++] = (struct hnorm){"norm", M.norm, T->grad_norm, H};
    for (uint32_t l = 0; l < d->n_layers && l < 8; l++) {
        vkd_layer *L = &d->layers[l];
        hlayer *Y = &M.layers[l];
        norms[nn++] = (struct hnorm){"input_layernorm", Y->ln1, L->grad_ln1, H};
        norms[nn++] = (struct hnorm){"post_attention_layernorm", Y->ln2, L->grad_ln2, H};
        norms[nn++] = (struct hnorm){"q_norm", Y->qn, L->grad_q_norm, d->head_dim};
        norms[nn++] = (struct hnorm){"k_norm", Y->kn, L->grad_k_norm, d->head_dim};
    }
    for (uint32_t i = 0; i < nn; i++) {
        REQUIRE(norms[i].g, "%s: no gradient", norms[i].name);
        float *g = dlf(norms[i].g);
        double mg, eg = fd_compare(&M, R, norms[i].p, norms[i].n, g, norms[i].n, &mg);
        free(g);
        fprintf(stderr, "  %-26s (%u) weight grad err %.2g (|grad| up to %.2g)\n", norms[i].name,
                i < 2 ? 0 : (i - 2) / 4, eg, mg);
        CHECK(eg < 2e-3, "%s: weight gradient vs finite differences %.3g", norms[i].name, eg);
        CHECK(mg > 1e-6, "%s: weight gradients vanish (%.3g)", norms[i].name, mg);
        w_worst = fmax(w_worst, eg);
    }
    fprintf(stderr, "full-weight gradients vs finite differences: worst %.3g over %u linears and %u "
            "norms\n", w_worst, nl, nn);
    float *gw1 = dlf(lins[nl - 2]->grad_w), *gn1 = dlf(d->layers[0].grad_k_norm);

    /* a second backward accumulates; zero_grads clears */
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_train_backward(T, rec, tr, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    double acc = 0;
    for (uint32_t i = 0; i < nl; i++) {
        float *a2 = dlf(lins[i]->grad_a);
        for (size_t j = 0; j < lins[i]->grad_a->rows * lins[i]->grad_a->cols; j++)
            acc = fmax(acc, fabs(a2[j] - 2.0 * ga[i][j]) / (1e-3 + fabs(ga[i][j])));
        free(a2);
    }
    float *gw2 = dlf(lins[nl - 2]->grad_w), *gn2 = dlf(d->layers[0].grad_k_norm);
    for (size_t j = 0; j < lins[nl - 2]->grad_w->rows * lins[nl - 2]->grad_w->cols; j++)
        acc = fmax(acc, fabs(gw2[j] - 2.0 * gw1[j]) / (1e-3 + fabs(gw1[j])));
    for (size_t j = 0; j < d->head_dim; j++) acc = fmax(acc, fabs(gn2[j] - 2.0 * gn1[j]) / (1e-3 + fabs(gn1[j])));
    free(gw1), free(gw2), free(gn1), free(gn2);
    CHECK(acc < 1e-4, "second backward did not accumulate (%.3g)", acc);
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_train_zero_grads(T, rec, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    float *z = dlf(lins[nl - 1]->grad_b);
    double zm = 0;
    for (size_t j = 0; j < lins[nl - 1]->grad_b->rows * lins[nl - 1]->grad_b->cols; j++) zm = fmax(zm, fabs(z[j]));
    free(z);
    z = dlf(lins[nl - 1]->grad_w);
    for (size_t j = 0; j < lins[nl - 1]->grad_w->rows * lins[nl - 1]->grad_w->cols; j++) zm = fmax(zm, fabs(z[j]));
    free(z);
    z = dlf(T->grad_norm);
    for (size_t j = 0; j < H; j++) zm = fmax(zm, fabs(z[j]));
    CHECK(zm == 0, "zero_grads left %.3g", zm);
    free(z);
    /* bad input: context beyond the training buffers */
    vkd_rec_begin(rec);
    CHECK(vkd_dflash_train_forward(T, rec, tf, 0, 13, block, &err) == VKD_ERR_INVALID, "13 context rows accepted");
    vkd_rec_submit(rec);

    for (uint32_t i = 0; i < nl; i++) free(ga[i]), free(gb[i]);
    free(ga), free(gb);
    vkd_dflash_train_free(T);
    vkd_tensor_destroy(tf), vkd_tensor_destroy(tr);
    vkd_dflash_free(d);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_dflash_grad");
}
