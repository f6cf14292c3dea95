/* vkd_train_ops.h: the training ops. Optimizers and gradient clipping (ops/ops_optim.c),
 * the fused LM head + loss (ops/ops_loss.c), the learning-rate schedule (host).
 * Conventions as in vkd_ops.h: outputs first, then inputs, then sizes; errors sticky in the
 * recorder. CPU double references in tests/ops/ref_train.c. */
#ifndef VKD_TRAIN_OPS_H
#define VKD_TRAIN_OPS_H

#include "vkd_ops.h"

/* ---- optimizers (ops/ops_optim.c) ------------------------------------------------ */

typedef enum vkd_optim_kind { VKD_OPTIM_ADAMW = 0, VKD_OPTIM_SGD } vkd_optim_kind;

/* Hyper-parameters of one update; zero means the documented default. */
typedef struct vkd_optim_params {
    vkd_optim_kind kind;
    double lr;                 /* this step's learning rate (schedule applied; warmup may give 0) */
    double beta1, beta2;       /* AdamW; 0: 0.9 and 0.999 */
    double eps;                /* AdamW; 0: 1e-8 */
    double weight_decay;       /* AdamW: decoupled (p *= 1 - lr*wd); SGD: L2; default 0 */
    double momentum;           /* SGD; default 0 (no buffer, m unused) */
    double dampening;          /* SGD; default 0 */
    uint64_t step;             /* 1-based index of this update (AdamW bias correction,
                                * SGD momentum: step 1 sets the buffer to the gradient) */
    double max_grad_norm;      /* > 0: clip all gradients of the call by their global L2
                                * norm (torch.nn.utils.clip_grad_norm_); 0: off */
} vkd_optim_params;

/* One trainable tensor: param, grad, m (AdamW first moment / SGD momentum buffer), v (AdamW
 * second moment): f32, one chunk each, >= n elements. A slot may be a flat concatenation
 * of many parameters (one dispatch updates all of them). m/v may be NULL where unused. */
typedef struct vkd_optim_slot {
    vkd_tensor *param;
    const vkd_tensor *grad;
    vkd_tensor *m, *v;
    uint64_t n;
} vkd_optim_slot;

/* Number of f32 partial sums vkd_op_sumsq writes for a tensor of n elements. */
uint32_t vkd_optim_sumsq_parts(const vkd_ctx *ctx, uint64_t n);
/* Partial sums of squares of x[0..n) into parts[part0 .. part0 + vkd_optim_sumsq_parts(n)):
 * the pieces of a global norm, summed in index order by the update (deterministic). */
vkd_result vkd_op_sumsq(vkd_rec *rec, vkd_tensor *parts, uint32_t part0, const vkd_tensor *x,
                        uint64_t n);
/* out[0] = sqrt(sum of parts[0..nparts)) (the global gradient norm, before clipping).
 * out: f32, may be `parts` itself at an index >= nparts. */
vkd_result vkd_op_global_norm(vkd_rec *rec, vkd_tensor *out, uint32_t out_index,
                              vkd_tensor *parts, uint32_t nparts);
/* One update of one slot; gradients scaled by min(1, max_norm / (norm + 1e-6)) when
 * p->max_grad_norm > 0, with the norm from parts[0..nparts) (vkd_op_sumsq of every slot). */
vkd_result vkd_op_optim_update(vkd_rec *rec, const vkd_optim_slot *slot, const vkd_optim_params *p,
                               const vkd_tensor *parts, uint32_t nparts);
/* The whole step: with clipping, sum of squares of every slot's gradient into `parts`
 * (f32, >= vkd_optim_parts_needed + 1 elements; the last used entry receives the global
 * norm, readable by the caller at index *norm_index), then every slot's update. parts may
 * be NULL without clipping. */
uint32_t vkd_optim_parts_needed(const vkd_ctx *ctx, const vkd_optim_slot *slots, uint32_t nslots);
vkd_result vkd_optim_step(vkd_rec *rec, const vkd_optim_slot *slots, uint32_t nslots,
                          const vkd_optim_params *p, vkd_tensor *parts, uint32_t *norm_index);

/* Learning-rate multiplier of transformers' get_cosine_schedule_with_warmup (num_cycles
 * 0.5) at scheduler step s (0 for the first update):
 *   s < warmup:  s / max(1, warmup)
 *   else:        max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * (s - warmup) / max(1, total - warmup))))
 * so lr(s) = base_lr * vkd_lr_cosine(s, warmup, total). */
double vkd_lr_cosine(uint64_t s, uint64_t warmup, uint64_t total);

