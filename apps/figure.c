/* figure.c: bar, line, histogram and heatmap charts drawn with cairo onto a PNG image, a PDF
 * page or an SVG document. Semantics and layout rules are in figure.h. */
#include "figure.h"

#include "cli.h"
#include "figure_axis.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_W 900
#define DEFAULT_H 560
#define LABEL_MAX 200  /* bytes of any one label kept before measuring */
#define TICK 6
#define MINOR_TICK 3
#define PT_PER_PX 0.75
#define FONT "DejaVu Sans"

typedef struct rgb { uint8_t r, g, b; } rgb;

static const rgb WHITE = {255, 255, 255}, TEXT = {17, 17, 17}, AXIS = {51, 51, 51},
                 GRID = {229, 229, 229}, NAN_GREY = {211, 211, 211}, FRAME = {170, 170, 170},
                 ZERO_LINE = {150, 150, 150}, ERRBAR = {0, 0, 0};

/* Okabe-Ito, ordered so the first few are the most distinct on white. */
static const rgb PALETTE[8] = {{0, 114, 178},  {213, 94, 0},    {0, 158, 115}, {230, 159, 0},
                               {86, 180, 233}, {204, 121, 167}, {240, 228, 66}, {0, 0, 0}};
static const rgb VIRIDIS[9] = {{68, 1, 84},   {71, 45, 123},  {59, 82, 139},  {44, 114, 142}, {33, 144, 140},
                               {39, 173, 129}, {93, 200, 99}, {170, 220, 50}, {253, 231, 37}};
static const rgb RDBU[9] = {{33, 102, 172}, {67, 147, 195}, {146, 197, 222}, {209, 229, 240}, {247, 247, 247},
                            {253, 219, 199}, {244, 165, 130}, {214, 96, 77},  {178, 24, 43}};

/* ---- drawing context ---- */

typedef struct canvas {
    cairo_t *cr;
    int w, h;       /* pixels */
    int s;          /* font scale */
    double fs;      /* text size in px: 6 * s + 1 */
} canvas;

static void set_col(canvas *c, rgb col, double alpha) {
    cairo_set_source_rgba(c->cr, col.r / 255.0, col.g / 255.0, col.b / 255.0, alpha);
}

/* Fills [x0, x1) x [y0, y1) on whole pixels (no antialiasing); alpha < 1 blends. */
static void blend_rect(canvas *c, double x0, double y0, double x1, double y1, rgb col, double alpha) {
    if (x1 <= x0 || y1 <= y0) return;
    cairo_save(c->cr);
    cairo_set_antialias(c->cr, CAIRO_ANTIALIAS_NONE);
    set_col(c, col, alpha);
    cairo_rectangle(c->cr, x0, y0, x1 - x0, y1 - y0);
    cairo_fill(c->cr);
    cairo_restore(c->cr);
}
static void fill_rect(canvas *c, double x0, double y0, double x1, double y1, rgb col) {
    blend_rect(c, x0, y0, x1, y1, col, 1);
}

/* Rectangle outline, 1 px, around [x0, x1) x [y0, y1) (drawn just outside it). */
static void outline(canvas *c, int x0, int y0, int x1, int y1, rgb col) {
    fill_rect(c, x0 - 1, y0 - 1, x1 + 1, y0, col);
    fill_rect(c, x0 - 1, y1, x1 + 1, y1 + 1, col);
    fill_rect(c, x0 - 1, y0, x0, y1, col);
    fill_rect(c, x1, y0, x1 + 1, y1, col);
}

static void clip_to(canvas *c, int x0, int y0, int x1, int y1) {
    cairo_save(c->cr);
    cairo_rectangle(c->cr, x0, y0, x1 - x0, y1 - y0);
    cairo_clip(c->cr);
}
static void unclip(canvas *c) { cairo_restore(c->cr); }

/* Filled marker of radius r centred on (x, y): 0 circle, 1 square, 2 diamond, 3 triangle. */
static void draw_marker(canvas *c, double x, double y, double r, int shape, rgb col) {
    cairo_t *cr = c->cr;
    set_col(c, col, 1);
    if (shape == 0) {
        cairo_arc(cr, x, y, r, 0, 2 * M_PI);
    } else if (shape == 1) {
        cairo_rectangle(cr, x - r, y - r, 2 * r, 2 * r);
    } else if (shape == 2) {
        cairo_move_to(cr, x, y - r * 1.3), cairo_line_to(cr, x + r * 1.3, y);
        cairo_line_to(cr, x, y + r * 1.3), cairo_line_to(cr, x - r * 1.3, y);
        cairo_close_path(cr);
    } else {
        cairo_move_to(cr, x, y - r * 1.2), cairo_line_to(cr, x + r * 1.2, y + r);
        cairo_line_to(cr, x - r * 1.2, y + r);
        cairo_close_path(cr);
    }
    cairo_fill(cr);
}

/* Vertical error bar from row ya to row yb at column x (whole pixels), caps half-width cap. */
static void error_bar(canvas *c, int x, int ya, int yb, int cap) {
    int th = c->s > 2 ? c->s / 2 : 1, lo = ya < yb ? ya : yb, hi = ya < yb ? yb : ya;
    fill_rect(c, x - th / 2, lo, x - th / 2 + th, hi + 1, ERRBAR);
    fill_rect(c, x - cap, ya - th / 2, x + cap + 1, ya - th / 2 + th, ERRBAR);
    fill_rect(c, x - cap, yb - th / 2, x + cap + 1, yb - th / 2 + th, ERRBAR);
}

/* ---- text ---- */

/* Copies s into out (cap bytes) as valid UTF-8: a byte that does not start a well-formed
 * sequence becomes U+FFFD; at most LABEL_MAX input bytes are read. */
