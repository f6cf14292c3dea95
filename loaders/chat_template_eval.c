/* chat_template_eval.c: evaluates a parsed chat template (AST in chat_template_internal.h).
 * Values follow Python/Jinja semantics where the chat templates can tell the difference:
 * truthiness, str() of None/True, negative indices and slices, dict attribute access,
 * undefined values (absent dict keys and names) that are falsy, print as "" and fail on
 * attribute access. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

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

static val v_undef(void) { return (val){.t = V_UNDEF}; }
static val v_none(void) { return (val){.t = V_NONE}; }
static val v_bool(bool b) { return (val){.t = V_BOOL, .b = b}; }
static val v_int(int64_t i) { return (val){.t = V_INT, .i = i}; }
static val v_str(const char *p, size_t n) { val v = {.t = V_STR}; v.s.p = p; v.s.n = n; return v; }
static val v_cstr(const char *p) { return v_str(p, strlen(p)); }

static const char *type_name(const val *v) {
    static const char *names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict", "function", "method"};
    return names[v->t];
}

/* ---- containers ---- */

static vdict *dict_new(ctx *C) { return aalloc(&C->ar, sizeof(vdict)); }

static bool dict_set(ctx *C, vdict *d, const char *k, size_t kl, val v) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kl[i] == kl && !memcmp(d->k[i], k, kl)) {
            d->v[i] = v;
            return true;
        }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        const char **nk = aalloc(&C->ar, nc * sizeof *nk);
        size_t *nl = aalloc(&C->ar, nc * sizeof *nl);
        val *nv = aalloc(&C->ar, nc * sizeof *nv);
        if (!nk || !nl || !nv) return false;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nl, d->kl, d->n * sizeof *nl);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk; d->kl = nl; d->v = nv; d->cap = nc;
    }
    d->k[d->n] = k;
    d->kl[d->n] = kl;
    d->v[d->n++] = v;
    return true;
}

static const val *dict_get(const vdict *d, const char *k, size_t kl) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kl[i] == kl && !memcmp(d->k[i], k, kl)) return &d->v[i];
    return NULL;
}

static vlist *list_new(ctx *C, size_t n) {
    vlist *l = aalloc(&C->ar, sizeof *l);
    if (!l) return NULL;
    l->v = aalloc(&C->ar, (n ? n : 1) * sizeof *l->v);
    if (!l->v) return NULL;
    l->n = n;
    return l;
}

/* ---- strings ---- */

typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_put(ctx *C, sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = aalloc(&C->ar, nc);
        if (!np) { b->oom = true; return; }
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_fmt(ctx *C, sbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sb_fmt(ctx *C, sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(C, b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void fmt_float(ctx *C, sbuf *b, double f) {
    if (isnan(f)) { sb_put(C, b, "nan", 3); return; }
    if (isinf(f)) { sb_put(C, b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3); return; }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) { /* shortest repr that round-trips, as Python */
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    sb_put(C, b, tmp, strlen(tmp));
    if (!strpbrk(tmp, ".en")) sb_put(C, b, ".0", 2);
}

static void to_str(ctx *C, sbuf *b, const val *v, bool repr);

static void repr_str(ctx *C, sbuf *b, const char *p, size_t n) {
    bool dq = memchr(p, '\'', n) && !memchr(p, '"', n);
    char q = dq ? '"' : '\'';
    sb_put(C, b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') sb_put(C, b, "\\\\", 2);
        else if (c == q) { sb_put(C, b, "\\", 1); sb_put(C, b, &c, 1); }
        else if (c == '\n') sb_put(C, b, "\\n", 2);
        else if (c == '\t') sb_put(C, b, "\\t", 2);
        else if (c == '\r') sb_put(C, b, "\\r", 2);
        else if ((unsigned char)c < 0x20 || c == 0x7f) sb_fmt(C, b, "\\x%02x", (unsigned char)c);
        else sb_put(C, b, &c, 1);
    }
    sb_put(C, b, &q, 1);
}

static void to_str(ctx *C, sbuf *b, const val *v, bool repr) {
    switch (v->t) {
    case V_UNDEF: break;
    case V_NONE: sb_put(C, b, "None", 4); break;
    case V_BOOL: sb_put(C, b, v->b ? "True" : "False", v->b ? 4 : 5); break;
    case V_INT: sb_fmt(C, b, "%lld", (long long)v->i); break;
    case V_FLOAT: fmt_float(C, b, v->f); break;
    case V_STR:
        if (repr) repr_str(C, b, v->s.p, v->s.n);
        else sb_put(C, b, v->s.p, v->s.n);
        break;
    case V_LIST:
        sb_put(C, b, "[", 1);
        for (size_t i = 0; i < v->l->n; i++) {
            if (i) sb_put(C, b, ", ", 2);
            to_str(C, b, &v->l->v[i], true);
        }
        sb_put(C, b, "]", 1);
        break;
    case V_DICT:
        sb_put(C, b, "{", 1);
        for (size_t i = 0; i < v->d->n; i++) {
            if (i) sb_put(C, b, ", ", 2);
            repr_str(C, b, v->d->k[i], v->d->kl[i]);
            sb_put(C, b, ": ", 2);
            to_str(C, b, &v->d->v[i], true);
        }
        sb_put(C, b, "}", 1);
        break;
    default: sb_put(C, b, "<function>", 10); break;
    }
}

static vkd_result str_of(ctx *C, const val *v, val *out) {
    if (v->t == V_STR) { *out = *v; return VKD_OK; }
    sbuf b = {0};
    sb_put(C, &b, "", 0);
    to_str(C, &b, v, false);
    if (b.oom) return ENOMEM(C);
    *out = v_str(b.p, b.n);
    return VKD_OK;
}

static bool truthy(const val *v) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v->b;
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->s.n != 0;
    case V_LIST: return v->l->n != 0;
    case V_DICT: return v->d->n != 0;
    default: return true;
    }
}

static bool is_num(const val *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static double num(const val *v) { return v->t == V_FLOAT ? v->f : v->t == V_INT ? (double)v->i : v->b; }
/* A float outside int64's range (or NaN) saturates instead of being undefined behaviour. */
static int64_t inum(const val *v) {
    if (v->t == V_INT) return v->i;
    if (v->t == V_BOOL) return v->b;
    if (!(v->f == v->f)) return 0;
    if (v->f >= 9223372036854775807.0) return INT64_MAX;
    if (v->f <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v->f;
}

static bool equal(const val *a, const val *b) {
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a->t != b->t) return false;
    switch (a->t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a->s.n == b->s.n && !memcmp(a->s.p, b->s.p, a->s.n);
    case V_LIST:
        if (a->l->n != b->l->n) return false;
        for (size_t i = 0; i < a->l->n; i++)
            if (!equal(&a->l->v[i], &b->l->v[i])) return false;
        return true;
    case V_DICT:
        if (a->d->n != b->d->n) return false;
        for (size_t i = 0; i < a->d->n; i++) {
            const val *o = dict_get(b->d, a->d->k[i], a->d->kl[i]);
            if (!o || !equal(&a->d->v[i], o)) return false;
        }
        return true;
    default: return a->d == b->d;
    }
}

/* UTF-8 code point boundaries of s: offs[0..cnt] */
static size_t *cp_offsets(ctx *C, const char *s, size_t n, size_t *cnt) {
    size_t *o = aalloc(&C->ar, (n + 1) * sizeof *o), k = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) o[k++] = i;
    o[k] = n;
    *cnt = k;
    return o;
}

static bool is_ws_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* strip(chars): which = 1 left, 2 right, 3 both */
static val strip(val s, const val *chars, int which) {
    const char *p = s.s.p;
    size_t a = 0, b = s.s.n;
    bool custom = chars && chars->t == V_STR;
#define STRIPPABLE(c) (custom ? memchr(chars->s.p, (c), chars->s.n) != NULL : is_ws_char(c))
    if (which & 1) while (a < b && STRIPPABLE(p[a])) a++;
    if (which & 2) while (b > a && STRIPPABLE(p[b - 1])) b--;
#undef STRIPPABLE
    return v_str(p + a, b - a);
}

/* ---- JSON (transformers' tojson: ensure_ascii=False) ---- */

static void json_str(ctx *C, sbuf *b, const char *p, size_t n) {
    sb_put(C, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"': sb_put(C, b, "\\\"", 2); break;
        case '\\': sb_put(C, b, "\\\\", 2); break;
        case '\n': sb_put(C, b, "\\n", 2); break;
        case '\r': sb_put(C, b, "\\r", 2); break;
        case '\t': sb_put(C, b, "\\t", 2); break;
        case '\b': sb_put(C, b, "\\b", 2); break;
        case '\f': sb_put(C, b, "\\f", 2); break;
        default:
            if (c < 0x20) sb_fmt(C, b, "\\u%04x", c);
            else sb_put(C, b, (const char *)&p[i], 1);
        }
    }
    sb_put(C, b, "\"", 1);
}

