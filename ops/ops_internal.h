/* ops_internal.h: helpers shared by the op implementations (ops/ops_*.c). */
#ifndef VKD_OPS_INTERNAL_H
#define VKD_OPS_INTERNAL_H

#include "vkd_ops.h"
#include "vkd_push.h"
#include "vkd_variants.h" /* generated: vkd_select_<family>, the shader variant for a key */

/* Workgroup count for a grid-stride element-wise kernel over n items. */
static inline uint32_t vkd_ops_elementwise_groups(const vkd_ctx *ctx, uint64_t n) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t wg = p->wg_elementwise;
    uint64_t g = (n + wg - 1) / wg;
    if (g > p->elementwise_max_groups) g = p->elementwise_max_groups;
    /* a grid-stride lane runs ceil(n / (g * wg)) iterations: under a loop budget (lavapipe:
     * past it the loop exits early and the tail of y is silently never written) add groups
     * until every lane's share fits */
    uint64_t lim = p->bug_loop_limit;
    if (lim > 64 + 1) {
        uint64_t per = lim - 64;
        uint64_t need = (n + wg * per - 1) / (wg * per);
        if (g < need) g = need;
    }
    return g ? (uint32_t)g : 1;
}

/* Fails the recorder unless t is one chunk holding at least `elems` elements of dtype. */
vkd_result vkd_ops_need(vkd_rec *rec, const char *op, const vkd_tensor *t, vkd_dtype dtype,
                        uint64_t elems);

/* Do two chunks share bytes of one buffer? (Views of one buffer may not; a tensor and a
 * view of it may.) In-place and aliasing checks ask this, not whether buffers are equal. */
static inline bool vkd_ops_chunks_overlap(const vkd_chunk *x, const vkd_chunk *y) {
    if (x->buffer != y->buffer) return false;
    uint64_t xe = x->base + (x->bind_bytes ? x->bind_bytes : x->bytes);
    uint64_t ye = y->base + (y->bind_bytes ? y->bind_bytes : y->bytes);
    return x->base < ye && y->base < xe;
}
static inline bool vkd_ops_overlap(const vkd_tensor *a, const vkd_tensor *b) {
    return vkd_ops_chunks_overlap(&a->chunks[0], &b->chunks[0]);
}

/* How many items of a loop costing `per_item` iterations each (after `fixed` iterations of
 * setup) one invocation may run under the device's loop budget (profile bug_loop_limit);
 * UINT32_MAX where the device has none, 0 when not even one fits. Kernels split their
 * reduction range by it. */
static inline uint32_t vkd_ops_loop_items(const vkd_ctx *ctx, uint64_t fixed, uint64_t per_item) {
    uint64_t lim = vkd_ctx_profile(ctx)->bug_loop_limit;
    if (!lim) return UINT32_MAX;
    fixed += 64; /* margin for the loops a compiler adds */
    if (lim < fixed + per_item) return 0;
    uint64_t n = (lim - fixed) / per_item;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* Records d once per piece of the reduction range [r0, r1), at most `per` items a piece
 * (vkd_ops_loop_items; UINT32_MAX: one piece), first writing into the push constants d
 * points at the piece's bounds (*lo, *hi) and whether it accumulates (*acc: accumulate, or
 * any piece after the first); the bindings of out_mask (bit b: binding b) are written, or
 * read-written when accumulating. The backward ops split their reductions with it. */
vkd_result vkd_ops_split_dispatch(vkd_rec *rec, vkd_dispatch *d, uint32_t r0, uint32_t r1,
                                  uint32_t per, bool accumulate, uint32_t out_mask, uint32_t *lo,
                                  uint32_t *hi, uint32_t *acc);

/* C[a, b] (=|+=) sum_{r in [r0, r1)} A(a, r) B(r, b) by shaders/matmul_bcast.comp (sh: one of
 * its variants; in0: binding 0, the weight chunk or x; in1: binding 1; out: the output chunk
 * (its access set here); pc: every field but
 * r0, r1, accumulate), in 8 x 32 tiles, the reduction split under the loop budget. */
vkd_result vkd_ops_matmul_bcast(vkd_rec *rec, vkd_shader_id sh, vkd_bind in0, vkd_bind in1,
                                vkd_bind out, vkd_pc_matmul_bcast pc, uint32_t r0, uint32_t r1,
                                bool accumulate);

/* vkd_op_rope, or with `inverse` the rotation by -angle (its backward, ops_grad.c). */
vkd_result vkd_ops_rope_dispatch(vkd_rec *rec, vkd_tensor *x, uint32_t x_row0, uint32_t rows,
                                 uint32_t heads, uint32_t head_dim, uint32_t pos0,
                                 const vkd_tensor *positions, const vkd_tensor *inv_freq,
                                 bool inverse);

static inline uint64_t vkd_div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static inline vkd_bind vkd_r(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_READ}; }
static inline vkd_bind vkd_w(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_WRITE}; }
static inline vkd_bind vkd_rw(const vkd_tensor *t) { return (vkd_bind){&t->chunks[0], VKD_RW}; }

#endif
