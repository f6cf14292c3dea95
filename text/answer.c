/* answer.c: final-answer extraction and scoring (vkd_answer.h says which rules and where
 * they come from). The MATH normalisers are line-by-line ports of the reference's Python
 * (grader_utils/math_normalize.py, math_grader.py); the names of the static helpers are the
 * Python names without the leading underscore, so the two can be read side by side.
 * Strings are NUL-terminated byte strings; "character" below means a UTF-8 code point (an
 * invalid byte counts as one), which is what Python's len() and s[0] see. */
#include "vkd_answer.h"
#include "answer_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t count_of(const char *s, const char *sub) {
    size_t n = 0, l = strlen(sub);
    const char *end = s + strlen(s);
    for (const char *p = ans_find(s, end, sub); p; p = ans_find(p + l, end, sub)) n++;
    return n;
}

/* re.search(r"^\\text\{(?P<text>.+?)\}$", s): the group as a new string, NULL when no match
 * (or no memory; the callers then keep s, which is what no match means too). '$' also
 * matches before a final newline and '.' never matches a newline. */
static char *text_group(const char *s) {
    size_t n = strlen(s), close;
    if (strncmp(s, "\\text{", 6)) return NULL;
    if (n >= 8 && s[n - 1] == '}') close = n - 1;
    else if (n >= 9 && s[n - 1] == '\n' && s[n - 2] == '}') close = n - 2;
    else return NULL;
    if (close <= 6 || memchr(s + 6, '\n', close - 6)) return NULL;
    return ans_dup_n(s + 6, close - 6);
}

/* ---- Python float() / int() ---------------------------------------------------------------- */

/* float(s) for ASCII digits (underscores between digits, exponents, inf/nan, surrounding
 * whitespace). false when Python raises ValueError. */
static bool py_float(const char *s, double *out) {
    size_t a, b;
    ans_strip_span(s, strlen(s), &a, &b);
    const char *p = s + a, *e = s + b;
    if (p == e) return false;
    char *buf = malloc((size_t)(e - p) + 1);
    if (!buf) return false;
    size_t n = 0;
    bool ok = false;
    if (*p == '+' || *p == '-') buf[n++] = *p++;
    size_t rest = (size_t)(e - p);
    if ((rest == 3 && !strncasecmp(p, "inf", 3)) || (rest == 8 && !strncasecmp(p, "infinity", 8))) {
        *out = buf[0] == '-' ? -INFINITY : INFINITY;
        free(buf);
        return true;
    }
    if (rest == 3 && !strncasecmp(p, "nan", 3)) {
        *out = NAN;
        free(buf);
        return true;
    }
    /* digitpart: digit (["_"] digit)* */
#define DIGITPART(got)                                                                   \
    do {                                                                                 \
        got = 0;                                                                         \
        while (p < e && ans_is_digit(*p)) {                                                  \
            buf[n++] = *p++;                                                             \
            got++;                                                                       \
            if (p + 1 < e && *p == '_' && ans_is_digit(p[1])) p++;                           \
        }                                                                                \
    } while (0)
    size_t ip, fp = 0, xp;
    DIGITPART(ip);
    if (p < e && *p == '.') {
        buf[n++] = *p++;
        DIGITPART(fp);
    }
    if (ip + fp == 0) goto done;
    if (p < e && (*p == 'e' || *p == 'E')) {
        buf[n++] = *p++;
        if (p < e && (*p == '+' || *p == '-')) buf[n++] = *p++;
        DIGITPART(xp);
        if (!xp) goto done;
    }
#undef DIGITPART
    if (p != e) goto done;
    buf[n] = 0;
    *out = strtod(buf, NULL);
    ok = true;
done:
    free(buf);
    return ok;
}

/* str(int(x)) for a finite integral double. */
static char *int_string(double x) {
    char buf[400];
    if (x == 0) x = 0; /* no "-0" */
    snprintf(buf, sizeof buf, "%.0f", x);
    return strdup(buf);
}