static void json_val(ctx *C, sbuf *b, const val *v, int indent, int level) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: sb_put(C, b, "null", 4); return;
    case V_BOOL: sb_put(C, b, v->b ? "true" : "false", v->b ? 4 : 5); return;
    case V_INT: case V_FLOAT: to_str(C, b, v, false); return;
    case V_STR: json_str(C, b, v->s.p, v->s.n); return;
    case V_LIST: case V_DICT: {
        bool isd = v->t == V_DICT;
        size_t n = isd ? v->d->n : v->l->n;
        sb_put(C, b, isd ? "{" : "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) sb_put(C, b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) {
                sb_put(C, b, "\n", 1);
                for (int k = 0; k < indent * (level + 1); k++) sb_put(C, b, " ", 1);
            }
            if (isd) {
                json_str(C, b, v->d->k[i], v->d->kl[i]);
                sb_put(C, b, ": ", 2);
            }
            json_val(C, b, isd ? &v->d->v[i] : &v->l->v[i], indent, level + 1);
        }
        if (indent >= 0 && n) {
            sb_put(C, b, "\n", 1);
            for (int k = 0; k < indent * level; k++) sb_put(C, b, " ", 1);
        }
        sb_put(C, b, isd ? "}" : "]", 1);
        return;
    }
    default: sb_put(C, b, "null", 4);
    }
}

/* ---- evaluation ---- */

static vkd_result eval(ctx *C, const node *n, val *out);
static vkd_result exec_block(ctx *C, const node *n);

static const val *lookup(ctx *C, const char *name, size_t nl) {
    for (int i = C->ns - 1; i >= 0; i--) {
        const val *v = dict_get(C->scopes[i], name, nl);
        if (v) return v;
    }
    return NULL;
}

/* Evaluated call arguments. */
typedef struct args { val *v; const char **kw; size_t n; } args;

static vkd_result eval_args(ctx *C, const node *n, args *a) {
    a->n = n->nk;
    a->kw = n->kw;
    a->v = aalloc(&C->ar, (n->nk ? n->nk : 1) * sizeof *a->v);
    if (!a->v) return ENOMEM(C);
    for (size_t i = 0; i < n->nk; i++) {
        vkd_result r = eval(C, n->kids[i], &a->v[i]);
        if (r) return r;
    }
    return VKD_OK;
}

/* Positional argument i, or keyword name; NULL when absent. */
static const val *arg(const args *a, size_t i, const char *name) {
    size_t pos = 0;
    for (size_t k = 0; k < a->n; k++) {
        if (a->kw && a->kw[k]) {
            if (name && !strcmp(a->kw[k], name)) return &a->v[k];
        } else if (pos++ == i) {
            return &a->v[k];
        }
    }
    return NULL;
}

static vkd_result need_str(ctx *C, const node *n, const val *v, const char *what) {
    if (!v || v->t != V_STR) return EFAIL(C, n, "%s expects a string, got %s", what, v ? type_name(v) : "nothing");
    return VKD_OK;
}

static vkd_result apply_test(ctx *C, const node *n, const char *name, const val *v, const args *a, bool *res);

