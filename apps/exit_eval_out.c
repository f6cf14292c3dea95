/* exit_eval_out.c: exit-eval's journal records checked, and its result files from the
 * journal (exit_eval_out.h). */
#include "exit_eval_out.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figure.h"
#include "vkd_bootstrap.h"
#include "vkd_sample.h"

static xe_settings S;

void xe_check_init(const xe_settings *s) { S = *s; }

/* key is an array of n finite numbers in [lo, hi] (integers when integer) */
static bool arr_ok(const cJSON *r, const char *k, size_t n, double lo, double hi, bool integer, char *msg, size_t cap) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, k);
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n) {
        snprintf(msg, cap, "field '%s': expected an array of %zu numbers", k, n);
        return false;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        double v = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        if (!isfinite(v) || v < lo || v > hi || (integer && v != floor(v))) {
            snprintf(msg, cap, "field '%s': expected %s in [%g, %g]", k, integer ? "integers" : "numbers", lo, hi);
            return false;
        }
    }
    return true;
}

static bool num_ok(const cJSON *r, const char *k, double lo, double hi, char *msg, size_t cap) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(r, k);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi)) {
        snprintf(msg, cap, "field '%s': expected a number in [%g, %g]", k, lo, hi);
        return false;
    }
    return true;
}

/* "outputs": nprompt arrays of at most max_new token ids */
static bool outputs_ok(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(r, "outputs"), *x;
    if (!cJSON_IsArray(outs) || (size_t)cJSON_GetArraySize(outs) != S.nprompt) {
        snprintf(msg, cap, "field 'outputs': expected an array of %zu id arrays", S.nprompt);
        return false;
    }
    cJSON_ArrayForEach(x, outs) {
        const cJSON *w = x;
        cJSON *tmp = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(tmp, "outputs", (cJSON *)w);
        bool ok = arr_ok(tmp, "outputs", (size_t)cJSON_GetArraySize(w), 0, lim->vocab - 1.0, true, msg, cap) &&
                  cJSON_GetArraySize(w) <= (int)S.max_new;
        cJSON_Delete(tmp);
        if (!ok) {
            snprintf(msg, cap, "field 'outputs': expected arrays of at most %u token ids in [0, %u)", S.max_new, lim->vocab);
            return false;
        }
    }
    return true;
}

bool xe_check(const cJSON *r, const jr_limits *lim, char *msg, size_t cap) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    double ctx = lim->ctx_len, big = 1e12;
    if (cJSON_IsString(id) && !strcmp(id->valuestring, "vanilla"))
        return arr_ok(r, "tokens", S.nprompt, 0, S.max_new, true, msg, cap) &&
               arr_ok(r, "prefill_s", S.nprompt, 0, big, false, msg, cap) &&
               arr_ok(r, "decode_s", S.nprompt, 0, big, false, msg, cap) && outputs_ok(r, lim, msg, cap);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(r, "trained");
    if (!cJSON_IsString(tr)) {
        snprintf(msg, cap, "field 'trained': expected a string");
        return false;
    }
    static const char *q[] = {"q_kl_t", "q_kl_1", "q_ce"};
    for (int i = 0; i < 3; i++)
        if (!arr_ok(r, q[i], S.nseq, -1e-3, big, false, msg, cap)) return false;
    if (!num_ok(r, "layer", 0, 65535, msg, cap) || !num_ok(r, "train_temperature", 0, 1e3, msg, cap) ||
        !num_ok(r, "steps", 0, 1e15, msg, cap) || !num_ok(r, "peak_rss_mib", 0, 1e9, msg, cap) ||
        !arr_ok(r, "q_top1", S.nseq, 0, ctx, true, msg, cap) || !arr_ok(r, "q_topk", S.nseq, 0, ctx, true, msg, cap) ||
        !arr_ok(r, "q_rows", S.nseq, 0, ctx, true, msg, cap) ||
        !arr_ok(r, "overlap", S.nprompt, 0, S.max_new * 1.0001, false, msg, cap) ||
        !arr_ok(r, "overlap_rows", S.nprompt, 0, S.max_new, true, msg, cap) ||
        !arr_ok(r, "hist", S.gamma + 1, 0, 1e12, true, msg, cap))
        return false;
    if (!outputs_ok(r, lim, msg, cap)) return false;
    static const char *v[] = {"reuse", "plain"};
    char k[64];
    for (int i = 0; i < 2; i++) {
        snprintf(k, sizeof k, "%s_tokens", v[i]);
        if (!arr_ok(r, k, S.nprompt, 0, S.max_new, true, msg, cap)) return false;
        snprintf(k, sizeof k, "%s_steps", v[i]);
        if (!arr_ok(r, k, S.nprompt, 0, S.max_new, true, msg, cap)) return false;
        snprintf(k, sizeof k, "%s_accepted", v[i]);
        if (!arr_ok(r, k, S.nprompt, 0, S.max_new, true, msg, cap)) return false;
        snprintf(k, sizeof k, "%s_prefill_s", v[i]);
        if (!arr_ok(r, k, S.nprompt, 0, big, false, msg, cap)) return false;
        snprintf(k, sizeof k, "%s_decode_s", v[i]);
        if (!arr_ok(r, k, S.nprompt, 0, big, false, msg, cap)) return false;
    }
    return true;
}