/* _is_int(float): abs(x - int(round(x))) <= 1e-7 (False for inf and nan). */
static bool is_int_value(double x) { return isfinite(x) && fabs(x - nearbyint(x)) <= 1e-7; }

/* ---- math_normalize.py (Hendrycks MATH normalize_answer) ----------------------------------- */

enum { PY_OK = 0, PY_RAISED = 1, PY_NOMEM = -1 };

static int fix_fracs(char **io) {
    const char *in = *io, *end = in + strlen(in), *p = ans_find(in, end, "\\frac");
    if (!p) return PY_OK;
    sb b = {0};
    ans_sb_put(&b, in, (size_t)(p - in));
    while (p) {
        const char *sub = p + 5, *next = ans_find(sub, end, "\\frac");
        size_t len = (size_t)((next ? next : end) - sub);
        ans_sb_puts(&b, "\\frac");
        if (len == 0) { free(ans_sb_done(&b)); return PY_RAISED; } /* substr[0]: IndexError */
        if (sub[0] == '{') {
            ans_sb_put(&b, sub, len);
        } else {
            size_t la = ans_cp_len(sub);
            if (la >= len) { free(ans_sb_done(&b)); return PY_OK; } /* assert len >= 2: return string */
            size_t lb = ans_cp_len(sub + la);
            ans_sb_putc(&b, '{');
            ans_sb_put(&b, sub, la);
            if (!(lb == 1 && sub[la] == '{')) {
                ans_sb_puts(&b, "}{");
                ans_sb_put(&b, sub + la, lb);
                ans_sb_putc(&b, '}');
            } else {
                ans_sb_puts(&b, "}{");
            }
            ans_sb_put(&b, sub + la + lb, len - la - lb);
        }
        p = next;
    }
    char *s = ans_sb_done(&b);
    if (!s) return PY_NOMEM;
    free(*io);
    *io = s;
    return PY_OK;
}

static bool canonical_int(const char *s, size_t n) {
    if (n && s[0] == '-') { s++; n--; if (n && s[0] == '0') return false; }
    if (!n || (s[0] == '0' && n > 1)) return false;
    for (size_t i = 0; i < n; i++)
        if (!ans_is_digit(s[i])) return false;
    return true;
}

static int fix_a_slash_b(char **io) {
    const char *s = *io, *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/')) return PY_OK;
    size_t na = (size_t)(slash - s), nb = strlen(slash + 1);
    /* int(a), int(b), then string == "{}/{}".format(a, b): only canonical integers pass */
    if (!canonical_int(s, na) || !canonical_int(slash + 1, nb)) return PY_OK;
    sb b = {0};
    ans_sb_puts(&b, "\\frac{");
    ans_sb_put(&b, s, na);
    ans_sb_puts(&b, "}{");
    ans_sb_put(&b, slash + 1, nb);
    ans_sb_putc(&b, '}');
    char *r = ans_sb_done(&b);
    if (!r) return PY_NOMEM;
    free(*io);
    *io = r;
    return PY_OK;
}

static int remove_right_units(char **io) {
    size_t k = count_of(*io, "\\text{ ");
    if (k == 0) return PY_OK;
    if (k > 1) return PY_RAISED; /* assert len(splits) == 2 */
    *(char *)ans_find(*io, *io + strlen(*io), "\\text{ ") = 0;
    return PY_OK;
}

static int fix_sqrt(char **io) {
    const char *in = *io, *end = in + strlen(in), *p = ans_find(in, end, "\\sqrt");
    if (!p) return PY_OK;
    sb b = {0};
    ans_sb_put(&b, in, (size_t)(p - in));
    while (p) {
        const char *sp = p + 5, *next = ans_find(sp, end, "\\sqrt");
        size_t len = (size_t)((next ? next : end) - sp);
        if (len == 0) { free(ans_sb_done(&b)); return PY_RAISED; } /* split[0]: IndexError */
        if (sp[0] != '{') {
            size_t la = ans_cp_len(sp);
            ans_sb_puts(&b, "\\sqrt{");
            ans_sb_put(&b, sp, la);
            ans_sb_putc(&b, '}');
            ans_sb_put(&b, sp + la, len - la);
        } else {
            ans_sb_puts(&b, "\\sqrt");
            ans_sb_put(&b, sp, len);
        }
        p = next;
    }
    char *s = ans_sb_done(&b);
    if (!s) return PY_NOMEM;
    free(*io);
    *io = s;
    return PY_OK;
}

