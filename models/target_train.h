/* target_train.h: full-weight training of a whole tied causal LM (Qwen3 / Llama with
 * tie_word_embeddings), built from the layer backward (layer.h), the fused LM-head loss
 * (vkd_train_ops.h) and the embedding backward (vkd_ops_grad.h).
 *
 * One sequence ids[0..m) at positions 0..m-1 (one window, no earlier cache rows):
 *   x = embed[ids]; per layer x = layer(x) (causal, every activation kept)
 *   out = rmsnorm(x) * norm;  loss = sum_{r < m-1} w * CE(out_r E^T, ids[r+1])
 * with E the embedding, which is also the LM head. Backward:
 *   dE  += head dW (the fused loss, written into grad_embed)
 *   dout -> final-norm backward -> every layer's backward (grad_w of every linear, every
 *           norm weight) -> dx of the embedding output
 *   dE  += embedding-lookup gradient (vkd_op_embed_backward, deterministic)
 * Every gradient accumulates: several sequences make one batch; zero them with
 * vkd_target_train_zero_grads before a step. The target's KV cache is used as scratch
 * (its len is reset to 0). */
#ifndef VKD_TARGET_TRAIN_H
#define VKD_TARGET_TRAIN_H

#include "vkd_target.h"
#include "vkd_train_ops.h"

typedef struct vkd_target_train {
    vkd_target *t;             /* borrowed: tied, f32 weights, row-major (row_major_weights) */
    uint32_t max_rows;
    vkd_tensor *ids, *labels, *row_w; /* i32 / i32 / f32, max_rows */
    vkd_tensor *x, *out, *dh, *dx;    /* max_rows x H f32: residual, final-normed rows, grads */
    vkd_tensor *loss;                 /* f32 max_rows: the last sequence's per-row loss */
    vkd_tensor *order, *offsets;      /* i32 max_rows, vocab + 1: the embedding-gradient index */
    int32_t *h_labels, *h_order, *h_offsets;
    float *h_row_w;
    vkd_layer_acts *acts;             /* per layer, max_rows rows */
    vkd_layer_grad_ws ws;
    vkd_lm_loss_ws *lws;
    vkd_tensor *grad_embed, *grad_norm; /* f32, the shapes of embed and norm */
} vkd_target_train;

/* Checks the target (tied head, f32 row-major weights, max_rows <= its cache), creates the
 * scratch and zeroed gradients for every tensor of the model. */
vkd_result vkd_target_train_create(vkd_target *t, uint32_t max_rows, vkd_target_train **out,
                                   vkd_error *err);
void vkd_target_train_free(vkd_target_train *T);
/* Records zero for every gradient. */
vkd_result vkd_target_train_zero_grads(vkd_target_train *T, vkd_rec *rec);

/* Uploads ids (2 <= m <= max_rows, each in the vocabulary) at once and records the forward
 * and backward of one sequence, each of its m - 1 predicted rows weighted row_weight (e.g.
 * 1 / the batch's predicted rows: a mean). The uploads are immediate: submit the recorder
 * before the next call. T->loss rows [0, m-1) receive the weighted per-row losses. */
vkd_result vkd_target_train_sequence(vkd_target_train *T, vkd_rec *rec, const int32_t *ids,
                                     uint32_t m, float row_weight, vkd_error *err);

/* The trainable tensors, in checkpoint naming (HF): model.embed_tokens.weight, then per
 * layer its norms and seven linears, then model.norm.weight. */
typedef struct vkd_target_param {
    char name[96];
    vkd_tensor *param, *grad;
} vkd_target_param;
/* Number of trainable tensors (fills out[0..min(n, cap)) when out is given). */
uint32_t vkd_target_train_params(vkd_target_train *T, vkd_target_param *out, uint32_t cap);

#endif
