/* test_matmul_fused: the fused texel-block matmuls against the double references of
 * ref_matmul.c, on random inputs:
 *   vkd_op_matmul_group  two or three members of one stack (vkd_tensor_create_stack) into
 *                        views of one buffer, each output within the bound of test_matmul
 *                        (f32 accumulation): |y - ref| <= 2e-6 sqrt(K) sum_k |x_k w_k|, and
 *                        the words between the outputs untouched
 *   the members alone    vkd_op_matmul on each member (its own texel view at an offset of
 *                        the stack), the same bound
 *   vkd_op_matmul_glu    silu(g) * u with g, u the two products: the accumulation error of
 *                        each carried through (silu' <= 1.1) plus 1e-5 relative for exp:
 *                        |h - ref| <= tol (1.1 |u| mag_g + |silu(g)| mag_u) + 1e-5 |ref|
 *   with an RMSNorm      both again with x through the norm, where the device offers it
 *                        (vkd_matmul_norm_ok): bit-identical to vkd_op_rmsnorm then the
 *                        unnormed op, and within the bounds above plus (3e-8 K + 1e-6)
 *                        relative (the f32 sum of squares) of the double reference
 * with N off the 256-row block, K off the texel, every pass size of m and more rows of x
 * than one pass, row offsets, gate/up split over several texel views; rows of y outside
 * the written range (a sentinel row after) must be untouched; bad arguments are refused;
 * and the validation layer must stay silent. */
#include <stdlib.h>
#include <string.h>

#include "ref_matmul.h"
#include "vkd_ops.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long seed = 0xf05e;
static const float SENTINEL = -5151.5f;

static void upload(vkd_tensor *t, const void *src) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_upload(t, 0, src, t->bytes, &err), "%s", err.msg);
}

/* The RMSNorm option: ln (K weights of dtype dt, near 1) on the device, and x's rows
 * [x_row0, x_row0 + m) normed in double and rounded to f32 into an (m x K): the reference's
 * input. Returns the device tensor (NULL without a norm: an is then x's rows as they are). */
static const double EPS = 1e-6;
static vkd_tensor *norm_input(vkd_ctx *ctx, bool norm, vkd_dtype dt, const float *xh, uint32_t x_row0,
                              uint32_t m, uint32_t K, float *an) {
    const float *xr = xh + (uint64_t)x_row0 * K;
    if (!norm) {
        memcpy(an, xr, (uint64_t)m * K * 4);
        return NULL;
    }
    size_t es = vkd_dtype_size(dt);
    uint8_t *lh = malloc((uint64_t)K * es);
    REQUIRE(lh, "out of memory");
    for (uint32_t k = 0; k < K; k++) {
        float v = (float)(1.0 + 0.5 * vkd_test_rand_normal(&seed));
        if (dt == VKD_DTYPE_F32) ((float *)lh)[k] = v;
        else if (dt == VKD_DTYPE_F16) ((uint16_t *)lh)[k] = vkd_f32_to_f16(v);
        else ((uint16_t *)lh)[k] = vkd_f32_to_bf16(v);
    }
    for (uint32_t i = 0; i < m; i++) {
        double ss = 0;
        for (uint32_t k = 0; k < K; k++) ss += (double)xr[(uint64_t)i * K + k] * xr[(uint64_t)i * K + k];
        double rs = 1.0 / sqrt(ss / K + EPS);
        for (uint32_t k = 0; k < K; k++)
            an[(uint64_t)i * K + k] = (float)(xr[(uint64_t)i * K + k] * rs * ref_weight(dt, lh, k));
    }
    vkd_tensor *t = op_tensor_layout(ctx, dt, 1, K, VKD_LAYOUT_ROWS, "ln");
    upload(t, lh);
    free(lh);
    return t;
}

/* y: yrows x N f32, rows [y_row0, y_row0 + m) random (their content must not matter), the
 * others SENTINEL */
static float *y_init(uint32_t yrows, uint32_t N, uint32_t y_row0, uint32_t m) {
    float *y = malloc((uint64_t)yrows * N * 4);
    REQUIRE(y, "out of memory");
    for (uint64_t i = 0; i < (uint64_t)yrows * N; i++)
        y[i] = i >= (uint64_t)y_row0 * N && i < (uint64_t)(y_row0 + m) * N ? (float)vkd_test_rand_normal(&seed)
                                                                          : SENTINEL;
    return y;
}

