/* guide_report.c: vkdraft guide's tables, CIs, figures and exports, rebuilt from the whole
 * journal at the end of every run (see apps/guide.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exp.h"
#include "figure.h"
#include "guide.h"
#include "report.h"

/* ---- aggregation ------------------------------------------------------------------------------ */

typedef struct agg {
    size_t n, n_scored, correct, timed;
    double tokens, kl_sum, changed, tfwd, decode_s, decode_tokens;
    rep_col c_acc, c_kl;  /* per example: correct / 1, kl_sum / tokens (bootstrap CIs) */
} agg;

/* The records one table covers: all (g < 0), or those of group g (--group-by). */
typedef struct gsel {
    const int *rec_group;      /* per journal record: its example's group, -1 when not in the data */
    int g;                     /* < 0: every record */
    const char *name;          /* matrix.csv's group column ("all" or the group); NULL: no column */
} gsel;

static agg aggregate(const exp_out *o, const cell *k, const gsel *gs) {
    agg a = {0};
    for (size_t q = 0; q < o->done.n; q++) {
        const cJSON *r = o->done.rec[q];
        if (strcmp(guide_str(r, "cell"), k->key)) continue;
        if (gs->g >= 0 && gs->rec_group[q] != gs->g) continue;
        a.n++;
        double n = guide_num(r, "tokens");
        a.tokens += n;
        a.kl_sum += guide_num(r, "kl_sum");
        a.changed += guide_num(r, "changed");
        a.tfwd += guide_num(r, "target_forwards");
        rep_col_add(&a.c_kl, guide_num(r, "kl_sum"), n);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "correct");
        if (cJSON_IsBool(c)) {
            a.n_scored++;
            a.correct += cJSON_IsTrue(c);
            rep_col_add(&a.c_acc, cJSON_IsTrue(c), 1);
        }
        if (!guide_str(r, "reused_from") && n > 1) {
            a.timed++;
            a.decode_s += guide_num(r, "decode_s");
            a.decode_tokens += n - 1;
        }
    }
    return a;
}

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static void fmt(char *buf, size_t n, const char *f, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, f, v);
}

/* One cell's row: the table in report.txt (rep), its CI lines (cis), matrix.csv and summary.json's
 * "cells"; returns the value the matrix shows (accuracy when scored, else KL per token). */
static double report_cell(const exp_out *o, const cell *k, const gsel *gs, bool scored, const rep_boot *bt, exp_buf *rep,
                          exp_buf *cis, exp_buf *csv, cJSON *sc) {
    agg a = aggregate(o, k, gs);
    double acc = a.n_scored ? (double)a.correct / a.n_scored : NAN;
    double kl = ratio(a.kl_sum, a.tokens), ch = ratio(a.changed, a.tokens);
    double toks = ratio(a.tokens, (double)a.n), ms = 1000 * ratio(a.decode_s, a.decode_tokens);
    double tf = ratio(a.tfwd, a.tokens);
    char sa[32], sacc[16], skl[16], sch[16], stok[16], sms[16], stf[16];
    char sa_x[32], st_x[32]; /* exact: two cells never print alike */
    jr_fmt_double(sa_x, sizeof sa_x, k->alpha);
    jr_fmt_double(st_x, sizeof st_x, k->temp);
    snprintf(sa, sizeof sa, "%s", isnan(k->alpha) ? "-" : sa_x);
    fmt(sacc, sizeof sacc, "%.3f", acc);
    fmt(skl, sizeof skl, "%.4f", kl);
    fmt(sch, sizeof sch, "%.3f", ch);
    fmt(stok, sizeof stok, "%.1f", toks);
    fmt(sms, sizeof sms, "%.2f", ms);
    fmt(stf, sizeof stf, "%.3f", tf);
    exp_buf_printf(rep, "%-7s %-4s %5g %6s %5zu %8s %9s %8s %8s %9s %9s\n", guide_cond_name[k->c], k->ttt ? "on" : "off", k->temp,
                   sa, a.n, sacc, skl, sch, stok, sms, stf);
    if (gs->name) {
        exp_buf_csv(csv, gs->name);
        exp_buf_printf(csv, ",");
    }
    exp_buf_printf(csv, "%s,%s,%s,%s,%zu,%s,%s,%s,%s,%s,%s\n", guide_cond_name[k->c], k->ttt ? "on" : "off", st_x,
                   k->c == C_PLAIN ? "" : sa, a.n, isnan(acc) ? "" : sacc, isnan(kl) ? "" : skl,
                   isnan(ch) ? "" : sch, isnan(toks) ? "" : stok, isnan(ms) ? "" : sms, isnan(tf) ? "" : stf);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "cell", k->key);
    cJSON_AddStringToObject(j, "condition", guide_cond_name[k->c]);
    cJSON_AddStringToObject(j, "ttt", k->ttt ? "on" : "off");
    cJSON_AddNumberToObject(j, "temperature", k->temp);
    if (k->c == C_PLAIN) cJSON_AddNullToObject(j, "alpha");
    else cJSON_AddNumberToObject(j, "alpha", k->alpha);
    cJSON_AddNumberToObject(j, "examples", (double)a.n);
