/* test_runtime: device, memory, recorder and error paths of the Vulkan runtime.
 * Runs with the validation layer (synchronization validation on): any message fails. */
#include <stdlib.h>
#include <string.h>

#include "../../runtime/internal.h"
#include "vkd_ops.h"
#include "vkd_test.h"

static unsigned long long seed = 42;

static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)vkd_test_rand_normal(&seed);
}

/* Chained dependent dispatches (y = 2*x0 + x1; z = y + y; z += x0) then read back. */
static void test_axpby_chain(vkd_ctx *ctx, uint64_t n) {
    vkd_error err = {0};
    vkd_tensor *x0, *x1, *y, *z;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n + 4, "x0", &x0, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n + 4, "x1", &x1, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n + 4, "y", &y, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n + 4, "z", &z, &err), "%s", err.msg);
    float *a = malloc((n + 4) * 4), *b = malloc((n + 4) * 4), *out = malloc((n + 4) * 4);
    fill(a, n + 4);
    fill(b, n + 4);
    REQUIRE(!vkd_tensor_upload(x0, 0, a, n * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(x1, 0, b, n * 4, &err), "%s", err.msg);
    const float sentinel = 12345.5f;
    float sent[4] = {sentinel, sentinel, sentinel, sentinel};
    REQUIRE(!vkd_tensor_upload(z, n * 4, sent, 16, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_axpby(rec, y, x0, x1, 2.0f, 1.0f, n);
    vkd_op_axpby(rec, z, y, y, 1.0f, 1.0f, n);
    vkd_op_add(rec, z, x0, n);
    vkd_rec_read(rec, z, 0, out, (n + 4) * 4);
    vkd_result r = vkd_rec_submit(rec);
    CHECK(r == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);
    double worst = 0;
    for (uint64_t i = 0; i < n; i++) {
        double want = 2.0 * (2.0 * a[i] + b[i]) + a[i];
        double e = fabs(out[i] - want) / (1.0 + fabs(want));
        if (!(e <= worst)) worst = e;
    }
    for (int i = 0; i < 4; i++) CHECK(out[n + i] == sentinel, "sentinel %d overwritten (n=%llu)", i, (unsigned long long)n);
    CHECK(worst < 1e-6, "axpby chain n=%llu: worst relative error %.3g", (unsigned long long)n, worst);
    fprintf(stderr, "  axpby chain n=%-8llu worst rel err %.3g\n", (unsigned long long)n, worst);
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(x0); vkd_tensor_destroy(x1); vkd_tensor_destroy(y); vkd_tensor_destroy(z);
    free(a); free(b); free(out);
}

/* A tensor split across bindings: rows land in the right chunks, byte ranges that cross
 * chunk boundaries upload and download intact. */
static void test_split(vkd_ctx *ctx) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 103, 50, "split", &t, &err), "%s", err.msg);
    CHECK(t->nchunks > 1, "expected a split tensor, got %u chunk(s)", t->nchunks);
    uint64_t rows = 0;
    for (uint32_t c = 0; c < t->nchunks; c++) {
        CHECK(t->chunks[c].row0 == rows, "chunk %u starts at row %llu", c, (unsigned long long)t->chunks[c].row0);
        CHECK(t->chunks[c].bytes <= vkd_ctx_max_binding(ctx), "chunk %u exceeds the binding limit", c);
        rows += t->chunks[c].rows;
    }
    CHECK(rows == 103, "chunks cover %llu rows", (unsigned long long)rows);
    size_t n = 103 * 50;
    float *a = malloc(n * 4), *b = calloc(n, 4);
    fill(a, n);
    REQUIRE(!vkd_tensor_upload(t, 0, a, n * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_download(t, 0, b, n * 4, &err), "%s", err.msg);
    CHECK(memcmp(a, b, n * 4) == 0, "split tensor round trip differs");
    /* partial range from the middle of one chunk into the next */
    float part[300];
    REQUIRE(!vkd_tensor_download(t, 17 * 200 + 12, part, sizeof part, &err), "%s", err.msg);
    CHECK(memcmp(part, (char *)a + 17 * 200 + 12, sizeof part) == 0, "cross-chunk range differs");
    CHECK(vkd_tensor_download(t, n * 4 - 8, part, 16, &err) == VKD_ERR_RANGE, "out-of-range download accepted");
    free(a); free(b);
    vkd_tensor_destroy(t);
}

