/* answer_internal.h: helpers shared by answer.c (extraction, normalising, grading),
 * answer_latex.c (LaTeX to text) and answer_rational.c (exact rational equality). Not a
 * public header. */
#ifndef VKD_ANSWER_INTERNAL_H
#define VKD_ANSWER_INTERNAL_H

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

/* answer_latex.c: latex2text of s (malloc'd); takes ownership of s. */
char *ans_parse_latex(char *s);
/* answer_rational.c: a and b are the same rational number (exact decimal arithmetic). */
bool ans_rational_equal(const char *a, const char *b);

#endif
