/* answer_latex.c: LaTeX to plain text for answer normalising, standing in for pylatexenc's
 * latex2text as the reference grader uses it (text/vkd_answer.h says what is covered). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "answer_internal.h"

/* ---- LaTeX to text (stands in for pylatexenc's latex2text, see the header) ----------------- */

static const char *const latex_symbols[][2] = {
    {"alpha", "\xce\xb1"}, {"beta", "\xce\xb2"}, {"gamma", "\xce\xb3"}, {"delta", "\xce\xb4"},
    {"epsilon", "\xcf\xb5"}, {"varepsilon", "\xce\xb5"}, {"zeta", "\xce\xb6"}, {"eta", "\xce\xb7"},
    {"theta", "\xce\xb8"}, {"vartheta", "\xcf\x91"}, {"iota", "\xce\xb9"}, {"kappa", "\xce\xba"},
    {"lambda", "\xce\xbb"}, {"mu", "\xce\xbc"}, {"nu", "\xce\xbd"}, {"xi", "\xce\xbe"},
    {"pi", "\xcf\x80"}, {"rho", "\xcf\x81"}, {"sigma", "\xcf\x83"}, {"tau", "\xcf\x84"},
    {"upsilon", "\xcf\x85"}, {"phi", "\xcf\x95"}, {"varphi", "\xcf\x86"}, {"chi", "\xcf\x87"},
    {"psi", "\xcf\x88"}, {"omega", "\xcf\x89"}, {"Gamma", "\xce\x93"}, {"Delta", "\xce\x94"},
    {"Theta", "\xce\x98"}, {"Lambda", "\xce\x9b"}, {"Xi", "\xce\x9e"}, {"Pi", "\xce\xa0"},
    {"Sigma", "\xce\xa3"}, {"Upsilon", "\xce\xa5"}, {"Phi", "\xce\xa6"}, {"Psi", "\xce\xa8"},
    {"Omega", "\xce\xa9"}, {"infty", "\xe2\x88\x9e"}, {"cup", "\xe2\x88\xaa"}, {"cap", "\xe2\x88\xa9"},
    {"cdot", "\xc2\xb7"}, {"times", "\xc3\x97"}, {"div", "\xc3\xb7"}, {"pm", "\xc2\xb1"},
    {"mp", "\xe2\x88\x93"}, {"le", "\xe2\x89\xa4"}, {"leq", "\xe2\x89\xa4"}, {"ge", "\xe2\x89\xa5"},
    {"geq", "\xe2\x89\xa5"}, {"ne", "\xe2\x89\xa0"}, {"neq", "\xe2\x89\xa0"}, {"approx", "\xe2\x89\x88"},
    {"circ", "\xe2\x88\x98"}, {"dots", "\xe2\x80\xa6"}, {"ldots", "\xe2\x80\xa6"}, {"cdots", "\xe2\x8b\xaf"},
    {"in", "\xe2\x88\x88"}, {"to", "\xe2\x86\x92"}, {"rightarrow", "\xe2\x86\x92"}, {"angle", "\xe2\x88\xa0"},
    {"perp", "\xe2\x8a\xa5"}, {"parallel", "\xe2\x88\xa5"}, {"emptyset", "\xe2\x88\x85"},
    {"varnothing", "\xe2\x88\x85"},
    /* rendered as nothing */
    {"left", ""}, {"right", ""}, {"big", ""}, {"Big", ""}, {"bigl", ""}, {"bigr", ""}, {"Bigl", ""},
    {"Bigr", ""}, {"displaystyle", ""}, {"limits", ""}, {"quad", "  "}, {"qquad", "    "},
};

/* macros whose text is their one argument */
static const char *const latex_wrappers[] = {
    "text", "textbf", "textit", "textrm", "texttt", "textsf", "textup", "emph", "mathrm", "mathbf",
    "mathit", "mathsf", "mathtt", "mathbb", "mathcal", "mathfrak", "boldsymbol", "operatorname",
    "overline", "underline", "boxed", "fbox", "hbox",
};

typedef struct latex {
    const char *s;
    size_t i, n;
    unsigned depth;
    sb out;
} latex;

static void latex_run(latex *L, bool in_group);

static void latex_skip_space(latex *L) {
    while (L->i < L->n && (L->s[L->i] == ' ' || L->s[L->i] == '\t' || L->s[L->i] == '\n' || L->s[L->i] == '\r'))
        L->i++;
}

static void latex_token(latex *L);

/* One macro argument: a {group}, a macro, or one character (nothing at the end). */
static void latex_arg(latex *L) {
    latex_skip_space(L);
    if (L->i >= L->n) return;
    if (L->s[L->i] == '{') {
        L->i++;
        latex_run(L, true);
    } else if (L->s[L->i] == '\\') {
        latex_token(L);
    } else if (L->s[L->i] == '}') {
        return; /* the enclosing group ends: an empty argument */
    } else {
        size_t k = ans_cp_len(L->s + L->i);
        ans_sb_put(&L->out, L->s + L->i, k);
        L->i += k;
    }
}

