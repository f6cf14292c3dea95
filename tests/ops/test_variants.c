/* test_variants: the generated shader variant selection (tools/gen_shaders.py ->
 * vkd_variants.h).
 *
 * 1. Table: every variant of vkd_variant_table is what its family's selection function
 *    returns for its own key, no shader appears twice, and a key no variant serves
 *    (a dtype without kernels, dx on texel-block weights) selects VKD_SHADER_COUNT.
 * 2. Reach: the matmul and embed families are driven through the public ops (vkd_op_matmul,
 *    vkd_op_matmul_backward, vkd_op_embed) on shapes that ask for each axis value (K % 8 == 0
 *    or not, m below or above the GEMM switch, both weight layouts, dx and dw, shapes off
 *    every tile edge), on a context with the profile's reduction and matmul kernels and one
 *    with VKDRAFT_REDUCE=shared and VKDRAFT_MATMUL=tiled; every output is checked
 *    against a plain-C double reference (|y - ref| <= 2e-6 sqrt(K) * sum |terms|, as in
 *    test_matmul; embedding exact), and the GPU profile of the two contexts must show every
 *    variant of both families dispatched at least once. */
#include <stdlib.h>
#include <string.h>

#include "ref_matmul.h"
#include "vkd_ops.h"
#include "vkd_ops_grad.h"
#include "op_util.h"
#include "vkd_test.h"
#include "vkd_variants.h"

static unsigned long long seed = 4321;

static void test_table(void) {
    bool seen[VKD_SHADER_COUNT] = {0};
    for (uint32_t i = 0; i < VKD_VARIANT_COUNT; i++) {
        const vkd_variant_entry *e = &vkd_variant_table[i];
        vkd_shader_id got = vkd_select_family(e->family, &e->key);
        CHECK(got == e->shader, "family %s: the key of %s selects %s", e->family,
              vkd_shader_table[e->shader].name,
              got < VKD_SHADER_COUNT ? vkd_shader_table[got].name : "nothing");
        CHECK(!seen[e->shader], "%s listed twice", vkd_shader_table[e->shader].name);
        seen[e->shader] = true;
    }
    vkd_variant bad = {.dtype = VKD_DTYPE_I32};
    CHECK(vkd_select_matmul(&bad) == VKD_SHADER_COUNT, "matmul selects a kernel for i32 weights");
    vkd_variant dxb = {.dtype = VKD_DTYPE_BF16, .layout = VKD_LAYOUT_BLOCKS, .trans = VKD_TRANS_DX};
    CHECK(vkd_select_matmul(&dxb) == VKD_SHADER_COUNT, "matmul selects dx on texel blocks");
    CHECK(vkd_select_family("no_such_family", &bad) == VKD_SHADER_COUNT, "unknown family selects");
    fprintf(stderr, "table: %u variants, each selected by its own key\n", VKD_VARIANT_COUNT);
}

static float *rand_f32(uint64_t n) {
    float *v = malloc(n * 4);
    REQUIRE(v, "out of memory");
    for (uint64_t i = 0; i < n; i++) v[i] = (float)vkd_test_rand_normal(&seed);
    return v;
}

static vkd_tensor *upload(vkd_ctx *ctx, vkd_dtype dt, vkd_layout layout, uint64_t rows,
                          uint64_t cols, const void *host, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    REQUIRE(!vkd_tensor_create_layout(ctx, dt, 2, shape, layout, name, &t, &err), "%s", err.msg);
    if (host) REQUIRE(!vkd_tensor_upload(t, 0, host, rows * cols * vkd_dtype_size(dt), &err), "%s", err.msg);
    return t;
}

static float *run_and_read(vkd_ctx *ctx, vkd_rec *rec, const vkd_tensor *out, uint64_t n,
                           const char *label) {
    float *o = malloc(n * 4);
    REQUIRE(o, "out of memory");
    vkd_rec_read(rec, out, 0, o, n * 4);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "%s: %s", label, vkd_rec_error(rec)->msg);
    (void)ctx;
    return o;
}