/* ---- metrics of the journal ---- */

static double *arr(const cJSON *r, const char *k, size_t n) {
    double *v = calloc(n ? n : 1, sizeof *v);
    if (!v) cli_fatal("out of host memory");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, k), *x;
    size_t i = 0;
    cJSON_ArrayForEach(x, a) if (i < n) v[i++] = x->valuedouble;
    return v;
}

static double sum(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}

typedef struct variant {
    rep_ci acc, tps, calls;    /* E[accepted], tokens/s, target calls per token */
    rep_ci speedup;            /* (tokens / decode s) over vanilla's, resampled in pairs */
    double prefill_s, decode_s;
} variant;

/* The vanilla run's per-prompt tokens and decode seconds. */
typedef struct vanilla {
    double *tok, *dec;
} vanilla;

/* Speed-up = (sum st / sum sd) / (sum vt / sum vd) over the prompts, with a percentile
 * bootstrap CI that resamples prompts (both runs of a prompt together) with the draws of
 * vkd_bootstrap_ci, so it shares their resamples. */
static rep_ci speedup_ci(const rep_boot *b, const vanilla *v, const double *st, const double *sd, size_t n) {
    rep_ci ci = {.value = NAN, .lo = NAN, .hi = NAN, .n = n};
    double a = 0, c = 0, d = 0, e = 0;
    for (size_t i = 0; i < n; i++) a += st[i], c += sd[i], d += v->tok[i], e += v->dec[i];
    if (n == 0 || c <= 0 || d <= 0 || e <= 0) return ci;
    ci.value = (a / c) / (d / e);
    double *stat = malloc(b->reps * sizeof *stat);
    if (!stat) cli_fatal("out of host memory");
    size_t k = 0;
    for (uint32_t r = 0; r < b->reps; r++) {
        a = c = d = e = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = (size_t)(vkd_uniform(b->seed, VKD_BOOT_STREAM, (uint64_t)r * n + i) * (double)n);
            if (j >= n) j = n - 1;
            a += st[j], c += sd[j], d += v->tok[j], e += v->dec[j];
        }
        if (c > 0 && d > 0 && e > 0) stat[k++] = (a / c) / (d / e);
    }
    if (k) {
        ci.lo = exp_percentile(stat, k, 100 * (1 - REP_LEVEL) / 2);
        ci.hi = exp_percentile(stat, k, 100 * (1 + REP_LEVEL) / 2);
    }
    free(stat);
    return ci;
}

typedef struct head_m {
    const char *dir, *trained;
    double layer, T, steps, rss;
    rep_ci kl_t, kl_1, ce, top1, topk, ovl;
    variant reuse, plain;
    double *hist;              /* gamma + 1 */
} head_m;

static rep_ci ratio(const rep_boot *b, const cJSON *r, const char *num, const char *den, size_t n) {
    double *a = arr(r, num, n), *d = arr(r, den, n);
    rep_ci ci = rep_ci_of(b, a, d, n);
    free(a);
    free(d);
    return ci;
}

