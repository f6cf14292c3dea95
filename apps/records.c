/* records.c: what a valid journal record of each experiment holds (journal.h). Every field a
 * command reads back is checked for type, range and length here, so the tables built from a
 * journal never index, allocate or compare with an unchecked value. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "journal.h"

typedef struct chk {
    char *msg;
    size_t cap;
} chk;

static bool bad(chk *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(chk *c, const char *field, const char *fmt, ...) {
    int k = snprintf(c->msg, c->cap, "field '%s': ", field);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < c->cap) vsnprintf(c->msg + k, c->cap - (size_t)k, fmt, ap);
    va_end(ap);
    return false;
}

/* a probability computed in float may round a little above 1 */
#define P1 1.0001

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static bool is_int(const cJSON *x, double lo, double hi) {
    return cJSON_IsNumber(x) && x->valuedouble == floor(x->valuedouble) && x->valuedouble >= lo &&
           x->valuedouble <= hi;
}

/* integer in [lo, hi]; absent is an error unless optional */
static bool f_int(chk *c, const cJSON *o, const char *k, double lo, double hi, bool optional) {
    const cJSON *x = get(o, k);
    if (!x && optional) return true;
    if (!is_int(x, lo, hi)) return bad(c, k, "expected an integer in [%.0f, %.0f]", lo, hi);
    return true;
}

/* finite number in [lo, hi]; null allowed when nullable (cJSON writes NaN as null) */
static bool f_num(chk *c, const cJSON *o, const char *k, double lo, double hi, bool nullable) {
    const cJSON *x = get(o, k);
    if (nullable && cJSON_IsNull(x)) return true;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < lo || x->valuedouble > hi)
        return bad(c, k, "expected a number in [%g, %g]%s", lo, hi, nullable ? " or null" : "");
    return true;
}

static bool f_str(chk *c, const cJSON *o, const char *k, bool optional, bool nullable) {
    const cJSON *x = get(o, k);
    if ((!x && optional) || (nullable && cJSON_IsNull(x))) return true;
    if (!cJSON_IsString(x)) return bad(c, k, "expected a string%s", nullable ? " or null" : "");
    return true;
}

static bool f_bool(chk *c, const cJSON *o, const char *k, bool optional, bool nullable) {
    const cJSON *x = get(o, k);
    if ((!x && optional) || (nullable && cJSON_IsNull(x))) return true;
    if (!cJSON_IsBool(x)) return bad(c, k, "expected true or false%s", nullable ? " or null" : "");
    return true;
}

/* array of integers in [lo, hi]; len >= 0: exactly that many */
static bool f_ints(chk *c, const cJSON *o, const char *k, double lo, double hi, long len) {
    const cJSON *a = get(o, k), *x;
    if (!cJSON_IsArray(a)) return bad(c, k, "expected an array of integers");
    long n = 0;
    cJSON_ArrayForEach(x, a) {
        if (!is_int(x, lo, hi)) return bad(c, k, "item %ld: expected an integer in [%.0f, %.0f]", n, lo, hi);
        n++;
    }
    if (len >= 0 && n != len) return bad(c, k, "expected %ld items, found %ld", len, n);
    return true;
}

/* rows: an array of arrays of `width` items; item q of a row is an integer in [lo[q], hi[q]]
 * when kind[q] == 'i', a finite number or null when 'n', a number in [0, 1] when 'p' */
