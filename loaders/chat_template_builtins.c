/* chat_template_builtins.c: what a chat template can call: methods of strings, lists and
 * dicts, the global functions (namespace, range, raise_exception, strftime_now, dict),
 * filters and tests, with Python/Jinja semantics where templates can tell the difference. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "chat_template_value.h"

/* Positional argument i, or keyword name; NULL when absent. */
const val *tpl_arg(const args *a, size_t i, const char *name) {
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

vkd_result tpl_need_str(ctx *C, const node *n, const val *v, const char *what) {
    if (!v || v->t != V_STR) return EFAIL(C, n, "%s expects a string, got %s", what, v ? tpl_type_name(v) : "nothing");
    return VKD_OK;
}

vkd_result tpl_call_method(ctx *C, const node *n, const vmethod *m, const args *a, val *out) {
    const val *self = &m->self;
    const char *nm = m->name;
    vkd_result r;
    if (self->t == V_STR) {
        const char *p = self->s.p;
        size_t sn = self->s.n;
        if (!strcmp(nm, "startswith") || !strcmp(nm, "endswith")) {
            bool ends = nm[0] == 'e';
            const val *x = tpl_arg(a, 0, NULL);
            size_t cnt = x && x->t == V_LIST ? x->l->n : 1;
            bool hit = false;
            for (size_t i = 0; i < cnt && !hit; i++) {
                const val *e = x && x->t == V_LIST ? &x->l->v[i] : x;
                if ((r = tpl_need_str(C, n, e, nm))) return r;
                hit = e->s.n <= sn && !memcmp(ends ? p + sn - e->s.n : p, e->s.p, e->s.n);
            }
            *out = v_bool(hit);
            return VKD_OK;
        }
        if (!strcmp(nm, "strip") || !strcmp(nm, "lstrip") || !strcmp(nm, "rstrip")) {
            const val *ch = tpl_arg(a, 0, "chars");
            if (ch && ch->t != V_STR && ch->t != V_NONE) return EFAIL(C, n, "%s expects a string", nm);
            *out = tpl_strip(*self, ch, nm[0] == 'l' ? 1 : nm[0] == 'r' ? 2 : 3);
            return VKD_OK;
        }
        if (!strcmp(nm, "split") || !strcmp(nm, "rsplit")) {
            const val *sep = tpl_arg(a, 0, "sep"), *mx = tpl_arg(a, 1, "maxsplit");
            int64_t maxs = mx && is_num(mx) ? tpl_inum(mx) : -1;
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
                    while (i < sn && tpl_is_ws_char(p[i])) i++;
                    if (i >= sn) break;
                    size_t st = i;
                    if (maxs >= 0 && (int64_t)np >= maxs) {
                        size_t e = sn;
                        while (e > st && tpl_is_ws_char(p[e - 1])) e--;
                        parts[np++] = v_str(p + st, e - st);
                        break;
                    }
                    while (i < sn && !tpl_is_ws_char(p[i])) i++;
                    parts[np++] = v_str(p + st, i - st);
                }
            }
            vlist *l = tpl_list_new(C, np);
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
            const val *o = tpl_arg(a, 0, NULL), *nw = tpl_arg(a, 1, NULL), *cnt = tpl_arg(a, 2, NULL);
            if ((r = tpl_need_str(C, n, o, "replace")) || (r = tpl_need_str(C, n, nw, "replace"))) return r;
            int64_t max = cnt && is_num(cnt) ? tpl_inum(cnt) : -1;
            sbuf b = {0};
            tpl_sb_put(C, &b, "", 0);
            int64_t done = 0;
            for (size_t i = 0; i < sn;) {
                if (o->s.n && (max < 0 || done < max) && i + o->s.n <= sn && !memcmp(p + i, o->s.p, o->s.n)) {
                    tpl_sb_put(C, &b, nw->s.p, nw->s.n);
                    i += o->s.n;
                    done++;
                } else {
                    tpl_sb_put(C, &b, p + i++, 1);
                }
            }
            if (b.oom) return ENOMEM(C);
            *out = v_str(b.p, b.n);
            return VKD_OK;
        }
        if (!strcmp(nm, "find") || !strcmp(nm, "count")) {
            const val *x = tpl_arg(a, 0, NULL);
            if ((r = tpl_need_str(C, n, x, nm))) return r;
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
            const val *k = tpl_arg(a, 0, NULL), *d = tpl_arg(a, 1, NULL);
            if ((r = tpl_need_str(C, n, k, "get"))) return r;
            const val *v = tpl_dict_get(self->d, k->s.p, k->s.n);
            *out = v ? *v : d ? *d : v_none();
            return VKD_OK;
        }
        if (!strcmp(nm, "items") || !strcmp(nm, "keys") || !strcmp(nm, "values")) {
            vlist *l = tpl_list_new(C, self->d->n);
            if (!l) return ENOMEM(C);
            for (size_t i = 0; i < self->d->n; i++) {
                val k = v_str(self->d->k[i], self->d->kl[i]);
                if (nm[0] == 'k') l->v[i] = k;
                else if (nm[0] == 'v') l->v[i] = self->d->v[i];
                else {
                    vlist *pr = tpl_list_new(C, 2);
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
    return EFAIL(C, n, "%s has no method '%s'", tpl_type_name(self), nm);
}

vkd_result tpl_call_func(ctx *C, const node *n, int fn, const args *a, val *out) {
    switch (fn) {
    case FN_NAMESPACE: case FN_DICT: {
        vdict *d = tpl_dict_new(C);
        if (!d) return ENOMEM(C);
        for (size_t i = 0; i < a->n; i++) {
            if (!a->kw || !a->kw[i]) return EFAIL(C, n, "namespace()/dict() take keyword arguments only");
            if (!tpl_dict_set(C, d, a->kw[i], strlen(a->kw[i]), a->v[i])) return ENOMEM(C);
        }
        *out = (val){.t = V_DICT, .d = d};
        return VKD_OK;
    }
    case FN_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (a->n == 1 && is_num(&a->v[0])) hi = tpl_inum(&a->v[0]);
        else if (a->n >= 2 && is_num(&a->v[0]) && is_num(&a->v[1])) {
            lo = tpl_inum(&a->v[0]);
            hi = tpl_inum(&a->v[1]);
            if (a->n == 3 && is_num(&a->v[2])) st = tpl_inum(&a->v[2]);
        } else return EFAIL(C, n, "range() expects 1 to 3 integers");
        if (st == 0) return EFAIL(C, n, "range() step must not be zero");
        int64_t cnt = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0) : (lo > hi ? (lo - hi - st - 1) / -st : 0);
        if (cnt > 1000000) return EFAIL(C, n, "range() too long");
        vlist *l = tpl_list_new(C, (size_t)cnt);
        if (!l) return ENOMEM(C);
        for (int64_t i = 0; i < cnt; i++) l->v[i] = v_int(lo + i * st);
        *out = (val){.t = V_LIST, .l = l};
        return VKD_OK;
    }
    case FN_RAISE: {
        val s;
        vkd_result r = a->n ? tpl_str_of(C, &a->v[0], &s) : (s = v_cstr(""), VKD_OK);
        if (r) return r;
        return EFAIL(C, n, "template raised an exception: %.*s", (int)(s.s.n > 300 ? 300 : s.s.n), s.s.p);
    }
    case FN_STRFTIME: {
        const val *f = tpl_arg(a, 0, NULL);
        vkd_result r = tpl_need_str(C, n, f, "strftime_now");
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


vkd_result tpl_apply_filter(ctx *C, const node *n, const val *in, const args *a, val *out) {
    const char *f = n->s;
    vkd_result r;
    if (!strcmp(f, "trim")) {
        val s;
        if ((r = tpl_str_of(C, in, &s))) return r;
        *out = tpl_strip(s, tpl_arg(a, 0, "chars"), 3);
        return VKD_OK;
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (in->t == V_STR) { size_t c; if (!tpl_cp_offsets(C, in->s.p, in->s.n, &c)) return ENOMEM(C); *out = v_int((int64_t)c); }
        else if (in->t == V_LIST) *out = v_int((int64_t)in->l->n);
        else if (in->t == V_DICT) *out = v_int((int64_t)in->d->n);
        else if (in->t == V_UNDEF) *out = v_int(0);
        else return EFAIL(C, n, "object of type %s has no length", tpl_type_name(in));
        return VKD_OK;
    }
    if (!strcmp(f, "string")) return tpl_str_of(C, in, out);
    if (!strcmp(f, "safe") || (!strcmp(f, "list") && in->t == V_LIST)) { *out = *in; return VKD_OK; }
    if (!strcmp(f, "list")) {
        vlist *l;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        *out = (val){.t = V_LIST, .l = l};
        return VKD_OK;
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const val *d = tpl_arg(a, 0, "default_value"), *b = tpl_arg(a, 1, "boolean");
        bool use = in->t == V_UNDEF || (b && tpl_truthy(b) && !tpl_truthy(in));
        *out = use ? (d ? *d : v_str("", 0)) : *in;
        return VKD_OK;
    }
    if (!strcmp(f, "tojson")) {
        const val *ind = tpl_arg(a, 0, "indent");
        sbuf b = {0};
        tpl_sb_put(C, &b, "", 0);
        tpl_json_val(C, &b, in, ind && is_num(ind) ? (int)tpl_inum(ind) : -1, 0);
        if (b.oom) return ENOMEM(C);
        *out = v_str(b.p, b.n);
        return VKD_OK;
    }
    if (!strcmp(f, "upper") || !strcmp(f, "lower") || !strcmp(f, "title") || !strcmp(f, "capitalize")) {
        val s;
        if ((r = tpl_str_of(C, in, &s))) return r;
        vmethod m = {s, f};
        args none = {0};
        return tpl_call_method(C, n, &m, &none, out);
    }
    if (!strcmp(f, "replace")) {
        val s;
        if ((r = tpl_str_of(C, in, &s))) return r;
        vmethod m = {s, "replace"};
        return tpl_call_method(C, n, &m, a, out);
    }
    if (!strcmp(f, "join")) {
        const val *sep = tpl_arg(a, 0, "d");
        vlist *l;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        sbuf b = {0};
        tpl_sb_put(C, &b, "", 0);
        for (size_t i = 0; i < l->n; i++) {
            if (i && sep && sep->t == V_STR) tpl_sb_put(C, &b, sep->s.p, sep->s.n);
            tpl_to_str(C, &b, &l->v[i], false);
        }
        if (b.oom) return ENOMEM(C);
        *out = v_str(b.p, b.n);
        return VKD_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        vlist *l;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        *out = l->n ? l->v[f[0] == 'f' ? 0 : l->n - 1] : v_undef();
        return VKD_OK;
    }
    if (!strcmp(f, "reverse")) {
        if (in->t == V_STR) return tpl_do_slice(C, n, in, NULL, NULL, &(val){.t = V_INT, .i = -1}, out);
        vlist *l, *rl;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        if (!(rl = tpl_list_new(C, l->n))) return ENOMEM(C);
        for (size_t i = 0; i < l->n; i++) rl->v[i] = l->v[l->n - 1 - i];
        *out = (val){.t = V_LIST, .l = rl};
        return VKD_OK;
    }
    if (!strcmp(f, "items")) {
        if (in->t == V_UNDEF) { vlist *l = tpl_list_new(C, 0); if (!l) return ENOMEM(C); *out = (val){.t = V_LIST, .l = l}; return VKD_OK; }
        if (in->t != V_DICT) return EFAIL(C, n, "items expects a mapping, got %s", tpl_type_name(in));
        vmethod m = {*in, "items"};
        args none = {0};
        return tpl_call_method(C, n, &m, &none, out);
    }
    if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr") || !strcmp(f, "map")) {
        bool attr = strstr(f, "attr") != NULL, sel = f[0] == 's', map = f[0] == 'm';
        vlist *l, *o;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        if (!(o = tpl_list_new(C, l->n))) return ENOMEM(C);
        size_t k = 0, skip = attr ? 1 : 0;
        const val *an = attr || map ? tpl_arg(a, 0, "attribute") : NULL;
        if (map) {
            if (!an || an->t != V_STR) return EFAIL(C, n, "map: only map(attribute='name') is supported");
        } else if (attr && (!an || an->t != V_STR)) return EFAIL(C, n, "%s expects an attribute name", f);
        const val *tn = map ? NULL : tpl_arg(a, skip, NULL);
        if (!map && tn && tn->t != V_STR) return EFAIL(C, n, "%s expects a test name", f);
        args rest = {a->v ? a->v + skip + 1 : NULL, NULL, a->n > skip + 1 ? a->n - skip - 1 : 0};
        for (size_t i = 0; i < l->n; i++) {
            val item = l->v[i];
            if (an) {
                if (item.t != V_DICT) { item = v_undef(); }
                else { const val *g = tpl_dict_get(item.d, an->s.p, an->s.n); item = g ? *g : v_undef(); }
            }
            if (map) { o->v[k++] = item; continue; }
            bool t = tpl_truthy(&item);
            if (tn) {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)(tn->s.n > 63 ? 63 : tn->s.n), tn->s.p);
                if ((r = tpl_apply_test(C, n, name, &item, &rest, &t))) return r;
            }
            if (t == sel) o->v[k++] = l->v[i];
        }
        o->n = k;
        *out = (val){.t = V_LIST, .l = o};
        return VKD_OK;
    }
    if (!strcmp(f, "unique")) {
        vlist *l, *o;
        if ((r = tpl_iter_items(C, n, in, &l))) return r;
        if (!(o = tpl_list_new(C, l->n))) return ENOMEM(C);
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++) dup = tpl_equal(&o->v[j], &l->v[i]);
            if (!dup) o->v[k++] = l->v[i];
        }
        o->n = k;
        *out = (val){.t = V_LIST, .l = o};
        return VKD_OK;
    }
    if (!strcmp(f, "int")) {
        if (in->t == V_STR) { char tmp[64]; snprintf(tmp, sizeof tmp, "%.*s", (int)(in->s.n > 63 ? 63 : in->s.n), in->s.p); *out = v_int(strtoll(tmp, NULL, 10)); }
        else *out = v_int(is_num(in) ? tpl_inum(in) : 0);
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

vkd_result tpl_apply_test(ctx *C, const node *n, const char *t, const val *v, const args *a, bool *res) {
    const val *x = a ? tpl_arg(a, 0, NULL) : NULL;
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
        *res = tpl_equal(v, x);
    } else if (!strcmp(t, "ne") || !strcmp(t, "!=")) {
        if (!x) return EFAIL(C, n, "test '%s' needs an argument", t);
        *res = !tpl_equal(v, x);
    } else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v->t != V_STR) { *res = false; return VKD_OK; }
        *res = true;
        for (size_t i = 0; i < v->s.n; i++)
            if (t[0] == 'l' ? (v->s.p[i] >= 'A' && v->s.p[i] <= 'Z') : (v->s.p[i] >= 'a' && v->s.p[i] <= 'z')) *res = false;
    } else return EFAIL(C, n, "unknown test '%s'", t);
    return VKD_OK;
}

