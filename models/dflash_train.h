/* dflash_train.h: the DFlash draft's training forward (keep activations) and backward, for
 * LoRA adapters on any of its linears (fc, q/k/v/o_proj, gate/up/down_proj) and/or the
 * full weights (every linear and norm of the draft; embeddings and lm_head are the
 * target's and stay frozen).
 *
 * One example: context features F (n rows, ntaps*hidden f32) at positions 0..n-1 and a block
 * of B ids at positions n..n+B-1 (start = n, as speculative decoding has it when n
 * positions are committed). The forward is the inference forward (vkd_dflash.h) with every
 * activation kept:
 *   c_raw = lin(F; fc), c = rmsnorm(c_raw) * hidden_norm, h = embed(block)
 *   per layer: context K/V from c, vkd_layer_forward on h (non-causal, K/V [context; block])
 *   out = rmsnorm(h) * norm                                   (B x hidden: what lm_head reads)
 * The backward takes dout (B x hidden f32, the gradient of a loss w.r.t. out; rows the loss
 * does not use are zero) and accumulates into the grad_a / grad_b of every adapted linear
 * (vkd_dflash_train_grads) and, after vkd_dflash_train_weight_grads, into every weight
 * gradient (linears' grad_w, layers' grad_*, grad_hidden_norm, grad_norm); zero them with
 * vkd_dflash_train_zero_grads before a step. Each layer's backward is vkd_layer_backward
 * (block rows) and vkd_layer_kv_append_backward (context rows). */
#ifndef VKD_DFLASH_TRAIN_H
#define VKD_DFLASH_TRAIN_H

#include "vkd_dflash.h"

typedef struct vkd_dflash_train {
    vkd_dflash *d;             /* borrowed: weights, adapters */
    uint32_t max_ctx, n;       /* context capacity; context rows of the last forward */
    const vkd_tensor *features;/* the last forward's features (borrowed) and first row */
    uint32_t feat_row0;
    vkd_tensor *ids;           /* B i32 */
    vkd_tensor *c_raw, *c;     /* max_ctx x H */
    vkd_tensor *h;             /* B x H: the residual stream, after the forward the last layer's output */
    vkd_tensor *out;           /* B x H: rmsnorm(h) * norm */
    vkd_layer_acts *acts;      /* per layer, B rows */
    vkd_tensor **kall, **vall; /* per layer (max_ctx + B) x KV: context then block K/V */
    vkd_tensor **ck_raw;       /* per layer max_ctx x KV: context k before k_norm */
    /* full-weight gradients of the draft-level norms (vkd_dflash_train_weight_grads) */
    vkd_tensor *grad_hidden_norm, *grad_norm;
    /* scratch */
    vkd_tensor *ck, *cv, *dh, *dc, *dcr;
    vkd_layer_grad_ws ws;      /* B query rows, max_ctx + B K/V rows */
} vkd_dflash_train;

/* Buffers for contexts of up to max_ctx rows (max_ctx + block <= the draft's ctx_len + block). */
vkd_result vkd_dflash_train_create(vkd_dflash *d, uint32_t max_ctx, vkd_dflash_train **out,
                                   vkd_error *err);
void vkd_dflash_train_free(vkd_dflash_train *T);

/* Creates gradient buffers for every linear of the draft that has an adapter. */
vkd_result vkd_dflash_train_grads(vkd_dflash_train *T, vkd_error *err);
/* Creates full-weight gradients for the whole draft: grad_w of fc and of every layer's
 * linears, every layer's norm gradients, grad_hidden_norm and grad_norm (f32, zeroed). */
vkd_result vkd_dflash_train_weight_grads(vkd_dflash_train *T, vkd_error *err);
/* Records zero for every gradient of the draft (LoRA and full-weight, whichever exist). */
vkd_result vkd_dflash_train_zero_grads(vkd_dflash_train *T, vkd_rec *rec, vkd_error *err);

/* Records the training forward: features rows [row0, row0 + n) (1 <= n <= max_ctx), block ids
 * (B of them, in the vocabulary). T->out receives the B normed output rows. The draft's own
 * KV cache and length are not touched. */
vkd_result vkd_dflash_train_forward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *features,
                                    uint32_t row0, uint32_t n, const int32_t *block, vkd_error *err);
/* Records the backward of the last forward for dout (B x H f32): every gradient accumulates. */
vkd_result vkd_dflash_train_backward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *dout,
                                     vkd_error *err);

#endif
