/* answer_internal.h: what answer.c (extraction, normalising, grading) takes from
 * answer_latex.c (LaTeX to text) and answer_rational.c (exact rational equality); the
 * string helpers all of them use are in answer_str.h. Not a public header. */
#ifndef VKD_ANSWER_INTERNAL_H
#define VKD_ANSWER_INTERNAL_H

#include "answer_str.h"

/* answer_latex.c: latex2text of s (malloc'd); takes ownership of s. */
char *ans_parse_latex(char *s);
/* answer_rational.c: a and b are the same rational number (exact decimal arithmetic). */
bool ans_rational_equal(const char *a, const char *b);

#endif