#define ADD(name, v) (isnan(v) ? cJSON_AddNullToObject(j, name) : cJSON_AddNumberToObject(j, name, v))
    ADD("accuracy", acc);
    ADD("kl_mean", kl);
    ADD("changed_frac", ch);
    ADD("tokens_mean", toks);
    ADD("ms_per_token", ms);
    ADD("target_forwards_per_token", tf);
#undef ADD
    char label[160];
    if (a.c_acc.n) {
        rep_ci ci = rep_col_ci(bt, &a.c_acc);
        rep_ci_json(j, "accuracy_ci", ci);
        snprintf(label, sizeof label, "%s accuracy", k->key);
        rep_ci_line(cis, label, ci);
    }
    if (a.c_kl.n) {
        rep_ci ci = rep_col_ci(bt, &a.c_kl);
        rep_ci_json(j, "kl_mean_ci", ci);
        snprintf(label, sizeof label, "%s KL(guided || target) per token", k->key);
        rep_ci_line(cis, label, ci);
    }
    rep_col_free(&a.c_acc);
    rep_col_free(&a.c_kl);
    cJSON_AddItemToArray(sc, j);
    return scored ? acc : kl;
}

/* Alpha 0 must be plain decoding: compares token ids where both were run (summary and stdout). */
static void check_alpha0(const guide_opts *G, exp_out *o, const exp_data *d, cJSON *summary, exp_buf *rep) {
    size_t compared = 0, differ = 0;
    if (G->want[C_PLAIN] && G->want[C_GUIDED])
        for (size_t ti = 0; ti < G->nt; ti++) {
            bool has0 = false;
            for (size_t ai = 0; ai < G->na; ai++) has0 |= G->alphas[ai] == 0;
            if (!has0) break;
            cell p = {.c = C_PLAIN, .temp = G->temps[ti], .alpha = NAN}, g0 = {.c = C_GUIDED, .temp = G->temps[ti]};
            guide_cell_key(&p);
            guide_cell_key(&g0);
            for (size_t e = 0; e < d->n; e++) {
                const cJSON *ra = guide_find_record(o, &p, d->ex[e].id), *rb = guide_find_record(o, &g0, d->ex[e].id);
                if (!ra || !rb) continue;
                compared++;
                char *x = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(ra, "ids"));
                char *y = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(rb, "ids"));
                differ += strcmp(x, y) != 0;
                free(x);
                free(y);
            }
        }
    if (compared) {
        exp_buf_printf(rep, "alpha 0 vs plain decoding: %zu of %zu responses identical\n", compared - differ, compared);
        cJSON_AddNumberToObject(summary, "alpha0_plain_compared", (double)compared);
        cJSON_AddNumberToObject(summary, "alpha0_plain_differ", (double)differ);
    }
}