/* _strip_string on *io (owned). PY_RAISED where the Python raises. */
static int strip_string(char **io) {
    char *s = *io;
    int r;
#define REPL(a, b) do { s = ans_replace_all(s, a, b); if (!s) { *io = NULL; return PY_NOMEM; } } while (0)
#define CALL(f) do { *io = s; r = f(io); s = *io; if (r) return r; } while (0)
    REPL("\n", "");
    REPL("\\!", "");
    REPL("\\\\", "\\");
    REPL("tfrac", "frac");
    REPL("dfrac", "frac");
    REPL("\\left", "");
    REPL("\\right", "");
    REPL("^{\\circ}", "");
    REPL("^\\circ", "");
    REPL("\\$", "");
    CALL(remove_right_units);
    REPL("\\%", "");
    REPL("\\%", ""); /* the Python's "\%" is the same string */
    REPL(" .", " 0.");
    REPL("{.", "{0.");
    *io = s;
    if (!s[0]) return PY_OK;
    if (s[0] == '.') {
        size_t n = strlen(s);
        char *t = malloc(n + 2);
        if (!t) return PY_NOMEM;
        t[0] = '0';
        memcpy(t + 1, s, n + 1);
        free(s);
        s = t;
    }
    /* "k = " prefixes: exactly one '=' with at most 2 characters before it */
    char *eq = strchr(s, '=');
    if (eq && !strchr(eq + 1, '=')) {
        size_t chars = 0;
        for (const char *p = s; p < eq && chars <= 2; p += ans_cp_len(p)) chars++;
        if (chars <= 2) memmove(s, eq + 1, strlen(eq + 1) + 1);
    }
    CALL(fix_sqrt);
    REPL(" ", "");
    CALL(fix_fracs);
    if (!strcmp(s, "0.5")) {
        free(s);
        s = strdup("\\frac{1}{2}");
        if (!s) { *io = NULL; return PY_NOMEM; }
    }
    CALL(fix_a_slash_b);
    *io = s;
    return PY_OK;
#undef REPL
#undef CALL
}

char *vkd_answer_strip_string(const char *answer) {
    if (!answer) return NULL;
    char *a = ans_py_strip(answer);
    if (!a) return NULL;
    char *g = text_group(a);
    if (g) {
        free(a);
        a = ans_py_strip(g);
        free(g);
        if (!a) return NULL;
    }
    char *s = strdup(a);
    if (!s) { free(a); return NULL; }
    int r = strip_string(&s);
    if (r == PY_OK) { free(a); return s; }
    free(s);
    if (r == PY_RAISED) return a; /* the except branch returns the answer as it was */
    free(a);
    return NULL;
}

/* ---- math_grader.py ------------------------------------------------------------------------ */

static const char *const unit_words[] = {
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week",
    "month", "year", "foot", "feet", "inch", "yard",
};

/* re.sub(f"{unit}(es)?(s)? *(\^[0-9]+)?", "", s) */
static char *remove_unit(char *s, const char *unit) {
    if (!s) return NULL;
    const char *end = s + strlen(s), *p = s, *hit;
    if (!ans_find(s, end, unit)) return s;
    size_t ul = strlen(unit);
    sb b = {0};
    while ((hit = ans_find(p, end, unit))) {
        ans_sb_put(&b, p, (size_t)(hit - p));
        const char *q = hit + ul;
        if (q[0] == 'e' && q[1] == 's') q += 2;
        if (q[0] == 's') q++;
        while (*q == ' ') q++;
        if (q[0] == '^' && ans_is_digit(q[1])) {
            q++;
            while (ans_is_digit(*q)) q++;
        }
        p = q;
    }
    ans_sb_puts(&b, p);
    free(s);
    return ans_sb_done(&b);
}