static void test_errors(void) {
    vkd_error err = {0};
    vkd_ctx *ctx = NULL;
    vkd_ctx_options o = {.pick_device = true, .device_index = 99};
    CHECK(vkd_ctx_create(&o, &ctx, &err) == VKD_ERR_INVALID, "device 99 accepted");
    CHECK(strstr(err.msg, "does not exist") != NULL, "bad message: %s", err.msg);
    CHECK(ctx == NULL, "ctx returned on failure");
    setenv("VKDRAFT_DEVICE", "abc", 1);
    CHECK(vkd_ctx_create(NULL, &ctx, &err) == VKD_ERR_INVALID, "VKDRAFT_DEVICE=abc accepted");
    CHECK(strstr(err.msg, "VKDRAFT_DEVICE") != NULL, "bad message: %s", err.msg);
    unsetenv("VKDRAFT_DEVICE");
    fprintf(stderr, "  errors: %s\n", err.msg);
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    const vkd_device_info *info = vkd_ctx_info(ctx);
    fprintf(stderr, "device: %s (%s), subgroup %u, binding limit %llu, profile %s\n", info->name,
            info->driver, info->subgroup_size, (unsigned long long)vkd_ctx_max_binding(ctx),
            vkd_ctx_profile(ctx)->name);
    CHECK(info->subgroup_size > 0, "subgroup size unknown");
    CHECK(info->max_storage_buffer_range > 0, "maxStorageBufferRange unknown");
    /* 3000017: past lavapipe's loop budget for a grid stride of 2 workgroups of 8 lanes
     * (16 x 65471 elements), where the tail used to stay unwritten */
    uint64_t sizes[] = {1, 7, 1000, 65537, 1000003, 3000017};
    for (int i = 0; i < 6; i++) test_axpby_chain(ctx, sizes[i]);

    /* larger than device memory: clean error, no crash */
    vkd_tensor *huge = NULL;
    int64_t shape[2] = {1ll << 24, 1ll << 20};
    CHECK(vkd_tensor_create(ctx, VKD_DTYPE_F32, 2, shape, "huge", &huge, &err) == VKD_ERR_DEVICE_MEMORY,
          "64 TiB tensor: got '%s'", err.msg);
    CHECK(huge == NULL, "huge tensor returned");
    fprintf(stderr, "  huge: %s\n", err.msg);
    /* a row larger than the binding limit */
    int64_t wide[2] = {1, (int64_t)(vkd_ctx_max_binding(ctx) / 4 + 16)};
    CHECK(vkd_tensor_create(ctx, VKD_DTYPE_F32, 2, wide, "wide", &huge, &err) == VKD_ERR_UNSUPPORTED,
          "over-wide row accepted");

    /* the validation messenger is live: an invalid call is reported */
    uint32_t before = vkd_ctx_validation_count(ctx);
    const char *val = getenv("VKDRAFT_VALIDATION"); /* read as vkd_ctx_create reads it */
    if (val && *val && strcmp(val, "0") != 0) {
        VkBufferCreateInfo bad = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = 0,
                                  .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT};
        VkBuffer b = VK_NULL_HANDLE;
        if (vkCreateBuffer(ctx->device, &bad, NULL, &b) == VK_SUCCESS && b)
            vkDestroyBuffer(ctx->device, b, NULL);
        CHECK(vkd_ctx_validation_count(ctx) > before, "validation layer did not report a size-0 buffer");
        ctx->validation_count = before; /* that message was intended */
    }
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);

    /* small binding limit forces the split path; staging path forced too */
    vkd_ctx_options o = {.max_binding_bytes = 4096, .force_staging = true, .profile = true};
    REQUIRE(!vkd_ctx_create(&o, &ctx, &err), "%s", err.msg);
    CHECK(vkd_ctx_max_binding(ctx) == 4096, "binding limit %llu", (unsigned long long)vkd_ctx_max_binding(ctx));
    test_split(ctx);
    test_axpby_chain(ctx, 1000);
    const vkd_profile_entry *pe;
    uint32_t np = vkd_ctx_profile_entries(ctx, &pe);
    if (vkd_ctx_info(ctx)->timestamps) CHECK(np >= 1 && pe[0].calls >= 1, "profile has no entries");
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);

    test_errors();
    return vkd_test_result("test_runtime");
}
