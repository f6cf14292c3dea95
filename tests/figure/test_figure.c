/* test_figure.c: apps/figure.c's API. Bad arguments (VKD_ERR_INVALID), a bad path
 * (VKD_ERR_IO naming the path), atomic writes (no temporary file left), injected
 * allocation failures (malloc/calloc are wrapped at link time; they reach figure.c's own
 * allocations, not cairo's: every failure returns VKD_ERR_NOMEM and no file), the heatmap
 * colour range (fig_heatmap_range), and 400 random charts with NaN/Inf/huge/empty data and
 * odd sizes (each renders a PNG whose header is checked here, and every 8th a PDF and an SVG).
 *
 * `test_figure DIR` also writes the fixed figures (each as .png and .pdf, one .svg) that
 * check_figure.py decodes with its own PNG reader and checks pixel by pixel, and whose PDF
 * page sizes it parses; the data of each is repeated there. */
#include "figure.h"
#include "figure_axis.h"
#include "vkd_test.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>

/* ---- allocation failure injection (link with -Wl,--wrap=malloc,--wrap=calloc) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
static long alloc_countdown = -1; /* -1: off; else the allocation that sees 0 fails */
static long alloc_failed;

static bool alloc_fails(void) {
    if (alloc_countdown < 0) return false;
    if (alloc_countdown-- == 0) {
        alloc_failed++;
        return true;
    }
    return false;
}
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return alloc_fails() ? NULL : __real_calloc(n, m); }

/* ---- helpers ---- */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Renders ch and checks the PNG signature, IHDR size and the final IEND chunk. */
static bool render_ok(const fig_chart *ch, int w, int h, const char *what) {
    uint8_t *png = NULL;
    size_t n = 0;
    vkd_error err = {0};
    vkd_result r = fig_render_png(ch, &png, &n, &err);
    CHECK(r == VKD_OK, "%s: %s (%s)", what, vkd_result_name(r), err.msg);
    if (r != VKD_OK) return false;
    bool ok = n > 8 + 25 + 12 + 12 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8) && !memcmp(png + 12, "IHDR", 4) &&
              be32(png + 16) == (uint32_t)w && be32(png + 20) == (uint32_t)h && png[24] == 8 && png[25] == 2 &&
              !memcmp(png + n - 8, "IEND", 4);
    CHECK(ok, "%s: malformed PNG header or trailer (%zu bytes)", what, n);
    free(png);
    return ok;
}

/* Renders ch as PDF and SVG and checks each file's header and trailer. */
static bool render_vector_ok(const fig_chart *ch, const char *what) {
    bool ok = true;
    for (int f = FIG_FMT_PDF; f <= FIG_FMT_SVG; f++) {
        uint8_t *d = NULL;
        size_t n = 0;
        vkd_error err = {0};
        vkd_result r = fig_render(ch, (fig_format)f, &d, &n, &err);
        CHECK(r == VKD_OK, "%s as %s: %s (%s)", what, fig_format_ext((fig_format)f), vkd_result_name(r), err.msg);
        if (r != VKD_OK) return false;
        bool good = f == FIG_FMT_PDF ? n > 200 && !memcmp(d, "%PDF-", 5) && memmem(d + n - 8, 8, "%%EOF", 5)
                                     : n > 200 && memmem(d, n, "<svg", 4) && memmem(d, n, "</svg>", 6);
        CHECK(good, "%s: malformed %s (%zu bytes)", what, fig_format_ext((fig_format)f), n);
        ok = ok && good;
        free(d);
    }
    return ok;
}

/* Writes DIR/name.png and DIR/name.pdf (and name.svg when svg). */
static void write_fig_as(const char *dir, const char *name, const fig_chart *ch, bool svg) {
    if (!dir) return;
    char path[1024];
    vkd_error err = {0};
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    vkd_result r = fig_write_png(ch, path, &err);
    CHECK(r == VKD_OK, "%s: %s", path, err.msg);
    for (int f = FIG_FMT_PDF; f <= (svg ? FIG_FMT_SVG : FIG_FMT_PDF); f++) {
        snprintf(path, sizeof path, "%s/%s.%s", dir, name, fig_format_ext((fig_format)f));
        r = fig_write(ch, (fig_format)f, path, &err);
        CHECK(r == VKD_OK, "%s: %s", path, err.msg);
    }
}

static void write_fig(const char *dir, const char *name, const fig_chart *ch) {
    char base[256];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 4), name); /* drop ".png" */
    write_fig_as(dir, base, ch, false);
}