static vkd_result call_method(ctx *C, const node *n, const vmethod *m, const args *a, val *out) {
    const val *self = &m->self;
    const char *nm = m->name;
    vkd_result r;
    if (self->t == V_STR) {
        const char *p = self->s.p;
        size_t sn = self->s.n;
        if (!strcmp(nm, "startswith") || !strcmp(nm, "endswith")) {
            bool ends = nm[0] == 'e';
            const val *x = arg(a, 0, NULL);
            size_t cnt = x && x->t == V_LIST ? x->l->n : 1;
            bool hit = false;
            for (size_t i = 0; i < cnt && !hit; i++) {
                const val *e = x && x->t == V_LIST ? &x->l->v[i] : x;
                if ((r = need_str(C, n, e, nm))) return r;
                hit = e->s.n <= sn && !memcmp(ends ? p + sn - e->s.n : p, e->s.p, e->s.n);
            }
            *out = v_bool(hit);
            return VKD_OK;
        }
        if (!strcmp(nm, "strip") || !strcmp(nm, "lstrip") || !strcmp(nm, "rstrip")) {
            const val *ch = arg(a, 0, "chars");
            if (ch && ch->t != V_STR && ch->t != V_NONE) return EFAIL(C, n, "%s expects a string", nm);
            *out = strip(*self, ch, nm[0] == 'l' ? 1 : nm[0] == 'r' ? 2 : 3);
            return VKD_OK;
        }
        if (!strcmp(nm, "split") || !strcmp(nm, "rsplit")) {
            const val *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
            int64_t maxs = mx && is_num(mx) ? inum(mx) : -1;
            bool rs = nm[0] == 'r';
            val parts[4096];
            size_t np = 0;
            if (sep && sep->t == V_STR) {
                if (!sep->s.n) return EFAIL(C, n, "split: empty separator");
                if (!rs) {
                    size_t st = 0;
                    for (size_t i = 0; i + sep->s.n <= sn && np < 4095;) {
                        if ((maxs < 0 || (int64_t)np < maxs) && !memcmp(p + i, sep->s.p, sep->s.n)) {
                            parts[np++] = v_str(p + st, i - st);
                            i += sep->s.n;
                            st = i;
                        } else {
                            i++;
                        }
                    }
                    parts[np++] = v_str(p + st, sn - st);
                } else {
                    size_t en = sn;
                    val tmp[4096];
                    size_t nt = 0;
                    for (size_t i = sn; i >= sep->s.n && nt < 4095;) {
                        if ((maxs < 0 || (int64_t)nt < maxs) && !memcmp(p + i - sep->s.n, sep->s.p, sep->s.n)) {
                            tmp[nt++] = v_str(p + i, en - i);
                            i -= sep->s.n;
                            en = i;
                        } else {
                            i--;
                        }
                    }
                    tmp[nt++] = v_str(p, en);
                    for (size_t i = 0; i < nt; i++) parts[np++] = tmp[nt - 1 - i];
                }
            } else { /* whitespace split */
                size_t i = 0;
                while (i < sn && np < 4095) {
                    while (i < sn && is_ws_char(p[i])) i++;
                    if (i >= sn) break;
                    size_t st = i;
                    if (maxs >= 0 && (int64_t)np >= maxs) {
                        size_t e = sn;
                        while (e > st && is_ws_char(p[e - 1])) e--;
                        parts[np++] = v_str(p + st, e - st);
                        break;
                    }
                    while (i < sn && !is_ws_char(p[i])) i++;
                    parts[np++] = v_str(p + st, i - st);
                }
            }
            vlist *l = list_new(C, np);
            if (!l) return ENOMEM(C);
            memcpy(l->v, parts, np * sizeof *parts);
            *out = (val){.t = V_LIST, .l = l};
            return VKD_OK;
        }
        if (!strcmp(nm, "upper") || !strcmp(nm, "lower") || !strcmp(nm, "title") || !strcmp(nm, "capitalize")) {
            char *q = aalloc(&C->ar, sn + 1);
            if (!q) return ENOMEM(C);
            bool start = true;
            for (size_t i = 0; i < sn; i++) {
                char c = p[i];
                bool up = nm[0] == 'u' || ((nm[0] == 't' || nm[0] == 'c') && start && (nm[0] == 't' || i == 0));
                if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
                else if (!up && nm[0] != 'u' && c >= 'A' && c <= 'Z') c = (char)(c + 32);
                q[i] = c;
                start = nm[0] == 't' ? !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) : false;
            }
            *out = v_str(q, sn);
            return VKD_OK;
        }
        if (!strcmp(nm, "replace")) {
            const val *o = arg(a, 0, NULL), *nw = arg(a, 1, NULL), *cnt = arg(a, 2, NULL);
            if ((r = need_str(C, n, o, "replace")) || (r = need_str(C, n, nw, "replace"))) return r;
            int64_t max = cnt && is_num(cnt) ? inum(cnt) : -1;
            sbuf b = {0};
            sb_put(C, &b, "", 0);
            int64_t done = 0;
            for (size_t i = 0; i < sn;) {
                if (o->s.n && (max < 0 || done < max) && i + o->s.n <= sn && !memcmp(p + i, o->s.p, o->s.n)) {
                    sb_put(C, &b, nw->s.p, nw->s.n);
                    i += o->s.n;
                    done++;
                } else {
                    sb_put(C, &b, p + i++, 1);
                }
            }
            if (b.oom) return ENOMEM(C);
            *out = v_str(b.p, b.n);
            return VKD_OK;
        }
        if (!strcmp(nm, "find") || !strcmp(nm, "count")) {
            const val *x = arg(a, 0, NULL);
            if ((r = need_str(C, n, x, nm))) return r;
            int64_t found = -1, count = 0;
            for (size_t i = 0; i + x->s.n <= sn; i++)
                if (!memcmp(p + i, x->s.p, x->s.n)) {
                    if (found < 0) found = (int64_t)i;
                    count++;
                    if (x->s.n) i += x->s.n - 1;
                }
            *out = v_int(nm[0] == 'f' ? found : count);
            return VKD_OK;
        }
    } else if (self->t == V_DICT) {
        if (!strcmp(nm, "get")) {
            const val *k = arg(a, 0, NULL), *d = arg(a, 1, NULL);
            if ((r = need_str(C, n, k, "get"))) return r;
            const val *v = dict_get(self->d, k->s.p, k->s.n);
            *out = v ? *v : d ? *d : v_none();
            return VKD_OK;
        }
        if (!strcmp(nm, "items") || !strcmp(nm, "keys") || !strcmp(nm, "values")) {
            vlist *l = list_new(C, self->d->n);
            if (!l) return ENOMEM(C);
            for (size_t i = 0; i < self->d->n; i++) {
                val k = v_str(self->d->k[i], self->d->kl[i]);
                if (nm[0] == 'k') l->v[i] = k;
                else if (nm[0] == 'v') l->v[i] = self->d->v[i];
                else {
                    vlist *pr = list_new(C, 2);
                    if (!pr) return ENOMEM(C);
                    pr->v[0] = k;
                    pr->v[1] = self->d->v[i];
                    l->v[i] = (val){.t = V_LIST, .l = pr};
                }
            }
            *out = (val){.t = V_LIST, .l = l};
            return VKD_OK;
        }
    }
    return EFAIL(C, n, "%s has no method '%s'", type_name(self), nm);
}

static vkd_result call_func(ctx *C, const node *n, int fn, const args *a, val *out) {
    switch (fn) {
    case FN_NAMESPACE: case FN_DICT: {
        vdict *d = dict_new(C);
        if (!d) return ENOMEM(C);
        for (size_t i = 0; i < a->n; i++) {
            if (!a->kw || !a->kw[i]) return EFAIL(C, n, "namespace()/dict() take keyword arguments only");
            if (!dict_set(C, d, a->kw[i], strlen(a->kw[i]), a->v[i])) return ENOMEM(C);
        }
        *out = (val){.t = V_DICT, .d = d};
        return VKD_OK;
    }
    case FN_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (a->n == 1 && is_num(&a->v[0])) hi = inum(&a->v[0]);
        else if (a->n >= 2 && is_num(&a->v[0]) && is_num(&a->v[1])) {
            lo = inum(&a->v[0]);
            hi = inum(&a->v[1]);
            if (a->n == 3 && is_num(&a->v[2])) st = inum(&a->v[2]);
        } else return EFAIL(C, n, "range() expects 1 to 3 integers");
        if (st == 0) return EFAIL(C, n, "range() step must not be zero");
        int64_t cnt = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0) : (lo > hi ? (lo - hi - st - 1) / -st : 0);
        if (cnt > 1000000) return EFAIL(C, n, "range() too long");
        vlist *l = list_new(C, (size_t)cnt);
        if (!l) return ENOMEM(C);
        for (int64_t i = 0; i < cnt; i++) l->v[i] = v_int(lo + i * st);
        *out = (val){.t = V_LIST, .l = l};
        return VKD_OK;
    }
    case FN_RAISE: {
        val s;
        vkd_result r = a->n ? str_of(C, &a->v[0], &s) : (s = v_cstr(""), VKD_OK);
        if (r) return r;
        return EFAIL(C, n, "template raised an exception: %.*s", (int)(s.s.n > 300 ? 300 : s.s.n), s.s.p);
    }
    case FN_STRFTIME: {
        const val *f = arg(a, 0, NULL);
        vkd_result r = need_str(C, n, f, "strftime_now");
        if (r) return r;
        struct tm tm = {0};
        const char *d = C->opts->date;
        int y, mo, dd;
        if (d) {
            if (sscanf(d, "%d-%d-%d", &y, &mo, &dd) != 3 || mo < 1 || mo > 12 || dd < 1 || dd > 31)
                return EFAIL(C, n, "date option '%s' is not YYYY-MM-DD", d);
            tm.tm_year = y - 1900;
            tm.tm_mon = mo - 1;
            tm.tm_mday = dd;
            tm.tm_hour = 12;
            tm.tm_isdst = -1;
            time_t tt = mktime(&tm); /* fills the weekday */
            if (tt != (time_t)-1) localtime_r(&tt, &tm);
        } else {
            time_t now = time(NULL);
            localtime_r(&now, &tm);
        }
        char fmt[256], buf[512];
        size_t fl = f->s.n < sizeof fmt - 1 ? f->s.n : sizeof fmt - 1;
        memcpy(fmt, f->s.p, fl);
        fmt[fl] = 0;
        size_t k = strftime(buf, sizeof buf, fmt, &tm);
        char *s = aalloc(&C->ar, k + 1);
        if (!s) return ENOMEM(C);
        memcpy(s, buf, k);
        *out = v_str(s, k);
        return VKD_OK;
    }
    }
    return EFAIL(C, n, "not callable");
}

