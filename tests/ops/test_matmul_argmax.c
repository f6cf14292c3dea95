/* test_matmul_argmax: vkd_op_matmul_argmax (greedy LM head on texel-block weights: argmax of
 * x W^T without writing the logits) against the argmax of ref_matmul.c's double logits.
 *
 * The kernel sums in f32, so two logits closer than the f32 error bound of test_matmul
 * (2e-6 * sqrt(K) * sum_k |x_k w_k| each) may swap: the chosen index must hold a reference
 * logit within twice that bound of the reference maximum, and must equal the reference argmax
 * whenever the runner-up is further than that. Exact cases: duplicated maximum rows (the
 * lowest index wins), all-equal rows (index 0), a NaN in x (that row -1, the others intact).
 * Every m of a pass and across passes (1..64), N and K off the block and texel sizes, all three
 * weight dtypes, weights split over many texel views, a vocabulary-sized head; the entry after
 * the m outputs is a sentinel that must stay; the validation layer must stay silent. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_matmul.h"
#include "vkd_ops.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long seed = 4321;
static const int32_t SENTINEL = -777;

enum { PLAIN, DUP_MAX, ALL_EQUAL, NAN_ROW };

static void put_weight(vkd_dtype dt, void *w, uint64_t i, float v) {
    if (dt == VKD_DTYPE_F32) ((float *)w)[i] = v;
    else if (dt == VKD_DTYPE_F16) ((uint16_t *)w)[i] = vkd_f32_to_f16(v);
    else ((uint16_t *)w)[i] = vkd_f32_to_bf16(v);
}

/* One case: m rows of x from x_row0 against an N x K head; returns the worst gap (reference
 * max - reference logit of the chosen index) in units of the bound. */
