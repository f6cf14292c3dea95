/* ref_grad.h: plain-C double references of the forward and backward ops used in training
 * (tests only). All arrays double; shapes as in runtime/vkd_ops.h and vkd_ops_grad.h.
 * Backward functions write (=) their gradients; a NULL output is skipped. */
#ifndef VKD_REF_GRAD_H
#define VKD_REF_GRAD_H

#include <stdbool.h>
#include <stdint.h>

/* y (m x N) = x (m x K) W^T (W: N x K) */
void rg_matmul_fwd(double *y, const double *x, const double *w, uint32_t m, uint32_t N, uint32_t K);
void rg_matmul_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                   uint32_t m, uint32_t N, uint32_t K);

/* groups x dim; y = x r w, r = 1/sqrt(mean(x^2) + eps) */
void rg_rmsnorm_fwd(double *y, const double *x, const double *w, uint32_t groups, uint32_t dim, double eps);
void rg_rmsnorm_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                    uint32_t groups, uint32_t dim, double eps);

/* rows x heads vectors of hd (row stride heads*hd), in place; angle = (float)(pos *
 * inv_freq[j]) as the shader rounds it, pos = pos0 + row */
void rg_rope_fwd(double *x, uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0, const float *inv_freq);
void rg_rope_bwd(double *dx, uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0, const float *inv_freq);

/* h = silu(g) u over n */
void rg_swiglu_fwd(double *h, const double *g, const double *u, uint64_t n);
void rg_swiglu_bwd(double *dg, double *du, const double *dh, const double *g, const double *u, uint64_t n);

/* y (m x H) = table[ids] (ids outside [0, V): zero rows); dtable (V x H) = sum of dy rows
 * by id */
void rg_embed_fwd(double *y, const double *table, const int32_t *ids, uint32_t m, uint32_t V, uint32_t H);
void rg_embed_bwd(double *dtable, const double *dy, const int32_t *ids, uint32_t m, uint32_t V, uint32_t H);

/* q, o: q_rows x (n_q*hd); k, v: kv_len x kv_stride (kv head g at g*hd); lse: q_rows x n_q.
 * block != 0: the block-sparse mask of vkd_op_attention_blocks_lse (query row i of block
 * b = i / block sees keys j < min(anchors[b], q_pos0) and q_pos0 + b*block .. + block - 1;
 * kv_len = q_pos0 + q_rows; causal ignored). */
typedef struct rg_attn {
    uint32_t q_rows, kv_len, n_q, n_kv, hd, kv_stride, q_pos0;
    bool causal;
    double scale;
    uint32_t block;
    const int32_t *anchors;
} rg_attn;
void rg_attention_fwd(double *o, double *lse, const double *q, const double *k, const double *v,
                      const rg_attn *a);
void rg_attention_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q,
                      const double *k, const double *v, const double *o, const double *lse,
                      const rg_attn *a);

#endif