/* re.sub(pattern, "", s) for "^ *\\circ" (circ) or ",\\! *" (not circ) */
static char *remove_circ_or_thinspace(char *s, bool circ) {
    if (!s) return NULL;
    sb b = {0};
    const char *p = s;
    while (*p) {
        const char *q = p;
        bool hit = false;
        if (circ && *q == '^') {
            q++;
            while (*q == ' ') q++;
            hit = !strncmp(q, "\\circ", 5);
            q += 5;
        } else if (!circ && !strncmp(q, ",\\!", 3)) {
            q += 3;
            while (*q == ' ') q++;
            hit = true;
        }
        if (hit) { p = q; continue; }
        size_t k = ans_cp_len(p);
        ans_sb_put(&b, p, k);
        p += k;
    }
    free(s);
    return ans_sb_done(&b);
}

/* "- *" -> "-" (mode 0); "([0-9]) +([0-9])" -> "\1+\2" (mode 1) */
static char *fix_minus_or_mixed(char *s, int mode) {
    if (!s) return NULL;
    sb b = {0};
    const char *p = s;
    while (*p) {
        if (mode == 0 && *p == '-') {
            ans_sb_putc(&b, '-');
            p++;
            while (*p == ' ') p++;
            continue;
        }
        if (mode == 1 && ans_is_digit(*p) && p[1] == ' ') {
            const char *q = p + 1;
            while (*q == ' ') q++;
            if (ans_is_digit(*q)) {
                ans_sb_putc(&b, *p);
                ans_sb_putc(&b, '+');
                ans_sb_putc(&b, *q);
                p = q + 1;
                continue;
            }
        }
        size_t k = ans_cp_len(p);
        ans_sb_put(&b, p, k);
        p += k;
    }
    free(s);
    return ans_sb_done(&b);
}

/* One pass of re.sub(r"(\d)(,)(\d\d\d)($|\D)", r"\1\3\4", s). */
static char *comma_pass(const char *s) {
    size_t n = strlen(s), i = 0;
    sb b = {0};
    while (i < n) {
        if (ans_is_digit(s[i]) && s[i + 1] == ',' && i + 4 < n && ans_is_digit(s[i + 2]) && ans_is_digit(s[i + 3]) &&
            ans_is_digit(s[i + 4])) {
            size_t j = i + 5, k = 0;
            bool end = j == n || (j == n - 1 && s[j] == '\n');
            if (!end && !ans_is_digit(s[j])) k = ans_cp_len(s + j);
            if (end || k) {
                ans_sb_putc(&b, s[i]);
                ans_sb_put(&b, s + i + 2, 3);
                ans_sb_put(&b, s + j, k);
                i = j + k;
                continue;
            }
        }
        size_t k = ans_cp_len(s + i);
        ans_sb_put(&b, s + i, k);
        i += k;
    }
    return ans_sb_done(&b);
}

static char *strip_properly_formatted_commas(const char *expr) {
    char *s = strdup(expr);
    while (s) {
        char *t = comma_pass(s);
        if (!t || !strcmp(t, s)) { free(s); return t; }
        free(s);
        s = t;
    }
    return NULL;
}

static bool str_is_int(const char *x) {
    char *t = strip_properly_formatted_commas(x);
    double v;
    bool r = t && py_float(t, &v) && is_int_value(v);
    free(t);
    return r;
}

/* str(_str_to_int(x)): int(float(x without commas)), truncating */
static char *str_to_int(const char *x) {
    char *t = ans_replace_all(strdup(x), ",", "");
    double v = 0;
    if (!t) return NULL;
    bool ok = py_float(t, &v);
    free(t);
    return ok ? int_string(trunc(v)) : NULL;
}