/* The value of grid for cell (c, temperature, alpha, ttt); plain cells match any alpha and ttt. */
static double grid_at(const guide_opts *G, const double *grid, cond cc, double temp, double alpha, bool ttt) {
    double x = NAN;
    for (size_t ci = 0; ci < G->ncells; ci++) {
        const cell *k = &G->cells[ci];
        if (k->c != cc || k->temp != temp) continue;
        if (cc == C_PLAIN || (k->alpha == alpha && k->ttt == ttt)) x = grid[ci];
    }
    return x;
}

/* The evaluation matrix on stdout: rows condition x temperature, columns plain and the alphas. */
static void print_matrix(const guide_opts *G, const double *grid, bool scored, exp_buf *rep) {
    for (int tt = 0; tt < 2 && guide_any_drafted(G); tt++) {
        if (!(tt ? G->ttt_on : G->ttt_off)) continue;
        exp_buf_printf(rep, "\n%s (rows: condition, temperature; columns: plain decoding, alpha), ttt %s\n%-16s %7s",
               scored ? "accuracy" : "KL(guided || target) per token", tt ? "on" : "off", "", "plain");
        for (size_t ai = 0; ai < G->na; ai++) exp_buf_printf(rep, " %7g", G->alphas[ai]);
        exp_buf_printf(rep, "\n");
        for (int q = 0; q < 4; q++) {
            cond cc = guide_drafted[q];
            if (!G->want[cc]) continue;
            for (size_t ti = 0; ti < G->nt; ti++) {
                char label[32], v[16];
                snprintf(label, sizeof label, "%s T=%g", guide_cond_name[cc], G->temps[ti]);
                fmt(v, sizeof v, scored ? "%.3f" : "%.4f", grid_at(G, grid, C_PLAIN, G->temps[ti], 0, false));
                exp_buf_printf(rep, "%-16s %7s", label, v);
                for (size_t ai = 0; ai < G->na; ai++) {
                    fmt(v, sizeof v, scored ? "%.3f" : "%.4f", grid_at(G, grid, (cond)cc, G->temps[ti], G->alphas[ai], tt));
                    exp_buf_printf(rep, " %7s", v);
                }
                exp_buf_printf(rep, "\n");
            }
        }
    }
}

/* The matrix as a heatmap (heatmap.png). */
static void write_heatmap(const guide_opts *G, const exp_out *o, const double *grid, bool scored, const char *name,
                          const char *group) {
    size_t nt = G->nt, na = G->na, hr = 0, hc = na + 1;
    double *hv = malloc(8 * nt * hc * sizeof *hv);
    char **rl = calloc(8 * nt, sizeof *rl), **cl = calloc(hc, sizeof *cl);
    cl[0] = strdup("plain");
    for (size_t ai = 0; ai < na; ai++) {
        char b[32];
        snprintf(b, sizeof b, "a=%g", G->alphas[ai]);
        cl[ai + 1] = strdup(b);
    }
    for (int tt = 0; tt < 2; tt++)
        for (int q = 0; q < 4; q++) {
            cond cc = guide_drafted[q];
            if (!G->want[cc] || !(tt ? G->ttt_on : G->ttt_off)) continue;
            for (size_t ti = 0; ti < nt; ti++, hr++) {
                char label[40];
                snprintf(label, sizeof label, "%s T=%g%s", guide_cond_name[cc], G->temps[ti], tt ? " ttt" : "");
                rl[hr] = strdup(label);
                hv[hr * hc] = grid_at(G, grid, C_PLAIN, G->temps[ti], 0, false);
                for (size_t ai = 0; ai < na; ai++)
                    hv[hr * hc + ai + 1] = grid_at(G, grid, (cond)cc, G->temps[ti], G->alphas[ai], tt);
            }
        }
    char title[256];
    snprintf(title, sizeof title, "Guided decoding: %s%s%s%s", scored ? "accuracy" : "KL(guided || target) per token",
             G->ttt_on ? "" : " (ttt off)", group ? ", group " : "", group ? group : "");
    fig_chart ch = {.kind = FIG_HEATMAP, .title = title, .xlabel = "alpha (plain = plain decoding)",
                    .ylabel = "condition, temperature"};
    ch.heatmap = (fig_heatmap){.rows = hr, .cols = hc, .values = hv, .row_labels = (const char *const *)rl,
                               .col_labels = (const char *const *)cl, .cmap = FIG_CMAP_SEQUENTIAL,
                               .annotate = true, .value_digits = 3,
                               .colorbar_label = scored ? "accuracy" : "KL per token"};
    exp_write_figure(o, name, &ch);
    for (size_t q = 0; q < hr; q++) free(rl[q]);
    for (size_t q = 0; q < hc; q++) free(cl[q]);
    free(rl);
    free(cl);
    free(hv);
}

