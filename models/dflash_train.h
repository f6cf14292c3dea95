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
 * (block rows) and vkd_layer_kv_append_backward (context rows).
 *
 * Many blocks in one pass (vkd_dflash_train_forward_blocks, a trainer made with
 * vkd_dflash_train_create_blocks): nblk anchors a_b of one sequence, the context K/V of
 * rows [0, max a_b) computed once, the nblk blocks stacked (nblk*B rows, block b at positions
 * a_b .. a_b+B-1) and attending through the block-sparse mask (vkd_op_attention_blocks_lse):
 * bidirectional inside a block, blocks blind to each other, block b seeing context rows
 * < a_b. Its out rows, loss and gradients equal nblk separate forward / backward calls with
 * context n = a_b (the per-block path, kept as the reference). */
#ifndef VKD_DFLASH_TRAIN_H
#define VKD_DFLASH_TRAIN_H

#include "vkd_dflash.h"

typedef struct vkd_dflash_train {
    vkd_dflash *d;             /* borrowed: weights, adapters */
    uint32_t max_ctx, n;       /* context capacity; context rows of the last forward */
    uint32_t max_blocks, nblk; /* blocks per pass (1: per-block only); the last forward's
                                * (0: a per-block forward) */
    vkd_tensor *anchors, *positions; /* i32 max_blocks, max_blocks*B: the block-sparse pass */
    const vkd_tensor *features;/* the last forward's features (borrowed) and first row */
    uint32_t feat_row0;
    vkd_tensor *ids;           /* max_blocks*B i32; every "B rows" below is max_blocks*B */
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
/* The same for passes of up to max_blocks blocks (vkd_dflash_train_forward_blocks). */
vkd_result vkd_dflash_train_create_blocks(vkd_dflash *d, uint32_t max_ctx, uint32_t max_blocks,
                                          vkd_dflash_train **out, vkd_error *err);
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
/* Records the one-pass training forward of nblk (1..max_blocks) blocks: block b's ids
 * blocks[b*B .. b*B+B) at positions anchors[b] .., seeing feature rows [row0, row0 +
 * anchors[b]) (1 <= anchors[b] <= max_ctx). T->out receives the nblk*B normed rows. */
vkd_result vkd_dflash_train_forward_blocks(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *features,
                                           uint32_t row0, uint32_t nblk, const uint32_t *anchors,
                                           const int32_t *blocks, vkd_error *err);
/* Records the backward of the last forward for dout (B x H f32, nblk*B x H after a
 * forward of nblk blocks): every gradient accumulates. */
vkd_result vkd_dflash_train_backward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *dout,
                                     vkd_error *err);

#endif