static int64_t norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

static vkd_result get_item(ctx *C, const node *n, const val *obj, const val *key, val *out) {
    if (obj->t == V_DICT) {
        if (key->t != V_STR) { *out = v_undef(); return VKD_OK; }
        const val *v = dict_get(obj->d, key->s.p, key->s.n);
        *out = v ? *v : v_undef();
        return VKD_OK;
    }
    if ((obj->t == V_LIST || obj->t == V_STR) && (key->t == V_INT || key->t == V_BOOL)) {
        if (obj->t == V_LIST) {
            int64_t i = norm_index(inum(key), (int64_t)obj->l->n);
            if (i < 0 || i >= (int64_t)obj->l->n) return EFAIL(C, n, "list index %lld out of range", (long long)inum(key));
            *out = obj->l->v[i];
            return VKD_OK;
        }
        size_t cnt;
        size_t *o = cp_offsets(C, obj->s.p, obj->s.n, &cnt);
        if (!o) return ENOMEM(C);
        int64_t i = norm_index(inum(key), (int64_t)cnt);
        if (i < 0 || i >= (int64_t)cnt) return EFAIL(C, n, "string index %lld out of range", (long long)inum(key));
        *out = v_str(obj->s.p + o[i], o[i + 1] - o[i]);
        return VKD_OK;
    }
    if (obj->t == V_UNDEF) return EFAIL(C, n, "cannot index an undefined value");
    if (obj->t == V_STR || obj->t == V_LIST) return EFAIL(C, n, "%s indices must be integers", type_name(obj));
    *out = v_undef();
    return VKD_OK;
}

static vkd_result do_slice(ctx *C, const node *n, const val *obj, const val *s0, const val *s1, const val *s2, val *out) {
    int64_t step = s2 && s2->t != V_NONE ? inum(s2) : 1;
    if (step == 0) return EFAIL(C, n, "slice step cannot be zero");
    size_t cnt;
    size_t *o = NULL;
    if (obj->t == V_LIST) cnt = obj->l->n;
    else if (obj->t == V_STR) { if (!(o = cp_offsets(C, obj->s.p, obj->s.n, &cnt))) return ENOMEM(C); }
    else return EFAIL(C, n, "cannot slice %s", type_name(obj));
    int64_t len = (int64_t)cnt, a, b;
    bool ha = s0 && s0->t != V_NONE && s0->t != V_UNDEF, hb = s1 && s1->t != V_NONE && s1->t != V_UNDEF;
    if (step > 0) {
        a = ha ? norm_index(inum(s0), len) : 0;
        b = hb ? norm_index(inum(s1), len) : len;
        if (a < 0) a = 0;
        if (a > len) a = len;
        if (b < 0) b = 0;
        if (b > len) b = len;
    } else {
        a = ha ? norm_index(inum(s0), len) : len - 1;
        b = hb ? norm_index(inum(s1), len) : -1;
        if (a < -1) a = -1;
        if (a >= len) a = len - 1;
        if (b < -1) b = -1;
        if (b >= len) b = len - 1;
    }
    size_t m = 0;
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) m++;
    if (obj->t == V_LIST) {
        vlist *l = list_new(C, m);
        if (!l) return ENOMEM(C);
        size_t k = 0;
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step) l->v[k++] = obj->l->v[i];
        *out = (val){.t = V_LIST, .l = l};
    } else {
        sbuf sb = {0};
        sb_put(C, &sb, "", 0);
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step) sb_put(C, &sb, obj->s.p + o[i], o[i + 1] - o[i]);
        if (sb.oom) return ENOMEM(C);
        *out = v_str(sb.p, sb.n);
    }
    return VKD_OK;
}

/* Items of an iterable for loops and filters (dict: its keys; string: characters). */
static vkd_result iter_items(ctx *C, const node *n, const val *v, vlist **out) {
    if (v->t == V_LIST) { *out = v->l; return VKD_OK; }
    if (v->t == V_DICT) {
        vlist *l = list_new(C, v->d->n);
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < v->d->n; i++) l->v[i] = v_str(v->d->k[i], v->d->kl[i]);
        *out = l;
        return VKD_OK;
    }
    if (v->t == V_STR) {
        size_t cnt, *o = cp_offsets(C, v->s.p, v->s.n, &cnt);
        vlist *l = o ? list_new(C, cnt) : NULL;
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < cnt; i++) l->v[i] = v_str(v->s.p + o[i], o[i + 1] - o[i]);
        *out = l;
        return VKD_OK;
    }
    if (v->t == V_UNDEF || v->t == V_NONE) {
        if (v->t == V_NONE) return EFAIL(C, n, "'NoneType' object is not iterable");
        *out = list_new(C, 0); /* Jinja iterates an undefined value as empty */
        return *out ? VKD_OK : ENOMEM(C);
    }
    return EFAIL(C, n, "%s is not iterable", type_name(v));
}