/* Worst |got - want| / mag over n outputs; fails the test beyond 2e-6 sqrt(terms). */
static double check(const char *label, const float *got, const double *want, const double *mag,
                    uint64_t n, uint32_t terms) {
    double tol = 2e-6 * sqrt((double)terms), worst = 0;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        double rel = fabs(got[i] - want[i]) / (mag[i] + 1e-30);
        if (!(rel <= worst)) worst = rel;
        if (!(rel <= tol) || !isfinite(got[i])) bad++;
    }
    CHECK(bad == 0, "%s: %llu of %llu outputs beyond %.2g (worst %.3g)", label,
          (unsigned long long)bad, (unsigned long long)n, tol, worst);
    fprintf(stderr, "  %-44s worst %.3g (bound %.2g)\n", label, worst, tol);
    return worst;
}

/* y = x W^T through vkd_op_matmul: m rows of x, W N x K of dtype dt in layout. */
static void forward_case(vkd_ctx *ctx, vkd_dtype dt, vkd_layout layout, uint32_t m, uint32_t N,
                         uint32_t K) {
    vkd_error err = {0};
    void *wh = op_rand_weights(dt, (uint64_t)N * K, &seed);
    float *xh = rand_f32((uint64_t)m * K);
    vkd_tensor *w = upload(ctx, dt, layout, N, K, wh, "w");
    vkd_tensor *x = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, K, xh, "x");
    vkd_tensor *y = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, N, NULL, "y");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_matmul(rec, y, 0, x, 0, w, m, false);
    char label[96];
    snprintf(label, sizeof label, "matmul %s %s m=%u N=%u K=%u", vkd_dtype_name(dt),
             layout == VKD_LAYOUT_BLOCKS ? "blocks" : "rows", m, N, K);
    float *yo = run_and_read(ctx, rec, y, (uint64_t)m * N, label);
    double *ref = malloc((uint64_t)m * N * 8), *mag = malloc((uint64_t)m * N * 8);
    REQUIRE(ref && mag, "out of memory");
    ref_matmul(ref, mag, xh, wh, dt, m, N, K);
    check(label, yo, ref, mag, (uint64_t)m * N, K);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(w), vkd_tensor_destroy(x), vkd_tensor_destroy(y);
    free(wh), free(xh), free(yo), free(ref), free(mag);
}

/* dx = dy W (W of dtype dt) and dw = dy^T x through vkd_op_matmul_backward. */
static void backward_case(vkd_ctx *ctx, vkd_dtype dt, uint32_t m, uint32_t N, uint32_t K) {
    vkd_error err = {0};
    void *wh = op_rand_weights(dt, (uint64_t)N * K, &seed);
    float *xh = rand_f32((uint64_t)m * K), *dyh = rand_f32((uint64_t)m * N);
    vkd_tensor *w = upload(ctx, dt, VKD_LAYOUT_ROWS, N, K, wh, "w");
    vkd_tensor *x = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, K, xh, "x");
    vkd_tensor *dy = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, N, dyh, "dy");
    vkd_tensor *dx = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, K, NULL, "dx");
    vkd_tensor *dw = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, N, K, NULL, "dw");
    double *rx = calloc((size_t)m * K, 8), *mx = calloc((size_t)m * K, 8);
    double *rw = calloc((size_t)N * K, 8), *mw = calloc((size_t)N * K, 8);
    REQUIRE(rx && mx && rw && mw, "out of memory");
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t n = 0; n < N; n++)
            for (uint32_t k = 0; k < K; k++) {
                double a = (double)dyh[(size_t)i * N + n], wv = ref_weight(dt, wh, (uint64_t)n * K + k);
                double xv = xh[(size_t)i * K + k];
                rx[(size_t)i * K + k] += a * wv, mx[(size_t)i * K + k] += fabs(a * wv);
                rw[(size_t)n * K + k] += a * xv, mw[(size_t)n * K + k] += fabs(a * xv);
            }
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_matmul_backward(rec, dx, 0, dw, dy, 0, x, 0, w, m, false);
    float *wo = malloc((size_t)N * K * 4);
    REQUIRE(wo, "out of memory");
    vkd_rec_read(rec, dw, 0, wo, (uint64_t)N * K * 4);
    char label[96];
    snprintf(label, sizeof label, "matmul_backward %s m=%u N=%u K=%u dx", vkd_dtype_name(dt), m, N, K);
    float *xo = run_and_read(ctx, rec, dx, (uint64_t)m * K, label);
    check(label, xo, rx, mx, (uint64_t)m * K, N);
    label[strlen(label) - 1] = 'w';
    check(label, wo, rw, mw, (uint64_t)N * K, m);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(w), vkd_tensor_destroy(x), vkd_tensor_destroy(dy);
    vkd_tensor_destroy(dx), vkd_tensor_destroy(dw);
    free(wh), free(xh), free(dyh), free(rx), free(mx), free(rw), free(mw), free(wo), free(xo);
}