static void sanitize(const char *s, char *out, size_t cap) {
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (size_t i = 0; p[i] && i < LABEL_MAX && o + 4 < cap;) {
        unsigned ch = p[i];
        size_t len = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && !(ch >= 0xC0 && ch <= 0xC1) && ch <= 0xF4;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len == 3 && ((ch == 0xE0 && p[i + 1] < 0xA0) || (ch == 0xED && p[i + 1] >= 0xA0))) ok = false;
        if (ok && len == 4 && ((ch == 0xF0 && p[i + 1] < 0x90) || (ch == 0xF4 && p[i + 1] >= 0x90))) ok = false;
        if (ok && len == 1 && ch < 32) ch = ' ', ok = true;
        if (!ok) {
            memcpy(out + o, "\xEF\xBF\xBD", 3), o += 3, i++;
            continue;
        }
        if (len == 1) out[o++] = (char)ch;
        else memcpy(out + o, p + i, len), o += len;
        i += len;
    }
    out[o] = 0;
}

static void set_font(canvas *c, double size, bool bold) {
    cairo_select_font_face(c->cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c->cr, size);
}

static double text_w(canvas *c, const char *s, double size, bool bold) {
    if (!s || !*s) return 0;
    char buf[4 * LABEL_MAX + 8];
    sanitize(s, buf, sizeof buf);
    set_font(c, size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(c->cr, buf, &e);
    return e.x_advance;
}

/* s as valid UTF-8 cut to at most maxw px (ending in an ellipsis when cut) into out. */
static void fit(canvas *c, const char *s, double size, bool bold, double maxw, char *out, size_t cap) {
    sanitize(s, out, cap);
    set_font(c, size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(c->cr, out, &e);
    if (e.x_advance <= maxw) return;
    size_t n = strlen(out);
    while (n > 0) {
        do n--; while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80);
        memcpy(out + n, "\xE2\x80\xA6", 4); /* ellipsis and the terminator */
        cairo_text_extents(c->cr, out, &e);
        if (e.x_advance <= maxw) return;
    }
    out[0] = 0;
}

/* Draws s (cut to maxw px) aligned on (x, y): ha 0/1/2 = left/centre/right, va 0/1/2 =
 * top/middle/bottom of the font's ascent..descent box. up: rotated a quarter turn
 * anticlockwise (reads bottom to top), aligned the same way in its own frame. */
static void text_at(canvas *c, const char *s, double x, double y, int ha, int va, double size, double maxw,
                    bool bold, bool up, rgb col) {
    if (!s || !*s || maxw <= 0) return;
    char buf[4 * LABEL_MAX + 8];
    fit(c, s, size, bold, maxw, buf, sizeof buf);
    if (!buf[0]) return;
    cairo_text_extents_t e;
    cairo_font_extents_t fe;
    cairo_text_extents(c->cr, buf, &e);
    cairo_font_extents(c->cr, &fe);
    double dx = -e.x_advance * ha / 2.0;
    double asc = fe.ascent, desc = fe.descent;
    double dy = va == 0 ? asc : va == 1 ? (asc - desc) / 2 : -desc;
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    if (up) cairo_rotate(c->cr, -M_PI / 2);
    cairo_move_to(c->cr, dx, dy);
    set_col(c, col, 1);
    cairo_show_text(c->cr, buf);
    cairo_restore(c->cr);
}

/* Height of a line of text at size (ascent + descent). */
static double line_h(canvas *c, double size) {
    set_font(c, size, false);
    cairo_font_extents_t fe;
    cairo_font_extents(c->cr, &fe);
    return fe.ascent + fe.descent;
}

static int max_tick_label_w(canvas *c, const fig_axis *a) {
    double w = 0;
    char buf[48];
    for (int i = 0; i < a->n; i++) {
        fig_tick_label(a, a->tick[i], buf, sizeof buf);
        double tw = text_w(c, buf, c->fs, false);
        if (tw > w) w = tw;
    }
    return (int)ceil(w);
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

static bool is_light(rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b > 140; }

/* ---- frame: title, legend, messages ---- */

/* Draws the title centred at the top; returns the first free row under it. */
static int draw_title(canvas *c, const char *title) {
    if (!title || !*title) return 10;
    double ts = c->fs * 1.25;
    text_at(c, title, c->w / 2.0, 8, 1, 0, ts, c->w - 16, true, false, TEXT);
    return 8 + (int)ceil(line_h(c, ts)) + 6;
}

static void draw_message(canvas *c, int top, const char *msg) {
    text_at(c, msg, c->w / 2.0, (top + c->h) / 2.0, 1, 1, c->fs, c->w - 16, false, false, TEXT);
}

typedef struct legend_entry {
    char label[4 * LABEL_MAX + 32];
    rgb col;
    double alpha;
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
    *e = (legend_entry){.col = PALETTE[i % 8], .alpha = 1, .marker = -1};
    const char *lab;
    if (ch->kind == FIG_BAR) {
        lab = ch->bar.series_labels[i];
    } else if (ch->kind == FIG_LINE) {
        lab = ch->line.series[i].label;
        e->line = true;
        e->marker = ch->line.no_markers ? -1 : (int)(i % 4);
    } else {
        lab = ch->hist.series[i].label;
        if (!ch->hist.side_by_side && ch->hist.n_series > 1) e->alpha = 0.5;
    }
    if (!lab || !*lab) return false;
    sanitize(lab, e->label, sizeof e->label - 32);
    if (ch->kind == FIG_HIST) {
        size_t k = 0;
        for (size_t j = 0; j < ch->hist.series[i].n; j++) k += fig_usable(ch->hist.series[i].y[j], false);
        size_t len = strlen(e->label);
        snprintf(e->label + len, sizeof e->label - len, " (n=%zu)", k);
    }
    return true;
}

/* Legend in rows (at most 4) centred under the title, inside a grey box. Returns the height
 * it takes (0 without labelled series); draws only when draw is set. */
static int legend(canvas *c, const fig_chart *ch, int top, bool draw) {
    size_t n = series_count(ch);
    double fs = c->fs, sw = 2.2 * fs, gap = 1.2 * fs, pad = 0.4 * fs, lh = ceil(line_h(c, fs) + 0.3 * fs);
    double avail = c->w - 40 - 2 * pad, x = 0, widest = 0, bx0 = 0;
    int rows = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (!rows || !draw) break;
            bx0 = floor((c->w - widest) / 2 - pad);
            int bx1 = (int)ceil(bx0 + widest + 2 * pad), by1 = (int)(top + rows * lh + 2 * pad);
            fill_rect(c, bx0, top, bx1, by1, WHITE);
            outline(c, (int)bx0, top, bx1, by1, FRAME);
        }
        rows = 0, x = 0;
        for (size_t i = 0; i < n; i++) {
            legend_entry e;
            if (!legend_at(ch, i, &e)) continue;
            double tw = fmin(text_w(c, e.label, fs, false), avail - sw - pad), w = sw + pad + tw;
            if (rows == 0 || x + gap + w > avail) {
                if (rows == 4) break;
                rows++, x = 0;
            } else {
                x += gap;
            }
            if (pass == 1) {
                double ex = bx0 + pad + x, ey = top + pad + (rows - 1) * lh + lh / 2;
                if (e.line) {
                    cairo_save(c->cr);
                    set_col(c, e.col, 1);
                    cairo_set_line_width(c->cr, c->s);
                    cairo_move_to(c->cr, ex, ey), cairo_line_to(c->cr, ex + sw, ey);
                    cairo_stroke(c->cr);
                    cairo_restore(c->cr);
                    if (e.marker >= 0) draw_marker(c, ex + sw / 2, ey, 1.5 * c->s + 1, e.marker, e.col);
                } else {
                    double hb = 0.35 * fs;
                    blend_rect(c, round(ex + sw / 2 - hb), round(ey - hb), round(ex + sw / 2 + hb), round(ey + hb),
                               e.col, e.alpha);
                }
                text_at(c, e.label, ex + sw + pad, ey, 0, 1, fs, tw + 1, false, false, TEXT);
            }
            x += w;
            if (x > widest) widest = x;
        }
    }
    return rows ? (int)(rows * lh + 2 * pad) + 8 : 0;
}