static vkd_result apply_filter(ctx *C, const node *n, const val *in, const args *a, val *out) {
    const char *f = n->s;
    vkd_result r;
    if (!strcmp(f, "trim")) {
        val s;
        if ((r = str_of(C, in, &s))) return r;
        *out = strip(s, arg(a, 0, "chars"), 3);
        return VKD_OK;
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (in->t == V_STR) { size_t c; if (!cp_offsets(C, in->s.p, in->s.n, &c)) return ENOMEM(C); *out = v_int((int64_t)c); }
        else if (in->t == V_LIST) *out = v_int((int64_t)in->l->n);
        else if (in->t == V_DICT) *out = v_int((int64_t)in->d->n);
        else if (in->t == V_UNDEF) *out = v_int(0);
        else return EFAIL(C, n, "object of type %s has no length", type_name(in));
        return VKD_OK;
    }
    if (!strcmp(f, "string")) return str_of(C, in, out);
    if (!strcmp(f, "safe") || (!strcmp(f, "list") && in->t == V_LIST)) { *out = *in; return VKD_OK; }
    if (!strcmp(f, "list")) {
        vlist *l;
        if ((r = iter_items(C, n, in, &l))) return r;
        *out = (val){.t = V_LIST, .l = l};
        return VKD_OK;
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const val *d = arg(a, 0, "default_value"), *b = arg(a, 1, "boolean");
        bool use = in->t == V_UNDEF || (b && truthy(b) && !truthy(in));
        *out = use ? (d ? *d : v_str("", 0)) : *in;
        return VKD_OK;
    }
    if (!strcmp(f, "tojson")) {
        const val *ind = arg(a, 0, "indent");
        sbuf b = {0};
        sb_put(C, &b, "", 0);
        json_val(C, &b, in, ind && is_num(ind) ? (int)inum(ind) : -1, 0);
        if (b.oom) return ENOMEM(C);
        *out = v_str(b.p, b.n);
        return VKD_OK;
    }
    if (!strcmp(f, "upper") || !strcmp(f, "lower") || !strcmp(f, "title") || !strcmp(f, "capitalize")) {
        val s;
        if ((r = str_of(C, in, &s))) return r;
        vmethod m = {s, f};
        args none = {0};
        return call_method(C, n, &m, &none, out);
    }
    if (!strcmp(f, "replace")) {
        val s;
        if ((r = str_of(C, in, &s))) return r;
        vmethod m = {s, "replace"};
        return call_method(C, n, &m, a, out);
    }
    if (!strcmp(f, "join")) {
        const val *sep = arg(a, 0, "d");
        vlist *l;
        if ((r = iter_items(C, n, in, &l))) return r;
        sbuf b = {0};
        sb_put(C, &b, "", 0);
        for (size_t i = 0; i < l->n; i++) {
            if (i && sep && sep->t == V_STR) sb_put(C, &b, sep->s.p, sep->s.n);
            to_str(C, &b, &l->v[i], false);
        }
        if (b.oom) return ENOMEM(C);
        *out = v_str(b.p, b.n);
        return VKD_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        vlist *l;
        if ((r = iter_items(C, n, in, &l))) return r;
        *out = l->n ? l->v[f[0] == 'f' ? 0 : l->n - 1] : v_undef();
        return VKD_OK;
    }
    if (!strcmp(f, "reverse")) {
        if (in->t == V_STR) return do_slice(C, n, in, NULL, NULL, &(val){.t = V_INT, .i = -1}, out);
        vlist *l, *rl;
        if ((r = iter_items(C, n, in, &l))) return r;
        if (!(rl = list_new(C, l->n))) return ENOMEM(C);
        for (size_t i = 0; i < l->n; i++) rl->v[i] = l->v[l->n - 1 - i];
        *out = (val){.t = V_LIST, .l = rl};
        return VKD_OK;
    }
    if (!strcmp(f, "items")) {
        if (in->t == V_UNDEF) { vlist *l = list_new(C, 0); if (!l) return ENOMEM(C); *out = (val){.t = V_LIST, .l = l}; return VKD_OK; }
        if (in->t != V_DICT) return EFAIL(C, n, "items expects a mapping, got %s", type_name(in));
        vmethod m = {*in, "items"};
        args none = {0};
        return call_method(C, n, &m, &none, out);
    }
    if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr") || !strcmp(f, "map")) {
        bool attr = strstr(f, "attr") != NULL, sel = f[0] == 's', map = f[0] == 'm';
        vlist *l, *o;
        if ((r = iter_items(C, n, in, &l))) return r;
        if (!(o = list_new(C, l->n))) return ENOMEM(C);
        size_t k = 0, skip = attr ? 1 : 0;
        const val *an = attr || map ? arg(a, 0, "attribute") : NULL;
        if (map) {
            if (!an || an->t != V_STR) return EFAIL(C, n, "map: only map(attribute='name') is supported");
        } else if (attr && (!an || an->t != V_STR)) return EFAIL(C, n, "%s expects an attribute name", f);
        const val *tn = map ? NULL : arg(a, skip, NULL);
        if (!map && tn && tn->t != V_STR) return EFAIL(C, n, "%s expects a test name", f);
        args rest = {a->v ? a->v + skip + 1 : NULL, NULL, a->n > skip + 1 ? a->n - skip - 1 : 0};
        for (size_t i = 0; i < l->n; i++) {
            val item = l->v[i];
            if (an) {
                if (item.t != V_DICT) { item = v_undef(); }
                else { const val *g = dict_get(item.d, an->s.p, an->s.n); item = g ? *g : v_undef(); }
            }
            if (map) { o->v[k++] = item; continue; }
            bool t = truthy(&item);
            if (tn) {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)(tn->s.n > 63 ? 63 : tn->s.n), tn->s.p);
                if ((r = apply_test(C, n, name, &item, &rest, &t))) return r;
            }
            if (t == sel) o->v[k++] = l->v[i];
        }
        o->n = k;
        *out = (val){.t = V_LIST, .l = o};
        return VKD_OK;
    }
    if (!strcmp(f, "unique")) {
        vlist *l, *o;
        if ((r = iter_items(C, n, in, &l))) return r;
        if (!(o = list_new(C, l->n))) return ENOMEM(C);
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++) dup = equal(&o->v[j], &l->v[i]);
            if (!dup) o->v[k++] = l->v[i];
        }
        o->n = k;
        *out = (val){.t = V_LIST, .l = o};
        return VKD_OK;
    }
    if (!strcmp(f, "int")) {
        if (in->t == V_STR) { char tmp[64]; snprintf(tmp, sizeof tmp, "%.*s", (int)(in->s.n > 63 ? 63 : in->s.n), in->s.p); *out = v_int(strtoll(tmp, NULL, 10)); }
        else *out = v_int(is_num(in) ? inum(in) : 0);
        return VKD_OK;
    }
    if (!strcmp(f, "float")) {
        double d = 0;
        if (in->t == V_STR) { char tmp[64]; snprintf(tmp, sizeof tmp, "%.*s", (int)(in->s.n > 63 ? 63 : in->s.n), in->s.p); d = strtod(tmp, NULL); }
        else if (is_num(in)) d = num(in);
        *out = (val){.t = V_FLOAT, .f = d};
        return VKD_OK;
    }
    if (!strcmp(f, "abs")) {
        if (in->t == V_INT) *out = v_int(in->i < 0 ? -in->i : in->i);
        else if (is_num(in)) *out = (val){.t = V_FLOAT, .f = fabs(num(in))};
        else return EFAIL(C, n, "abs expects a number");
        return VKD_OK;
    }
    return EFAIL(C, n, "unknown filter '%s'", f);
}

