/* ref_grad.c: double references of the training ops' forward and backward (tests only). */
#include "ref_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rg_matmul_fwd(double *y, const double *x, const double *w, uint32_t m, uint32_t N, uint32_t K) {
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t n = 0; n < N; n++) {
            double s = 0;
            for (uint32_t k = 0; k < K; k++) s += x[(size_t)i * K + k] * w[(size_t)n * K + k];
            y[(size_t)i * N + n] = s;
        }
}

void rg_matmul_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                   uint32_t m, uint32_t N, uint32_t K) {
    if (dx)
        for (uint32_t i = 0; i < m; i++)
            for (uint32_t k = 0; k < K; k++) {
                double s = 0;
                for (uint32_t n = 0; n < N; n++) s += dy[(size_t)i * N + n] * w[(size_t)n * K + k];
                dx[(size_t)i * K + k] = s;
            }
    if (dw)
        for (uint32_t n = 0; n < N; n++)
            for (uint32_t k = 0; k < K; k++) {
                double s = 0;
                for (uint32_t i = 0; i < m; i++) s += dy[(size_t)i * N + n] * x[(size_t)i * K + k];
                dw[(size_t)n * K + k] = s;
            }
}

static double rstd_of(const double *x, uint32_t dim, double eps) {
    double ss = 0;
    for (uint32_t j = 0; j < dim; j++) ss += x[j] * x[j];
    return 1.0 / sqrt(ss / dim + eps);
}

void rg_rmsnorm_fwd(double *y, const double *x, const double *w, uint32_t groups, uint32_t dim, double eps) {
    for (uint32_t g = 0; g < groups; g++) {
        const double *xg = x + (size_t)g * dim;
        double r = rstd_of(xg, dim, eps);
        for (uint32_t j = 0; j < dim; j++) y[(size_t)g * dim + j] = xg[j] * r * w[j];
    }
}

void rg_rmsnorm_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                    uint32_t groups, uint32_t dim, double eps) {
    if (dw) memset(dw, 0, dim * sizeof *dw);
    for (uint32_t g = 0; g < groups; g++) {
        const double *xg = x + (size_t)g * dim, *dyg = dy + (size_t)g * dim;
        double r = rstd_of(xg, dim, eps), s = 0;
        for (uint32_t j = 0; j < dim; j++) s += w[j] * dyg[j] * xg[j];
        for (uint32_t j = 0; j < dim; j++) {
            if (dx) dx[(size_t)g * dim + j] = r * (w[j] * dyg[j] - xg[j] * r * r * s / dim);
            if (dw) dw[j] += dyg[j] * xg[j] * r;
        }
    }
}

static void rope_rot(double *x, uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0,
                     const float *inv_freq, double sign) {
    uint32_t half = hd / 2;
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t h = 0; h < heads; h++) {
            double *v = x + ((size_t)r * heads + h) * hd;
            for (uint32_t j = 0; j < half; j++) {
                double a = (float)((float)(pos0 + r) * inv_freq[j]);
                double c = cos(a), s = sign * sin(a), x1 = v[j], x2 = v[j + half];
                v[j] = x1 * c - x2 * s;
                v[j + half] = x2 * c + x1 * s;
            }
        }
}

void rg_rope_fwd(double *x, uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0, const float *inv_freq) {
    rope_rot(x, rows, heads, hd, pos0, inv_freq, 1.0);
}

/* the Jacobian of a rotation is the rotation: its transpose rotates back */
void rg_rope_bwd(double *dx, uint32_t rows, uint32_t heads, uint32_t hd, uint32_t pos0, const float *inv_freq) {
    rope_rot(dx, rows, heads, hd, pos0, inv_freq, -1.0);
}

void rg_swiglu_fwd(double *h, const double *g, const double *u, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) h[i] = g[i] / (1 + exp(-g[i])) * u[i];
}

void rg_swiglu_bwd(double *dg, double *du, const double *dh, const double *g, const double *u, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        double s = 1 / (1 + exp(-g[i]));
        dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
        du[i] = dh[i] * g[i] * s;
    }
}

/* keys [0, visible) may be seen by query row i; sees(): whether key j is */
static uint32_t visible(const rg_attn *a, uint32_t i) {
    if (a->block || !a->causal) return a->kv_len;
    uint32_t n = a->q_pos0 + i + 1;
    return n < a->kv_len ? n : a->kv_len;
}

