/* test_layer: vkd_op_rmsnorm, vkd_op_rope, vkd_op_swiglu and vkd_op_copy2d against the
 * plain-C references of ref_layer.c on random inputs, with sentinels after every output.
 * Error bounds (relative to the double reference, per element):
 *   rmsnorm  1e-5 relative (f32 sum of squares and inversesqrt; weights enter exactly as
 *            the reference widens them, whatever their dtype)
 *   rope     2e-6 * (|x_j| + |x_j+half|) absolute: f32 products plus the shader's sin/cos
 *            (about 1e-7 absolute for angles below 2^17 rad); the angle itself is the same
 *            f32 product on both sides
 *   swiglu   1e-5 relative + 1e-30 (exp in f32 for |g| < 8)
 *   copy2d   exact (f32), f16 equal to round-to-nearest-even or one f16 ulp away
 *   qk_rope_kv  bit-identical to the rmsnorm, rope and copy2d dispatches it fuses (q, k and
 *            both caches, rows outside the appended ones untouched), and q, k within
 *            2e-5 * (|x_j| + |x_j+half|) of the double reference of norm then rope
 * Validation layers are on: any message fails the program. */
#include <stdlib.h>
#include <string.h>

#include "ref_layer.h"
#include "vkd_ops.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long seed = 0x1a2e5;
static const float SENTINEL = 31337.25f;
#define NSENT 8

static void fill_normal(float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * vkd_test_rand_normal(&seed));
}

static void upload(vkd_tensor *t, uint64_t off, const void *src, uint64_t bytes) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_upload(t, off, src, bytes, &err), "%s", err.msg);
}

/* f32 tensor of n values followed by NSENT sentinels */
static vkd_tensor *mk_f32(vkd_ctx *ctx, const float *x, uint64_t n, const char *name) {
    vkd_tensor *t = op_tensor(ctx, VKD_DTYPE_F32, 1, n + NSENT, name);
    if (x) upload(t, 0, x, n * 4);
    float s[NSENT];
    for (int i = 0; i < NSENT; i++) s[i] = SENTINEL;
    upload(t, n * 4, s, sizeof s);
    return t;
}

static int check_sentinels(const float *out, uint64_t n, const char *what) {
    int bad = 0;
    for (int i = 0; i < NSENT; i++) bad += out[n + i] != SENTINEL;
    CHECK(!bad, "%s: %d sentinel(s) after the output overwritten", what, bad);
    return bad;
}

static void submit(vkd_rec *rec) {
    vkd_result r = vkd_rec_submit(rec);
    REQUIRE(r == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);
}

/* ---- rmsnorm -------------------------------------------------------------------------- */