static vkd_result apply_test(ctx *C, const node *n, const char *t, const val *v, const args *a, bool *res) {
    const val *x = a ? arg(a, 0, NULL) : NULL;
    if (!strcmp(t, "defined")) *res = v->t != V_UNDEF;
    else if (!strcmp(t, "undefined")) *res = v->t == V_UNDEF;
    else if (!strcmp(t, "none")) *res = v->t == V_NONE;
    else if (!strcmp(t, "string")) *res = v->t == V_STR;
    else if (!strcmp(t, "number")) *res = v->t == V_INT || v->t == V_FLOAT;
    else if (!strcmp(t, "integer")) *res = v->t == V_INT;
    else if (!strcmp(t, "float")) *res = v->t == V_FLOAT;
    else if (!strcmp(t, "boolean")) *res = v->t == V_BOOL;
    else if (!strcmp(t, "true")) *res = v->t == V_BOOL && v->b;
    else if (!strcmp(t, "false")) *res = v->t == V_BOOL && !v->b;
    else if (!strcmp(t, "mapping")) *res = v->t == V_DICT;
    else if (!strcmp(t, "iterable")) *res = v->t == V_LIST || v->t == V_DICT || v->t == V_STR;
    else if (!strcmp(t, "sequence")) *res = v->t == V_LIST || v->t == V_STR || v->t == V_DICT;
    else if (!strcmp(t, "callable")) *res = v->t == V_FUNC || v->t == V_METHOD;
    else if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        if (v->t != V_INT) return EFAIL(C, n, "test '%s' expects an integer", t);
        *res = (v->i % 2 != 0) == (t[0] == 'o');
    } else if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "==") || !strcmp(t, "sameas")) {
        if (!x) return EFAIL(C, n, "test '%s' needs an argument", t);
        *res = equal(v, x);
    } else if (!strcmp(t, "ne") || !strcmp(t, "!=")) {
        if (!x) return EFAIL(C, n, "test '%s' needs an argument", t);
        *res = !equal(v, x);
    } else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v->t != V_STR) { *res = false; return VKD_OK; }
        *res = true;
        for (size_t i = 0; i < v->s.n; i++)
            if (t[0] == 'l' ? (v->s.p[i] >= 'A' && v->s.p[i] <= 'Z') : (v->s.p[i] >= 'a' && v->s.p[i] <= 'z')) *res = false;
    } else return EFAIL(C, n, "unknown test '%s'", t);
    return VKD_OK;
}

static vkd_result binop(ctx *C, const node *n, int op, const val *a, const val *b, val *out) {
    switch (op) {
    case OP_EQ: *out = v_bool(equal(a, b)); return VKD_OK;
    case OP_NE: *out = v_bool(!equal(a, b)); return VKD_OK;
    case OP_IN: case OP_NOTIN: {
        bool in = false;
        if (b->t == V_STR) {
            if (a->t != V_STR) return EFAIL(C, n, "'in <string>' requires a string on the left, got %s", type_name(a));
            if (!a->s.n) in = true;
            for (size_t i = 0; !in && i + a->s.n <= b->s.n; i++) in = !memcmp(b->s.p + i, a->s.p, a->s.n);
        } else if (b->t == V_LIST) {
            for (size_t i = 0; !in && i < b->l->n; i++) in = equal(a, &b->l->v[i]);
        } else if (b->t == V_DICT) {
            in = a->t == V_STR && dict_get(b->d, a->s.p, a->s.n);
        } else if (b->t != V_UNDEF) {
            return EFAIL(C, n, "argument of type %s is not iterable", type_name(b));
        }
        *out = v_bool(op == OP_IN ? in : !in);
        return VKD_OK;
    }
    case OP_CONCAT: {
        sbuf s = {0};
        sb_put(C, &s, "", 0);
        to_str(C, &s, a, false);
        to_str(C, &s, b, false);
        if (s.oom) return ENOMEM(C);
        if (s.n > TPL_STR_MAX) return EFAIL(C, n, "string concatenation ('~') too long (over 16 MiB)");
        *out = v_str(s.p, s.n);
        return VKD_OK;
    }
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
        int c;
        if (is_num(a) && is_num(b)) c = num(a) < num(b) ? -1 : num(a) > num(b);
        else if (a->t == V_STR && b->t == V_STR) {
            size_t m = a->s.n < b->s.n ? a->s.n : b->s.n;
            c = memcmp(a->s.p, b->s.p, m);
            if (!c) c = a->s.n < b->s.n ? -1 : a->s.n > b->s.n;
        } else return EFAIL(C, n, "cannot compare %s with %s", type_name(a), type_name(b));
        *out = v_bool(op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0);
        return VKD_OK;
    }
    case OP_ADD:
        if (a->t == V_STR && b->t == V_STR) {
            if (a->s.n + b->s.n > TPL_STR_MAX) return EFAIL(C, n, "string concatenation ('+') too long (over 16 MiB)");
            char *p = aalloc(&C->ar, a->s.n + b->s.n + 1);
            if (!p) return ENOMEM(C);
            memcpy(p, a->s.p, a->s.n);
            memcpy(p + a->s.n, b->s.p, b->s.n);
            *out = v_str(p, a->s.n + b->s.n);
            return VKD_OK;
        }
        if (a->t == V_LIST && b->t == V_LIST) {
            vlist *l = list_new(C, a->l->n + b->l->n);
            if (!l) return ENOMEM(C);
            if (a->l->n) memcpy(l->v, a->l->v, a->l->n * sizeof *l->v);
            if (b->l->n) memcpy(l->v + a->l->n, b->l->v, b->l->n * sizeof *l->v);
            *out = (val){.t = V_LIST, .l = l};
            return VKD_OK;
        }
        break;
    case OP_MUL:
        if ((a->t == V_STR && b->t == V_INT) || (a->t == V_INT && b->t == V_STR)) {
            const val *s = a->t == V_STR ? a : b;
            int64_t k = a->t == V_INT ? a->i : b->i;
            if (k < 0) k = 0;
            if ((uint64_t)k * s->s.n > TPL_STR_MAX) return EFAIL(C, n, "string repetition too long");
            char *p = aalloc(&C->ar, (size_t)k * s->s.n + 1);
            if (!p) return ENOMEM(C);
            for (int64_t i = 0; i < k; i++) memcpy(p + (size_t)i * s->s.n, s->s.p, s->s.n);
            *out = v_str(p, (size_t)k * s->s.n);
            return VKD_OK;
        }
        break;
    default: break;
    }
    if (!is_num(a) || !is_num(b))
        return EFAIL(C, n, "unsupported operand types %s and %s", type_name(a), type_name(b));
    bool ints = a->t != V_FLOAT && b->t != V_FLOAT;
    double x = num(a), y = num(b);
    int64_t i = inum(a), j = inum(b);
    switch (op) {
    case OP_ADD: *out = ints ? v_int((int64_t)((uint64_t)i + (uint64_t)j)) : (val){.t = V_FLOAT, .f = x + y}; return VKD_OK;
    case OP_SUB: *out = ints ? v_int((int64_t)((uint64_t)i - (uint64_t)j)) : (val){.t = V_FLOAT, .f = x - y}; return VKD_OK;
    case OP_MUL: *out = ints ? v_int((int64_t)((uint64_t)i * (uint64_t)j)) : (val){.t = V_FLOAT, .f = x * y}; return VKD_OK;
    case OP_DIV:
        if (y == 0) return EFAIL(C, n, "division by zero");
        *out = (val){.t = V_FLOAT, .f = x / y};
        return VKD_OK;
    case OP_FLOORDIV: case OP_MOD:
        if (y == 0) return EFAIL(C, n, "division by zero");
        if (ints) {
            if (i == INT64_MIN && j == -1) return EFAIL(C, n, "integer overflow");
            int64_t q = i / j, m = i % j;
            if (m && ((m < 0) != (j < 0))) { q--; m += j; }
            *out = v_int(op == OP_MOD ? m : q);
        } else {
            double q = floor(x / y);
            *out = (val){.t = V_FLOAT, .f = op == OP_MOD ? x - q * y : q};
        }
        return VKD_OK;
    case OP_POW: *out = (val){.t = V_FLOAT, .f = pow(x, y)}; if (ints && j >= 0 && fabs(out->f) < 9e18) *out = v_int((int64_t)out->f); return VKD_OK;
    }
    return EFAIL(C, n, "bad operator");
}