/* Checks y (yrows x N) against want/scale over rows [y_row0, y_row0 + m); counts failures. */
static void check_out(const char *label, const float *y, uint32_t yrows, uint32_t N, uint32_t y_row0,
                      uint32_t m, const double *want, const double *bound) {
    uint64_t bad = 0, nonfinite = 0, touched = 0;
    double worst = 0;
    for (uint64_t e = 0; e < (uint64_t)yrows * N; e++) {
        uint64_t row = e / N;
        if (row < y_row0 || row >= y_row0 + m) {
            if (y[e] != SENTINEL) touched++;
            continue;
        }
        uint64_t j = e - (uint64_t)y_row0 * N;
        if (!isfinite(y[e])) nonfinite++;
        double rel = fabs(y[e] - want[j]) / bound[j];
        if (!(rel <= worst)) worst = rel;
        if (!(rel <= 1.0)) bad++;
    }
    CHECK(bad == 0 && nonfinite == 0 && touched == 0,
          "%s: %llu outputs beyond the bound (worst %.3g of it), %llu non-finite, %llu outside the "
          "rows written", label, (unsigned long long)bad, worst, (unsigned long long)nonfinite,
          (unsigned long long)touched);
    fprintf(stderr, "  %-64s worst %.3g of the bound\n", label, worst);
}

/* One group case: n members of rows[j] x K in one stack, m rows of x from x_row0, outputs
 * from y_row0; then each member alone through vkd_op_matmul. */
