/* figure.c: bar, line, histogram and heatmap charts drawn on an RGB canvas with a built-in
 * 5x7 font and encoded as PNG with zlib. Semantics and layout rules are in figure.h. */
#include "figure.h"

#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_W 900
#define DEFAULT_H 560
#define MAX_TICKS 40
#define GLYPH_W 6      /* advance: 5 px glyph + 1 px space, times the scale */
#define GLYPH_H 8      /* line: 7 px glyph + 1 px */
#define LABEL_MAX 40   /* glyphs of any one label */
#define ELLIPSIS 95    /* glyph index of the ellipsis that ends a cut label */
#define TICK 6
#define MINOR_TICK 3

typedef struct rgb { uint8_t r, g, b; } rgb;

static const rgb WHITE = {255, 255, 255}, TEXT = {17, 17, 17}, AXIS = {51, 51, 51},
                 GRID = {229, 229, 229}, NAN_GREY = {211, 211, 211}, FRAME = {170, 170, 170},
                 ZERO_LINE = {150, 150, 150};

/* Okabe-Ito, ordered so the first few are the most distinct on white. */
static const rgb PALETTE[8] = {{0, 114, 178},  {213, 94, 0},    {0, 158, 115}, {230, 159, 0},
                               {86, 180, 233}, {204, 121, 167}, {240, 228, 66}, {0, 0, 0}};
static const rgb VIRIDIS[9] = {{68, 1, 84},   {71, 45, 123},  {59, 82, 139},  {44, 114, 142}, {33, 144, 140},
                               {39, 173, 129}, {93, 200, 99}, {170, 220, 50}, {253, 231, 37}};
static const rgb RDBU[9] = {{33, 102, 172}, {67, 147, 195}, {146, 197, 222}, {209, 229, 240}, {247, 247, 247},
                            {253, 219, 199}, {244, 165, 130}, {214, 96, 77},  {178, 24, 43}};

/* ---- font: printable ASCII 32..126 plus an ellipsis, 5 columns each, bit 0 = top row;
 * rows 0..6 hold the glyph, row 7 the descenders of g, j, p, q, y ---- */

static const uint8_t FONT[96][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x98, 0xA4, 0xA4, 0xA4, 0x7C},
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x00, 0x80, 0x80, 0x7D, 0x00},
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0xFC, 0x24, 0x24, 0x24, 0x18},
    {0x18, 0x24, 0x24, 0x24, 0xFC}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x9C, 0xA0, 0xA0, 0xA0, 0x7C},
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08}, {0x40, 0x00, 0x40, 0x00, 0x40},
};

/* ---- canvas ---- */

typedef struct canvas {
    int w, h;
    uint8_t *px;            /* h x w x 3, row-major */
    int cx0, cy0, cx1, cy1; /* clip rectangle [cx0, cx1) x [cy0, cy1) */
} canvas;

static void clip_to(canvas *c, int x0, int y0, int x1, int y1) {
    c->cx0 = x0 < 0 ? 0 : x0;
    c->cy0 = y0 < 0 ? 0 : y0;
    c->cx1 = x1 > c->w ? c->w : x1;
    c->cy1 = y1 > c->h ? c->h : y1;
}

static uint8_t mix(uint8_t dst, uint8_t src, double a) { return (uint8_t)(dst * (1 - a) + src * a + 0.5); }

/* Fills [x0, x1) x [y0, y1) inside the clip rectangle; alpha < 1 blends over the canvas. */
static void blend_rect(canvas *c, int x0, int y0, int x1, int y1, rgb col, double alpha) {
    if (x0 < c->cx0) x0 = c->cx0;
    if (y0 < c->cy0) y0 = c->cy0;
    if (x1 > c->cx1) x1 = c->cx1;
    if (y1 > c->cy1) y1 = c->cy1;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
            if (alpha >= 1) {
                p[0] = col.r, p[1] = col.g, p[2] = col.b;
            } else {
                p[0] = mix(p[0], col.r, alpha), p[1] = mix(p[1], col.g, alpha), p[2] = mix(p[2], col.b, alpha);
            }
        }
}
static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, rgb col) { blend_rect(c, x0, y0, x1, y1, col, 1); }

/* Rectangle outline, 1 px, around [x0, x1) x [y0, y1) (drawn just outside it). */
static void outline(canvas *c, int x0, int y0, int x1, int y1, rgb col) {
    fill_rect(c, x0 - 1, y0 - 1, x1 + 1, y0, col);
    fill_rect(c, x0 - 1, y1, x1 + 1, y1 + 1, col);
    fill_rect(c, x0 - 1, y0, x0, y1, col);
    fill_rect(c, x1, y0, x1 + 1, y1, col);
}

/* Bresenham line with a th x th brush. Endpoints are already clamped to +-1e5 px. */
static void draw_line(canvas *c, int x0, int y0, int x1, int y1, int th, rgb col) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy, o = th / 2;
    for (;;) {
        fill_rect(c, x0 - o, y0 - o, x0 - o + th, y0 - o + th, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

/* Filled marker of radius r: 0 circle, 1 square, 2 diamond, 3 triangle. */
static void draw_marker(canvas *c, int x, int y, int r, int shape, rgb col) {
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            bool in = shape == 0 ? dx * dx + dy * dy <= r * r + r
                    : shape == 1 ? true
                    : shape == 2 ? abs(dx) + abs(dy) <= r
                                 : 2 * abs(dx) <= dy + r;
            if (in) fill_rect(c, x + dx, y + dy, x + dx + 1, y + dy + 1, col);
        }
}

/* ---- text ---- */

/* Glyph index of the next character of *s (advancing it), -1 at the end. Bytes outside
 * printable ASCII become '?', one per UTF-8 code point (continuation bytes are skipped). */
static int next_glyph(const char **s) {
    const unsigned char *p = (const unsigned char *)*s;
    while (*p && (*p & 0xC0) == 0x80) p++;
    if (!*p) {
        *s = (const char *)p;
        return -1;
    }
    unsigned ch = *p++;
    *s = (const char *)p;
    if (ch < 32 || ch > 126) ch = '?';
    return (int)ch - 32;
}

static int glyph_count(const char *s) {
    int n = 0;
    if (s)
        while (next_glyph(&s) >= 0 && n < 100000) n++;
    return n;
}

static int text_w(const char *s, int scale, int max) {
    int n = glyph_count(s);
    if (n > max) n = max;
    return n ? n * GLYPH_W * scale - scale : 0;
}

/* Most glyphs that fit in width px at scale. */
static int fit_glyphs(int scale, int width) {
    int n = (width + scale) / (GLYPH_W * scale);
    return n < 0 ? 0 : n > 1000 ? 1000 : n;
}

static void draw_glyph(canvas *c, int x, int y, int g, int s, bool up, rgb col) {
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 8; j++) {
            if (!(FONT[g][i] >> j & 1)) continue;
            if (up) /* rotated a quarter turn anticlockwise: glyph rows run right, columns up */
                fill_rect(c, x + j * s, y - (i + 1) * s, x + (j + 1) * s, y - i * s, col);
            else
                fill_rect(c, x + i * s, y + j * s, x + (i + 1) * s, y + (j + 1) * s, col);
        }
}

