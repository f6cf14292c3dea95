/* vkd_bootstrap.h: percentile bootstrap confidence intervals over examples, the one helper
 * every experiment's summaries use (diagnose, probe, power, guide, ttt).
 *
 * A statistic pooled over examples is sum(num) / sum(den) over the examples (a mean over
 * prompts: den NULL, every den 1; a token-pooled mean: num = the example's sum over its
 * tokens, den = its token count). Resample r (r < reps) draws n example indices
 * j_i = floor(u_i * n), u_i = vkd_uniform(seed, stream, r * n + i) (Philox4x32-10,
 * methods/vkd_sample.h), and computes the statistic on them; a resample whose den sum is 0
 * is skipped. lo / hi are the (1 - level) / 2 and (1 + level) / 2 percentiles, with linear
 * interpolation between order statistics (numpy's default), of the kept resamples. */
#ifndef VKD_BOOTSTRAP_H
#define VKD_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

enum { VKD_BOOT_STREAM = 0x42530001u }; /* the experiments' summaries ("BS") */

/* CI of sum(num) / sum(den) over n examples (den NULL: the mean of num). n == 0 or no kept
 * resample: NAN, NAN. level in (0, 1); reps >= 1. VKD_ERR_NOMEM when the reps statistics do
 * not fit in memory (lo, hi NAN). */
vkd_result vkd_bootstrap_ci(const double *num, const double *den, size_t n, uint32_t reps, double level,
                            uint64_t seed, uint32_t stream, double *lo, double *hi, vkd_error *err);

#endif
