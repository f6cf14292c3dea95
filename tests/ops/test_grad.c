/* test_grad: the backward ops (ops/vkd_ops_grad.h).
 * For each op, two independent checks on odd shapes:
 *   1. the plain-C double backward (ref_grad.c) against central finite differences of the
 *      double forward, for L = sum(dy * forward(inputs)) with random dy (worst relative
 *      error printed; bound 1e-6 of the gradient's scale);
 *   2. the Vulkan backward against that reference on the same f32 inputs (bound per op,
 *      f32 accumulation), output buffers guarded by sentinels, NaN counted as failure.
 * Sizes that force a reduction to be split under lavapipe's loop limit are included; the
 * embedding backward is also checked for bit-identical repeats; the
 * attention also in its block-sparse training variant (vkd_op_attention_blocks_lse). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_grad.h"
#include "vkd_ops_grad.h"
#include "vkd_test.h"

static unsigned long long seed = 4242;
static vkd_ctx *ctx;
static vkd_rec *rec;

static double *rnd(size_t n, double s) {
    double *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * vkd_test_rand_normal(&seed));
    return x;
}

/* max |a - b| / (1 + max |b|), NaN = infinite */
static double err_d(const double *a, const double *b, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst / (1 + scale);
}
static double err_f(const float *a, const double *b, size_t n) {
    double *t = malloc((n ? n : 1) * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = a[i];
    double e = err_d(t, b, n);
    free(t);
    return e;
}

/* ---- finite differences ---------------------------------------------------------------- */

typedef void (*fwd_fn)(void *c, double *out);

/* d/d in[i] of sum(dy * f()) for every `step`-th i, compared with an[] */
static double fd(fwd_fn f, void *c, double *in, size_t n, const double *dy, size_t nout,
                 const double *an, size_t step) {
    double *o = malloc(nout * sizeof *o), *num = calloc(n, sizeof *num), *ref = calloc(n, sizeof *ref);
    size_t k = 0;
    for (size_t i = 0; i < n; i += step, k++) {
        double x0 = in[i], h = 1e-5 * (1 + fabs(x0)), lp = 0, lm = 0;
        in[i] = x0 + h;
        f(c, o);
        for (size_t j = 0; j < nout; j++) lp += dy[j] * o[j];
        in[i] = x0 - h;
        f(c, o);
        for (size_t j = 0; j < nout; j++) lm += dy[j] * o[j];
        in[i] = x0;
        num[k] = (lp - lm) / (2 * h);
        ref[k] = an[i];
    }
    double e = err_d(num, ref, k);
    free(o), free(num), free(ref);
    return e;
}

/* ---- device helpers -------------------------------------------------------------------- */

static const float SENT = -7777.25f;

/* f32 tensor of rows x cols holding x (double -> f32), plus one sentinel row */
static vkd_tensor *dev(const double *x, uint64_t rows, uint64_t cols, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, rows + 1, cols, name, &t, &err), "%s", err.msg);
    size_t n = (rows + 1) * cols;
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) f[i] = i < rows * cols && x ? (float)x[i] : SENT;
    REQUIRE(!vkd_tensor_upload(t, 0, f, n * 4, &err), "%s", err.msg);
    free(f);
    return t;
}

/* reads rows x cols; checks the sentinel row is intact */
static float *back(vkd_tensor *t, uint64_t rows, uint64_t cols) {
    vkd_error err = {0};
    size_t n = (rows + 1) * cols;
    float *f = malloc(n * 4);
    REQUIRE(!vkd_tensor_download(t, 0, f, n * 4, &err), "%s", err.msg);
    for (size_t i = rows * cols; i < n; i++) CHECK(f[i] == SENT, "sentinel after '%s' overwritten", t->name);
    return f;
}

static void submit(void) { REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg); }

/* ---- matmul ---------------------------------------------------------------------------- */

typedef struct mmc { const double *x, *w; uint32_t m, N, K; } mmc;
static void mm_f(void *c, double *out) {
    mmc *a = c;
    rg_matmul_fwd(out, a->x, a->w, a->m, a->N, a->K);
}