/* Draws at most max glyphs of s (the last one an ellipsis when s is longer). Horizontal
 * text: (x, y) is the top-left corner. Vertical text (up) reads bottom to top from (x, y),
 * the bottom-left corner. */
static void draw_text(canvas *c, int x, int y, const char *s, int scale, int max, bool up, rgb col) {
    if (!s || max <= 0) return;
    int total = glyph_count(s);
    for (int i = 0, g; i < max && (g = next_glyph(&s)) >= 0; i++) {
        if (i == max - 1 && total > max) g = ELLIPSIS;
        draw_glyph(c, x, y, g, scale, up, col);
        if (up) y -= GLYPH_W * scale;
        else x += GLYPH_W * scale;
    }
}

/* Horizontal text aligned on (x, y): ha/va 0 = left/top, 1 = centre, 2 = right/bottom. */
static void text_at(canvas *c, const char *s, int x, int y, int ha, int va, int scale, int max, rgb col) {
    int w = text_w(s, scale, max), h = 7 * scale;
    draw_text(c, x - w * ha / 2, y - h * va / 2, s, scale, max, false, col);
}

/* Vertical text (reading upwards) centred on row yc, left edge at x. */
static void text_up(canvas *c, const char *s, int x, int yc, int scale, int max, rgb col) {
    draw_text(c, x, yc + text_w(s, scale, max) / 2, s, scale, max, true, col);
}

/* ---- numbers and axes ---- */

static bool usable(double v, bool log) {
    return isfinite(v) && fabs(v) <= 1e300 && (!log || v >= 1e-300);
}

/* Annotation text: digits significant digits, or (0) integers as integers, else 3. */
static void fmt_value(char *buf, size_t n, double v, int digits) {
    if (v == 0) v = 0; /* no "-0" */
    if (digits == 0 && v == floor(v) && fabs(v) < 1e9) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.*g", digits ? digits : 3, v);
}

typedef struct axis {
    double lo, hi;            /* shown range (log: powers of ten) */
    bool log;
    double step;              /* linear: tick spacing; log: decades between major ticks */
    int n;
    double tick[MAX_TICKS];
    int p0, p1;               /* pixels of lo and hi */
} axis;

/* Widens an empty or vanishing range [lo, hi] around its value. */
static void widen(double *lo, double *hi) {
    double m = fmax(fabs(*lo), fabs(*hi));
    if (*hi - *lo > 1e-9 * m && *hi > *lo) return;
    double d = m > 0 ? m * 0.1 : 0.5;
    *lo -= d;
    *hi += d;
}

/* Linear axis over [lo, hi] with ticks at multiples of a 1/2/5 x 10^k step (about target
 * of them); expand moves lo and hi out to ticks. integer: the step is at least 1. */
static void axis_linear(axis *a, double lo, double hi, bool expand, int target, bool integer) {
    widen(&lo, &hi);
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
    for (double k = ceil(lo / step - 1e-9); k <= k1 && a->n < MAX_TICKS; k++) {
        double t = k * step;
        a->tick[a->n++] = fabs(t) < step * 1e-9 ? 0 : t;
    }
}

/* Log axis over whole decades covering [lo, hi] (both usable on a log axis). */
static void axis_log(axis *a, double lo, double hi) {
    int e0 = (int)floor(log10(lo) + 1e-9), e1 = (int)ceil(log10(hi) - 1e-9);
    if (e1 <= e0) e1 = e0 + 1;
    int every = (e1 - e0 + 9) / 10;
    a->lo = pow(10, e0), a->hi = pow(10, e1), a->log = true, a->step = every, a->n = 0;
    for (int e = e0; e <= e1 && a->n < MAX_TICKS; e += every) a->tick[a->n++] = pow(10, e);
}

static double axis_frac(const axis *a, double v) {
    if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}

/* Pixel of a usable value (may lie outside [p0, p1] when v is outside the range). */
static int axis_px(const axis *a, double v) {
    double p = a->p0 + axis_frac(a, v) * (a->p1 - a->p0);
    if (!(p > -1e5)) p = -1e5;
    if (p > 1e5) p = 1e5;
    return (int)lround(p);
}