static vkd_result eval(ctx *C, const node *n, val *out) {
    vkd_result r;
    if (++C->depth > 400) return EFAIL(C, n, "expression nested too deeply");
    val a, b;
    switch (n->kind) {
    case N_CONST_STR: *out = v_str(n->s, n->sn); break;
    case N_CONST_INT: *out = v_int(n->i); break;
    case N_CONST_FLOAT: *out = (val){.t = V_FLOAT, .f = n->f}; break;
    case N_CONST_BOOL: *out = v_bool(n->i != 0); break;
    case N_CONST_NONE: *out = v_none(); break;
    case N_NAME: {
        const val *v = lookup(C, n->s, n->sn);
        *out = v ? *v : v_undef();
        break;
    }
    case N_ATTR:
        if ((r = eval(C, n->a, &a))) return r;
        if (a.t == V_UNDEF || a.t == V_NONE) return EFAIL(C, n, "'%s' has no attribute '%s' (value is %s)", n->a->kind == N_NAME ? n->a->s : "expression", n->s, type_name(&a));
        if (a.t == V_DICT) {
            const val *v = dict_get(a.d, n->s, n->sn);
            if (v) { *out = *v; break; }
        }
        if (a.t == V_STR || a.t == V_DICT) {
            vmethod *m = aalloc(&C->ar, sizeof *m);
            if (!m) return ENOMEM(C);
            m->self = a;
            m->name = n->s;
            *out = a.t == V_DICT && strcmp(n->s, "items") && strcmp(n->s, "keys") && strcmp(n->s, "values") && strcmp(n->s, "get")
                       ? v_undef() : (val){.t = V_METHOD, .m = m};
            break;
        }
        *out = v_undef();
        break;
    case N_ITEM:
        if ((r = eval(C, n->a, &a)) || (r = eval(C, n->b, &b))) return r;
        if ((r = get_item(C, n, &a, &b, out))) return r;
        break;
    case N_SLICE: {
        val s[3];
        const val *ps[3] = {NULL, NULL, NULL};
        const node *parts[3] = {n->b, n->c, n->d};
        if ((r = eval(C, n->a, &a))) return r;
        for (int i = 0; i < 3; i++)
            if (parts[i]) {
                if ((r = eval(C, parts[i], &s[i]))) return r;
                if (s[i].t != V_NONE && !is_num(&s[i])) return EFAIL(C, n, "slice indices must be integers");
                ps[i] = &s[i];
            }
        if ((r = do_slice(C, n, &a, ps[0], ps[1], ps[2], out))) return r;
        break;
    }
    case N_CALL: {
        args ar;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar))) return r;
        if (a.t == V_METHOD) r = call_method(C, n, a.m, &ar, out);
        else if (a.t == V_FUNC) r = call_func(C, n, a.fn, &ar, out);
        else r = EFAIL(C, n, "%s is not callable", n->a->kind == N_NAME ? n->a->s : type_name(&a));
        if (r) return r;
        break;
    }
    case N_FILTER: {
        args ar;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar)) || (r = apply_filter(C, n, &a, &ar, out))) return r;
        break;
    }
    case N_TEST: {
        args ar;
        bool t;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar)) || (r = apply_test(C, n, n->s, &a, &ar, &t))) return r;
        *out = v_bool(t != n->neg);
        break;
    }
    case N_BIN:
        if ((r = eval(C, n->a, &a)) || (r = eval(C, n->b, &b)) || (r = binop(C, n, n->op, &a, &b, out))) return r;
        break;
    case N_NEG: case N_POS:
        if ((r = eval(C, n->a, &a))) return r;
        if (!is_num(&a)) return EFAIL(C, n, "bad operand type for unary %c: %s", n->kind == N_NEG ? '-' : '+', type_name(&a));
        *out = n->kind == N_POS ? a : a.t == V_FLOAT ? (val){.t = V_FLOAT, .f = -a.f} : v_int((int64_t)(0 - (uint64_t)inum(&a)));
        break;
    case N_NOT:
        if ((r = eval(C, n->a, &a))) return r;
        *out = v_bool(!truthy(&a));
        break;
    case N_AND: case N_OR:
        if ((r = eval(C, n->a, &a))) return r;
        if (truthy(&a) == (n->kind == N_OR)) { *out = a; break; }
        if ((r = eval(C, n->b, out))) return r;
        break;
    case N_COND:
        if ((r = eval(C, n->b, &b))) return r;
        if (truthy(&b)) r = eval(C, n->a, out);
        else if (n->c) r = eval(C, n->c, out);
        else *out = v_undef();
        if (r) return r;
        break;
    case N_LIST: case N_TUPLE: {
        vlist *l = list_new(C, n->nk);
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < n->nk; i++)
            if ((r = eval(C, n->kids[i], &l->v[i]))) return r;
        *out = (val){.t = V_LIST, .l = l};
        break;
    }
    case N_DICT: {
        vdict *d = dict_new(C);
        if (!d) return ENOMEM(C);
        for (size_t i = 0; i + 1 < n->nk; i += 2) {
            if ((r = eval(C, n->kids[i], &a)) || (r = eval(C, n->kids[i + 1], &b))) return r;
            if ((r = str_of(C, &a, &a))) return r;
            if (!dict_set(C, d, a.s.p, a.s.n, b)) return ENOMEM(C);
        }
        *out = (val){.t = V_DICT, .d = d};
        break;
    }
    default: return EFAIL(C, n, "not an expression");
    }
    C->depth--;
    return VKD_OK;
}

static vkd_result emit(ctx *C, const char *s, size_t n) {
    if (C->on + n + 1 > C->ocap) {
        size_t nc = C->ocap ? C->ocap : 4096;
        while (nc < C->on + n + 1) nc *= 2;
        if (nc > ((size_t)1 << 30)) return vkd_fail(C->err, VKD_ERR_RANGE, "chat template: output over 1 GiB");
        char *p = realloc(C->out, nc);
        if (!p) return ENOMEM(C);
        C->out = p;
        C->ocap = nc;
    }
    memcpy(C->out + C->on, s, n);
    C->on += n;
    C->out[C->on] = 0;
    return VKD_OK;
}

static vkd_result push_scope(ctx *C, const node *n) {
    if (C->ns == MAX_SCOPES) return EFAIL(C, n, "loops nested too deeply");
    if (!(C->scopes[C->ns] = dict_new(C))) return ENOMEM(C);
    C->ns++;
    return VKD_OK;
}