static void test_matmul(vkd_dtype dt, uint32_t m, uint32_t N, uint32_t K, bool fdcheck) {
    double *x = rnd((size_t)m * K, 1), *w = rnd((size_t)N * K, 0.5), *dy = rnd((size_t)m * N, 1);
    /* round W to its dtype so the reference sees what the device sees */
    void *wraw = malloc((size_t)N * K * 4);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        if (dt == VKD_DTYPE_BF16) ((uint16_t *)wraw)[i] = vkd_f32_to_bf16((float)w[i]), w[i] = vkd_bf16_to_f32(((uint16_t *)wraw)[i]);
        else if (dt == VKD_DTYPE_F16) ((uint16_t *)wraw)[i] = vkd_f32_to_f16((float)w[i]), w[i] = vkd_f16_to_f32(((uint16_t *)wraw)[i]);
        else ((float *)wraw)[i] = (float)w[i];
    }
    double *dx = malloc((size_t)m * K * 8), *dw = malloc((size_t)N * K * 8);
    rg_matmul_bwd(dx, dw, dy, x, w, m, N, K);
    if (fdcheck) {
        mmc c = {x, w, m, N, K};
        double ex = fd(mm_f, &c, x, (size_t)m * K, dy, (size_t)m * N, dx, 1);
        double ew = fd(mm_f, &c, w, (size_t)N * K, dy, (size_t)m * N, dw, 1);
        fprintf(stderr, "matmul %ux%u <- %u rows: reference vs finite differences dx %.2g dw %.2g\n", N, K, m, ex, ew);
        CHECK(ex < 1e-6 && ew < 1e-6, "matmul reference gradient vs FD: %.3g %.3g", ex, ew);
    }
    vkd_error err = {0};
    vkd_tensor *tw;
    REQUIRE(!vkd_tensor_create_2d(ctx, dt, N, K, "w", &tw, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tw, 0, wraw, (size_t)N * K * vkd_dtype_size(dt), &err), "%s", err.msg);
    /* dx accumulates onto a known start (dx0), dw is written; rows offset by 1 */
    double *dx0 = rnd((size_t)(m + 1) * K, 1), *xo = calloc((size_t)(m + 1) * K, 8), *dyo = calloc((size_t)(m + 1) * N, 8);
    memcpy(xo + K, x, (size_t)m * K * 8);
    memcpy(dyo + N, dy, (size_t)m * N * 8);
    vkd_tensor *tx = dev(xo, m + 1, K, "x"), *tdy = dev(dyo, m + 1, N, "dy"), *tdx = dev(dx0, m + 1, K, "dx"),
               *tdw = dev(NULL, N, K, "dw");
    vkd_rec_begin(rec);
    vkd_op_matmul_backward(rec, tdx, 1, tdw, tdy, 1, tx, 1, tw, m, false);
    submit();
    /* dx rows 1.. were written (not accumulated): compare; then accumulate a second time */
    float *gdx = back(tdx, m + 1, K), *gdw = back(tdw, N, K);
    double e1 = err_f(gdx + K, dx, (size_t)m * K), e2 = err_f(gdw, dw, (size_t)N * K);
    CHECK(gdx[0] == (float)dx0[0], "dx row 0 (outside the rows) changed");
    vkd_rec_begin(rec);
    vkd_op_matmul_backward(rec, tdx, 1, tdw, tdy, 1, tx, 1, tw, m, true);
    submit();
    float *gdx2 = back(tdx, m + 1, K), *gdw2 = back(tdw, N, K);
    for (size_t i = 0; i < (size_t)m * K; i++) dx[i] *= 2;
    for (size_t i = 0; i < (size_t)N * K; i++) dw[i] *= 2;
    double e3 = err_f(gdx2 + K, dx, (size_t)m * K), e4 = err_f(gdw2, dw, (size_t)N * K);
    fprintf(stderr, "matmul_backward %s %ux%u <- %u rows: dx %.2g dw %.2g (accumulated: %.2g %.2g)\n",
            vkd_dtype_name(dt), N, K, m, e1, e2, e3, e4);
    CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5 && e4 < 1e-5, "matmul_backward errors %.3g %.3g %.3g %.3g", e1, e2, e3, e4);
    vkd_tensor_destroy(tw), vkd_tensor_destroy(tx), vkd_tensor_destroy(tdy), vkd_tensor_destroy(tdx), vkd_tensor_destroy(tdw);
    free(x), free(w), free(dy), free(wraw), free(dx), free(dw), free(dx0), free(xo), free(dyo);
    free(gdx), free(gdw), free(gdx2), free(gdw2);
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

