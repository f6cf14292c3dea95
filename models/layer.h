/* layer.h: the building blocks every model here is made of: checkpoint tensors on the
 * device, the linear layer (a frozen weight with an optional LoRA adapter) and the one
 * Qwen3 / Llama decoder layer that the target and the DFlash draft both run.
 *
 * Decoder layer, x the residual stream (m rows x hidden), K/V rows [pos, pos+m) written
 * into (kc, vc) and attention over kc/vc rows [0, pos+m):
 *   a1 = rmsnorm(x) * ln1;  q, k, v = lin(a1; q_proj, k_proj, v_proj)
 *   (qk_norm) q, k = rmsnorm per head * q_norm, k_norm
 *   q, k = rope(pos .. pos+m-1);  kc/vc rows [pos, pos+m) = k, v
 *   o = attention(q, kc/vc[0, pos+m)) causal (target) or not (DFlash block);  x += lin(o; o_proj)
 *   a2 = rmsnorm(x) * ln2;  x += lin(silu(lin(a2; gate)) * lin(a2; up); down)
 * The DFlash draft differs only in its K/V rows: its context rows are appended beforehand
 * (vkd_layer_kv_append) and the block attends non-causally. */
#ifndef VKD_LAYER_H
#define VKD_LAYER_H

#include "vkd_ops.h"

/* An open checkpoint (loaders/safetensors.h); only the loading functions below take one. */
typedef struct vkd_st_model vkd_st_model;

/* Creates a device tensor of the checkpoint dtype (BF16/F16/F32) for tensor `name` of m,
 * checking that its shape equals `shape` (rank dims), and uploads it. Matrices (rank 2) take
 * the device profile's weight layout (vkd_ctx_weight_layout: read by matmul and embed only);
 * vectors are row-major. */
vkd_result vkd_weight_load(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                           const int64_t *shape, vkd_tensor **out, vkd_error *err);
/* The same in an explicit layout: a caller that reads the weight with a row-major op (e.g. a
 * backward product dX = dY W, or a host read-back) asks for VKD_LAYOUT_ROWS. */
vkd_result vkd_weight_load_as(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                              const int64_t *shape, vkd_layout layout, vkd_tensor **out,
                              vkd_error *err);
/* Fails (VKD_ERR_FORMAT, naming the tensor and the count) when the uploaded weight t holds a
 * NaN or Inf; host/nbytes: the same data on the host (read only for a chunk's odd last
 * 16-bit value, which the device op does not cover). Called by vkd_weight_load. */
vkd_result vkd_weight_check_finite(vkd_tensor *t, const void *host, uint64_t nbytes, vkd_error *err);

/* A linear layer y = x W^T (+ scale * (x A^T) B^T with an adapter attached).
 *   w: out x in, checkpoint dtype, frozen;
 *   lora_a: rank x in f32, lora_b: out x rank f32, scale = alpha / rank (NULL: no adapter);
 *   lora_t: scratch rows x rank f32 holding scale * (x A^T) of the last call. */
typedef struct vkd_linear {
    vkd_tensor *w;
    vkd_tensor *lora_a, *lora_b, *lora_t;
    uint32_t rank;
    float scale;
    /* training (vkd_linear_lora_grads): gradients of A and B (f32, their shapes) and a
     * rows x rank scratch for dy B */
    vkd_tensor *grad_a, *grad_b, *lora_dt;
} vkd_linear;

/* y[y_row0 + i, :out] (=|+=) lin(x[x_row0 + i, :in]) for i < m. With an adapter, the base
 * product is followed by t = scale * (x A^T) into lora_t and y += t B^T (with B = 0 the
 * output equals the adapter-free one bit for bit). Shapes as vkd_op_matmul. */
vkd_result vkd_linear_forward(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                              uint32_t x_row0, const vkd_linear *lin, uint32_t m, bool accumulate);
/* Attaches a zero adapter (A and B zero-filled; fill A with vkd_tensor_upload) of `rank`
 * with scale alpha / rank, for calls of up to max_rows rows. Replaces an earlier one. */
vkd_result vkd_linear_lora_attach(vkd_ctx *ctx, vkd_linear *lin, uint32_t rank, float alpha,
                                  uint32_t max_rows, vkd_error *err);
void vkd_linear_lora_detach(vkd_linear *lin);
/* Creates zeroed gradient tensors for the attached adapter (training). */
vkd_result vkd_linear_lora_grads(vkd_ctx *ctx, vkd_linear *lin, vkd_error *err);
/* Records grad_a = grad_b = 0 (before accumulating a step's gradients). */
vkd_result vkd_linear_lora_zero_grads(vkd_rec *rec, vkd_linear *lin);

/* Backward of vkd_linear_forward over the same m rows (dy: m x out from dy_row0; x: the
 * forward's input from x_row0):
 *   dx[dx_row0 + i] (=|+=) dy W + scale (dy B) A      (dx NULL: not computed)
 *   with an adapter and gradients (vkd_linear_lora_grads), always accumulated:
 *     grad_b += dy^T (scale x A^T),  grad_a += scale (dy B)^T x
 * The base weight is frozen. lora_t is recomputed (scale x A^T), lora_dt holds scale dy B. */
