/* vkd_train_draft.h: training a DFlash draft from scratch for a target (the published
 * recipe, ../shared/design.md section 6 and issue 15), every draft weight trainable,
 * embeddings and lm_head the target's (frozen, shared).
 *
 * A training sequence is prompt + response ids (the target's own response). One step takes
 * one sequence: the target runs once over it with taps (features), K anchors a are drawn
 * from the response positions (vkd_ttt_draw_anchors over [max(resp_start, 1), T - 2]), and
 * for each anchor the draft's training forward reads the context features of positions
 * < a and the block [x_a, MASK x (B-1)] at positions a..a+B-1 (non-causal inside the
 * block); row k predicts x_{a+k} with weight exp(-(k-1)/gamma) (gamma 7), normalised over
 * the step (vkd_ttt_step_rows), so the step loss is the weighted mean cross-entropy. The
 * gradients of all anchors add up; the global norm is clipped to max_grad_norm; AdamW
 * (weight decay 0) with lr = base_lr * vkd_lr_cosine(step, warmup, total).
 * The blocks of a step go through the draft in passes of up to blocks_per_pass anchors:
 * one pass computes the context K/V once and runs its blocks together through the
 * block-sparse mask (models/dflash_train.h: vkd_dflash_train_forward_blocks), the same loss
 * and gradients as one forward per anchor (options.per_block, the reference path).
 *
 * On disk (vkd_train_draft_write_config / _save_weights): z-lab's DFlashDraftModel layout,
 * config.json (Qwen3 config + dflash_config {mask_token_id, target_layer_ids}, block_size,
 * num_target_layers) and model.safetensors (fc, hidden_norm, layers.N.*, norm). */
#ifndef VKD_TRAIN_DRAFT_H
#define VKD_TRAIN_DRAFT_H

#include "vkd_dflash.h"

#define VKD_TRAIN_DRAFT_GAMMA 7.0

typedef struct vkd_train_draft_shape {
    uint32_t n_layers, block;
    uint32_t ntaps;
    int64_t tap_ids[VKD_CFG_MAX_TAPS];
    int64_t mask_id;
} vkd_train_draft_shape;

/* Writes dir/config.json for a draft of `shape` over the target config tcfg (widths, heads,
 * rope, eps and vocabulary are the target's), `dtype` ("float32" or "bfloat16") recorded as
 * its dtype. Atomic (temporary file and rename). */
vkd_result vkd_train_draft_write_config(const vkd_cfg *tcfg, const vkd_train_draft_shape *shape,
                                        const char *dtype, const char *dir, vkd_error *err);
/* Writes dir/model.safetensors with fresh weights for the config in dir: every linear
 * N(0, 0.02^2) (Qwen3's initializer_range, as transformers' _init_weights), every norm
 * weight 1; Philox keyed by seed and the tensor name. f32. */
vkd_result vkd_train_draft_write_init(const char *dir, uint64_t seed, vkd_error *err);
/* Writes dir/model.safetensors (f32) from the draft folder init_dir (bf16, f16 or f32; one file
 * or shards): the config in dir and init_dir's must agree on layers, width, block size, mask
 * token and target layers, and init_dir must hold exactly the tensors of that draft, each of
 * the expected shape (else one error naming init_dir and the field or tensor). */
vkd_result vkd_train_draft_write_from(const char *dir, const char *init_dir, vkd_error *err);
/* Writes dir/model.safetensors from the draft's device weights, in F32 or BF16 (round to
 * nearest even). */
vkd_result vkd_train_draft_save_weights(vkd_dflash *d, const char *dir, vkd_dtype dtype, vkd_error *err);

/* Replaces the draft's matrices (loaded from dir in the device profile's layout) by
 * row-major copies from dir's checkpoint, so that they can be trained (the optimizer and
 * the weight gradient read them row by row) while the target keeps its fast layout. */
vkd_result vkd_train_draft_rows_weights(vkd_dflash *d, const char *dir, vkd_error *err);

typedef struct vkd_train_draft vkd_train_draft;