/* Rubric export (responses.jsonl): every response with its context and question. */
static void write_responses(const guide_opts *G, exp_out *o, const exp_data *d) {
    exp_buf jl = {0};
    for (size_t ci = 0; ci < G->ncells; ci++)
        for (size_t e = 0; e < d->n; e++) {
            const cell *k = &G->cells[ci];
            const cJSON *r = guide_find_record(o, k, d->ex[e].id);
            if (!r) continue;
            const vkd_ds_record *dr = d->ex[e].record;
            exp_buf ctx = {0};
            for (size_t mi = 0; dr->messages && mi + 1 < dr->n_messages; mi++)
                exp_buf_printf(&ctx, "%s%s: %s", mi ? "\n\n" : "", dr->messages[mi].role, dr->messages[mi].content);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "id", guide_str(r, "id"));
            cJSON_AddStringToObject(x, "example", d->ex[e].id);
            cJSON_AddStringToObject(x, "context", ctx.s ? ctx.s : "");
            cJSON_AddStringToObject(x, "question", d->ex[e].question);
            cJSON_AddStringToObject(x, "response", guide_str(r, "response") ? guide_str(r, "response") : "");
            cJSON_AddStringToObject(x, "condition", guide_cond_name[k->c]);
            if (k->c == C_PLAIN) cJSON_AddNullToObject(x, "alpha");
            else cJSON_AddNumberToObject(x, "alpha", k->alpha);
            cJSON_AddNumberToObject(x, "temperature", k->temp);
            cJSON_AddStringToObject(x, "ttt", k->ttt ? "on" : "off");
            if (d->ex[e].answer) cJSON_AddStringToObject(x, "reference_answer", d->ex[e].answer);
            else cJSON_AddNullToObject(x, "reference_answer");
            for (size_t q = 0; q < G->nkeep; q++) { /* --keep-fields: as the dataset holds them (CL-bench rubrics) */
                cJSON *v = dr->fields[q] ? cJSON_Parse(dr->fields[q]) : cJSON_CreateNull();
                if (!v) cli_fatal("out of memory");
                cJSON_AddItemToObject(x, G->keep[q], v);
            }
            char *line = cJSON_PrintUnformatted(x);
            exp_buf_printf(&jl, "%s\n", line);
            free(line);
            cJSON_Delete(x);
            exp_buf_free(&ctx);
        }
    exp_write(o, "responses.jsonl", jl.s ? jl.s : "", jl.n);
    exp_buf_free(&jl);
}

/* tokens.jsonl (seeds 001/004 phase 2.5): one line per generated token of every drafted cell,
 * from the journal's per_token rows. */
