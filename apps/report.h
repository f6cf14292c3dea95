/* report.h: what the experiment commands' report.txt and summary.json share: numbers printed
 * without losing their precision, and 95% bootstrap confidence intervals over examples
 * (methods/vkd_bootstrap.h) set by --bootstrap N and --seed. */
#ifndef VKD_REPORT_H
#define VKD_REPORT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "exp.h"

#define REP_DEFAULT_BOOTSTRAP 1000
#define REP_LEVEL 0.95

/* Resamples and seed of a command's CIs: --bootstrap (default 1000) and --seed. */
typedef struct rep_boot {
    uint32_t reps;
    uint64_t seed;
} rep_boot;
rep_boot rep_boot_of(const exp_common *c);

/* A statistic pooled over n examples with its 95% CI. */
typedef struct rep_ci {
    double value, lo, hi;
    size_t n;                          /* examples */
} rep_ci;

/* sum(num) / sum(den) over n examples (den NULL: the mean of num) and its percentile
 * bootstrap CI (vkd_bootstrap_ci, stream VKD_BOOT_STREAM). Exits when out of memory. */
rep_ci rep_ci_of(const rep_boot *b, const double *num, const double *den, size_t n);

/* Per-example values of one statistic, collected while a command walks its journal:
 * rep_col_add(&c, num, den) once per example (den 1 for a plain mean over examples), then
 * rep_col_ci. Zero-initialised is empty; exits when out of memory. */
typedef struct rep_col {
    double *num, *den;
    size_t n, cap;
} rep_col;
void rep_col_add(rep_col *c, double num, double den);
rep_ci rep_col_ci(const rep_boot *b, const rep_col *c);
void rep_col_free(rep_col *c);


/* A number for report.txt: 4 significant digits, fixed notation for 1e-3 <= |v| < 1e6
 * ("0.5000", "123.4", "2.500"), else exponent notation with up to 3 ("2.2e-06",
 * "1.23e+07"), "0" for zero, "nan" / "inf" / "-inf". Returns buf (at least 32 bytes). */
const char *rep_num(char *buf, size_t cap, double v);
/* "value [lo, hi]" with rep_num's numbers. Returns buf (at least 112 bytes). */
const char *rep_ci_text(char *buf, size_t cap, rep_ci ci);

/* report.txt line "  label: value [lo, hi] (n = N examples)\n" appended to r (inline: the
 * formatting tests link report.c without exp.c). */
static inline void rep_ci_line(exp_buf *r, const char *label, rep_ci ci) {
    char buf[112];
    exp_buf_printf(r, "  %s: %s (n = %zu examples)\n", label, rep_ci_text(buf, sizeof buf, ci), ci.n);
}

/* parent[key] = {"value", "ci95": [lo, hi], "n_examples"} (NaN ends as null). */
void rep_ci_json(cJSON *parent, const char *key, rep_ci ci);
/* sum["bootstrap"] = {"reps", "seed", "level", "resampled": "examples"}. */
void rep_boot_json(cJSON *sum, const rep_boot *b);

#endif
