/* chat_template_internal.h: token, AST and arena types shared by the parser
 * (chat_template.c) and the evaluator (chat_template_eval.c). Not a public header. */
#ifndef VKD_CHAT_TEMPLATE_INTERNAL_H
#define VKD_CHAT_TEMPLATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

/* ---- arena ---- */

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    max_align_t data[];
} arena_blk;

typedef struct arena {
    arena_blk *head;
    bool oom;
    bool over;        /* refused: the arena would pass TPL_ARENA_MAX */
    size_t total;     /* bytes of all blocks */
} arena;

/* What compiling and rendering one template may allocate in all: a template that builds
 * strings in a loop (`{% set ns.s = ns.s ~ x %}`) keeps every intermediate value, so the
 * sum, not only each value (TPL_STR_MAX), needs a bound. */
#define TPL_ARENA_MAX ((size_t)256 << 20)
/* Longest string a template expression may produce (`~`, `+`, `*`). */
#define TPL_STR_MAX ((size_t)1 << 24)

static inline void *aalloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->total + cap > TPL_ARENA_MAX) {
            a->over = a->oom = true;
            return NULL;
        }
        a->total += cap;
        arena_blk *b = malloc(sizeof *b + cap);
        if (!b) {
            a->oom = true;
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static inline void arena_free(arena *a) {
    while (a->head) {
        arena_blk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

enum {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF
};

/* ---- AST ---- */

enum {
    N_BLOCK, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE,
    N_CONST_STR, N_CONST_INT, N_CONST_FLOAT, N_CONST_BOOL, N_CONST_NONE,
    N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_BIN, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_COND, N_LIST, N_TUPLE, N_DICT
};

typedef struct node {
    int kind, op;           /* op: binary operator code */
    size_t pos;
    struct node *a, *b, *c, *d;
    struct node **kids;     /* block statements, call args, list items, dict k/v pairs */
    const char **kw;        /* keyword names of call args (NULL = positional) */
    size_t nk;
    const char *s;          /* name, attribute, filter/test name, text, string constant */
    size_t sn;
    const char *s2;         /* second loop target / set attribute */
    size_t sn2;
    int64_t i;
    double f;
    bool neg;               /* `is not` */
} node;

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

struct vkd_tpl {
    char *src;
    size_t len;
    arena ar;      /* tokens, AST and literal strings */
    struct node *root;
};

/* "chat template line L col C: <message>" */
vkd_result tpl_fail(vkd_error *err, vkd_result code, const char *src, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
