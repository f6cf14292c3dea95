/* chat_template_value.c: the chat-template evaluator's values: containers, str() and
 * repr(), truthiness and equality, string helpers and JSON (tojson). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "chat_template_value.h"

const char *tpl_type_name(const val *v) {
    static const char *const names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict", "function", "method"};
    return names[v->t];
}

/* ---- containers ---- */

vdict *tpl_dict_new(ctx *C) { return aalloc(&C->ar, sizeof(vdict)); }

bool tpl_dict_set(ctx *C, vdict *d, const char *k, size_t kl, val v) {
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

const val *tpl_dict_get(const vdict *d, const char *k, size_t kl) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kl[i] == kl && !memcmp(d->k[i], k, kl)) return &d->v[i];
    return NULL;
}

vlist *tpl_list_new(ctx *C, size_t n) {
    vlist *l = aalloc(&C->ar, sizeof *l);
    if (!l) return NULL;
    l->v = aalloc(&C->ar, (n ? n : 1) * sizeof *l->v);
    if (!l->v) return NULL;
    l->n = n;
    return l;
}

/* ---- strings ---- */


void tpl_sb_put(ctx *C, sbuf *b, const char *s, size_t n) {
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
    tpl_sb_put(C, b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void fmt_float(ctx *C, sbuf *b, double f) {
    if (isnan(f)) { tpl_sb_put(C, b, "nan", 3); return; }
    if (isinf(f)) { tpl_sb_put(C, b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3); return; }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) { /* shortest repr that round-trips, as Python */
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    tpl_sb_put(C, b, tmp, strlen(tmp));
    if (!strpbrk(tmp, ".en")) tpl_sb_put(C, b, ".0", 2);
}

void tpl_to_str(ctx *C, sbuf *b, const val *v, bool repr);

static void repr_str(ctx *C, sbuf *b, const char *p, size_t n) {
    bool dq = memchr(p, '\'', n) && !memchr(p, '"', n);
    char q = dq ? '"' : '\'';
    tpl_sb_put(C, b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') tpl_sb_put(C, b, "\\\\", 2);
        else if (c == q) { tpl_sb_put(C, b, "\\", 1); tpl_sb_put(C, b, &c, 1); }
        else if (c == '\n') tpl_sb_put(C, b, "\\n", 2);
        else if (c == '\t') tpl_sb_put(C, b, "\\t", 2);
        else if (c == '\r') tpl_sb_put(C, b, "\\r", 2);
        else if ((unsigned char)c < 0x20 || c == 0x7f) sb_fmt(C, b, "\\x%02x", (unsigned char)c);
        else tpl_sb_put(C, b, &c, 1);
    }
    tpl_sb_put(C, b, &q, 1);
}

void tpl_to_str(ctx *C, sbuf *b, const val *v, bool repr) {
    switch (v->t) {
    case V_UNDEF: break;
    case V_NONE: tpl_sb_put(C, b, "None", 4); break;
    case V_BOOL: tpl_sb_put(C, b, v->b ? "True" : "False", v->b ? 4 : 5); break;
    case V_INT: sb_fmt(C, b, "%lld", (long long)v->i); break;
    case V_FLOAT: fmt_float(C, b, v->f); break;
    case V_STR:
        if (repr) repr_str(C, b, v->s.p, v->s.n);
        else tpl_sb_put(C, b, v->s.p, v->s.n);
        break;
    case V_LIST:
        tpl_sb_put(C, b, "[", 1);
        for (size_t i = 0; i < v->l->n; i++) {
            if (i) tpl_sb_put(C, b, ", ", 2);
            tpl_to_str(C, b, &v->l->v[i], true);
        }
        tpl_sb_put(C, b, "]", 1);
        break;
    case V_DICT:
        tpl_sb_put(C, b, "{", 1);
        for (size_t i = 0; i < v->d->n; i++) {
            if (i) tpl_sb_put(C, b, ", ", 2);
            repr_str(C, b, v->d->k[i], v->d->kl[i]);
            tpl_sb_put(C, b, ": ", 2);
            tpl_to_str(C, b, &v->d->v[i], true);
        }
        tpl_sb_put(C, b, "}", 1);
        break;
    default: tpl_sb_put(C, b, "<function>", 10); break;
    }
}

vkd_result tpl_str_of(ctx *C, const val *v, val *out) {
    if (v->t == V_STR) { *out = *v; return VKD_OK; }
    sbuf b = {0};
    tpl_sb_put(C, &b, "", 0);
    tpl_to_str(C, &b, v, false);
    if (b.oom) return ENOMEM(C);
    *out = v_str(b.p, b.n);
    return VKD_OK;
}

bool tpl_truthy(const val *v) {
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

/* A float outside int64's range (or NaN) saturates instead of being undefined behaviour. */
int64_t tpl_inum(const val *v) {
    if (v->t == V_INT) return v->i;
    if (v->t == V_BOOL) return v->b;
    if (!(v->f == v->f)) return 0;
    if (v->f >= 9223372036854775807.0) return INT64_MAX;
    if (v->f <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v->f;
}

bool tpl_equal(const val *a, const val *b) {
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a->t != b->t) return false;
    switch (a->t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a->s.n == b->s.n && !memcmp(a->s.p, b->s.p, a->s.n);
    case V_LIST:
        if (a->l->n != b->l->n) return false;
        for (size_t i = 0; i < a->l->n; i++)
            if (!tpl_equal(&a->l->v[i], &b->l->v[i])) return false;
        return true;
    case V_DICT:
        if (a->d->n != b->d->n) return false;
        for (size_t i = 0; i < a->d->n; i++) {
            const val *o = tpl_dict_get(b->d, a->d->k[i], a->d->kl[i]);
            if (!o || !tpl_equal(&a->d->v[i], o)) return false;
        }
        return true;
    default: return a->d == b->d;
    }
}

/* UTF-8 code point boundaries of s: offs[0..cnt] */
size_t *tpl_cp_offsets(ctx *C, const char *s, size_t n, size_t *cnt) {
    size_t *o = aalloc(&C->ar, (n + 1) * sizeof *o), k = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) o[k++] = i;
    o[k] = n;
    *cnt = k;
    return o;
}

bool tpl_is_ws_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* tpl_strip(chars): which = 1 left, 2 right, 3 both */
val tpl_strip(val s, const val *chars, int which) {
    const char *p = s.s.p;
    size_t a = 0, b = s.s.n;
    bool custom = chars && chars->t == V_STR;
#define STRIPPABLE(c) (custom ? memchr(chars->s.p, (c), chars->s.n) != NULL : tpl_is_ws_char(c))
    if (which & 1) while (a < b && STRIPPABLE(p[a])) a++;
    if (which & 2) while (b > a && STRIPPABLE(p[b - 1])) b--;
#undef STRIPPABLE
    return v_str(p + a, b - a);
}

/* ---- JSON (transformers' tojson: ensure_ascii=False) ---- */

static void json_str(ctx *C, sbuf *b, const char *p, size_t n) {
    tpl_sb_put(C, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"': tpl_sb_put(C, b, "\\\"", 2); break;
        case '\\': tpl_sb_put(C, b, "\\\\", 2); break;
        case '\n': tpl_sb_put(C, b, "\\n", 2); break;
        case '\r': tpl_sb_put(C, b, "\\r", 2); break;
        case '\t': tpl_sb_put(C, b, "\\t", 2); break;
        case '\b': tpl_sb_put(C, b, "\\b", 2); break;
        case '\f': tpl_sb_put(C, b, "\\f", 2); break;
        default:
            if (c < 0x20) sb_fmt(C, b, "\\u%04x", c);
            else tpl_sb_put(C, b, (const char *)&p[i], 1);
        }
    }
    tpl_sb_put(C, b, "\"", 1);
}