typedef struct rnc { const double *x, *w; uint32_t groups, dim; double eps; } rnc;
static void rn_f(void *c, double *out) {
    rnc *a = c;
    rg_rmsnorm_fwd(out, a->x, a->w, a->groups, a->dim, a->eps);
}

static void test_rmsnorm(vkd_dtype dt, uint32_t groups, uint32_t dim, bool with_dw) {
    const double eps = 1e-6;
    double *x = rnd((size_t)groups * dim, 1), *w = rnd(dim, 1), *dy = rnd((size_t)groups * dim, 1);
    void *wraw = malloc(dim * 4);
    for (uint32_t i = 0; i < dim; i++) {
        if (dt == VKD_DTYPE_BF16) ((uint16_t *)wraw)[i] = vkd_f32_to_bf16((float)w[i]), w[i] = vkd_bf16_to_f32(((uint16_t *)wraw)[i]);
        else if (dt == VKD_DTYPE_F16) ((uint16_t *)wraw)[i] = vkd_f32_to_f16((float)w[i]), w[i] = vkd_f16_to_f32(((uint16_t *)wraw)[i]);
        else ((float *)wraw)[i] = (float)w[i];
    }
    double *dx = malloc((size_t)groups * dim * 8), *dw = malloc(dim * 8);
    rg_rmsnorm_bwd(dx, dw, dy, x, w, groups, dim, eps);
    rnc c = {x, w, groups, dim, eps};
    double ex = fd(rn_f, &c, x, (size_t)groups * dim, dy, (size_t)groups * dim, dx, 1);
    double ew = fd(rn_f, &c, w, dim, dy, (size_t)groups * dim, dw, 1);
    CHECK(ex < 1e-6 && ew < 1e-6, "rmsnorm reference gradient vs FD: %.3g %.3g", ex, ew);
    vkd_error err = {0};
    vkd_tensor *tw;
    REQUIRE(!vkd_tensor_create_2d(ctx, dt, 1, dim, "w", &tw, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tw, 0, wraw, (size_t)dim * vkd_dtype_size(dt), &err), "%s", err.msg);
    vkd_tensor *tx = dev(x, groups, dim, "x"), *tdy = dev(dy, groups, dim, "dy"), *tdx = dev(NULL, groups, dim, "dx"),
               *tdw = dev(NULL, 1, dim, "dw"), *trs = dev(NULL, 1, groups, "rstd");
    vkd_rec_begin(rec);
    vkd_op_rmsnorm_backward(rec, tdx, with_dw ? tdw : NULL, trs, tdy, tx, tw, groups, dim, (float)eps, false);
    submit();
    float *gdx = back(tdx, groups, dim), *gdw = back(tdw, 1, dim);
    double e1 = err_f(gdx, dx, (size_t)groups * dim), e2 = with_dw ? err_f(gdw, dw, dim) : 0;
    fprintf(stderr, "rmsnorm_backward %s %u groups of %u%s: FD dx %.2g dw %.2g; device dx %.2g dw %.2g\n",
            vkd_dtype_name(dt), groups, dim, with_dw ? " (+dw)" : "", ex, ew, e1, e2);
    CHECK(e1 < 1e-5 && e2 < 1e-5, "rmsnorm_backward errors %.3g %.3g", e1, e2);
    if (!with_dw) CHECK(gdw[0] == SENT, "dw written without being asked");
    vkd_tensor_destroy(tw), vkd_tensor_destroy(tx), vkd_tensor_destroy(tdy), vkd_tensor_destroy(tdx);
    vkd_tensor_destroy(tdw), vkd_tensor_destroy(trs);
    free(x), free(w), free(dy), free(wraw), free(dx), free(dw), free(gdx), free(gdw);
}

/* ---- rope ------------------------------------------------------------------------------ */

typedef struct roc { const double *x; uint32_t rows, heads, hd, pos0; const float *inv; } roc;
static void ro_f(void *c, double *out) {
    roc *a = c;
    memcpy(out, a->x, (size_t)a->rows * a->heads * a->hd * 8);
    rg_rope_fwd(out, a->rows, a->heads, a->hd, a->pos0, a->inv);
}