/* ---- xy charts (bar, line, histogram) ---- */

typedef struct xy {
    fig_axis ax, ay;
    bool categorical;  /* bar chart: x is n_groups equal slots */
    size_t nbins;      /* histogram */
    double *counts;    /* histogram: n_series x nbins, counts or fractions */
    int x0, y0, x1, y1;
} xy;

static const double *line_x(const fig_line *l, size_t i) { return l->series[i].x ? l->series[i].x : l->x; }

static void extend(double v, bool log, double *lo, double *hi) {
    if (fig_usable(v, log)) *lo = fmin(*lo, v), *hi = fmax(*hi, v);
}

/* Sets the axis ranges from the data (error bar ends included); *any = false when there is
 * nothing to draw. */
static vkd_result xy_ranges(const fig_chart *ch, xy *q, bool *any, int tx, int ty, vkd_error *err) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    *any = false;
    if (ch->kind == FIG_BAR) {
        const fig_bar *b = &ch->bar;
        q->categorical = true;
        for (size_t i = 0; i < b->n_groups * b->n_series; i++) {
            double v = b->values[i];
            if (!fig_usable(v, b->log_y)) continue;
            ylo = fmin(ylo, v), yhi = fmax(yhi, v), *any = true;
            if (b->err_lo && b->err_hi) extend(b->err_lo[i], b->log_y, &ylo, &yhi), extend(b->err_hi[i], b->log_y, &ylo, &yhi);
        }
        if (!*any) return VKD_OK;
        if (b->log_y) {
            if (b->annotate) yhi *= pow(10, 0.08 * (log10(yhi) - log10(ylo) + 1));
            fig_axis_log(&q->ay, ylo, yhi);
        } else {
            ylo = fmin(ylo, 0), yhi = fmax(yhi, 0);
            double head = b->annotate ? 0.08 * (yhi - ylo) : 0;
            fig_axis_linear(&q->ay, ylo < 0 ? ylo - head : ylo, yhi > 0 ? yhi + head : yhi, true, ty, false);
        }
    } else if (ch->kind == FIG_LINE) {
        const fig_line *l = &ch->line;
        bool integer = true;
        for (size_t i = 0; i < l->n_series; i++) {
            const double *xs = line_x(l, i);
            const fig_series *se = &l->series[i];
            for (size_t k = 0; k < se->n; k++) {
                double x = xs ? xs[k] : (double)k, y = se->y[k];
                if (!fig_usable(x, l->log_x) || !fig_usable(y, l->log_y)) continue;
                xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
                if (se->lo && se->hi) extend(se->lo[k], l->log_y, &ylo, &yhi), extend(se->hi[k], l->log_y, &ylo, &yhi);
                integer = integer && x == floor(x);
                *any = true;
            }
        }
        if (!*any) return VKD_OK;
        if (l->log_x) fig_axis_log(&q->ax, xlo, xhi);
        else fig_axis_linear(&q->ax, xlo, xhi, true, tx, integer);
        if (l->log_y) fig_axis_log(&q->ay, ylo, yhi);
        else fig_axis_linear(&q->ay, ylo, yhi, true, ty, false);
    } else {
        const fig_hist *h = &ch->hist;
        for (size_t i = 0; i < h->n_series; i++)
            for (size_t k = 0; k < h->series[i].n; k++) {
                double v = h->series[i].y[k];
                if (fig_usable(v, false)) xlo = fmin(xlo, v), xhi = fmax(xhi, v), *any = true;
            }
        if (!*any) return VKD_OK;
        if (fig_usable(h->lo, false) && fig_usable(h->hi, false) && h->lo < h->hi) xlo = h->lo, xhi = h->hi;
        fig_widen(&xlo, &xhi);
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
                if (!fig_usable(v, false)) continue;
                double b = floor((v - xlo) / (xhi - xlo) * (double)nb);
                cnt[b < 0 ? 0 : b >= (double)nb ? nb - 1 : (size_t)b] += 1;
                tot += 1;
            }
            for (size_t b = 0; b < nb; b++) {
                if (h->fraction && tot > 0) cnt[b] /= tot;
                top = fmax(top, cnt[b]);
            }
        }
        fig_axis_linear(&q->ax, xlo, xhi, false, tx, false);
        fig_axis_linear(&q->ay, 0, top, true, ty, false);
    }
    return VKD_OK;
}

