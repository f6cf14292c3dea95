/* test_logits: softmax / log_softmax, argmax, topk, token_stats and kl_tvd against the
 * double-precision references of ref_logits.c, on random rows (Gaussian and heavily tied),
 * lengths that are not multiples of the workgroup, vocabulary-sized rows (151936), a row
 * offset and stride, and logits split across bindings. Output tensors carry sentinels past
 * their range. Error bounds (f32 activations, double reference):
 *   softmax     |y - ref| <= 1e-5 * ref + 1e-12          (exp of a rounded argument)
 *   log_softmax |y - ref| <= 1e-5 * (1 + |ref|)
 *   token_stats gold exact, |lse - ref| <= 1e-5 * (1 + |ref|), rank exact
 *   kl_tvd      |kl - ref| <= 1e-4 * ref + 2e-5, |tvd - ref| <= 2e-5; KL(p||p) = TVD = 0
 *   argmax, topk: exact (indices and values). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_logits.h"
#include "op_util.h"
#include "vkd_test.h"

#define SENT 7777.25f

static unsigned long long rng = 20261123;

static void up(vkd_tensor *t, const void *src, uint64_t bytes) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_upload(t, 0, src, bytes, &err), "%s", err.msg);
}

static void down(const vkd_tensor *t, void *dst, uint64_t bytes) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_download(t, 0, dst, bytes, &err), "%s", err.msg);
}

/* kind 0: N(0, 3^2); kind 1: values on a grid of 8 levels (many ties); kind 2: N(0,1) */
static void fill_logits(float *x, size_t n, int kind) {
    for (size_t i = 0; i < n; i++) {
        double g = vkd_test_rand_normal(&rng);
        x[i] = kind == 1 ? (float)floor(g * 2.0) : (float)(g * (kind == 0 ? 3.0 : 1.0));
    }
}

static void fill_sent(void *p, size_t n) {
    float *f = p;
    for (size_t i = 0; i < n; i++) f[i] = SENT;
}

static void run(vkd_rec *rec) {
    CHECK(vkd_rec_submit(rec) == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);
}