static variant variant_of(const rep_boot *b, const cJSON *r, const char *pfx, size_t n, const vanilla *van) {
    char a[64], t[64], s[64], d[64], p[64];
    snprintf(a, sizeof a, "%s_accepted", pfx);
    snprintf(t, sizeof t, "%s_tokens", pfx);
    snprintf(s, sizeof s, "%s_steps", pfx);
    snprintf(d, sizeof d, "%s_decode_s", pfx);
    snprintf(p, sizeof p, "%s_prefill_s", pfx);
    variant v = {.acc = ratio(b, r, a, s, n), .tps = ratio(b, r, t, d, n), .calls = ratio(b, r, s, t, n)};
    double *pv = arr(r, p, n), *dv = arr(r, d, n), *tv = arr(r, t, n);
    v.speedup = speedup_ci(b, van, tv, dv, n);
    free(tv);
    v.prefill_s = sum(pv, n) / (double)n;
    v.decode_s = sum(dv, n) / (double)n;
    free(pv);
    free(dv);
    return v;
}

static void ci_json(cJSON *o, const char *k, rep_ci ci) { rep_ci_json(o, k, ci); }

static cJSON *variant_json(const variant *v, uint32_t gamma) {
    cJSON *o = cJSON_CreateObject();
    ci_json(o, "e_accepted", v->acc);
    cJSON_AddNumberToObject(o, "accept_rate", v->acc.value / gamma);
    ci_json(o, "target_calls_per_token", v->calls);
    cJSON_AddNumberToObject(o, "target_calls_per_token_proxy", 1.0 / (v->acc.value + 1));
    ci_json(o, "tokens_per_s", v->tps);
    ci_json(o, "speedup", v->speedup);
    cJSON_AddNumberToObject(o, "prefill_s_mean", v->prefill_s);
    cJSON_AddNumberToObject(o, "decode_s_mean", v->decode_s);
    return o;
}

static void csv_num(exp_buf *b, double v) { exp_buf_printf(b, ",%.9g", v); }

/* A line chart of metrics against the exit layer (heads in layer order), with CIs. */
static void layer_chart(exp_out *o, const char *name, const char *title, const char *ylabel, const head_m *h,
                        size_t nh, const char *const *labels, const rep_ci *const *cols, size_t ns) {
    double *x = calloc(nh, sizeof *x), *y = calloc(3 * ns * nh, sizeof *y);
    fig_series *sr = calloc(ns, sizeof *sr);
    if (!x || !y || !sr) cli_fatal("out of host memory");
    for (size_t i = 0; i < nh; i++) x[i] = h[i].layer;
    for (size_t k = 0; k < ns; k++) {
        double *v = y + 3 * k * nh, *lo = v + nh, *hi = lo + nh;
        for (size_t i = 0; i < nh; i++) v[i] = cols[k][i].value, lo[i] = cols[k][i].lo, hi[i] = cols[k][i].hi;
        sr[k] = (fig_series){.label = labels[k], .n = nh, .x = x, .y = v, .lo = lo, .hi = hi};
    }
    fig_chart ch = {.kind = FIG_LINE, .title = title, .xlabel = "exit layer (0-based)", .ylabel = ylabel,
                    .line = {.n_series = ns, .series = sr}};
    exp_write_figure(o, name, &ch);
    free(x);
    free(y);
    free(sr);
}