static void run_case(vkd_ctx *ctx, vkd_dtype dt, uint32_t m, uint32_t N, uint32_t K, uint32_t x_row0,
                     int kind) {
    vkd_error err = {0};
    char label[128];
    static const char *kinds[] = {"", " dup-max", " all-equal", " nan-row"};
    snprintf(label, sizeof label, "%s m=%u N=%u K=%u x0=%u%s", vkd_dtype_name(dt), m, N, K, x_row0,
             kinds[kind]);
    uint64_t xrows = x_row0 + m;
    void *wh = malloc((uint64_t)N * K * vkd_dtype_size(dt));
    float *xh = malloc(xrows * K * 4);
    double *ref = malloc((uint64_t)m * N * 8), *mag = malloc((uint64_t)m * N * 8);
    REQUIRE(wh && xh && ref && mag, "out of memory");
    for (uint64_t i = 0; i < (uint64_t)N * K; i++)
        put_weight(dt, wh, i, kind == ALL_EQUAL ? 0.25f : (float)(vkd_test_rand_normal(&seed) * 0.5));
    for (uint64_t i = 0; i < xrows * K; i++)
        xh[i] = kind == DUP_MAX ? (float)(fabs(vkd_test_rand_normal(&seed)) + 0.1)
                                : (float)vkd_test_rand_normal(&seed);
    uint32_t dup_a = N / 3, dup_b = N - 1 - N / 7; /* dup_a < dup_b, in different blocks for N > 256 */
    if (kind == DUP_MAX)
        for (uint32_t k = 0; k < K; k++) {
            put_weight(dt, wh, (uint64_t)dup_a * K + k, 2.0f);
            put_weight(dt, wh, (uint64_t)dup_b * K + k, 2.0f);
        }
    uint32_t nan_row = m / 2;
    if (kind == NAN_ROW) xh[(uint64_t)(x_row0 + nan_row) * K + K / 2] = NAN;
    vkd_tensor *w = op_tensor_layout(ctx, dt, N, K, VKD_LAYOUT_BLOCKS, "w"),
               *x = op_tensor_layout(ctx, VKD_DTYPE_F32, xrows, K, VKD_LAYOUT_ROWS, "x"),
               *idx = op_tensor_layout(ctx, VKD_DTYPE_I32, 1, m + 1, VKD_LAYOUT_ROWS, "idx"),
               *part = op_tensor_layout(ctx, VKD_DTYPE_I32, 1, 2 * m * vkd_op_matmul_argmax_parts(ctx, w),
                           VKD_LAYOUT_ROWS, "part");
    int32_t *got = malloc((m + 1) * 4);
    REQUIRE(got, "out of memory");
    for (uint32_t i = 0; i <= m; i++) got[i] = SENTINEL;
    REQUIRE(!vkd_tensor_upload(w, 0, wh, w->bytes, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(x, 0, xh, x->bytes, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(idx, 0, got, (m + 1) * 4, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_matmul_argmax(rec, idx, part, x, x_row0, w, m);
    vkd_rec_read(rec, idx, 0, got, (m + 1) * 4);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "%s: submit: %s", label, vkd_rec_error(rec)->msg);
    ref_matmul(ref, mag, xh + (uint64_t)x_row0 * K, wh, dt, m, N, K);
    double tol = 2e-6 * sqrt((double)K), worst = 0;
    uint32_t bad = 0, exact = 0;
    for (uint32_t i = 0; i < m && r == VKD_OK; i++) {
        const double *y = ref + (uint64_t)i * N, *g = mag + (uint64_t)i * N;
        if (kind == NAN_ROW && i == nan_row) {
            if (got[i] != -1) bad++;
            continue;
        }
        uint32_t best = 0, second = UINT32_MAX;
        for (uint32_t n = 1; n < N; n++)
            if (y[n] > y[best]) second = best, best = n;
            else if (second == UINT32_MAX || y[n] > y[second]) second = n;
        if (got[i] < 0 || (uint32_t)got[i] >= N) {
            bad++;
            continue;
        }
        uint32_t c = (uint32_t)got[i];
        double bound = tol * (g[c] + g[best]) + 1e-30;
        double gap = (y[best] - y[c]) / bound;
        if (gap > worst) worst = gap;
        if (gap > 1.0) bad++;
        bool separated = second == UINT32_MAX || (y[best] - y[second]) > tol * (g[best] + g[second]);
        if (kind == DUP_MAX && c != dup_a) bad++;
        else if (kind == ALL_EQUAL && c != 0) bad++;
        else if (kind == PLAIN && separated && c != best) bad++;
        exact += c == best;
    }
    CHECK(r == VKD_OK && bad == 0 && got[m] == SENTINEL,
          "%s: %u rows wrong (worst gap %.3g bounds), sentinel %d", label, bad, worst, got[m]);
    fprintf(stderr, "  %-44s chunks %2u  exact %u/%u  worst gap %.3g bounds\n", label, w->nchunks, exact, m,
            worst);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(w); vkd_tensor_destroy(x); vkd_tensor_destroy(idx); vkd_tensor_destroy(part);
    free(wh); free(xh); free(ref); free(mag); free(got);
}

static void test_errors(vkd_ctx *ctx) {
    vkd_error err = {0};
    vkd_tensor *wr = op_tensor_layout(ctx, VKD_DTYPE_BF16, 40, 16, VKD_LAYOUT_ROWS, "w_rows"),
               *wb = op_tensor_layout(ctx, VKD_DTYPE_BF16, 40, 16, VKD_LAYOUT_BLOCKS, "w_blocks"),
               *x = op_tensor_layout(ctx, VKD_DTYPE_F32, 2, 16, VKD_LAYOUT_ROWS, "x"),
               *idx = op_tensor_layout(ctx, VKD_DTYPE_I32, 1, 2, VKD_LAYOUT_ROWS, "idx"),
               *part = op_tensor_layout(ctx, VKD_DTYPE_I32, 1, 2 * 2 * vkd_op_matmul_argmax_parts(ctx, wb), VKD_LAYOUT_ROWS, "part"),
               *small = op_tensor_layout(ctx, VKD_DTYPE_I32, 1, 1, VKD_LAYOUT_ROWS, "small");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    struct { vkd_tensor *idx, *part, *w; uint32_t m; vkd_result want; const char *what; } c[] = {
        {idx, part, wr, 2, VKD_ERR_UNSUPPORTED, "row-major weights"},
        {idx, small, wb, 2, VKD_ERR_INVALID, "part too small"},
        {small, part, wb, 2, VKD_ERR_INVALID, "idx too small"},
        {idx, part, wb, 3, VKD_ERR_INVALID, "x too small"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        vkd_rec_begin(rec);
        vkd_result r = vkd_op_matmul_argmax(rec, c[i].idx, c[i].part, x, 0, c[i].w, c[i].m);
        CHECK(r != VKD_OK && vkd_rec_error(rec)->msg[0], "errors: %s accepted", c[i].what);
        fprintf(stderr, "  error (%s): %s\n", c[i].what, vkd_rec_error(rec)->msg);
        vkd_rec_submit(rec);
    }
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(wr); vkd_tensor_destroy(wb); vkd_tensor_destroy(x); vkd_tensor_destroy(idx);
    vkd_tensor_destroy(part); vkd_tensor_destroy(small);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx, *tsplit;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    vkd_ctx_options to = {.max_texel_elements = 4608}; /* many texel views (whole blocks each) */
    REQUIRE(!vkd_ctx_create(&to, &tsplit, &err), "%s", err.msg);
    static const vkd_dtype dts[] = {VKD_DTYPE_F32, VKD_DTYPE_F16, VKD_DTYPE_BF16};
    static const uint32_t ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 64};
    static const uint32_t shapes[][2] = {{45, 67}, {257, 128}, {300, 516}, {513, 9}}; /* N, K */
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 14; i += vkd_test_short() ? 2 : 1) {
            int s = (d + i) % 4;
            run_case(ctx, dts[d], ms[i], shapes[s][0], shapes[s][1], (uint32_t)(i % 3), PLAIN);
        }
    for (int d = 0; d < 3; d++) {
        run_case(tsplit, dts[d], 1, 1300, 67, 0, PLAIN);
        run_case(tsplit, dts[d], 5, 1100, 64, 1, PLAIN);
        run_case(tsplit, dts[d], 16, 700, 64, 0, DUP_MAX);
        run_case(ctx, dts[d], 6, 600, 33, 0, DUP_MAX);
        run_case(ctx, dts[d], 3, 300, 24, 0, ALL_EQUAL);
        run_case(tsplit, dts[d], 9, 900, 40, 2, NAN_ROW);
    }
    run_case(ctx, VKD_DTYPE_BF16, 1, 151936, 256, 0, PLAIN);
    run_case(ctx, VKD_DTYPE_BF16, 16, 151936, 128, 0, PLAIN);
    run_case(ctx, VKD_DTYPE_BF16, 4, 151936, 64, 0, NAN_ROW);
    test_errors(ctx);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "%u validation messages, first: %s",
          vkd_ctx_validation_count(ctx), vkd_ctx_validation_first(ctx));
    CHECK(vkd_ctx_validation_count(tsplit) == 0, "%u validation messages (tsplit), first: %s",
          vkd_ctx_validation_count(tsplit), vkd_ctx_validation_first(tsplit));
    vkd_ctx_destroy(tsplit);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_matmul_argmax");
}
