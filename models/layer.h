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
    /* full-weight training (vkd_linear_weight_grad): gradient of w, out x in f32 (one
     * binding), accumulated by vkd_linear_backward; NULL: w frozen */
    vkd_tensor *grad_w;
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
/* Creates the zeroed full-weight gradient grad_w (out x in f32) of lin: from then on
 * vkd_linear_backward accumulates dW = dy^T x into it. Any weight dtype (the gradient is
 * f32; an optimizer updating w needs w in f32 itself). */
vkd_result vkd_linear_weight_grad(vkd_ctx *ctx, vkd_linear *lin, vkd_error *err);
/* Records grad_w = 0 and grad_a = grad_b = 0 for whichever of them exist. */
vkd_result vkd_linear_zero_grads(vkd_rec *rec, vkd_linear *lin);

/* Backward of vkd_linear_forward over the same m rows (dy: m x out from dy_row0; x: the
 * forward's input from x_row0):
 *   dx[dx_row0 + i] (=|+=) dy W + scale (dy B) A      (dx NULL: not computed)
 *   with an adapter and gradients (vkd_linear_lora_grads), always accumulated:
 *     grad_b += dy^T (scale x A^T),  grad_a += scale (dy B)^T x
 *   with a weight gradient (vkd_linear_weight_grad), always accumulated:
 *     grad_w += dy^T x
 * lora_t is recomputed (scale x A^T), lora_dt holds scale dy B. */
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
    /* the texel-block stack holding wq.w, wk.w and wv.w (vkd_tensor_create_stack), whose
     * members those are; NULL where they are separate tensors */
    vkd_tensor *qkv_stack;
    /* full-weight training (vkd_layer_weight_grads): f32 gradients of the norm weights,
     * accumulated by vkd_layer_backward; NULL: frozen (q/k_norm: NULL without qk_norm) */
    vkd_tensor *grad_ln1, *grad_q_norm, *grad_k_norm, *grad_ln2;
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

/* n (<= 3) f32 rows x cols[j] scratch tensors out[j] as views of one buffer (*whole), so that
 * vkd_op_matmul_group can write them in one dispatch (inference q/k/v; a DFlash context's
 * k/v); where they would not fit one binding, separate tensors (*whole NULL). Free with
 * vkd_scratch_group_free. */
vkd_result vkd_scratch_group(vkd_ctx *ctx, uint32_t n, uint64_t rows, const uint64_t *cols,
                             const char *const *names, vkd_tensor **whole, vkd_tensor **out,
                             vkd_error *err);
void vkd_scratch_group_free(uint32_t n, vkd_tensor *whole, vkd_tensor **ts);