static void write_figures(exp_out *o, const head_m *h, size_t nh, uint32_t gamma) {
    rep_ci *c = calloc(8 * nh, sizeof *c);
    double *px = calloc(4 * nh, sizeof *px);
    char(*lab)[64] = calloc(nh, sizeof *lab);
    fig_series *sr = calloc(nh, sizeof *sr);
    if (!c || !px || !lab || !sr) cli_fatal("out of host memory");
    for (size_t i = 0; i < nh; i++) {
        c[0 * nh + i] = h[i].kl_t, c[1 * nh + i] = h[i].kl_1, c[2 * nh + i] = h[i].ce;
        c[3 * nh + i] = h[i].top1, c[4 * nh + i] = h[i].topk;
        rep_ci a = h[i].reuse.acc, r = a, tv = h[i].ovl;
        r.value /= gamma, r.lo /= gamma, r.hi /= gamma;
        tv.value = 1 - h[i].ovl.value, tv.lo = 1 - h[i].ovl.hi, tv.hi = 1 - h[i].ovl.lo;
        c[5 * nh + i] = a, c[6 * nh + i] = r, c[7 * nh + i] = tv;
        snprintf(lab[i], sizeof lab[i], "layer %.0f (T %g)", h[i].layer, h[i].T);
    }
    const rep_ci *q[] = {c, c + nh, c + 2 * nh}, *t[] = {c + 3 * nh, c + 4 * nh}, *a[] = {c + 5 * nh, c + 6 * nh, c + 7 * nh};
    layer_chart(o, "layer_sweep.png", "Layer sweep: KL to the target and CE (95% CI)", "nats / token", h, nh,
                (const char *[]){"KL at training T", "KL at T = 1", "CE vs labels"}, q, 3);
    layer_chart(o, "layer_sweep_top1.png", "Layer sweep: next-token accuracy (95% CI)", "accuracy", h, nh,
                (const char *[]){"top-1", "top-k"}, t, 2);
    layer_chart(o, "acceptance_sweep.png", "Acceptance sweep (self-speculative, 95% CI)", "value", h, nh,
                (const char *[]){"E[accepted]", "accept_rate", "TV = 1 - overlap"}, a, 3);
    for (size_t i = 0; i < nh; i++) {
        double *pt = px + 4 * i;
        pt[0] = h[i].kl_t.value, pt[1] = h[i].reuse.speedup.value;
        pt[2] = h[i].reuse.speedup.lo, pt[3] = h[i].reuse.speedup.hi;
        sr[i] = (fig_series){.label = lab[i], .n = 1, .x = pt, .y = pt + 1, .lo = pt + 2, .hi = pt + 3};
    }
    fig_chart pc = {.kind = FIG_LINE, .title = "Pareto: speed-up (reuse, 95% CI) vs KL at training T",
                    .xlabel = "KL(target || head), nats / token", .ylabel = "speed-up over the target alone",
                    .line = {.n_series = nh, .series = sr}};
    exp_write_figure(o, "pareto.png", &pc);
    /* histograms: the samples rebuilt from the counts */
    double **smp = calloc(nh, sizeof *smp);
    if (!smp) cli_fatal("out of host memory");
    for (size_t i = 0; i < nh; i++) {
        size_t n = 0;
        for (uint32_t k = 0; k <= gamma; k++) n += (size_t)h[i].hist[k];
        smp[i] = calloc(n ? n : 1, sizeof **smp);
        if (!smp[i]) cli_fatal("out of host memory");
        n = 0;
        for (uint32_t k = 0; k <= gamma; k++)
            for (double j = 0; j < h[i].hist[k]; j++) smp[i][n++] = k;
        sr[i] = (fig_series){.label = lab[i], .n = n, .y = smp[i]};
    }
    fig_chart hc = {.kind = FIG_HIST, .title = "Draft tokens accepted per verification (reuse)",
                    .xlabel = "accepted", .ylabel = "fraction of verifications",
                    .hist = {.n_series = nh, .series = sr, .nbins = gamma + 1, .lo = -0.5, .hi = gamma + 0.5,
                             .side_by_side = true, .fraction = true}};
    exp_write_figure(o, "accept_hist.png", &hc);
    for (size_t i = 0; i < nh; i++) free(smp[i]);
    free(smp);
    free(c);
    free(px);
    free(lab);
    free(sr);
}

static int by_layer(const void *a, const void *b) {
    const head_m *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return x->T < y->T ? -1 : x->T > y->T;
}