static bool f_rows(chk *c, const cJSON *o, const char *k, long width, const char *kind, const double *lo,
                   const double *hi) {
    const cJSON *a = get(o, k), *row, *x;
    if (!cJSON_IsArray(a)) return bad(c, k, "expected an array of rows");
    long r = 0;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != width)
            return bad(c, k, "row %ld: expected an array of %ld items", r, width);
        long q = 0;
        cJSON_ArrayForEach(x, row) {
            char kq = kind[q < (long)strlen(kind) ? q : (long)strlen(kind) - 1];
            double l = kq == 'i' ? lo[q] : 0, h = kq == 'i' ? hi[q] : 1;
            bool ok = kq == 'i' ? is_int(x, l, h)
                    : kq == 'p' ? cJSON_IsNull(x) || (cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= P1)
                                : cJSON_IsNull(x) || (cJSON_IsNumber(x) && isfinite(x->valuedouble));
            if (!ok)
                return kq == 'i' ? bad(c, k, "row %ld item %ld: expected an integer in [%.0f, %.0f]", r, q, l, h)
                                 : bad(c, k, "row %ld item %ld: expected a number%s or null", r, q,
                                       kq == 'p' ? " in [0, 1]" : "");
            q++;
        }
        r++;
    }
    return true;
}

static const double BIG = 9007199254740991.0; /* counts: any exact double */

static bool common(chk *c, const cJSON *r, const jr_limits *lim) {
    return f_int(c, r, "line", 1, BIG, false) && f_int(c, r, "prompt_tokens", 1, BIG, false);
}

bool jr_check_guide(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    chk c = {msg, cap};
    double V = lim->vocab ? lim->vocab - 1.0 : 0;
    if (!f_str(&c, r, "example", false, false) || !f_str(&c, r, "cell", false, false) ||
        !f_str(&c, r, "condition", false, false) || !f_str(&c, r, "response", false, false) ||
        !f_str(&c, r, "ttt", false, false) || !f_str(&c, r, "reused_from", true, false) ||
        !f_str(&c, r, "predicted", true, true) || !f_bool(&c, r, "correct", true, true) ||
        !f_bool(&c, r, "stopped", false, false) || !f_int(&c, r, "prompt_tokens", 1, lim->ctx_len, false) ||
        !f_int(&c, r, "tokens", 0, lim->ctx_len, false) || !f_num(&c, r, "temperature", 0, 100, false) ||
        !f_num(&c, r, "alpha", 0, 10, true) || !f_num(&c, r, "kl_sum", -HUGE_VAL, HUGE_VAL, true) ||
        !f_int(&c, r, "changed", 0, lim->ctx_len, false) || !f_int(&c, r, "target_forwards", 0, BIG, false) ||
        !f_int(&c, r, "draft_calls", 0, BIG, false) || !f_num(&c, r, "prefill_s", 0, HUGE_VAL, false) ||
        !f_num(&c, r, "decode_s", 0, HUGE_VAL, false))
        return false;
    const char *cond = get(r, "condition")->valuestring;
    if (strcmp(cond, "guided") && strcmp(cond, "null") && strcmp(cond, "plain") && strcmp(cond, "adaptive") &&
        strcmp(cond, "topk"))
        return bad(&c, "condition", "expected guided, null, plain, adaptive or topk, got '%.60s'", cond);
    if (!f_ints(&c, r, "ids", 0, V, (long)get(r, "tokens")->valuedouble)) return false;
    /* per_token (guided conditions): target_argmax, guided_argmax, alpha applied, p_target,
     * p_draft, p_target_pref, p_draft_pref; one row per token */
    if (get(r, "per_token")) {
        const double lo[7] = {0, 0, 0, 0, 0, 0, 0}, hi[7] = {V, V, 0, 0, 0, 0, 0};
        if (!f_rows(&c, r, "per_token", 7, "iinpppp", lo, hi)) return false;
        if (cJSON_GetArraySize(get(r, "per_token")) != (int)get(r, "tokens")->valuedouble)
            return bad(&c, "per_token", "expected one row per token");
    }
    if (get(r, "changed")->valuedouble > get(r, "tokens")->valuedouble)
        return bad(&c, "changed", "more changed tokens than tokens");
    /* the id names the cell and the example: "<cell>/<example>" */
    const char *id = get(r, "id")->valuestring, *cell = get(r, "cell")->valuestring,
               *ex = get(r, "example")->valuestring;
    size_t lc = strlen(cell);
    if (strncmp(id, cell, lc) || id[lc] != '/' || strcmp(id + lc + 1, ex))
        return bad(&c, "id", "expected '<cell>/<example>' from fields 'cell' and 'example'");
    return true;
}

