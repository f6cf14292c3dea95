/* vkd_dflash.h: the z-lab DFlash block-diffusion draft (DFlashDraftModel) on Vulkan,
 * ../shared/design.md section 4.
 *
 * The draft reads the target's hidden states at target_layer_ids (the "features", ntaps *
 * hidden columns) and keeps a KV cache of context rows only. Two operations:
 *   context: features of newly committed positions -> c = rmsnorm(F fc^T) * hidden_norm,
 *            each layer's k_norm(c Wk^T) (RoPE'd) and c Wv^T appended to its cache;
 *   block:   rows [last token, MASK x (B-1)] at positions start..start+B-1 (start = the
 *            context length): queries from block rows, keys/values from the cached context
 *            then the block rows, non-causal; logits of rows 1..B-1 through the target's
 *            lm_head. The block rows' K/V are written past the context and forgotten (the
 *            cache stays cropped to the context).
 * Embeddings and lm_head are the target's (shared, not copied). */
#ifndef VKD_DFLASH_H
#define VKD_DFLASH_H

#include "vkd_target.h"

typedef struct vkd_dflash_options {
    uint32_t ctx_len;          /* context capacity; 0: the target's ctx_len */
    uint32_t block_size;       /* 0: the config's block_size */
    vkd_dtype kv_dtype;        /* VKD_DTYPE_F32 (0) or VKD_DTYPE_F16 */
} vkd_dflash_options;

typedef struct vkd_dflash {
    vkd_ctx *ctx;
    vkd_target *target;        /* borrowed: embeddings, lm_head, taps */
    vkd_cfg cfg;
    uint32_t hidden, n_layers, n_q, n_kv, head_dim, ffn, vocab, ntaps, block;
    uint32_t tap_layers[VKD_CFG_MAX_TAPS];
    int32_t mask_id;
    vkd_linear fc;             /* ntaps*hidden -> hidden */
    vkd_tensor *hidden_norm, *norm, *inv_freq;
    vkd_layer *layers;
    uint32_t ctx_len, len;     /* capacity, context rows cached */
    uint32_t max_ctx_rows;     /* context rows per context call */
    uint64_t weight_bytes;
    /* scratch */
    vkd_tensor *ids, *c, *kx, *vx, *h, *a, *q, *k, *v, *o, *g, *u;
    vkd_tensor *kvx, *qkv;     /* the buffers kx/vx and q/k/v are views of (vkd_scratch_group) */
    vkd_tensor *logits;        /* (block-1) x vocab, f32: rows 1..B-1 of the last block */
    vkd_tensor *attn_part;     /* split-K attention partials of a block (vkd_op_attention_split);
                                * NULL where the device profile never splits */
} vkd_dflash;

/* Loads a DFlashDraftModel folder and checks it against its target (hidden size, vocab,
 * target_layer_ids < target layers, mask id in the vocabulary, block size >= 2). */
vkd_result vkd_dflash_load(vkd_ctx *ctx, vkd_target *target, const char *dir,
                           const vkd_dflash_options *opt, vkd_dflash **out, vkd_error *err);
void vkd_dflash_free(vkd_dflash *d);

/* Records: appends n context rows, features rows [row0, row0 + n) (f32, ntaps*hidden
 * columns, taps side by side in target_layer_ids order), at positions len..len+n-1. */
vkd_result vkd_dflash_context_record(vkd_dflash *d, vkd_rec *rec, const vkd_tensor *features,
                                     uint32_t row0, uint32_t n, vkd_error *err);
/* Records one block call at start = d->len: block ids (B of them, usually [last token,
 * mask...], or gold tokens in teacher-forced diagnostics); writes d->logits rows 0..B-2
 * (the predictions for positions start+1..start+B-1). */
vkd_result vkd_dflash_block_record(vkd_dflash *d, vkd_rec *rec, const int32_t *block,
                                   vkd_error *err);
/* The same call for greedy proposals: the argmax of each of those B-1 rows into argmax (i32,
 * vkd_op_argmax's ties and -1 for a NaN/+Inf row); with the target's texel-block lm_head the
 * logits are never written (the fused vkd_op_matmul_argmax, scratch t->lm_part). */
vkd_result vkd_dflash_block_argmax_record(vkd_dflash *d, vkd_rec *rec, const int32_t *block,
                                          vkd_tensor *argmax, vkd_error *err);
/* Forgets context rows back to len (<= d->len). */
vkd_result vkd_dflash_crop(vkd_dflash *d, uint32_t len, vkd_error *err);

/* Training input: runs d's target over seq[0..T) (in chunks of its max_rows, each submitted)
 * with d's taps into feats rows 0..T-1; the target's cache is cropped to 0 before and after. */
vkd_result vkd_dflash_target_features(vkd_dflash *d, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                      vkd_tensor *feats, vkd_error *err);
/* The same, and (final_h not NULL) the target's final-normed hidden states into final_h rows
 * 0..T-1 (f32, >= hidden columns): the target's own next-token distributions through its head. */
vkd_result vkd_dflash_target_features_final(vkd_dflash *d, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                            vkd_tensor *feats, vkd_tensor *final_h, vkd_error *err);

#endif