static void tick_label(const axis *a, double v, char *buf, size_t n) {
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

static int max_tick_label_w(const axis *a, int s) {
    int w = 0;
    char buf[48];
    for (int i = 0; i < a->n; i++) {
        tick_label(a, a->tick[i], buf, sizeof buf);
        int tw = text_w(buf, s, LABEL_MAX);
        if (tw > w) w = tw;
    }
    return w;
}

/* ---- colour maps ---- */

static rgb cmap_color(fig_cmap m, double t) {
    const rgb *tab = m == FIG_CMAP_DIVERGING ? RDBU : VIRIDIS;
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double pos = t * 8;
    int i = (int)pos;
    if (i > 7) i = 7;
    double f = pos - i;
    rgb a = tab[i], b = tab[i + 1];
    return (rgb){(uint8_t)(a.r + (b.r - a.r) * f + 0.5), (uint8_t)(a.g + (b.g - a.g) * f + 0.5),
                 (uint8_t)(a.b + (b.b - a.b) * f + 0.5)};
}

static rgb blend_over_white(rgb c, double a) {
    return (rgb){mix(255, c.r, a), mix(255, c.g, a), mix(255, c.b, a)};
}

static bool is_light(rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b > 140; }

/* ---- frame: title, legend, messages ---- */

/* Draws the title centred at the top; returns the first free row under it. */
static int draw_title(canvas *c, const char *title, int s) {
    if (!title || !*title) return 10;
    int ts = text_w(title, s + 1, 1000) <= c->w - 20 ? s + 1 : s;
    int max = fit_glyphs(ts, c->w - 20);
    text_at(c, title, c->w / 2, 10, 1, 0, ts, max, TEXT);
    return 10 + 7 * ts + 8;
}

static void draw_message(canvas *c, int top, const char *msg, int s) {
    text_at(c, msg, c->w / 2, (top + c->h) / 2, 1, 1, s, LABEL_MAX, TEXT);
}

typedef struct legend_entry {
    const char *label;
    rgb col;
    bool line;   /* line + marker swatch (else a filled box) */
    int marker;  /* -1: none */
} legend_entry;

static size_t series_count(const fig_chart *ch) {
    switch (ch->kind) {
    case FIG_BAR: return ch->bar.series_labels ? ch->bar.n_series : 0;
    case FIG_LINE: return ch->line.n_series;
    case FIG_HIST: return ch->hist.n_series;
    default: return 0;
    }
}

static bool legend_at(const fig_chart *ch, size_t i, legend_entry *e) {
    *e = (legend_entry){.col = PALETTE[i % 8], .marker = -1};
    if (ch->kind == FIG_BAR) {
        e->label = ch->bar.series_labels[i];
    } else if (ch->kind == FIG_LINE) {
        e->label = ch->line.series[i].label;
        e->line = true;
        e->marker = ch->line.no_markers ? -1 : (int)(i % 4);
    } else {
        e->label = ch->hist.series[i].label;
        if (!ch->hist.side_by_side && ch->hist.n_series > 1) e->col = blend_over_white(e->col, 0.5);
    }
    return e->label && *e->label;
}

/* Legend in rows (at most 4) centred under the title, inside a grey box. Returns the height
 * it takes (0 without labelled series); draws only when draw is set. */
static int legend(canvas *c, const fig_chart *ch, int top, int s, bool draw) {
    size_t n = series_count(ch);
    int sw = 4 * GLYPH_W * s, gap = 2 * GLYPH_W * s, lh = GLYPH_H * s + 4 * s, pad = 3 * s;
    int avail = c->w - 40 - 2 * pad, rows = 0, x = 0, widest = 0;
    int bx0 = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (!rows || !draw) break;
            bx0 = (c->w - widest) / 2 - pad;
            fill_rect(c, bx0, top, bx0 + widest + 2 * pad, top + rows * lh + 2 * pad, WHITE);
            outline(c, bx0, top, bx0 + widest + 2 * pad, top + rows * lh + 2 * pad, FRAME);
        }
        rows = 0, x = 0;
        for (size_t i = 0; i < n; i++) {
            legend_entry e;
            if (!legend_at(ch, i, &e)) continue;
            int max = fit_glyphs(s, avail - sw - pad);
            int w = sw + pad + text_w(e.label, s, max);
            if (rows == 0 || x + gap + w > avail) {
                if (rows == 4) break;
                rows++, x = 0;
            } else {
                x += gap;
            }
            if (pass == 1) {
                int ex = bx0 + pad + x, ey = top + pad + (rows - 1) * lh + lh / 2;
                if (e.line) {
                    fill_rect(c, ex, ey - s / 2, ex + sw, ey - s / 2 + s, e.col);
                    if (e.marker >= 0) draw_marker(c, ex + sw / 2, ey, 2 * s + 1, e.marker, e.col);
                } else {
                    fill_rect(c, ex + sw / 2 - 7 * s / 2, ey - 7 * s / 2, ex + sw / 2 + 7 * s / 2, ey + 7 * s / 2, e.col);
                }
                text_at(c, e.label, ex + sw + pad, ey, 0, 1, s, max, TEXT);
            }
            x += w;
            if (x > widest) widest = x;
        }
    }
    return rows ? rows * lh + 2 * pad + 8 : 0;
}

/* ---- xy charts (bar, line, histogram) ---- */

typedef struct xy {
    axis ax, ay;
    bool categorical;  /* bar chart: x is n_groups equal slots */
    size_t nbins;      /* histogram */
    double *counts;    /* histogram: n_series x nbins, counts or fractions */
    int x0, y0, x1, y1;
    int s;
} xy;

static const double *line_x(const fig_line *l, size_t i) { return l->series[i].x ? l->series[i].x : l->x; }

