/* chat_template_eval.c: evaluates a parsed chat template (AST in chat_template_internal.h).
 * Values follow Python/Jinja semantics where the chat templates can tell the difference:
 * truthiness, str() of None/True, negative indices and slices, dict attribute access,
 * undefined values (absent dict keys and names) that are falsy, print as "" and fail on
 * attribute access. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "chat_template_value.h"

/* ---- evaluation ---- */

static vkd_result eval(ctx *C, const node *n, val *out);
static vkd_result exec_block(ctx *C, const node *n);

static const val *lookup(ctx *C, const char *name, size_t nl) {
    for (int i = C->ns - 1; i >= 0; i--) {
        const val *v = tpl_dict_get(C->scopes[i], name, nl);
        if (v) return v;
    }
    return NULL;
}

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

static vkd_result get_item(ctx *C, const node *n, const val *obj, const val *key, val *out) {
    if (obj->t == V_DICT) {
        if (key->t != V_STR) { *out = v_undef(); return VKD_OK; }
        const val *v = tpl_dict_get(obj->d, key->s.p, key->s.n);
        *out = v ? *v : v_undef();
        return VKD_OK;
    }
    if ((obj->t == V_LIST || obj->t == V_STR) && (key->t == V_INT || key->t == V_BOOL)) {
        if (obj->t == V_LIST) {
            int64_t i = tpl_norm_index(tpl_inum(key), (int64_t)obj->l->n);
            if (i < 0 || i >= (int64_t)obj->l->n) return EFAIL(C, n, "list index %lld out of range", (long long)tpl_inum(key));
            *out = obj->l->v[i];
            return VKD_OK;
        }
        size_t cnt;
        size_t *o = tpl_cp_offsets(C, obj->s.p, obj->s.n, &cnt);
        if (!o) return ENOMEM(C);
        int64_t i = tpl_norm_index(tpl_inum(key), (int64_t)cnt);
        if (i < 0 || i >= (int64_t)cnt) return EFAIL(C, n, "string index %lld out of range", (long long)tpl_inum(key));
        *out = v_str(obj->s.p + o[i], o[i + 1] - o[i]);
        return VKD_OK;
    }
    if (obj->t == V_UNDEF) return EFAIL(C, n, "cannot index an undefined value");
    if (obj->t == V_STR || obj->t == V_LIST) return EFAIL(C, n, "%s indices must be integers", tpl_type_name(obj));
    *out = v_undef();
    return VKD_OK;
}