static void group_case(vkd_ctx *ctx, vkd_dtype dt, uint32_t n, const uint32_t *rows, uint32_t K,
                       uint32_t m, uint32_t x_row0, uint32_t y_row0, bool norm) {
    vkd_error err = {0};
    char label[160];
    snprintf(label, sizeof label, "group%s %s n=%u rows=%u,%u,%u K=%u m=%u x0=%u y0=%u", norm ? " norm" : "",
             vkd_dtype_name(dt), n, rows[0], rows[1], n > 2 ? rows[2] : 0, K, m, x_row0, y_row0);
    uint64_t r64[3];
    const char *names[3] = {"wq", "wk", "wv"};
    for (uint32_t j = 0; j < n; j++) r64[j] = rows[j];
    vkd_tensor *st, *mem[3];
    REQUIRE(!vkd_tensor_create_stack(ctx, dt, n, r64, K, names, &st, mem, &err), "%s: %s", label, err.msg);
    void *wh[3];
    for (uint32_t j = 0; j < n; j++) {
        wh[j] = op_rand_weights(dt, (uint64_t)rows[j] * K, &seed);
        upload(mem[j], wh[j]);
    }
    uint32_t xrows = x_row0 + m, yrows = y_row0 + m + 1;
    float *xh = malloc((uint64_t)xrows * K * 4);
    REQUIRE(xh, "out of memory");
    for (uint64_t i = 0; i < (uint64_t)xrows * K; i++) xh[i] = (float)vkd_test_rand_normal(&seed);
    vkd_tensor *x = op_tensor_layout(ctx, VKD_DTYPE_F32, xrows, K, VKD_LAYOUT_ROWS, "x"), *y[3];
    upload(x, xh);
    float *an = malloc((uint64_t)m * K * 4), *fused[3] = {NULL, NULL, NULL};
    REQUIRE(an, "out of memory");
    vkd_tensor *ln = norm_input(ctx, norm, dt, xh, x_row0, m, K, an);
    vkd_tensor *xn = norm ? op_tensor_layout(ctx, VKD_DTYPE_F32, xrows, K, VKD_LAYOUT_ROWS, "x_normed") : NULL;
    /* the outputs: views of one buffer, a gap of a few words between them */
    uint64_t align = vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment, off[3], total = 0;
    if (align < 16) align = 16;
    for (uint32_t j = 0; j < n; j++) {
        off[j] = total;
        total = (total + (uint64_t)yrows * rows[j] * 4 + 16 + align - 1) / align * align;
    }
    vkd_tensor *whole = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, total / 4, VKD_LAYOUT_ROWS, "ys");
    float *wh0 = malloc(total);
    REQUIRE(wh0, "out of memory");
    for (uint64_t i = 0; i < total / 4; i++) wh0[i] = SENTINEL;
    upload(whole, wh0);
    float *yh[3], *yo[3];
    for (uint32_t j = 0; j < n; j++) {
        int64_t shape[2] = {yrows, rows[j]};
        REQUIRE(!vkd_tensor_view(whole, off[j], VKD_DTYPE_F32, 2, shape, "y", &y[j], &err), "%s", err.msg);
        yh[j] = y_init(yrows, rows[j], y_row0, m);
        yo[j] = malloc((uint64_t)yrows * rows[j] * 4);
        REQUIRE(yo[j], "out of memory");
        upload(y[j], yh[j]);
    }
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: one group dispatch; pass 1: each member through vkd_op_matmul (with the
         * norm: of vkd_op_rmsnorm's output, which pass 0 must equal bit for bit) */
        for (uint32_t j = 0; pass && j < n; j++) upload(y[j], yh[j]);
        vkd_rec_begin(rec);
        if (pass == 0) {
            CHECK(vkd_matmul_group_ok(y, (const vkd_tensor *const *)mem, n), "%s: members not a group", label);
            vkd_op_matmul_group(rec, y, y_row0, x, x_row0, (const vkd_tensor *const *)mem, n, m, ln, (float)EPS);
        } else {
            if (norm) vkd_op_rmsnorm(rec, xn, x, ln, xrows, K, (float)EPS);
            for (uint32_t j = 0; j < n; j++)
                vkd_op_matmul(rec, y[j], y_row0, norm ? xn : x, x_row0, mem[j], m, false);
        }
        for (uint32_t j = 0; j < n; j++) vkd_rec_read(rec, y[j], 0, yo[j], y[j]->bytes);
        float *wo = malloc(total);
        REQUIRE(wo, "out of memory");
        vkd_rec_read(rec, whole, 0, wo, total);
        vkd_result r = vkd_rec_submit(rec);
        /* the gaps between the outputs and the tail: untouched */
        uint64_t gap_touched = 0;
        for (uint64_t i = 0; r == VKD_OK && i < total / 4; i++) {
            bool inside = false;
            for (uint32_t j = 0; j < n; j++)
                inside |= i * 4 >= off[j] && i * 4 < off[j] + (uint64_t)yrows * rows[j] * 4;
            if (!inside && wo[i] != SENTINEL) gap_touched++;
        }
        CHECK(gap_touched == 0, "%s: %llu words between the outputs written", label,
              (unsigned long long)gap_touched);
        free(wo);
        CHECK(r == VKD_OK, "%s: submit: %s", label, vkd_rec_error(rec)->msg);
        for (uint32_t j = 0; j < n && r == VKD_OK; j++) {
            uint64_t no = (uint64_t)m * rows[j];
            double *ref = malloc(no * 8), *mag = malloc(no * 8);
            REQUIRE(ref && mag, "out of memory");
            ref_matmul(ref, mag, an, wh[j], dt, m, rows[j], K);
            /* with the norm also its f32 1 / rms: the sum of squares' rounding, relative */
            double rel = norm ? 3e-8 * K + 1e-6 : 0;
            for (uint64_t i = 0; i < no; i++) mag[i] = 2e-6 * sqrt((double)K) * mag[i] + rel * fabs(ref[i]) + 1e-30;
            char l2[200];
            snprintf(l2, sizeof l2, "%s %s %u", label, pass ? "alone" : "y", j);
            check_out(l2, yo[j], yrows, rows[j], y_row0, m, ref, mag);
            uint64_t ny = (uint64_t)yrows * rows[j];
            if (pass == 0 && norm) {
                fused[j] = malloc(ny * 4);
                REQUIRE(fused[j], "out of memory");
                memcpy(fused[j], yo[j], ny * 4);
            }
            if (pass == 1 && norm)
                CHECK(memcmp(fused[j], yo[j], ny * 4) == 0, "%s: output %u differs from rmsnorm then matmul", label, j);
            free(ref);
            free(mag);
        }
    }
    vkd_rec_destroy(rec);
    for (uint32_t j = 0; j < n; j++) {
        vkd_tensor_destroy(mem[j]);
        vkd_tensor_destroy(y[j]);
        free(wh[j]);
        free(yh[j]);
        free(yo[j]);
    }
    vkd_tensor_destroy(st);
    vkd_tensor_destroy(whole);
    vkd_tensor_destroy(x);
    vkd_tensor_destroy(ln);
    vkd_tensor_destroy(xn);
    for (uint32_t j = 0; j < 3; j++) free(fused[j]);
    free(xh);
    free(wh0);
    free(an);
}

