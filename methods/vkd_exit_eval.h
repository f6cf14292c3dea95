/* vkd_exit_eval.h: teacher-forced metrics of an early-exit head (seed 003's metrics section)
 * against its own target, for vkdraft exit-eval.
 *
 * One walk over a sequence ids[0..n) runs the target (all layers, its logits) and the exit
 * draft (embedding, layers 0..l, the head) on the same positions, in chunks of the target's
 * logit rows; row r of either is the prediction of ids[r+1]. Everything after the device
 * forward is host double precision. Per scored row, with t the target's and z the head's
 * logits:
 *   KL_T  = sum_v p_T(v) (log p_T(v) - log q_T(v)),  p_T = softmax(t / T), q_T = softmax(z / T)
 *           (nats, unscaled: no T^2 as in the training objective)
 *   CE    = logsumexp(z) - z[label]        (perplexity = exp(mean CE))
 *   rank  = #{v : z[v] > z[label]}; top-1: rank == 0, top-k: rank < k
 *   overlap = sum_v min(p(v), q(v)) of the target's and the head's distributions after the
 *           same sampling warp (vkd_sample_probs: temperature, top-k, top-p; greedy: one-hot
 *           argmax, so the overlap is 1 where the argmaxes agree and 0 elsewhere); TV = 1 -
 *           overlap. */
#ifndef VKD_EXIT_EVAL_H
#define VKD_EXIT_EVAL_H

#include "vkd_exit.h"
#include "vkd_sample.h"

typedef struct vkd_exit_eval vkd_exit_eval;

/* Sums over the scored rows of one sequence. */
typedef struct vkd_exit_quality {
    double kl_t, kl_1, ce;     /* nats, summed */
    uint32_t top1, topk;       /* rows whose label is the head's top-1 / in its top-k */
    uint32_t rows;             /* rows scored */
} vkd_exit_quality;

/* Scratch for the head e (borrowed, its target e->t): chunks of min(logit_rows, max_rows). */
vkd_result vkd_exit_eval_create(vkd_exit *e, vkd_exit_eval **out, vkd_error *err);
void vkd_exit_eval_free(vkd_exit_eval *ev);

/* Quality over ids[0..n) (n <= the target's ctx_len): rows 1 .. n-2 are scored (row 0, the
 * first token, is masked as in training; row n-1 has no label). T: the KL temperature, k for
 * top-k. Resets the target's KV cache (its contents afterwards are undefined). */
vkd_result vkd_exit_eval_quality(vkd_exit_eval *ev, vkd_rec *rec, const int32_t *ids, uint32_t n, double T,
                                 uint32_t k, vkd_exit_quality *q, vkd_error *err);
/* Overlap summed over rows r0 .. n-2 (the predictions of ids[r0+1 ..]), *rows of them. */
vkd_result vkd_exit_eval_overlap(vkd_exit_eval *ev, vkd_rec *rec, const int32_t *ids, uint32_t n, uint32_t r0,
                                 const vkd_sample_params *sp, double *sum, uint32_t *rows, vkd_error *err);

#endif