bool jr_check_diagnose(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    chk c = {msg, cap};
    if (!common(&c, r, lim) || !f_int(&c, r, "answer_tokens", 0, lim->ctx_len, false) ||
        !f_str(&c, r, "skipped", true, false))
        return false;
    if (get(r, "skipped")) return true;
    double C = lim->ctx_len, V = lim->vocab ? lim->vocab - 1.0 : 0, B = lim->block ? lim->block - 1.0 : 0;
    /* pos, block, block_pos, gold, p_t, rank_t, (p_d, rank_d) x 3 modes */
    const double lo[12] = {0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1};
    const double hi[12] = {C, C, B, V, 1, V + 1, 1, V + 1, 1, V + 1, 1, V + 1};
    const char *kind = "iiiipipipipi";
    /* rank columns of the draft may be null (a mode not run): check them as 'i' only when set */
    const cJSON *a = get(r, "tokens"), *row;
    if (!cJSON_IsArray(a)) return bad(&c, "tokens", "expected an array of rows");
    long n = 0;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != 12)
            return bad(&c, "tokens", "row %ld: expected an array of 12 items", n);
        for (int q = 0; q < 12; q++) {
            const cJSON *x = cJSON_GetArrayItem(row, q);
            bool nullable = q >= 6;
            if (nullable && cJSON_IsNull(x)) continue;
            bool ok = kind[q] == 'i' ? is_int(x, lo[q], hi[q])
                                     : cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= P1;
            if (!ok)
                return bad(&c, "tokens", "row %ld item %d: expected %s in [%.0f, %.0f]%s", n, q,
                           kind[q] == 'i' ? "an integer" : "a probability", lo[q], hi[q], nullable ? " or null" : "");
        }
        n++;
    }
    if (n > get(r, "answer_tokens")->valuedouble)
        return bad(&c, "tokens", "%ld rows for %.0f answer tokens", n, get(r, "answer_tokens")->valuedouble);
    return true;
}

bool jr_check_probe(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    chk c = {msg, cap};
    if (!common(&c, r, lim) || !f_str(&c, r, "skipped", true, false)) return false;
    double C = lim->ctx_len, V = lim->vocab ? lim->vocab - 1.0 : 0, B = lim->block;
    bool skipped = get(r, "skipped") != NULL;
    if (skipped && !get(r, "generated_tokens")) return true; /* longer than the context */
    if (!f_int(&c, r, "generated_tokens", 0, C, false) || !f_bool(&c, r, "stopped", false, false) ||
        !f_num(&c, r, "gen_s", 0, HUGE_VAL, false) ||
        !f_ints(&c, r, "reference", 0, V, (long)get(r, "generated_tokens")->valuedouble))
        return false;
    if (skipped) return true;
    if (!f_num(&c, r, "prompt_s", 0, HUGE_VAL, false) || !f_num(&c, r, "blocks_s", 0, HUGE_VAL, false) ||
        !f_num(&c, r, "mc_s", 0, HUGE_VAL, false))
        return false;
    long nt = lim->ntemps;
    /* positions: block, block_pos, position, token, kl[nt], tvd[nt], base_tvd */
    long wp = 4 + 2 * nt + 1;
    double lo[4] = {0, 0, 0, 0}, hi[4] = {C, B, C, V};
    char kp[80] = "iiii";
    for (long q = 0; q < nt; q++) strcat(kp, "n");
    for (long q = 0; q < nt + 1; q++) strcat(kp, "p");
    if (!f_rows(&c, r, "positions", wp, kp, lo, hi)) return false;
    /* blocks: block, start, positions, product[nt], sim_accept[nt], logw_mean[nt], logw_std[nt] */
    double lob[3] = {0, 0, 0}, hib[3] = {C, C, B};
    char kb[80] = "iiin";
    if (!f_rows(&c, r, "blocks", 3 + 4 * nt, kb, lob, hib)) return false;
    /* chains (absent in journals written before): block, (accepts, changes, distinct, windows,
     * moved1, moved3, changed1)[nt], one row per block */
    if (get(r, "chains")) {
        double loc[1 + 7 * 8] = {0}, hic[1 + 7 * 8];
        char kc[2] = "i";
        for (int q = 0; q < 1 + 7 * 8; q++) hic[q] = q ? BIG : C;
        if (nt > 8) return bad(&c, "chains", "more than 8 temperatures");
        if (!f_rows(&c, r, "chains", 1 + 7 * nt, kc, loc, hic)) return false;
        if (cJSON_GetArraySize(get(r, "chains")) != cJSON_GetArraySize(get(r, "blocks")))
            return bad(&c, "chains", "expected one row per block");
    }
    /* the reference generation graded against the record's answer (absent: not graded) */
    const cJSON *g = get(r, "graded");
    if (g && (!cJSON_IsObject(g) || !f_str(&c, g, "answer", true, true) || !f_bool(&c, g, "correct", false, false)))
        return cJSON_IsObject(g) ? false : bad(&c, "graded", "expected an object");
    return true;
}