/* ---- the fixed figures (check_figure.py repeats their data) ---- */

static void fixed_figures(const char *dir) {
    const double NaN = NAN, Inf = INFINITY;

    /* bars.png: 3 groups x 2 series; series 1, group 2 is NaN (no bar) */
    const double bars[6] = {2, 4, 6, 1, 3, NaN};
    const char *groups[3] = {"gold", "mask", "random"}, *series2[2] = {"target", "draft"};
    fig_chart bar = {.kind = FIG_BAR, .title = "Grouped bars", .xlabel = "mode", .ylabel = "mean rank",
                     .bar = {.n_groups = 3, .n_series = 2, .values = bars, .group_labels = groups,
                             .series_labels = series2}};
    write_fig_as(dir, "bars", &bar, true);
    render_ok(&bar, 900, 560, "bars");
    render_vector_ok(&bar, "bars");

    /* bars_ci.png: 2 groups x 2 series with error bars; counts 10 | 7, 8 and no count (NaN) */
    const double civ[4] = {2, 4, 1, 3}, cilo[4] = {1.5, 3, 0.5, NaN}, cihi[4] = {2.5, 5, 1.5, NaN};
    const double cin[4] = {10, NaN, 7, 8};
    fig_chart barci = {.kind = FIG_BAR, .title = "Bars with CIs", .xlabel = "mode", .ylabel = "mean",
                       .bar = {.n_groups = 2, .n_series = 2, .values = civ, .group_labels = groups,
                               .series_labels = series2, .err_lo = cilo, .err_hi = cihi, .count = cin,
                               .annotate = true}};
    write_fig(dir, "bars_ci.png", &barci);
    render_vector_ok(&barci, "bars_ci");

    /* bars_log.png: 10^0..10^3 on a log axis, annotated */
    const double dec[4] = {1, 10, 100, 1000};
    fig_chart barlog = {.kind = FIG_BAR, .title = "Log bars", .ylabel = "rank (log)",
                        .bar = {.n_groups = 4, .n_series = 1, .values = dec, .log_y = true, .annotate = true}};
    write_fig(dir, "bars_log.png", &barlog);

    /* line_log.png: A = (k, 10^k) k = 0..3 (shared x); B = (0.5, 2), (1.5, NaN), (2.5, 200) */
    const double xa[4] = {0, 1, 2, 3}, ya[4] = {1, 10, 100, 1000};
    const double xb[3] = {0.5, 1.5, 2.5}, yb[3] = {2, NaN, 200};
    fig_series ls[2] = {{.label = "A", .n = 4, .y = ya}, {.label = "B", .n = 3, .x = xb, .y = yb}};
    fig_chart line = {.kind = FIG_LINE, .title = "Log lines", .xlabel = "block", .ylabel = "rank",
                      .line = {.n_series = 2, .series = ls, .x = xa, .log_y = true}};
    write_fig(dir, "line_log.png", &line);

    /* line_ci.png: y = 1, 2, 3 at x = 0, 1, 2 with intervals [y - 0.5, y + 0.5], none at x = 1 */
    const double ly[3] = {1, 2, 3}, llo[3] = {0.5, NaN, 2.5}, lhi[3] = {1.5, NaN, 3.5};
    fig_series lcs = {.label = "mean", .n = 3, .y = ly, .lo = llo, .hi = lhi};
    fig_chart linec = {.kind = FIG_LINE, .title = "Line with CIs", .line = {.n_series = 1, .series = &lcs}};
    write_fig(dir, "line_ci.png", &linec);

    /* hist.png: 10 bins over [0, 1]: bin 0 = 3 + 1 clamped (-5), bin 5 = 1, bin 9 = 1 clamped (7) */
    const double hv[8] = {0.05, 0.05, 0.05, 0.55, -5, 7, NaN, Inf};
    fig_series hs1 = {.label = "accept", .n = 8, .y = hv};
    fig_chart hist = {.kind = FIG_HIST, .title = "Histogram", .xlabel = "acceptance", .ylabel = "count",
                      .hist = {.n_series = 1, .series = &hs1, .nbins = 10, .lo = 0, .hi = 1}};
    write_fig(dir, "hist.png", &hist);

    /* hist_overlay.png / hist_side.png: 5 bins over [0, 1]; s0 = 2 x 0.1, s1 = 1 x 0.1 + 1 x 0.9 */
    const double h0[2] = {0.1, 0.1}, h1[2] = {0.1, 0.9};
    fig_series hs2[2] = {{.label = "T=1", .n = 2, .y = h0}, {.label = "T=0.5", .n = 2, .y = h1}};
    fig_chart hov = {.kind = FIG_HIST, .title = "Overlaid", .hist = {.n_series = 2, .series = hs2, .nbins = 5, .hi = 1}};
    write_fig(dir, "hist_overlay.png", &hov);
    fig_chart hsd = hov;
    hsd.title = "Side by side";
    hsd.hist.side_by_side = true;
    hsd.hist.fraction = true;
    write_fig(dir, "hist_side.png", &hsd);

    /* heat_seq.png: viridis over [0, 1] with NaN, clamped values and no annotations */
    const double hm[12] = {0, 0.5, 1, NaN, 0.25, 0.75, 2, -1, 0.1, 0.2, 0.3, 0.4};
    const char *rows3[3] = {"r0", "r1", "r2"};
    fig_chart heat = {.kind = FIG_HEATMAP, .title = "Sequential", .xlabel = "column", .ylabel = "row",
                      .heatmap = {.rows = 3, .cols = 4, .values = hm, .row_labels = rows3, .vmin = 0, .vmax = 1,
                                  .colorbar_label = "value"}};
    write_fig(dir, "heat_seq.png", &heat);

    /* heat_div.png: diverging, range from the data (+-2), annotated */
    const double hd[6] = {-2, 0, 2, -1, 1, NaN};
    const char *cols3[3] = {"gsm8k", "math500", "humaneval"}, *rows2[2] = {"no guide", "guide"};
    fig_chart div = {.kind = FIG_HEATMAP, .title = "Evaluation matrix",
                     .heatmap = {.rows = 2, .cols = 3, .values = hd, .row_labels = rows2, .col_labels = cols3,
                                 .cmap = FIG_CMAP_DIVERGING, .annotate = true}};
    write_fig(dir, "heat_div.png", &div);

    /* heat_zero.png: an all-zero accuracy matrix is the bottom of a 0..1 scale */
    const double zeros[6] = {0, 0, 0, 0, 0, 0};
    fig_chart zero = {.kind = FIG_HEATMAP, .title = "All zero",
                      .heatmap = {.rows = 2, .cols = 3, .values = zeros, .annotate = true, .value_digits = 3,
                                  .colorbar_label = "accuracy"}};
    write_fig(dir, "heat_zero.png", &zero);

    /* heat_tokens.png: 4 x 300 per-token map, values (r - 1.5) * sin(c / 7), labels every k-th */
    static double tok[4 * 300];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 300; c++) tok[r * 300 + c] = (r - 1.5) * sin(c / 7.0);
    const char *rows4[4] = {"gold \xe2\x9c\x93", "mask", "random", "target"};
    fig_chart tokens = {.kind = FIG_HEATMAP, .title = "Draft advantage per token", .xlabel = "token position",
                        .heatmap = {.rows = 4, .cols = 300, .values = tok, .row_labels = rows4,
                                    .cmap = FIG_CMAP_DIVERGING, .colorbar_label = "log p_draft - log p_target"}};
    write_fig(dir, "heat_tokens.png", &tokens);
    render_ok(&tokens, 900, 560, "heat_tokens");

    /* degenerate inputs: each must still be a valid PNG */
    fig_chart empty_bar = {.kind = FIG_BAR, .title = "Empty bars"};
    write_fig(dir, "empty_bar.png", &empty_bar);
    const double nans[3] = {NaN, Inf, -Inf};
    fig_series ns = {.label = "nan", .n = 3, .y = nans};
    fig_chart nan_line = {.kind = FIG_LINE, .title = "All NaN", .line = {.n_series = 1, .series = &ns}};
    write_fig(dir, "nan_line.png", &nan_line);
    const double eq[5] = {0.5, 0.5, 0.5, 0.5, 0.5};
    fig_series es = {.label = "equal", .n = 5, .y = eq};
    fig_chart eq_line = {.kind = FIG_LINE, .title = "All equal", .line = {.n_series = 1, .series = &es}};
    write_fig(dir, "equal_line.png", &eq_line);
    fig_chart eq_hist = {.kind = FIG_HIST, .title = "All equal", .hist = {.n_series = 1, .series = &es}};
    write_fig(dir, "equal_hist.png", &eq_hist);
    fig_chart nan_heat = {.kind = FIG_HEATMAP, .title = "All NaN",
                          .heatmap = {.rows = 1, .cols = 3, .values = nans, .annotate = true}};
    write_fig(dir, "nan_heat.png", &nan_heat);
    fig_series none[2] = {{.label = "empty"}, {.label = "also empty"}};
    fig_chart empty_hist = {.kind = FIG_HIST, .title = "Empty series", .hist = {.n_series = 2, .series = none}};
    write_fig(dir, "empty_hist.png", &empty_hist);
    fig_chart tiny = {.kind = FIG_BAR, .width = 160, .height = 120,
                      .title = "A very long title that cannot possibly fit in a tiny figure",
                      .ylabel = "a long y axis title", .xlabel = "a long x axis title",
                      .bar = {.n_groups = 3, .n_series = 2, .values = bars, .group_labels = groups,
                              .series_labels = series2, .annotate = true}};
    write_fig(dir, "tiny.png", &tiny);
    render_ok(&tiny, 160, 120, "tiny");
}