/* y[i] = table[ids[i]] (ids include ones outside [0, V): zero rows); exact. */
static void embed_case(vkd_ctx *ctx, vkd_dtype dt, vkd_layout layout, uint32_t m, uint32_t V,
                       uint32_t H) {
    vkd_error err = {0};
    void *th = op_rand_weights(dt, (uint64_t)V * H, &seed);
    int32_t *ids = malloc((size_t)m * 4);
    REQUIRE(ids, "out of memory");
    for (uint32_t i = 0; i < m; i++) ids[i] = i % 7 == 3 ? (int32_t)V + 2 : (int32_t)((i * 37u) % V);
    vkd_tensor *t = upload(ctx, dt, layout, V, H, th, "table");
    vkd_tensor *it = upload(ctx, VKD_DTYPE_I32, VKD_LAYOUT_ROWS, m, 1, ids, "ids");
    vkd_tensor *y = upload(ctx, VKD_DTYPE_F32, VKD_LAYOUT_ROWS, m, H, NULL, "y");
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_embed(rec, y, it, t, m);
    char label[96];
    snprintf(label, sizeof label, "embed %s %s m=%u V=%u H=%u", vkd_dtype_name(dt),
             layout == VKD_LAYOUT_BLOCKS ? "blocks" : "rows", m, V, H);
    float *yo = run_and_read(ctx, rec, y, (uint64_t)m * H, label);
    double *ref = malloc((size_t)m * H * 8);
    REQUIRE(ref, "out of memory");
    ref_embed(ref, ids, th, dt, m, V, H);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < (uint64_t)m * H; i++)
        if (!((double)yo[i] == ref[i])) bad++;
    CHECK(bad == 0, "%s: %llu outputs differ from the table", label, (unsigned long long)bad);
    fprintf(stderr, "  %-44s exact: %s\n", label, bad ? "no" : "yes");
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(t), vkd_tensor_destroy(it), vkd_tensor_destroy(y);
    free(th), free(ids), free(yo), free(ref);
}