static void write_tokens(const guide_opts *G, exp_out *o, const exp_data *d, vkd_tok *tok) {
    exp_buf jl = {0};
    vkd_error err = {0};
    static const char *const keys[7] = {"target_argmax", "guided_argmax", "alpha_applied", "p_target", "p_draft",
                                        "p_target_pref", "p_draft_pref"};
    for (size_t ci = 0; ci < G->ncells; ci++)
        for (size_t e = 0; e < d->n; e++) {
            const cell *k = &G->cells[ci];
            const cJSON *r = guide_find_record(o, k, d->ex[e].id);
            const cJSON *pt = r ? cJSON_GetObjectItemCaseSensitive(r, "per_token") : NULL;
            const cJSON *ids = r ? cJSON_GetObjectItemCaseSensitive(r, "ids") : NULL;
            if (!cJSON_IsArray(pt) || !cJSON_IsArray(ids)) continue;
            int i = 0;
            const cJSON *row;
            cJSON_ArrayForEach(row, pt) {
                int32_t id = (int32_t)cJSON_GetArrayItem(ids, i)->valuedouble;
                char *text = NULL;
                size_t tl;
                if (vkd_tok_decode(tok, &id, 1, false, &text, &tl, &err)) text = strdup("");
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "id", guide_str(r, "id"));
                cJSON_AddStringToObject(x, "example", d->ex[e].id);
                cJSON_AddStringToObject(x, "condition", guide_cond_name[k->c]);
                cJSON_AddNumberToObject(x, "alpha", k->alpha);
                cJSON_AddNumberToObject(x, "temperature", k->temp);
                cJSON_AddStringToObject(x, "ttt", k->ttt ? "on" : "off");
                cJSON_AddNumberToObject(x, "index", i);
                cJSON_AddNumberToObject(x, "token", id);
                cJSON_AddStringToObject(x, "text", text ? text : "");
                double ta = cJSON_GetArrayItem(row, 0)->valuedouble, ga = cJSON_GetArrayItem(row, 1)->valuedouble;
                cJSON_AddBoolToObject(x, "changed", ta != ga);
                for (int q = 0; q < 7; q++) cJSON_AddNumberToObject(x, keys[q], cJSON_GetArrayItem(row, q)->valuedouble);
                char *line = cJSON_PrintUnformatted(x);
                exp_buf_printf(&jl, "%s\n", line);
                free(line);
                free(text);
                cJSON_Delete(x);
                i++;
            }
        }
    exp_write(o, "tokens.jsonl", jl.s ? jl.s : "", jl.n);
    exp_buf_free(&jl);
}

/* compare.md: per example, the question and every cell's response under one another. */
static void write_compare(const guide_opts *G, exp_out *o, const exp_data *d) {
    exp_buf md = {0};
    exp_buf_printf(&md, "# Responses side by side\n\n%zu example(s), %zu cell(s) (condition / alpha / temperature / ttt)\n",
                   d->n, G->ncells);
    for (size_t e = 0; e < d->n; e++) {
        exp_buf_printf(&md, "\n## Example %s\n\n**Question:**\n\n```\n%s\n```\n", d->ex[e].id, d->ex[e].question);
        if (d->ex[e].answer) exp_buf_printf(&md, "\n**Reference answer:**\n\n```\n%s\n```\n", d->ex[e].answer);
        for (size_t ci = 0; ci < G->ncells; ci++) {
            const cell *k = &G->cells[ci];
            const cJSON *r = guide_find_record(o, k, d->ex[e].id);
            if (!r) continue;
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "correct");
            exp_buf_printf(&md, "\n### %s%s (%.0f tokens, %.0f argmax changed)\n\n```\n%s\n```\n", k->key,
                           cJSON_IsBool(c) ? (cJSON_IsTrue(c) ? " - correct" : " - wrong") : "", guide_num(r, "tokens"),
                           guide_num(r, "changed"), guide_str(r, "response") ? guide_str(r, "response") : "");
        }
    }
    exp_write(o, "compare.md", md.s, md.n);
    exp_buf_free(&md);
}

/* The groups of --group-by: each example's value (a string's text, else the JSON text), the
 * distinct values sorted by strcmp, each journal record's group (-1: its example is not in the
 * loaded data, e.g. journalled under a larger --limit). */
typedef struct groups {
    char **name;
    size_t n;
    size_t *examples;          /* examples per group */
    int *rec_group;            /* per journal record */
} groups;

typedef struct ex_ref {
    const char *id;
    int g;
} ex_ref;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_ref(const void *a, const void *b) { return strcmp(((const ex_ref *)a)->id, ((const ex_ref *)b)->id); }