/* ---- API errors ---- */

static void test_errors(const char *dir) {
    vkd_error err = {0};
    uint8_t *png = (uint8_t *)&err; /* must be reset to NULL on error */
    size_t n = 1;
    fig_chart bad = {.kind = FIG_BAR, .bar = {.n_groups = 2, .n_series = 1}};
    CHECK(fig_render_png(&bad, &png, &n, &err) == VKD_ERR_INVALID && !png && n == 0,
          "NULL values with 2 bars: %s", err.msg);
    fig_chart small = {.kind = FIG_LINE, .width = 100};
    CHECK(fig_render_png(&small, &png, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "100"),
          "width 100: %s", err.msg);
    fig_chart kind = {.kind = (fig_kind)99};
    CHECK(fig_render_png(&kind, &png, &n, &err) == VKD_ERR_INVALID, "kind 99: %s", err.msg);
    fig_series s = {.n = 3};
    fig_chart noy = {.kind = FIG_LINE, .line = {.n_series = 1, .series = &s}};
    CHECK(fig_render_png(&noy, &png, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "series 0"),
          "series without y: %s", err.msg);
    fig_chart bins = {.kind = FIG_HIST, .hist = {.nbins = 1000000}};
    CHECK(fig_render_png(&bins, &png, &n, &err) == VKD_ERR_INVALID, "10^6 bins: %s", err.msg);
    fig_chart big = {.kind = FIG_HEATMAP, .heatmap = {.rows = SIZE_MAX / 2, .cols = 3}};
    CHECK(fig_render_png(&big, &png, &n, &err) == VKD_ERR_INVALID, "huge heatmap: %s", err.msg);
    fig_chart ok = {.kind = FIG_BAR};
    CHECK(fig_render_png(&ok, NULL, &n, &err) == VKD_ERR_INVALID, "NULL png pointer");
    CHECK(fig_render_png(NULL, &png, &n, NULL) == VKD_ERR_INVALID, "NULL chart, NULL err");
    CHECK(fig_render(&ok, (fig_format)7, &png, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "format"),
          "format 7: %s", err.msg);
    const double one = 1;
    fig_chart half = {.kind = FIG_BAR, .bar = {.n_groups = 1, .n_series = 1, .values = &one, .err_lo = &one}};
    CHECK(fig_render(&half, FIG_FMT_PDF, &png, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "err_hi"),
          "err_lo without err_hi: %s", err.msg);

    const char *badpath = "/nonexistent-vkdraft-dir/sub/fig.png";
    vkd_result r = fig_write_png(&ok, badpath, &err);
    CHECK(r == VKD_ERR_IO && strstr(err.msg, badpath), "bad path: %s (%s)", vkd_result_name(r), err.msg);
    r = fig_write(&ok, FIG_FMT_PDF, badpath, &err);
    CHECK(r == VKD_ERR_IO && strstr(err.msg, badpath), "bad path (PDF): %s (%s)", vkd_result_name(r), err.msg);
    r = fig_write_png(&bad, "/tmp/never-written.png", &err);
    CHECK(r == VKD_ERR_INVALID && strstr(err.msg, "/tmp/never-written.png"), "invalid chart names the path: %s",
          err.msg);

    if (!dir) return;
    /* atomic write: only the finished files are left, no *.tmp.* */
    DIR *d = opendir(dir);
    REQUIRE(d, "opendir %s", dir);
    int pngs = 0, pdfs = 0, tmps = 0;
    for (struct dirent *e; (e = readdir(d));) {
        pngs += strstr(e->d_name, ".png") && !strstr(e->d_name, ".tmp");
        pdfs += strstr(e->d_name, ".pdf") && !strstr(e->d_name, ".tmp");
        tmps += strstr(e->d_name, ".tmp") != NULL;
    }
    closedir(d);
    CHECK(pngs >= 19 && pdfs == pngs && tmps == 0, "%s: %d PNG files, %d PDF files, %d temporary files", dir, pngs,
          pdfs, tmps);
}