/* One case: `rows` rows of length n read from an x tensor of rows+row0+1 rows x cols. */
static void test_case(vkd_ctx *ctx, uint32_t rows, uint32_t n, uint32_t cols, uint32_t row0, int kind,
                      uint32_t k) {
    uint32_t xrows = rows + row0 + 1;
    size_t xn = (size_t)xrows * cols;
    float *x = malloc(xn * 4), *xq = malloc(xn * 4);
    fill_logits(x, xn, kind);
    fill_logits(xq, xn, kind == 1 ? 1 : 2);
    /* a few rows of q close to p (realistic draft vs target) */
    for (size_t i = 0; i < xn; i++)
        if ((i / cols) % 2 == 0) xq[i] = x[i] + 0.3f * xq[i];
    vkd_tensor *tx = op_tensor(ctx, VKD_DTYPE_F32, xrows, cols, "x");
    vkd_tensor *tq = op_tensor(ctx, VKD_DTYPE_F32, xrows, cols, "xq");
    up(tx, x, xn * 4);
    up(tq, xq, xn * 4);
    uint32_t ycols = n + 3;
    size_t yn = (size_t)(rows + 1) * ycols;
    vkd_tensor *ty = op_tensor(ctx, VKD_DTYPE_F32, rows + 1, ycols, "y");
    vkd_tensor *tl = op_tensor(ctx, VKD_DTYPE_F32, rows + 1, ycols, "ylog");
    vkd_tensor *ti = op_tensor(ctx, VKD_DTYPE_I32, 1, rows + 4, "argmax");
    vkd_tensor *tki = op_tensor(ctx, VKD_DTYPE_I32, rows + 1, k, "topk_idx");
    vkd_tensor *tkv = op_tensor(ctx, VKD_DTYPE_F32, rows + 1, k, "topk_val");
    vkd_tensor *tids = op_tensor(ctx, VKD_DTYPE_I32, 1, rows, "ids");
    vkd_tensor *tst = op_tensor(ctx, VKD_DTYPE_F32, rows + 1, 3, "stats");
    vkd_tensor *tkl = op_tensor(ctx, VKD_DTYPE_F32, 4 * (rows + 1), 2, "kl");
    float *y = malloc(yn * 4), *yl = malloc(yn * 4);
    int32_t *am = malloc((rows + 4) * 4), *ki = malloc((size_t)(rows + 1) * k * 4);
    float *kv = malloc((size_t)(rows + 1) * k * 4), *st = malloc((rows + 1) * 12);
    float *kl = malloc((size_t)(rows + 1) * 32);
    int32_t *ids = malloc(rows * 4);
    fill_sent(y, yn); up(ty, y, yn * 4); up(tl, y, yn * 4);
    fill_sent(am, rows + 4); up(ti, am, (rows + 4) * 4);
    fill_sent(ki, (size_t)(rows + 1) * k); up(tki, ki, (size_t)(rows + 1) * k * 4);
    fill_sent(kv, (size_t)(rows + 1) * k); up(tkv, kv, (size_t)(rows + 1) * k * 4);
    fill_sent(st, (rows + 1) * 3); up(tst, st, (rows + 1) * 12);
    fill_sent(kl, (rows + 1) * 8); up(tkl, kl, (rows + 1) * 32);
    for (uint32_t r = 0; r < rows; r++) {
        /* gold tokens: the argmax, a random one, an out-of-range one */
        uint32_t mode = r % 4;
        const float *xr = x + (size_t)(row0 + r) * cols;
        ids[r] = mode == 0 ? (int32_t)ref_argmax(xr, n) : mode == 3 && r > 0 ? (r % 8 == 3 ? -1 : (int32_t)n)
                                                          : (int32_t)(vkd_test_rand_u64(&rng) % n);
    }
    up(tids, ids, rows * 4);
    static const float scales[4][2] = {{4, 1}, {1, 2}, {2, 4}, {1, 1}};

    vkd_error err = {0};
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_softmax(rec, ty, tx, row0, rows, n, 1.0f, false);
    vkd_op_softmax(rec, tl, tx, row0, rows, n, 0.5f, true);
    vkd_op_argmax(rec, ti, tx, row0, rows, n);
    vkd_op_topk(rec, tki, tkv, tx, row0, rows, n, k);
    vkd_op_token_stats(rec, tst, tx, row0, tids, rows, n);
    run(rec);
    /* kl_tvd: four scale pairs, then KL(p||p) */
    for (int s = 0; s < 5; s++) {
        float ps = scales[s % 4][0], qs = scales[s % 4][1];
        vkd_rec_begin(rec);
        if (s < 4) vkd_op_kl_tvd(rec, tkl, tx, row0, ps, tq, row0, qs, rows, n);
        else vkd_op_kl_tvd(rec, tkl, tx, row0, 2.0f, tx, row0, 2.0f, rows, n);
        vkd_rec_read(rec, tkl, 0, kl, (rows + 1) * 8);
        run(rec);
        double wk = 0, wt = 0;
        for (uint32_t r = 0; r < rows; r++) {
            const float *xr = x + (size_t)(row0 + r) * cols;
            const float *qr = (s < 4 ? xq : x) + (size_t)(row0 + r) * cols;
            double ref[2];
            if (s < 4) ref_kl_tvd(ref, xr, ps, qr, qs, n);
            else ref_kl_tvd(ref, xr, 2.0f, qr, 2.0f, n);
            double ek = fabs(kl[2 * r] - ref[0]), et = fabs(kl[2 * r + 1] - ref[1]);
            CHECK(isfinite(kl[2 * r]) && isfinite(kl[2 * r + 1]), "kl/tvd not finite, row %u", r);
            CHECK(ek <= 1e-4 * ref[0] + 2e-5, "kl row %u scales %g/%g: %.8g vs %.8g", r, ps, qs, kl[2 * r], ref[0]);
            CHECK(et <= 2e-5, "tvd row %u: %.8g vs %.8g", r, kl[2 * r + 1], ref[1]);
            CHECK(kl[2 * r + 1] >= 0 && kl[2 * r + 1] <= 1, "tvd outside [0,1]: %g", kl[2 * r + 1]);
            if (s == 4) CHECK(fabs(kl[2 * r]) < 1e-6 && kl[2 * r + 1] < 1e-6, "KL(p||p) = %g, TVD %g", kl[2 * r], kl[2 * r + 1]);
            if (ek > wk) wk = ek;
            if (et > wt) wt = et;
        }
        CHECK(kl[2 * rows] == SENT && kl[2 * rows + 1] == SENT, "kl sentinel overwritten");
        fprintf(stderr, "  %ux%-6u kind %d kl_tvd scales %g/%g: worst |dKL| %.3g |dTVD| %.3g\n", rows, n, kind,
                s < 4 ? ps : 2.0, s < 4 ? qs : 2.0, wk, wt);
    }

    down(ty, y, yn * 4);
    down(tl, yl, yn * 4);
    down(ti, am, (rows + 4) * 4);
    down(tki, ki, (size_t)(rows + 1) * k * 4);
    down(tkv, kv, (size_t)(rows + 1) * k * 4);
    down(tst, st, (rows + 1) * 12);
    double *ref = malloc(sizeof(double) * n);
    int32_t *ri = malloc(sizeof(int32_t) * (k ? k : 1));
    float *rv = malloc(sizeof(float) * (k ? k : 1));
    double we = 0, wl = 0, wlse = 0;
    int bad_am = 0, bad_tk = 0, bad_st = 0, nonfinite = 0;
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + (size_t)(row0 + r) * cols;
        ref_softmax(ref, xr, n, 1.0f, false);
        for (uint32_t i = 0; i < n; i++) {
            float v = y[(size_t)r * ycols + i];
            nonfinite += !isfinite(v);
            double e = fabs(v - ref[i]);
            if (e > 1e-5 * ref[i] + 1e-12 || !isfinite(v)) {
                if (we < 1) CHECK(0, "softmax row %u col %u: %.9g vs %.9g", r, i, v, ref[i]);
                we = 1;
            }
            e = e / (ref[i] + 1e-30);
            if (ref[i] > 1e-30 && e > we && we < 1) we = e;
        }
        ref_softmax(ref, xr, n, 0.5f, true);
        for (uint32_t i = 0; i < n; i++) {
            float v = yl[(size_t)r * ycols + i];
            nonfinite += !isfinite(v);
            double e = fabs(v - ref[i]) / (1 + fabs(ref[i]));
            if (!(e <= wl)) wl = e;
        }
        for (uint32_t i = n; i < ycols; i++)
            CHECK(y[(size_t)r * ycols + i] == SENT && yl[(size_t)r * ycols + i] == SENT, "softmax wrote past n");
        bad_am += am[r] != (int32_t)ref_argmax(xr, n);
        ref_topk(ri, rv, xr, n, k);
        for (uint32_t j = 0; j < k; j++)
            bad_tk += ki[(size_t)r * k + j] != ri[j] || kv[(size_t)r * k + j] != rv[j];
        double rs[3];
        ref_token_stats(rs, xr, n, ids[r]);
        bad_st += st[3 * r] != (float)rs[0] || st[3 * r + 2] != rs[2];
        double e = fabs(st[3 * r + 1] - rs[1]) / (1 + fabs(rs[1]));
        if (!(e <= wlse)) wlse = e;
    }
    for (uint32_t i = 0; i < ycols; i++)
        CHECK(y[(size_t)rows * ycols + i] == SENT && yl[(size_t)rows * ycols + i] == SENT, "softmax sentinel row overwritten");
    for (uint32_t i = rows; i < rows + 4; i++) CHECK(((float *)am)[i] == SENT, "argmax sentinel overwritten");
    for (uint32_t j = 0; j < k; j++)
        CHECK(((float *)ki)[(size_t)rows * k + j] == SENT && kv[(size_t)rows * k + j] == SENT, "topk sentinel overwritten");
    for (int j = 0; j < 3; j++) CHECK(st[3 * rows + j] == SENT, "token_stats sentinel overwritten");
    CHECK(nonfinite == 0, "%d non-finite softmax outputs", nonfinite);
    CHECK(we <= 1e-5, "softmax worst rel err %.3g", we);
    CHECK(wl <= 1e-5, "log_softmax worst err %.3g", wl);
    CHECK(wlse <= 1e-5, "token_stats lse worst err %.3g", wlse);
    CHECK(bad_am == 0, "argmax: %d rows differ", bad_am);
    CHECK(bad_tk == 0, "topk: %d entries differ", bad_tk);
    CHECK(bad_st == 0, "token_stats: %d rows with wrong gold/rank", bad_st);
    fprintf(stderr, "  %ux%-6u kind %d (row0 %u, stride %u): softmax rel %.3g, log_softmax %.3g, lse %.3g, "
            "argmax/topk%u/rank mismatches %d/%d/%d\n", rows, n, kind, row0, cols, we, wl, wlse, k, bad_am,
            bad_tk, bad_st);
    vkd_rec_destroy(rec);
    vkd_tensor *ts[] = {tx, tq, ty, tl, ti, tki, tkv, tids, tst, tkl};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vkd_tensor_destroy(ts[i]);
    free(x); free(xq); free(y); free(yl); free(am); free(ki); free(kv); free(st); free(kl); free(ids);
    free(ref); free(ri); free(rv);
}