static vkd_result binop(ctx *C, const node *n, int op, const val *a, const val *b, val *out) {
    switch (op) {
    case OP_EQ: *out = v_bool(tpl_equal(a, b)); return VKD_OK;
    case OP_NE: *out = v_bool(!tpl_equal(a, b)); return VKD_OK;
    case OP_IN: case OP_NOTIN: {
        bool in = false;
        if (b->t == V_STR) {
            if (a->t != V_STR) return EFAIL(C, n, "'in <string>' requires a string on the left, got %s", tpl_type_name(a));
            if (!a->s.n) in = true;
            for (size_t i = 0; !in && i + a->s.n <= b->s.n; i++) in = !memcmp(b->s.p + i, a->s.p, a->s.n);
        } else if (b->t == V_LIST) {
            for (size_t i = 0; !in && i < b->l->n; i++) in = tpl_equal(a, &b->l->v[i]);
        } else if (b->t == V_DICT) {
            in = a->t == V_STR && tpl_dict_get(b->d, a->s.p, a->s.n);
        } else if (b->t != V_UNDEF) {
            return EFAIL(C, n, "argument of type %s is not iterable", tpl_type_name(b));
        }
        *out = v_bool(op == OP_IN ? in : !in);
        return VKD_OK;
    }
    case OP_CONCAT: {
        sbuf s = {0};
        tpl_sb_put(C, &s, "", 0);
        tpl_to_str(C, &s, a, false);
        tpl_to_str(C, &s, b, false);
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
        } else return EFAIL(C, n, "cannot compare %s with %s", tpl_type_name(a), tpl_type_name(b));
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
            vlist *l = tpl_list_new(C, a->l->n + b->l->n);
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
        return EFAIL(C, n, "unsupported operand types %s and %s", tpl_type_name(a), tpl_type_name(b));
    bool ints = a->t != V_FLOAT && b->t != V_FLOAT;
    double x = num(a), y = num(b);
    int64_t i = tpl_inum(a), j = tpl_inum(b);
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
        if (a.t == V_UNDEF || a.t == V_NONE) return EFAIL(C, n, "'%s' has no attribute '%s' (value is %s)", n->a->kind == N_NAME ? n->a->s : "expression", n->s, tpl_type_name(&a));
        if (a.t == V_DICT) {
            const val *v = tpl_dict_get(a.d, n->s, n->sn);
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
        if ((r = tpl_do_slice(C, n, &a, ps[0], ps[1], ps[2], out))) return r;
        break;
    }
    case N_CALL: {
        args ar;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar))) return r;
        if (a.t == V_METHOD) r = tpl_call_method(C, n, a.m, &ar, out);
        else if (a.t == V_FUNC) r = tpl_call_func(C, n, a.fn, &ar, out);
        else r = EFAIL(C, n, "%s is not callable", n->a->kind == N_NAME ? n->a->s : tpl_type_name(&a));
        if (r) return r;
        break;
    }
    case N_FILTER: {
        args ar;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar)) || (r = tpl_apply_filter(C, n, &a, &ar, out))) return r;
        break;
    }
    case N_TEST: {
        args ar;
        bool t;
        if ((r = eval(C, n->a, &a)) || (r = eval_args(C, n, &ar)) || (r = tpl_apply_test(C, n, n->s, &a, &ar, &t))) return r;
        *out = v_bool(t != n->neg);
        break;
    }
    case N_BIN:
        if ((r = eval(C, n->a, &a)) || (r = eval(C, n->b, &b)) || (r = binop(C, n, n->op, &a, &b, out))) return r;
        break;
    case N_NEG: case N_POS:
        if ((r = eval(C, n->a, &a))) return r;
        if (!is_num(&a)) return EFAIL(C, n, "bad operand type for unary %c: %s", n->kind == N_NEG ? '-' : '+', tpl_type_name(&a));
        *out = n->kind == N_POS ? a : a.t == V_FLOAT ? (val){.t = V_FLOAT, .f = -a.f} : v_int((int64_t)(0 - (uint64_t)tpl_inum(&a)));
        break;
    case N_NOT:
        if ((r = eval(C, n->a, &a))) return r;
        *out = v_bool(!tpl_truthy(&a));
        break;
    case N_AND: case N_OR:
        if ((r = eval(C, n->a, &a))) return r;
        if (tpl_truthy(&a) == (n->kind == N_OR)) { *out = a; break; }
        if ((r = eval(C, n->b, out))) return r;
        break;
    case N_COND:
        if ((r = eval(C, n->b, &b))) return r;
        if (tpl_truthy(&b)) r = eval(C, n->a, out);
        else if (n->c) r = eval(C, n->c, out);
        else *out = v_undef();
        if (r) return r;
        break;
    case N_LIST: case N_TUPLE: {
        vlist *l = tpl_list_new(C, n->nk);
        if (!l) return ENOMEM(C);
        for (size_t i = 0; i < n->nk; i++)
            if ((r = eval(C, n->kids[i], &l->v[i]))) return r;
        *out = (val){.t = V_LIST, .l = l};
        break;
    }
    case N_DICT: {
        vdict *d = tpl_dict_new(C);
        if (!d) return ENOMEM(C);
        for (size_t i = 0; i + 1 < n->nk; i += 2) {
            if ((r = eval(C, n->kids[i], &a)) || (r = eval(C, n->kids[i + 1], &b))) return r;
            if ((r = tpl_str_of(C, &a, &a))) return r;
            if (!tpl_dict_set(C, d, a.s.p, a.s.n, b)) return ENOMEM(C);
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
    if (!(C->scopes[C->ns] = tpl_dict_new(C))) return ENOMEM(C);
    C->ns++;
    return VKD_OK;
}

static vkd_result exec_for(ctx *C, const node *n) {
    val it;
    vkd_result r = eval(C, n->a, &it);
    vlist *items;
    if (r || (r = tpl_iter_items(C, n->a, &it, &items))) return r;
    if (n->d) { /* for x in xs if cond: filter first, loop.length counts what is left */
        vlist *f = tpl_list_new(C, items->n);
        if (!f) return ENOMEM(C);
        size_t k = 0;
        for (size_t i = 0; i < items->n; i++) {
            if ((r = push_scope(C, n))) return r;
            tpl_dict_set(C, C->scopes[C->ns - 1], n->s, n->sn, items->v[i]);
            val c;
            r = eval(C, n->d, &c);
            C->ns--;
            if (r) return r;
            if (tpl_truthy(&c)) f->v[k++] = items->v[i];
        }
        f->n = k;
        items = f;
    }
    size_t cnt = items->n;
    for (size_t i = 0; i < cnt; i++) {
        if ((r = push_scope(C, n))) return r;
        vdict *sc = C->scopes[C->ns - 1], *loop = tpl_dict_new(C);
        if (!loop) return ENOMEM(C);
        val item = items->v[i];
        bool ok = true;
        if (n->s2) {
            if (item.t != V_LIST || item.l->n != 2) return EFAIL(C, n, "cannot unpack %s into 2 loop variables", tpl_type_name(&item));
            ok = tpl_dict_set(C, sc, n->s, n->sn, item.l->v[0]) && tpl_dict_set(C, sc, n->s2, n->sn2, item.l->v[1]);
        } else {
            ok = tpl_dict_set(C, sc, n->s, n->sn, item);
        }
        ok = ok && tpl_dict_set(C, loop, "index0", 6, v_int((int64_t)i)) && tpl_dict_set(C, loop, "index", 5, v_int((int64_t)i + 1)) &&
             tpl_dict_set(C, loop, "first", 5, v_bool(i == 0)) && tpl_dict_set(C, loop, "last", 4, v_bool(i + 1 == cnt)) &&
             tpl_dict_set(C, loop, "length", 6, v_int((int64_t)cnt)) && tpl_dict_set(C, loop, "revindex", 8, v_int((int64_t)(cnt - i))) &&
             tpl_dict_set(C, loop, "revindex0", 9, v_int((int64_t)(cnt - i - 1))) &&
             tpl_dict_set(C, loop, "previtem", 8, i ? items->v[i - 1] : v_undef()) &&
             tpl_dict_set(C, loop, "nextitem", 8, i + 1 < cnt ? items->v[i + 1] : v_undef()) &&
             tpl_dict_set(C, sc, "loop", 4, (val){.t = V_DICT, .d = loop});
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
            tpl_sb_put(C, &b, "", 0);
            tpl_to_str(C, &b, &v, false);
            if (b.oom) return ENOMEM(C);
            if ((r = emit(C, b.p, b.n))) return r;
            break;
        }
        case N_IF: { /* if / elif chain: c is the next N_IF or the else block */
            const node *br = n;
            while (br && br->kind == N_IF) {
                if ((r = eval(C, br->a, &v))) return r;
                if (tpl_truthy(&v)) break;
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
                if (!tpl_dict_set(C, ns->d, n->s2, n->sn2, v)) return ENOMEM(C);
            } else if (!tpl_dict_set(C, C->scopes[C->ns - 1], n->s, n->sn, v)) {
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
    vdict *g = tpl_dict_new(&C);
    vlist *ml = tpl_list_new(&C, nmsg);
    if (!g || !ml) r = ENOMEM(&C);
    for (size_t i = 0; !r && i < nmsg; i++) {
        vdict *m = tpl_dict_new(&C);
        if (!m) { r = ENOMEM(&C); break; }
        const vkd_tpl_message *s = &msgs[i];
        bool ok = tpl_dict_set(&C, m, "role", 4, s->role ? v_cstr(s->role) : v_none()) &&
                  tpl_dict_set(&C, m, "content", 7, s->content ? v_cstr(s->content) : v_none());
        if (ok && s->reasoning_content) ok = tpl_dict_set(&C, m, "reasoning_content", 17, v_cstr(s->reasoning_content));
        if (!ok) r = ENOMEM(&C);
        ml->v[i] = (val){.t = V_DICT, .d = m};
    }
    if (!r) {
        bool ok = tpl_dict_set(&C, g, "messages", 8, (val){.t = V_LIST, .l = ml}) &&
                  tpl_dict_set(&C, g, "add_generation_prompt", 21, v_bool(C.opts->add_generation_prompt)) &&
                  tpl_dict_set(&C, g, "bos_token", 9, v_cstr(C.opts->bos_token ? C.opts->bos_token : "")) &&
                  tpl_dict_set(&C, g, "eos_token", 9, v_cstr(C.opts->eos_token ? C.opts->eos_token : "")) &&
                  tpl_dict_set(&C, g, "namespace", 9, (val){.t = V_FUNC, .fn = FN_NAMESPACE}) &&
                  tpl_dict_set(&C, g, "dict", 4, (val){.t = V_FUNC, .fn = FN_DICT}) &&
                  tpl_dict_set(&C, g, "range", 5, (val){.t = V_FUNC, .fn = FN_RANGE}) &&
                  tpl_dict_set(&C, g, "raise_exception", 15, (val){.t = V_FUNC, .fn = FN_RAISE}) &&
                  tpl_dict_set(&C, g, "strftime_now", 12, (val){.t = V_FUNC, .fn = FN_STRFTIME});
        if (ok && C.opts->enable_thinking != VKD_TPL_THINKING_DEFAULT)
            ok = tpl_dict_set(&C, g, "enable_thinking", 15, v_bool(C.opts->enable_thinking == VKD_TPL_THINKING_ON));
        if (!ok) r = ENOMEM(&C);
    }
    if (!r) {
        C.scopes[0] = g;
        C.scopes[1] = tpl_dict_new(&C); /* the template's own top-level sets */
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
