/* op_util.h: what the op tests share beside vkd_test.h (tests only): device tensors that
 * must be created (a failure ends the program) and random weights of any weight dtype. */
#ifndef VKD_OP_UTIL_H
#define VKD_OP_UTIL_H

#include "vkd_ops.h"
#include "vkd_test.h"

/* A rows x cols tensor of dtype dt (vkd_tensor_create_2d: row-major, chunked as needed). */
static inline vkd_tensor *op_tensor(vkd_ctx *ctx, vkd_dtype dt, uint64_t rows, uint64_t cols, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, dt, rows, cols, name, &t, &err), "%s", err.msg);
    return t;
}

/* The same in a given layout (vkd_tensor_create_layout). */
static inline vkd_tensor *op_tensor_layout(vkd_ctx *ctx, vkd_dtype dt, uint64_t rows, uint64_t cols,
                                           vkd_layout layout, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    REQUIRE(!vkd_tensor_create_layout(ctx, dt, 2, shape, layout, name, &t, &err), "%s", err.msg);
    return t;
}

/* n weights of dtype dt (f32, f16 or bf16), raw bytes to upload: N(0, 0.25) rounded to dt,
 * drawn from *seed. */
static inline void *op_rand_weights(vkd_dtype dt, uint64_t n, unsigned long long *seed) {
    void *w = malloc(n * vkd_dtype_size(dt));
    REQUIRE(w, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        float v = (float)(vkd_test_rand_normal(seed) * 0.5);
        if (dt == VKD_DTYPE_F32) ((float *)w)[i] = v;
        else if (dt == VKD_DTYPE_F16) ((uint16_t *)w)[i] = vkd_f32_to_f16(v);
        else ((uint16_t *)w)[i] = vkd_f32_to_bf16(v);
    }
    return w;
}

#endif