static void test_rmsnorm(vkd_ctx *ctx, vkd_rec *rec, uint32_t groups, uint32_t dim, vkd_dtype wdt,
                         bool in_place) {
    uint64_t n = (uint64_t)groups * dim;
    float *x = malloc(n * 4), *want = malloc(n * 4), *got = malloc((n + NSENT) * 4);
    float *w = malloc(dim * 4);
    uint16_t *w16 = malloc(dim * 2);
    fill_normal(x, n, 1.7);
    for (uint32_t i = 0; i < dim; i++) {
        float v = (float)(1.0 + 0.3 * vkd_test_rand_normal(&seed));
        if (wdt == VKD_DTYPE_BF16) { w16[i] = vkd_f32_to_bf16(v); v = vkd_bf16_to_f32(w16[i]); }
        if (wdt == VKD_DTYPE_F16) { w16[i] = vkd_f32_to_f16(v); v = vkd_f16_to_f32(w16[i]); }
        w[i] = v;
    }
    const float eps = 1e-6f;
    ref_rmsnorm(want, x, w, groups, dim, eps);
    vkd_tensor *tw = op_tensor(ctx, wdt, 1, dim, "w");
    upload(tw, 0, wdt == VKD_DTYPE_F32 ? (void *)w : (void *)w16, dim * vkd_dtype_size(wdt));
    vkd_tensor *tx = mk_f32(ctx, x, n, "x");
    vkd_tensor *ty = in_place ? tx : mk_f32(ctx, NULL, n, "y");
    vkd_rec_begin(rec);
    vkd_op_rmsnorm(rec, ty, tx, tw, groups, dim, eps);
    vkd_rec_read(rec, ty, 0, got, (n + NSENT) * 4);
    submit(rec);
    double worst = 0;
    int nonfinite = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) { nonfinite++; continue; }
        double e = want[i] == 0 ? fabs(got[i]) : fabs(got[i] - want[i]) / fabs(want[i]);
        if (e > worst) worst = e;
    }
    char what[96];
    snprintf(what, sizeof what, "rmsnorm %ux%u %s%s", groups, dim, vkd_dtype_name(wdt), in_place ? " in-place" : "");
    check_sentinels(got, n, what);
    CHECK(!nonfinite, "%s: %d non-finite outputs", what, nonfinite);
    CHECK(worst <= 1e-5, "%s: worst relative error %.3g > 1e-5", what, worst);
    fprintf(stderr, "  %-40s worst rel err %.3g\n", what, worst);
    vkd_tensor_destroy(tw);
    vkd_tensor_destroy(tx);
    if (!in_place) vkd_tensor_destroy(ty);
    free(x); free(want); free(got); free(w); free(w16);
}

/* ---- rope ----------------------------------------------------------------------------- */

/* x: (x_row0 + rows) x cols with heads*hd <= cols; elements outside the rotated range must
 * come back unchanged. */
static void test_rope(vkd_ctx *ctx, vkd_rec *rec, uint32_t x_row0, uint32_t rows, uint32_t cols,
                      uint32_t heads, uint32_t hd, uint32_t pos0, const int32_t *positions,
                      double theta) {
    uint64_t n = (uint64_t)(x_row0 + rows) * cols;
    float *x = malloc(n * 4), *want = malloc(n * 4), *got = malloc((n + cols) * 4);
    float *inv = malloc(hd / 2 * 4);
    fill_normal(x, n, 1.0);
    for (uint32_t j = 0; j < hd / 2; j++) inv[j] = (float)(1.0 / pow(theta, 2.0 * j / hd));
    memcpy(want, x, n * 4);
    ref_rope(want + (uint64_t)x_row0 * cols, rows, cols, heads, hd, pos0, positions, inv);
    /* one extra row of sentinels after the rows the op may touch */
    vkd_tensor *tx = op_tensor(ctx, VKD_DTYPE_F32, x_row0 + rows + 1, cols, "x");
    upload(tx, 0, x, n * 4);
    float *sent = malloc(cols * 4);
    for (uint32_t i = 0; i < cols; i++) sent[i] = SENTINEL;
    upload(tx, n * 4, sent, cols * 4);
    free(sent);
    vkd_tensor *tf = op_tensor(ctx, VKD_DTYPE_F32, 1, hd / 2, "inv_freq");
    upload(tf, 0, inv, hd / 2 * 4);
    vkd_tensor *tp = NULL;
    if (positions) {
        tp = op_tensor(ctx, VKD_DTYPE_I32, 1, rows, "positions");
        upload(tp, 0, positions, rows * 4);
    }
    vkd_rec_begin(rec);
    vkd_op_rope(rec, tx, x_row0, rows, heads, hd, pos0, tp, tf);
    vkd_rec_read(rec, tx, 0, got, (n + cols) * 4);
    submit(rec);
    double worst = 0;
    int nonfinite = 0, changed = 0;
    uint32_t half = hd / 2;
    for (uint64_t r = 0; r < x_row0 + rows; r++)
        for (uint32_t c = 0; c < cols; c++) {
            uint64_t i = r * cols + c;
            if (!isfinite(got[i])) { nonfinite++; continue; }
            if (r < x_row0 || c >= heads * hd) { changed += got[i] != x[i]; continue; }
            uint32_t j = c % hd, jp = j < half ? c + half : c - half;
            double e = fabs(got[i] - want[i]) / (fabs(x[i]) + fabs(x[r * cols + jp]));
            if (e > worst) worst = e;
        }
    int32_t pmax = (int32_t)(pos0 + rows - 1);
    for (uint32_t i = 0; positions && i < rows; i++) pmax = i ? (positions[i] > pmax ? positions[i] : pmax) : positions[0];
    char what[128];
    snprintf(what, sizeof what, "rope rows %u+%u x %u heads x %u, pos %s%d", x_row0, rows, heads,
             hd, positions ? "tensor, max " : "up to ", pmax);
    check_sentinels(got, n, what);
    CHECK(!nonfinite, "%s: %d non-finite outputs", what, nonfinite);
    CHECK(!changed, "%s: %d elements outside the rotated range changed", what, changed);
    CHECK(worst <= 2e-6, "%s: worst error %.3g > 2e-6 (relative to |x_j|+|x_j'|)", what, worst);
    fprintf(stderr, "  %-52s worst err %.3g\n", what, worst);
    vkd_tensor_destroy(tx);
    vkd_tensor_destroy(tf);
    if (tp) vkd_tensor_destroy(tp);
    free(x); free(want); free(got); free(inv);
}