static vkd_result exec_for(ctx *C, const node *n) {
    val it;
    vkd_result r = eval(C, n->a, &it);
    vlist *items;
    if (r || (r = iter_items(C, n->a, &it, &items))) return r;
    if (n->d) { /* for x in xs if cond: filter first, loop.length counts what is left */
        vlist *f = list_new(C, items->n);
        if (!f) return ENOMEM(C);
        size_t k = 0;
        for (size_t i = 0; i < items->n; i++) {
            if ((r = push_scope(C, n))) return r;
            dict_set(C, C->scopes[C->ns - 1], n->s, n->sn, items->v[i]);
            val c;
            r = eval(C, n->d, &c);
            C->ns--;
            if (r) return r;
            if (truthy(&c)) f->v[k++] = items->v[i];
        }
        f->n = k;
        items = f;
    }
    size_t cnt = items->n;
    for (size_t i = 0; i < cnt; i++) {
        if ((r = push_scope(C, n))) return r;
        vdict *sc = C->scopes[C->ns - 1], *loop = dict_new(C);
        if (!loop) return ENOMEM(C);
        val item = items->v[i];
        bool ok = true;
        if (n->s2) {
            if (item.t != V_LIST || item.l->n != 2) return EFAIL(C, n, "cannot unpack %s into 2 loop variables", type_name(&item));
            ok = dict_set(C, sc, n->s, n->sn, item.l->v[0]) && dict_set(C, sc, n->s2, n->sn2, item.l->v[1]);
        } else {
            ok = dict_set(C, sc, n->s, n->sn, item);
        }
        ok = ok && dict_set(C, loop, "index0", 6, v_int((int64_t)i)) && dict_set(C, loop, "index", 5, v_int((int64_t)i + 1)) &&
             dict_set(C, loop, "first", 5, v_bool(i == 0)) && dict_set(C, loop, "last", 4, v_bool(i + 1 == cnt)) &&
             dict_set(C, loop, "length", 6, v_int((int64_t)cnt)) && dict_set(C, loop, "revindex", 8, v_int((int64_t)(cnt - i))) &&
             dict_set(C, loop, "revindex0", 9, v_int((int64_t)(cnt - i - 1))) &&
             dict_set(C, loop, "previtem", 8, i ? items->v[i - 1] : v_undef()) &&
             dict_set(C, loop, "nextitem", 8, i + 1 < cnt ? items->v[i + 1] : v_undef()) &&
             dict_set(C, sc, "loop", 4, (val){.t = V_DICT, .d = loop});
        if (!ok) return ENOMEM(C);
        r = exec_block(C, n->b);
        C->ns--;
        if (r) return r;
        if (C->ctl == 1) { C->ctl = 0; break; }
        C->ctl = 0;
    }
    if (!cnt && n->c) return exec_block(C, n->c);
    return VKD_OK;
}

static vkd_result exec_block(ctx *C, const node *blk) {
    vkd_result r;
    for (size_t k = 0; k < blk->nk && !C->ctl; k++) {
        const node *n = blk->kids[k];
        val v;
        switch (n->kind) {
        case N_TEXT:
            if ((r = emit(C, n->s, n->sn))) return r;
            break;
        case N_OUTPUT: {
            sbuf b = {0};
            if ((r = eval(C, n->a, &v))) return r;
            if (v.t == V_STR) { if ((r = emit(C, v.s.p, v.s.n))) return r; break; }
            sb_put(C, &b, "", 0);
            to_str(C, &b, &v, false);
            if (b.oom) return ENOMEM(C);
            if ((r = emit(C, b.p, b.n))) return r;
            break;
        }
        case N_IF: { /* if / elif chain: c is the next N_IF or the else block */
            const node *br = n;
            while (br && br->kind == N_IF) {
                if ((r = eval(C, br->a, &v))) return r;
                if (truthy(&v)) break;
                br = br->c;
            }
            if (br && (r = exec_block(C, br->kind == N_IF ? br->b : br))) return r;
            break;
        }
        case N_FOR:
            if ((r = exec_for(C, n))) return r;
            break;
        case N_SET:
            if ((r = eval(C, n->a, &v))) return r;
            if (n->s2) {
                const val *ns = lookup(C, n->s, n->sn);
                if (!ns || ns->t != V_DICT) return EFAIL(C, n, "cannot set attribute '%s' of '%s' (not a namespace)", n->s2, n->s);
                if (!dict_set(C, ns->d, n->s2, n->sn2, v)) return ENOMEM(C);
            } else if (!dict_set(C, C->scopes[C->ns - 1], n->s, n->sn, v)) {
                return ENOMEM(C);
            }
            break;
        case N_BREAK: C->ctl = 1; break;
        case N_CONTINUE: C->ctl = 2; break;
        case N_BLOCK:
            if ((r = exec_block(C, n))) return r;
            break;
        default: return EFAIL(C, n, "not a statement");
        }
    }
    return VKD_OK;
}

vkd_result vkd_tpl_render(const vkd_tpl *tpl, const vkd_tpl_message *msgs, size_t nmsg,
                          const vkd_tpl_opts *opts, char **out, size_t *len, vkd_error *err) {
    static const vkd_tpl_opts dflt = {0};
    *out = NULL;
    *len = 0;
    ctx C = {.tpl = tpl, .err = err, .opts = opts ? opts : &dflt};
    vkd_result r = VKD_OK;
    vdict *g = dict_new(&C);
    vlist *ml = list_new(&C, nmsg);
    if (!g || !ml) r = ENOMEM(&C);
    for (size_t i = 0; !r && i < nmsg; i++) {
        vdict *m = dict_new(&C);
        if (!m) { r = ENOMEM(&C); break; }
        const vkd_tpl_message *s = &msgs[i];
        bool ok = dict_set(&C, m, "role", 4, s->role ? v_cstr(s->role) : v_none()) &&
                  dict_set(&C, m, "content", 7, s->content ? v_cstr(s->content) : v_none());
        if (ok && s->reasoning_content) ok = dict_set(&C, m, "reasoning_content", 17, v_cstr(s->reasoning_content));
        if (!ok) r = ENOMEM(&C);
        ml->v[i] = (val){.t = V_DICT, .d = m};
    }
    if (!r) {
        bool ok = dict_set(&C, g, "messages", 8, (val){.t = V_LIST, .l = ml}) &&
                  dict_set(&C, g, "add_generation_prompt", 21, v_bool(C.opts->add_generation_prompt)) &&
                  dict_set(&C, g, "bos_token", 9, v_cstr(C.opts->bos_token ? C.opts->bos_token : "")) &&
                  dict_set(&C, g, "eos_token", 9, v_cstr(C.opts->eos_token ? C.opts->eos_token : "")) &&
                  dict_set(&C, g, "namespace", 9, (val){.t = V_FUNC, .fn = FN_NAMESPACE}) &&
                  dict_set(&C, g, "dict", 4, (val){.t = V_FUNC, .fn = FN_DICT}) &&
                  dict_set(&C, g, "range", 5, (val){.t = V_FUNC, .fn = FN_RANGE}) &&
                  dict_set(&C, g, "raise_exception", 15, (val){.t = V_FUNC, .fn = FN_RAISE}) &&
                  dict_set(&C, g, "strftime_now", 12, (val){.t = V_FUNC, .fn = FN_STRFTIME});
        if (ok && C.opts->enable_thinking != VKD_TPL_THINKING_DEFAULT)
            ok = dict_set(&C, g, "enable_thinking", 15, v_bool(C.opts->enable_thinking == VKD_TPL_THINKING_ON));
        if (!ok) r = ENOMEM(&C);
    }
    if (!r) {
        C.scopes[0] = g;
        C.scopes[1] = dict_new(&C); /* the template's own top-level sets */
        C.ns = 2;
        r = C.scopes[1] ? emit(&C, "", 0) : ENOMEM(&C);
    }
    if (!r) r = exec_block(&C, tpl->root);
    arena_free(&C.ar);
    if (r) {
        free(C.out);
        return r;
    }
    *out = C.out;
    *len = C.on;
    return VKD_OK;
}