/* Sets the axis ranges from the data; *any = false when there is nothing to draw. */
static vkd_result xy_ranges(const fig_chart *ch, xy *q, bool *any, int tx, int ty, vkd_error *err) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    *any = false;
    if (ch->kind == FIG_BAR) {
        const fig_bar *b = &ch->bar;
        q->categorical = true;
        for (size_t i = 0; i < b->n_groups * b->n_series; i++) {
            double v = b->values[i];
            if (!usable(v, b->log_y)) continue;
            ylo = fmin(ylo, v), yhi = fmax(yhi, v), *any = true;
        }
        if (!*any) return VKD_OK;
        if (b->log_y) {
            if (b->annotate) yhi *= pow(10, 0.08 * (log10(yhi) - log10(ylo) + 1));
            axis_log(&q->ay, ylo, yhi);
        } else {
            ylo = fmin(ylo, 0), yhi = fmax(yhi, 0);
            double head = b->annotate ? 0.08 * (yhi - ylo) : 0;
            axis_linear(&q->ay, ylo < 0 ? ylo - head : ylo, yhi > 0 ? yhi + head : yhi, true, ty, false);
        }
    } else if (ch->kind == FIG_LINE) {
        const fig_line *l = &ch->line;
        bool integer = true;
        for (size_t i = 0; i < l->n_series; i++) {
            const double *xs = line_x(l, i);
            for (size_t k = 0; k < l->series[i].n; k++) {
                double x = xs ? xs[k] : (double)k, y = l->series[i].y[k];
                if (!usable(x, l->log_x) || !usable(y, l->log_y)) continue;
                xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
                integer = integer && x == floor(x);
                *any = true;
            }
        }
        if (!*any) return VKD_OK;
        if (l->log_x) axis_log(&q->ax, xlo, xhi);
        else axis_linear(&q->ax, xlo, xhi, true, tx, integer);
        if (l->log_y) axis_log(&q->ay, ylo, yhi);
        else axis_linear(&q->ay, ylo, yhi, true, ty, false);
    } else {
        const fig_hist *h = &ch->hist;
        for (size_t i = 0; i < h->n_series; i++)
            for (size_t k = 0; k < h->series[i].n; k++) {
                double v = h->series[i].y[k];
                if (usable(v, false)) xlo = fmin(xlo, v), xhi = fmax(xhi, v), *any = true;
            }
        if (!*any) return VKD_OK;
        if (usable(h->lo, false) && usable(h->hi, false) && h->lo < h->hi) xlo = h->lo, xhi = h->hi;
        widen(&xlo, &xhi);
        size_t nb = h->nbins ? h->nbins : 20, total;
        if (!vkd_mul_size(nb, h->n_series, &total))
            return vkd_fail(err, VKD_ERR_INVALID, "histogram: %zu series x %zu bins overflow", h->n_series, nb);
        q->nbins = nb;
        q->counts = calloc(total, sizeof *q->counts);
        if (!q->counts) return vkd_fail(err, VKD_ERR_NOMEM, "histogram: out of memory (%zu bins)", total);
        double top = 0;
        for (size_t i = 0; i < h->n_series; i++) {
            double *cnt = q->counts + i * nb, tot = 0;
            for (size_t k = 0; k < h->series[i].n; k++) {
                double v = h->series[i].y[k];
                if (!usable(v, false)) continue;
                double b = floor((v - xlo) / (xhi - xlo) * (double)nb);
                cnt[b < 0 ? 0 : b >= (double)nb ? nb - 1 : (size_t)b] += 1;
                tot += 1;
            }
            for (size_t b = 0; b < nb; b++) {
                if (h->fraction && tot > 0) cnt[b] /= tot;
                top = fmax(top, cnt[b]);
            }
        }
        axis_linear(&q->ax, xlo, xhi, false, tx, false);
        axis_linear(&q->ay, 0, top, true, ty, false);
    }
    return VKD_OK;
}

static void draw_bars(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_bar *b = &ch->bar;
    int W = q->x1 - q->x0;
    int base = b->log_y ? q->ay.p0 : axis_px(&q->ay, 0);
    for (size_t g = 0; g < b->n_groups; g++) {
        double slot0 = q->x0 + (double)W * (double)g / (double)b->n_groups, slot = (double)W / (double)b->n_groups;
        for (size_t s = 0; s < b->n_series; s++) {
            double v = b->values[s * b->n_groups + g];
            if (!usable(v, b->log_y)) continue;
            int xa = (int)lround(slot0 + slot * (0.1 + 0.8 * (double)s / (double)b->n_series));
            int xb = (int)lround(slot0 + slot * (0.1 + 0.8 * (double)(s + 1) / (double)b->n_series));
            if (xb <= xa) xb = xa + 1;
            int top = axis_px(&q->ay, v);
            fill_rect(c, xa, top < base ? top : base, xb, (top < base ? base : top) + 1, PALETTE[s % 8]);
            if (!b->annotate) continue;
            char buf[48];
            fmt_value(buf, sizeof buf, v, b->value_digits);
            int sc = q->s, room = (int)(slot * 0.8 / (double)b->n_series) + 2 * q->s;
            if (text_w(buf, sc, LABEL_MAX) > room) sc = 1;
            if (text_w(buf, sc, LABEL_MAX) > room) continue;
            int saved = c->cy0;
            c->cy0 = 0; /* annotations of the tallest bars may rise above the plot */
            bool up = top <= base;
            text_at(c, buf, (xa + xb) / 2, up ? top - 3 * sc : top + 3 * sc, 1, up ? 2 : 0, sc, LABEL_MAX, TEXT);
            c->cy0 = saved;
        }
    }
}

static void draw_lines(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_line *l = &ch->line;
    int th = q->s, r = 2 * q->s + 1;
    for (size_t i = 0; i < l->n_series; i++) {
        const double *xs = line_x(l, i);
        rgb col = PALETTE[i % 8];
        bool have = false;
        int px = 0, py = 0;
        for (size_t k = 0; k < l->series[i].n; k++) {
            double x = xs ? xs[k] : (double)k, y = l->series[i].y[k];
            if (!usable(x, l->log_x) || !usable(y, l->log_y)) {
                have = false;
                continue;
            }
            int nx = axis_px(&q->ax, x), ny = axis_px(&q->ay, y);
            if (have) draw_line(c, px, py, nx, ny, th, col);
            px = nx, py = ny, have = true;
        }
        if (l->no_markers) continue;
        for (size_t k = 0; k < l->series[i].n; k++) {
            double x = xs ? xs[k] : (double)k, y = l->series[i].y[k];
            if (usable(x, l->log_x) && usable(y, l->log_y))
                draw_marker(c, axis_px(&q->ax, x), axis_px(&q->ay, y), r, (int)(i % 4), col);
        }
    }
}