/* ---- swiglu --------------------------------------------------------------------------- */

/* alias: 0 none, 1 h = g, 2 h = u */
static void test_swiglu(vkd_ctx *ctx, vkd_rec *rec, uint64_t n, int alias) {
    float *g = malloc(n * 4), *u = malloc(n * 4), *got = malloc((n + NSENT) * 4);
    fill_normal(g, n, 2.5);
    fill_normal(u, n, 1.0);
    vkd_tensor *tg = mk_f32(ctx, g, n, "g"), *tu = mk_f32(ctx, u, n, "u");
    vkd_tensor *th = alias == 1 ? tg : alias == 2 ? tu : mk_f32(ctx, NULL, n, "h");
    vkd_rec_begin(rec);
    vkd_op_swiglu(rec, th, tg, tu, n);
    vkd_rec_read(rec, th, 0, got, (n + NSENT) * 4);
    submit(rec);
    double worst = 0;
    int nonfinite = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) { nonfinite++; continue; }
        double want = ref_swiglu_one(g[i], u[i]);
        double e = fabs(got[i] - want) / (fabs(want) + 1e-30);
        if (e > worst) worst = e;
    }
    char what[96];
    snprintf(what, sizeof what, "swiglu n=%llu%s", (unsigned long long)n,
             alias == 1 ? " h=g" : alias == 2 ? " h=u" : "");
    check_sentinels(got, n, what);
    CHECK(!nonfinite, "%s: %d non-finite outputs", what, nonfinite);
    CHECK(worst <= 1e-5, "%s: worst relative error %.3g > 1e-5", what, worst);
    fprintf(stderr, "  %-40s worst rel err %.3g\n", what, worst);
    vkd_tensor_destroy(tg);
    vkd_tensor_destroy(tu);
    if (!alias) vkd_tensor_destroy(th);
    free(g); free(u); free(got);
}

/* ---- copy2d --------------------------------------------------------------------------- */

