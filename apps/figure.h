/* figure.h: figures for the experiment commands (bar, line, histogram, heatmap), drawn with
 * cairo as PNG, PDF or SVG.
 *
 * One fig_chart describes one figure: the frame (title, axis titles, size) and, selected by
 * kind, the data of one chart type. Every zero field means its documented default, so
 *     fig_chart c = {.kind = FIG_BAR, .title = "Mean rank", .bar = {.n_groups = 3, ...}};
 * is a complete figure. The library never prints or exits: it returns a vkd_result and
 * fills err. The caller keeps ownership of every array and string it passes.
 *
 * Output: the figure is laid out in pixels, 900 x 560 by default. PNG: 8-bit RGB at that size.
 * PDF and SVG: vector pages of the same drawing at 0.75 pt per pixel (96 px per inch, so a
 * 900 x 560 figure is a 675 x 420 pt page), text embedded as fonts (PDF) or glyph outlines
 * (SVG). Text is DejaVu Sans (found through fontconfig; any sans-serif it substitutes when
 * DejaVu is missing), antialiased, at a size of 6 * font_scale + 1 px (13 px at the default
 * size), titles bold at 1.25 times that. Invalid UTF-8 bytes are drawn as U+FFFD; labels
 * longer than the room they have end in an ellipsis. Rectangles that carry data (bars,
 * histogram bins, heatmap cells, colour bar) and the axis lines and ticks are drawn without
 * antialiasing on pixel edges, so a PNG pixel has exactly the colour its datum maps to.
 *
 * Bad data never fails a render: NaN, +-Inf and |v| > 1e300 are skipped (heatmap: light
 * grey cells, RGB 211,211,211), so are values <= 0 on a log axis. A chart with nothing to
 * draw (no series, no groups, no finite value) still renders: its title and "no data".
 *
 * Layout (xy charts): the plot area is a rectangle [x0, x1) x [y0, y1) with the y axis line
 * in column x0 - 1 and the x axis line in row y1 (both RGB 51,51,51, major ticks 6 px long
 * outside the plot, minor ticks 3 px). A linear y axis maps its range onto rows y1 - 1
 * (low) .. y0 (high); log axes span whole decades with a major tick at each (every k-th
 * decade when there are more than 10), so decades are equally spaced. The legend sits in a
 * box between the title and the plot area (never over the data), one entry per series with
 * a non-empty label. Series colours are the Okabe-Ito palette in this order: blue 0,114,178;
 * vermillion 213,94,0; bluish green 0,158,115; orange 230,159,0; sky blue 86,180,233;
 * reddish purple 204,121,167; yellow 240,228,66; black 0,0,0 (then again from the start).
 * Error bars (confidence intervals) are black (RGB 0,0,0) vertical lines, 1 px wide at
 * font_scale <= 2, with caps at both ends. */
#ifndef VKD_FIGURE_H
#define VKD_FIGURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

typedef enum fig_kind {
    FIG_BAR = 0,
    FIG_LINE,
    FIG_HIST,
    FIG_HEATMAP,
} fig_kind;

/* Grouped bars: n_groups categories on the x axis, one bar per series in each.
 * Each group owns an equal slot of the plot width, slot g = [x0 + g*W/n_groups,
 * x0 + (g+1)*W/n_groups) with W = x1 - x0; its bars fill the middle 80% of the slot, split
 * into n_series equal sub-slots in series order. Bars start at 0 (linear axis, which always
 * includes 0) or at the bottom of the axis (log). */
