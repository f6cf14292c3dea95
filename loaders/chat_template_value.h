/* chat_template_value.h: the evaluator's values and context, shared by
 * chat_template_value.c (values, containers, str(), JSON), chat_template_builtins.c
 * (methods, global functions, filters, tests) and chat_template_eval.c (expressions,
 * statements, rendering). Not a public header. */
#ifndef VKD_CHAT_TEMPLATE_VALUE_H
#define VKD_CHAT_TEMPLATE_VALUE_H

#include "chat_template_internal.h"

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC, V_METHOD };
enum { FN_NAMESPACE, FN_RANGE, FN_RAISE, FN_STRFTIME, FN_DICT };

typedef struct val val;
typedef struct vlist { val *v; size_t n; } vlist;
typedef struct vdict { const char **k; size_t *kl; val *v; size_t n, cap; } vdict;
typedef struct vmethod vmethod;
struct val {
    int t;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        vlist *l;
        vdict *d;
        int fn;
        vmethod *m;
    };
};
struct vmethod { val self; const char *name; };

#define MAX_SCOPES 128

typedef struct ctx {
    const vkd_tpl *tpl;
    arena ar;
    char *out;
    size_t on, ocap;
    vkd_error *err;
    vdict *scopes[MAX_SCOPES];
    int ns;
    int ctl;                 /* 1 = break, 2 = continue */
    int depth;
    const vkd_tpl_opts *opts;
} ctx;

#define EFAIL(C, n, ...) tpl_fail((C)->err, VKD_ERR_INVALID, (C)->tpl->src, (n)->pos, __VA_ARGS__)
#define ENOMEM(C) ((C)->ar.over ? vkd_fail((C)->err, VKD_ERR_RANGE, "chat template: rendering needs more than " \
                                             "256 MiB (strings built in a loop?)") \
                                : vkd_fail((C)->err, VKD_ERR_NOMEM, "chat template: out of memory"))

static inline val v_undef(void) { return (val){.t = V_UNDEF}; }
static inline val v_none(void) { return (val){.t = V_NONE}; }
static inline val v_bool(bool b) { return (val){.t = V_BOOL, .b = b}; }
static inline val v_int(int64_t i) { return (val){.t = V_INT, .i = i}; }
static inline val v_str(const char *p, size_t n) { val v = {.t = V_STR}; v.s.p = p; v.s.n = n; return v; }
static inline val v_cstr(const char *p) { return v_str(p, strlen(p)); }
static inline bool is_num(const val *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static inline double num(const val *v) { return v->t == V_FLOAT ? v->f : v->t == V_INT ? (double)v->i : v->b; }

/* A growable string in the evaluation arena; oom is sticky. */
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;

/* Evaluated call arguments. */
typedef struct args { val *v; const char **kw; size_t n; } args;

/* chat_template_value.c */
const char *tpl_type_name(const val *v);
vdict *tpl_dict_new(ctx *C);
bool tpl_dict_set(ctx *C, vdict *d, const char *k, size_t kl, val v);
const val *tpl_dict_get(const vdict *d, const char *k, size_t kl);
vlist *tpl_list_new(ctx *C, size_t n);
void tpl_sb_put(ctx *C, sbuf *b, const char *s, size_t n);
void tpl_to_str(ctx *C, sbuf *b, const val *v, bool repr);
vkd_result tpl_str_of(ctx *C, const val *v, val *out);
bool tpl_truthy(const val *v);
int64_t tpl_inum(const val *v);
bool tpl_equal(const val *a, const val *b);
size_t *tpl_cp_offsets(ctx *C, const char *s, size_t n, size_t *cnt);
bool tpl_is_ws_char(char c);
val tpl_strip(val s, const val *chars, int which);
void tpl_json_val(ctx *C, sbuf *b, const val *v, int indent, int level);

/* Python index i (negative from the end) of a sequence of n. */
int64_t tpl_norm_index(int64_t i, int64_t n);
/* obj[s0:s1:s2] of a list or string (Python semantics; absent bounds are NULL). */
vkd_result tpl_do_slice(ctx *C, const node *n, const val *obj, const val *s0, const val *s1, const val *s2, val *out);
/* Items of an iterable for loops and filters (dict: its keys; string: characters). */
vkd_result tpl_iter_items(ctx *C, const node *n, const val *v, vlist **out);

/* chat_template_builtins.c */
const val *tpl_arg(const args *a, size_t i, const char *name);
vkd_result tpl_need_str(ctx *C, const node *n, const val *v, const char *what);
vkd_result tpl_call_method(ctx *C, const node *n, const vmethod *m, const args *a, val *out);
vkd_result tpl_call_func(ctx *C, const node *n, int fn, const args *a, val *out);
vkd_result tpl_apply_filter(ctx *C, const node *n, const val *in, const args *a, val *out);
vkd_result tpl_apply_test(ctx *C, const node *n, const char *t, const val *v, const args *a, bool *res);

#endif