static void test_copy2d(vkd_ctx *ctx, vkd_rec *rec, vkd_dtype ddt, uint32_t src_rows,
                        uint32_t src_cols, uint32_t dst_rows, uint32_t dst_cols, uint32_t dst_row0,
                        uint32_t dst_col0, uint32_t src_row0, uint32_t src_col0, uint32_t rows,
                        uint32_t cols) {
    uint64_t ns = (uint64_t)src_rows * src_cols, nd = (uint64_t)dst_rows * dst_cols;
    float *src = malloc(ns * 4);
    fill_normal(src, ns, 3.0);
    vkd_tensor *ts = op_tensor(ctx, VKD_DTYPE_F32, src_rows, src_cols, "src");
    upload(ts, 0, src, ns * 4);
    vkd_tensor *td = op_tensor(ctx, ddt, dst_rows, dst_cols, "dst");
    size_t es = vkd_dtype_size(ddt);
    /* prior destination content: random bits (what must survive outside the block) */
    uint8_t *before = malloc(nd * es), *after = malloc(nd * es);
    for (uint64_t i = 0; i < nd; i++) {
        float v = (float)vkd_test_rand_normal(&seed);
        if (ddt == VKD_DTYPE_F32) memcpy(before + i * 4, &v, 4);
        else { uint16_t h = vkd_f32_to_f16(v); memcpy(before + i * 2, &h, 2); }
    }
    upload(td, 0, before, nd * es);
    vkd_rec_begin(rec);
    vkd_op_copy2d(rec, td, dst_row0, dst_col0, ts, src_row0, src_col0, rows, cols);
    vkd_rec_read(rec, td, 0, after, nd * es);
    submit(rec);
    int outside = 0, wrong = 0, off_by_ulp = 0;
    for (uint32_t r = 0; r < dst_rows; r++)
        for (uint32_t c = 0; c < dst_cols; c++) {
            uint64_t i = (uint64_t)r * dst_cols + c;
            bool in = r >= dst_row0 && r < dst_row0 + rows && c >= dst_col0 && c < dst_col0 + cols;
            if (!in) { outside += memcmp(before + i * es, after + i * es, es) != 0; continue; }
            float s = src[(uint64_t)(src_row0 + r - dst_row0) * src_cols + src_col0 + c - dst_col0];
            if (ddt == VKD_DTYPE_F32) {
                float g;
                memcpy(&g, after + i * 4, 4);
                wrong += memcmp(&g, &s, 4) != 0;
            } else {
                uint16_t g, want = vkd_f32_to_f16(s);
                memcpy(&g, after + i * 2, 2);
                if (g != want) {
                    if (abs((int)g - (int)want) == 1) off_by_ulp++;
                    else wrong++;
                }
            }
        }
    char what[160];
    snprintf(what, sizeof what, "copy2d %s %ux%u (%u,%u) of %ux%u -> (%u,%u) of %ux%u",
             vkd_dtype_name(ddt), rows, cols, src_row0, src_col0, src_rows, src_cols, dst_row0,
             dst_col0, dst_rows, dst_cols);
    CHECK(!outside, "%s: %d elements outside the block changed", what, outside);
    CHECK(!wrong, "%s: %d elements wrong", what, wrong);
    fprintf(stderr, "  %-64s wrong %d, f16 1-ulp %d\n", what, wrong, off_by_ulp);
    vkd_tensor_destroy(ts);
    vkd_tensor_destroy(td);
    free(src); free(before); free(after);
}

/* ---- qk_rope_kv ------------------------------------------------------------------------ */

/* One fused call against the six dispatches it replaces, on the same inputs: q (rows x n_q*hd),
 * k, v (rows x n_kv*hd), norm weights of dtype wdt (norm false: no per-head norm, Llama),
 * caches of cdt, cap rows of ccols (>= n_kv*hd) prefilled with random bits, rows [pos,
 * pos+rows) appended. */