char *vkd_answer_normalize(const char *expr) {
    if (!expr) return NULL;
    char *s = text_group(expr);
    if (!s) s = strdup(expr);
    s = ans_replace_all(s, "\\%", "%");
    s = ans_replace_all(s, "\\$", "$");
    s = ans_replace_all(s, "$", "");
    s = ans_replace_all(s, "%", "");
    s = ans_replace_all(s, " or ", " , ");
    s = ans_replace_all(s, " and ", " , ");
    s = ans_replace_all(s, "million", "*10^6");
    s = ans_replace_all(s, "billion", "*10^9");
    s = ans_replace_all(s, "trillion", "*10^12");
    for (size_t k = 0; k < sizeof unit_words / sizeof *unit_words; k++) s = remove_unit(s, unit_words[k]);
    s = remove_circ_or_thinspace(s, true);
    if (!s) return NULL;
    size_t n = strlen(s);
    if (n > 0 && s[0] == '{' && s[n - 1] == '}') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = 0;
    }
    s = remove_circ_or_thinspace(s, false);
    if (!s) return NULL;
    double v;
    if (py_float(s, &v) && is_int_value(v)) {
        free(s);
        s = int_string(nearbyint(v));
        if (!s) return NULL;
    }
    if (strchr(s, '\\')) s = ans_parse_latex(s);
    s = fix_minus_or_mixed(s, 0);
    s = fix_minus_or_mixed(s, 1);
    s = ans_replace_all(s, " ", "");
    s = ans_replace_all(s, "{", "");
    s = ans_replace_all(s, "}", "");
    if (!s) return NULL;
    for (char *p = s; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (str_is_int(s)) {
        char *t = str_to_int(s);
        free(s);
        s = t;
    }
    return s;
}

/* _is_frac: re.search(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$", s) ('.' is any character but a newline) */
static bool is_frac(const char *s) {
    size_t n = strlen(s), i = 0;
    if (s[i] == '-') i++;
    size_t d = i;
    while (ans_is_digit(s[i])) i++;
    if (i == d) return false;
    if (s[i] != '/') {
        if (!s[i] || s[i] == '\n') return false;
        i += ans_cp_len(s + i);
        if (s[i] != '/') return false;
    }
    i++;
    while (s[i] == '0') i++;
    if (!(s[i] >= '1' && s[i] <= '9')) return false;
    while (ans_is_digit(s[i])) i++;
    size_t rest = n - i;
    if (rest == 0 || (rest == 1 && s[i] == '\n')) return true;
    if (s[i] == '\n') return false;
    size_t k = ans_cp_len(s + i);
    return rest == k || (rest == k + 1 && s[i + k] == '\n');
}

/* should_allow_eval(f"({g})-({a})"): at most 2 distinct (ASCII) letters besides sqrt and frac,
 * no "^{" "^(", no r"\^[0-9]+\^" or r"\^[0-9][0-9]+". */
static bool allow_eval(const char *g, const char *a) {
    sb b = {0};
    ans_sb_putc(&b, '(');
    ans_sb_puts(&b, g);
    ans_sb_puts(&b, ")-(");
    ans_sb_puts(&b, a);
    ans_sb_putc(&b, ')');
    char *e = ans_sb_done(&b);
    bool ok = e && !strstr(e, "^{") && !strstr(e, "^(");
    for (const char *p = e; ok && (p = strchr(p, '^')); p++) {
        const char *q = p + 1;
        while (ans_is_digit(*q)) q++;
        if (q - p > 2 || (q - p > 1 && *q == '^')) ok = false;
    }
    if (ok) {
        e = ans_replace_all(ans_replace_all(e, "sqrt", ""), "frac", "");
        bool seen[128] = {0};
        int letters = 0;
        for (const char *p = e; p && *p; p++)
            if (ans_is_alpha(*p) && !seen[(unsigned char)*p]) { seen[(unsigned char)*p] = true; letters++; }
        ok = e && letters <= 2;
    }
    free(e);
    return ok;
}

/* ---- grade_answer -------------------------------------------------------------------------- */

