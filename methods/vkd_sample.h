/* vkd_sample.h: the one sampling module. Every method that turns logits into a token or a
 * proposal distribution goes through it.
 *
 * Parameters: vkd_sample_params (runtime/vkd_ops.h), with one meaning everywhere:
 *   temperature  0: greedy (argmax); else logits / temperature
 *   top_k        0: off (as transformers, where top_k = 0 disables TopKLogitsWarper); else
 *                keep every token whose value is >= the k-th largest (ties at the boundary stay)
 *   top_p        0 or >= 1: off; else TopPLogitsWarper: walking down from the largest value
 *                (equal values: lower index first), keep a token while the mass of the kept
 *                tokens above it is < top_p; at least one token is kept
 * applied in transformers' order: temperature, top-k, top-p. A command resolves a model's
 * generation_config defaults before it fills these fields.
 *
 * Where it runs. Drawing one token per row without needing the distribution on the host
 * runs on the device (vkd_sample_record -> shaders/sample.comp via vkd_op_sample; greedy ->
 * argmax.comp): generate and guide. Methods whose arithmetic needs the whole warped
 * distribution on the host in double precision (speculative sampling's p/q ratios and
 * residuals, power sampling's log q sums, the probe's Monte Carlo weights) use the host
 * functions below; no device op computes warped probabilities, so these read the logits
 * back once per row. Host results do not depend on the device.
 *
 * Randomness: Philox4x32-10 (vkd_philox4x32), keyed by the seed with a counter the caller
 * chooses; vkd_uniform gives a 48-bit uniform in [0, 1) from one counter. */
#ifndef VKD_SAMPLE_H
#define VKD_SAMPLE_H

#include "vkd_ops.h"

/* Device: records tok[i] ~ warp(x row x_row0 + i), i < rows, with Philox counter
 * counter0 + i (sp->counter0 is replaced by counter0). Greedy when sp->temperature == 0. */
vkd_result vkd_sample_record(vkd_rec *rec, vkd_tensor *tok, const vkd_tensor *x, uint32_t x_row0,
                             uint32_t rows, uint32_t n, const vkd_sample_params *sp,
                             uint64_t counter0);

/* Host, double precision. probs[i] = warped distribution of logits (n floats), 0 for removed
 * tokens (temperature 0: one-hot argmax, lowest index among equal maxima). */
vkd_result vkd_sample_probs(const float *logits, uint32_t n, const vkd_sample_params *sp,
                            float *probs, vkd_error *err);
/* logq[i] = log of the warped distribution, -INFINITY for removed tokens; sp->temperature must
 * be > 0. *kept (may be NULL): the number of tokens kept. */
vkd_result vkd_sample_logq(const float *logits, uint32_t n, const vkd_sample_params *sp,
                           double *logq, uint32_t *kept, vkd_error *err);
/* Draws from probs (need not be normalised) with u in [0, 1): the first index whose
 * cumulative mass exceeds u * total, in index order; -1 when every entry is 0. */
int32_t vkd_draw(const float *probs, uint32_t n, double u);

/* Temperature only, unnormalised, for Monte Carlo over many draws from one row: cdf[x] =
 * sum_{y <= x} exp(logits[y] / T - max), returns max + log(cdf[n-1]) (the log-normaliser of
 * logits / T). */
double vkd_sample_cdf(const float *logits, uint32_t n, double T, double *cdf);
/* The first index x with cdf[x] > u * cdf[n-1] (rounding past the end: the last non-empty). */
uint32_t vkd_sample_cdf_draw(const double *cdf, uint32_t n, double u);

/* Non-finite logits. The device ops that reduce over logit rows (runtime/vkd_ops.h) signal a
 * row holding a NaN or +Inf (-Inf is a masked token) in their output: argmax, sample and
 * topk write token -1, token_stats and kl_tvd write NaN. Every method checks what it reads
 * back with these and fails with VKD_ERR_RANGE: "<who> logits row N are not finite (NaN/Inf):
 * the model's activations overflowed", N = row0 + the first bad entry's row. who: "target",
 * "draft", ... */
/* A token read back from argmax / sample / topk (n entries, one per row). */
vkd_result vkd_check_tokens(const int32_t *tok, uint32_t n, uint64_t row0, const char *who,
                            vkd_error *err);
/* Per-row float results (rows of `stride` floats, the first `width` of each checked): fails on
 * any NaN. */
vkd_result vkd_check_stats(const float *v, uint32_t rows, uint32_t stride, uint32_t width,
                           uint64_t row0, const char *who, vkd_error *err);
/* A logits row read to the host: fails on any NaN or +Inf among its n entries. */
vkd_result vkd_check_logits(const float *logits, uint32_t n, uint64_t row, const char *who,
                            vkd_error *err);

/* Uniform in [0, 1) from Philox: (seed, stream, position), 48 bits. */
double vkd_uniform(uint64_t seed, uint32_t stream, uint64_t pos);

#endif
