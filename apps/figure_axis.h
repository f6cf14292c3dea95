/* figure_axis.h: the numbers behind apps/figure.c's axes: which values can be drawn, nice
 * linear and log ticks, value-to-pixel mapping and tick and value labels. Pure arithmetic,
 * no drawing. */
#ifndef VKD_FIGURE_AXIS_H
#define VKD_FIGURE_AXIS_H

#include <stdbool.h>
#include <stddef.h>

#define FIG_MAX_TICKS 40

typedef struct fig_axis {
    double lo, hi;            /* shown range (log: powers of ten) */
    bool log;
    double step;              /* linear: tick spacing; log: decades between major ticks */
    int n;
    double tick[FIG_MAX_TICKS];
    int p0, p1;               /* pixels of lo and hi */
} fig_axis;

/* Finite, |v| <= 1e300 and, on a log axis, >= 1e-300. */
bool fig_usable(double v, bool log);
/* Annotation text: digits significant digits, or (0) integers below 1e9 as integers, else
 * 3; values from 1e4 to 1e15 (not printed as integers) with a k, M, G or T suffix
 * ("64.5k"). */
void fig_fmt_value(char *buf, size_t n, double v, int digits);
/* Widens an empty or vanishing range [lo, hi] around its value. */
void fig_widen(double *lo, double *hi);
/* Linear axis over [lo, hi] with ticks at multiples of a 1/2/5 x 10^k step (about target
 * of them); expand moves lo and hi out to ticks. integer: the step is at least 1. */
void fig_axis_linear(fig_axis *a, double lo, double hi, bool expand, int target, bool integer);
/* Log axis over whole decades covering [lo, hi] (both usable on a log axis). */
void fig_axis_log(fig_axis *a, double lo, double hi);
/* Position of v in the axis range, 0 at lo and 1 at hi. */
double fig_axis_frac(const fig_axis *a, double v);
/* Pixel of a usable value (may lie outside [p0, p1] when v is outside the range). */
int fig_axis_px(const fig_axis *a, double v);
/* Tick label text of tick value v. */
void fig_tick_label(const fig_axis *a, double v, char *buf, size_t n);
/* Smallest of 1, 2, 5, 10, 20, 50, ... that is >= k: label strides people can count in. */
size_t fig_nice_count(size_t k);

#endif
