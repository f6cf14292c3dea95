/* vkd_exit.h: an early-exit head (seed 003): the target truncated after decoder layer l
 * (0-based) read out by its own final RMSNorm and LM head, both copied and trainable;
 * optionally (seed 003's Option B, `exit-train --ft-last-block`) with its own trainable
 * copy of decoder block l, which then replaces the target's block l in the exit's trunk.
 *
 *   h      = target layers 0..l on the embedded ids          (m x hidden, the target's weights)
 *   logits = (rmsnorm(h) * norm) head^T                       (m x vocab)
 * norm: hidden f32, head: vocab x hidden f32 row-major, initialised from the target's
 * model.norm.weight and lm_head.weight (embed_tokens.weight when tied).
 *
 * Saved as <dir>/exit.safetensors (tensors "norm.weight", "lm_head.weight"; the config in
 * its __metadata__: exit_layer, temperature, trained, loss, steps, target_id) and a copy of
 * the config as <dir>/exit_config.json for people. A head with a block adds the block's
 * tensors as "block.<name>" (f32, <name> as in the checkpoint without "model.layers.<l>.",
 * e.g. "block.self_attn.q_proj.weight"); trained is then "head+block". target_id hashes the target's
 * config.json and every tensor (name, dtype, shape, bytes), so loading a head with another
 * target fails. */
#ifndef VKD_EXIT_H
#define VKD_EXIT_H

#include "vkd_target.h"
#include "vkd_train_ops.h"

typedef struct vkd_exit_info {
    uint32_t layer;            /* exit after decoder layer `layer` (0-based) */
    float temperature;         /* distillation temperature it was trained at (0: untrained) */
    char trained[32];          /* "none" (copied from the target), "head", "head+block" */
    char loss[16];             /* "kl", "ce+kl", or "" */
    uint64_t steps;            /* optimizer steps taken */
    char target_id[17];        /* 16 hex digits, vkd_exit_target_id */
} vkd_exit_info;

typedef struct vkd_exit {
    vkd_ctx *ctx;
    vkd_target *t;             /* borrowed: layers 0..layer, embeddings */
    vkd_exit_info info;
    uint32_t layer, hidden, vocab;
    vkd_tensor *norm;          /* hidden f32 */
    vkd_tensor *head;          /* vocab x hidden f32, row-major (trainable); NULL once frozen */
    /* what the forward reads: norm/head, or after vkd_exit_freeze the target's own tensors
     * (untrained copy) or the head converted to the target head's dtype and layout */
    const vkd_tensor *run_norm, *run_head;
    vkd_tensor *frozen_head;   /* owned conversion, or NULL */
    /* Option B: a trainable f32 row-major copy of block `layer` (its own weights; no KV
     * cache: callers pass theirs), or NULL (the trunk runs the target's block). */
    vkd_layer *block;
} vkd_exit;

/* The tensors of an exit head's block (vkd_exit_block_tensors), in a fixed order. */
#define VKD_EXIT_BLOCK_MAX 11
typedef struct vkd_exit_block_tensor {
    const char *name;          /* checkpoint name without "model.layers.<l>." */
    vkd_tensor *w;             /* f32 parameter */
    vkd_tensor *grad;          /* its gradient (vkd_layer_weight_grads), or NULL */
    uint64_t rows, cols;       /* rows 0: a vector of cols */
} vkd_exit_block_tensor;
/* Fills out[] with e->block's tensors (9, or 11 with q/k norms); returns the count (0
 * without a block). */
uint32_t vkd_exit_block_tensors(const vkd_exit *e, vkd_exit_block_tensor out[VKD_EXIT_BLOCK_MAX]);
/* Gives e a trainable copy of the target's block e->layer (f32, read from target_dir, the
 * folder its target was loaded from); info.trained is left to the caller. */
vkd_result vkd_exit_add_block(vkd_exit *e, const char *target_dir, vkd_error *err);

/* Identity of the target model folder dir: 64-bit hash of config.json and of every tensor
 * (name, dtype, shape, data) as 16 hex digits. Reads all weights once. */
vkd_result vkd_exit_target_id(const char *dir, char out[17], vkd_error *err);

/* A head at `layer` copied from the target t loaded from target_dir (layer < n_layers:
 * otherwise VKD_ERR_RANGE naming the range). info.trained = "none". */
vkd_result vkd_exit_create(vkd_target *t, const char *target_dir, uint32_t layer, vkd_exit **out,
                           vkd_error *err);
/* Loads a head saved by vkd_exit_save from head_dir for target t (loaded from target_dir):
 * fails when its target_id differs from target_dir's, its layer is out of range, or a
 * tensor is missing / of the wrong shape or dtype. */
vkd_result vkd_exit_load(vkd_target *t, const char *target_dir, const char *head_dir,
                         vkd_exit **out, vkd_error *err);
/* Writes dir/exit.safetensors and dir/exit_config.json (each atomically). */
vkd_result vkd_exit_save(const vkd_exit *e, const char *dir, vkd_error *err);
void vkd_exit_free(vkd_exit *e);
/* For drafting only: an untrained copy (info.trained "none") reads the target's own norm and
 * LM head (bit for bit the target's readout at the last layer); a trained head is converted
 * to the dtype and device weight layout of the target's head (on lavapipe a texel-block
 * bf16 matrix streams several times faster than the f32 row-major one). The f32 head is
 * released: a frozen head can no longer be trained or saved. */
vkd_result vkd_exit_freeze(vkd_exit *e, vkd_error *err);

/* Records target layers [l0, l1) on x (m x hidden f32, the residual stream, in place) at
 * positions pos .. pos+m-1. K/V rows go to kc[i]/vc[i] for layer i (kc/vc arrays indexed
 * by layer; NULL: the target's own caches). Uses the target's scratch (m <= t->max_rows). */