typedef struct elems {
    char **v;
    size_t n;
} elems;

static void elems_free(elems *e) {
    for (size_t i = 0; i < e->n; i++) free(e->v[i]);
    free(e->v);
}

static bool tuple_char(char c) { return c == '(' || c == ')' || c == '[' || c == ']'; }

/* split_tuple; false when out of memory */
static bool split_tuple(const char *expr, elems *out) {
    memset(out, 0, sizeof *out);
    char *e = strip_properly_formatted_commas(expr);
    if (!e) return false;
    size_t n = strlen(e);
    if (n == 0) { free(e); return true; }
    bool tuple = n > 2 && tuple_char(e[0]) && tuple_char(e[n - 1]);
    for (size_t i = 1; tuple && i + 1 < n; i++)
        if (tuple_char(e[i])) tuple = false;
    const char *a = tuple ? e + 1 : e, *end = tuple ? e + n - 1 : e + n;
    size_t cap = 1;
    if (tuple)
        for (const char *p = a; p < end; p++) cap += *p == ',';
    out->v = calloc(cap, sizeof *out->v);
    if (!out->v) { free(e); return false; }
    for (const char *p = a;;) {
        const char *c = tuple ? memchr(p, ',', (size_t)(end - p)) : NULL;
        const char *q = c ? c : end;
        size_t s0 = 0, s1 = (size_t)(q - p);
        if (tuple) ans_strip_span(p, (size_t)(q - p), &s0, &s1); /* a single element stays as is */
        if (!(out->v[out->n] = ans_dup_n(p + s0, s1 - s0))) { free(e); elems_free(out); return false; }
        out->n++;
        if (!c) break;
        p = c + 1;
    }
    free(e);
    return true;
}

/* start of the last character of s (n > 0 bytes) */
static size_t last_char(const char *s, size_t n) {
    size_t i = 0, last = 0;
    while (i < n) {
        last = i;
        i += ans_cp_len(s + i);
    }
    return last;
}

/* a[0] == b[0] and a[-1] == b[-1] for non-empty a and b */
static bool same_ends(const char *a, const char *b) {
    size_t la = ans_cp_len(a), lb = ans_cp_len(b), na = strlen(a), nb = strlen(b);
    if (la != lb || memcmp(a, b, la)) return false;
    size_t ea = last_char(a, na), eb = last_char(b, nb);
    return na - ea == nb - eb && !memcmp(a + ea, b + eb, na - ea);
}

bool vkd_answer_math_equal(const char *given, const char *gold) {
    if (!given || !gold) return false;
    bool eq = false;
    char *gm = vkd_answer_strip_string(gold), *am = vkd_answer_strip_string(given);
    if (gm && am && !strcmp(gm, am)) eq = true;
    free(gm);
    free(am);
    if (eq) return true;
    char *gn = vkd_answer_normalize(gold), *an = vkd_answer_normalize(given);
    if (!gn || !an) goto done;
    if (!strcmp(gn, an)) { eq = true; goto done; }
    if (!an[0]) goto done;
    elems ge, ae;
    if (!split_tuple(gn, &ge)) goto done;
    if (!split_tuple(an, &ae)) { elems_free(&ge); goto done; }
    if (ge.n > 1 && !same_ends(gn, an)) eq = false;
    else if (ge.n != ae.n) eq = false;
    else {
        eq = true;
        for (size_t i = 0; i < ge.n && eq; i++) {
            const char *g = ge.v[i], *a = ae.v[i];
            if (is_frac(g) && is_frac(a)) eq = !strcmp(g, a); /* unreduced fractions stay wrong */
            else if (str_is_int(g) != str_is_int(a)) eq = false;
            else eq = allow_eval(g, a) && (!strcmp(g, a) || ans_rational_equal(g, a)); /* for sympy */
        }
    }
    elems_free(&ge);
    elems_free(&ae);
done:
    free(gn);
    free(an);
    return eq;
}

/* ---- extraction ---------------------------------------------------------------------------- */