static void test_rope(uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0) {
    size_t n = (size_t)rows * heads * hd;
    float *inv = malloc(hd / 2 * 4);
    for (uint32_t j = 0; j < hd / 2; j++) inv[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)hd);
    double *x = rnd(n, 1), *dy = rnd(n, 1), *dx = malloc(n * 8);
    memcpy(dx, dy, n * 8);
    rg_rope_bwd(dx, rows, heads, hd, pos0, inv);
    roc c = {x, rows, heads, hd, pos0, inv};
    double ef = fd(ro_f, &c, x, n, dy, n, dx, 1);
    CHECK(ef < 1e-6, "rope reference gradient vs FD: %.3g", ef);
    vkd_error err = {0};
    vkd_tensor *ti;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, hd / 2, "inv_freq", &ti, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(ti, 0, inv, hd / 2 * 4, &err), "%s", err.msg);
    vkd_tensor *t = dev(dy, rows, (uint64_t)heads * hd, "dx");
    vkd_rec_begin(rec);
    vkd_op_rope_backward(rec, t, 0, rows, heads, hd, pos0, NULL, ti);
    submit();
    float *g = back(t, rows, (uint64_t)heads * hd);
    double e = err_f(g, dx, n);
    fprintf(stderr, "rope_backward %u rows x %u heads x %u at %u: FD %.2g, device %.2g\n", rows, heads, hd, pos0, ef, e);
    CHECK(e < 2e-6, "rope_backward error %.3g", e);
    vkd_tensor_destroy(ti), vkd_tensor_destroy(t);
    free(inv), free(x), free(dy), free(dx), free(g);
}

/* ---- swiglu ---------------------------------------------------------------------------- */

typedef struct swc { const double *g, *u; uint64_t n; } swc;
static void sw_f(void *c, double *out) {
    swc *a = c;
    rg_swiglu_fwd(out, a->g, a->u, a->n);
}

static void test_swiglu(uint64_t n) {
    double *g = rnd(n, 2), *u = rnd(n, 1), *dh = rnd(n, 1), *dg = malloc(n * 8), *du = malloc(n * 8);
    rg_swiglu_bwd(dg, du, dh, g, u, n);
    swc c = {g, u, n};
    size_t step = n > 2000 ? n / 997 : 1;
    double e1 = fd(sw_f, &c, g, n, dh, n, dg, step), e2 = fd(sw_f, &c, u, n, dh, n, du, step);
    CHECK(e1 < 1e-6 && e2 < 1e-6, "swiglu reference gradient vs FD: %.3g %.3g", e1, e2);
    vkd_tensor *tg = dev(g, 1, n, "g"), *tu = dev(u, 1, n, "u"), *tdh = dev(dh, 1, n, "dh"),
               *tdg = dev(NULL, 1, n, "dg"), *tdu = dev(NULL, 1, n, "du");
    vkd_rec_begin(rec);
    vkd_op_swiglu_backward(rec, tdg, tdu, tdh, tg, tu, n);
    submit();
    float *gg = back(tdg, 1, n), *gu = back(tdu, 1, n);
    double d1 = err_f(gg, dg, n), d2 = err_f(gu, du, n);
    fprintf(stderr, "swiglu_backward n=%llu: FD %.2g %.2g, device dg %.2g du %.2g\n", (unsigned long long)n, e1, e2, d1, d2);
    CHECK(d1 < 2e-6 && d2 < 2e-6, "swiglu_backward errors %.3g %.3g", d1, d2);
    vkd_tensor_destroy(tg), vkd_tensor_destroy(tu), vkd_tensor_destroy(tdh), vkd_tensor_destroy(tdg), vkd_tensor_destroy(tdu);
    free(g), free(u), free(dh), free(dg), free(du), free(gg), free(gu);
}

/* ---- embedding -------------------------------------------------------------------------- */

typedef struct emc { const double *table; const int32_t *ids; uint32_t m, V, H; } emc;
static void em_f(void *c, double *out) {
    emc *a = c;
    rg_embed_fwd(out, a->table, a->ids, a->m, a->V, a->H);
}

static vkd_tensor *dev_i32(const int32_t *x, uint64_t n, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, n ? n : 1, name, &t, &err), "%s", err.msg);
    if (n) REQUIRE(!vkd_tensor_upload(t, 0, x, n * 4, &err), "%s", err.msg);
    return t;
}

/* m ids over a vocabulary of V (some repeated, a few outside [0, V)); dtable written onto a
 * random start, then accumulated a second time */
