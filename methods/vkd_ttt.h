/* vkd_ttt.h: test-time training (TTT) of the DFlash draft on its own context (seeds 001 and
 * 004, design.md section 6): the host side of the objective, the sweep grid and the
 * measurement protocol.
 *
 * Objective (issue 13, exactly). The context x_0..x_{T-1} is the chat-rendered prompt, plus
 * the answer when one is given. The target runs once over it with taps. For an anchor a
 * (1 <= a <= T-2) the draft gets the block [x_a, MASK x (B-1)] at positions a..a+B-1 with the
 * context features of positions 0..a-1 (what speculative decoding gives it at that point);
 * block row k (1 <= k <= B-1, a+k <= T-1) is trained to predict x_{a+k} with weight
 *   w_k = exp(-(k-1) / gamma)                                    (gamma = 7 by default).
 * Loss of a step = sum over its anchors and rows of w_k * CE / sum of the same w_k.
 * Anchors per step are drawn uniformly without replacement from 1..T-2 (vkd_ttt_draw_anchors:
 * Philox keyed by the seed, the example and the step), or fixed (then every step uses them).
 *
 * Measurement (seed 004 phase 1): tau of greedy speculative decoding of the prompt's
 * continuation, and the teacher-forced probability / rank of the gold answer's tokens under
 * the draft in mask mode (the diagnose protocol), each once without and once with the
 * adapter, on the same prompt and the same max tokens. vkd_ttt_measure measures the draft
 * as it is: the caller attaches or detaches the adapter around it. */
#ifndef VKD_TTT_H
#define VKD_TTT_H

#include <stdbool.h>

#include "vkd_dflash.h"

/* Philox streams of the TTT randomness (vkd_uniform's stream argument). */
enum { VKD_TTT_STREAM_ANCHORS = 0x54540001u, VKD_TTT_STREAM_BOOTSTRAP = 0x54540002u };

#define VKD_TTT_DEFAULT_GAMMA 7.0
#define VKD_TTT_DEFAULT_RANK 8
#define VKD_TTT_DEFAULT_ALPHA 16.0
#define VKD_TTT_DEFAULT_ANCHORS 8
#define VKD_TTT_DEFAULT_STEPS 30
#define VKD_TTT_DEFAULT_LR 5e-4

/* LoRA target modules of the draft (PEFT target_modules names). */
enum {
    VKD_TTT_FC = 1u << 0,      /* fc (the context projection) */
    VKD_TTT_Q = 1u << 1,       /* layers.*.self_attn.q_proj */
    VKD_TTT_K = 1u << 2,       /* layers.*.self_attn.k_proj */
    VKD_TTT_V = 1u << 3,       /* layers.*.self_attn.v_proj */
    VKD_TTT_DEFAULT_TARGETS = VKD_TTT_FC | VKD_TTT_K | VKD_TTT_V,
};
/* Parses "fc,k_proj,v_proj" (any of fc, q_proj, k_proj, v_proj, each at most once) into a
 * mask; VKD_ERR_INVALID naming the bad name otherwise. */
vkd_result vkd_ttt_parse_targets(const char *s, uint32_t *mask, vkd_error *err);
/* Writes the mask back as "fc,k_proj,v_proj" (checkpoint order: fc, q, k, v) into buf. */
void vkd_ttt_targets_str(uint32_t mask, char *buf, size_t cap);

/* Number of allowed anchors of a context of T tokens (T - 2, or 0 when T < 3): 1..T-2. */
uint32_t vkd_ttt_anchor_count(uint32_t T);

/* Draws K distinct anchors from 1..T-2 for (seed, example key, step): a partial Fisher-Yates
 * shuffle of the list 1..T-2, whose i-th swap partner is i + floor(u_i * (T-2-i)) with u_i =
 * vkd_uniform(seed, VKD_TTT_STREAM_ANCHORS, (key << 32) | (step * K + i)). out gets the K
 * anchors in draw order. VKD_ERR_RANGE when K > T - 2 or K == 0. */
vkd_result vkd_ttt_draw_anchors(uint64_t seed, uint32_t key, uint32_t step, uint32_t T, uint32_t K,
                                uint32_t *out, vkd_error *err);
/* Checks fixed anchors against a context of T tokens (each in 1..T-2, no repeats). */
vkd_result vkd_ttt_check_anchors(const uint32_t *a, uint32_t n, uint32_t T, vkd_error *err);