vkd_result vkd_linear_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t dx_row0, const vkd_tensor *dy,
                               uint32_t dy_row0, const vkd_tensor *x, uint32_t x_row0,
                               const vkd_linear *lin, uint32_t m, bool accumulate);
/* in / out features of the layer */
static inline uint32_t vkd_linear_in(const vkd_linear *l) { return (uint32_t)l->w->cols; }
static inline uint32_t vkd_linear_out(const vkd_linear *l) { return (uint32_t)l->w->rows; }

/* One decoder layer (Qwen3 / Llama / DFlash draft) and its KV cache. */
typedef struct vkd_layer {
    vkd_tensor *ln1, *q_norm, *k_norm, *ln2;
    vkd_linear wq, wk, wv, wo, wg, wu, wd;
    vkd_tensor *kc, *vc;       /* KV cache: capacity x (n_kv*head_dim), f32 or f16 */
} vkd_layer;

typedef struct vkd_layer_dims {
    uint32_t hidden, n_q, n_kv, head_dim, ffn;
    bool qk_norm;
} vkd_layer_dims;

/* Loads the weights of one layer named prefix + "self_attn.q_proj.weight" etc., checking
 * shapes against dims; adds their bytes to *bytes. The KV cache is left to the caller. */
vkd_result vkd_layer_load(vkd_ctx *ctx, vkd_st_model *m, const char *prefix,
                          const vkd_layer_dims *d, vkd_layer *L, uint64_t *bytes, vkd_error *err);
/* Destroys the layer's tensors (weights, adapters and cache). */
void vkd_layer_free(vkd_layer *L);
/* The layer's seven linears in checkpoint order: q, k, v, o, gate, up, down. */
void vkd_layer_linears(vkd_layer *L, vkd_linear *out[7]);

/* What one layer call reads and writes besides x (all f32, at least m rows each).
 * Inference passes one shared set for every layer, with aliases (x_in, x_mid: NULL;
 * a2 == a1; q_raw == q, k_raw == k; h == g; lse NULL): each op then runs in place as
 * before. Training ("keep activations") gives every layer its own set, so that a backward
 * pass finds:
 *   x_in  m x H   input of the layer (input of ln1)      [copied from x]
 *   a1    m x H   rmsnorm(x_in) * ln1 (input of q/k/v)
 *   q_raw m x Q, k_raw m x KV  q, k before the per-head norm (input of q_norm, k_norm)
 *   q     m x Q   q after norm and RoPE;  k, v  m x KV  k after norm and RoPE, v
 *   o     m x Q   attention output (input of o_proj);  lse  m x n_q  its log-sum-exp
 *   x_mid m x H   residual after attention (input of ln2)  [copied]
 *   a2    m x H   rmsnorm(x_mid) * ln2 (input of gate/up)
 *   g, u  m x F   gate and up pre-activations;  h  m x F  silu(g) * u (input of down)
 * RMSNorm's rstd is not stored: the backward recomputes it from the norm's input (one
 * row reduction, cheaper than a buffer per norm). */
typedef struct vkd_layer_acts {
    vkd_tensor *x_in, *a1, *q_raw, *k_raw, *q, *k, *v, *o, *lse, *x_mid, *a2, *g, *u, *h;
} vkd_layer_acts;

/* Creates a keep-activations set for rows x dims (every tensor its own, lse included). */
vkd_result vkd_layer_acts_create(vkd_ctx *ctx, const vkd_layer_dims *d, uint32_t rows,
                                 vkd_layer_acts *A, vkd_error *err);
void vkd_layer_acts_free(vkd_layer_acts *A);

typedef struct vkd_layer_step {
    uint32_t m;                /* rows of x */
    uint32_t pos;              /* position and K/V row of x's row 0 */
    bool causal;               /* target: causal; DFlash block: every row sees every key */
    vkd_tensor *kc, *vc;       /* K/V rows [pos, pos+m) written, [0, pos+m) attended */
    const vkd_tensor *inv_freq;
    float eps;
} vkd_layer_step;

/* Records one decoder layer on x (m x hidden f32, in place: the residual stream). */
vkd_result vkd_layer_forward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                             vkd_tensor *x, const vkd_layer_acts *A, const vkd_layer_step *s);

/* Records the K/V of n rows of c (DFlash context rows, n x hidden f32) at positions
 * pos..pos+n-1 into kc/vc rows [pos, pos+n): k = rope(k_norm(lin(c; k_proj))),
 * v = lin(c; v_proj). k_raw (n x KV, may equal k), k, v: f32 scratch or kept activations. */
vkd_result vkd_layer_kv_append(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                               const vkd_tensor *c, uint32_t c_row0, uint32_t n, uint32_t pos,
                               vkd_tensor *k_raw, vkd_tensor *k, vkd_tensor *v, vkd_tensor *kc,
                               vkd_tensor *vc, const vkd_tensor *inv_freq, float eps);

#endif