/* last occurrence of needle in s (case-sensitive unless icase), NULL when none */
static const char *last_of(const char *s, const char *needle, bool icase) {
    size_t l = strlen(needle);
    const char *last = NULL;
    if (!icase) {
        const char *end = s + strlen(s);
        for (const char *p = ans_find(s, end, needle); p; p = ans_find(p + 1, end, needle)) last = p;
        return last;
    }
    for (const char *p = s; *p; p++)
        if (tolower((unsigned char)*p) == needle[0] && !strncasecmp(p, needle, l)) last = p;
    return last;
}

char *vkd_answer_last_boxed(const char *text) {
    if (!text) return NULL;
    const char *idx = last_of(text, "\\boxed", false);
    if (!idx) idx = last_of(text, "\\fbox", false);
    if (!idx) return NULL;
    long open = 0;
    const char *close = NULL;
    for (const char *p = idx; *p; p++) {
        if (*p == '{') open++;
        if (*p == '}' && --open == 0) { close = p; break; }
    }
    if (!close) return NULL;
    /* remove_boxed (and its \fbox twin) */
    size_t pre = !strncmp(idx, "\\boxed{", 7) ? 7 : !strncmp(idx, "\\fbox{", 6) ? 6 : 0;
    if (!pre) return NULL;
    return ans_dup_n(idx + pre, (size_t)(close - idx) - pre);
}

/* what follows the last "answer is" (MATH fallback) */
static char *answer_is_math(const char *text) {
    const char *p = last_of(text, "answer is", true);
    if (!p) return NULL;
    p += 9;
    while (*p == ' ' || *p == '\t' || *p == ':') p++;
    const char *a = p, *e;
    if (*p == '$') {
        while (*a == '$') a++;
        e = strchr(a, '$');
        if (!e) e = a + strlen(a);
    } else {
        e = strchr(a, '\n');
        if (!e) e = a + strlen(a);
    }
    size_t s0, s1;
    ans_strip_span(a, (size_t)(e - a), &s0, &s1);
    if (s1 > s0 && a[s1 - 1] == '.') {
        s1--;
        size_t t0, t1;
        ans_strip_span(a + s0, s1 - s0, &t0, &t1);
        s1 = s0 + t1;
        s0 += t0;
    }
    return s1 > s0 ? ans_dup_n(a + s0, s1 - s0) : NULL;
}

static bool is_alnum(char c) { return ans_is_digit(c) || ans_is_alpha(c); }

/* The next GSM8K number in [*pos, end): its span [*a, *b); *pos moves past it. */
static bool next_number(const char *s, size_t end, size_t *pos, size_t *a, size_t *b) {
    for (size_t i = *pos; i < end; i++) {
        char c = s[i], prev = i ? s[i - 1] : ' ';
        size_t j;
        if (ans_is_digit(c)) j = i;
        else if (c == '-' && !is_alnum(prev) && i + 1 < end &&
                 (ans_is_digit(s[i + 1]) || (s[i + 1] == '.' && i + 2 < end && ans_is_digit(s[i + 2]))))
            j = i + 1;
        else if (c == '.' && !ans_is_digit(prev) && i + 1 < end && ans_is_digit(s[i + 1]))
            j = i;
        else
            continue;
        while (j < end && ans_is_digit(s[j])) j++;
        while (j + 3 < end && s[j] == ',' && ans_is_digit(s[j + 1]) && ans_is_digit(s[j + 2]) && ans_is_digit(s[j + 3]) &&
               (j + 4 == end || !ans_is_digit(s[j + 4])) && j > i && ans_is_digit(s[j - 1]))
            j += 4;
        if (j + 1 < end && s[j] == '.' && ans_is_digit(s[j + 1])) {
            j++;
            while (j < end && ans_is_digit(s[j])) j++;
        }
        *a = i;
        *b = j;
        *pos = j;
        return true;
    }
    *pos = end;
    return false;
}