static bool power_method(chk *c, const cJSON *x, const jr_limits *lim, bool power) {
    double V = lim->vocab ? lim->vocab - 1.0 : 0;
    if (!f_str(c, x, "text", false, false) || !f_str(c, x, "answer", true, true) ||
        !f_bool(c, x, "correct", true, false) || !f_bool(c, x, "stopped", false, false) ||
        !f_int(c, x, "tokens", 0, lim->ctx_len, false) || !f_int(c, x, "target_forwards", 0, BIG, false) ||
        !f_num(c, x, "wall_s", 0, HUGE_VAL, false) || !f_num(c, x, "tokens_per_s", 0, HUGE_VAL, true) ||
        !f_ints(c, x, "ids", 0, V, (long)get(x, "tokens")->valuedouble))
        return false;
    if (!power) return true;
    if (!f_num(c, x, "sum_logp", -HUGE_VAL, HUGE_VAL, true) || !f_int(c, x, "blocks", 0, lim->ctx_len, false) ||
        !f_int(c, x, "attempts", 0, BIG, false) || !f_int(c, x, "accepts", 0, BIG, false) ||
        !f_num(c, x, "acceptance", 0, 1, true) || !f_int(c, x, "target_rows", 0, BIG, false) ||
        !f_int(c, x, "draft_calls", 0, BIG, false) || !f_int(c, x, "tokens_proposed", 0, BIG, false))
        return false;
    long nb = (long)get(x, "blocks")->valuedouble;
    if (!f_ints(c, x, "block_attempts", 0, BIG, nb) || !f_ints(c, x, "block_accepts", 0, BIG, nb) ||
        !f_ints(c, x, "step_attempts", 0, BIG, -1) || !f_ints(c, x, "step_accepts", 0, BIG, -1))
        return false;
    if (cJSON_GetArraySize(get(x, "step_attempts")) > 1 << 20 || cJSON_GetArraySize(get(x, "step_accepts")) > 1 << 20)
        return bad(c, "step_attempts", "more than 2^20 MCMC steps");
    if (get(x, "accepts")->valuedouble > get(x, "attempts")->valuedouble)
        return bad(c, "accepts", "more accepts than attempts");
    /* the moves beside the acceptance (absent in journals written before they were recorded) */
    if (!f_int(c, x, "changes", 0, get(x, "accepts")->valuedouble, true) ||
        !f_int(c, x, "tokens_changed", 0, BIG, true) ||
        !f_int(c, x, "distinct_proposals", 0, get(x, "attempts")->valuedouble, true))
        return false;
    return true;
}

