/* ref_logits.c: plain-C double-accumulation references of the logits ops (tests only). */
#include "ref_logits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double row_lse(const float *x, uint32_t n, float scale) {
    double m = -INFINITY, s = 0;
    for (uint32_t i = 0; i < n; i++) m = fmax(m, (double)(scale * x[i]));
    for (uint32_t i = 0; i < n; i++) s += exp((double)(scale * x[i]) - m);
    return m + log(s);
}

void ref_softmax(double *y, const float *x, uint32_t n, float scale, bool log) {
    double lz = row_lse(x, n, scale);
    for (uint32_t i = 0; i < n; i++) {
        double l = (double)(scale * x[i]) - lz;
        y[i] = log ? l : exp(l);
    }
}

bool ref_row_bad(const float *x, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (isnan(x[i]) || (isinf(x[i]) && x[i] > 0)) return true;
    return false;
}

uint32_t ref_argmax(const float *x, uint32_t n) {
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static const float *sort_vals;
static int cmp_desc(const void *a, const void *b) {
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float u = sort_vals[i], v = sort_vals[j];
    if (u != v) return u > v ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* order[0..n): indices sorted by value descending, ties lower index first */
static uint32_t *sorted_desc(const float *v, uint32_t n) {
    uint32_t *o = malloc(sizeof *o * n);
    for (uint32_t i = 0; i < n; i++) o[i] = i;
    sort_vals = v;
    qsort(o, n, sizeof *o, cmp_desc);
    return o;
}

void ref_topk(int32_t *idx, float *val, const float *x, uint32_t n, uint32_t k) {
    uint32_t *o = sorted_desc(x, n);
    for (uint32_t i = 0; i < k; i++) {
        idx[i] = (int32_t)o[i];
        val[i] = x[o[i]];
    }
    free(o);
}

void ref_token_stats(double out[3], const float *x, uint32_t n, int32_t t) {
    double gold = t >= 0 && (uint32_t)t < n ? x[t] : -INFINITY;
    uint32_t above = 0;
    for (uint32_t i = 0; i < n; i++) above += x[i] > gold;
    out[0] = gold;
    out[1] = row_lse(x, n, 1.0f);
    out[2] = 1.0 + above;
}

void ref_kl_tvd(double out[2], const float *xp, float ps, const float *xq, float qs, uint32_t n) {
    double lp = row_lse(xp, n, ps), lq = row_lse(xq, n, qs), kl = 0, tv = 0;
    for (uint32_t i = 0; i < n; i++) {
        double a = (double)(ps * xp[i]) - lp, b = (double)(qs * xq[i]) - lq;
        double p = exp(a), q = exp(b);
        if (p > 0) kl += p * (a - b);
        tv += fabs(p - q);
    }
    out[0] = kl;
    out[1] = 0.5 * tv;
}

void ref_sample_dist(double *prob, const float *x, uint32_t n, const vkd_sample_params *p) {
    float inv_t = 1.0f / p->temperature;
    float *v = malloc(sizeof *v * n);
    for (uint32_t i = 0; i < n; i++) v[i] = x[i] * inv_t;
    uint32_t *o = sorted_desc(v, n);
    double m = v[o[0]];
    /* top-k: keep v >= the k-th largest */
    uint32_t kept = n;
    if (p->top_k && p->top_k < n) {
        float kth = v[o[p->top_k - 1]];
        kept = p->top_k;
        while (kept < n && v[o[kept]] == kth) kept++;
    }
    double z = 0;
    for (uint32_t j = 0; j < kept; j++) z += exp(v[o[j]] - m);
    /* top-p: walk tied groups from the top; a group is kept iff the mass above it < top_p*z */
    if (p->top_p > 0 && p->top_p < 1) {
        double lim = p->top_p * z, above = 0;
        uint32_t j = 0;
        while (j < kept && above < lim) {
            uint32_t g = j;
            while (g < kept && v[o[g]] == v[o[j]]) above += exp(v[o[g++]] - m);
            j = g;
        }
        kept = j;
    }
    memset(prob, 0, sizeof *prob * n);
    double zs = 0;
    for (uint32_t j = 0; j < kept; j++) zs += exp(v[o[j]] - m);
    for (uint32_t j = 0; j < kept; j++) prob[o[j]] = exp(v[o[j]] - m) / zs;
    free(o);
    free(v);
}

uint32_t ref_sample_draw(const double *prob, uint32_t n, uint64_t seed, uint64_t counter) {
    uint32_t w[4];
    vkd_philox4x32(seed, 0, counter, w);
    double u = (double)(w[0] >> 8) * (1.0 / 16777216.0);
    double total = 0;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++)
        if (prob[i] > 0) {
            total += prob[i];
            last = i;
        }
    double target = u * total, cum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (prob[i] <= 0) continue;
        cum += prob[i];
        if (cum > target) return i;
    }
    return last;
}
