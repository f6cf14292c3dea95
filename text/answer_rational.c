/* answer_rational.c: exact equality of two rational numbers written as decimals or
 * fractions, standing in for the reference grader's sympy simplify(a - b) == 0 on them. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "answer_internal.h"

/* ---- exact rational equality (stands in for sympy) ----------------------------------------- */

enum { MAX_DIGITS = 1000 };

/* A decimal [+-]?(\d+\.?\d*|\.\d+): *digits (no leading zeros, may be ""), value =
 * digits * 10^-scale. Advances *p. */
static bool parse_decimal(const char **p, const char *end, int *neg, sb *digits, long *scale) {
    const char *s = *p;
    *neg = 0;
    *scale = 0;
    if (s < end && (*s == '+' || *s == '-')) *neg = *s++ == '-';
    size_t ip = 0, fp = 0;
    while (s < end && ans_is_digit(*s)) {
        if (digits->n || *s != '0') ans_sb_putc(digits, *s);
        s++;
        ip++;
    }
    if (s < end && *s == '.') {
        s++;
        while (s < end && ans_is_digit(*s)) {
            if (digits->n || *s != '0') ans_sb_putc(digits, *s);
            s++;
            fp++;
            (*scale)++;
        }
    }
    if (ip + fp == 0 || ip + fp > MAX_DIGITS || digits->oom) return false;
    *p = s;
    return true;
}

/* x = [sign] num / den, as digit strings (den "1" when absent) */
typedef struct rational {
    int neg;
    sb num, den;
    long scale; /* value = num / den * 10^-scale */
} rational;

static bool parse_rational(const char *s, rational *r) {
    const char *p = s, *end = s + strlen(s);
    int nneg, dneg = 0;
    long ns, ds = 0;
    memset(r, 0, sizeof *r);
    if (!parse_decimal(&p, end, &nneg, &r->num, &ns)) return false;
    if (p < end && *p == '/') {
        p++;
        if (!parse_decimal(&p, end, &dneg, &r->den, &ds)) return false;
        if (!r->den.n) return false; /* division by zero */
    } else {
        ans_sb_putc(&r->den, '1');
    }
    if (p != end || r->den.oom) return false;
    r->neg = nneg ^ dneg;
    r->scale = ns - ds;
    return true;
}

static void rational_free(rational *r) {
    free(r->num.p);
    free(r->den.p);
}

/* a * b of digit strings, as digits without leading zeros ("" for zero) */
static char *mul_digits(const sb *a, const sb *b) {
    if (!a->n || !b->n) return calloc(1, 1);
    size_t n = a->n + b->n;
    unsigned *acc = calloc(n, sizeof *acc);
    char *out = malloc(n + 1);
    if (!acc || !out) { free(acc); free(out); return NULL; }
    for (size_t i = 0; i < a->n; i++) {
        unsigned carry = 0, da = (unsigned)(a->p[a->n - 1 - i] - '0');
        for (size_t j = 0; j < b->n; j++) {
            unsigned t = acc[i + j] + da * (unsigned)(b->p[b->n - 1 - j] - '0') + carry;
            acc[i + j] = t % 10;
            carry = t / 10;
        }
        for (size_t k = i + b->n; carry; k++) {
            unsigned t = acc[k] + carry;
            acc[k] = t % 10;
            carry = t / 10;
        }
    }
    size_t top = n;
    while (top > 0 && acc[top - 1] == 0) top--;
    for (size_t i = 0; i < top; i++) out[i] = (char)('0' + acc[top - 1 - i]);
    out[top] = 0;
    free(acc);
    return out;
}

/* value = digits * 10^-scale; trailing zeros folded into the scale */
static void fold_zeros(char *d, long *scale) {
    size_t n = strlen(d);
    while (n > 0 && d[n - 1] == '0') { d[--n] = 0; (*scale)--; }
}

/* Whether a and b are the same rational number (p/q with decimal p and q). */
bool ans_rational_equal(const char *a, const char *b) {
    rational x = {0}, y = {0};
    bool eq = false;
    if (parse_rational(a, &x) && parse_rational(b, &y)) {
        /* x.num/x.den 10^-xs == y.num/y.den 10^-ys  <=>  x.num y.den 10^-xs == y.num x.den 10^-ys */
        char *l = mul_digits(&x.num, &y.den), *r = mul_digits(&y.num, &x.den);
        if (l && r) {
            long ls = x.scale, rs = y.scale;
            fold_zeros(l, &ls);
            fold_zeros(r, &rs);
            if (!l[0] || !r[0]) eq = !l[0] && !r[0];
            else eq = x.neg == y.neg && ls == rs && !strcmp(l, r);
        }
        free(l);
        free(r);
    }
    rational_free(&x);
    rational_free(&y);
    return eq;
}