typedef struct fig_bar {
    size_t n_groups, n_series;
    const double *values;              /* n_series x n_groups: values[s * n_groups + g] */
    const char *const *group_labels;   /* n_groups x labels; NULL: "0", "1", ... */
    const char *const *series_labels;  /* n_series labels; NULL: no legend */
    bool log_y;                        /* log10 y axis */
    bool annotate;                     /* value printed above (below if negative) each bar */
    int value_digits;                  /* significant digits of annotations; 0: integers as
                                        * integers, else 3; 1e4 <= |v| < 1e15 (not printed as
                                        * an integer) with a k/M/G/T suffix: "64.5k" */
    const double *err_lo, *err_hi;     /* n_series x n_groups like values, or NULL: the ends
                                        * of each bar's error bar (e.g. a 95% bootstrap CI of
                                        * the mean; NaN: none for that bar). Both or neither */
    const double *count;               /* n_series x n_groups, or NULL: n behind each bar,
                                        * printed "n=12" under the group label (once per
                                        * group when its bars share n); NaN: not printed */
} fig_bar;

/* One data series of a line chart or a histogram. */
typedef struct fig_series {
    const char *label;  /* legend text; NULL or "" leaves the series out of the legend */
    size_t n;           /* number of points (line) or samples (histogram); 0 is allowed */
    const double *x;    /* line: n x values; NULL: the chart's shared x, or 0..n-1 */
    const double *y;    /* line: n y values; histogram: n raw samples */
    const double *lo, *hi; /* line: n error bar ends per point (NaN: none there), or NULL.
                         * Both or neither; ignored by histograms */
} fig_series;

/* Lines through each series' points in order, with a marker on each point (circle,
 * square, diamond, triangle by series). A point skipped as bad data breaks the line.
 * Axis ranges cover every drawn point, widened to nice ticks (1/2/5 x 10^k); when every
 * x is an integer the x ticks are integers. */
typedef struct fig_line {
    size_t n_series;
    const fig_series *series;  /* n_series */
    const double *x;           /* shared x for series whose x is NULL; must hold at least
                                * series[i].n values for each of them. NULL: 0..n-1 */
    bool log_x, log_y;
    bool no_markers;
} fig_line;

/* Histogram of each series' samples over nbins equal bins of [lo, hi]: bin
 * b = floor((v - lo) / (hi - lo) * nbins), clamped to 0 .. nbins-1, so samples outside the
 * range land in the edge bins. The x axis spans exactly [lo, hi] (bin b covers x pixels
 * from the position of lo + b*(hi-lo)/nbins to that of the next edge). Overlaid (default):
 * every series fills its whole bin, drawn in series order, opaque when there is one series
 * and with alpha 0.5 when there are several. Side by side: the middle 90% of each bin is
 * split into n_series equal opaque bars. Each legend entry ends in "(n=K)", K the series'
 * finite samples. */
typedef struct fig_hist {
    size_t n_series;
    const fig_series *series;  /* n_series; samples in y, x unused */
    size_t nbins;              /* 0: 20; at most 65536 */
    double lo, hi;             /* bin range; lo >= hi (e.g. both 0): min .. max of the samples */
    bool side_by_side;
    bool fraction;             /* y = count / finite samples of the series (else counts) */
} fig_hist;

typedef enum fig_cmap {
    FIG_CMAP_SEQUENTIAL = 0,   /* viridis, low = 68,1,84 .. high = 253,231,37 */
    FIG_CMAP_DIVERGING,        /* ColorBrewer RdBu reversed: blue 33,102,172 .. 247,247,247
                                * at 0 .. red 178,24,43 */
} fig_cmap;

/* Matrix of coloured cells, row 0 at the top, with a colour bar on the right. Cells split
 * the frame [x0, x1) x [y0, y1) (a 1 px border around it) evenly: pixel column x shows
 * column (x - x0) * cols / (x1 - x0) (integer division), likewise rows, so matrices larger
 * than the frame are sampled. A value maps to t = (v - vmin) / (vmax - vmin) clamped to
 * [0, 1], and t to the colour map by linear interpolation between 9 equally spaced anchor
 * colours (matplotlib's viridis and ColorBrewer's 9-class RdBu), rounded to nearest.
 * Pixel (x, y) of a PNG shows the cell whose rectangle [x0 + c*W/cols, x0 + (c+1)*W/cols)
 * x [y0 + r*H/rows, ...) holds the pixel's centre (x + 0.5, y + 0.5), W = x1 - x0,
 * H = y1 - y0: matrices larger than the frame are sampled. The colour range is
 * fig_heatmap_range's. */