void xe_write_outputs(exp_out *o, const xe_settings *s, const rep_boot *b, const char *const *heads, size_t nheads) {
    size_t np = s->nprompt, nq = s->nseq;
    const cJSON *van = exp_find(o, "vanilla");
    if (!van) cli_fatal("%s: the journal has no 'vanilla' record", o->dir);
    rep_ci van_tps = ratio(b, van, "tokens", "decode_s", np);
    double *vp = arr(van, "prefill_s", np);
    vanilla vv = {.tok = arr(van, "tokens", np), .dec = arr(van, "decode_s", np)};
    double van_pre = sum(vp, np) / (double)np, van_dec = sum(vv.dec, np) / (double)np;
    free(vp);
    head_m *h = calloc(nheads, sizeof *h);
    if (!h) cli_fatal("out of host memory");
    for (size_t i = 0; i < nheads; i++) {
        const cJSON *r = exp_find(o, heads[i]);
        if (!r) cli_fatal("%s: the journal has no record of head %s", o->dir, heads[i]);
        head_m *m = &h[i];
        m->dir = heads[i];
        m->trained = cJSON_GetObjectItemCaseSensitive(r, "trained")->valuestring;
        m->layer = cJSON_GetObjectItemCaseSensitive(r, "layer")->valuedouble;
        m->T = cJSON_GetObjectItemCaseSensitive(r, "train_temperature")->valuedouble;
        m->steps = cJSON_GetObjectItemCaseSensitive(r, "steps")->valuedouble;
        m->rss = cJSON_GetObjectItemCaseSensitive(r, "peak_rss_mib")->valuedouble;
        m->kl_t = ratio(b, r, "q_kl_t", "q_rows", nq);
        m->kl_1 = ratio(b, r, "q_kl_1", "q_rows", nq);
        m->ce = ratio(b, r, "q_ce", "q_rows", nq);
        m->top1 = ratio(b, r, "q_top1", "q_rows", nq);
        m->topk = ratio(b, r, "q_topk", "q_rows", nq);
        m->ovl = ratio(b, r, "overlap", "overlap_rows", np);
        m->reuse = variant_of(b, r, "reuse", np, &vv);
        m->plain = variant_of(b, r, "plain", np, &vv);
        m->hist = arr(r, "hist", s->gamma + 1);
    }
    qsort(h, nheads, sizeof *h, by_layer);
    /* results.csv */
    exp_buf csv = {0};
    exp_buf_printf(&csv, "head,layer,train_temperature,trained,steps,kl_train_t,kl_t1,ce,perplexity,top1,topk,"
                         "e_accepted,accept_rate,overlap,tv,target_calls_per_token,target_calls_per_token_proxy,"
                         "vanilla_tokens_per_s,reuse_tokens_per_s,reuse_speedup,plain_e_accepted,plain_tokens_per_s,"
                         "plain_speedup,vanilla_prefill_s,vanilla_decode_s,reuse_prefill_s,reuse_decode_s,"
                         "plain_prefill_s,plain_decode_s,peak_rss_mib,gamma,temperature,top_p,top_k,max_new_tokens,"
                         "topk_acc,sequences,prompts\n");
    for (size_t i = 0; i < nheads; i++) {
        const head_m *m = &h[i];
        exp_buf_csv(&csv, m->dir);
        exp_buf_printf(&csv, ",%.0f,%g,", m->layer, m->T);
        exp_buf_csv(&csv, m->trained);
        exp_buf_printf(&csv, ",%.0f", m->steps);
        double v[] = {m->kl_t.value, m->kl_1.value, m->ce.value, exp(m->ce.value), m->top1.value, m->topk.value,
                      m->reuse.acc.value, m->reuse.acc.value / s->gamma, m->ovl.value, 1 - m->ovl.value,
                      m->reuse.calls.value, 1 / (m->reuse.acc.value + 1), van_tps.value, m->reuse.tps.value,
                      m->reuse.speedup.value, m->plain.acc.value, m->plain.tps.value, m->plain.speedup.value, van_pre,
                      van_dec,
                      m->reuse.prefill_s, m->reuse.decode_s, m->plain.prefill_s, m->plain.decode_s, m->rss};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++) csv_num(&csv, v[k]);
        exp_buf_printf(&csv, ",%u,%g,%g,%u,%u,%u,%zu,%zu\n", s->gamma, s->temperature, s->top_p, s->top_k, s->max_new,
                       s->topk_acc, nq, np);
    }
    exp_write(o, "results.csv", csv.s, csv.n);
    exp_buf_free(&csv);
    /* summary.json and report.txt */
    cJSON *sum_j = cJSON_CreateObject();
    cJSON *st = cJSON_AddObjectToObject(sum_j, "settings");
    cJSON_AddNumberToObject(st, "gamma", s->gamma);
    cJSON_AddNumberToObject(st, "temperature", s->temperature);
    cJSON_AddNumberToObject(st, "top_p", s->top_p);
    cJSON_AddNumberToObject(st, "top_k", s->top_k);
    cJSON_AddNumberToObject(st, "max_new_tokens", s->max_new);
    cJSON_AddNumberToObject(st, "topk_acc", s->topk_acc);
    cJSON_AddNumberToObject(st, "sequences", (double)nq);
    cJSON_AddNumberToObject(st, "prompts", (double)np);
    cJSON_AddStringToObject(st, "peak_memory", "peak resident set of the process (getrusage ru_maxrss) after the "
                                               "head's runs; device memory only where the driver's memory is host memory");
    rep_boot_json(sum_j, b);
    cJSON *vj = cJSON_AddObjectToObject(sum_j, "vanilla");
    ci_json(vj, "tokens_per_s", van_tps);
    cJSON_AddNumberToObject(vj, "prefill_s_mean", van_pre);
    cJSON_AddNumberToObject(vj, "decode_s_mean", van_dec);
    cJSON *hj = cJSON_AddArrayToObject(sum_j, "heads");
    exp_buf rep = {0};
    char b1[32], b2[32], b3[32];
    exp_buf_printf(&rep, "vkdraft exit-eval: %zu head(s), %zu held-out sequences, %zu prompts; gamma %u, "
                         "temperature %g, top-p %g, top-k %u, %u new tokens per prompt\n"
                         "vanilla (target alone): %s tokens/s, prefill %s s, decode %s s per prompt\n\n",
                   nheads, nq, np, s->gamma, s->temperature, s->top_p, s->top_k, s->max_new,
                   rep_num(b1, sizeof b1, van_tps.value), rep_num(b2, sizeof b2, van_pre), rep_num(b3, sizeof b3, van_dec));
    for (size_t i = 0; i < nheads; i++) {
        const head_m *m = &h[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "head", m->dir);
        cJSON_AddNumberToObject(e, "layer", m->layer);
        cJSON_AddNumberToObject(e, "train_temperature", m->T);
        cJSON_AddStringToObject(e, "trained", m->trained);
        cJSON_AddNumberToObject(e, "steps", m->steps);
        ci_json(e, "kl_train_t", m->kl_t);
        ci_json(e, "kl_t1", m->kl_1);
        ci_json(e, "ce", m->ce);
        cJSON_AddNumberToObject(e, "perplexity", exp(m->ce.value));
        ci_json(e, "top1", m->top1);
        ci_json(e, "topk", m->topk);
        ci_json(e, "overlap", m->ovl);
        cJSON_AddNumberToObject(e, "tv", 1 - m->ovl.value);
        cJSON_AddItemToObject(e, "reuse", variant_json(&m->reuse, s->gamma));
        cJSON_AddItemToObject(e, "plain", variant_json(&m->plain, s->gamma));
        cJSON *hs = cJSON_AddArrayToObject(e, "accept_hist");
        for (uint32_t k = 0; k <= s->gamma; k++) cJSON_AddItemToArray(hs, cJSON_CreateNumber(m->hist[k]));
        cJSON_AddNumberToObject(e, "peak_rss_mib", m->rss);
        cJSON_AddItemToArray(hj, e);
        exp_buf_printf(&rep, "%s: layer %.0f, trained at T %g (%s, %.0f steps)\n", m->dir, m->layer, m->T, m->trained,
                       m->steps);
        rep_ci_line(&rep, "KL at training T (nats/token)", m->kl_t);
        rep_ci_line(&rep, "KL at T = 1 (nats/token)", m->kl_1);
        rep_ci_line(&rep, "CE (nats/token)", m->ce);
        exp_buf_printf(&rep, "  perplexity: %s\n", rep_num(b1, sizeof b1, exp(m->ce.value)));
        rep_ci_line(&rep, "top-1 accuracy", m->top1);
        rep_ci_line(&rep, "top-k accuracy", m->topk);
        rep_ci_line(&rep, "E[accepted] (reuse)", m->reuse.acc);
        exp_buf_printf(&rep, "  accept_rate: %s\n", rep_num(b1, sizeof b1, m->reuse.acc.value / s->gamma));
        rep_ci_line(&rep, "overlap E[sum min(p,q)]", m->ovl);
        exp_buf_printf(&rep, "  TV: %s\n", rep_num(b1, sizeof b1, 1 - m->ovl.value));
        rep_ci_line(&rep, "target calls per token (reuse)", m->reuse.calls);
        rep_ci_line(&rep, "tokens/s (reuse)", m->reuse.tps);
        rep_ci_line(&rep, "speed-up (reuse)", m->reuse.speedup);
        rep_ci_line(&rep, "speed-up (plain)", m->plain.speedup);
        exp_buf_printf(&rep, "  E[accepted] (plain): %s\n", rep_num(b3, sizeof b3, m->plain.acc.value));
        exp_buf_printf(&rep, "  peak RSS: %s MiB\n\n", rep_num(b1, sizeof b1, m->rss));
    }
    exp_write_json(o, "summary.json", sum_j);
    cJSON_Delete(sum_j);
    exp_write(o, "report.txt", rep.s, rep.n);
    exp_buf_free(&rep);
    write_figures(o, h, nheads, s->gamma);
    free(vv.tok);
    free(vv.dec);
    for (size_t i = 0; i < nheads; i++) free(h[i].hist);
    free(h);
}
