/* ops_internal.h: helpers shared by the op implementations (ops/ops_*.c). */
#ifndef VKD_OPS_INTERNAL_H
#define VKD_OPS_INTERNAL_H

#include "vkd_ops.h"
#include "vkd_push.h"

/* Workgroup count for a grid-stride element-wise kernel over n items. */
static inline uint32_t vkd_ops_elementwise_groups(const vkd_ctx *ctx, uint64_t n) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t g = (n + p->wg_elementwise - 1) / p->wg_elementwise;
    if (g > p->elementwise_max_groups) g = p->elementwise_max_groups;
    return g ? (uint32_t)g : 1;
}

/* Fails the recorder unless t is one chunk holding at least `elems` elements of dtype. */
vkd_result vkd_ops_need(vkd_rec *rec, const char *op, const vkd_tensor *t, vkd_dtype dtype,
                        uint64_t elems);

static inline vkd_bind vkd_r(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_READ}; }
static inline vkd_bind vkd_w(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_WRITE}; }
static inline vkd_bind vkd_rw(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_RW}; }

#endif
