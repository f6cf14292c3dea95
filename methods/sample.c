/* sample.c: the sampling module (vkd_sample.h). Host warping is done once, in double, by
 * warp(): x = logits / temperature, top-k marks the tokens below the k-th largest value
 * -INFINITY (a min-heap of the k largest), top-p walks the kept tokens in descending order
 * (a max-heap; equal values: lower index first) and marks the rest; the outputs (probs,
 * log q) are then normalised over the kept tokens in index order. */
#include "vkd_sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

vkd_result vkd_sample_record(vkd_rec *rec, vkd_tensor *tok, const vkd_tensor *x, uint32_t x_row0,
                             uint32_t rows, uint32_t n, const vkd_sample_params *sp,
                             uint64_t counter0) {
    vkd_sample_params p = *sp;
    p.counter0 = counter0;
    return vkd_op_sample(rec, tok, x, x_row0, rows, n, &p);
}

/* ---- heaps over indices into a key array ------------------------------------------------ */

static void min_down(double *h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        double t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* max-heap of indices on key; among equal keys the lower index is larger */
static bool above(const double *key, uint32_t a, uint32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
}

static void max_down(const double *key, uint32_t *h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && above(key, h[l], h[m])) m = l;
        if (r < n && above(key, h[r], h[m])) m = r;
        if (m == i) return;
        uint32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* x[i] = logits[i] / T, removed tokens -INFINITY; *mx = max x. temperature > 0. */
static vkd_result warp(const float *logits, uint32_t n, const vkd_sample_params *sp, double *x,
                       double *mx, vkd_error *err) {
    double T = sp->temperature, m = -INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        x[i] = (double)logits[i] / T;
        if (x[i] > m) m = x[i];
    }
    *mx = m;
    if (sp->top_k > 0 && sp->top_k < n) {
        uint32_t k = sp->top_k, c = 0;
        double *h = malloc(k * sizeof *h);
        if (!h) return vkd_fail(err, VKD_ERR_NOMEM, "sample: out of host memory (top-k of %u)", k);
        for (uint32_t i = 0; i < n; i++) {
            if (c < k) {
                h[c++] = x[i];
                if (c == k)
                    for (uint32_t j = k / 2; j-- > 0;) min_down(h, k, j);
            } else if (x[i] > h[0]) {
                h[0] = x[i];
                min_down(h, k, 0);
            }
        }
        double kth = h[0];
        free(h);
        for (uint32_t i = 0; i < n; i++)
            if (x[i] < kth) x[i] = -INFINITY;
    }
    if (sp->top_p > 0 && sp->top_p < 1) {
        uint32_t *h = malloc((size_t)n * sizeof *h), c = 0;
        if (!h) return vkd_fail(err, VKD_ERR_NOMEM, "sample: out of host memory (top-p over %u)", n);
        double z = 0;
        for (uint32_t i = 0; i < n; i++)
            if (x[i] > -INFINITY) {
                h[c++] = i;
                z += exp(x[i] - m);
            }
        for (uint32_t j = c / 2; j-- > 0;) max_down(x, h, c, j);
        double mass = 0; /* of the kept tokens above the next one */
        bool first = true;
        while (c) {
            uint32_t i = h[0];
            h[0] = h[--c];
            max_down(x, h, c, 0);
            if (!first && mass >= sp->top_p) {
                x[i] = -INFINITY;
                continue;
            }
            first = false;
            mass += exp(x[i] - m) / z;
        }
        free(h);
    }
    return VKD_OK;
}

static double kept_mass(const double *x, uint32_t n, double mx, uint32_t *kept) {
    double z = 0;
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++)
        if (x[i] > -INFINITY) {
            z += exp(x[i] - mx);
            c++;
        }
    if (kept) *kept = c;
    return z;
}