/* An argument whose text is thrown away. */
static void latex_drop_arg(latex *L) {
    size_t keep = L->out.n;
    latex_arg(L);
    if (!L->out.oom && L->out.p) { L->out.n = keep; L->out.p[keep] = 0; }
}

static void latex_macro(latex *L, const char *name, size_t nl) {
#define IS(lit) (nl == sizeof(lit) - 1 && !memcmp(name, lit, nl))
    if (IS("frac") || IS("dfrac") || IS("tfrac") || IS("nicefrac") || IS("cfrac")) {
        latex_arg(L);
        ans_sb_putc(&L->out, '/');
        latex_arg(L);
        return;
    }
    if (IS("sqrt")) {
        latex_skip_space(L);
        if (L->i < L->n && L->s[L->i] == '[') {
            const char *close = memchr(L->s + L->i, ']', L->n - L->i);
            L->i = close ? (size_t)(close - L->s) + 1 : L->n;
        }
        ans_sb_puts(&L->out, "\xe2\x88\x9a(");
        latex_arg(L);
        ans_sb_putc(&L->out, ')');
        return;
    }
    if (IS("mbox") || IS("begin") || IS("end")) {
        latex_drop_arg(L);
        return;
    }
#undef IS
    for (size_t k = 0; k < sizeof latex_wrappers / sizeof *latex_wrappers; k++)
        if (latex_wrappers[k][0] == name[0] && strlen(latex_wrappers[k]) == nl &&
            !memcmp(latex_wrappers[k], name, nl)) {
            latex_arg(L);
            return;
        }
    for (size_t k = 0; k < sizeof latex_symbols / sizeof *latex_symbols; k++)
        if (latex_symbols[k][0][0] == name[0] && strlen(latex_symbols[k][0]) == nl &&
            !memcmp(latex_symbols[k][0], name, nl)) {
            ans_sb_puts(&L->out, latex_symbols[k][1]);
            return;
        }
    ans_sb_put(&L->out, name, nl);
}

/* A backslash token at L->i. */
static void latex_token(latex *L) {
    const char *s = L->s;
    size_t i = L->i + 1;
    if (i >= L->n) { L->i = i; return; }
    if (ans_is_alpha(s[i])) {
        size_t a = i;
        while (i < L->n && ans_is_alpha(s[i])) i++;
        L->i = i;
        latex_skip_space(L);
        /* nesting is bounded: a hostile input of nested \frac\frac... must not overflow the stack */
        if (L->depth > 200) return;
        L->depth++;
        latex_macro(L, s + a, i - a);
        L->depth--;
        return;
    }
    size_t k = ans_cp_len(s + i);
    L->i = i + k;
    char c = s[i];
    if (c == '\\') ans_sb_putc(&L->out, '\n');
    else if (c == ',' || c == ';' || c == ':' || c == ' ') ans_sb_putc(&L->out, ' ');
    else if (c == '!') {}
    else ans_sb_put(&L->out, s + i, k);
}

static void latex_run(latex *L, bool in_group) {
    if (L->depth > 200) { /* flatten what is nested deeper: copy the rest of the group's characters */
        while (L->i < L->n) {
            char c = L->s[L->i];
            if (c == '}' && in_group) { L->i++; return; }
            size_t k = ans_cp_len(L->s + L->i);
            if (c != '{' && c != '}' && c != '$') ans_sb_put(&L->out, L->s + L->i, k);
            L->i += k;
        }
        return;
    }
    L->depth++;
    while (L->i < L->n) {
        char c = L->s[L->i];
        if (c == '\\') {
            latex_token(L);
        } else if (c == '{') {
            L->i++;
            latex_run(L, true);
        } else if (c == '}') {
            L->i++;
            if (in_group) break;
        } else if (c == '$') {
            L->i++;
        } else {
            size_t k = ans_cp_len(L->s + L->i);
            ans_sb_put(&L->out, L->s + L->i, k);
            L->i += k;
        }
    }
    L->depth--;
}

/* _parse_latex with latex_run standing in for latex2text. */
char *ans_parse_latex(char *s) {
    s = ans_replace_all(s, "\\tfrac", "\\frac");
    s = ans_replace_all(s, "\\dfrac", "\\frac");
    s = ans_replace_all(s, "\\frac", " \\frac");
    if (!s) return NULL;
    latex L = {.s = s, .n = strlen(s)};
    latex_run(&L, false);
    free(s);
    s = ans_sb_done(&L.out);
    s = ans_replace_all(s, "\xe2\x88\x9a", "sqrt");
    s = ans_replace_all(s, "\xcf\x80", "pi");
    s = ans_replace_all(s, "\xe2\x88\x9e", "inf");
    s = ans_replace_all(s, "\xe2\x88\xaa", "U");
    s = ans_replace_all(s, "\xc2\xb7", "*");
    s = ans_replace_all(s, "\xc3\x97", "*");
    if (!s) return NULL;
    char *t = ans_py_strip(s);
    free(s);
    return t;
}
