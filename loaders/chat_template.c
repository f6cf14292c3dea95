/* chat_template.c: lexer, parser and evaluator for the Jinja subset of chat templates.
 *
 * Pipeline: lex (text / tag tokens, whitespace control, trim_blocks + lstrip_blocks) ->
 * recursive-descent parse into an AST (Jinja's operator precedence: filters and `is`
 * tests bind tighter than arithmetic) -> tree-walking evaluation. Every value made while
 * rendering lives in an arena freed when the render ends. */
#include "chat_template_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- lexer ---- */

typedef struct token {
    int type;
    size_t pos;
    const char *s; /* TEXT, NAME, OP: into the source; STRING: unescaped, in the arena */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct lexer {
    const char *src;
    size_t n;
    arena *ar;
    token *toks;
    size_t nt, cap;
    vkd_error *err;
} lexer;

static void line_col(const char *src, size_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (src[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

vkd_result tpl_fail(vkd_error *err, vkd_result code, const char *src, size_t pos,
                           const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(src, pos, &line, &col);
    return vkd_fail(err, code, "chat template line %d col %d: %s", line, col, msg);
}

static token *push_tok(lexer *L, int type, size_t pos) {
    if (L->nt == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        token *t = realloc(L->toks, nc * sizeof *t);
        if (!t) return NULL;
        L->toks = t;
        L->cap = nc;
    }
    token *t = &L->toks[L->nt++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->pos = pos;
    return t;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Lexes the inside of a {{ }} or {% %} tag up to its closer. Returns the position after
 * the closer; *strip_after is set by "-}}" / "-%}". */
static vkd_result lex_tag(lexer *L, size_t *pos, bool block, bool *strip_after) {
    const char *s = L->src;
    size_t i = *pos, n = L->n;
    char close0 = block ? '%' : '}';
    for (;;) {
        while (i < n && is_space(s[i])) i++;
        if (i >= n) return tpl_fail(L->err, VKD_ERR_FORMAT, s, *pos, "unterminated %s tag", block ? "{%" : "{{");
        if (s[i] == '-' && i + 2 < n && s[i + 1] == close0 && s[i + 2] == '}') {
            *strip_after = true;
            *pos = i + 3;
            return VKD_OK;
        }
        if (s[i] == '+' && block && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}') {
            *strip_after = false;
            *pos = i + 3;
            return VKD_OK;
        }
        if (s[i] == close0 && i + 1 < n && s[i + 1] == '}') {
            *strip_after = false;
            *pos = i + 2;
            return VKD_OK;
        }
        size_t st = i;
        if (is_name_start(s[i])) {
            while (i < n && (is_name_start(s[i]) || is_digit(s[i]))) i++;
            token *t = push_tok(L, T_NAME, st);
            if (!t) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            t->s = s + st;
            t->n = i - st;
        } else if (is_digit(s[i])) {
            while (i < n && (is_digit(s[i]) || s[i] == '_')) i++;
            bool fl = false;
            if (i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
                fl = true;
                i++;
                while (i < n && is_digit(s[i])) i++;
            }
            if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < n && (s[j] == '+' || s[j] == '-')) j++;
                if (j < n && is_digit(s[j])) {
                    fl = true;
                    i = j;
                    while (i < n && is_digit(s[i])) i++;
                }
            }
            char buf[64];
            size_t k = 0;
            for (size_t j = st; j < i && k < sizeof buf - 1; j++)
                if (s[j] != '_') buf[k++] = s[j];
            buf[k] = 0;
            token *t = push_tok(L, fl ? T_FLOAT : T_INT, st);
            if (!t) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            if (fl) t->f = strtod(buf, NULL);
            else t->i = strtoll(buf, NULL, 10);
        } else if (s[i] == '\'' || s[i] == '"') {
            char q = s[i++];
            char *out = aalloc(L->ar, n - i + 1);
            if (!out) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            size_t k = 0;
            for (;;) {
                if (i >= n) return tpl_fail(L->err, VKD_ERR_FORMAT, s, st, "unterminated string literal");
                char c = s[i++];
                if (c == q) break;
                if (c != '\\' || i >= n) {
                    out[k++] = c;
                    continue;
                }
                char e = s[i++];
                switch (e) {
                case 'n': out[k++] = '\n'; break;
                case 't': out[k++] = '\t'; break;
                case 'r': out[k++] = '\r'; break;
                case 'b': out[k++] = '\b'; break;
                case 'f': out[k++] = '\f'; break;
                case '0': out[k++] = '\0'; break;
                case '\\': case '\'': case '"': out[k++] = e; break;
                case 'u': case 'x': {
                    int nd = e == 'u' ? 4 : 2;
                    uint32_t cp = 0;
                    int d = 0;
                    for (; d < nd && i < n; d++, i++) {
                        char h = s[i];
                        int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                        if (v < 0) break;
                        cp = cp * 16 + (uint32_t)v;
                    }
                    if (d != nd || (cp >= 0xD800 && cp <= 0xDFFF))
                        return tpl_fail(L->err, VKD_ERR_FORMAT, s, i, "bad \\%c escape", e);
                    k += (size_t)utf8_put(out + k, cp);
                    break;
                }
                default: out[k++] = '\\'; out[k++] = e; break; /* Python keeps unknown escapes */
                }
            }
            token *t = push_tok(L, T_STRING, st);
            if (!t) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            t->s = out;
            t->n = k;
        } else {
            static const char *const ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
            size_t len = 0;
            for (int k = 0; k < 6; k++)
                if (i + 1 < n && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1]) len = 2;
            if (!len && strchr("+-*/%~<>=()[]{}.,:|", s[i]) && s[i]) len = 1;
            if (!len) return tpl_fail(L->err, VKD_ERR_FORMAT, s, i, "unexpected character '%c'", s[i]);
            token *t = push_tok(L, T_OP, st);
            if (!t) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            t->s = s + i;
            t->n = len;
            i += len;
        }
    }
}

static vkd_result lex(lexer *L) {
    const char *s = L->src;
    size_t n = L->n, i = 0;
    if (n && s[n - 1] == '\n') n--; /* keep_trailing_newline=False */
    L->n = n;
    bool strip_next = false; /* previous tag ended with '-' */
    bool trim_nl = false;    /* previous tag was a block/comment: trim_blocks */
    while (i <= n) {
        size_t j = i;
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#'))) j++;
        if (j + 1 >= n) j = n;
        size_t ts = i, te = j;
        if (strip_next) while (ts < te && is_space(s[ts])) ts++;
        else if (trim_nl && ts < te && s[ts] == '\n') ts++;
        else if (trim_nl && ts + 1 < te && s[ts] == '\r' && s[ts + 1] == '\n') ts += 2;
        if (j < n) {
            char kind = s[j + 1];
            bool minus = j + 2 < n && s[j + 2] == '-', plus = j + 2 < n && s[j + 2] == '+';
            if (minus) {
                while (te > ts && is_space(s[te - 1])) te--;
            } else if (kind != '{' && !plus) { /* lstrip_blocks */
                size_t k = te;
                while (k > ts && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
                if (k == 0 || s[k - 1] == '\n') te = k;
                else if (k == ts && k > 0 && s[k - 1] != '\n') { /* tag follows another tag */ }
            }
        }
        if (te > ts) {
            token *t = push_tok(L, T_TEXT, ts);
            if (!t) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
            t->s = s + ts;
            t->n = te - ts;
        }
        if (j >= n) break;
        char kind = s[j + 1];
        size_t p = j + 2;
        if (p < n && (s[p] == '-' || s[p] == '+')) p++;
        strip_next = trim_nl = false;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t k = p; k + 1 < n; k++)
                if (s[k] == '#' && s[k + 1] == '}') {
                    e = s + k;
                    break;
                }
            if (!e) return tpl_fail(L->err, VKD_ERR_FORMAT, s, j, "unterminated comment");
            strip_next = e > s + p && e[-1] == '-';
            trim_nl = !strip_next;
            i = (size_t)(e - s) + 2;
            continue;
        }
        bool block = kind == '%';
        if (!push_tok(L, block ? T_BLOCK_BEGIN : T_VAR_BEGIN, j)) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
        bool sa = false;
        vkd_result r = lex_tag(L, &p, block, &sa);
        if (r) return r;
        if (!push_tok(L, block ? T_BLOCK_END : T_VAR_END, p - 2)) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
        strip_next = sa;
        trim_nl = block && !sa;
        i = p;
    }
    if (!push_tok(L, T_EOF, n)) return vkd_fail(L->err, VKD_ERR_NOMEM, "out of memory");
    return VKD_OK;
}

typedef struct parser {
    const char *src;
    token *t;
    size_t i, nt;
    arena *ar;
    vkd_error *err;
    int depth;
} parser;

#define PFAIL(P, pos, ...) tpl_fail((P)->err, VKD_ERR_FORMAT, (P)->src, (pos), __VA_ARGS__)

static node *mk(parser *P, int kind, size_t pos) {
    node *n = aalloc(P->ar, sizeof *n);
    if (n) {
        n->kind = kind;
        n->pos = pos;
    }
    return n;
}

static token *cur(parser *P) { return &P->t[P->i]; }
static bool is_op(parser *P, const char *op) {
    token *t = cur(P);
    return t->type == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static bool is_kw(parser *P, const char *kw) {
    token *t = cur(P);
    return t->type == T_NAME && t->n == strlen(kw) && !memcmp(t->s, kw, t->n);
}
static bool is_kw_at(parser *P, size_t k, const char *kw) {
    if (P->i + k >= P->nt) return false;
    token *t = &P->t[P->i + k];
    return t->type == T_NAME && t->n == strlen(kw) && !memcmp(t->s, kw, t->n);
}

/* kids list builder */
typedef struct kidvec {
    node **v;
    const char **kw;
    size_t n, cap;
} kidvec;

static bool kid_push(parser *P, kidvec *k, node *n, const char *kw) {
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 4;
        node **nv = aalloc(P->ar, nc * sizeof *nv);
        const char **nkw = aalloc(P->ar, nc * sizeof *nkw);
        if (!nv || !nkw) return false;
        if (k->n) {
            memcpy(nv, k->v, k->n * sizeof *nv);
            memcpy(nkw, k->kw, k->n * sizeof *nkw);
        }
        k->v = nv;
        k->kw = nkw;
        k->cap = nc;
    }
    k->v[k->n] = n;
    k->kw[k->n++] = kw;
    return true;
}

static vkd_result parse_expr(parser *P, node **out);
static vkd_result parse_or(parser *P, node **out);

static vkd_result expect_op(parser *P, const char *op) {
    if (!is_op(P, op)) return PFAIL(P, cur(P)->pos, "expected '%s'", op);
    P->i++;
    return VKD_OK;
}

static char *name_dup(parser *P, token *t) {
    char *s = aalloc(P->ar, t->n + 1);
    if (s) memcpy(s, t->s, t->n);
    return s;
}

/* (args...) with keyword arguments; the '(' is current. */
static vkd_result parse_args(parser *P, node *call) {
    kidvec k = {0};
    P->i++;
    while (!is_op(P, ")")) {
        const char *kw = NULL;
        if (cur(P)->type == T_NAME && P->i + 1 < P->nt && P->t[P->i + 1].type == T_OP &&
            P->t[P->i + 1].n == 1 && P->t[P->i + 1].s[0] == '=') {
            kw = name_dup(P, cur(P));
            P->i += 2;
        }
        node *a;
        vkd_result r = parse_expr(P, &a);
        if (r) return r;
        if (!kid_push(P, &k, a, kw)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        if (is_op(P, ",")) P->i++;
        else if (!is_op(P, ")")) return PFAIL(P, cur(P)->pos, "expected ',' or ')' in argument list");
    }
    P->i++;
    call->kids = k.v;
    call->kw = k.kw;
    call->nk = k.n;
    return VKD_OK;
}

static vkd_result parse_primary(parser *P, node **out) {
    token *t = cur(P);
    node *n = NULL;
    if (++P->depth > 200) return PFAIL(P, t->pos, "expression nested too deeply");
    switch (t->type) {
    case T_STRING: {
        /* adjacent string literals concatenate */
        size_t total = 0, j = P->i;
        while (j < P->nt && P->t[j].type == T_STRING) total += P->t[j++].n;
        char *s = aalloc(P->ar, total + 1);
        n = mk(P, N_CONST_STR, t->pos);
        if (!s || !n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        size_t k = 0;
        while (P->i < j) {
            memcpy(s + k, P->t[P->i].s, P->t[P->i].n);
            k += P->t[P->i++].n;
        }
        n->s = s;
        n->sn = total;
        break;
    }
    case T_INT: n = mk(P, N_CONST_INT, t->pos); if (n) n->i = t->i; P->i++; break;
    case T_FLOAT: n = mk(P, N_CONST_FLOAT, t->pos); if (n) n->f = t->f; P->i++; break;
    case T_NAME:
        if (is_kw(P, "true") || is_kw(P, "True")) { n = mk(P, N_CONST_BOOL, t->pos); if (n) n->i = 1; }
        else if (is_kw(P, "false") || is_kw(P, "False")) n = mk(P, N_CONST_BOOL, t->pos);
        else if (is_kw(P, "none") || is_kw(P, "None")) n = mk(P, N_CONST_NONE, t->pos);
        else {
            n = mk(P, N_NAME, t->pos);
            if (n) { n->s = name_dup(P, t); n->sn = t->n; }
        }
        P->i++;
        break;
    case T_OP:
        if (is_op(P, "(")) {
            P->i++;
            if (is_op(P, ")")) { /* empty tuple */
                P->i++;
                n = mk(P, N_TUPLE, t->pos);
                break;
            }
            node *e;
            vkd_result r = parse_expr(P, &e);
            if (r) return r;
            if (is_op(P, ",")) {
                kidvec k = {0};
                if (!kid_push(P, &k, e, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
                while (is_op(P, ",")) {
                    P->i++;
                    if (is_op(P, ")")) break;
                    if ((r = parse_expr(P, &e))) return r;
                    if (!kid_push(P, &k, e, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
                }
                n = mk(P, N_TUPLE, t->pos);
                if (n) { n->kids = k.v; n->nk = k.n; }
            } else {
                n = e;
            }
            if ((r = expect_op(P, ")"))) return r;
            break;
        }
        if (is_op(P, "[") || is_op(P, "{")) {
            bool dict = is_op(P, "{");
            const char *close = dict ? "}" : "]";
            P->i++;
            kidvec k = {0};
            while (!is_op(P, close)) {
                node *e;
                vkd_result r = parse_expr(P, &e);
                if (r) return r;
                if (!kid_push(P, &k, e, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
                if (dict) {
                    if ((r = expect_op(P, ":")) || (r = parse_expr(P, &e))) return r;
                    if (!kid_push(P, &k, e, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
                }
                if (is_op(P, ",")) P->i++;
                else if (!is_op(P, close)) return PFAIL(P, cur(P)->pos, "expected ',' or '%s'", close);
            }
            P->i++;
            n = mk(P, dict ? N_DICT : N_LIST, t->pos);
            if (n) { n->kids = k.v; n->nk = k.n; }
            break;
        }
        /* fall through */
    default:
        return PFAIL(P, t->pos, "expected an expression");
    }
    if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    P->depth--;
    *out = n;
    return VKD_OK;
}

static vkd_result parse_postfix(parser *P, node **io) {
    for (;;) {
        token *t = cur(P);
        if (is_op(P, ".")) {
            P->i++;
            token *nt = cur(P);
            if (nt->type != T_NAME && nt->type != T_INT) return PFAIL(P, nt->pos, "expected an attribute name after '.'");
            node *n = mk(P, N_ATTR, t->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            n->a = *io;
            if (nt->type == T_NAME) { n->s = name_dup(P, nt); n->sn = nt->n; }
            else { n->kind = N_ITEM; n->b = mk(P, N_CONST_INT, nt->pos); if (!n->b) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory"); n->b->i = nt->i; }
            P->i++;
            *io = n;
        } else if (is_op(P, "[")) {
            P->i++;
            node *parts[3] = {0};
            int np = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(P, ":") && !is_op(P, "]")) {
                    vkd_result r = parse_expr(P, &parts[np]);
                    if (r) return r;
                }
                if (is_op(P, ":")) {
                    slice = true;
                    if (++np > 2) return PFAIL(P, cur(P)->pos, "too many ':' in slice");
                    P->i++;
                    continue;
                }
                break;
            }
            vkd_result r = expect_op(P, "]");
            if (r) return r;
            node *n = mk(P, slice ? N_SLICE : N_ITEM, t->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            n->a = *io;
            if (slice) { n->b = parts[0]; n->c = parts[1]; n->d = parts[2]; }
            else {
                if (!parts[0]) return PFAIL(P, t->pos, "empty subscript");
                n->b = parts[0];
            }
            *io = n;
        } else if (is_op(P, "(")) {
            node *n = mk(P, N_CALL, t->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            n->a = *io;
            vkd_result r = parse_args(P, n);
            if (r) return r;
            *io = n;
        } else {
            return VKD_OK;
        }
    }
}

/* filters (| name(args)) and tests (is [not] name [arg]) after a unary expression */
static vkd_result parse_filters(parser *P, node **io) {
    for (;;) {
        token *t = cur(P);
        if (is_op(P, "|")) {
            P->i++;
            if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected a filter name after '|'");
            node *n = mk(P, N_FILTER, cur(P)->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            n->s = name_dup(P, cur(P));
            n->sn = cur(P)->n;
            n->a = *io;
            P->i++;
            if (is_op(P, "(")) {
                vkd_result r = parse_args(P, n);
                if (r) return r;
            }
            *io = n;
        } else if (is_kw(P, "is")) {
            P->i++;
            node *n = mk(P, N_TEST, t->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            if (is_kw(P, "not")) { n->neg = true; P->i++; }
            if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected a test name after 'is'");
            n->s = name_dup(P, cur(P));
            n->sn = cur(P)->n;
            n->a = *io;
            P->i++;
            if (is_op(P, "(")) {
                vkd_result r = parse_args(P, n);
                if (r) return r;
            } else if (cur(P)->type == T_STRING || cur(P)->type == T_INT || cur(P)->type == T_FLOAT ||
                       (cur(P)->type == T_NAME && !is_kw(P, "and") && !is_kw(P, "or") && !is_kw(P, "else") &&
                        !is_kw(P, "if") && !is_kw(P, "in") && !is_kw(P, "is") && !is_kw(P, "not"))) {
                node *arg; /* `is equalto 3`, `is sameas none` */
                vkd_result r = parse_primary(P, &arg);
                if (r) return r;
                kidvec k = {0};
                if (!kid_push(P, &k, arg, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
                n->kids = k.v; n->kw = k.kw; n->nk = 1;
            }
            *io = n;
        } else {
            return VKD_OK;
        }
    }
}

static vkd_result parse_unary(parser *P, node **out) {
    token *t = cur(P);
    if (is_op(P, "-") || is_op(P, "+")) {
        bool neg = is_op(P, "-");
        P->i++;
        node *n = mk(P, neg ? N_NEG : N_POS, t->pos), *a;
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        if (++P->depth > 200) return PFAIL(P, t->pos, "expression nested too deeply");
        vkd_result r = parse_unary(P, &a);
        P->depth--;
        if (r) return r;
        n->a = a;
        *out = n;
        return parse_filters(P, out);
    }
    vkd_result r = parse_primary(P, out);
    if (!r) r = parse_postfix(P, out);
    if (!r) r = parse_filters(P, out);
    return r;
}

static vkd_result mk_bin(parser *P, int op, size_t pos, node *a, node *b, node **out) {
    node *n = mk(P, N_BIN, pos);
    if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    n->op = op;
    n->a = a;
    n->b = b;
    *out = n;
    return VKD_OK;
}

/* The left-associative arithmetic levels, tightest first (as Jinja2's parser): each level
 * is operands of the level below joined by its operators. Level 0's operands are unaries. */
static const struct {
    const char *op[4];
    int code[4];
} bin_levels[] = {
    {{"**"}, {OP_POW}},
    {{"*", "/", "//", "%"}, {OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD}},
    {{"~"}, {OP_CONCAT}},
    {{"+", "-"}, {OP_ADD, OP_SUB}},
};
enum { BIN_ADD = 3 };

static vkd_result parse_level(parser *P, int lv, node **out) {
    vkd_result r = lv ? parse_level(P, lv - 1, out) : parse_unary(P, out);
    for (;;) {
        if (r) return r;
        int op = -1;
        for (int k = 0; k < 4 && bin_levels[lv].op[k] && op < 0; k++)
            if (is_op(P, bin_levels[lv].op[k])) op = bin_levels[lv].code[k];
        if (op < 0) return VKD_OK;
        size_t pos = cur(P)->pos;
        P->i++;
        node *b;
        if ((r = lv ? parse_level(P, lv - 1, &b) : parse_unary(P, &b))) return r;
        r = mk_bin(P, op, pos, *out, b, out);
    }
}

static vkd_result parse_add(parser *P, node **out) { return parse_level(P, BIN_ADD, out); }

static vkd_result parse_compare(parser *P, node **out) {
    vkd_result r = parse_add(P, out);
    for (;;) {
        if (r) return r;
        int op = -1;
        size_t adv = 1;
        if (is_op(P, "==")) op = OP_EQ;
        else if (is_op(P, "!=")) op = OP_NE;
        else if (is_op(P, "<")) op = OP_LT;
        else if (is_op(P, "<=")) op = OP_LE;
        else if (is_op(P, ">")) op = OP_GT;
        else if (is_op(P, ">=")) op = OP_GE;
        else if (is_kw(P, "in")) op = OP_IN;
        else if (is_kw(P, "not") && is_kw_at(P, 1, "in")) { op = OP_NOTIN; adv = 2; }
        if (op < 0) return VKD_OK;
        size_t pos = cur(P)->pos;
        P->i += adv;
        node *b;
        if ((r = parse_add(P, &b))) return r;
        r = mk_bin(P, op, pos, *out, b, out);
    }
}

static vkd_result parse_not(parser *P, node **out) {
    if (is_kw(P, "not")) {
        node *n = mk(P, N_NOT, cur(P)->pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        P->i++;
        if (++P->depth > 200) return PFAIL(P, n->pos, "expression nested too deeply");
        vkd_result r = parse_not(P, &n->a);
        P->depth--;
        *out = n;
        return r;
    }
    return parse_compare(P, out);
}

static vkd_result parse_and(parser *P, node **out) {
    vkd_result r = parse_not(P, out);
    while (!r && is_kw(P, "and")) {
        node *n = mk(P, N_AND, cur(P)->pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        P->i++;
        n->a = *out;
        r = parse_not(P, &n->b);
        *out = n;
    }
    return r;
}

static vkd_result parse_or(parser *P, node **out) {
    vkd_result r = parse_and(P, out);
    while (!r && is_kw(P, "or")) {
        node *n = mk(P, N_OR, cur(P)->pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        P->i++;
        n->a = *out;
        r = parse_and(P, &n->b);
        *out = n;
    }
    return r;
}

static vkd_result parse_expr(parser *P, node **out) {
    if (++P->depth > 200) return PFAIL(P, cur(P)->pos, "expression nested too deeply");
    vkd_result r = parse_or(P, out);
    while (!r && is_kw(P, "if")) { /* a if cond [else b] */
        node *n = mk(P, N_COND, cur(P)->pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        P->i++;
        n->a = *out;
        if ((r = parse_or(P, &n->b))) return r;
        if (is_kw(P, "else")) {
            P->i++;
            r = parse_expr(P, &n->c);
        }
        *out = n;
    }
    P->depth--;
    return r;
}

/* ---- statements ---- */

static vkd_result parse_body(parser *P, const char *const *stops, node **out, const char **stopped);

static vkd_result expect_block_end(parser *P) {
    if (cur(P)->type != T_BLOCK_END) return PFAIL(P, cur(P)->pos, "expected '%%}'");
    P->i++;
    return VKD_OK;
}

static vkd_result parse_if(parser *P, size_t pos, node **out) {
    node *n = mk(P, N_IF, pos);
    if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    vkd_result r = parse_expr(P, &n->a);
    if (!r) r = expect_block_end(P);
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    const char *st = NULL;
    if (!r) r = parse_body(P, stops, &n->b, &st);
    if (r) return r;
    if (!strcmp(st, "elif")) {
        r = parse_if(P, cur(P)->pos, &n->c);
    } else if (!strcmp(st, "else")) {
        static const char *const stops2[] = {"endif", NULL};
        if (!(r = expect_block_end(P))) r = parse_body(P, stops2, &n->c, &st);
        if (!r) r = expect_block_end(P);
    } else {
        r = expect_block_end(P);
    }
    *out = n;
    return r;
}

static vkd_result parse_stmt(parser *P, node **out) {
    token *t = cur(P);
    if (t->type != T_NAME) return PFAIL(P, t->pos, "expected a statement name after '{%%'");
    size_t pos = t->pos;
    if (is_kw(P, "if")) {
        P->i++;
        return parse_if(P, pos, out);
    }
    if (is_kw(P, "for")) {
        P->i++;
        node *n = mk(P, N_FOR, pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        bool paren = is_op(P, "(");
        if (paren) P->i++;
        if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected a loop variable");
        n->s = name_dup(P, cur(P));
        n->sn = cur(P)->n;
        P->i++;
        if (is_op(P, ",")) {
            P->i++;
            if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected a second loop variable");
            n->s2 = name_dup(P, cur(P));
            n->sn2 = cur(P)->n;
            P->i++;
        }
        if (paren && expect_op(P, ")")) return PFAIL(P, cur(P)->pos, "expected ')'");
        if (!is_kw(P, "in")) return PFAIL(P, cur(P)->pos, "expected 'in' in for loop");
        P->i++;
        vkd_result r = parse_or(P, &n->a);
        if (r) return r;
        if (is_kw(P, "if")) {
            P->i++;
            if ((r = parse_or(P, &n->d))) return r;
        }
        if ((r = expect_block_end(P))) return r;
        static const char *const stops[] = {"else", "endfor", NULL};
        const char *st = NULL;
        if ((r = parse_body(P, stops, &n->b, &st))) return r;
        if (!strcmp(st, "else")) {
            static const char *const stops2[] = {"endfor", NULL};
            if ((r = expect_block_end(P)) || (r = parse_body(P, stops2, &n->c, &st))) return r;
        }
        *out = n;
        return expect_block_end(P);
    }
    if (is_kw(P, "set")) {
        P->i++;
        node *n = mk(P, N_SET, pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected a variable name after 'set'");
        n->s = name_dup(P, cur(P));
        n->sn = cur(P)->n;
        P->i++;
        if (is_op(P, ".")) {
            P->i++;
            if (cur(P)->type != T_NAME) return PFAIL(P, cur(P)->pos, "expected an attribute name");
            n->s2 = name_dup(P, cur(P));
            n->sn2 = cur(P)->n;
            P->i++;
        }
        if (!is_op(P, "=")) return PFAIL(P, cur(P)->pos, "expected '=' (block {%% set %%} is not supported)");
        P->i++;
        vkd_result r = parse_expr(P, &n->a);
        if (!r) r = expect_block_end(P);
        *out = n;
        return r;
    }
    if (is_kw(P, "break") || is_kw(P, "continue")) {
        node *n = mk(P, is_kw(P, "break") ? N_BREAK : N_CONTINUE, pos);
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        P->i++;
        *out = n;
        return expect_block_end(P);
    }
    if (is_kw(P, "generation") || is_kw(P, "endgeneration")) { /* transformers' marker: no output */
        P->i++;
        *out = mk(P, N_BLOCK, pos);
        return *out ? expect_block_end(P) : vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    }
    return PFAIL(P, pos, "unsupported or unexpected tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
}

/* Parses statements until a {% stop %} tag (left with the parser on the tag's end) or EOF
 * (allowed only when stops is NULL). */
static vkd_result parse_body(parser *P, const char *const *stops, node **out, const char **stopped) {
    node *blk = mk(P, N_BLOCK, cur(P)->pos);
    if (!blk) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    kidvec k = {0};
    size_t start = cur(P)->pos;
    if (++P->depth > 200) return PFAIL(P, start, "blocks nested too deeply");
    for (;;) {
        token *t = cur(P);
        node *n = NULL;
        vkd_result r = VKD_OK;
        if (t->type == T_EOF) {
            if (stops) {
                int last = 0;
                while (stops[last + 1]) last++;
                return PFAIL(P, start, "missing {%% %s %%} for the block starting here", stops[last]);
            }
            break;
        }
        if (t->type == T_TEXT) {
            n = mk(P, N_TEXT, t->pos);
            if (n) { n->s = t->s; n->sn = t->n; }
            P->i++;
        } else if (t->type == T_VAR_BEGIN) {
            P->i++;
            n = mk(P, N_OUTPUT, t->pos);
            if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
            if ((r = parse_expr(P, &n->a))) return r;
            if (cur(P)->type != T_VAR_END) return PFAIL(P, cur(P)->pos, "expected '}}'");
            P->i++;
        } else if (t->type == T_BLOCK_BEGIN) {
            P->i++;
            bool hit = false;
            for (int s = 0; stops && stops[s]; s++)
                if (is_kw(P, stops[s])) {
                    *stopped = stops[s];
                    hit = true;
                }
            if (hit) {
                P->i++;
                break;
            }
            static const char *const ends[] = {"endif", "endfor", "elif", "else", NULL};
            for (int s = 0; ends[s]; s++)
                if (is_kw(P, ends[s])) return PFAIL(P, cur(P)->pos, "unexpected {%% %s %%}", ends[s]);
            if ((r = parse_stmt(P, &n))) return r;
        } else {
            return PFAIL(P, t->pos, "unexpected token");
        }
        if (!n) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
        if (!kid_push(P, &k, n, NULL)) return vkd_fail(P->err, VKD_ERR_NOMEM, "out of memory");
    }
    P->depth--;
    blk->kids = k.v;
    blk->nk = k.n;
    *out = blk;
    return VKD_OK;
}

vkd_result vkd_tpl_compile(const char *src, size_t len, vkd_tpl **out, vkd_error *err) {
    *out = NULL;
    vkd_tpl *t = calloc(1, sizeof *t);
    if (!t || !(t->src = malloc(len + 1))) {
        free(t);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    memcpy(t->src, src, len);
    t->src[len] = 0;
    t->len = len;
    lexer L = {t->src, len, &t->ar, NULL, 0, 0, err};
    vkd_result r = lex(&L);
    if (!r && t->ar.oom) r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    if (!r) {
        parser P = {t->src, L.toks, 0, L.nt, &t->ar, err, 0};
        r = parse_body(&P, NULL, &t->root, NULL);
        if (!r && t->ar.oom) r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    free(L.toks);
    if (r) {
        vkd_tpl_free(t);
        return r;
    }
    *out = t;
    return VKD_OK;
}

void vkd_tpl_free(vkd_tpl *t) {
    if (!t) return;
    arena_free(&t->ar);
    free(t->src);
    free(t);
}