/* Training rows of one step: for each anchor i (na of them) the block ids
 * blocks[i*B .. i*B+B) = [x_a, MASK x (B-1)], and for each of its B-1 predicting rows
 * (k = 1..B-1, row index i*(B-1) + k-1) the label x_{a+k} and the weight
 * w_k / sum of the step's w (so that sum_rows weight * CE is the step's loss); rows with
 * a+k > T-1 get label -1 and weight 0. Returns the number of trained rows (weight > 0). */
uint32_t vkd_ttt_step_rows(const int32_t *seq, uint32_t T, const uint32_t *anchors, uint32_t na,
                           uint32_t B, int32_t mask_id, double gamma, int32_t *blocks,
                           int32_t *labels, float *weights);

/* CPU double reference of the step loss from draft logits (na*(B-1) rows x V, row order of
 * vkd_ttt_step_rows): sum w * CE(softmax(logits row), label) over rows with weight > 0.
 * Tests only. */
double vkd_ttt_loss_ref(const float *logits, uint32_t rows, uint32_t V, const int32_t *labels,
                        const float *weights);

/* One point of a sweep. */
typedef struct vkd_ttt_setting {
    uint32_t steps, rank;
    double lr;
} vkd_ttt_setting;

/* The sweep grid: every (rank, lr, steps) of the lists, in that nesting order (steps
 * innermost and ascending, so that one training run per (rank, lr) of max(steps) updates
 * passes through every smaller step count: the learning rate is constant, the anchors of a
 * step do not depend on the step count, so the adapter after s updates is the same whether
 * the run stops there or goes on). Lists must be non-empty; steps >= 1, ranks >= 1, lr > 0;
 * duplicates are refused. *out is malloc'd. */
vkd_result vkd_ttt_grid(const uint32_t *steps, size_t nsteps, const double *lrs, size_t nlr,
                        const uint32_t *ranks, size_t nrank, vkd_ttt_setting **out, size_t *n,
                        vkd_error *err);

/* Percentile bootstrap confidence interval of the mean of x[0..n): reps resamples of n
 * indices drawn with Philox (seed, VKD_TTT_STREAM_BOOTSTRAP, rep * n + i); lo / hi are the
 * (1-level)/2 and (1+level)/2 percentiles (linear interpolation) of the resampled means.
 * n == 0: NAN. n == 1: both the value. */
void vkd_ttt_bootstrap_ci(const double *x, size_t n, uint32_t reps, double level, uint64_t seed,
                          double *lo, double *hi);

/* What vkd_ttt_measure gives. */
typedef struct vkd_ttt_metrics {
    double tau;                /* mean acceptance length of greedy spec decoding */
    uint32_t spec_steps, generated;
    bool stopped;
    int32_t *ids;              /* the generated ids (malloc'd) */
    double spec_s;             /* wall time of the spec decoding */
    /* teacher-forced gold answer in mask mode, over its compared tokens (NAN without one) */
    uint32_t tf_tokens;
    double p_mean, rank_mean, logp_mean;
    double tf_s;
} vkd_ttt_metrics;
void vkd_ttt_metrics_free(vkd_ttt_metrics *m);

typedef struct vkd_ttt_measure_options {
    uint32_t max_new_tokens;   /* 0: 128 */
    const int32_t *stop_ids;
    uint32_t nstop;
} vkd_ttt_measure_options;

/* Measures the draft d (with whatever adapter is attached) on prompt[0..P): greedy spec
 * decoding of the continuation; with an answer (nans >= 2 tokens after the prompt in seq,
 * seq = prompt + answer, n = P + nans), the teacher-forced mask-mode walk over it: per
 * compared token p = softmax(draft logits)[gold] and rank = 1 + the number of larger
 * logits (vkd_op_token_stats, as diagnose). seq may be NULL (no answer). */
vkd_result vkd_ttt_measure(vkd_dflash *d, vkd_rec *rec, const int32_t *prompt, uint32_t P,
                           const int32_t *seq, uint32_t n, const vkd_ttt_measure_options *opt,
                           vkd_ttt_metrics *out, vkd_error *err);

/* ---- adapters and adaptation (methods/ttt_train.c) ---- */

/* A LoRA adapter attached to a draft's linears (PEFT layout on disk, models/vkd_lora.h);
 * while attached, every draft call (spec decoding, teacher forcing, guided decoding) uses
 * it. Freeing it detaches it: the draft's outputs are the adapter-free ones again. */