/* ---- fused LM head + loss (ops/ops_loss.c) ----------------------------------------
 * For rows r of final-normed hidden states H with student logits z_r = H_r W^T:
 *   loss[r] = w_r * ( ce_w * CE(z_r, label_r) + kl_w * T^2 * KL(softmax(t_r/T) || softmax(z_r/T)) )
 * with t_r the teacher logits (given, or H^t_r W_t^T from a teacher head). The vocabulary
 * is walked in chunks with an online log-sum-exp: no rows x vocab logits are ever held,
 * only rows x chunk scratch. Forward: loss (and the log-sum-exps, kept in the workspace).
 * Backward (after the forward with the same arguments, same or later submission):
 * dH = d(sum_r loss[r]) / dH, and dW likewise for a trainable head (f32).
 * For a weighted mean, pass row weights already divided by their sum.
 * With teacher_l1 the teacher term is the L1 distance of the distributions instead of KL
 * (DSpark's distribution-matching term; temperature must be 1), p = softmax(t_r) a constant:
 *   loss[r] = w_r * ( ce_w * CE(z_r, label_r) + l1_w * || softmax(z_r) - p ||_1 )
 *   dL1/dz_j = q_j (g_j - sum_i q_i g_i), g_i = sign(q_i - p_i) (sign(0) = 0).
 * The forward then walks the vocabulary twice (log-sum-exps first, then L1 and sum_i q_i g_i,
 * kept in the workspace for the backward), still without rows x vocab logits. */

/* Scratch of the fused loss: logits of one chunk for up to max_rows rows (student, and
 * teacher when a teacher head is used), and 8 f32 of running state per row. */
typedef struct vkd_lm_loss_ws {
    vkd_tensor *s, *t, *state;
    vkd_tensor *gy; /* one-pass mode: the labels' head rows, max_rows x hidden (made at first use) */
    uint32_t max_rows, chunk;
} vkd_lm_loss_ws;
/* chunk: vocabulary entries per step (0: 4096; at most 8192); teacher_head: room for
 * teacher logits computed from a teacher hidden state and head. */
vkd_result vkd_lm_loss_ws_create(vkd_ctx *ctx, uint32_t max_rows, uint32_t chunk, bool teacher_head,
                                 vkd_lm_loss_ws **out, vkd_error *err);
void vkd_lm_loss_ws_destroy(vkd_lm_loss_ws *ws);

typedef struct vkd_lm_loss_args {
    uint32_t rows;
    const vkd_tensor *h;       /* f32 rows x hidden (one binding) */
    const vkd_tensor *w;       /* LM head vocab x hidden, f32/f16/bf16, any number of chunks */
    const vkd_tensor *labels;  /* i32 rows; NULL: no CE term; an id outside [0, vocab): none for the row */
    const vkd_tensor *row_w;   /* f32 rows; NULL: every weight 1 */
    float ce_weight;           /* 0: 1 (when labels are given) */
    /* teacher: at most one of the two forms; none: no KL term */
    const vkd_tensor *t_logits;/* f32, rows t_row0.. x vocab (row stride t_logits->cols), one binding */
    uint32_t t_row0;
    const vkd_tensor *t_h;     /* f32 rows x hidden_t (one binding) */
    const vkd_tensor *t_w;     /* teacher head vocab x hidden_t, f32/f16/bf16, any chunks */
    float temperature;         /* 0: 1 */
    float kl_weight;           /* 0: 1 (when a teacher is given) */
    bool teacher_l1;           /* teacher term L1 (raw, not halved) instead of KL; needs a teacher */
    float l1_weight;           /* 0: 1 (with teacher_l1) */
    vkd_tensor *l1;            /* forward output, NULL: none; f32 rows: the raw L1 distance per row
                                * (unweighted; with teacher_l1 only) */
    vkd_tensor *loss;          /* forward output: f32 rows */
    vkd_tensor *dh;            /* backward output: f32 rows x hidden (one binding) */
    vkd_tensor *dw;            /* backward output, NULL: frozen head; f32 vocab x hidden, any chunks */
    bool accumulate;           /* backward adds into dh / dw instead of writing them */
} vkd_lm_loss_args;

vkd_result vkd_op_lm_loss_forward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a);
vkd_result vkd_op_lm_loss_backward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a);
/* Loss and dH in one pass over the vocabulary when the case allows it: CE against labels, no
 * teacher, frozen head (dw NULL), no accumulate. Each chunk's logits z are computed once;
 * their running max m and sum s of exp(z - m) are folded as in the forward, while dH holds
 * sum_c exp(z_c - m) W[c], rescaled by exp(m_old - m) when m grows (flash-attention style),
 * and the label's head row is gathered; at the end dH = w (ce_w (dH / s - W[label])). One
 * logits pass instead of the two of forward + backward. Other cases (and a workspace whose
 * max_rows x hidden scratch exceeds one binding) run forward then backward. Same outputs as
 * forward + backward, up to f32 rounding (the sums run in another order). */
vkd_result vkd_op_lm_loss_forward_backward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a);

#endif