void tpl_json_val(ctx *C, sbuf *b, const val *v, int indent, int level) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: tpl_sb_put(C, b, "null", 4); return;
    case V_BOOL: tpl_sb_put(C, b, v->b ? "true" : "false", v->b ? 4 : 5); return;
    case V_INT: case V_FLOAT: tpl_to_str(C, b, v, false); return;
    case V_STR: json_str(C, b, v->s.p, v->s.n); return;
    case V_LIST: case V_DICT: {
        bool isd = v->t == V_DICT;
        size_t n = isd ? v->d->n : v->l->n;
        tpl_sb_put(C, b, isd ? "{" : "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) tpl_sb_put(C, b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) {
                tpl_sb_put(C, b, "\n", 1);
                for (int k = 0; k < indent * (level + 1); k++) tpl_sb_put(C, b, " ", 1);
            }
            if (isd) {
                json_str(C, b, v->d->k[i], v->d->kl[i]);
                tpl_sb_put(C, b, ": ", 2);
            }
            tpl_json_val(C, b, isd ? &v->d->v[i] : &v->l->v[i], indent, level + 1);
        }
        if (indent >= 0 && n) {
            tpl_sb_put(C, b, "\n", 1);
            for (int k = 0; k < indent * level; k++) tpl_sb_put(C, b, " ", 1);
        }
        tpl_sb_put(C, b, isd ? "}" : "]", 1);
        return;
    }
    default: tpl_sb_put(C, b, "null", 4);
    }
}