static void draw_bars(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_bar *b = &ch->bar;
    int W = q->x1 - q->x0;
    int base = b->log_y ? q->ay.p0 : fig_axis_px(&q->ay, 0);
    for (size_t g = 0; g < b->n_groups; g++) {
        double slot0 = q->x0 + (double)W * (double)g / (double)b->n_groups, slot = (double)W / (double)b->n_groups;
        for (size_t s = 0; s < b->n_series; s++) {
            size_t i = s * b->n_groups + g;
            double v = b->values[i];
            if (!fig_usable(v, b->log_y)) continue;
            int xa = (int)lround(slot0 + slot * (0.1 + 0.8 * (double)s / (double)b->n_series));
            int xb = (int)lround(slot0 + slot * (0.1 + 0.8 * (double)(s + 1) / (double)b->n_series));
            if (xb <= xa) xb = xa + 1;
            int top = fig_axis_px(&q->ay, v), mark = top;
            fill_rect(c, xa, top < base ? top : base, xb, (top < base ? base : top) + 1, PALETTE[s % 8]);
            if (b->err_lo && b->err_hi && fig_usable(b->err_lo[i], b->log_y) && fig_usable(b->err_hi[i], b->log_y)) {
                int ya = fig_axis_px(&q->ay, b->err_lo[i]), yb = fig_axis_px(&q->ay, b->err_hi[i]);
                int cap = (xb - xa) / 4 < 4 * c->s ? (xb - xa) / 4 : 4 * c->s;
                error_bar(c, (xa + xb) / 2, ya, yb, cap);
                mark = top <= base ? (ya < yb ? (ya < top ? ya : top) : (yb < top ? yb : top))
                                   : (ya > yb ? (ya > top ? ya : top) : (yb > top ? yb : top));
            }
            if (!b->annotate) continue;
            char buf[48];
            fig_fmt_value(buf, sizeof buf, v, b->value_digits);
            double size = c->fs, room = slot * 0.8 / (double)b->n_series + 0.3 * c->fs;
            if (text_w(c, buf, size, false) > room) size = c->fs * 0.75;
            if (text_w(c, buf, size, false) > room) continue;
            cairo_reset_clip(c->cr); /* annotations of the tallest bars may rise above the plot */
            bool up = top <= base;
            text_at(c, buf, (xa + xb) / 2.0, up ? mark - 3 : mark + 3, 1, up ? 2 : 0, size, room, false, false, TEXT);
            cairo_rectangle(c->cr, q->x0, q->y0, q->x1 - q->x0, q->y1 - q->y0);
            cairo_clip(c->cr);
        }
    }
}

static void draw_lines(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_line *l = &ch->line;
    double r = 1.5 * c->s + 1;
    for (size_t i = 0; i < l->n_series; i++) {
        const fig_series *se = &l->series[i];
        const double *xs = line_x(l, i);
        rgb col = PALETTE[i % 8];
        bool have = false;
        cairo_save(c->cr);
        set_col(c, col, 1);
        cairo_set_line_width(c->cr, c->s);
        cairo_set_line_join(c->cr, CAIRO_LINE_JOIN_ROUND);
        for (size_t k = 0; k < se->n; k++) {
            double x = xs ? xs[k] : (double)k, y = se->y[k];
            if (!fig_usable(x, l->log_x) || !fig_usable(y, l->log_y)) {
                if (have) cairo_stroke(c->cr);
                have = false;
                continue;
            }
            double px = fig_axis_px(&q->ax, x) + 0.5, py = fig_axis_px(&q->ay, y) + 0.5;
            if (have) cairo_line_to(c->cr, px, py);
            else cairo_move_to(c->cr, px, py);
            have = true;
        }
        if (have) cairo_stroke(c->cr);
        cairo_restore(c->cr);
        for (size_t k = 0; se->lo && se->hi && k < se->n; k++) {
            double x = xs ? xs[k] : (double)k;
            if (fig_usable(x, l->log_x) && fig_usable(se->y[k], l->log_y) && fig_usable(se->lo[k], l->log_y) &&
                fig_usable(se->hi[k], l->log_y))
                error_bar(c, fig_axis_px(&q->ax, x), fig_axis_px(&q->ay, se->lo[k]), fig_axis_px(&q->ay, se->hi[k]), 3 * c->s);
        }
        if (l->no_markers) continue;
        for (size_t k = 0; k < se->n; k++) {
            double x = xs ? xs[k] : (double)k, y = se->y[k];
            if (fig_usable(x, l->log_x) && fig_usable(y, l->log_y))
                draw_marker(c, fig_axis_px(&q->ax, x) + 0.5, fig_axis_px(&q->ay, y) + 0.5, r, (int)(i % 4), col);
        }
    }
}

static void draw_hist(canvas *c, const fig_chart *ch, const xy *q) {
    const fig_hist *h = &ch->hist;
    size_t nb = q->nbins, m = h->n_series;
    double lo = q->ax.lo, hi = q->ax.hi, alpha = !h->side_by_side && m > 1 ? 0.5 : 1;
    int base = fig_axis_px(&q->ay, 0);
    for (size_t b = 0; b < nb; b++) {
        int xa = fig_axis_px(&q->ax, lo + (hi - lo) * (double)b / (double)nb);
        int xb = fig_axis_px(&q->ax, lo + (hi - lo) * (double)(b + 1) / (double)nb);
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
            blend_rect(c, ya, fig_axis_px(&q->ay, v), yb, base + 1, PALETTE[s % 8], alpha);
        }
    }
}

/* "n=K" text of a bar count (empty when not a usable count). */
static void count_text(double n, char *buf, size_t cap) {
    buf[0] = 0;
    if (isfinite(n) && n >= 0 && n < 1e15) snprintf(buf, cap, "n=%.0f", n);
}