static bool sees(const rg_attn *a, uint32_t i, uint32_t j) {
    if (!a->block) return true;
    uint32_t b = i / a->block, own = a->q_pos0 + b * a->block;
    int64_t an = a->anchors[b] < 0 ? 0 : a->anchors[b];
    return (j < a->q_pos0 && (int64_t)j < an) || (j >= own && j < own + a->block);
}

void rg_attention_fwd(double *o, double *lse, const double *q, const double *k, const double *v,
                      const rg_attn *a) {
    uint32_t hd = a->hd, group = a->n_q / a->n_kv;
    double *s = malloc(a->kv_len * sizeof *s);
    for (uint32_t i = 0; i < a->q_rows; i++)
        for (uint32_t h = 0; h < a->n_q; h++) {
            const double *qi = q + ((size_t)i * a->n_q + h) * hd;
            uint32_t g = h / group, n = visible(a, i);
            double mx = -INFINITY, sum = 0;
            for (uint32_t j = 0; j < n; j++) {
                if (!sees(a, i, j)) { s[j] = -INFINITY; continue; }
                double d = 0;
                for (uint32_t c = 0; c < hd; c++) d += qi[c] * k[(size_t)j * a->kv_stride + g * hd + c];
                s[j] = d * a->scale;
                if (s[j] > mx) mx = s[j];
            }
            for (uint32_t j = 0; j < n; j++) sum += exp(s[j] - mx);
            double l = mx + log(sum);
            if (lse) lse[(size_t)i * a->n_q + h] = l;
            double *oi = o + ((size_t)i * a->n_q + h) * hd;
            for (uint32_t c = 0; c < hd; c++) {
                double acc = 0;
                for (uint32_t j = 0; j < n; j++) acc += exp(s[j] - l) * v[(size_t)j * a->kv_stride + g * hd + c];
                oi[c] = acc;
            }
        }
    free(s);
}

void rg_attention_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q,
                      const double *k, const double *v, const double *o, const double *lse,
                      const rg_attn *a) {
    uint32_t hd = a->hd, group = a->n_q / a->n_kv;
    memset(dq, 0, (size_t)a->q_rows * a->n_q * hd * sizeof *dq);
    memset(dk, 0, (size_t)a->kv_len * a->kv_stride * sizeof *dk);
    memset(dv, 0, (size_t)a->kv_len * a->kv_stride * sizeof *dv);
    for (uint32_t i = 0; i < a->q_rows; i++)
        for (uint32_t h = 0; h < a->n_q; h++) {
            size_t qb = ((size_t)i * a->n_q + h) * hd;
            uint32_t g = h / group, n = visible(a, i);
            double D = 0;
            for (uint32_t c = 0; c < hd; c++) D += dout[qb + c] * o[qb + c];
            for (uint32_t j = 0; j < n; j++) {
                if (!sees(a, i, j)) continue;
                size_t kb = (size_t)j * a->kv_stride + g * hd;
                double s = 0, dp = 0;
                for (uint32_t c = 0; c < hd; c++) {
                    s += q[qb + c] * k[kb + c];
                    dp += dout[qb + c] * v[kb + c];
                }
                double p = exp(s * a->scale - lse[(size_t)i * a->n_q + h]);
                double ds = p * (dp - D) * a->scale;
                for (uint32_t c = 0; c < hd; c++) {
                    dq[qb + c] += ds * k[kb + c];
                    dk[kb + c] += ds * q[qb + c];
                    dv[kb + c] += p * dout[qb + c];
                }
            }
        }
}

void rg_embed_fwd(double *y, const double *table, const int32_t *ids, uint32_t m, uint32_t V, uint32_t H) {
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t c = 0; c < H; c++)
            y[(size_t)i * H + c] = ids[i] >= 0 && (uint32_t)ids[i] < V ? table[(size_t)ids[i] * H + c] : 0;
}

void rg_embed_bwd(double *dtable, const double *dy, const int32_t *ids, uint32_t m, uint32_t V, uint32_t H) {
    for (size_t j = 0; j < (size_t)V * H; j++) dtable[j] = 0;
    for (uint32_t i = 0; i < m; i++)
        if (ids[i] >= 0 && (uint32_t)ids[i] < V)
            for (uint32_t c = 0; c < H; c++) dtable[(size_t)ids[i] * H + c] += dy[(size_t)i * H + c];
}
