/* weights.h: loading checkpoint tensors onto the device. */
#ifndef VKD_WEIGHTS_H
#define VKD_WEIGHTS_H

#include "safetensors.h"
#include "vkd_runtime.h"

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

/* One transformer decoder layer (Qwen3 / Llama / DFlash draft) and its KV cache. */
typedef struct vkd_layer {
    vkd_tensor *ln1, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ln2, *wg, *wu, *wd;
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
/* Destroys the layer's tensors (weights and cache). */
void vkd_layer_free(vkd_layer *L);

#endif