typedef struct vkd_layer_step {
    uint32_t m;                /* rows of x */
    uint32_t pos;              /* position and K/V row of x's row 0 */
    bool causal;               /* target: causal; DFlash block: every row sees every key */
    vkd_tensor *kc, *vc;       /* K/V rows [pos, pos+m) written, [0, pos+m) attended */
    const vkd_tensor *inv_freq;
    float eps;
    /* block != 0: DFlash training's block-sparse pass (vkd_op_attention_blocks_lse): x is
     * m / block blocks, block b seeing K/V rows [0, anchors[b]) (the context, kc/vc rows
     * [0, pos)) and its own rows; positions (i32, m) gives each row's RoPE position, and its
     * K/V still go to rows [pos, pos+m). f32 K/V; causal is ignored. */
    uint32_t block;
    const vkd_tensor *anchors, *positions;
    /* inference attention's split-K partials (vkd_op_attention_split), NULL: no split */
    vkd_tensor *attn_part;
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

/* ---- backward -------------------------------------------------------------------------
 * vkd_layer_backward walks vkd_layer_forward in reverse, op by op (dx: gradient of the
 * residual stream, m x H, in place as the forward's x):
 *   x += lin(swiglu(lin(a2; gate), lin(a2; up)); down)  -> dx += rmsnorm'(x_mid; ln2)(da2)
 *   x += lin(attention(q, kc, vc); o)                   -> dq, dK, dV (flash backward, lse)
 *   q = rope(q_norm(lin(a1; q))), k = rope(k_norm(lin(a1; k))), v = lin(a1; v)
 *                                                       -> dx += rmsnorm'(x_in; ln1)(da1)
 * Every linear accumulates its grad_w / LoRA gradients where they exist, every norm weight
 * its grad_* where it exists. The keys and values attended (kc/vc rows [0, pos + m), f32)
 * receive their gradients in ws->dk / ws->dv rows [0, pos + m): rows [pos, pos + m) are the
 * layer's own (consumed here), rows [0, pos) belong to whoever wrote them (a DFlash
 * draft's context: vkd_layer_kv_append_backward; earlier cache rows of a target: dropped by
 * a caller that trains on one window from pos 0). */

/* Scratch of a layer backward: up to `rows` query rows, `kv_rows` attended K/V rows
 * (>= rows; also the largest n of vkd_layer_kv_append_backward). All f32. */
typedef struct vkd_layer_grad_ws {
    uint32_t rows, kv_rows;
    vkd_tensor *da;            /* rows x H: gradient of a1 / a2 */
    vkd_tensor *dq, *dqr;      /* rows x Q: gradient of o, then of q (after / before the norm) */
    vkd_tensor *dk, *dv;       /* kv_rows x KV: gradients of the attended keys and values */
    vkd_tensor *dkb, *dkr;     /* kv_rows x KV: one call's key rows (after / before the norm) */
    vkd_tensor *dhm, *dg, *du; /* rows x F: gradient of silu(g)*u, of g, of u */
    vkd_tensor *rstd;          /* max(rows*n_q, kv_rows*n_kv): norm scratch */
    vkd_tensor *dwn;           /* max(H, head_dim): one norm call's weight gradient */
} vkd_layer_grad_ws;

vkd_result vkd_layer_grad_ws_create(vkd_ctx *ctx, const vkd_layer_dims *d, uint32_t rows,
                                    uint32_t kv_rows, vkd_layer_grad_ws *ws, vkd_error *err);
void vkd_layer_grad_ws_free(vkd_layer_grad_ws *ws);

/* Creates zeroed full-weight gradients for the layer: grad_w of its seven linears and the
 * grad_* of its norms (q/k_norm only with d->qk_norm). */
vkd_result vkd_layer_weight_grads(vkd_ctx *ctx, vkd_layer *L, const vkd_layer_dims *d,
                                  vkd_error *err);
/* Records zero for every gradient the layer holds (weights, norms, LoRA). */
vkd_result vkd_layer_zero_grads(vkd_rec *rec, vkd_layer *L, const vkd_layer_dims *d);

/* Records the backward of the vkd_layer_forward call with the same L, d, A (kept
 * activations, lse included) and s (kc/vc still holding that call's K/V, f32):
 * dx (m x H f32): in, the gradient of the layer's output; out, of its input. */
vkd_result vkd_layer_backward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                              vkd_tensor *dx, const vkd_layer_acts *A, const vkd_layer_step *s,
                              const vkd_layer_grad_ws *ws);

/* Backward of vkd_layer_kv_append for the same c, c_row0, n, pos and its kept k_raw, with
 * the K/V gradients at ws->dk / ws->dv rows [pos, pos + n) (left by vkd_layer_backward):
 * dc[c_row0 + i] (=|+=) the gradient of c; k_proj / v_proj / k_norm gradients accumulate.
 * n <= ws->kv_rows. */
vkd_result vkd_layer_kv_append_backward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                                        vkd_tensor *dc, const vkd_tensor *c, uint32_t c_row0,
                                        uint32_t n, uint32_t pos, const vkd_tensor *k_raw,
                                        const vkd_layer_grad_ws *ws, const vkd_tensor *inv_freq,
                                        float eps, bool accumulate);

/* rmsnorm backward with the weight gradient (if dw) always accumulated, whatever
 * `accumulate` says of dx (vkd_op_rmsnorm_backward ties both to one flag): dwn (>= dim
 * f32) and rstd (>= groups f32) are scratch. dw NULL: plain vkd_op_rmsnorm_backward. */
vkd_result vkd_norm_backward(vkd_rec *rec, vkd_tensor *dx, vkd_tensor *dw, vkd_tensor *dwn,
                             vkd_tensor *rstd, const vkd_tensor *dy, const vkd_tensor *x,
                             const vkd_tensor *w, uint32_t groups, uint32_t dim, float eps,
                             bool accumulate);

#endif
