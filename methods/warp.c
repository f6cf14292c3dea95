/* warp.c: host-side sampling distributions for speculative sampling, in double.
 * transformers' warpers in generate()'s order: temperature, top-k (keeps every token
 * whose logit is >= the k-th largest, so ties at the boundary stay), top-p
 * (TopPLogitsWarper: sort ascending, remove tokens whose ascending cumulative probability
 * is <= 1 - top_p, keep at least one; equivalently, walking down from the largest, keep a
 * token while the mass of the tokens above it is < top_p; equal probabilities are taken
 * lower index first). */
#include "vkd_spec.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct heap {
    const double *key;
    uint32_t *idx;
    uint32_t n;
} heap;

/* max-heap on key, ties: lower index is larger */
static bool above(const heap *h, uint32_t a, uint32_t b) {
    double ka = h->key[a], kb = h->key[b];
    return ka > kb || (ka == kb && a < b);
}

static void sift_down(heap *h, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && above(h, h->idx[l], h->idx[m])) m = l;
        if (r < h->n && above(h, h->idx[r], h->idx[m])) m = r;
        if (m == i) return;
        uint32_t t = h->idx[i];
        h->idx[i] = h->idx[m];
        h->idx[m] = t;
        i = m;
    }
}

static uint32_t pop(heap *h) {
    uint32_t top = h->idx[0];
    h->idx[0] = h->idx[--h->n];
    sift_down(h, 0);
    return top;
}

void vkd_warp_probs(const float *logits, uint32_t n, const vkd_sample_params *sp, float *probs) {
    if (sp->temperature <= 0) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        memset(probs, 0, n * sizeof *probs);
        probs[best] = 1.0f;
        return;
    }
    double *x = malloc(n * sizeof *x);
    bool *keep = malloc(n * sizeof *keep);
    double mx = -INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        x[i] = (double)logits[i] / sp->temperature;
        keep[i] = true;
        if (x[i] > mx) mx = x[i];
    }
    heap h = {.key = x, .idx = NULL, .n = 0};
    bool need_heap = (sp->top_k > 0 && sp->top_k < n) || (sp->top_p > 0 && sp->top_p < 1);
    if (need_heap) {
        h.idx = malloc(n * sizeof *h.idx);
        for (uint32_t i = 0; i < n; i++) h.idx[i] = i;
        h.n = n;
        for (uint32_t i = n / 2; i-- > 0;) sift_down(&h, i);
    }
    if (sp->top_k > 0 && sp->top_k < n) {
        heap c = h;
        uint32_t *tmp = malloc(n * sizeof *tmp);
        memcpy(tmp, h.idx, n * sizeof *tmp);
        c.idx = tmp;
        uint32_t last = 0;
        for (uint32_t k = 0; k < sp->top_k; k++) last = pop(&c);
        double kth = x[last];
        for (uint32_t i = 0; i < n; i++)
            if (x[i] < kth) keep[i] = false;
        free(tmp);
    }
    if (sp->top_p > 0 && sp->top_p < 1) {
        double z = 0;
        for (uint32_t i = 0; i < n; i++)
            if (keep[i]) z += exp(x[i] - mx);
        double above_mass = 0;
        bool *keep2 = calloc(n, sizeof *keep2);
        uint32_t kept = 0;
        while (h.n) {
            uint32_t i = pop(&h);
            if (!keep[i]) continue;
            if (kept > 0 && above_mass >= sp->top_p) break;
            keep2[i] = true;
            kept++;
            above_mass += exp(x[i] - mx) / z;
        }
        memcpy(keep, keep2, n * sizeof *keep);
        free(keep2);
    }
    double z = 0;
    for (uint32_t i = 0; i < n; i++)
        if (keep[i]) z += exp(x[i] - mx);
    for (uint32_t i = 0; i < n; i++) probs[i] = keep[i] ? (float)(exp(x[i] - mx) / z) : 0.0f;
    free(h.idx);
    free(x);
    free(keep);
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

double vkd_uniform(uint64_t seed, uint32_t stream, uint64_t pos) {
    uint32_t w[4];
    vkd_philox4x32(seed, stream, pos, w);
    return (double)(w[0] >> 8) * (1.0 / 16777216.0) + (double)(w[1] >> 8) * (1.0 / 281474976710656.0);
}