static void draw_hist(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_hist *h = &ch->hist;
    size_t nb = q->nbins, m = h->n_series;
    double lo = q->ax.lo, hi = q->ax.hi, alpha = !h->side_by_side && m > 1 ? 0.5 : 1;
    int base = axis_px(&q->ay, 0);
    for (size_t b = 0; b < nb; b++) {
        int xa = axis_px(&q->ax, lo + (hi - lo) * (double)b / (double)nb);
        int xb = axis_px(&q->ax, lo + (hi - lo) * (double)(b + 1) / (double)nb);
        if (xb - xa >= 4) xb--; /* a white gap between wide bins */
        if (xb <= xa) xb = xa + 1;
        for (size_t s = 0; s < m; s++) {
            double v = q->counts[s * nb + b];
            if (!(v > 0)) continue;
            int ya = xa, yb = xb;
            if (h->side_by_side) {
                double w = (xb - xa) * 0.9 / (double)m, x0 = xa + (xb - xa) * 0.05;
                ya = (int)lround(x0 + w * (double)s), yb = (int)lround(x0 + w * (double)(s + 1));
                if (yb <= ya) yb = ya + 1;
            }
            blend_rect(c, ya, axis_px(&q->ay, v), yb, base + 1, PALETTE[s % 8], alpha);
        }
    }
}

/* Axis lines, ticks, tick labels and axis titles around the plot rectangle. */
static void draw_axes(canvas *c, const fig_chart *ch, const xy *q) {
    int s = q->s;
    char buf[48];
    fill_rect(c, q->x0 - 1, q->y0, q->x0, q->y1 + 1, AXIS);
    fill_rect(c, q->x0 - 1, q->y1, q->x1, q->y1 + 1, AXIS);
    for (int i = 0; i < q->ay.n; i++) {
        int y = axis_px(&q->ay, q->ay.tick[i]);
        fill_rect(c, q->x0 - 1 - TICK, y, q->x0 - 1, y + 1, AXIS);
        tick_label(&q->ay, q->ay.tick[i], buf, sizeof buf);
        text_at(c, buf, q->x0 - 1 - TICK - 4, y, 2, 1, s, LABEL_MAX, TEXT);
    }
    const axis *a[2] = {&q->ay, q->categorical ? NULL : &q->ax};
    for (int k = 0; k < 2; k++) /* minor ticks at 2..9 x 10^e on log axes with few decades */
        if (a[k] && a[k]->log && a[k]->step == 1 && a[k]->n <= 9)
            for (int i = 0; i + 1 < a[k]->n; i++)
                for (int m = 2; m <= 9; m++) {
                    int p = axis_px(a[k], a[k]->tick[i] * m);
                    if (k == 0) fill_rect(c, q->x0 - 1 - MINOR_TICK, p, q->x0 - 1, p + 1, AXIS);
                    else fill_rect(c, p, q->y1 + 1, p + 1, q->y1 + 1 + MINOR_TICK, AXIS);
                }
    int ly = q->y1 + 1 + TICK + 4;
    if (q->categorical) {
        const fig_bar *b = &ch->bar;
        double slot = (double)(q->x1 - q->x0) / (double)b->n_groups;
        int sc = s, widest = 0;
        for (size_t g = 0; g < b->n_groups; g++) {
            const char *lab = b->group_labels ? b->group_labels[g] : NULL;
            if (!lab) snprintf(buf, sizeof buf, "%zu", g), lab = buf;
            int tw = text_w(lab, s, LABEL_MAX);
            if (tw > widest) widest = tw;
        }
        if (widest > slot - 4) sc = 1;
        size_t every = 1;
        while ((double)every * slot < 4 * GLYPH_W && every < b->n_groups) every++;
        for (size_t g = 0; g < b->n_groups; g += every) {
            const char *lab = b->group_labels ? b->group_labels[g] : NULL;
            if (!lab) snprintf(buf, sizeof buf, "%zu", g), lab = buf;
            int cx = (int)lround(q->x0 + slot * ((double)g + 0.5));
            text_at(c, lab, cx, ly, 1, 0, sc, fit_glyphs(sc, (int)(slot * (double)every) - 4), TEXT);
        }
    } else {
        int widest = max_tick_label_w(&q->ax, s);
        double spacing = q->ax.n > 1 ? fabs((double)axis_px(&q->ax, q->ax.tick[1]) - axis_px(&q->ax, q->ax.tick[0])) : 1e9;
        int every = 1;
        while (every < q->ax.n && every * spacing < widest + 2 * GLYPH_W * s) every++;
        for (int i = 0; i < q->ax.n; i++) {
            int x = axis_px(&q->ax, q->ax.tick[i]);
            fill_rect(c, x, q->y1 + 1, x + 1, q->y1 + 1 + TICK, AXIS);
            if (i % every) continue;
            tick_label(&q->ax, q->ax.tick[i], buf, sizeof buf);
            text_at(c, buf, x, ly, 1, 0, s, LABEL_MAX, TEXT);
        }
    }
    if (ch->xlabel && *ch->xlabel)
        text_at(c, ch->xlabel, (q->x0 + q->x1) / 2, c->h - 10, 1, 2, s, fit_glyphs(s, c->w - 20), TEXT);
    if (ch->ylabel && *ch->ylabel)
        text_up(c, ch->ylabel, 10, (q->y0 + q->y1) / 2, s, fit_glyphs(s, q->y1 - q->y0 + 40), TEXT);
}