bool jr_check_power(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    chk c = {msg, cap};
    static const char *const methods[] = {"power", "greedy", "sample", "lowtemp"};
    if (!common(&c, r, lim) || !f_str(&c, r, "gold", true, false) || !f_str(&c, r, "gold_answer", true, false))
        return false;
    if (!cJSON_IsObject(get(r, "power"))) return bad(&c, "power", "expected an object");
    for (int m = 0; m < 4; m++) {
        const cJSON *x = get(r, methods[m]);
        if (!x && m) continue;
        if (!cJSON_IsObject(x)) return bad(&c, methods[m], "expected an object");
        char inner[200] = "";
        chk ci = {inner, sizeof inner};
        if (!power_method(&ci, x, lim, m == 0)) return bad(&c, methods[m], "%s", inner);
    }
    return true;
}

/* ttt: one measurement of the draft (vkd_ttt_metrics), the baseline or after a setting */
static bool ttt_measure(chk *c, const cJSON *x, const jr_limits *lim) {
    double C = lim->ctx_len, V = lim->vocab ? lim->vocab - 1.0 : 0;
    if (!cJSON_IsObject(x)) return bad(c, "baseline", "expected an object");
    if (!f_num(c, x, "tau", 0, C, true) || !f_int(c, x, "spec_steps", 0, C, false) ||
        !f_int(c, x, "generated", 0, C, false) || !f_bool(c, x, "stopped", false, false) ||
        !f_num(c, x, "spec_s", 0, HUGE_VAL, false) || !f_int(c, x, "tf_tokens", 0, C, false) ||
        !f_num(c, x, "p_mean", 0, 1, true) || !f_num(c, x, "rank_mean", 1, V + 1, true) ||
        !f_num(c, x, "logp_mean", -HUGE_VAL, 0, true) ||
        !f_ints(c, x, "ids", 0, V, (long)get(x, "generated")->valuedouble))
        return false;
    return true;
}

bool jr_check_ttt(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    chk c = {msg, cap};
    /* line 0: a context given with --chat or --ids, not read from a dataset */
    if (!f_int(&c, r, "line", 0, BIG, false) || !f_int(&c, r, "prompt_tokens", 1, BIG, false) ||
        !f_str(&c, r, "skipped", true, false) ||
        !f_int(&c, r, "context_tokens", 0, lim->ctx_len ? lim->ctx_len : BIG, false))
        return false;
    if (get(r, "skipped")) return true;
    if (!ttt_measure(&c, get(r, "baseline"), lim)) return false;
    const cJSON *sets = get(r, "settings"), *row, *l;
    if (!cJSON_IsArray(sets)) return bad(&c, "settings", "expected an array");
    cJSON_ArrayForEach(row, sets) {
        if (!ttt_measure(&c, row, lim) || !f_int(&c, row, "steps", 1, BIG, false) ||
            !f_num(&c, row, "lr", 0, HUGE_VAL, false) || !f_int(&c, row, "rank", 1, BIG, false) ||
            !f_num(&c, row, "features_s", 0, HUGE_VAL, false) || !f_num(&c, row, "train_s", 0, HUGE_VAL, false) ||
            !f_int(&c, row, "train_rows", 0, BIG, false))
            return false;
        const cJSON *ls = get(row, "losses");
        if (!cJSON_IsArray(ls) || cJSON_GetArraySize(ls) > get(row, "steps")->valuedouble)
            return bad(&c, "losses", "expected an array of at most 'steps' numbers");
        cJSON_ArrayForEach(l, ls)
            if (!cJSON_IsNumber(l) || !isfinite(l->valuedouble) || l->valuedouble < 0)
                return bad(&c, "losses", "expected finite non-negative numbers");
    }
    return true;
}