/* ---- heatmap colour range ---- */

static void test_heatmap_range(void) {
    const double zeros[4] = {0, 0, 0, 0}, three[2] = {3, 3}, neg[2] = {-2, -2}, mixed[4] = {-1, 0.5, NAN, 2};
    const double nans[2] = {NAN, INFINITY};
    struct {
        fig_heatmap hm;
        double lo, hi;
        const char *what;
    } cases[] = {
        {{.rows = 2, .cols = 2, .values = zeros}, 0, 1, "all zero, sequential"},
        {{.rows = 2, .cols = 2, .values = zeros, .cmap = FIG_CMAP_DIVERGING}, -1, 1, "all zero, diverging"},
        {{.rows = 1, .cols = 2, .values = three}, 0, 3, "all 3"},
        {{.rows = 1, .cols = 2, .values = neg}, -2, 0, "all -2"},
        {{.rows = 2, .cols = 2, .values = mixed}, -1, 2, "data range"},
        {{.rows = 2, .cols = 2, .values = mixed, .cmap = FIG_CMAP_DIVERGING}, -2, 2, "diverging, centred"},
        {{.rows = 2, .cols = 2, .values = mixed, .vmin = 0, .vmax = 10}, 0, 10, "vmin..vmax"},
        {{.rows = 2, .cols = 2, .values = mixed, .vmin = 5, .vmax = 5}, -1, 2, "vmin = vmax: data"},
        {{.rows = 1, .cols = 2, .values = nans}, 0, 1, "no finite value"},
        {{.rows = 0, .cols = 0}, 0, 1, "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double lo = NAN, hi = NAN;
        fig_heatmap_range(&cases[i].hm, &lo, &hi);
        CHECK(lo == cases[i].lo && hi == cases[i].hi, "heatmap range, %s: %g..%g, expected %g..%g", cases[i].what,
              lo, hi, cases[i].lo, cases[i].hi);
    }
}

/* ---- value labels ---- */

static void test_value_labels(void) {
    struct {
        double v;
        int digits;
        const char *want;
    } cases[] = {{64523.4, 0, "64.5k"}, {999999.5, 0, "1M"}, {1.5e7 + 0.5, 0, "15M"}, {1.5e7, 0, "15000000"}, {-2.25e9, 0, "-2.25G"},
                 {42, 0, "42"}, {123456, 0, "123456"}, {6.666, 0, "6.67"}, {0.5, 2, "0.5"}, {12345.6, 2, "12k"},
                 {-0.0, 0, "0"}, {2.2e-6, 0, "2.2e-06"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[48];
        fig_fmt_value(buf, sizeof buf, cases[i].v, cases[i].digits);
        CHECK(!strcmp(buf, cases[i].want), "value label of %.17g (%d digits): '%s', expected '%s'", cases[i].v,
              cases[i].digits, buf, cases[i].want);
    }
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void) {
    const double v[6] = {0.1, 0.5, 0.9, 0.3, NAN, 0.7};
    fig_series s[2] = {{.label = "a", .n = 3, .y = v}, {.label = "b", .n = 3, .y = v + 3}};
    fig_chart charts[2] = {{.kind = FIG_HIST, .width = 200, .height = 150, .hist = {.n_series = 2, .series = s}},
                           {.kind = FIG_HEATMAP, .width = 200, .height = 150,
                            .heatmap = {.rows = 2, .cols = 3, .values = v}}};
    for (int k = 0; k < 2; k++) {
        long failures = 0;
        for (long at = 0; at < 40; at++) {
            uint8_t *png = NULL;
            size_t n = 0;
            vkd_error err = {0};
            alloc_failed = 0;
            alloc_countdown = at;
            vkd_result r = fig_render_png(&charts[k], &png, &n, &err);
            alloc_countdown = -1;
            if (alloc_failed) {
                failures++;
                CHECK(r == VKD_ERR_NOMEM && !png && n == 0 && strstr(err.msg, "out of memory"),
                      "chart %d, allocation %ld fails: %s (%s)", k, at, vkd_result_name(r), err.msg);
            } else {
                CHECK(r == VKD_OK && png, "chart %d, no failure injected: %s", k, err.msg);
            }
            free(png);
        }
        /* figure.c's own allocations: the histogram's bins (chart 0) and the output buffer */
        CHECK(failures >= (k == 0 ? 2 : 1), "chart %d: only %ld allocations to fail", k, failures);
        fprintf(stderr, "alloc failures: chart %d survived %ld injected failures\n", k, failures);
    }
}

/* ---- random charts ---- */

static double rand_value(unsigned long long *rs) {
    double u = vkd_test_rand_uniform(rs);
    if (u < 0.05) return NAN;
    if (u < 0.08) return u < 0.065 ? INFINITY : -INFINITY;
    if (u < 0.10) return (u < 0.09 ? 1 : -1) * 1e308;
    if (u < 0.12) return 1e-310; /* denormal */
    if (u < 0.15) return 0;
    if (u < 0.20) return 42; /* repeated value */
    double m = pow(10, 12 * vkd_test_rand_uniform(rs) - 6);
    return (vkd_test_rand_uniform(rs) < 0.3 ? -m : m);
}

static void test_random(void) {
    unsigned long long rs = 0x5eedf16ULL;
    static const char *labels[6] = {"", "x", "a rather long label that needs cutting short", "\xff\xfe bad utf8",
                                    "\xe4\xb8\xad\xe6\x96\x87", NULL};
    double *vals = malloc(4096 * sizeof *vals);
    REQUIRE(vals, "out of memory");
    int failed = 0;
    for (int it = 0; it < 400; it++) {
        for (int i = 0; i < 4096; i++) vals[i] = rand_value(&rs);
        size_t a = vkd_test_rand_u64(&rs) % 9, b = vkd_test_rand_u64(&rs) % 7;
        if (vkd_test_rand_uniform(&rs) < 0.1) a = 300; /* many columns / groups */
        const char *lab[300];
        for (int i = 0; i < 300; i++) lab[i] = labels[vkd_test_rand_u64(&rs) % 6];
        fig_series ser[7];
        for (size_t i = 0; i < 7; i++)
            ser[i] = (fig_series){.label = lab[i], .n = vkd_test_rand_u64(&rs) % 12, .y = vals + 40 * i,
                                  .x = vkd_test_rand_uniform(&rs) < 0.5 ? vals + 400 + 40 * i : NULL};
        fig_chart ch = {.kind = (fig_kind)(it % 4), .title = lab[0], .xlabel = lab[1], .ylabel = lab[2],
                        .width = 160 + (int)(vkd_test_rand_u64(&rs) % 700), .height = 120 + (int)(vkd_test_rand_u64(&rs) % 500),
                        .font_scale = (int)(vkd_test_rand_u64(&rs) % 4)};
        bool lg = vkd_test_rand_uniform(&rs) < 0.5, ann = vkd_test_rand_uniform(&rs) < 0.5;
        switch (ch.kind) {
        case FIG_BAR:
            ch.bar = (fig_bar){.n_groups = a, .n_series = b, .values = vals, .group_labels = lab,
                               .series_labels = ann ? lab : NULL, .log_y = lg, .annotate = ann};
            break;
        case FIG_LINE:
            ch.line = (fig_line){.n_series = b, .series = ser, .x = lg ? vals + 800 : NULL, .log_x = ann, .log_y = lg};
            break;
        case FIG_HIST:
            ch.hist = (fig_hist){.n_series = b, .series = ser, .nbins = a * 7, .lo = vals[1], .hi = vals[2],
                                 .side_by_side = lg, .fraction = ann};
            break;
        case FIG_HEATMAP:
            ch.heatmap = (fig_heatmap){.rows = b, .cols = a, .values = vals, .row_labels = lab, .col_labels = lab,
                                       .cmap = (fig_cmap)lg, .annotate = ann, .vmin = vals[3], .vmax = vals[4],
                                       .colorbar_label = lab[3]};
            break;
        }
        char what[64];
        snprintf(what, sizeof what, "random chart %d (kind %d, %d x %d)", it, (int)ch.kind, ch.width, ch.height);
        failed += !render_ok(&ch, ch.width, ch.height, what);
        if (it % 8 == 0) failed += !render_vector_ok(&ch, what);
    }
    free(vals);
    fprintf(stderr, "random charts: 400 rendered, %d failed\n", failed);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : NULL;
    fixed_figures(dir);
    test_errors(dir);
    test_heatmap_range();
    test_value_labels();
    test_alloc_failures();
    test_random();
    return vkd_test_result("test_figure");
}
