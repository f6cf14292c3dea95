/* answer_str.h: the string helpers of answer grading (answer_str.c). Not a public header. */
#ifndef VKD_ANSWER_STR_H
#define VKD_ANSWER_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* A growable string; oom is sticky. */
typedef struct sb {
    char *p;
    size_t n, cap;
    bool oom;
} sb;

void ans_sb_put(sb *b, const char *s, size_t n);
static inline void ans_sb_puts(sb *b, const char *s) { ans_sb_put(b, s, strlen(s)); }
static inline void ans_sb_putc(sb *b, char c) { ans_sb_put(b, &c, 1); }
/* The string built so far (malloc'd, "" when empty), or NULL when an allocation failed. */
char *ans_sb_done(sb *b);

static inline bool ans_is_digit(char c) { return c >= '0' && c <= '9'; }
static inline bool ans_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
/* Byte length of the code point at s (s[0] != 0); 1 for an invalid byte. */
size_t ans_cp_len(const char *s);
/* s.strip() (Python's whitespace), malloc'd. */
char *ans_py_strip(const char *s);
/* s.replace(from, to); takes ownership of s. */
char *ans_replace_all(char *s, const char *from, const char *to);
/* A malloc'd copy of s[0..n). */
char *ans_dup_n(const char *s, size_t n);
/* Byte length of the Python whitespace character at s, 0 if none. */
size_t ans_py_space(const char *s);
/* [*a, *b): s[0..n) without Python whitespace at either end. */
void ans_strip_span(const char *s, size_t n, size_t *a, size_t *b);
/* The first needle in [p, end), NULL when none (strstr without its interceptor cost). */
const char *ans_find(const char *p, const char *end, const char *needle);

#endif
