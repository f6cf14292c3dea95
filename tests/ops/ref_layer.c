/* ref_layer.c: plain-C double-accumulation references of the layer ops (tests only). */
#include "ref_layer.h"

#include <math.h>
#include <stdlib.h>

void ref_rmsnorm(float *y, const float *x, const float *w, uint32_t groups, uint32_t dim, float eps) {
    for (uint32_t g = 0; g < groups; g++) {
        const float *xg = x + (uint64_t)g * dim;
        double s = 0;
        for (uint32_t i = 0; i < dim; i++) s += (double)xg[i] * xg[i];
        double r = 1.0 / sqrt(s / dim + (double)eps);
        for (uint32_t i = 0; i < dim; i++) y[(uint64_t)g * dim + i] = (float)(xg[i] * r * w[i]);
    }
}

void ref_rope(float *x, uint32_t rows, uint32_t stride, uint32_t heads, uint32_t hd,
              uint32_t pos0, const int32_t *positions, const float *inv_freq) {
    uint32_t half = hd / 2;
    for (uint32_t r = 0; r < rows; r++) {
        float pos = positions ? (float)positions[r] : (float)(pos0 + r);
        for (uint32_t h = 0; h < heads; h++) {
            float *v = x + (uint64_t)r * stride + (uint64_t)h * hd;
            for (uint32_t j = 0; j < half; j++) {
                float a = pos * inv_freq[j]; /* f32 product, as transformers */
                double c = cos((double)a), s = sin((double)a);
                double x1 = v[j], x2 = v[j + half];
                v[j] = (float)(x1 * c - x2 * s);
                v[j + half] = (float)(x2 * c + x1 * s);
            }
        }
    }
}

void ref_attention(float *o, const float *q, const float *k, const float *v, uint32_t kv_stride,
                   uint32_t q_rows, uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                   uint32_t q_pos0, bool causal, float scale) {
    uint32_t group = n_q / n_kv;
    double *s = malloc(sizeof(double) * (kv_len ? kv_len : 1));
    double *acc = malloc(sizeof(double) * hd);
    for (uint32_t i = 0; i < q_rows; i++) {
        uint32_t n = kv_len;
        if (causal && (uint64_t)q_pos0 + i + 1 < n) n = q_pos0 + i + 1;
        for (uint32_t h = 0; h < n_q; h++) {
            const float *qh = q + ((uint64_t)i * n_q + h) * hd;
            uint32_t g = h / group;
            double mx = -INFINITY;
            for (uint32_t j = 0; j < n; j++) {
                const float *kj = k + (uint64_t)j * kv_stride + (uint64_t)g * hd;
                double d = 0;
                for (uint32_t c = 0; c < hd; c++) d += (double)qh[c] * kj[c];
                s[j] = d * scale;
                if (s[j] > mx) mx = s[j];
            }
            double sum = 0;
            for (uint32_t c = 0; c < hd; c++) acc[c] = 0;
            for (uint32_t j = 0; j < n; j++) {
                double p = exp(s[j] - mx);
                sum += p;
                const float *vj = v + (uint64_t)j * kv_stride + (uint64_t)g * hd;
                for (uint32_t c = 0; c < hd; c++) acc[c] += p * vj[c];
            }
            float *oh = o + ((uint64_t)i * n_q + h) * hd;
            for (uint32_t c = 0; c < hd; c++) oh[c] = (float)(acc[c] / sum);
        }
    }
    free(s);
    free(acc);
}

double ref_swiglu_one(float g, float u) { return (double)g / (1.0 + exp(-(double)g)) * u; }

void ref_swiglu(float *h, const float *g, const float *u, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) h[i] = (float)ref_swiglu_one(g[i], u[i]);
}