static void test_embed(uint32_t m, uint32_t V, uint32_t H, bool fdcheck) {
    int32_t *ids = malloc((m ? m : 1) * 4);
    for (uint32_t i = 0; i < m; i++) {
        uint32_t u = (uint32_t)(vkd_test_rand_u64(&seed) >> 33);
        /* skewed: id 1 frequent (a long group), 1 in 23 outside the vocabulary */
        ids[i] = i % 23 == 22 ? (i % 2 ? -1 : (int32_t)V) : i % 3 == 0 ? 1 % (int32_t)V : (int32_t)(u % V);
    }
    double *table = rnd((size_t)V * H, 1), *dy = rnd((size_t)m * H, 1), *dt = malloc((size_t)V * H * 8);
    rg_embed_bwd(dt, dy, ids, m, V, H);
    double efd = 0;
    if (fdcheck) {
        emc c = {table, ids, m, V, H};
        efd = fd(em_f, &c, table, (size_t)V * H, dy, (size_t)m * H, dt, 1);
        CHECK(efd < 1e-6, "embed reference gradient vs FD: %.3g", efd);
    }
    int32_t *offsets = malloc(((size_t)V + 1) * 4), *order = malloc((m ? m : 1) * 4);
    vkd_embed_grad_index(ids, m, V, offsets, order);
    for (uint32_t v = 0; v < V; v++) /* the index: groups by id, rows ascending */
        for (int32_t p = offsets[v]; p < offsets[v + 1]; p++)
            CHECK(ids[order[p]] == (int32_t)v && (p == offsets[v] || order[p] > order[p - 1]),
                  "embed index: position %d of id %u", p, v);
    double *start = rnd((size_t)V * H, 1);
    vkd_tensor *tdy = dev(dy, m, H, "dy"), *tdt = dev(start, V, H, "dtable"), *tor = dev_i32(order, m, "order"),
               *tof = dev_i32(offsets, (uint64_t)V + 1, "offsets");
    vkd_rec_begin(rec);
    vkd_op_embed_backward(rec, tdt, tdy, tor, tof, m, V, H, false);
    submit();
    float *g1 = back(tdt, V, H);
    double e1 = err_f(g1, dt, (size_t)V * H);
    vkd_rec_begin(rec);
    vkd_op_embed_backward(rec, tdt, tdy, tor, tof, m, V, H, true);
    submit();
    float *g2 = back(tdt, V, H);
    for (size_t j = 0; j < (size_t)V * H; j++) dt[j] *= 2;
    double e2 = err_f(g2, dt, (size_t)V * H);
    /* determinism: the same call twice gives the same bits */
    vkd_rec_begin(rec);
    vkd_op_embed_backward(rec, tdt, tdy, tor, tof, m, V, H, false);
    submit();
    float *g3 = back(tdt, V, H);
    CHECK(!memcmp(g1, g3, (size_t)V * H * 4), "embed_backward not bit-identical across runs");
    fprintf(stderr, "embed_backward %u ids, %u x %u: FD %.2g, device %.2g (accumulated %.2g)\n", m, V, H, efd, e1, e2);
    CHECK(e1 < 2e-6 && e2 < 2e-6, "embed_backward errors %.3g %.3g", e1, e2);
    vkd_tensor_destroy(tdy), vkd_tensor_destroy(tdt), vkd_tensor_destroy(tor), vkd_tensor_destroy(tof);
    free(ids), free(table), free(dy), free(dt), free(offsets), free(order), free(start), free(g1), free(g2), free(g3);
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct atc { const double *q, *k, *v; const rg_attn *a; } atc;
static void at_f(void *c, double *out) {
    atc *t = c;
    rg_attention_fwd(out, NULL, t->q, t->k, t->v, t->a);
}

static void test_attention(uint32_t q_rows, uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                           uint32_t kv_stride, uint32_t q_pos0, bool causal, bool fdcheck) {
    rg_attn a = {q_rows, kv_len, n_q, n_kv, hd, kv_stride, q_pos0, causal, 1 / sqrt((double)hd)};
    size_t nq = (size_t)q_rows * n_q * hd, nk = (size_t)kv_len * kv_stride;
    double *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    double *o = malloc(nq * 8), *lse = malloc((size_t)q_rows * n_q * 8);
    rg_attention_fwd(o, lse, q, k, v, &a);
    for (size_t i = 0; i < nq; i++) o[i] = (float)o[i]; /* what the device forward would store */
    for (size_t i = 0; i < (size_t)q_rows * n_q; i++) lse[i] = (float)lse[i];
    double *dq = malloc(nq * 8), *dk = malloc(nk * 8), *dv = malloc(nk * 8);
    double ef[3] = {0};
    if (fdcheck) {
        double *oe = malloc(nq * 8), *le = malloc((size_t)q_rows * n_q * 8);
        rg_attention_fwd(oe, le, q, k, v, &a); /* exact o, lse for the FD check */
        rg_attention_bwd(dq, dk, dv, dout, q, k, v, oe, le, &a);
        atc c = {q, k, v, &a};
        ef[0] = fd(at_f, &c, q, nq, dout, nq, dq, 1);
        ef[1] = fd(at_f, &c, k, nk, dout, nq, dk, 1);
        ef[2] = fd(at_f, &c, v, nk, dout, nq, dv, 1);
        CHECK(ef[0] < 1e-6 && ef[1] < 1e-6 && ef[2] < 1e-6, "attention reference vs FD: %.3g %.3g %.3g",
              ef[0], ef[1], ef[2]);
        free(oe), free(le);
    }
    rg_attention_bwd(dq, dk, dv, dout, q, k, v, o, lse, &a);
    vkd_tensor *tq = dev(q, q_rows, (uint64_t)n_q * hd, "q"), *tk = dev(k, kv_len, kv_stride, "k"),
               *tv = dev(v, kv_len, kv_stride, "v"), *to = dev(o, q_rows, (uint64_t)n_q * hd, "o"),
               *tl = dev(lse, q_rows, n_q, "lse"), *tdo = dev(dout, q_rows, (uint64_t)n_q * hd, "do"),
               *tdq = dev(NULL, q_rows, (uint64_t)n_q * hd, "dq"), *tdk = dev(NULL, kv_len, kv_stride, "dk"),
               *tdv = dev(NULL, kv_len, kv_stride, "dv");
    vkd_rec_begin(rec);
    vkd_op_attention_backward(rec, tdq, tdk, tdv, tdo, tq, tk, tv, to, tl, q_rows, kv_len, n_q, n_kv,
                              hd, q_pos0, causal, (float)a.scale, false);
    submit();
    float *gq = back(tdq, q_rows, (uint64_t)n_q * hd), *gk = back(tdk, kv_len, kv_stride), *gv = back(tdv, kv_len, kv_stride);
    /* columns past n_kv*hd of a wider k row are not the op's: compare the heads only */
    for (size_t j = 0; j < kv_len; j++)
        for (size_t c = (size_t)n_kv * hd; c < kv_stride; c++) gk[j * kv_stride + c] = (float)dk[j * kv_stride + c], gv[j * kv_stride + c] = (float)dv[j * kv_stride + c];
    double e1 = err_f(gq, dq, nq), e2 = err_f(gk, dk, nk), e3 = err_f(gv, dv, nk);
    fprintf(stderr, "attention_backward %u rows x %u keys, %u/%u heads of %u, %s%s: FD %.2g %.2g %.2g; device dq %.2g dk %.2g dv %.2g\n",
            q_rows, kv_len, n_q, n_kv, hd, causal ? "causal" : "non-causal", fdcheck ? "" : " (no FD: large)",
            ef[0], ef[1], ef[2], e1, e2, e3);
    CHECK(e1 < 2e-5 && e2 < 2e-5 && e3 < 2e-5, "attention_backward errors %.3g %.3g %.3g", e1, e2, e3);
    vkd_tensor *all[] = {tq, tk, tv, to, tl, tdo, tdq, tdk, tdv};
    for (int i = 0; i < 9; i++) vkd_tensor_destroy(all[i]);
    free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv), free(gq), free(gk), free(gv);
}