/* Axis lines, ticks, tick labels and axis titles around the plot rectangle. */
static void draw_axes(canvas *c, const fig_chart *ch, const xy *q) {
    char buf[48];
    double fs = c->fs, lh = line_h(c, fs);
    fill_rect(c, q->x0 - 1, q->y0, q->x0, q->y1 + 1, AXIS);
    fill_rect(c, q->x0 - 1, q->y1, q->x1, q->y1 + 1, AXIS);
    for (int i = 0; i < q->ay.n; i++) {
        int y = fig_axis_px(&q->ay, q->ay.tick[i]);
        fill_rect(c, q->x0 - 1 - TICK, y, q->x0 - 1, y + 1, AXIS);
        fig_tick_label(&q->ay, q->ay.tick[i], buf, sizeof buf);
        text_at(c, buf, q->x0 - 1 - TICK - 4, y + 0.5, 2, 1, fs, q->x0, false, false, TEXT);
    }
    const fig_axis *a[2] = {&q->ay, q->categorical ? NULL : &q->ax};
    for (int k = 0; k < 2; k++) /* minor ticks at 2..9 x 10^e on log axes with few decades */
        if (a[k] && a[k]->log && a[k]->step == 1 && a[k]->n <= 9)
            for (int i = 0; i + 1 < a[k]->n; i++)
                for (int m = 2; m <= 9; m++) {
                    int p = fig_axis_px(a[k], a[k]->tick[i] * m);
                    if (k == 0) fill_rect(c, q->x0 - 1 - MINOR_TICK, p, q->x0 - 1, p + 1, AXIS);
                    else fill_rect(c, p, q->y1 + 1, p + 1, q->y1 + 1 + MINOR_TICK, AXIS);
                }
    double ly = q->y1 + 1 + TICK + 3;
    if (q->categorical) {
        const fig_bar *b = &ch->bar;
        double slot = (double)(q->x1 - q->x0) / (double)b->n_groups, size = fs, widest = 0;
        for (size_t g = 0; g < b->n_groups && g < 4096; g++) {
            const char *lab = b->group_labels ? b->group_labels[g] : NULL;
            if (!lab) snprintf(buf, sizeof buf, "%zu", g), lab = buf;
            widest = fmax(widest, text_w(c, lab, fs, false));
        }
        if (widest > slot - 4) size = fs * 0.8;
        size_t every = 1;
        while ((double)every * slot < 2.5 * fs && every < b->n_groups) every++;
        for (size_t g = 0; g < b->n_groups; g += every) {
            const char *lab = b->group_labels ? b->group_labels[g] : NULL;
            if (!lab) snprintf(buf, sizeof buf, "%zu", g), lab = buf;
            double cx = q->x0 + slot * ((double)g + 0.5);
            text_at(c, lab, cx, ly, 1, 0, size, slot * (double)every - 4, false, false, TEXT);
            if (!b->count) continue;
            /* n per bar: once for the group when its bars share it, else under each bar */
            bool same = true;
            for (size_t s = 1; s < b->n_series; s++) same = same && b->count[s * b->n_groups + g] == b->count[g];
            for (size_t s = 0; s < (same ? 1 : b->n_series); s++) {
                count_text(b->count[s * b->n_groups + g], buf, sizeof buf);
                double x = same ? cx : q->x0 + slot * ((double)g + 0.1 + 0.8 * ((double)s + 0.5) / (double)b->n_series);
                double room = same ? slot * (double)every - 4 : slot * 0.8 / (double)b->n_series;
                if (text_w(c, buf, fs * 0.8, false) <= room)
                    text_at(c, buf, x, ly + lh + 1, 1, 0, fs * 0.8, room, false, false, TEXT);
            }
        }
    } else {
        int widest = max_tick_label_w(c, &q->ax);
        double spacing = q->ax.n > 1 ? fabs((double)fig_axis_px(&q->ax, q->ax.tick[1]) - fig_axis_px(&q->ax, q->ax.tick[0])) : 1e9;
        int every = 1;
        while (every < q->ax.n && every * spacing < widest + fs) every++;
        for (int i = 0; i < q->ax.n; i++) {
            int x = fig_axis_px(&q->ax, q->ax.tick[i]);
            fill_rect(c, x, q->y1 + 1, x + 1, q->y1 + 1 + TICK, AXIS);
            if (i % every) continue;
            fig_tick_label(&q->ax, q->ax.tick[i], buf, sizeof buf);
            text_at(c, buf, x + 0.5, ly, 1, 0, fs, c->w, false, false, TEXT);
        }
    }
    if (ch->xlabel && *ch->xlabel)
        text_at(c, ch->xlabel, (q->x0 + q->x1) / 2.0, c->h - 6, 1, 2, fs, c->w - 16, false, false, TEXT);
    if (ch->ylabel && *ch->ylabel)
        text_at(c, ch->ylabel, 6, (q->y0 + q->y1) / 2.0, 1, 0, fs, q->y1 - q->y0 + 40, false, true, TEXT);
}