static vkd_result render_xy(canvas *c, const fig_chart *ch, int s, vkd_error *err) {
    xy q = {.s = s};
    bool any;
    int tx = (c->w - 200) / 110, ty = (c->h - 180) / 70;
    vkd_result r = xy_ranges(ch, &q, &any, tx < 3 ? 3 : tx, ty < 3 ? 3 : ty, err);
    if (r != VKD_OK) return r;
    int top = draw_title(c, ch->title, s);
    if (!any) {
        draw_message(c, top, "no data", s);
        return VKD_OK;
    }
    int leg = legend(c, ch, top, s, false);
    bool has_xl = ch->xlabel && *ch->xlabel, has_yl = ch->ylabel && *ch->ylabel;
    q.y1 = c->h - 10 - (has_xl ? 7 * s + 8 : 0) - 7 * s - 4 - TICK - 1;
    if (q.y1 - (top + leg + 4 * s + 4) < 24) leg = 0; /* small figures lose their legend first */
    else legend(c, ch, top, s, true);
    q.y0 = top + leg + 4 * s + 4;
    q.x0 = 10 + (has_yl ? 7 * s + 8 : 0) + max_tick_label_w(&q.ay, s) + 4 + TICK + 1;
    q.x1 = c->w - 20;
    if (!q.categorical) {
        char buf[48];
        tick_label(&q.ax, q.ax.tick[q.ax.n ? q.ax.n - 1 : 0], buf, sizeof buf);
        int half = text_w(buf, s, LABEL_MAX) / 2 + 4;
        if (half > 20) q.x1 = c->w - half;
    }
    if (q.x1 - q.x0 < 24 || q.y1 - q.y0 < 24) {
        draw_message(c, top, "figure too small", 1);
        free(q.counts);
        return VKD_OK;
    }
    /* line markers at the ends of the range stay whole: the data span is inset */
    int inset = ch->kind != FIG_LINE ? 0 : ch->line.no_markers ? 2 : 2 * s + 4;
    q.ax.p0 = q.x0 + inset, q.ax.p1 = q.x1 - 1 - inset;
    q.ay.p0 = q.y1 - 1 - inset, q.ay.p1 = q.y0 + inset;
    for (int i = 0; i < q.ay.n; i++) {
        int y = axis_px(&q.ay, q.ay.tick[i]);
        fill_rect(c, q.x0, y, q.x1, y + 1, GRID);
    }
    if (!q.ay.log && q.ay.lo < 0 && q.ay.hi > 0) {
        int y = axis_px(&q.ay, 0);
        fill_rect(c, q.x0, y, q.x1, y + 1, ZERO_LINE);
    }
    clip_to(c, q.x0, q.y0, q.x1, q.y1);
    if (ch->kind == FIG_BAR) draw_bars(c, ch, &q);
    else if (ch->kind == FIG_LINE) draw_lines(c, ch, &q);
    else draw_hist(c, ch, &q);
    clip_to(c, 0, 0, c->w, c->h);
    draw_axes(c, ch, &q);
    free(q.counts);
    return VKD_OK;
}

/* ---- heatmap ---- */

static const char *index_label(const char *const *labels, size_t i, char *buf, size_t n) {
    if (labels && labels[i]) return labels[i];
    snprintf(buf, n, "%zu", i);
    return buf;
}

/* Smallest of 1, 2, 5, 10, 20, 50, ... that is >= k: label strides people can count in. */
static size_t nice_count(size_t k) {
    for (size_t m = 1; m < SIZE_MAX / 10; m *= 10)
        for (size_t f = 1; f <= 5; f += f == 1 ? 1 : 3)
            if (f * m >= k) return f * m;
    return k;
}