/* The block-sparse training mask: nblk blocks of `block` rows against n_ctx context rows,
 * anchors given (the last may exceed n_ctx: clamped). The device forward (o, lse) and
 * backward against the double reference, which finite differences check first. */
static void test_attention_blocks(uint32_t nblk, uint32_t block, uint32_t n_ctx, const int32_t *anchors,
                                  uint32_t n_q, uint32_t n_kv, uint32_t hd, uint32_t kv_stride, bool fdcheck) {
    uint32_t q_rows = nblk * block, kv_len = n_ctx + q_rows;
    rg_attn a = {q_rows, kv_len, n_q, n_kv, hd, kv_stride, n_ctx, false, 1 / sqrt((double)hd), block, anchors};
    size_t nq = (size_t)q_rows * n_q * hd, nk = (size_t)kv_len * kv_stride, nl = (size_t)q_rows * n_q;
    double *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    double *o = malloc(nq * 8), *lse = malloc(nl * 8);
    double *dq = malloc(nq * 8), *dk = malloc(nk * 8), *dv = malloc(nk * 8);
    rg_attention_fwd(o, lse, q, k, v, &a);
    double ef[3] = {0};
    if (fdcheck) {
        rg_attention_bwd(dq, dk, dv, dout, q, k, v, o, lse, &a);
        atc c = {q, k, v, &a};
        ef[0] = fd(at_f, &c, q, nq, dout, nq, dq, 1);
        ef[1] = fd(at_f, &c, k, nk, dout, nq, dk, 1);
        ef[2] = fd(at_f, &c, v, nk, dout, nq, dv, 1);
        CHECK(ef[0] < 1e-6 && ef[1] < 1e-6 && ef[2] < 1e-6, "block attention reference vs FD: %.3g %.3g %.3g",
              ef[0], ef[1], ef[2]);
    }
    vkd_error err = {0};
    vkd_tensor *tan;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, nblk, "anchors", &tan, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tan, 0, anchors, nblk * 4, &err), "%s", err.msg);
    vkd_tensor *tq = dev(q, q_rows, (uint64_t)n_q * hd, "q"), *tk = dev(k, kv_len, kv_stride, "k"),
               *tv = dev(v, kv_len, kv_stride, "v"), *to = dev(NULL, q_rows, (uint64_t)n_q * hd, "o"),
               *tl = dev(NULL, q_rows, n_q, "lse");
    vkd_rec_begin(rec);
    vkd_op_attention_blocks_lse(rec, to, tl, tq, tk, tv, tan, q_rows, block, n_ctx, n_q, n_kv, hd, (float)a.scale);
    submit();
    float *go = back(to, q_rows, (uint64_t)n_q * hd), *gl = back(tl, q_rows, n_q);
    double e_o = err_f(go, o, nq), e_l = err_f(gl, lse, nl);
    /* the backward reads the f32 forward outputs, as training does */
    for (size_t i = 0; i < nq; i++) o[i] = (float)o[i];
    for (size_t i = 0; i < nl; i++) lse[i] = (float)lse[i];
    rg_attention_bwd(dq, dk, dv, dout, q, k, v, o, lse, &a);
    vkd_tensor *tdo = dev(dout, q_rows, (uint64_t)n_q * hd, "do"), *tdq = dev(NULL, q_rows, (uint64_t)n_q * hd, "dq"),
               *tdk = dev(NULL, kv_len, kv_stride, "dk"), *tdv = dev(NULL, kv_len, kv_stride, "dv"),
               *to2 = dev(o, q_rows, (uint64_t)n_q * hd, "o32"), *tl2 = dev(lse, q_rows, n_q, "lse32");
    vkd_rec_begin(rec);
    vkd_op_attention_blocks_backward(rec, tdq, tdk, tdv, tdo, tq, tk, tv, to2, tl2, tan, q_rows, block, n_ctx, n_q,
                                     n_kv, hd, (float)a.scale, false);
    submit();
    float *gq = back(tdq, q_rows, (uint64_t)n_q * hd), *gk = back(tdk, kv_len, kv_stride), *gv = back(tdv, kv_len, kv_stride);
    for (size_t j = 0; j < kv_len; j++)
        for (size_t c = (size_t)n_kv * hd; c < kv_stride; c++) gk[j * kv_stride + c] = (float)dk[j * kv_stride + c], gv[j * kv_stride + c] = (float)dv[j * kv_stride + c];
    double e1 = err_f(gq, dq, nq), e2 = err_f(gk, dk, nk), e3 = err_f(gv, dv, nk);
    fprintf(stderr, "attention_blocks %u blocks of %u, %u context rows, %u/%u heads of %u%s: FD %.2g %.2g %.2g; "
            "device o %.2g lse %.2g dq %.2g dk %.2g dv %.2g\n", nblk, block, n_ctx, n_q, n_kv, hd,
            fdcheck ? "" : " (no FD: large)", ef[0], ef[1], ef[2], e_o, e_l, e1, e2, e3);
    CHECK(e_o < 1e-5 && e_l < 1e-5, "attention_blocks forward errors %.3g %.3g", e_o, e_l);
    CHECK(e1 < 2e-5 && e2 < 2e-5 && e3 < 2e-5, "attention_blocks_backward errors %.3g %.3g %.3g", e1, e2, e3);
    vkd_tensor *all[] = {tan, tq, tk, tv, to, tl, tdo, tdq, tdk, tdv, to2, tl2};
    for (int i = 0; i < 12; i++) vkd_tensor_destroy(all[i]);
    free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv);
    free(go), free(gl), free(gq), free(gk), free(gv);
}

