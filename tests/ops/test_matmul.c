/* test_matmul: vkd_op_matmul (GEMV and tiled GEMM paths on row-major weights, the texel
 * kernel on VKD_LAYOUT_BLOCKS weights) and vkd_op_embed (both layouts) against the
 * double-accumulation references of ref_matmul.c, on random inputs.
 *
 * Error bound (matmul): the weights are converted to their dtype on the host and the
 * reference uses the same converted values, so the only error is f32 accumulation:
 *   |y - ref| <= 2e-6 * sqrt(K) * (sum_k |x_k w_k| + |y_old|) + 1e-30
 * for every dtype (y_old: the prior value when accumulating). Embedding is a copy: exact.
 * Every output is also checked for NaN/Inf, rows outside the written range (before y_row0 and
 * a sentinel row after) must be untouched, and the validation layer must stay silent. */
#include <stdlib.h>
#include <string.h>

#include "ref_matmul.h"
#include "vkd_ops.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long seed = 1234;
static const float SENTINEL = -7777.25f;

typedef struct mm_case {
    vkd_dtype dt;
    uint32_t m, N, K, x_row0, y_row0;
    bool accumulate;
    vkd_layout layout;          /* of the weights */
} mm_case;

/* One matmul case; returns the worst normalised error. */
static double run_matmul(vkd_ctx *ctx, const char *label, const mm_case *c) {
    vkd_error err = {0};
    uint32_t m = c->m, N = c->N, K = c->K;
    uint64_t xrows = c->x_row0 + m, yrows = c->y_row0 + m + 1; /* +1: sentinel row */
    void *wh = op_rand_weights(c->dt, (uint64_t)N * K, &seed);
    float *xh = malloc(xrows * K * 4), *y0 = malloc(yrows * N * 4), *yo = malloc(yrows * N * 4);
    double *ref = malloc((uint64_t)m * N * 8), *mag = malloc((uint64_t)m * N * 8);
    REQUIRE(xh && y0 && yo && ref && mag, "out of memory");
    for (uint64_t i = 0; i < xrows * K; i++) xh[i] = (float)vkd_test_rand_normal(&seed);
    for (uint64_t i = 0; i < yrows * N; i++)
        y0[i] = (i >= (uint64_t)c->y_row0 * N && i < (uint64_t)(c->y_row0 + m) * N)
                    ? (float)vkd_test_rand_normal(&seed) : SENTINEL;
    vkd_tensor *w = op_tensor_layout(ctx, c->dt, N, K, c->layout, "w"), *x = op_tensor(ctx, VKD_DTYPE_F32, xrows, K, "x"),
               *y = op_tensor(ctx, VKD_DTYPE_F32, yrows, N, "y");
    REQUIRE(!vkd_tensor_upload(w, 0, wh, w->bytes, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(x, 0, xh, x->bytes, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(y, 0, y0, y->bytes, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_matmul(rec, y, c->y_row0, x, c->x_row0, w, m, c->accumulate);
    vkd_rec_read(rec, y, 0, yo, y->bytes);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "%s: submit: %s", label, vkd_rec_error(rec)->msg);
    ref_matmul(ref, mag, xh + (uint64_t)c->x_row0 * K, wh, c->dt, m, N, K);
    double tol = 2e-6 * sqrt((double)K), worst = 0;
    uint64_t bad = 0, nonfinite = 0, touched = 0;
    for (uint64_t e = 0; e < yrows * N; e++) {
        uint64_t row = e / N;
        if (row < c->y_row0 || row >= c->y_row0 + m) {
            if (yo[e] != SENTINEL) touched++;
            continue;
        }
        uint64_t j = e - (uint64_t)c->y_row0 * N;
        double want = ref[j] + (c->accumulate ? y0[e] : 0.0);
        double scale = mag[j] + (c->accumulate ? fabs(y0[e]) : 0.0) + 1e-30;
        if (!isfinite(yo[e])) nonfinite++;
        double rel = fabs(yo[e] - want) / scale;
        if (!(rel <= worst)) worst = rel;
        if (!(rel <= tol)) bad++;
    }
    CHECK(r == VKD_OK && bad == 0 && nonfinite == 0 && touched == 0,
          "%s: %llu outputs beyond the bound %.2g (worst %.3g), %llu non-finite, %llu outside "
          "the output range written", label, (unsigned long long)bad, tol, worst,
          (unsigned long long)nonfinite, (unsigned long long)touched);
    fprintf(stderr, "  %-58s chunks %2u  worst %.3g (bound %.2g)\n", label, w->nchunks, worst, tol);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(w); vkd_tensor_destroy(x); vkd_tensor_destroy(y);
    free(wh); free(xh); free(y0); free(yo); free(ref); free(mag);
    return worst;
}

static void matmul_case_l(vkd_ctx *ctx, const char *tag, vkd_layout layout, vkd_dtype dt,
                          uint32_t m, uint32_t N, uint32_t K, uint32_t x_row0, uint32_t y_row0,
                          bool acc) {
    mm_case c = {dt, m, N, K, x_row0, y_row0, acc, layout};
    char label[128];
    snprintf(label, sizeof label, "%s %s m=%u N=%u K=%u x0=%u y0=%u%s", tag, vkd_dtype_name(dt),
             m, N, K, x_row0, y_row0, acc ? " acc" : "");
    run_matmul(ctx, label, &c);
}

static void matmul_case(vkd_ctx *ctx, const char *tag, vkd_dtype dt, uint32_t m, uint32_t N,
                        uint32_t K, uint32_t x_row0, uint32_t y_row0, bool acc) {
    matmul_case_l(ctx, tag, VKD_LAYOUT_ROWS, dt, m, N, K, x_row0, y_row0, acc);
}

static void embed_case_l(vkd_ctx *ctx, const char *tag, vkd_layout layout, vkd_dtype dt,
                         uint32_t m, uint32_t V, uint32_t H) {
    vkd_error err = {0};
    void *th = op_rand_weights(dt, (uint64_t)V * H, &seed);
    int32_t *ids = malloc((size_t)m * 4);
    float *yo = malloc(((size_t)m + 1) * H * 4), *y0 = malloc(((size_t)m + 1) * H * 4);
    double *ref = malloc((size_t)m * H * 8);
    REQUIRE(th && ids && yo && y0 && ref, "out of memory");
    vkd_tensor *t = op_tensor_layout(ctx, dt, V, H, layout, "table"), *it = op_tensor(ctx, VKD_DTYPE_I32, 1, m, "ids"),
               *y = op_tensor(ctx, VKD_DTYPE_F32, m + 1, H, "y");
    /* ids: one per chunk first (its first and last rows), out-of-range ones, then random */
    uint32_t n = 0;
    for (uint32_t c = 0; c < t->nchunks && n + 2 <= m; c++) {
        ids[n++] = (int32_t)t->chunks[c].row0;
        ids[n++] = (int32_t)(t->chunks[c].row0 + t->chunks[c].rows - 1);
    }
    const int32_t odd[] = {-1, (int32_t)V, (int32_t)V + 1000, INT32_MIN, INT32_MAX};
    for (uint32_t k = 0; k < 5 && n < m; k++) ids[n++] = odd[k];
    while (n < m) ids[n++] = (int32_t)(vkd_test_rand_u64(&seed) % V);
    for (size_t i = 0; i < ((size_t)m + 1) * H; i++) y0[i] = SENTINEL;
    REQUIRE(!vkd_tensor_upload(t, 0, th, t->bytes, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(it, 0, ids, (uint64_t)m * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(y, 0, y0, y->bytes, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_embed(rec, y, it, t, m);
    vkd_rec_read(rec, y, 0, yo, y->bytes);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "embed %s: submit: %s", tag, vkd_rec_error(rec)->msg);
    ref_embed(ref, ids, th, dt, m, V, H);
    uint64_t bad = 0, touched = 0;
    double worst = 0;
    for (size_t i = 0; i < (size_t)m * H; i++) {
        double e = fabs(yo[i] - ref[i]);
        if (!(e <= worst)) worst = e;
        if (!(e == 0)) bad++;
    }
    for (size_t i = (size_t)m * H; i < ((size_t)m + 1) * H; i++) touched += yo[i] != SENTINEL;
    CHECK(r == VKD_OK && bad == 0 && touched == 0, "embed %s %s: %llu wrong values (worst %.3g), "
          "sentinel row touched %llu times", tag, vkd_dtype_name(dt), (unsigned long long)bad,
          worst, (unsigned long long)touched);
    fprintf(stderr, "  embed %-8s %-4s m=%u V=%u H=%u chunks %u  worst abs err %.3g\n", tag,
            vkd_dtype_name(dt), m, V, H, t->nchunks, worst);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(t); vkd_tensor_destroy(it); vkd_tensor_destroy(y);
    free(th); free(ids); free(yo); free(y0); free(ref);
}

static void embed_case(vkd_ctx *ctx, const char *tag, vkd_dtype dt, uint32_t m, uint32_t V,
                       uint32_t H) {
    embed_case_l(ctx, tag, VKD_LAYOUT_ROWS, dt, m, V, H);
}

/* Bad arguments fail the recorder with an error instead of dispatching. */
static void test_errors(vkd_ctx *ctx) {
    vkd_error err = {0};
    vkd_tensor *w = op_tensor(ctx, VKD_DTYPE_BF16, 8, 16, "w"), *x = op_tensor(ctx, VKD_DTYPE_F32, 2, 16, "x"),
               *y = op_tensor(ctx, VKD_DTYPE_F32, 2, 8, "y"), *wi = op_tensor(ctx, VKD_DTYPE_I32, 8, 16, "wi");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_matmul(rec, y, 0, x, 1, w, 2, false) == VKD_ERR_RANGE, "x too short accepted");
    vkd_rec_begin(rec);
    CHECK(vkd_op_matmul(rec, y, 0, x, 0, wi, 1, false) == VKD_ERR_INVALID, "i32 weights accepted");
    vkd_rec_begin(rec);
    CHECK(vkd_op_embed(rec, y, x, w, 1) == VKD_ERR_INVALID, "f32 ids accepted");
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(w); vkd_tensor_destroy(x); vkd_tensor_destroy(y); vkd_tensor_destroy(wi);
}

/* A texel-block tensor is refused by every op that reads row-major tensors, by downloads and
 * by the recorder's byte ranges: an error code, never a read of repacked bytes. */
static void test_layout_errors(vkd_ctx *ctx) {
    vkd_error err = {0};
    vkd_tensor *wb = op_tensor_layout(ctx, VKD_DTYPE_BF16, 8, 16, VKD_LAYOUT_BLOCKS, "wb"),
               *fb = op_tensor_layout(ctx, VKD_DTYPE_F32, 2, 16, VKD_LAYOUT_BLOCKS, "fb"),
               *x = op_tensor(ctx, VKD_DTYPE_F32, 2, 16, "x"), *y = op_tensor(ctx, VKD_DTYPE_F32, 2, 16, "y");
    uint16_t host[128] = {0};
    float back[32];
    CHECK(vkd_tensor_upload(wb, 0, host, 64, &err) == VKD_ERR_UNSUPPORTED, "partial upload accepted");
    CHECK(vkd_tensor_upload(wb, 0, host, wb->bytes, &err) == VKD_OK, "whole upload: %s", err.msg);
    CHECK(vkd_tensor_download(fb, 0, back, fb->bytes, &err) == VKD_ERR_UNSUPPORTED,
          "download of a texel-block tensor accepted");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_rmsnorm(rec, y, x, wb, 2, 16, 1e-6f) == VKD_ERR_UNSUPPORTED,
          "rmsnorm read a texel-block weight");
    vkd_rec_begin(rec);
    CHECK(vkd_op_add(rec, y, fb, 32) == VKD_ERR_UNSUPPORTED, "add read a texel-block tensor");
    vkd_rec_begin(rec);
    CHECK(vkd_op_softmax(rec, y, fb, 0, 2, 16, 1.0f, false) == VKD_ERR_UNSUPPORTED,
          "softmax read a texel-block tensor");
    vkd_rec_begin(rec);
    CHECK(vkd_rec_read(rec, fb, 0, back, 64) == VKD_ERR_UNSUPPORTED, "read-back accepted");
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(wb); vkd_tensor_destroy(fb); vkd_tensor_destroy(x); vkd_tensor_destroy(y);
}

/* Weights in the texel block layout (the lavapipe profile's choice; created explicitly here so
 * that every device runs these): every m of a pass and across passes, N and K off the block
 * (256 rows) and texel (8 or 4 weights) sizes, weights split over many small texel views.
 * K % 4 == 0 reads x through its texel view where the profile gives one (516: the last
 * 16-bit step half past K), other K as a storage buffer. */
static void test_blocks(vkd_ctx *ctx, vkd_ctx *tsplit) {
    static const vkd_dtype dts[] = {VKD_DTYPE_F32, VKD_DTYPE_F16, VKD_DTYPE_BF16};
    static const uint32_t ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 64};
    static const uint32_t shapes[][2] = {{45, 67}, {257, 128}, {300, 516}, {513, 9}}; /* N, K */
    const vkd_layout B = VKD_LAYOUT_BLOCKS;
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 14; i += vkd_test_short() ? 2 : 1) {
            int s = (d + i) % 4; /* every shape meets every dtype and most m */
            matmul_case_l(ctx, "blocks", B, dts[d], ms[i], shapes[s][0], shapes[s][1], 0, 0, false);
            matmul_case_l(ctx, "blocks", B, dts[d], ms[i], shapes[(s + 1) % 4][0],
                          shapes[(s + 1) % 4][1], 2, 1, true);
        }
    for (int d = 0; d < 3; d++) {
        matmul_case_l(tsplit, "blocks split", B, dts[d], 1, 1300, 67, 0, 0, false);
        matmul_case_l(tsplit, "blocks split", B, dts[d], 5, 1100, 64, 1, 2, true);
        matmul_case_l(tsplit, "blocks split", B, dts[d], 16, 700, 64, 0, 1, false);
        matmul_case_l(tsplit, "blocks split", B, dts[d], 37, 600, 60, 0, 1, true);
    }
    if (!vkd_test_short()) {
        matmul_case_l(ctx, "blocks vocab", B, VKD_DTYPE_BF16, 1, 151936, 768, 0, 0, false);
        matmul_case_l(ctx, "blocks vocab", B, VKD_DTYPE_BF16, 16, 151936, 512, 0, 0, false);
    }
    for (int d = 0; d < 3; d++) {
        embed_case_l(ctx, "blocks", B, dts[d], 37, 1000, 67);
        embed_case_l(tsplit, "blk split", B, dts[d], 90, 1300, 40);
    }
    if (!vkd_test_short()) embed_case_l(ctx, "blk vocab", B, VKD_DTYPE_BF16, 64, 151936, 128);
    test_layout_errors(ctx);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx, *split;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    /* small bindings: modest weights and tables land in many chunks */
    vkd_ctx_options so = {.max_binding_bytes = 16384};
    REQUIRE(!vkd_ctx_create(&so, &split, &err), "%s", err.msg);
    /* small texel views: texel-block weights land in many chunks (whole blocks each) */
    vkd_ctx *tsplit;
    vkd_ctx_options to = {.max_texel_elements = 4608};
    REQUIRE(!vkd_ctx_create(&to, &tsplit, &err), "%s", err.msg);
    fprintf(stderr, "device: %s, profile %s, GEMM from m=%u\n", vkd_ctx_info(ctx)->name,
            vkd_ctx_profile(ctx)->name, vkd_ctx_profile(ctx)->gemm_min_m);

    static const vkd_dtype dts[] = {VKD_DTYPE_F32, VKD_DTYPE_F16, VKD_DTYPE_BF16};
    static const uint32_t ms[] = {1, 3, 16, 37, 130};
    static const uint32_t shapes[][2] = {{45, 67}, {77, 128}, {200, 520}}; /* N, K */
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 5; i++)
            for (int s = 0; s < 3; s++) {
                matmul_case(ctx, "", dts[d], ms[i], shapes[s][0], shapes[s][1], 0, 0, false);
                matmul_case(ctx, "", dts[d], ms[i], shapes[s][0], shapes[s][1], 2, 1, true);
            }
    /* m between two GEMV passes and the GEMM switch, K below one step of the workgroup */
    matmul_case(ctx, "", VKD_DTYPE_BF16, 20, 33, 8, 1, 3, false);
    matmul_case(ctx, "", VKD_DTYPE_F16, 5, 9, 3, 0, 0, true);
    /* weights split across many bindings (one dispatch per chunk, col0 from the chunk) */
    for (int d = 0; d < 3; d++) {
        matmul_case(split, "split", dts[d], 1, 300, 67, 0, 0, false);
        matmul_case(split, "split", dts[d], 3, 300, 64, 1, 2, true);
        matmul_case(split, "split", dts[d], 16, 200, 64, 0, 1, false);
        matmul_case(split, "split", dts[d], 33, 100, 120, 0, 1, true);
    }
    /* vocabulary-sized lm_head rows (several maximum-size bindings; per-group loop budget) */
    if (!vkd_test_short()) {
        matmul_case(ctx, "vocab", VKD_DTYPE_BF16, 1, 151936, 768, 0, 0, false);
        matmul_case(ctx, "vocab", VKD_DTYPE_BF16, 16, 151936, 512, 0, 0, false);
        matmul_case(ctx, "vocab", VKD_DTYPE_F16, 37, 151936, 64, 0, 0, false);
    }
    /* many short rows per workgroup: lavapipe's loop-iteration limit must split the work */
    matmul_case(ctx, "budget", VKD_DTYPE_BF16, 16, 40000, 64, 0, 0, false);
    matmul_case(ctx, "budget", VKD_DTYPE_F32, 4, 70000, 8, 0, 0, true);

    for (int d = 0; d < 3; d++) {
        embed_case(ctx, "", dts[d], 37, 1000, 67);
        embed_case(split, "split", dts[d], 90, 1000, 40);
    }
    embed_case(ctx, "vocab", VKD_DTYPE_BF16, 64, 151936, 128);
    embed_case(ctx, "budget", VKD_DTYPE_F16, 600, 5000, 1024);
    test_errors(ctx);
    test_blocks(ctx, tsplit);

    CHECK(vkd_ctx_validation_count(ctx) == 0, "%u validation messages, first: %s",
          vkd_ctx_validation_count(ctx), vkd_ctx_validation_first(ctx));
    CHECK(vkd_ctx_validation_count(split) == 0, "%u validation messages (split), first: %s",
          vkd_ctx_validation_count(split), vkd_ctx_validation_first(split));
    CHECK(vkd_ctx_validation_count(tsplit) == 0, "%u validation messages (tsplit), first: %s",
          vkd_ctx_validation_count(tsplit), vkd_ctx_validation_first(tsplit));
    vkd_ctx_destroy(tsplit);
    vkd_ctx_destroy(split);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_matmul");
}