static char *group_value(const char *json) {
    cJSON *v = cJSON_Parse(json);
    char *t = cJSON_IsString(v) ? strdup(v->valuestring) : strdup(json);
    cJSON_Delete(v);
    if (!t) cli_fatal("out of memory");
    return t;
}

static groups make_groups(const guide_opts *G, const exp_out *o, const exp_data *d) {
    groups gr = {0};
    char **val = calloc(d->n + 1, sizeof *val);
    gr.name = calloc(d->n + 1, sizeof *gr.name);
    gr.examples = calloc(d->n + 1, sizeof *gr.examples);
    gr.rec_group = malloc((o->done.n + 1) * sizeof *gr.rec_group);
    ex_ref *refs = malloc((d->n + 1) * sizeof *refs);
    if (!val || !gr.name || !gr.examples || !gr.rec_group || !refs) cli_fatal("out of memory");
    for (size_t e = 0; e < d->n; e++) val[e] = group_value(d->ex[e].record->fields[G->nkeep]);
    memcpy(gr.name, val, d->n * sizeof *val);
    qsort(gr.name, d->n, sizeof *gr.name, cmp_str);
    for (size_t e = 0; e < d->n; e++)
        if (!gr.n || strcmp(gr.name[gr.n - 1], gr.name[e])) gr.name[gr.n++] = gr.name[e];
    for (size_t e = 0; e < d->n; e++) {
        char **hit = bsearch(&val[e], gr.name, gr.n, sizeof *gr.name, cmp_str);
        refs[e] = (ex_ref){.id = d->ex[e].id, .g = (int)(hit - gr.name)};
        gr.examples[refs[e].g]++;
    }
    for (size_t k = gr.n; k < d->n; k++) gr.name[k] = NULL;
    for (size_t e = 0; e < d->n; e++) { /* the names kept in gr.name are freed with it */
        bool kept = false;
        for (size_t g = 0; g < gr.n && !kept; g++) kept = gr.name[g] == val[e];
        if (!kept) free(val[e]);
    }
    free(val);
    qsort(refs, d->n, sizeof *refs, cmp_ref);
    for (size_t q = 0; q < o->done.n; q++) {
        ex_ref key = {.id = guide_str(o->done.rec[q], "example")};
        const ex_ref *hit = key.id ? bsearch(&key, refs, d->n, sizeof *refs, cmp_ref) : NULL;
        gr.rec_group[q] = hit ? hit->g : -1;
    }
    free(refs);
    return gr;
}

static void free_groups(groups *gr) {
    for (size_t g = 0; g < gr->n; g++) free(gr->name[g]);
    free(gr->name);
    free(gr->examples);
    free(gr->rec_group);
}

/* A file-name-safe form of a group name: [A-Za-z0-9._-] kept, anything else '_', at most 48
 * bytes, then "-<index>" so that two groups never share a file. */
