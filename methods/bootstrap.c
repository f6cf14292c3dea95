/* bootstrap.c: percentile bootstrap CIs over examples (vkd_bootstrap.h). */
#include "vkd_bootstrap.h"

#include <math.h>
#include <stdlib.h>

#include "vkd_sample.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct_sorted(const double *v, size_t n, double q) {
    double pos = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

vkd_result vkd_bootstrap_ci(const double *num, const double *den, size_t n, uint32_t reps, double level,
                            uint64_t seed, uint32_t stream, double *lo, double *hi, vkd_error *err) {
    *lo = *hi = NAN;
    if (n == 0 || reps == 0) return VKD_OK;
    double *m = malloc((size_t)reps * sizeof *m);
    if (!m) return vkd_fail(err, VKD_ERR_NOMEM, "bootstrap: out of memory (%u resamples)", reps);
    size_t kept = 0;
    for (uint32_t r = 0; r < reps; r++) {
        double s = 0, d = 0;
        for (size_t i = 0; i < n; i++) {
            double u = vkd_uniform(seed, stream, (uint64_t)r * n + i);
            size_t j = (size_t)(u * (double)n);
            if (j >= n) j = n - 1;
            s += num[j];
            d += den ? den[j] : 1.0;
        }
        if (d != 0) m[kept++] = s / d;
    }
    if (kept) {
        qsort(m, kept, sizeof *m, cmp_double);
        *lo = pct_sorted(m, kept, 100.0 * (1.0 - level) / 2.0);
        *hi = pct_sorted(m, kept, 100.0 * (1.0 + level) / 2.0);
    }
    free(m);
    return VKD_OK;
}