static void render_heatmap(canvas *c, const fig_chart *ch, int s) {
    const fig_heatmap *hm = &ch->heatmap;
    size_t R = hm->rows, C = hm->cols;
    char buf[48];
    int top = draw_title(c, ch->title, s);
    if (!R || !C) {
        draw_message(c, top, "no data", s);
        return;
    }
    /* colour range */
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < R * C; i++)
        if (usable(hm->values[i], false)) lo = fmin(lo, hm->values[i]), hi = fmax(hi, hm->values[i]);
    if (usable(hm->vmin, false) && usable(hm->vmax, false) && hm->vmin < hm->vmax) lo = hm->vmin, hi = hm->vmax;
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hm->cmap == FIG_CMAP_DIVERGING) {
        double m = fmax(fabs(lo), fabs(hi));
        lo = m > 0 ? -m : -1, hi = m > 0 ? m : 1;
    }
    widen(&lo, &hi);
    axis cb;
    axis_linear(&cb, lo, hi, false, 6, false);

    /* layout: row labels | cells | colour bar + tick labels + colour bar title */
    bool has_xl = ch->xlabel && *ch->xlabel, has_yl = ch->ylabel && *ch->ylabel;
    bool has_cl = hm->colorbar_label && *hm->colorbar_label;
    int right = 16 + 18 + 1 + TICK + 4 + max_tick_label_w(&cb, s) + (has_cl ? 8 + 7 * s : 0) + 10;
    int est_h = c->h - top - 80;
    int rs = (double)est_h / (double)R < GLYPH_H * s && (double)est_h / (double)R >= GLYPH_H ? 1 : s;
    int row_w = 0, col_w = 0, cs = s;
    for (size_t r = 0; r < R; r++) {
        int w = text_w(index_label(hm->row_labels, r, buf, sizeof buf), rs, 20);
        if (w > row_w) row_w = w;
        if (r > 4096) break; /* long lists: the first 4096 labels decide the margin */
    }
    int left = 10 + (has_yl ? 7 * s + 8 : 0) + row_w + 4 + TICK + 1;
    int W = c->w - left - right;
    if (W > 0 && (double)W / (double)C < GLYPH_H * s && (double)W / (double)C >= GLYPH_H) cs = 1;
    for (size_t k = 0; k < C && k <= 4096; k++) {
        int w = text_w(index_label(hm->col_labels, k, buf, sizeof buf), cs, 16);
        if (w > col_w) col_w = w;
    }
    double cell_w = W > 0 ? (double)W / (double)C : 1;
    size_t k_h = hm->col_label_every, k_v = hm->col_label_every;
    if (!k_h) {
        k_h = (size_t)ceil((col_w + GLYPH_W * cs) / cell_w);
        k_v = (size_t)ceil((GLYPH_H * cs + 2) / cell_w);
        k_h = nice_count(k_h), k_v = nice_count(k_v);
    }
    bool vertical = (k_v < k_h && col_w > 3 * GLYPH_W * cs) || (double)k_h * cell_w < col_w + GLYPH_W * cs;
    size_t kc = vertical ? k_v : k_h;
    if (kc < 1) kc = 1;
    int bottom = TICK + 4 + (vertical ? col_w : 7 * cs) + 8 + (has_xl ? 7 * s + 8 : 0) + 10;
    int x0 = left, x1 = c->w - right, y0 = top + 4 * s + 4, y1 = c->h - bottom;
    if (x1 - x0 < 8 || y1 - y0 < 8) {
        draw_message(c, top, "figure too small", 1);
        return;
    }
    W = x1 - x0;
    int H = y1 - y0;
    double cell_h = (double)H / (double)R;
    size_t kr = hm->row_label_every ? hm->row_label_every : nice_count((size_t)ceil((GLYPH_H * rs) / cell_h));
    if (kr < 1) kr = 1;

    /* cells */
    for (int y = y0; y < y1; y++) {
        size_t r = (size_t)(y - y0) * R / (size_t)H;
        for (int x = x0; x < x1; x++) {
            double v = hm->values[r * C + (size_t)(x - x0) * C / (size_t)W];
            rgb col = usable(v, false) ? cmap_color(hm->cmap, (v - lo) / (hi - lo)) : NAN_GREY;
            fill_rect(c, x, y, x + 1, y + 1, col);
        }
    }
    outline(c, x0, y0, x1, y1, AXIS);
    if (hm->annotate && R <= 256 && C <= 256) {
        for (size_t r = 0; r < R; r++)
            for (size_t k = 0; k < C; k++) {
                double v = hm->values[r * C + k];
                if (!usable(v, false)) continue;
                fmt_value(buf, sizeof buf, v, hm->value_digits);
                int sc = s;
                if (text_w(buf, sc, LABEL_MAX) > cell_w - 4 || 7 * sc > cell_h - 2) sc = 1;
                if (text_w(buf, sc, LABEL_MAX) > cell_w - 4 || 7 * sc > cell_h - 2) continue;
                rgb col = cmap_color(hm->cmap, (v - lo) / (hi - lo));
                int cx = x0 + (int)(((double)k + 0.5) * cell_w), cy = y0 + (int)(((double)r + 0.5) * cell_h);
                text_at(c, buf, cx, cy, 1, 1, sc, LABEL_MAX, is_light(col) ? TEXT : WHITE);
            }
    }
    /* row and column labels at the centres of every kr-th row / kc-th column */
    for (size_t r = 0; r < R; r += kr) {
        int cy = y0 + (int)(((double)r + 0.5) * cell_h);
        fill_rect(c, x0 - 1 - TICK, cy, x0 - 1, cy + 1, AXIS);
        text_at(c, index_label(hm->row_labels, r, buf, sizeof buf), x0 - 1 - TICK - 4, cy, 2, 1, rs, 20, TEXT);
    }
    for (size_t k = 0; k < C; k += kc) {
        int cx = x0 + (int)(((double)k + 0.5) * cell_w);
        const char *lab = index_label(hm->col_labels, k, buf, sizeof buf);
        fill_rect(c, cx, y1 + 1, cx + 1, y1 + 1 + TICK, AXIS);
        if (vertical) draw_text(c, cx - 7 * cs / 2, y1 + 1 + TICK + 4 + text_w(lab, cs, 16), lab, cs, 16, true, TEXT);
        else text_at(c, lab, cx, y1 + 1 + TICK + 4, 1, 0, cs, 16, TEXT);
    }
    /* colour bar: t runs from 0 at the bottom row to 1 at the top row */
    int bx0 = x1 + 16, bx1 = bx0 + 18;
    for (int y = y0; y < y1; y++)
        fill_rect(c, bx0, y, bx1, y + 1, cmap_color(hm->cmap, H > 1 ? (double)(y1 - 1 - y) / (H - 1) : 0.5));
    outline(c, bx0, y0, bx1, y1, AXIS);
    cb.p0 = y1 - 1, cb.p1 = y0;
    for (int i = 0; i < cb.n; i++) {
        int y = axis_px(&cb, cb.tick[i]);
        fill_rect(c, bx1 + 1, y, bx1 + 1 + TICK, y + 1, AXIS);
        tick_label(&cb, cb.tick[i], buf, sizeof buf);
        text_at(c, buf, bx1 + 1 + TICK + 4, y, 0, 1, s, LABEL_MAX, TEXT);
    }
    if (has_cl)
        text_up(c, hm->colorbar_label, c->w - 10 - 7 * s, (y0 + y1) / 2, s, fit_glyphs(s, H), TEXT);
    if (has_xl) text_at(c, ch->xlabel, (x0 + x1) / 2, c->h - 10, 1, 2, s, fit_glyphs(s, c->w - 20), TEXT);
    if (has_yl) text_up(c, ch->ylabel, 10, (y0 + y1) / 2, s, fit_glyphs(s, H + 40), TEXT);
}

/* ---- PNG ---- */

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Writes length and type in front of, and the CRC after, the len data bytes at p + 8. */
static uint8_t *finish_chunk(uint8_t *p, const char *type, uint32_t len) {
    put_u32(p, len);
    memcpy(p + 4, type, 4);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), p + 4, len + 4);
    put_u32(p + 8 + len, (uint32_t)crc);
    return p + 12 + len;
}

static vkd_result png_encode(const canvas *c, uint8_t **out, size_t *size, vkd_error *err) {
    size_t row = 1 + (size_t)c->w * 3, raw_n = row * (size_t)c->h;
    uint8_t *raw = malloc(raw_n);
    if (!raw) return vkd_fail(err, VKD_ERR_NOMEM, "png: out of memory (%zu bytes)", raw_n);
    for (int y = 0; y < c->h; y++) {
        raw[(size_t)y * row] = 0; /* filter type None */
        memcpy(raw + (size_t)y * row + 1, c->px + (size_t)y * (size_t)c->w * 3, (size_t)c->w * 3);
    }
    uLong bound = compressBound((uLong)raw_n);
    size_t cap = 8 + 25 + 12 + (size_t)bound + 12;
    uint8_t *png = malloc(cap);
    if (!png) {
        free(raw);
        return vkd_fail(err, VKD_ERR_NOMEM, "png: out of memory (%zu bytes)", cap);
    }
    uLongf zn = bound;
    int zr = compress2(png + 8 + 25 + 8, &zn, raw, (uLong)raw_n, 6);
    free(raw);
    if (zr != Z_OK || zn > UINT32_MAX) {
        free(png);
        return vkd_fail(err, VKD_ERR_NOMEM, "png: zlib compress2 failed (%d)", zr);
    }
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(png, sig, 8);
    uint8_t *p = png + 8;
    put_u32(p + 8, (uint32_t)c->w);
    put_u32(p + 12, (uint32_t)c->h);
    p[16] = 8, p[17] = 2, p[18] = 0, p[19] = 0, p[20] = 0; /* 8-bit RGB, deflate, filter 0, no interlace */
    p = finish_chunk(p, "IHDR", 13);
    p = finish_chunk(p, "IDAT", (uint32_t)zn);
    p = finish_chunk(p, "IEND", 0);
    *out = png;
    *size = (size_t)(p - png);
    return VKD_OK;
}