static char *number_string(const char *s, size_t a, size_t b) {
    sb o = {0};
    for (size_t i = a; i < b; i++)
        if (s[i] != ',') ans_sb_putc(&o, s[i]);
    return ans_sb_done(&o);
}

/* first (or last) number in s[from, end) */
static char *find_number(const char *s, size_t from, size_t end, bool last) {
    size_t pos = from, a, b, la = 0, lb = 0;
    bool any = false;
    while (next_number(s, end, &pos, &a, &b)) {
        la = a;
        lb = b;
        any = true;
        if (!last) break;
    }
    return any ? number_string(s, la, lb) : NULL;
}

static char *extract_gsm8k(const char *text) {
    size_t n = strlen(text);
    const char *h = last_of(text, "####", false);
    if (h) {
        const char *nl = strchr(h, '\n');
        char *r = find_number(text, (size_t)(h - text) + 4, nl ? (size_t)(nl - text) : n, false);
        if (r) return r;
    }
    char *box = vkd_answer_last_boxed(text);
    if (box) {
        char *r = find_number(box, 0, strlen(box), true);
        if (r) { free(box); return r; }
        char *t = ans_py_strip(box);
        free(box);
        if (t && t[0]) return t;
        free(t);
    }
    const char *ai = last_of(text, "answer is", true);
    if (ai) {
        char *r = find_number(text, (size_t)(ai - text) + 9, n, false);
        if (r) return r;
    }
    return find_number(text, 0, n, true);
}

/* ---- public -------------------------------------------------------------------------------- */

vkd_answer_kind vkd_answer_kind_from_name(const char *name) {
    if (!name) return VKD_ANSWER_NONE;
    if (!strcasecmp(name, "gsm8k")) return VKD_ANSWER_GSM8K;
    if (!strcasecmp(name, "math500") || !strcasecmp(name, "math-500") || !strcasecmp(name, "math"))
        return VKD_ANSWER_MATH;
    return VKD_ANSWER_NONE;
}

const char *vkd_answer_kind_name(vkd_answer_kind kind) {
    return kind == VKD_ANSWER_GSM8K ? "gsm8k" : kind == VKD_ANSWER_MATH ? "math500" : "none";
}

char *vkd_answer_gold(vkd_answer_kind kind, const char *field) {
    if (!field) return NULL;
    char *r = NULL;
    if (kind == VKD_ANSWER_GSM8K) {
        const char *h = last_of(field, "####", false);
        if (!h) return NULL;
        r = ans_replace_all(ans_py_strip(h + 4), ",", "");
    } else if (kind == VKD_ANSWER_MATH) {
        r = ans_py_strip(field);
    }
    if (r && !r[0]) { free(r); r = NULL; }
    return r;
}

char *vkd_answer_extract(vkd_answer_kind kind, const char *text, unsigned flags) {
    if (!text) return NULL;
    if (kind == VKD_ANSWER_GSM8K) return extract_gsm8k(text);
    if (kind != VKD_ANSWER_MATH) return NULL;
    char *r = vkd_answer_last_boxed(text);
    if (!r && !(flags & VKD_ANSWER_BOXED_ONLY)) r = answer_is_math(text);
    return r;
}

bool vkd_answer_equal(vkd_answer_kind kind, const char *given, const char *gold) {
    if (!given || !gold) return false;
    if (kind == VKD_ANSWER_MATH) return vkd_answer_math_equal(given, gold);
    if (kind != VKD_ANSWER_GSM8K) return false;
    if (ans_rational_equal(given, gold)) return true;
    char *a = ans_py_strip(given), *b = ans_py_strip(gold);
    bool eq = a && b && !strcmp(a, b);
    free(a);
    free(b);
    return eq;
}

bool vkd_answer_score(vkd_answer_kind kind, const char *text, const char *gold_field, unsigned flags) {
    char *given = vkd_answer_extract(kind, text, flags), *gold = vkd_answer_gold(kind, gold_field);
    bool eq = vkd_answer_equal(kind, given, gold);
    free(given);
    free(gold);
    return eq;
}