static vkd_result render_xy(canvas *c, const fig_chart *ch, vkd_error *err) {
    xy q = {0};
    bool any;
    int tx = (c->w - 200) / 110, ty = (c->h - 180) / 70;
    vkd_result r = xy_ranges(ch, &q, &any, tx < 3 ? 3 : tx, ty < 3 ? 3 : ty, err);
    if (r != VKD_OK) return r;
    int top = draw_title(c, ch->title);
    if (!any) {
        draw_message(c, top, "no data");
        return VKD_OK;
    }
    double lh = line_h(c, c->fs);
    int leg = legend(c, ch, top, false);
    bool has_xl = ch->xlabel && *ch->xlabel, has_yl = ch->ylabel && *ch->ylabel;
    bool counts = ch->kind == FIG_BAR && ch->bar.count;
    q.y1 = c->h - 6 - (int)ceil((has_xl ? lh + 4 : 0) + (counts ? lh : 0) + lh + 3) - TICK - 1;
    int head = (int)ceil(lh / 2) + 2;
    if (q.y1 - (top + leg + head) < 24) leg = 0; /* small figures lose their legend first */
    else legend(c, ch, top, true);
    q.y0 = top + leg + head;
    q.x0 = 6 + (has_yl ? (int)ceil(lh) + 6 : 0) + max_tick_label_w(c, &q.ay) + 4 + TICK + 1;
    q.x1 = c->w - 20;
    if (!q.categorical) {
        char buf[48];
        fig_tick_label(&q.ax, q.ax.tick[q.ax.n ? q.ax.n - 1 : 0], buf, sizeof buf);
        int half = (int)(text_w(c, buf, c->fs, false) / 2) + 4;
        if (half > 20) q.x1 = c->w - half;
    }
    if (q.x1 - q.x0 < 24 || q.y1 - q.y0 < 24) {
        draw_message(c, top, "figure too small");
        free(q.counts);
        return VKD_OK;
    }
    /* line markers at the ends of the range stay whole: the data span is inset */
    int inset = ch->kind != FIG_LINE ? 0 : ch->line.no_markers ? 2 : 2 * c->s + 4;
    q.ax.p0 = q.x0 + inset, q.ax.p1 = q.x1 - 1 - inset;
    q.ay.p0 = q.y1 - 1 - inset, q.ay.p1 = q.y0 + inset;
    for (int i = 0; i < q.ay.n; i++) {
        int y = fig_axis_px(&q.ay, q.ay.tick[i]);
        fill_rect(c, q.x0, y, q.x1, y + 1, GRID);
    }
    if (!q.ay.log && q.ay.lo < 0 && q.ay.hi > 0) {
        int y = fig_axis_px(&q.ay, 0);
        fill_rect(c, q.x0, y, q.x1, y + 1, ZERO_LINE);
    }
    clip_to(c, q.x0, q.y0, q.x1, q.y1);
    if (ch->kind == FIG_BAR) draw_bars(c, ch, &q);
    else if (ch->kind == FIG_LINE) draw_lines(c, ch, &q);
    else draw_hist(c, ch, &q);
    unclip(c);
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

void fig_heatmap_range(const fig_heatmap *hm, double *lo_out, double *hi_out) {
    double lo = INFINITY, hi = -INFINITY;
    if (hm->values)
        for (size_t i = 0; i < hm->rows * hm->cols; i++)
            if (fig_usable(hm->values[i], false)) lo = fmin(lo, hm->values[i]), hi = fmax(hi, hm->values[i]);
    if (fig_usable(hm->vmin, false) && fig_usable(hm->vmax, false) && hm->vmin < hm->vmax) lo = hm->vmin, hi = hm->vmax;
    if (!(lo <= hi)) lo = hi = 0;
    if (!(hi - lo > 1e-12 * fmax(fabs(lo), fabs(hi)))) { /* one value v: 0..v, or 0..1 for 0 */
        double v = lo;
        lo = fmin(0, v), hi = fmax(0, v);
        if (hi == lo) lo = 0, hi = 1;
    }
    if (hm->cmap == FIG_CMAP_DIVERGING) {
        double m = fmax(fabs(lo), fabs(hi));
        lo = -m, hi = m;
    }
    *lo_out = lo, *hi_out = hi;
}

static void render_heatmap(canvas *c, const fig_chart *ch) {
    const fig_heatmap *hm = &ch->heatmap;
    size_t R = hm->rows, C = hm->cols;
    char buf[48];
    double fs = c->fs, lh = line_h(c, fs);
    int top = draw_title(c, ch->title);
    if (!R || !C) {
        draw_message(c, top, "no data");
        return;
    }
    double lo, hi;
    fig_heatmap_range(hm, &lo, &hi);
    fig_axis cb;
    fig_axis_linear(&cb, lo, hi, false, 6, false);

    /* layout: row labels | cells | colour bar + tick labels + colour bar title */
    bool has_xl = ch->xlabel && *ch->xlabel, has_yl = ch->ylabel && *ch->ylabel;
    bool has_cl = hm->colorbar_label && *hm->colorbar_label;
    int right = 16 + 18 + 1 + TICK + 4 + max_tick_label_w(c, &cb) + (has_cl ? 8 + (int)ceil(lh) : 0) + 8;
    double est_h = c->h - top - 80;
    double rs = est_h / (double)R < lh && est_h / (double)R >= 0.7 * lh ? 0.8 * fs : fs;
    double row_w = 0, col_w = 0, cs = fs;
    for (size_t r = 0; r < R && r <= 4096; r++) /* long lists: the first 4096 labels decide */
        row_w = fmax(row_w, text_w(c, index_label(hm->row_labels, r, buf, sizeof buf), rs, false));
    row_w = fmin(row_w, c->w / 4.0);
    int left = 6 + (has_yl ? (int)ceil(lh) + 6 : 0) + (int)ceil(row_w) + 4 + TICK + 1;
    int W = c->w - left - right;
    if (W > 0 && (double)W / (double)C < lh && (double)W / (double)C >= 0.7 * lh) cs = 0.8 * fs;
    for (size_t k = 0; k < C && k <= 4096; k++)
        col_w = fmax(col_w, text_w(c, index_label(hm->col_labels, k, buf, sizeof buf), cs, false));
    col_w = fmin(col_w, c->h / 4.0);
    double cell_w = W > 0 ? (double)W / (double)C : 1;
    size_t k_h = hm->col_label_every, k_v = hm->col_label_every;
    if (!k_h) {
        k_h = fig_nice_count((size_t)ceil((col_w + cs) / cell_w));
        k_v = fig_nice_count((size_t)ceil((line_h(c, cs) + 2) / cell_w));
    }
    bool vertical = (k_v < k_h && col_w > 2.5 * cs) || (double)k_h * cell_w < col_w + cs;
    size_t kc = vertical ? k_v : k_h;
    if (kc < 1) kc = 1;
    int bottom = TICK + 4 + (int)ceil(vertical ? col_w : line_h(c, cs)) + 6 + (has_xl ? (int)ceil(lh) + 6 : 0) + 6;
    int x0 = left, x1 = c->w - right, y0 = top + (int)ceil(lh / 2) + 4, y1 = c->h - bottom;
    if (x1 - x0 < 8 || y1 - y0 < 8) {
        draw_message(c, top, "figure too small");
        return;
    }
    W = x1 - x0;
    int H = y1 - y0;
    double cell_h = (double)H / (double)R;
    size_t kr = hm->row_label_every ? hm->row_label_every : fig_nice_count((size_t)ceil(line_h(c, rs) / cell_h));
    if (kr < 1) kr = 1;

    /* cells: exact rectangles, so pixel centres decide which cell a pixel shows */
    for (size_t r = 0; r < R; r++) {
        double ya = y0 + (double)H * (double)r / (double)R, yb = y0 + (double)H * (double)(r + 1) / (double)R;
        for (size_t k = 0; k < C; k++) {
            double v = hm->values[r * C + k];
            rgb col = fig_usable(v, false) ? cmap_color(hm->cmap, (v - lo) / (hi - lo)) : NAN_GREY;
            fill_rect(c, x0 + (double)W * (double)k / (double)C, ya, x0 + (double)W * (double)(k + 1) / (double)C, yb, col);
        }
    }
    outline(c, x0, y0, x1, y1, AXIS);
    if (hm->annotate && R <= 256 && C <= 256) {
        for (size_t r = 0; r < R; r++)
            for (size_t k = 0; k < C; k++) {
                double v = hm->values[r * C + k];
                if (!fig_usable(v, false)) continue;
                fig_fmt_value(buf, sizeof buf, v, hm->value_digits);
                double size = fs;
                if (text_w(c, buf, size, false) > cell_w - 4 || line_h(c, size) > cell_h - 2) size = 0.75 * fs;
                if (text_w(c, buf, size, false) > cell_w - 4 || line_h(c, size) > cell_h - 2) continue;
                rgb col = cmap_color(hm->cmap, (v - lo) / (hi - lo));
                double cx = x0 + ((double)k + 0.5) * cell_w, cy = y0 + ((double)r + 0.5) * cell_h;
                text_at(c, buf, cx, cy, 1, 1, size, cell_w, false, false, is_light(col) ? TEXT : WHITE);
            }
    }
    /* row and column labels at the centres of every kr-th row / kc-th column */
    for (size_t r = 0; r < R; r += kr) {
        int cy = y0 + (int)(((double)r + 0.5) * cell_h);
        fill_rect(c, x0 - 1 - TICK, cy, x0 - 1, cy + 1, AXIS);
        text_at(c, index_label(hm->row_labels, r, buf, sizeof buf), x0 - 1 - TICK - 4, cy + 0.5, 2, 1, rs, row_w + 1,
                false, false, TEXT);
    }
    for (size_t k = 0; k < C; k += kc) {
        int cx = x0 + (int)(((double)k + 0.5) * cell_w);
        const char *lab = index_label(hm->col_labels, k, buf, sizeof buf);
        fill_rect(c, cx, y1 + 1, cx + 1, y1 + 1 + TICK, AXIS);
        if (vertical) text_at(c, lab, cx + 0.5, y1 + 1 + TICK + 4, 2, 1, cs, col_w + 1, false, true, TEXT);
        else text_at(c, lab, cx + 0.5, y1 + 1 + TICK + 3, 1, 0, cs, cell_w * (double)kc - 2, false, false, TEXT);
    }
    /* colour bar: t runs from 0 at the bottom row to 1 at the top row */
    int bx0 = x1 + 16, bx1 = bx0 + 18;
    for (int y = y0; y < y1; y++)
        fill_rect(c, bx0, y, bx1, y + 1, cmap_color(hm->cmap, H > 1 ? (double)(y1 - 1 - y) / (H - 1) : 0.5));
    outline(c, bx0, y0, bx1, y1, AXIS);
    cb.p0 = y1 - 1, cb.p1 = y0;
    for (int i = 0; i < cb.n; i++) {
        int y = fig_axis_px(&cb, cb.tick[i]);
        fill_rect(c, bx1 + 1, y, bx1 + 1 + TICK, y + 1, AXIS);
        fig_tick_label(&cb, cb.tick[i], buf, sizeof buf);
        text_at(c, buf, bx1 + 1 + TICK + 4, y + 0.5, 0, 1, fs, c->w, false, false, TEXT);
    }
    if (has_cl) text_at(c, hm->colorbar_label, c->w - 6 - lh, (y0 + y1) / 2.0, 1, 0, fs, H, false, true, TEXT);
    if (has_xl) text_at(c, ch->xlabel, (x0 + x1) / 2.0, c->h - 6, 1, 2, fs, c->w - 16, false, false, TEXT);
    if (has_yl) text_at(c, ch->ylabel, 6, (y0 + y1) / 2.0, 1, 0, fs, H + 40, false, true, TEXT);
}

/* ---- output ---- */

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
    bool failed;  /* an allocation failed */
} membuf;