static void glu_case(vkd_ctx *ctx, const char *tag, vkd_dtype dt, uint32_t F, uint32_t K, uint32_t m,
                     uint32_t x_row0, uint32_t y_row0, bool norm) {
    vkd_error err = {0};
    char label[160];
    snprintf(label, sizeof label, "glu%s%s %s F=%u K=%u m=%u x0=%u y0=%u", tag, norm ? " norm" : "",
             vkd_dtype_name(dt), F, K, m, x_row0, y_row0);
    vkd_tensor *g = op_tensor_layout(ctx, dt, F, K, VKD_LAYOUT_BLOCKS, "gate"), *u = op_tensor_layout(ctx, dt, F, K, VKD_LAYOUT_BLOCKS, "up");
    void *gh = op_rand_weights(dt, (uint64_t)F * K, &seed), *uh = op_rand_weights(dt, (uint64_t)F * K, &seed);
    upload(g, gh);
    upload(u, uh);
    uint32_t xrows = x_row0 + m, yrows = y_row0 + m + 1;
    float *xh = malloc((uint64_t)xrows * K * 4), *yo = malloc((uint64_t)yrows * F * 4);
    REQUIRE(xh && yo, "out of memory");
    for (uint64_t i = 0; i < (uint64_t)xrows * K; i++) xh[i] = (float)vkd_test_rand_normal(&seed);
    float *yh = y_init(yrows, F, y_row0, m);
    vkd_tensor *x = op_tensor_layout(ctx, VKD_DTYPE_F32, xrows, K, VKD_LAYOUT_ROWS, "x"),
               *y = op_tensor_layout(ctx, VKD_DTYPE_F32, yrows, F, VKD_LAYOUT_ROWS, "h");
    upload(x, xh);
    upload(y, yh);
    float *an = malloc((uint64_t)m * K * 4), *y2 = malloc((uint64_t)yrows * F * 4);
    REQUIRE(an && y2, "out of memory");
    vkd_tensor *ln = norm_input(ctx, norm, dt, xh, x_row0, m, K, an);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_matmul_glu_ok(g, u), "%s: gate and up not fusable", label);
    vkd_op_matmul_glu(rec, y, y_row0, x, x_row0, g, u, m, ln, (float)EPS);
    vkd_rec_read(rec, y, 0, yo, y->bytes);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "%s: submit: %s", label, vkd_rec_error(rec)->msg);
    if (norm && r == VKD_OK) { /* bit for bit rmsnorm, then the GLU of its output */
        vkd_tensor *xn = op_tensor_layout(ctx, VKD_DTYPE_F32, xrows, K, VKD_LAYOUT_ROWS, "x_normed");
        upload(y, yh);
        vkd_rec_begin(rec);
        vkd_op_rmsnorm(rec, xn, x, ln, xrows, K, (float)EPS);
        vkd_op_matmul_glu(rec, y, y_row0, xn, x_row0, g, u, m, NULL, 0.0f);
        vkd_rec_read(rec, y, 0, y2, y->bytes);
        CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: submit: %s", label, vkd_rec_error(rec)->msg);
        CHECK(memcmp(yo, y2, (uint64_t)yrows * F * 4) == 0, "%s: differs from rmsnorm then the GLU", label);
        vkd_tensor_destroy(xn);
    }
    uint64_t no = (uint64_t)m * F;
    double *rg = malloc(no * 8), *mg = malloc(no * 8), *ru = malloc(no * 8), *mu = malloc(no * 8);
    REQUIRE(rg && mg && ru && mu, "out of memory");
    ref_matmul(rg, mg, an, gh, dt, m, F, K);
    ref_matmul(ru, mu, an, uh, dt, m, F, K);
    double tol = 2e-6 * sqrt((double)K), rel = norm ? 3e-8 * K + 1e-6 : 0; /* rel: the 1 / rms */
    for (uint64_t i = 0; i < no; i++) {
        double sg = rg[i] / (1.0 + exp(-rg[i])), want = sg * ru[i];
        mg[i] = tol * (1.1 * fabs(ru[i]) * mg[i] + fabs(sg) * mu[i]) +
                rel * (1.1 * fabs(ru[i] * rg[i]) + fabs(want)) + 1e-5 * fabs(want) + 1e-30;
        rg[i] = want;
    }
    if (r == VKD_OK) check_out(label, yo, yrows, F, y_row0, m, rg, mg);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(g); vkd_tensor_destroy(u); vkd_tensor_destroy(x); vkd_tensor_destroy(y);
    vkd_tensor_destroy(ln);
    free(gh); free(uh); free(xh); free(yo); free(yh); free(rg); free(mg); free(ru); free(mu); free(an);
    free(y2);
}