/* Non-finite logits: rows of n = 1003 (not a multiple of any workgroup) holding a NaN, a
 * -NaN, a +Inf at odd positions, a -Inf (a masked token: a normal row), and a q row with +Inf
 * under a finite p row. Each op's output must follow ref_row_bad's rule. */
static void test_nonfinite(vkd_ctx *ctx) {
    enum { R = 7, N = 1003, K = 5 };
    float *x = malloc(sizeof(float) * R * N), *q = malloc(sizeof(float) * R * N);
    fill_logits(x, (size_t)R * N, 0);
    fill_logits(q, (size_t)R * N, 2);
    x[1 * N + 517] = NAN;
    x[2 * N + 1001] = INFINITY;
    x[3 * N + 3] = -INFINITY;
    x[3 * N + 999] = -INFINITY;
    x[4 * N + 0] = -NAN;
    q[5 * N + 7] = INFINITY;
    x[6 * N + 1002] = NAN; /* the last element of the last row */
    int32_t ids[R];
    for (int r = 0; r < R; r++) ids[r] = (int32_t)((r * 131) % N);
    vkd_tensor *tx = op_tensor(ctx, VKD_DTYPE_F32, R, N, "x"), *tq = op_tensor(ctx, VKD_DTYPE_F32, R, N, "q");
    vkd_tensor *ty = op_tensor(ctx, VKD_DTYPE_F32, R, N, "y"), *ti = op_tensor(ctx, VKD_DTYPE_I32, 1, R, "argmax");
    vkd_tensor *ts = op_tensor(ctx, VKD_DTYPE_I32, 1, R, "sample"), *tki = op_tensor(ctx, VKD_DTYPE_I32, R, K, "ki");
    vkd_tensor *tkv = op_tensor(ctx, VKD_DTYPE_F32, R, K, "kv"), *tid = op_tensor(ctx, VKD_DTYPE_I32, 1, R, "ids");
    vkd_tensor *tst = op_tensor(ctx, VKD_DTYPE_F32, R, 3, "stats"), *tkl = op_tensor(ctx, VKD_DTYPE_F32, R, 2, "kl");
    up(tx, x, sizeof(float) * R * N);
    up(tq, q, sizeof(float) * R * N);
    up(tid, ids, sizeof ids);
    vkd_error err = {0};
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_sample_params sp = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 11};
    vkd_rec_begin(rec);
    vkd_op_softmax(rec, ty, tx, 0, R, N, 1.0f, false);
    vkd_op_argmax(rec, ti, tx, 0, R, N);
    vkd_op_topk(rec, tki, tkv, tx, 0, R, N, K);
    vkd_op_token_stats(rec, tst, tx, 0, tid, R, N);
    vkd_op_kl_tvd(rec, tkl, tx, 0, 1.0f, tq, 0, 1.0f, R, N);
    vkd_op_sample(rec, ts, tx, 0, R, N, &sp);
    run(rec);
    float *y = malloc(sizeof(float) * R * N), kv[R * K], st[R * 3], kl[R * 2];
    int32_t am[R], sm[R], ki[R * K], rk[K];
    float rv[K];
    double *ry = malloc(sizeof(double) * N), rs[3], rkl[2];
    down(ty, y, sizeof(float) * R * N);
    down(ti, am, sizeof am);
    down(ts, sm, sizeof sm);
    down(tki, ki, sizeof ki);
    down(tkv, kv, sizeof kv);
    down(tst, st, sizeof st);
    down(tkl, kl, sizeof kl);
    int wrong = 0;
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * N, *qr = q + (size_t)r * N;
        bool bad = ref_row_bad(xr, N), badq = bad || ref_row_bad(qr, N);
        CHECK(bad == (r == 1 || r == 2 || r == 4 || r == 6), "row %d: ref_row_bad disagrees with the set-up", r);
        int w0 = wrong;
        if (bad) {
            wrong += am[r] != -1;
            wrong += sm[r] != -1;
            for (int j = 0; j < K; j++) wrong += ki[r * K + j] != -1 || !isnan(kv[r * K + j]);
            for (int j = 0; j < 3; j++) wrong += !isnan(st[r * 3 + j]);
            for (uint32_t i = 0; i < N; i++) wrong += !isnan(y[(size_t)r * N + i]);
        } else {
            wrong += am[r] != (int32_t)ref_argmax(xr, N);
            double pr[N];
            ref_sample_dist(pr, xr, N, &sp);
            wrong += sm[r] < 0 || sm[r] >= N || pr[sm[r]] <= 0; /* a kept token */
            ref_topk(rk, rv, xr, N, K);
            for (int j = 0; j < K; j++) wrong += ki[r * K + j] != rk[j] || kv[r * K + j] != rv[j];
            ref_token_stats(rs, xr, N, ids[r]);
            wrong += st[r * 3] != (float)rs[0] || st[r * 3 + 2] != (float)rs[2] ||
                     !(fabs(st[r * 3 + 1] - rs[1]) <= 1e-5 * (1 + fabs(rs[1])));
            ref_softmax(ry, xr, N, 1.0f, false);
            for (uint32_t i = 0; i < N; i++) wrong += !(fabs(y[(size_t)r * N + i] - ry[i]) <= 1e-5);
        }
        if (badq) {
            wrong += !isnan(kl[r * 2]) || !isnan(kl[r * 2 + 1]);
        } else {
            ref_kl_tvd(rkl, xr, 1.0f, qr, 1.0f, N);
            wrong += !(fabs(kl[r * 2] - rkl[0]) <= 1e-4 * rkl[0] + 2e-5) || !(fabs(kl[r * 2 + 1] - rkl[1]) <= 2e-5);
        }
        CHECK(wrong == w0, "non-finite row %d (bad %d, q bad %d): %d outputs break the rule (argmax %d, sample %d, "
              "topk[0] %d, stats %g %g %g, kl %g tvd %g)", r, bad, badq, wrong - w0, am[r], sm[r], ki[r * K],
              st[r * 3], st[r * 3 + 1], st[r * 3 + 2], kl[r * 2], kl[r * 2 + 1]);
    }
    fprintf(stderr, "  non-finite rows: %d outputs break the rule\n", wrong);
    vkd_rec_destroy(rec);
    vkd_tensor *tt[] = {tx, tq, ty, ti, ts, tki, tkv, tid, tst, tkl};
    for (size_t i = 0; i < sizeof tt / sizeof tt[0]; i++) vkd_tensor_destroy(tt[i]);
    free(x); free(q); free(y); free(ry);
}