vkd_result vkd_exit_layers_record(vkd_rec *rec, vkd_target *t, vkd_tensor *x, uint32_t m, uint32_t pos,
                                  uint32_t l0, uint32_t l1, vkd_tensor *const *kc,
                                  vkd_tensor *const *vc);
/* Records x (m x hidden) = embed(ids) (ids: i32 device tensor, m entries) followed by
 * layers 0..e->layer (vkd_exit_layers_record). With e->block, layer e->layer is the block
 * and its K/V go to kc[e->layer]/vc[e->layer], which must then be given (the target's own
 * cache holds its own block's K/V: VKD_ERR_INVALID with kc NULL). */
vkd_result vkd_exit_trunk_record(vkd_rec *rec, const vkd_exit *e, vkd_tensor *x, const vkd_tensor *ids,
                                 uint32_t m, uint32_t pos, vkd_tensor *const *kc, vkd_tensor *const *vc);
/* Records logits rows [row0, row0 + m) = (rmsnorm(x rows 0..m) * norm) head^T; xn: m x
 * hidden f32 scratch. */
vkd_result vkd_exit_head_record(vkd_rec *rec, const vkd_exit *e, vkd_tensor *logits, uint32_t row0,
                                const vkd_tensor *x, vkd_tensor *xn, uint32_t m);

/* ---- training (models/exit_train.c) ----------------------------------------------------
 * Distillation of the head (norm and LM head; the target is frozen). For one sequence of n
 * tokens at positions 0..n-1, one forward of the target gives both the student state h_l
 * (after layer l) and the teacher state h_L (after the last layer); then, with the fused
 * chunked LM-head loss (ops/vkd_train_ops.h: no rows x vocab logits are stored),
 *   z_r = (rmsnorm(h_l,r) * norm) head^T,  t_r = (rmsnorm(h_L,r) * norm_t) W_t^T
 *   loss = sum_r w_r [ T^2 KL(softmax(t_r/T) || softmax(z_r/T)) + (ce: CE(z_r, ids[r+1])) ]
 * with w_r = weight for the rows scored and 0 elsewhere: row 0 (the first token) is masked,
 * and so is row n-1 when CE is on (it has no label). Gradients of norm and head accumulate
 * over the sequences of a batch; the caller passes weight = 1 / (rows scored in the batch)
 * for a token mean (vkd_exit_train_rows). With e->block (vkd_exit_add_block) h_l is that
 * block applied to the target's state after layer l-1 (the teacher keeps the target's block
 * l), and the block's tensors train too (their gradients in the block's grad fields,
 * vkd_layer_weight_grads). The target is only read, so its weights may be in any layout the
 * forward and the fused loss read (row-major, or the device's texel blocks). */
typedef struct vkd_exit_train_options {
    float temperature;         /* 0: 1 */
    bool ce;                   /* loss = CE(labels) + KL; false: KL only */
    uint32_t max_rows;         /* tokens per sequence; 0: the target's max_rows */
} vkd_exit_train_options;

typedef struct vkd_exit_trainer vkd_exit_trainer;

vkd_result vkd_exit_trainer_create(vkd_exit *e, const vkd_exit_train_options *opt, vkd_exit_trainer **out,
                                   vkd_error *err);
void vkd_exit_trainer_free(vkd_exit_trainer *tr);
/* Rows a sequence of n tokens contributes to the loss (n - 1, or n - 2 with CE; 0 if < 0). */
uint32_t vkd_exit_train_rows(const vkd_exit_trainer *tr, uint32_t n);
/* Starts a batch: the next sequence overwrites the gradients (records nothing without a
 * block; with one, records zeroing the block's and the norm's gradients). */
vkd_result vkd_exit_train_zero(vkd_rec *rec, vkd_exit_trainer *tr);
/* Records the forward and backward of one sequence ids[0..n) (2 <= n <= max_rows),
 * accumulating gradients; loss_rows (n floats, host) receives each row's weighted loss when
 * the submission completes (their sum is the sequence's share of the batch loss). */
vkd_result vkd_exit_train_seq(vkd_rec *rec, vkd_exit_trainer *tr, const int32_t *ids, uint32_t n, float weight,
                              float *loss_rows, vkd_error *err);
/* The same forward and loss without the backward: gradients untouched (held-out loss). */
vkd_result vkd_exit_train_loss(vkd_rec *rec, vkd_exit_trainer *tr, const int32_t *ids, uint32_t n, float weight,
                               float *loss_rows, vkd_error *err);
/* Records one optimizer update of norm and head with p (p->max_grad_norm clips); *grad_norm
 * (host) receives the global gradient norm before clipping when the submission completes. */
vkd_result vkd_exit_train_update(vkd_rec *rec, vkd_exit_trainer *tr, const vkd_optim_params *p, float *grad_norm,
                                 vkd_error *err);
/* Values the trainer updates: hidden + vocab*hidden, plus the block's with e->block. */
uint64_t vkd_exit_train_params(const vkd_exit_trainer *tr);
/* Optimizer state for checkpoints: the AdamW moments of (norm, head, then the block's
 * tensors in vkd_exit_block_tensors order), vkd_exit_train_params floats each for m and v. */
vkd_result vkd_exit_train_state_get(vkd_exit_trainer *tr, float *m, float *v, vkd_error *err);
vkd_result vkd_exit_train_state_set(vkd_exit_trainer *tr, const float *m, const float *v, vkd_error *err);
/* Gradients accumulated so far (tests): norm (hidden) and head (vocab x hidden). */
vkd_result vkd_exit_train_grads(vkd_exit_trainer *tr, float *g_norm, float *g_head, vkd_error *err);

#endif