typedef struct vkd_train_draft_options {
    uint32_t max_len;          /* longest training sequence */
    uint32_t anchors;          /* anchors per step (fewer when a sequence has fewer) */
    double lr;                 /* base learning rate (schedule applied per step) */
    uint64_t warmup, total;    /* scheduler steps (vkd_lr_cosine) */
    double max_grad_norm;      /* 0: 1.0 */
    double gamma;              /* 0: VKD_TRAIN_DRAFT_GAMMA */
    uint64_t seed;
    /* the target's folder: when its lm_head is not row-major on this device, the fused
     * loss reads a row-major copy loaded from there (NULL: the lm_head must be row-major) */
    const char *target_dir;
    /* anchors per draft pass (0: all of a step's, at most VKD_TRAIN_DRAFT_PASS_ROWS rows) */
    uint32_t blocks_per_pass;
    bool per_block;            /* one forward per anchor (the reference path) */
    /* DSpark's loss (issue 15): row loss w_k (ce_w CE(q, x) + tv_w ||q - p||_1), q the draft's
     * distribution, p the target's own next-token distribution at the row's position (its
     * final-normed hidden state through the shared head; a constant). Off: w_k CE. */
    bool ce_tv;
    double ce_weight, tv_weight; /* with ce_tv, used as given (>= 0, tv > 0; the app's defaults 0.1 / 0.9) */
} vkd_train_draft_options;

/* default bound on the rows (blocks x block size) of one pass: its activations are kept */
#define VKD_TRAIN_DRAFT_PASS_ROWS 512

/* Trainer for draft d (f32 weights in the row-major layout: vkd_train_draft_rows_weights,
 * or a context with vkd_ctx_options.row_major_weights): gradients, AdamW moments, scratch. */
vkd_result vkd_train_draft_create(vkd_dflash *d, const vkd_train_draft_options *o,
                                  vkd_train_draft **out, vkd_error *err);
void vkd_train_draft_free(vkd_train_draft *tr);

typedef struct vkd_train_draft_stats {
    double loss;               /* the step's weighted mean row loss (CE; ce_tv: ce_w CE + tv_w L1) */
    double grad_norm;          /* before clipping */
    double lr;
    double tau_est;            /* mean over anchors of 1 + sum_k prod_{j<=k} p_j(label): the
                                * expected acceptance length if position j were accepted with
                                * the draft's probability of the target's token */
    double tv_accept;          /* ce_tv: mean over labelled rows of 1 - L1/2 (the TV acceptance
                                * estimate); 0 otherwise */
    uint32_t anchors, rows;    /* anchors used, rows with a label */
    double seconds;
} vkd_train_draft_stats;

/* One step (0-based index `step`, which keys the anchors and the schedule) on sequence
 * seq[0..T), responses from resp_start; `key` distinguishes sequences in the anchor draw.
 * The update is skipped (VKD_ERR_RANGE) when the loss or gradient norm is not finite. */
vkd_result vkd_train_draft_step(vkd_train_draft *tr, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                uint32_t resp_start, uint32_t key, uint64_t step,
                                vkd_train_draft_stats *st, vkd_error *err);

/* Several sequences in one step (one update): their gradients add up, each sequence's rows
 * weighted by its share of the step's position weights, so the loss is the weighted mean CE
 * over every row of the step; the anchors of each are drawn as for a step of its own. */
typedef struct vkd_train_draft_seq {
    const int32_t *ids;
    uint32_t n, resp_start, key;
} vkd_train_draft_seq;
vkd_result vkd_train_draft_step_batch(vkd_train_draft *tr, vkd_rec *rec, const vkd_train_draft_seq *seqs,
                                      uint32_t nseq, uint64_t step, vkd_train_draft_stats *st, vkd_error *err);

/* The optimizer state (AdamW moments of every parameter, f32) to / from a safetensors file
 * (names "m.<tensor>", "v.<tensor>"); loading checks every name and shape. */
vkd_result vkd_train_draft_save_optim(vkd_train_draft *tr, const char *path, vkd_error *err);
vkd_result vkd_train_draft_load_optim(vkd_train_draft *tr, const char *path, vkd_error *err);

#endif