/* Refused: members of different stacks or separate tensors, mismatched gate/up, a stack
 * larger than one texel view. */
static void test_errors(vkd_ctx *ctx, vkd_ctx *tsplit) {
    vkd_error err = {0};
    vkd_tensor *a = op_tensor_layout(ctx, VKD_DTYPE_BF16, 64, 32, VKD_LAYOUT_BLOCKS, "a"),
               *b = op_tensor_layout(ctx, VKD_DTYPE_BF16, 64, 32, VKD_LAYOUT_BLOCKS, "b"),
               *c = op_tensor_layout(ctx, VKD_DTYPE_BF16, 65, 32, VKD_LAYOUT_BLOCKS, "c"),
               *x = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, 32, VKD_LAYOUT_ROWS, "x"),
               *y = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, 65, VKD_LAYOUT_ROWS, "y");
    const vkd_tensor *sep[2] = {a, b};
    vkd_tensor *ys[2] = {y, y};
    CHECK(!vkd_matmul_group_ok(ys, sep, 2), "separate tensors taken for a group");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_matmul_group(rec, ys, 0, x, 0, sep, 2, 1, NULL, 0.0f) == VKD_ERR_INVALID, "group of separate tensors");
    vkd_rec_destroy(rec);
    CHECK(!vkd_matmul_glu_ok(a, c), "gate and up of different shapes taken");
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_matmul_glu(rec, y, 0, x, 0, a, c, 1, NULL, 0.0f) == VKD_ERR_INVALID, "glu of different shapes");
    CHECK(strstr(vkd_rec_error(rec)->msg, "gate 'a'") != NULL, "glu error names the tensors: %s",
          vkd_rec_error(rec)->msg);
    vkd_rec_destroy(rec);
    /* a norm weight of another dtype */
    vkd_tensor *lnf = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, 32, VKD_LAYOUT_ROWS, "ln_f32");
    CHECK(!vkd_matmul_norm_ok(a, lnf, x), "an f32 norm weight taken for bf16 matrices");
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_op_matmul_glu(rec, y, 0, x, 0, a, b, 1, lnf, 1e-6f) == VKD_ERR_INVALID, "glu with an f32 norm "
          "weight on bf16 matrices");
    CHECK(strstr(vkd_rec_error(rec)->msg, "ln_f32") != NULL, "norm error names the tensor: %s",
          vkd_rec_error(rec)->msg);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(lnf);
    /* two stacks: members of different parents */
    uint64_t rows[2] = {64, 64};
    const char *names[2] = {"p", "q"};
    vkd_tensor *s1, *s2, *m1[2], *m2[2];
    REQUIRE(!vkd_tensor_create_stack(ctx, VKD_DTYPE_BF16, 2, rows, 32, names, &s1, m1, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_stack(ctx, VKD_DTYPE_BF16, 2, rows, 32, names, &s2, m2, &err), "%s", err.msg);
    const vkd_tensor *mixed[2] = {m1[0], m2[1]}, *same[2] = {m1[0], m1[1]};
    vkd_tensor *y2 = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, 65, VKD_LAYOUT_ROWS, "y2"), *ysep[2] = {y, y2};
    CHECK(!vkd_matmul_group_ok(ys, mixed, 2), "members of two stacks taken for a group");
    CHECK(vkd_matmul_group_ok(ys, same, 2), "members of one stack refused");
    CHECK(!vkd_matmul_group_ok(ysep, same, 2), "outputs in two buffers taken for a group");
    vkd_tensor_destroy(y2);
    for (int j = 0; j < 2; j++) {
        vkd_tensor_destroy(m1[j]);
        vkd_tensor_destroy(m2[j]);
    }
    vkd_tensor_destroy(s1);
    vkd_tensor_destroy(s2);
    /* tsplit: 4608 texels a view, a block of 256 rows x 32 bf16 is 1024: five blocks do not fit */
    uint64_t big[3] = {600, 300, 300};
    const char *bn[3] = {"q", "k", "v"};
    vkd_tensor *bs = (vkd_tensor *)1, *bm[3] = {(vkd_tensor *)1, (vkd_tensor *)1, (vkd_tensor *)1};
    CHECK(vkd_tensor_create_stack(tsplit, VKD_DTYPE_BF16, 3, big, 32, bn, &bs, bm, &err) == VKD_ERR_UNSUPPORTED,
          "a stack larger than one texel view accepted");
    CHECK(!bs && !bm[0] && !bm[1] && !bm[2], "a refused stack left tensors behind");
    vkd_tensor_destroy(a); vkd_tensor_destroy(b); vkd_tensor_destroy(c);
    vkd_tensor_destroy(x); vkd_tensor_destroy(y);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx, *tsplit;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    vkd_ctx_options to = {.max_texel_elements = 4608};
    REQUIRE(!vkd_ctx_create(&to, &tsplit, &err), "%s", err.msg);
    if (!vkd_ctx_profile(ctx)->matmul_fuse) {
        fprintf(stderr, "test_matmul_fused: the profile has matmul_fuse off (VKDRAFT_MATMUL_FUSE=0)\n");
        return 77;
    }
    static const vkd_dtype dts[] = {VKD_DTYPE_F32, VKD_DTYPE_F16, VKD_DTYPE_BF16};
    static const uint32_t ms[] = {1, 5, 17, 33}; /* passes of 1, 8 and 16 rows; several passes */
    static const uint32_t sets[][3] = {{128, 64, 64}, {45, 300, 300}, {257, 513, 64}, {2048, 1024, 1024}};
    static const uint32_t Ks[] = {67, 128, 9, 516};
    /* the norm where the device can take it bit for bit (K % 4 == 0) */
    vkd_tensor *probe_w = op_tensor_layout(ctx, VKD_DTYPE_BF16, 8, 128, VKD_LAYOUT_BLOCKS, "probe"),
               *probe_n = op_tensor_layout(ctx, VKD_DTYPE_BF16, 1, 128, VKD_LAYOUT_ROWS, "probe_ln"),
               *probe_x = op_tensor_layout(ctx, VKD_DTYPE_F32, 1, 128, VKD_LAYOUT_ROWS, "probe_x");
    bool norms = vkd_matmul_norm_ok(probe_w, probe_n, probe_x);
    vkd_tensor_destroy(probe_w);
    vkd_tensor_destroy(probe_n);
    vkd_tensor_destroy(probe_x);
    fprintf(stderr, "fused RMSNorm %s on this device\n", norms ? "tested" : "not offered (not tested)");
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++) {
            int s = (d + i) % 4;
            uint32_t K = s == 3 ? 64 : Ks[(d + 2 * i) % 4], K2 = Ks[(d + i) % 4];
            group_case(ctx, dts[d], 3, sets[s], K, ms[i], 0, 0, norms && K % 4 == 0 && (i & 1));
            group_case(ctx, dts[d], 2 + (i & 1), sets[(s + 1) % 3], K2, ms[i], 2, 1, norms && K2 % 4 == 0);
        }
    static const uint32_t Fs[] = {45, 257, 300, 513};
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++) {
            uint32_t K = Ks[(d + 2 * i) % 4], K2 = Ks[(d + i) % 4];
            glu_case(ctx, "", dts[d], Fs[(d + i) % 4], K, ms[i], 0, 0, norms && K % 4 == 0 && (i & 1));
            glu_case(ctx, "", dts[d], Fs[(d + i + 1) % 4], K2, ms[i], 2, 1, norms && K2 % 4 == 0);
        }
    for (int d = 0; d < 3; d++) { /* several chunks of gate and up */
        glu_case(tsplit, " split", dts[d], 1300, 67, 1, 0, 0, false);
        glu_case(tsplit, " split", dts[d], 700, 64, 16, 1, 2, norms);
        glu_case(tsplit, " split", dts[d], 600, 60, 37, 0, 1, false);
    }
    test_errors(ctx, tsplit);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "%u validation messages, first: %s",
          vkd_ctx_validation_count(ctx), vkd_ctx_validation_first(ctx));
    CHECK(vkd_ctx_validation_count(tsplit) == 0, "%u validation messages (tsplit), first: %s",
          vkd_ctx_validation_count(tsplit), vkd_ctx_validation_first(tsplit));
    vkd_ctx_destroy(tsplit);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_matmul_fused");
}
