/* ref_train.c: double-precision references of the training ops. */
#include "ref_train.h"

#include <math.h>
#include <stdlib.h>

double ref_clip_factor(double norm, double max_norm) {
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

void ref_optim_update(double *p, const double *g, double *m, double *v, uint64_t n,
                      const vkd_optim_params *hp, double clip) {
    double t = (double)hp->step;
    for (uint64_t i = 0; i < n; i++) {
        double gi = g[i] * clip;
        if (hp->kind == VKD_OPTIM_ADAMW) {
            double b1 = hp->beta1 > 0 ? hp->beta1 : 0.9, b2 = hp->beta2 > 0 ? hp->beta2 : 0.999;
            double eps = hp->eps > 0 ? hp->eps : 1e-8;
            p[i] *= 1.0 - hp->lr * hp->weight_decay;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            double mhat = m[i] / (1.0 - pow(b1, t));
            double denom = sqrt(v[i]) / sqrt(1.0 - pow(b2, t)) + eps;
            p[i] -= hp->lr / (1.0 - pow(b1, t)) * m[i] / denom;
            (void)mhat;
        } else {
            gi += hp->weight_decay * p[i];
            if (hp->momentum > 0) {
                m[i] = hp->step == 1 ? gi : hp->momentum * m[i] + (1.0 - hp->dampening) * gi;
                gi = m[i];
            }
            p[i] -= hp->lr * gi;
        }
    }
}

/* Row r's share of the head's backward: dh += w dz W and dW += w dz^T h (either may be NULL). */
static void head_backward(double *dh, double *dW, const double *W, const double *h, const double *dz, double w,
                          uint32_t hidden, uint32_t vocab) {
    for (uint32_t j = 0; j < vocab; j++) {
        double d = w * dz[j];
        if (d == 0) continue;
        const double *wr = W + (uint64_t)j * hidden;
        if (dh)
            for (uint32_t k = 0; k < hidden; k++) dh[k] += d * wr[k];
        if (dW)
            for (uint32_t k = 0; k < hidden; k++) dW[(uint64_t)j * hidden + k] += d * h[k];
    }
}

void ref_lm_loss(double *loss, double *dH, double *dW, const double *H, const double *W,
                 const int32_t *labels, const double *row_w, const double *tl, uint32_t rows,
                 uint32_t hidden, uint32_t vocab, double ce_w, double kl_w, double T) {
    double *z = malloc(sizeof(double) * vocab), *dz = malloc(sizeof(double) * vocab);
    if (dH)
        for (uint64_t i = 0; i < (uint64_t)rows * hidden; i++) dH[i] = 0;
    if (dW)
        for (uint64_t i = 0; i < (uint64_t)vocab * hidden; i++) dW[i] = 0;
    for (uint32_t r = 0; r < rows; r++) {
        const double *h = H + (uint64_t)r * hidden;
        double zmax = -INFINITY;
        for (uint32_t j = 0; j < vocab; j++) {
            double s = 0;
            for (uint32_t k = 0; k < hidden; k++) s += h[k] * W[(uint64_t)j * hidden + k];
            z[j] = s;
            if (s > zmax) zmax = s;
            dz[j] = 0;
        }
        double l = 0;
        int32_t y = labels ? labels[r] : -1;
        if (ce_w != 0 && y >= 0 && (uint32_t)y < vocab) {
            double se = 0;
            for (uint32_t j = 0; j < vocab; j++) se += exp(z[j] - zmax);
            double lse = zmax + log(se);
            l += ce_w * (lse - z[y]);
            for (uint32_t j = 0; j < vocab; j++) dz[j] += ce_w * exp(z[j] - lse);
            dz[y] -= ce_w;
        }
        if (kl_w != 0 && tl) {
            const double *t = tl + (uint64_t)r * vocab;
            double am = -INFINITY, bm = -INFINITY, as = 0, bs = 0;
            for (uint32_t j = 0; j < vocab; j++) {
                if (t[j] / T > am) am = t[j] / T;
                if (z[j] / T > bm) bm = z[j] / T;
            }
            for (uint32_t j = 0; j < vocab; j++) {
                as += exp(t[j] / T - am);
                bs += exp(z[j] / T - bm);
            }
            double la = am + log(as), lb = bm + log(bs), kl = 0;
            for (uint32_t j = 0; j < vocab; j++) {
                double pa = exp(t[j] / T - la), qb = exp(z[j] / T - lb);
                kl += pa * ((t[j] / T - la) - (z[j] / T - lb));
                dz[j] += kl_w * T * (qb - pa); /* T^2 * (1/T) (q - p) */
            }
            l += kl_w * T * T * kl;
        }
        double w = row_w ? row_w[r] : 1.0;
        loss[r] = w * l;
        head_backward(dH ? dH + (uint64_t)r * hidden : NULL, dW, W, h, dz, w, hidden, vocab);
    }
    free(z);
    free(dz);
}

void ref_lm_loss_l1(double *loss, double *l1out, double *dH, double *dW, const double *H, const double *W,
                    const int32_t *labels, const double *row_w, const double *tl, uint32_t rows,
                    uint32_t hidden, uint32_t vocab, double ce_w, double l1_w) {
    double *z = malloc(sizeof(double) * vocab), *dz = malloc(sizeof(double) * vocab);
    double *q = malloc(sizeof(double) * vocab), *pt = malloc(sizeof(double) * vocab);
    if (dH)
        for (uint64_t i = 0; i < (uint64_t)rows * hidden; i++) dH[i] = 0;
    if (dW)
        for (uint64_t i = 0; i < (uint64_t)vocab * hidden; i++) dW[i] = 0;
    for (uint32_t r = 0; r < rows; r++) {
        const double *h = H + (uint64_t)r * hidden, *t = tl + (uint64_t)r * vocab;
        double zmax = -INFINITY, tmax = -INFINITY, zs = 0, ts = 0;
        for (uint32_t j = 0; j < vocab; j++) {
            double s = 0;
            for (uint32_t k = 0; k < hidden; k++) s += h[k] * W[(uint64_t)j * hidden + k];
            z[j] = s;
            zmax = fmax(zmax, s);
            tmax = fmax(tmax, t[j]);
        }
        for (uint32_t j = 0; j < vocab; j++) zs += exp(z[j] - zmax), ts += exp(t[j] - tmax);
        double lz = zmax + log(zs), lt = tmax + log(ts), l1 = 0, gs = 0, l = 0;
        for (uint32_t j = 0; j < vocab; j++) {
            q[j] = exp(z[j] - lz), pt[j] = exp(t[j] - lt);
            double d = q[j] - pt[j], g = d > 0 ? 1 : d < 0 ? -1 : 0;
            l1 += fabs(d), gs += q[j] * g;
        }
        for (uint32_t j = 0; j < vocab; j++) {
            double d = q[j] - pt[j], g = d > 0 ? 1 : d < 0 ? -1 : 0;
            dz[j] = l1_w * q[j] * (g - gs);
        }
        l += l1_w * l1;
        int32_t y = labels ? labels[r] : -1;
        if (ce_w != 0 && y >= 0 && (uint32_t)y < vocab) {
            l += ce_w * (lz - z[y]);
            for (uint32_t j = 0; j < vocab; j++) dz[j] += ce_w * q[j];
            dz[y] -= ce_w;
        }
        double w = row_w ? row_w[r] : 1.0;
        loss[r] = w * l;
        if (l1out) l1out[r] = l1;
        head_backward(dH ? dH + (uint64_t)r * hidden : NULL, dW, W, h, dz, w, hidden, vocab);
    }
    free(z), free(dz), free(q), free(pt);
}
