/* vkd_ops_grad.h: the backward ops of the op library, each beside its forward in
 * signature (llm.c habit): forward(out, in..., sizes) / backward(din..., dout, in..., sizes).
 * Gradients are f32. `accumulate`: d_in (=|+=) ..., so gradients from several uses of one
 * tensor (a K/V projection on context and block rows, a residual stream) add up.
 * A residual add y = x + f(x) needs no op of its own: its backward passes dy to both
 * branches (vkd_op_axpby / vkd_op_add to sum them).
 * Each op has a plain-C double reference and a finite-difference test in tests/ops/
 * (ref_grad.c, test_grad.c). Reductions are split into dispatches under the driver's loop
 * budget (vkd_ops_loop_items). */
#ifndef VKD_OPS_GRAD_H
#define VKD_OPS_GRAD_H

#include "vkd_ops.h"

/* Backward of vkd_op_matmul (y[i, :N] = x[i, :K] . W^T, W: N x K):
 *   dx[dx_row0 + i, :K] (=|+=) dy[dy_row0 + i, :N] . W        (dx NULL: skipped)
 *        W f32/f16/bf16 in any number of chunks (a frozen weight);
 *   dw[:N, :K] (=|+=) sum_{i < m} dy[dy_row0 + i, :]^T x[x_row0 + i, :]   (dw NULL: skipped)
 *        dw f32 single chunk (LoRA A/B, trainable heads); x f32 row stride K.
 * dy: f32 row stride N; dx: f32 row stride K. w gives N and K (also when dw is the target). */
vkd_result vkd_op_matmul_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t dx_row0, vkd_tensor *dw,
                                  const vkd_tensor *dy, uint32_t dy_row0, const vkd_tensor *x,
                                  uint32_t x_row0, const vkd_tensor *w, uint32_t m,
                                  bool accumulate);

/* Backward of vkd_op_embed (y[i, :H] = table[ids[i], :H]), without float atomics:
 *   dtable[v, :H] (=|+=) sum over rows i < m with ids[i] == v of dy[i, :H], summed in
 *   ascending i (deterministic); ids outside [0, V) contribute nothing.
 * The rows are found through a by-id index built on the host from the same ids
 * (vkd_embed_grad_index): order (i32, m) lists the rows grouped by id, offsets (i32, V + 1)
 * where each id's group starts. dy: f32 m x H (row stride H); dtable: f32 V x H, one chunk
 * (a tied LM head's gradient: let the head's dW be written first, then accumulate). */
vkd_result vkd_op_embed_backward(vkd_rec *rec, vkd_tensor *dtable, const vkd_tensor *dy,
                                 const vkd_tensor *order, const vkd_tensor *offsets, uint32_t m,
                                 uint32_t V, uint32_t H, bool accumulate);
/* The index of vkd_op_embed_backward for ids[0..m): a counting sort, rows ascending inside
 * an id; ids outside [0, V) are left out (offsets[V] is then below m). offsets: V + 1
 * entries, order: m. */
void vkd_embed_grad_index(const int32_t *ids, uint32_t m, uint32_t V, int32_t *offsets, int32_t *order);

/* Backward of vkd_op_rmsnorm over groups x dim (x, dy, dx f32; w dim f32/f16/bf16):
 *   dx (=|+=) r (w dy - x r^2 sum(w dy x) / dim),  r = 1/sqrt(mean(x^2) + eps) per group;
 *   dw (optional, f32 dim) (=|+=) sum over groups of dy x r; needs rstd (f32, >= groups
 *   elements: scratch that receives r). dx must not alias x or dy. */
vkd_result vkd_op_rmsnorm_backward(vkd_rec *rec, vkd_tensor *dx, vkd_tensor *dw, vkd_tensor *rstd,
                                   const vkd_tensor *dy, const vkd_tensor *x, const vkd_tensor *w,
                                   uint32_t groups, uint32_t dim, float eps, bool accumulate);

/* Backward of vkd_op_rope: the inverse rotation of dx in place (same arguments). */
vkd_result vkd_op_rope_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t x_row0, uint32_t rows,
                                uint32_t heads, uint32_t head_dim, uint32_t pos0,
                                const vkd_tensor *positions, const vkd_tensor *inv_freq);

/* Backward of vkd_op_swiglu (h = silu(g) * u over n): dg, du written (distinct tensors). */
vkd_result vkd_op_swiglu_backward(vkd_rec *rec, vkd_tensor *dg, vkd_tensor *du,
                                  const vkd_tensor *dh, const vkd_tensor *g, const vkd_tensor *u,
                                  uint64_t n);

/* Backward of vkd_op_attention_lse (same sizes and masking; all tensors f32):
 *   dq: q_rows x (n_q*hd); dk, dv: kv_len rows of k's row stride (k->cols, kv head g at
 *   column g*hd), written or accumulated (accumulate); do_: gradient of o; o, lse: the
 *   forward's outputs. hd a multiple of 4, at most 256. */
vkd_result vkd_op_attention_backward(vkd_rec *rec, vkd_tensor *dq, vkd_tensor *dk, vkd_tensor *dv,
                                     const vkd_tensor *do_, const vkd_tensor *q,
                                     const vkd_tensor *k, const vkd_tensor *v, const vkd_tensor *o,
                                     const vkd_tensor *lse, uint32_t q_rows, uint32_t kv_len,
                                     uint32_t n_q, uint32_t n_kv, uint32_t hd, uint32_t q_pos0,
                                     bool causal, float scale, bool accumulate);

/* Backward of vkd_op_attention_blocks_lse (same sizes, anchors and mask; all f32): dq
 * q_rows x (n_q*hd); dk, dv rows [0, n_ctx + q_rows) of k's row stride, written or
 * accumulated (accumulate). hd a multiple of 4, at most 256. */
vkd_result vkd_op_attention_blocks_backward(vkd_rec *rec, vkd_tensor *dq, vkd_tensor *dk, vkd_tensor *dv,
                                            const vkd_tensor *do_, const vkd_tensor *q, const vkd_tensor *k,
                                            const vkd_tensor *v, const vkd_tensor *o, const vkd_tensor *lse,
                                            const vkd_tensor *anchors, uint32_t q_rows, uint32_t block,
                                            uint32_t n_ctx, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                            float scale, bool accumulate);

#endif