typedef struct fig_heatmap {
    size_t rows, cols;
    const double *values;             /* rows x cols, row-major: values[r * cols + c] */
    const char *const *row_labels;    /* rows labels; NULL: "0", "1", ... */
    const char *const *col_labels;    /* cols labels; NULL: "0", "1", ... */
    size_t row_label_every;           /* label every k-th row; 0: as many as fit */
    size_t col_label_every;           /* label every k-th column; 0: as many as fit (labels
                                       * turn vertical when that shows more of them) */
    fig_cmap cmap;
    double vmin, vmax;                /* colour range; vmin >= vmax (e.g. both 0): from the
                                       * finite values (fig_heatmap_range) */
    bool annotate;                    /* value printed in each cell where it fits */
    int value_digits;                 /* as fig_bar.value_digits */
    const char *colorbar_label;       /* NULL: none */
} fig_heatmap;

typedef struct fig_chart {
    fig_kind kind;                    /* which of the members below is read */
    const char *title;                /* NULL: none */
    const char *xlabel, *ylabel;      /* axis titles; NULL: none */
    int width, height;                /* pixels, 160 .. 8192 x 120 .. 8192; 0: 900 x 560 */
    int font_scale;                   /* 1 .. 8; 0: 2 when the figure is >= 600 x 360, else 1.
                                       * Text is 6 * font_scale + 1 px */
    union {
        fig_bar bar;
        fig_line line;
        fig_hist hist;
        fig_heatmap heatmap;
    };
} fig_chart;

typedef enum fig_format {
    FIG_FMT_PNG = 0,
    FIG_FMT_PDF,
    FIG_FMT_SVG,
} fig_format;

/* The colour range [*lo, *hi] (*lo < *hi) a heatmap uses: vmin..vmax when both are finite
 * and vmin < vmax; else the finite values' min..max, and when they are all equal to v (or
 * there are none, v = 0) the range from min(0, v) to max(0, v), or 0..1 when v = 0, so an
 * all-zero matrix is the bottom of a 0..1 scale. Diverging maps are centred at 0:
 * [-m, m], m = max(|lo|, |hi|). */
void fig_heatmap_range(const fig_heatmap *hm, double *lo, double *hi);

/* File name extension of a format without the dot: "png", "pdf", "svg". */
const char *fig_format_ext(fig_format fmt);

/* Renders chart in format fmt into a new buffer (*data, *size bytes; free() it).
 * VKD_ERR_INVALID for a bad chart (NULL arrays with nonzero counts, sizes out of range,
 * unknown format), VKD_ERR_NOMEM when an allocation or cairo fails. On error *data is NULL. */
vkd_result fig_render(const fig_chart *chart, fig_format fmt, uint8_t **data, size_t *size, vkd_error *err);

/* Renders chart in format fmt and writes it to path atomically (temporary file in the same
 * folder, then rename). Errors name the path; VKD_ERR_IO when the file cannot be written. */
vkd_result fig_write(const fig_chart *chart, fig_format fmt, const char *path, vkd_error *err);

/* Renders chart into a new PNG file image (*png, *size bytes; free() it).
 * VKD_ERR_INVALID for a bad chart (NULL arrays with nonzero counts, sizes out of range),
 * VKD_ERR_NOMEM when an allocation or cairo fails. On error *png is NULL. fig_render with
 * FIG_FMT_PNG. */
vkd_result fig_render_png(const fig_chart *chart, uint8_t **png, size_t *size, vkd_error *err);


/* fig_write with FIG_FMT_PNG. */
vkd_result fig_write_png(const fig_chart *chart, const char *path, vkd_error *err);

#endif