typedef struct vkd_ttt_adapter vkd_ttt_adapter;

/* A fresh adapter: A Kaiming-uniform keyed by (seed, module path), B = 0 (bit-identical
 * outputs until trained). targets: VKD_TTT_* mask (0: default); rank >= 1; alpha > 0. */
vkd_result vkd_ttt_adapter_new(vkd_dflash *d, uint32_t rank, double alpha, uint32_t targets,
                               uint64_t seed, vkd_ttt_adapter **out, vkd_error *err);
/* A PEFT adapter folder (f32, bf16 or f16), checked against the draft: VKD_ERR_INVALID (or
 * the loader's code) naming the file and field when its rank, targets or shapes do not fit;
 * VKD_ERR_UNSUPPORTED when it adapts a linear other than fc / q_proj / k_proj / v_proj. */
vkd_result vkd_ttt_adapter_load(vkd_dflash *d, const char *dir, vkd_ttt_adapter **out,
                                vkd_error *err);
/* Writes the adapter's current (device) values as a PEFT folder. */
vkd_result vkd_ttt_adapter_save(vkd_ttt_adapter *a, const char *dir, vkd_error *err);
uint32_t vkd_ttt_adapter_rank(const vkd_ttt_adapter *a);
uint32_t vkd_ttt_adapter_targets(const vkd_ttt_adapter *a);  /* VKD_TTT_* mask */
double vkd_ttt_adapter_alpha(const vkd_ttt_adapter *a);
/* Detaches and frees (NULL: nothing). */
void vkd_ttt_adapter_free(vkd_ttt_adapter *a);

typedef enum vkd_ttt_optimizer { VKD_TTT_ADAMW = 0, VKD_TTT_SGD = 1 } vkd_ttt_optimizer;

/* Called after `steps` updates (for each checkpoint step count), with the adapter of that
 * moment attached: the caller measures it (vkd_ttt_measure). */
typedef vkd_result (*vkd_ttt_checkpoint_fn)(void *user, uint32_t steps, vkd_error *err);

typedef struct vkd_ttt_options {
    uint32_t steps;               /* updates, >= 1 */
    double lr;                    /* constant learning rate, > 0 */
    vkd_ttt_optimizer optimizer;  /* AdamW (torch.optim.AdamW, weight decay 0) or SGD */
    uint32_t anchors_per_step;    /* 0: VKD_TTT_DEFAULT_ANCHORS, capped at T-2 */
    const uint32_t *anchors;      /* fixed anchors for every step (then anchors_per_step unused) */
    uint32_t nanchors;
    double gamma;                 /* 0: VKD_TTT_DEFAULT_GAMMA */
    uint64_t seed;                /* the anchors */
    uint32_t key;                 /* the example (anchor stream) */
    const uint32_t *checkpoints;  /* ascending step counts <= steps for on_checkpoint */
    uint32_t ncheckpoints;
    vkd_ttt_checkpoint_fn on_checkpoint;
    void *user;
} vkd_ttt_options;

/* Filled as the steps go (the checkpoint callback may read it). */
typedef struct vkd_ttt_trace {
    double *losses;               /* steps values: loss of step s, computed before update s
                                   * (losses[0]: before any update); malloc'd */
    uint32_t n;                   /* losses filled (< steps when stopped by an error) */
    uint32_t updates;             /* updates applied (the adapter holds these) */
    double features_s;            /* the target's pass over the context with taps */
    double train_s;               /* the steps' wall time so far */
    uint64_t train_rows;          /* trained (weighted) rows so far */
} vkd_ttt_trace;
void vkd_ttt_trace_free(vkd_ttt_trace *t);

/* Whether this build has the training step vkd_ttt_adapt needs. */
bool vkd_ttt_engine_available(void);

/* Trains the attached adapter a on the context seq[0..T): the target once over seq with
 * taps, then o->steps updates of the objective above, calling o->on_checkpoint after each
 * checkpoint step count. A non-finite loss or gradient stops with VKD_ERR_RANGE naming the
 * step, without applying that update: the adapter keeps the last good values
 * (trace->updates says how many updates they hold). Optimizer state lives in a and starts
 * from zero at each call. */
vkd_result vkd_ttt_adapt(vkd_dflash *d, vkd_ttt_adapter *a, vkd_rec *rec, const int32_t *seq,
                         uint32_t T, const vkd_ttt_options *o, vkd_ttt_trace *trace,
                         vkd_error *err);

#endif