/* Bad arguments fail cleanly with a message. */
static void test_errors(vkd_ctx *ctx) {
    vkd_error err = {0};
    vkd_tensor *x = op_tensor(ctx, VKD_DTYPE_F32, 2, 100, "x"), *i = op_tensor(ctx, VKD_DTYPE_I32, 2, 300, "i");
    vkd_tensor *v = op_tensor(ctx, VKD_DTYPE_F32, 2, 300, "v");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_topk(rec, i, v, x, 0, 2, 100, 257) == VKD_ERR_RANGE, "k = 257 accepted");
    fprintf(stderr, "  errors: %s\n", vkd_rec_error(rec)->msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_softmax(rec, v, x, 1, 2, 100, 1, false) == VKD_ERR_RANGE, "rows past the end accepted");
    vkd_rec_begin(rec);
    CHECK(vkd_op_argmax(rec, v, x, 0, 2, 100) == VKD_ERR_INVALID, "f32 argmax output accepted");
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(x); vkd_tensor_destroy(i); vkd_tensor_destroy(v);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    fprintf(stderr, "device: %s, profile %s, wg_row %u\n", vkd_ctx_info(ctx)->name, vkd_ctx_profile(ctx)->name,
            vkd_ctx_profile(ctx)->wg_row);
    test_case(ctx, 3, 1, 1, 0, 0, 1);
    test_case(ctx, 5, 7, 7, 1, 0, 7);
    test_case(ctx, 6, 1000, 1003, 2, 0, 50);
    test_case(ctx, 4, 4097, 4097, 0, 1, 256);
    test_case(ctx, 2, 151936, 151936, 1, 0, 256);
    test_case(ctx, 2, 151936, 151936, 0, 1, 100);
    test_case(ctx, 1, 128256, 128256, 0, 2, 20);
    test_errors(ctx);
    test_nonfinite(ctx);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);

    /* logits split across bindings: runs of rows per chunk */
    vkd_ctx_options o = {.max_binding_bytes = 3 * 1003 * 4};
    REQUIRE(!vkd_ctx_create(&o, &ctx, &err), "%s", err.msg);
    test_case(ctx, 7, 1000, 1003, 1, 0, 16);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_logits");
}