static void test_errors(void) {
    vkd_error err = {0};
    vkd_tensor *a, *b;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 4, 8, "a", &a, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 4, 8, "b", &b, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_swiglu_backward(rec, a, a, b, b, b, 32) == VKD_ERR_INVALID, "aliased swiglu grads accepted");
    vkd_rec_submit(rec);
    vkd_rec_begin(rec);
    CHECK(vkd_op_rmsnorm_backward(rec, a, NULL, NULL, b, a, b, 4, 8, 1e-6f, false) == VKD_ERR_INVALID,
          "rmsnorm dx aliasing x accepted");
    vkd_rec_submit(rec);
    vkd_rec_begin(rec);
    CHECK(vkd_op_attention_backward(rec, a, a, a, a, a, a, a, a, a, 1, 1, 1, 1, 6, 0, false, 1, false) == VKD_ERR_INVALID,
          "head_dim 6 accepted");
    vkd_rec_submit(rec);
    vkd_tensor_destroy(a), vkd_tensor_destroy(b);
}

int main(void) {
    vkd_error err = {0};
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    test_matmul(VKD_DTYPE_F32, 5, 37, 29, true);
    test_matmul(VKD_DTYPE_F16, 3, 45, 67, true);
    test_matmul(VKD_DTYPE_BF16, 17, 13, 71, true);
    /* K % 4 == 0: dx's four-column loads; 19 and 9 rows: partial 8-row tiles */
    test_matmul(VKD_DTYPE_BF16, 19, 23, 36, true);
    test_matmul(VKD_DTYPE_F16, 9, 11, 20, true);
    test_matmul(VKD_DTYPE_F32, 1, 7, 12, true);
    test_matmul(VKD_DTYPE_F32, 3, 41000, 5, false);   /* dx reduction over N split in two */
    test_matmul(VKD_DTYPE_F32, 33000, 3, 5, false);   /* dw reduction over rows split in two */
    test_rmsnorm(VKD_DTYPE_F32, 7, 45, true);
    test_rmsnorm(VKD_DTYPE_BF16, 15, 12, true);       /* per-head: rows x heads groups of head_dim */
    test_rmsnorm(VKD_DTYPE_F16, 3, 101, false);
    test_rope(5, 3, 16, 11);
    test_rope(2, 1, 6, 1000);
    test_swiglu(1001);
    test_swiglu(300001);
    test_embed(101, 37, 45, true);
    test_embed(7, 3, 5, true);
    test_embed(33000, 3, 5, false);    /* id 1's group split under the loop budget */
    test_embed(0, 4, 9, false);        /* no ids: zeros written */
    /* DFlash shape: 5 block rows against 8 context + 5 block keys, non-causal, GQA 4/2 */
    test_attention(5, 13, 4, 2, 8, 16, 8, false, true);
    test_attention(3, 7, 6, 2, 12, 28, 4, true, true);    /* causal, k rows wider than the heads */
    test_attention(2, 9500, 2, 1, 8, 8, 0, false, false); /* dq over keys split in two */
    test_attention(3000, 3, 8, 1, 4, 4, 2997, true, false); /* dk/dv over rows split */
    /* block-sparse: GQA 6/2, head 12 in rows of 28; anchors mid, full (clamped), 0, 1 */
    static const int32_t an1[] = {4, 40, 0, 1};
    test_attention_blocks(4, 5, 11, an1, 6, 2, 12, 28, true);
    static const int32_t an2[] = {3, 1, 2};
    test_attention_blocks(3, 3, 3, an2, 3, 3, 4, 12, true); /* MHA, head 4 */
    static const int32_t an3[] = {9500, 17};
    test_attention_blocks(2, 4, 9500, an3, 2, 1, 8, 8, false); /* dq over keys split in two */
    int32_t *an4 = malloc(750 * 4);
    for (int b = 0; b < 750; b++) an4[b] = 1 + b % 7;
    test_attention_blocks(750, 4, 7, an4, 8, 1, 4, 4, false); /* dk/dv over rows split */
    free(an4);
    test_errors();
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_grad");
}