/* ---- public ---- */

static vkd_result check_chart(const fig_chart *ch, vkd_error *err) {
    if ((ch->width && (ch->width < 160 || ch->width > 8192)) || (ch->height && (ch->height < 120 || ch->height > 8192)))
        return vkd_fail(err, VKD_ERR_INVALID, "figure: size %d x %d out of range (160 x 120 .. 8192 x 8192)",
                        ch->width, ch->height);
    if (ch->font_scale < 0 || ch->font_scale > 8)
        return vkd_fail(err, VKD_ERR_INVALID, "figure: font_scale %d out of range 0..8", ch->font_scale);
    size_t n;
    switch (ch->kind) {
    case FIG_BAR:
        if (!vkd_mul_size(ch->bar.n_groups, ch->bar.n_series, &n) || n > SIZE_MAX / sizeof(double))
            return vkd_fail(err, VKD_ERR_INVALID, "bar chart: %zu groups x %zu series overflow", ch->bar.n_groups,
                            ch->bar.n_series);
        if (n && !ch->bar.values) return vkd_fail(err, VKD_ERR_INVALID, "bar chart: values is NULL");
        if (ch->bar.value_digits < 0 || ch->bar.value_digits > 17)
            return vkd_fail(err, VKD_ERR_INVALID, "bar chart: value_digits %d out of range 0..17", ch->bar.value_digits);
        return VKD_OK;
    case FIG_LINE:
    case FIG_HIST: {
        size_t ns = ch->kind == FIG_LINE ? ch->line.n_series : ch->hist.n_series;
        const fig_series *se = ch->kind == FIG_LINE ? ch->line.series : ch->hist.series;
        const char *what = ch->kind == FIG_LINE ? "line chart" : "histogram";
        if (ns && !se) return vkd_fail(err, VKD_ERR_INVALID, "%s: series is NULL", what);
        for (size_t i = 0; i < ns; i++)
            if (se[i].n && !se[i].y) return vkd_fail(err, VKD_ERR_INVALID, "%s: series %zu: y is NULL", what, i);
        if (ch->kind == FIG_HIST && ch->hist.nbins > 65536)
            return vkd_fail(err, VKD_ERR_INVALID, "histogram: %zu bins (at most 65536)", ch->hist.nbins);
        return VKD_OK;
    }
    case FIG_HEATMAP:
        if (!vkd_mul_size(ch->heatmap.rows, ch->heatmap.cols, &n) || n > SIZE_MAX / sizeof(double))
            return vkd_fail(err, VKD_ERR_INVALID, "heatmap: %zu x %zu overflow", ch->heatmap.rows, ch->heatmap.cols);
        if (n && !ch->heatmap.values) return vkd_fail(err, VKD_ERR_INVALID, "heatmap: values is NULL");
        if ((unsigned)ch->heatmap.cmap > FIG_CMAP_DIVERGING)
            return vkd_fail(err, VKD_ERR_INVALID, "heatmap: unknown colour map %d", (int)ch->heatmap.cmap);
        if (ch->heatmap.value_digits < 0 || ch->heatmap.value_digits > 17)
            return vkd_fail(err, VKD_ERR_INVALID, "heatmap: value_digits %d out of range 0..17",
                            ch->heatmap.value_digits);
        return VKD_OK;
    }
    return vkd_fail(err, VKD_ERR_INVALID, "figure: unknown chart kind %d", (int)ch->kind);
}

vkd_result fig_render_png(const fig_chart *ch, uint8_t **png, size_t *size, vkd_error *err) {
    if (png) *png = NULL;
    if (size) *size = 0;
    if (!ch || !png || !size) return vkd_fail(err, VKD_ERR_INVALID, "figure: NULL argument");
    vkd_result r = check_chart(ch, err);
    if (r != VKD_OK) return r;
    canvas c = {.w = ch->width ? ch->width : DEFAULT_W, .h = ch->height ? ch->height : DEFAULT_H};
    int s = ch->font_scale ? ch->font_scale : c.w >= 600 && c.h >= 360 ? 2 : 1;
    size_t n = (size_t)c.w * (size_t)c.h * 3;
    c.px = malloc(n);
    if (!c.px) return vkd_fail(err, VKD_ERR_NOMEM, "figure: out of memory (%d x %d canvas)", c.w, c.h);
    memset(c.px, 255, n);
    clip_to(&c, 0, 0, c.w, c.h);
    if (ch->kind == FIG_HEATMAP) render_heatmap(&c, ch, s);
    else r = render_xy(&c, ch, s, err);
    if (r == VKD_OK) r = png_encode(&c, png, size, err);
    free(c.px);
    return r;
}

vkd_result fig_write_png(const fig_chart *ch, const char *path, vkd_error *err) {
    if (!path) return vkd_fail(err, VKD_ERR_INVALID, "figure: NULL path");
    uint8_t *png;
    size_t n;
    vkd_result r = fig_render_png(ch, &png, &n, err);
    if (r != VKD_OK) {
        if (err) vkd_error_prefix(err, "%s", path);
        return r;
    }
    r = cli_write_atomic(path, png, n, err);
    free(png);
    return r;
}
