/* vkd_train_target.h: training a whole tied causal LM (Qwen3 / Llama, tie_word_embeddings)
 * from scratch on the Vulkan engine: the model-level pass of models/target_train.h, one
 * AdamW slot per tensor (vkd_train_ops.h: global-norm clipping, warmup + cosine schedule).
 * A step is a batch of token sequences, each trained from position 0; its loss is the mean
 * next-token cross-entropy over every predicted row of the batch. */
#ifndef VKD_TRAIN_TARGET_H
#define VKD_TRAIN_TARGET_H

#include "target_train.h"

typedef struct vkd_train_target_options {
    uint32_t max_len;          /* longest sequence (2..the target's ctx_len) */
    double lr;                 /* base learning rate (> 0) */
    uint64_t warmup, total;    /* scheduler steps (vkd_lr_cosine); total >= 1 */
    double max_grad_norm;      /* 0: 1.0 */
    double weight_decay;       /* AdamW, decoupled; default 0 */
} vkd_train_target_options;

typedef struct vkd_train_target vkd_train_target;

/* Trainer for target t (f32 row-major weights, tied: a row_major_weights context). */
vkd_result vkd_train_target_create(vkd_target *t, const vkd_train_target_options *o,
                                   vkd_train_target **out, vkd_error *err);
void vkd_train_target_free(vkd_train_target *tr);

typedef struct vkd_train_target_stats {
    double loss;               /* mean CE over the batch's predicted rows, before the update */
    float grad_norm;           /* global gradient norm before clipping */
    double lr;                 /* this step's learning rate */
    uint64_t tokens;           /* tokens of the batch */
} vkd_train_target_stats;

/* One step (0-based index `step` in the schedule) on seqs[i] of lens[i] tokens (2..max_len
 * each, n >= 1): gradients of the batch, then the AdamW update. Refuses (before the update)
 * a non-finite loss. */
vkd_result vkd_train_target_step(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *seqs,
                                 const uint32_t *lens, uint32_t n, uint64_t step,
                                 vkd_train_target_stats *st, vkd_error *err);
/* Mean CE of the batch without an update (held-out loss; the gradients it leaves behind are
 * zeroed by the next step). */
vkd_result vkd_train_target_eval(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *seqs,
                                 const uint32_t *lens, uint32_t n, double *loss, vkd_error *err);
/* Writes dir/model.safetensors (HF names, no lm_head: tied) from the device weights in F32
 * or BF16 (round to nearest even), atomically. */
vkd_result vkd_train_target_save_weights(vkd_train_target *tr, const char *dir, vkd_dtype dtype,
                                         vkd_error *err);

/* The AdamW moments of every tensor to / from a safetensors file (vkd_optim_state.h); with
 * the f32 weights (vkd_train_target_save_weights) and the step, a checkpoint that resumes
 * bit for bit. */
vkd_result vkd_train_target_save_optim(vkd_train_target *tr, const char *path, vkd_error *err);
vkd_result vkd_train_target_load_optim(vkd_train_target *tr, const char *path, vkd_error *err);

#endif