/* ---- indexing and iteration ---- */

int64_t tpl_norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

vkd_result tpl_do_slice(ctx *C, const node *n, const val *obj, const val *s0, const val *s1, const val *s2, val *out) {
    int64_t step = s2 && s2->t != V_NONE ? tpl_inum(s2) : 1;
    if (step == 0) return EFAIL(C, n, "slice step cannot be zero");
    size_t cnt;
    size_t *o = NULL;
    if (obj->t == V_LIST) cnt = obj->l->n;
    else if (obj->t == V_STR) { if (!(o = tpl_cp_offsets(C, obj->s.p, obj->s.n, &cnt))) return ENOMEM(C); }
    else return EFAIL(C, n, "cannot slice %s", tpl_type_name(obj));
    int64_t len = (int64_t)cnt, a, b;
    bool ha = s0 && s0->t != V_NONE && s0->t != V_UNDEF, hb = s1 && s1->t != V_NONE && s1->t != V_UNDEF;
    if (step > 0) {
        a = ha ? tpl_norm_index(tpl_inum(s0), len) : 0;
        b = hb ? tpl_norm_index(tpl_inum(s1), len) : len;
        if (a < 0) a = 0;
        if (a > len) a = len;
        if (b < 0) b = 0;
        if (b > len) b = len;
    } else {
        a = ha ? tpl_norm_index(tpl_inum(s0), len) : len - 1;
        b = hb ? tpl_norm_index(tpl_inum(s1), len) : -1;
        if (a < -1) a = -1;
        if (a >= len) a = len - 1;
        if (b < -1) b = -1;
        if (b >= len) b = len - 1;
    }
    size_t m = 0;
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) m++;
    if (obj->t == V_LIST) {
        vlist *l = tpl_list_new(C, m);
        if (!l) return ENOMEM(C);
        size_t k = 0;
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step) l->v[k++] = obj->l->v[i];
        *out = (val){.t = V_LIST, .l = l};
    } else {
        sbuf sb = {0};
        tpl_sb_put(C, &sb, "", 0);
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step) tpl_sb_put(C, &sb, obj->s.p + o[i], o[i + 1] - o[i]);
        if (sb.oom) return ENOMEM(C);
        *out = v_str(sb.p, sb.n);
    }
    return VKD_OK;
}

/* Items of an iterable for loops and filters (dict: its keys; string: characters). */
vkd_result tpl_iter_items(ctx *C, const node *n, const val *v, vlist **out) {
    if (v->t == V_LIST) { *out = v->l; return VKD_OK; }
    if (v->t == V_DICT) {
        vlist *l = tpl_list_new(C, v->d->n);
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < v->d->n; i++) l->v[i] = v_str(v->d->k[i], v->d->kl[i]);
        *out = l;
        return VKD_OK;
    }
    if (v->t == V_STR) {
        size_t cnt, *o = tpl_cp_offsets(C, v->s.p, v->s.n, &cnt);
        vlist *l = o ? tpl_list_new(C, cnt) : NULL;
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < cnt; i++) l->v[i] = v_str(v->s.p + o[i], o[i + 1] - o[i]);
        *out = l;
        return VKD_OK;
    }
    if (v->t == V_UNDEF || v->t == V_NONE) {
        if (v->t == V_NONE) return EFAIL(C, n, "'NoneType' object is not iterable");
        *out = tpl_list_new(C, 0); /* Jinja iterates an undefined value as empty */
        return *out ? VKD_OK : ENOMEM(C);
    }
    return EFAIL(C, n, "%s is not iterable", tpl_type_name(v));
}