static void group_file(char *buf, size_t cap, const char *stem, const char *group, size_t g) {
    char safe[49];
    size_t n = 0;
    for (const char *c = group; *c && n < 48; c++)
        safe[n++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                    *c == '-' ? *c : '_';
    safe[n] = 0;
    snprintf(buf, cap, "%s_%s-%zu.png", stem, safe, g);
}

/* One table (all records, or one group's): the rows in rep, CI lines, csv rows, the summary's
 * cells, the matrix and its heatmap. */
static void report_table(const guide_opts *G, exp_out *o, const exp_data *d, const gsel *gs, bool scored,
                         const rep_boot *bt, exp_buf *rep, exp_buf *csv, cJSON *summary, cJSON *cells,
                         const char *figure) {
    exp_buf cis = {0};
    exp_buf_printf(rep, "%-7s %-4s %5s %6s %5s %8s %9s %8s %8s %9s %9s\n", "cond", "ttt", "T", "alpha", "n", "accuracy",
                   "KL/token", "changed", "tokens", "ms/token", "tfwd/tok");
    exp_buf_printf(&cis, "\n%.0f%% bootstrap CIs over examples (%u resamples, seed %llu)%s%s:\n", 100 * REP_LEVEL, bt->reps,
                   (unsigned long long)bt->seed, gs->g >= 0 ? ", group " : "", gs->g >= 0 ? gs->name : "");
    double *grid = malloc((G->ncells + 1) * sizeof *grid);
    if (!grid) cli_fatal("out of memory");
    for (size_t ci = 0; ci < G->ncells; ci++) grid[ci] = report_cell(o, &G->cells[ci], gs, scored, bt, rep, &cis, csv, cells);
    if (gs->g < 0) check_alpha0(G, o, d, summary, rep);
    print_matrix(G, grid, scored, rep);
    exp_buf_printf(rep, "%s", cis.s ? cis.s : "");
    if (guide_any_drafted(G)) write_heatmap(G, o, grid, scored, figure, gs->g >= 0 ? gs->name : NULL);
    free(grid);
    exp_buf_free(&cis);
}

void guide_report(const guide_opts *G, exp_out *o, const exp_data *d, vkd_tok *tok) {
    bool scored = false;
    for (size_t q = 0; q < o->done.n; q++)
        scored |= cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(o->done.rec[q], "correct"));
    exp_buf csv = {0}, rep = {0};
    exp_buf_printf(&csv, "%scondition,ttt,temperature,alpha,examples,accuracy,kl_mean,changed_frac,tokens_mean,"
                         "ms_per_token,target_forwards_per_token\n", G->group_by ? "group," : "");
    cJSON *summary = cJSON_CreateObject();
    cJSON *sc = cJSON_AddArrayToObject(summary, "cells");
    bool drafted = guide_any_drafted(G);
    exp_buf_printf(&rep, "guide: %zu example(s) from %s, %zu cell(s), draft block %ld, seed %llu%s\n", d->n, d->path,
                   G->ncells, G->c.block, G->c.seed, drafted ? "" : " (plain only)");
    if (!scored) exp_buf_printf(&rep, "(no scored answers: accuracy is '-'; the matrices show KL/token)\n");
    rep_boot bt = rep_boot_of(&G->c);
    rep_boot_json(summary, &bt);
    groups gr = G->group_by ? make_groups(G, o, d) : (groups){0};
    gsel all = {.rec_group = gr.rec_group, .g = -1, .name = G->group_by ? "all" : NULL};
    report_table(G, o, d, &all, scored, &bt, &rep, &csv, summary, sc, "heatmap.png");
    if (G->group_by) {
        cJSON *gj = cJSON_AddArrayToObject(summary, "groups");
        cJSON_AddStringToObject(summary, "group_by", G->group_by);
        for (size_t g = 0; g < gr.n; g++) {
            char fig[96];
            group_file(fig, sizeof fig, "heatmap", gr.name[g], g);
            exp_buf_printf(&rep, "\n==== group %s = %s (%zu example(s)) ====\n", G->group_by, gr.name[g], gr.examples[g]);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "group", gr.name[g]);
            cJSON_AddNumberToObject(x, "examples", (double)gr.examples[g]);
            if (drafted) cJSON_AddStringToObject(x, "figure", fig);
            cJSON *cells = cJSON_AddArrayToObject(x, "cells");
            gsel one = {.rec_group = gr.rec_group, .g = (int)g, .name = gr.name[g]};
            report_table(G, o, d, &one, scored, &bt, &rep, &csv, summary, cells, fig);
            cJSON_AddItemToArray(gj, x);
        }
    }
    exp_write(o, "report.txt", rep.s, rep.n);
    fputs(rep.s, stdout);
    exp_write(o, "matrix.csv", csv.s, csv.n);
    exp_write_json(o, "summary.json", summary);
    write_responses(G, o, d);
    write_tokens(G, o, d, tok);
    write_compare(G, o, d);
    printf("wrote %s/{report.txt,matrix.csv,summary.json,responses.jsonl,tokens.jsonl,compare.md,heatmap%s.png,"
           "examples.jsonl,config.json}\n", o->dir, G->group_by ? "*" : "");
    free_groups(&gr);
    exp_buf_free(&csv);
    exp_buf_free(&rep);
    cJSON_Delete(summary);
}