vkd_result vkd_sample_probs(const float *logits, uint32_t n, const vkd_sample_params *sp,
                            float *probs, vkd_error *err) {
    if (sp->temperature <= 0) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        memset(probs, 0, n * sizeof *probs);
        probs[best] = 1.0f;
        return VKD_OK;
    }
    double *x = malloc((size_t)n * sizeof *x), mx;
    if (!x) return vkd_fail(err, VKD_ERR_NOMEM, "sample: out of host memory (%u logits)", n);
    vkd_result r = warp(logits, n, sp, x, &mx, err);
    if (!r) {
        double z = kept_mass(x, n, mx, NULL);
        for (uint32_t i = 0; i < n; i++) probs[i] = x[i] > -INFINITY ? (float)(exp(x[i] - mx) / z) : 0.0f;
    }
    free(x);
    return r;
}

vkd_result vkd_sample_logq(const float *logits, uint32_t n, const vkd_sample_params *sp,
                           double *logq, uint32_t *kept, vkd_error *err) {
    if (!(sp->temperature > 0))
        return vkd_fail(err, VKD_ERR_INVALID, "sample: log q needs a temperature > 0 (got %g)", sp->temperature);
    double mx;
    vkd_result r = warp(logits, n, sp, logq, &mx, err);
    if (r) return r;
    double lz = log(kept_mass(logq, n, mx, kept));
    for (uint32_t i = 0; i < n; i++)
        if (logq[i] > -INFINITY) logq[i] = (logq[i] - mx) - lz;
    return VKD_OK;
}

int32_t vkd_draw(const float *probs, uint32_t n, double u) {
    double total = 0;
    for (uint32_t i = 0; i < n; i++) total += probs[i];
    double target = u * total, acc = 0;
    int32_t last = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        last = (int32_t)i;
        if (target < acc) return (int32_t)i;
    }
    return last;
}

double vkd_sample_cdf(const float *logits, uint32_t n, double T, double *cdf) {
    double m = -INFINITY, acc = 0;
    for (uint32_t x = 0; x < n; x++)
        if ((double)logits[x] / T > m) m = (double)logits[x] / T;
    for (uint32_t x = 0; x < n; x++) {
        acc += exp((double)logits[x] / T - m);
        cdf[x] = acc;
    }
    return m + log(acc);
}

uint32_t vkd_sample_cdf_draw(const double *cdf, uint32_t n, double u) {
    double target = u * cdf[n - 1];
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > target) hi = mid;
        else lo = mid + 1;
    }
    while (lo > 0 && cdf[lo] == cdf[lo - 1]) lo--; /* rounding past the end: last non-empty entry */
    return lo;
}

double vkd_uniform(uint64_t seed, uint32_t stream, uint64_t pos) {
    uint32_t w[4];
    vkd_philox4x32(seed, stream, pos, w);
    return (double)(w[0] >> 8) * (1.0 / 16777216.0) + (double)(w[1] >> 8) * (1.0 / 281474976710656.0);
}

/* ---- non-finite logits ------------------------------------------------------------------ */

static vkd_result not_finite(uint64_t row, const char *who, vkd_error *err) {
    return vkd_fail(err, VKD_ERR_RANGE,
                    "%s logits row %llu are not finite (NaN/Inf): the model's activations overflowed",
                    who, (unsigned long long)row);
}

vkd_result vkd_check_tokens(const int32_t *tok, uint32_t n, uint64_t row0, const char *who,
                            vkd_error *err) {
    for (uint32_t i = 0; i < n; i++)
        if (tok[i] < 0) return not_finite(row0 + i, who, err);
    return VKD_OK;
}

vkd_result vkd_check_stats(const float *v, uint32_t rows, uint32_t stride, uint32_t width,
                           uint64_t row0, const char *who, vkd_error *err) {
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t j = 0; j < width; j++)
            if (isnan(v[(size_t)r * stride + j])) return not_finite(row0 + r, who, err);
    return VKD_OK;
}

vkd_result vkd_check_logits(const float *logits, uint32_t n, uint64_t row, const char *who,
                            vkd_error *err) {
    for (uint32_t i = 0; i < n; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY) return not_finite(row, who, err);
    return VKD_OK;
}