/* cairo write callback: appends to a membuf (grown by doubling with malloc + copy). */
static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len) {
    membuf *m = closure;
    if (m->failed) return CAIRO_STATUS_WRITE_ERROR;
    if (m->n + len > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->n + len) cap *= 2;
        uint8_t *p = malloc(cap);
        if (!p) {
            m->failed = true;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        if (m->n) memcpy(p, m->p, m->n);
        free(m->p);
        m->p = p, m->cap = cap;
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
    return CAIRO_STATUS_SUCCESS;
}

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
        if (!ch->bar.err_lo != !ch->bar.err_hi)
            return vkd_fail(err, VKD_ERR_INVALID, "bar chart: err_lo and err_hi go together (one is NULL)");
        if (ch->bar.value_digits < 0 || ch->bar.value_digits > 17)
            return vkd_fail(err, VKD_ERR_INVALID, "bar chart: value_digits %d out of range 0..17", ch->bar.value_digits);
        return VKD_OK;
    case FIG_LINE:
    case FIG_HIST: {
        size_t ns = ch->kind == FIG_LINE ? ch->line.n_series : ch->hist.n_series;
        const fig_series *se = ch->kind == FIG_LINE ? ch->line.series : ch->hist.series;
        const char *what = ch->kind == FIG_LINE ? "line chart" : "histogram";
        if (ns && !se) return vkd_fail(err, VKD_ERR_INVALID, "%s: series is NULL", what);
        for (size_t i = 0; i < ns; i++) {
            if (se[i].n && !se[i].y) return vkd_fail(err, VKD_ERR_INVALID, "%s: series %zu: y is NULL", what, i);
            if (ch->kind == FIG_LINE && !se[i].lo != !se[i].hi)
                return vkd_fail(err, VKD_ERR_INVALID, "line chart: series %zu: lo and hi go together", i);
        }
        if (ch->kind == FIG_HIST && ch->hist.nbins > 65536)
            return vkd_fail(err, VKD_ERR_INVALID, "histogram: %zu bins (at most 65536)", ch->hist.nbins);
        return VKD_OK;
    }
    case FIG_HEATMAP:
        if (!vkd_mul_size(ch->heatmap.rows, ch->heatmap.cols, &n) || n > SIZE_MAX / sizeof(double))
            return vkd_fail(err, VKD_ERR_INVALID, "heatmap: %zu x %zu overflow", ch->heatmap.rows, ch->heatmap.cols);
        if (n > (size_t)1 << 26)
            return vkd_fail(err, VKD_ERR_INVALID, "heatmap: %zu x %zu cells (at most 2^26)", ch->heatmap.rows,
                            ch->heatmap.cols);
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

const char *fig_format_ext(fig_format fmt) {
    return fmt == FIG_FMT_PDF ? "pdf" : fmt == FIG_FMT_SVG ? "svg" : "png";
}

vkd_result fig_render(const fig_chart *ch, fig_format fmt, uint8_t **data, size_t *size, vkd_error *err) {
    if (data) *data = NULL;
    if (size) *size = 0;
    if (!ch || !data || !size) return vkd_fail(err, VKD_ERR_INVALID, "figure: NULL argument");
    if ((unsigned)fmt > FIG_FMT_SVG) return vkd_fail(err, VKD_ERR_INVALID, "figure: unknown format %d", (int)fmt);
    vkd_result r = check_chart(ch, err);
    if (r != VKD_OK) return r;
    int w = ch->width ? ch->width : DEFAULT_W, h = ch->height ? ch->height : DEFAULT_H;
    membuf mb = {0};
    cairo_surface_t *sf = fmt == FIG_FMT_PNG ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h)
                        : fmt == FIG_FMT_PDF ? cairo_pdf_surface_create_for_stream(mem_write, &mb, w * PT_PER_PX, h * PT_PER_PX)
                                             : cairo_svg_surface_create_for_stream(mem_write, &mb, w * PT_PER_PX, h * PT_PER_PX);
    cairo_t *cr = cairo_create(sf);
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "figure: out of memory (cairo: %s)", cairo_status_to_string(cairo_status(cr)));
        goto done;
    }
    /* a fixed creation date: a figure's bytes depend on its data only (a resumed or merged run
     * rewrites identical PDFs); cairo would stamp the current time */
    if (fmt == FIG_FMT_PDF) cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATE_DATE, "2000-01-01T00:00:00Z");
    if (fmt != FIG_FMT_PNG) cairo_scale(cr, PT_PER_PX, PT_PER_PX);
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF); /* the same layout in every format */
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
    canvas c = {.cr = cr, .w = w, .h = h, .s = ch->font_scale ? ch->font_scale : w >= 600 && h >= 360 ? 2 : 1};
    c.fs = 6.0 * c.s + 1;
    fill_rect(&c, 0, 0, w, h, WHITE);
    if (ch->kind == FIG_HEATMAP) render_heatmap(&c, ch);
    else r = render_xy(&c, ch, err);
    if (r != VKD_OK) goto done;
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "figure: out of memory (cairo: %s)", cairo_status_to_string(cairo_status(cr)));
        goto done;
    }
    cairo_destroy(cr);
    cr = NULL;
    cairo_status_t st = fmt == FIG_FMT_PNG ? cairo_surface_write_to_png_stream(sf, mem_write, &mb) : CAIRO_STATUS_SUCCESS;
    cairo_surface_finish(sf);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(sf);
    if (mb.failed) r = vkd_fail(err, VKD_ERR_NOMEM, "figure: out of memory (%zu bytes of %s)", mb.n, fig_format_ext(fmt));
    else if (st != CAIRO_STATUS_SUCCESS || mb.n == 0)
        r = vkd_fail(err, VKD_ERR_NOMEM, "figure: out of memory (cairo: %s)", cairo_status_to_string(st));
done:
    if (cr) cairo_destroy(cr);
    cairo_surface_destroy(sf);
    if (r != VKD_OK) {
        free(mb.p);
        return r;
    }
    *data = mb.p;
    *size = mb.n;
    return VKD_OK;
}

vkd_result fig_render_png(const fig_chart *ch, uint8_t **png, size_t *size, vkd_error *err) {
    return fig_render(ch, FIG_FMT_PNG, png, size, err);
}

vkd_result fig_write(const fig_chart *ch, fig_format fmt, const char *path, vkd_error *err) {
    if (!path) return vkd_fail(err, VKD_ERR_INVALID, "figure: NULL path");
    uint8_t *data;
    size_t n;
    vkd_result r = fig_render(ch, fmt, &data, &n, err);
    if (r != VKD_OK) {
        if (err) vkd_error_prefix(err, "%s", path);
        return r;
    }
    r = vkd_write_atomic(path, data, n, err);
    free(data);
    return r;
}

vkd_result fig_write_png(const fig_chart *ch, const char *path, vkd_error *err) {
    return fig_write(ch, FIG_FMT_PNG, path, err);
}