static void test_qk_rope_kv(vkd_ctx *ctx, vkd_rec *rec, uint32_t rows, uint32_t n_q, uint32_t n_kv,
                            uint32_t hd, uint32_t pos, bool norm, vkd_dtype wdt, vkd_dtype cdt,
                            uint32_t ccols) {
    const float eps = 1e-6f;
    uint32_t Q = n_q * hd, KV = n_kv * hd, cap = pos + rows + 3;
    uint64_t nq = (uint64_t)rows * Q, nk = (uint64_t)rows * KV, nc = (uint64_t)cap * ccols;
    size_t es = vkd_dtype_size(cdt);
    float *q = malloc(nq * 4 + 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *inv = malloc(hd / 2 * 4);
    float *wq = malloc(hd * 4), *wk = malloc(hd * 4);
    uint16_t *wq16 = malloc(hd * 2), *wk16 = malloc(hd * 2);
    fill_normal(q, nq, 1.3);
    fill_normal(k, nk, 0.8);
    fill_normal(v, nk, 1.1);
    for (uint32_t j = 0; j < hd / 2; j++) inv[j] = (float)(1.0 / pow(1e6, 2.0 * j / hd));
    for (int t = 0; t < 2; t++)
        for (uint32_t i = 0; i < hd; i++) {
            float x = (float)(1.0 + 0.3 * vkd_test_rand_normal(&seed));
            uint16_t *h = t ? wk16 : wq16;
            if (wdt == VKD_DTYPE_BF16) { h[i] = vkd_f32_to_bf16(x); x = vkd_bf16_to_f32(h[i]); }
            if (wdt == VKD_DTYPE_F16) { h[i] = vkd_f32_to_f16(x); x = vkd_f16_to_f32(h[i]); }
            (t ? wk : wq)[i] = x;
        }
    uint8_t *cache0 = malloc(nc * es);
    for (uint64_t i = 0; i < nc; i++) {
        float x = (float)vkd_test_rand_normal(&seed);
        if (cdt == VKD_DTYPE_F32) memcpy(cache0 + i * 4, &x, 4);
        else { uint16_t h = vkd_f32_to_f16(x); memcpy(cache0 + i * 2, &h, 2); }
    }
    vkd_tensor *tf = op_tensor(ctx, VKD_DTYPE_F32, 1, hd / 2, "inv_freq");
    upload(tf, 0, inv, hd / 2 * 4);
    vkd_tensor *tw[2] = {NULL, NULL};
    for (int t = 0; norm && t < 2; t++) {
        tw[t] = op_tensor(ctx, wdt, 1, hd, t ? "k_norm" : "q_norm");
        upload(tw[t], 0, wdt == VKD_DTYPE_F32 ? (void *)(t ? wk : wq) : (void *)(t ? wk16 : wq16),
               hd * vkd_dtype_size(wdt));
    }
    /* run 0: fused; run 1: the six ops one by one */
    float *gq[2], *gk[2];
    uint8_t *gc[2][2];
    for (int run = 0; run < 2; run++) {
        vkd_tensor *tq = op_tensor(ctx, VKD_DTYPE_F32, rows ? rows : 1, Q ? Q : 1, "q");
        vkd_tensor *tk = op_tensor(ctx, VKD_DTYPE_F32, rows, KV, "k"), *tv = op_tensor(ctx, VKD_DTYPE_F32, rows, KV, "v");
        vkd_tensor *kc = op_tensor(ctx, cdt, cap, ccols, "kc"), *vc = op_tensor(ctx, cdt, cap, ccols, "vc");
        if (nq) upload(tq, 0, q, nq * 4);
        upload(tk, 0, k, nk * 4);
        upload(tv, 0, v, nk * 4);
        upload(kc, 0, cache0, nc * es);
        upload(vc, 0, cache0, nc * es);
        gq[run] = malloc(nq * 4 + 4);
        gk[run] = malloc(nk * 4);
        gc[run][0] = malloc(nc * es);
        gc[run][1] = malloc(nc * es);
        vkd_rec_begin(rec);
        vkd_result rr;
        if (run == 0) {
            rr = vkd_op_qk_rope_kv(rec, n_q ? tq : NULL, tk, tv, n_q ? tw[0] : NULL, tw[1], rows, n_q, n_kv,
                                   hd, pos, tf, eps, kc, vc);
        } else {
            if (norm) {
                if (n_q) vkd_op_rmsnorm(rec, tq, tq, tw[0], rows * n_q, hd, eps);
                vkd_op_rmsnorm(rec, tk, tk, tw[1], rows * n_kv, hd, eps);
            }
            if (n_q) vkd_op_rope(rec, tq, 0, rows, n_q, hd, pos, NULL, tf);
            vkd_op_rope(rec, tk, 0, rows, n_kv, hd, pos, NULL, tf);
            vkd_op_copy2d(rec, kc, pos, 0, tk, 0, 0, rows, KV);
            rr = vkd_op_copy2d(rec, vc, pos, 0, tv, 0, 0, rows, KV);
        }
        REQUIRE(rr == VKD_OK, "qk_rope_kv run %d: %s", run, vkd_rec_error(rec)->msg);
        if (nq) vkd_rec_read(rec, tq, 0, gq[run], nq * 4);
        vkd_rec_read(rec, tk, 0, gk[run], nk * 4);
        vkd_rec_read(rec, kc, 0, gc[run][0], nc * es);
        vkd_rec_read(rec, vc, 0, gc[run][1], nc * es);
        submit(rec);
        vkd_tensor *all[] = {tq, tk, tv, kc, vc};
        for (int i = 0; i < 5; i++) vkd_tensor_destroy(all[i]);
    }
    char what[160];
    snprintf(what, sizeof what, "qk_rope_kv %u rows, %u+%u heads x %u at %u, norm %s, cache %s x %u",
             rows, n_q, n_kv, hd, pos, norm ? vkd_dtype_name(wdt) : "none", vkd_dtype_name(cdt), ccols);
    CHECK(!nq || !memcmp(gq[0], gq[1], nq * 4), "%s: q differs from the unfused ops", what);
    CHECK(!memcmp(gk[0], gk[1], nk * 4), "%s: k differs from the unfused ops", what);
    CHECK(!memcmp(gc[0][0], gc[1][0], nc * es), "%s: the key cache differs from the unfused ops", what);
    CHECK(!memcmp(gc[0][1], gc[1][1], nc * es), "%s: the value cache differs from the unfused ops", what);
    /* the fused result against the double reference: norm, then rope */
    float *wantq = malloc(nq * 4 + 4), *wantk = malloc(nk * 4);
    if (norm) {
        ref_rmsnorm(wantq, q, wq, rows * n_q, hd, eps);
        ref_rmsnorm(wantk, k, wk, rows * n_kv, hd, eps);
    } else {
        memcpy(wantq, q, nq * 4);
        memcpy(wantk, k, nk * 4);
    }
    if (n_q) ref_rope(wantq, rows, Q, n_q, hd, pos, NULL, inv);
    ref_rope(wantk, rows, KV, n_kv, hd, pos, NULL, inv);
    double worst = 0;
    int nonfinite = 0;
    for (int t = 0; t < 2; t++) {
        const float *got = t ? gk[0] : gq[0], *want = t ? wantk : wantq;
        uint64_t n = t ? nk : nq;
        for (uint64_t i = 0; i < n; i++) {
            if (!isfinite(got[i])) { nonfinite++; continue; }
            uint64_t j = i % hd, jp = j < hd / 2 ? i + hd / 2 : i - hd / 2;
            double e = fabs(got[i] - want[i]) / (fabs(want[i]) + fabs(want[jp]) + 1e-30);
            if (e > worst) worst = e;
        }
    }
    CHECK(!nonfinite, "%s: %d non-finite outputs", what, nonfinite);
    CHECK(worst <= 2e-5, "%s: worst error %.3g > 2e-5 (relative to |x_j|+|x_j'|)", what, worst);
    fprintf(stderr, "  %-84s worst err %.3g\n", what, worst);
    for (int run = 0; run < 2; run++) {
        free(gq[run]); free(gk[run]); free(gc[run][0]); free(gc[run][1]);
    }
    for (int t = 0; t < 2; t++) vkd_tensor_destroy(tw[t]);
    vkd_tensor_destroy(tf);
    free(q); free(k); free(v); free(inv); free(wq); free(wk); free(wq16); free(wk16);
    free(cache0); free(wantq); free(wantk);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_result r = vkd_ctx_create(NULL, &ctx, &err);
    if (r == VKD_ERR_DEVICE) {
        fprintf(stderr, "no Vulkan device: %s\n", err.msg);
        return 77;
    }
    REQUIRE(r == VKD_OK, "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);

    test_rmsnorm(ctx, rec, 1, 4096, VKD_DTYPE_BF16, false);
    test_rmsnorm(ctx, rec, 7, 2560, VKD_DTYPE_F32, false);
    test_rmsnorm(ctx, rec, 16 * 32 + 3, 128, VKD_DTYPE_BF16, true); /* per-head q norm */
    test_rmsnorm(ctx, rec, 37, 64, VKD_DTYPE_F16, false);
    test_rmsnorm(ctx, rec, 5, 999, VKD_DTYPE_F16, true);
    test_rmsnorm(ctx, rec, 3, 8192, VKD_DTYPE_BF16, false);
    test_rmsnorm(ctx, rec, 2, 151936, VKD_DTYPE_F32, false);
    test_rmsnorm(ctx, rec, 9, 1, VKD_DTYPE_F32, false);

    int32_t pos_big[5] = {40000, 131071, 0, 7, 65537};
    int32_t pos_mid[3] = {1000, 1001, 12345};
    test_rope(ctx, rec, 0, 5, 16 * 128, 16, 128, 3, NULL, 1e6);
    test_rope(ctx, rec, 2, 3, 8 * 64 + 12, 8, 64, 0, pos_mid, 500000.0);
    test_rope(ctx, rec, 0, 5, 4 * 128, 4, 128, 0, pos_big, 1e6);
    test_rope(ctx, rec, 1, 5, 3 * 64, 3, 64, 0, pos_big, 10000.0);
    test_rope(ctx, rec, 0, 17, 2 * 16 + 1, 2, 16, 40000, NULL, 10000.0);
    test_rope(ctx, rec, 0, 1, 32 * 128, 32, 128, 4095, NULL, 1e6);

    /* Qwen3-0.6B heads (16 + 8 x 128, bf16 norms) at m = 1 and 16; the demo pair's (2 + 1 x
     * 64); Llama without norms; f16 caches with a wider row; keys only (a DFlash context) */
    test_qk_rope_kv(ctx, rec, 1, 16, 8, 128, 37, true, VKD_DTYPE_BF16, VKD_DTYPE_F32, 8 * 128);
    test_qk_rope_kv(ctx, rec, 16, 16, 8, 128, 100, true, VKD_DTYPE_BF16, VKD_DTYPE_F32, 8 * 128);
    test_qk_rope_kv(ctx, rec, 16, 2, 1, 64, 5, true, VKD_DTYPE_BF16, VKD_DTYPE_F16, 64);
    test_qk_rope_kv(ctx, rec, 7, 32, 8, 64, 4000, false, VKD_DTYPE_F32, VKD_DTYPE_F32, 8 * 64);
    test_qk_rope_kv(ctx, rec, 3, 4, 2, 32, 9, true, VKD_DTYPE_F16, VKD_DTYPE_F16, 2 * 32 + 6);
    test_qk_rope_kv(ctx, rec, 5, 3, 1, 16, 0, true, VKD_DTYPE_F32, VKD_DTYPE_F32, 20);
    test_qk_rope_kv(ctx, rec, 40, 0, 2, 64, 3, true, VKD_DTYPE_BF16, VKD_DTYPE_F16, 128);

    test_swiglu(ctx, rec, 9728 * 3, 0);
    test_swiglu(ctx, rec, 151937, 0);
    test_swiglu(ctx, rec, 1001, 1);
    test_swiglu(ctx, rec, 3, 2);

    test_copy2d(ctx, rec, VKD_DTYPE_F32, 20, 250, 37, 301, 5, 17, 3, 7, 11, 133);
    test_copy2d(ctx, rec, VKD_DTYPE_F32, 16, 1024, 16, 5120, 0, 2048, 0, 0, 16, 1024); /* tap */
    test_copy2d(ctx, rec, VKD_DTYPE_F32, 1, 1024, 100, 1024, 37, 0, 0, 0, 1, 1024);    /* KV append */
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 1, 1024, 100, 1024, 37, 0, 0, 0, 1, 1024);
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 19, 512, 70, 512, 50, 0, 2, 0, 17, 512);
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 20, 250, 37, 301, 5, 17, 3, 7, 11, 133);   /* odd stride */
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 20, 250, 37, 301, 4, 16, 3, 8, 12, 134);
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 12, 301, 13, 301, 1, 0, 2, 0, 9, 301);     /* shared words */
    test_copy2d(ctx, rec, VKD_DTYPE_F16, 3, 5, 4, 3, 1, 1, 0, 2, 3, 1);
    test_copy2d(ctx, rec, VKD_DTYPE_F32, 3, 5, 4, 3, 1, 1, 0, 2, 3, 1);

    /* the fused attention inputs refuse caches of two dtypes and head_dim % 4 != 0 */
    {
        vkd_tensor *k = op_tensor(ctx, VKD_DTYPE_F32, 2, 64, "k"), *f = op_tensor(ctx, VKD_DTYPE_F32, 1, 32, "inv_freq");
        vkd_tensor *kc = op_tensor(ctx, VKD_DTYPE_F32, 4, 64, "kc"), *vc = op_tensor(ctx, VKD_DTYPE_F16, 4, 64, "vc");
        vkd_rec_begin(rec);
        vkd_result rr = vkd_op_qk_rope_kv(rec, NULL, k, k, NULL, NULL, 2, 0, 1, 64, 0, f, 1e-6f, kc, vc);
        CHECK(rr == VKD_ERR_INVALID && strstr(vkd_rec_error(rec)->msg, "caches"),
              "qk_rope_kv with f32 keys and f16 values accepted (%d)", rr);
        vkd_rec_submit(rec);
        vkd_rec_begin(rec);
        rr = vkd_op_qk_rope_kv(rec, NULL, k, k, NULL, NULL, 2, 0, 2, 30, 0, f, 1e-6f, kc, kc);
        CHECK(rr == VKD_ERR_INVALID && strstr(vkd_rec_error(rec)->msg, "head_dim 30"),
              "qk_rope_kv with head_dim 30 accepted (%d)", rr);
        vkd_rec_submit(rec);
        vkd_tensor *all[] = {k, f, kc, vc};
        for (int i = 0; i < 4; i++) vkd_tensor_destroy(all[i]);
    }

    /* out-of-range block is an error, not a write */
    {
        vkd_tensor *a = op_tensor(ctx, VKD_DTYPE_F32, 4, 8, "a"), *b = op_tensor(ctx, VKD_DTYPE_F16, 4, 8, "b");
        vkd_rec_begin(rec);
        vkd_result rr = vkd_op_copy2d(rec, b, 1, 4, a, 0, 0, 4, 4);
        CHECK(rr == VKD_ERR_RANGE, "copy2d out of range accepted (%d)", rr);
        vkd_rec_submit(rec);
        vkd_tensor_destroy(a);
        vkd_tensor_destroy(b);
    }

    uint32_t nval = vkd_ctx_validation_count(ctx);
    CHECK(nval == 0, "%u validation messages, first: %s", nval, vkd_ctx_validation_first(ctx));
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_layer");
}