/* Every shape the selection distinguishes, for every dtype. */
static void drive(vkd_ctx *ctx) {
    static const vkd_dtype dts[] = {VKD_DTYPE_F32, VKD_DTYPE_F16, VKD_DTYPE_BF16};
    uint32_t gemm_m = vkd_ctx_profile(ctx)->gemm_min_m + 3;
    for (int d = 0; d < 3; d++) {
        forward_case(ctx, dts[d], VKD_LAYOUT_ROWS, 3, 45, 64);      /* GEMV vec */
        forward_case(ctx, dts[d], VKD_LAYOUT_ROWS, 5, 45, 67);      /* GEMV scalar */
        forward_case(ctx, dts[d], VKD_LAYOUT_ROWS, gemm_m, 45, 67); /* GEMM */
        forward_case(ctx, dts[d], VKD_LAYOUT_BLOCKS, 6, 300, 67);   /* texel blocks, x as storage */
        forward_case(ctx, dts[d], VKD_LAYOUT_BLOCKS, 6, 300, 68);   /* the same, x through its
                                                                     * texel view (K % 4 == 0) */
        backward_case(ctx, dts[d], 5, 45, 67);
        backward_case(ctx, dts[d], 11, 45, 64); /* K % 4 == 0: four-column dx */
        /* tiles cut at every edge: m, N and K off the 8 x 32 tile and the 4-step reduction */
        backward_case(ctx, dts[d], 38, 71, 37);
        forward_case(ctx, dts[d], VKD_LAYOUT_ROWS, gemm_m + 8, 70, 37);
        embed_case(ctx, dts[d], VKD_LAYOUT_ROWS, 23, 300, 67);
        embed_case(ctx, dts[d], VKD_LAYOUT_BLOCKS, 23, 300, 67);
    }
}

static bool dispatched(vkd_ctx *const *ctxs, int n, const char *name) {
    for (int c = 0; c < n; c++) {
        const vkd_profile_entry *pe;
        uint32_t np = vkd_ctx_profile_entries(ctxs[c], &pe);
        for (uint32_t i = 0; i < np; i++)
            if (!strcmp(pe[i].name, name) && pe[i].calls > 0) return true;
    }
    return false;
}

int main(void) {
    test_table();
    vkd_error err = {0};
    vkd_ctx *ctx[2];
    vkd_ctx_options o = {.profile = true};
    REQUIRE(!vkd_ctx_create(&o, &ctx[0], &err), "%s", err.msg);
    REQUIRE(!setenv("VKDRAFT_REDUCE", "shared", 1) && !setenv("VKDRAFT_MATMUL", "tiled", 1), "setenv");
    REQUIRE(!vkd_ctx_create(&o, &ctx[1], &err), "%s", err.msg);
    unsetenv("VKDRAFT_REDUCE");
    unsetenv("VKDRAFT_MATMUL");
    CHECK(!vkd_ctx_profile(ctx[1])->reduce_subgroup, "VKDRAFT_REDUCE=shared left subgroup reductions on");
    CHECK(!vkd_ctx_profile(ctx[1])->matmul_bcast, "VKDRAFT_MATMUL=tiled left the broadcast matmul on");
    if (!vkd_ctx_info(ctx[0])->timestamps) {
        fprintf(stderr, "test_variants: the device has no timestamps; the reach check needs the "
                        "GPU profile\n");
        return 77; /* skipped */
    }
    for (int c = 0; c < 2; c++) {
        fprintf(stderr, "device: %s, reduction: %s, matmul: %s\n", vkd_ctx_info(ctx[c])->name,
                vkd_ctx_profile(ctx[c])->reduce_subgroup ? "subgroup" : "shared memory",
                vkd_ctx_profile(ctx[c])->matmul_bcast ? "broadcast tiles" : "shared-memory tiles");
        drive(ctx[c]);
    }
    uint32_t checked = 0;
    for (uint32_t i = 0; i < VKD_VARIANT_COUNT; i++) {
        const vkd_variant_entry *e = &vkd_variant_table[i];
        if (strcmp(e->family, "matmul") && strcmp(e->family, "embed")) continue;
        const char *name = vkd_shader_table[e->shader].name;
        CHECK(dispatched(ctx, 2, name), "variant %s was never dispatched", name);
        checked++;
    }
    fprintf(stderr, "reach: %u matmul and embed variants, each dispatched and checked\n", checked);
    for (int c = 0; c < 2; c++) {
        CHECK(vkd_ctx_validation_count(ctx[c]) == 0, "%u validation messages, first: %s",
              vkd_ctx_validation_count(ctx[c]), vkd_ctx_validation_first(ctx[c]));
        vkd_ctx_destroy(ctx[c]);
    }
    return vkd_test_result("test_variants");
}
