/* report.c: number formatting and bootstrap CIs for the experiment reports (report.h). */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vkd_bootstrap.h"

rep_boot rep_boot_of(const exp_common *c) {
    return (rep_boot){.reps = c->bootstrap ? c->bootstrap : REP_DEFAULT_BOOTSTRAP, .seed = c->seed};
}

rep_ci rep_ci_of(const rep_boot *b, const double *num, const double *den, size_t n) {
    rep_ci ci = {.value = NAN, .lo = NAN, .hi = NAN, .n = n};
    double s = 0, d = 0;
    for (size_t i = 0; i < n; i++) s += num[i], d += den ? den[i] : 1.0;
    if (d != 0) ci.value = s / d;
    vkd_error err = {0};
    cli_check(vkd_bootstrap_ci(num, den, n, b->reps, REP_LEVEL, b->seed, VKD_BOOT_STREAM, &ci.lo, &ci.hi, &err), &err);
    return ci;
}

const char *rep_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (v == 0) snprintf(buf, cap, "0");
    else if (isnan(v)) snprintf(buf, cap, "nan");
    else if (isinf(v)) snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else if (a >= 1e-3 && a < 1e6) {
        int digits = 3 - (int)floor(log10(a));
        if (digits < 0) digits = 0;
        snprintf(buf, cap, "%.*f", digits, v);
    } else {
        snprintf(buf, cap, "%.3g", v);
    }
    return buf;
}

const char *rep_ci_text(char *buf, size_t cap, rep_ci ci) {
    char a[32], b[32], c[32];
    snprintf(buf, cap, "%s [%s, %s]", rep_num(a, sizeof a, ci.value), rep_num(b, sizeof b, ci.lo),
             rep_num(c, sizeof c, ci.hi));
    return buf;
}

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

void rep_ci_json(cJSON *parent, const char *key, rep_ci ci) {
    cJSON *o = cJSON_AddObjectToObject(parent, key);
    cJSON_AddItemToObject(o, "value", num_or_null(ci.value));
    cJSON *a = cJSON_AddArrayToObject(o, "ci95");
    cJSON_AddItemToArray(a, num_or_null(ci.lo));
    cJSON_AddItemToArray(a, num_or_null(ci.hi));
    cJSON_AddNumberToObject(o, "n_examples", (double)ci.n);
}

void rep_boot_json(cJSON *sum, const rep_boot *b) {
    cJSON *o = cJSON_AddObjectToObject(sum, "bootstrap");
    cJSON_AddNumberToObject(o, "reps", b->reps);
    cJSON_AddNumberToObject(o, "seed", (double)b->seed);
    cJSON_AddNumberToObject(o, "level", REP_LEVEL);
    cJSON_AddStringToObject(o, "resampled", "examples");
}

void rep_col_add(rep_col *c, double num, double den) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        double *a = realloc(c->num, cap * sizeof *a);
        if (a) c->num = a;
        double *b = a ? realloc(c->den, cap * sizeof *b) : NULL;
        if (!a || !b) cli_fatal("out of memory");
        c->den = b;
        c->cap = cap;
    }
    c->num[c->n] = num;
    c->den[c->n++] = den;
}

rep_ci rep_col_ci(const rep_boot *b, const rep_col *c) { return rep_ci_of(b, c->num, c->den, c->n); }

void rep_col_free(rep_col *c) {
    free(c->num);
    free(c->den);
    memset(c, 0, sizeof *c);
}
