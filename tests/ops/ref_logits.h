/* ref_logits.h: plain-C double-accumulation references of the logits ops (tests only). */
#ifndef VKD_REF_LOGITS_H
#define VKD_REF_LOGITS_H

#include <stdbool.h>
#include <stdint.h>

#include "vkd_ops.h"

/* The ops' non-finite rule: a row holding a NaN (either sign) or +Inf is "bad" (-Inf is a
 * masked token); argmax, topk and sample then give -1 (topk values NaN), token_stats and
 * kl_tvd NaN in every output, softmax a row of NaN. */
bool ref_row_bad(const float *x, uint32_t n);
/* y[i] = softmax(scale * x)[i] (or log_softmax), n entries. */
void ref_softmax(double *y, const float *x, uint32_t n, float scale, bool log);
/* Lowest index among the maxima. */
uint32_t ref_argmax(const float *x, uint32_t n);
/* The k largest, descending, ties lower index first. */
void ref_topk(int32_t *idx, float *val, const float *x, uint32_t n, uint32_t k);
/* out = {x[t] (-inf if t outside [0,n)), logsumexp(x), 1 + #{x > x[t]}}. */
void ref_token_stats(double out[3], const float *x, uint32_t n, int32_t t);
/* out = {KL(p||q), TVD}, p = softmax(ps * xp), q = softmax(qs * xq). */
void ref_kl_tvd(double out[2], const float *xp, float ps, const float *xq, float qs, uint32_t n);

/* The exact sampling distribution after temperature (x * (1/T) in f32, as the op does),
 * top-k (ties at the k-th value kept) and top-p (token kept iff the mass of kept tokens
 * strictly larger than it is < top_p; ties kept): prob[i], zero for removed tokens.
 * temperature must be > 0. */
void ref_sample_dist(double *prob, const float *x, uint32_t n, const vkd_sample_params *p);
/* One draw with the op's uniform (Philox word 0 of (seed, counter) >> 8, times 2^-24),
 * inverting the CDF of `prob` in index order: the first j whose cumulative mass exceeds
 * u * total (the last kept token if rounding leaves none). */
uint32_t ref_sample_draw(const double *prob, uint32_t n, uint64_t seed, uint64_t counter);

#endif
