/* answer_str.c: the string helpers of answer grading: a growable string, code points,
 * Python's str.strip() and str.replace(). */
#include <stdlib.h>
#include <string.h>

#include "answer_str.h"

/* ---- growable string ----------------------------------------------------------------------- */

void ans_sb_put(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > ((size_t)-1) / 2) { b->oom = true; return; }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* The string built so far (malloc'd, "" when empty), or NULL when an allocation failed. */
char *ans_sb_done(sb *b) {
    if (b->oom) { free(b->p); return NULL; }
    if (!b->p) return calloc(1, 1);
    return b->p;
}

char *ans_dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* ---- characters ---------------------------------------------------------------------------- */

/* Byte length of the code point at s (s[0] != 0); 1 for an invalid byte. */
size_t ans_cp_len(const char *s) {
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
             : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
    for (size_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) return 1;
    return n;
}

/* Byte length of the code point at s when Python's str.isspace() holds for it, else 0. */
size_t ans_py_space(const char *s) {
    unsigned char c = (unsigned char)s[0], c1 = c ? (unsigned char)s[1] : 0;
    unsigned char c2 = c1 ? (unsigned char)s[2] : 0;
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c == 0xC2 && (c1 == 0x85 || c1 == 0xA0)) return 2;
    if (c == 0xE1 && c1 == 0x9A && c2 == 0x80) return 3;
    if (c == 0xE2 && c1 == 0x80 && ((c2 >= 0x80 && c2 <= 0x8A) || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF))
        return 3;
    if (c == 0xE2 && c1 == 0x81 && c2 == 0x9F) return 3;
    if (c == 0xE3 && c1 == 0x80 && c2 == 0x80) return 3;
    return 0;
}

/* str.strip(): [*a, *b) is s without leading and trailing whitespace. */
void ans_strip_span(const char *s, size_t n, size_t *a, size_t *b) {
    size_t i = 0, k, end = 0;
    while (i < n && (k = ans_py_space(s + i))) i += k;
    *a = i;
    end = i;
    while (i < n) {
        k = ans_py_space(s + i);
        if (k) { i += k; continue; }
        i += ans_cp_len(s + i);
        end = i;
    }
    *b = end;
}

char *ans_py_strip(const char *s) {
    size_t a, b;
    ans_strip_span(s, strlen(s), &a, &b);
    return ans_dup_n(s + a, b - a);
}

/* The first needle in [p, end), NULL when none. Loops use this rather than strstr, whose
 * sanitizer interceptor measures the whole haystack on every call (quadratic in a loop). */
const char *ans_find(const char *p, const char *end, const char *needle) {
    size_t nl = strlen(needle);
    while ((size_t)(end - p) >= nl) {
        const char *c = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
        if (!c) return NULL;
        if (!memcmp(c, needle, nl)) return c;
        p = c + 1;
    }
    return NULL;
}

/* s.replace(from, to); takes ownership of s. */
char *ans_replace_all(char *s, const char *from, const char *to) {
    if (!s) return NULL;
    const char *end = s + strlen(s), *hit = ans_find(s, end, from);
    if (!hit) return s;
    size_t fl = strlen(from);
    sb b = {0};
    const char *p = s;
    for (; hit; p = hit + fl, hit = ans_find(p, end, from)) {
        ans_sb_put(&b, p, (size_t)(hit - p));
        ans_sb_puts(&b, to);
    }
    ans_sb_puts(&b, p);
    free(s);
    return ans_sb_done(&b);
}
