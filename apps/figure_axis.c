/* figure_axis.c: axis arithmetic for apps/figure.c (figure_axis.h). */
#include "figure_axis.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


bool fig_usable(double v, bool log) {
    return isfinite(v) && fabs(v) <= 1e300 && (!log || v >= 1e-300);
}

/* Annotation text: digits significant digits, or (0) integers as integers, else 3. */
void fig_fmt_value(char *buf, size_t n, double v, int digits) {
    if (v == 0) v = 0; /* no "-0" */
    int sig = digits ? digits : 3;
    if (digits == 0 && v == floor(v) && fabs(v) < 1e9) {
        snprintf(buf, n, "%.0f", v);
    } else if (fabs(v) >= 1e4 && fabs(v) < 1e15) { /* 64.5k, 1.2M: short enough to sit on a bar */
        int e = (int)floor(log10(fabs(v)) / 3);
        snprintf(buf, n, "%.*g", sig, v / pow(10, 3 * e));
        if (fabs(strtod(buf, NULL)) >= 1000 && e < 4) e++, snprintf(buf, n, "%.*g", sig, v / pow(10, 3 * e));
        size_t len = strlen(buf);
        if (len + 1 < n) buf[len] = "kMGT"[e - 1], buf[len + 1] = 0;
    } else {
        snprintf(buf, n, "%.*g", sig, v);
    }
}


/* Widens an empty or vanishing range [lo, hi] around its value. */
void fig_widen(double *lo, double *hi) {
    double m = fmax(fabs(*lo), fabs(*hi));
    if (*hi - *lo > 1e-9 * m && *hi > *lo) return;
    double d = m > 0 ? m * 0.1 : 0.5;
    *lo -= d;
    *hi += d;
}

/* Linear axis over [lo, hi] with ticks at multiples of a 1/2/5 x 10^k step (about target
 * of them); expand moves lo and hi out to ticks. integer: the step is at least 1. */
void fig_axis_linear(fig_axis *a, double lo, double hi, bool expand, int target, bool integer) {
    fig_widen(&lo, &hi);
    double raw = (hi - lo) / (target < 2 ? 2 : target);
    double mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    if (integer && step < 1) step = 1;
    if (expand) {
        lo = floor(lo / step + 1e-9) * step;
        hi = ceil(hi / step - 1e-9) * step;
    }
    a->lo = lo, a->hi = hi, a->log = false, a->step = step, a->n = 0;
    double k1 = floor(hi / step + 1e-9);
    for (double k = ceil(lo / step - 1e-9); k <= k1 && a->n < FIG_MAX_TICKS; k++) {
        double t = k * step;
        a->tick[a->n++] = fabs(t) < step * 1e-9 ? 0 : t;
    }
}

/* Log axis over whole decades covering [lo, hi] (both usable on a log axis). */
void fig_axis_log(fig_axis *a, double lo, double hi) {
    int e0 = (int)floor(log10(lo) + 1e-9), e1 = (int)ceil(log10(hi) - 1e-9);
    if (e1 <= e0) e1 = e0 + 1;
    int every = (e1 - e0 + 9) / 10;
    a->lo = pow(10, e0), a->hi = pow(10, e1), a->log = true, a->step = every, a->n = 0;
    for (int e = e0; e <= e1 && a->n < FIG_MAX_TICKS; e += every) a->tick[a->n++] = pow(10, e);
}

double fig_axis_frac(const fig_axis *a, double v) {
    if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}

/* Pixel of a usable value (may lie outside [p0, p1] when v is outside the range). */
int fig_axis_px(const fig_axis *a, double v) {
    double p = a->p0 + fig_axis_frac(a, v) * (a->p1 - a->p0);
    if (!(p > -1e5)) p = -1e5;
    if (p > 1e5) p = 1e5;
    return (int)lround(p);
}

void fig_tick_label(const fig_axis *a, double v, char *buf, size_t n) {
    if (a->log) {
        int e = (int)lround(log10(v));
        if (e >= -3 && e <= 4) snprintf(buf, n, "%g", pow(10, e));
        else snprintf(buf, n, "1e%d", e);
    } else if (v == 0) {
        snprintf(buf, n, "0");
    } else if (a->step >= 1 && fabs(v) < 1e9) {
        snprintf(buf, n, "%.0f", v);
    } else if (a->step >= 1e-6 && fabs(v) < 1e9) {
        snprintf(buf, n, "%.*f", (int)ceil(-log10(a->step) - 1e-9), v);
    } else {
        snprintf(buf, n, "%.3g", v);
    }
}

/* Smallest of 1, 2, 5, 10, 20, 50, ... that is >= k: label strides people can count in. */
size_t fig_nice_count(size_t k) {
    for (size_t m = 1; m < SIZE_MAX / 10; m *= 10)
        for (size_t f = 1; f <= 5; f += f == 1 ? 1 : 3)
            if (f * m >= k) return f * m;
    return k;
}

