/* vkdraft diagnose: the deep-readout diagnostic of seed 000 (design.md section 6): flags,
 * the per-example passes (methods/vkd_diagnose.h), and the tables, CSV, JSON and figures
 * made from the journal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "figure.h"
#include "vkd_generate.h"
#include "vkd_diagnose.h"

#define DEFAULT_DATASET "../shared/datasets/gsm8k_test.jsonl"

static void usage(void) {
    printf("usage: vkdraft diagnose --target DIR --draft DIR --out DIR [--dataset FILE] [--limit N]\n"
           "           [--modes gold,mask,random] [--seed S] [--block-size B] [--resume]\n\n"
           "Is the DFlash draft a deeper readout of the target than its own lm_head? (seed 000)\n"
           "Each record's prompt goes through the target's chat template (thinking off) and\n"
           "its gold answer (GSM8K's 'answer' by default; --answer-field) is appended as the\n"
           "assistant's tokens. One teacher-forced target pass gives the logits at every answer\n"
           "position; the draft runs over the answer in non-overlapping blocks of B with the\n"
           "KV-cached context speculative decoding builds (block 0 sees the whole prompt, block\n"
           "k block k-1 plus its cache). Modes: gold (block rows = gold tokens: leaks future\n"
           "tokens), mask (row 0 = the known token, the rest MASK: the fair mode), random (gold\n"
           "rows, features replaced by Gaussian noise with each row's norm kept; noise from\n"
           "--seed). Compared tokens: block positions 1..B-1. Per token: p = softmax(logits)[gold]\n"
           "and rank = 1 + the number of vocabulary entries with a strictly larger logit.\n\n"
           "Outputs in --out: tokens.csv (example, mode, position = index in the answer, block,\n"
           "block_pos, gold_id, gold_text, p_target, p_draft, rank_target, rank_draft),\n"
           "summary.json, report.txt (the tables printed: overall means and win rates, by target\n"
           "confidence bucket, per block index, causal decomposition random -> mask -> gold on\n"
           "the p_target < 0.01 bucket), figures fig_bucket_rank_comparison.png,\n"
           "fig_signal_decomposition.png, fig_block_rank_decay.png, fig_draft_advantage_heatmap.png\n"
           "(mask mode: log10(rank_target / rank_draft) per example and answer token), and\n"
           "config.json. Default dataset: %s.\n\n%s", DEFAULT_DATASET, exp_common_help);
}

/* ---- aggregation over the journal ---- */

typedef struct agg {
    double n, p_t, p_d, r_t, r_d, rank_win, prob_win;
} agg;

static void agg_add(agg *a, double p_t, double p_d, double r_t, double r_d) {
    a->n += 1;
    a->p_t += p_t;
    a->p_d += p_d;
    a->r_t += r_t;
    a->r_d += r_d;
    a->rank_win += r_d < r_t;
    a->prob_win += p_d > p_t;
}

static double mean_of(double s, double n) { return n > 0 ? s / n : NAN; }

static cJSON *agg_json(const agg *a) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "tokens", a->n);
    if (a->n > 0) {
        cJSON_AddNumberToObject(j, "mean_p_target", a->p_t / a->n);
        cJSON_AddNumberToObject(j, "mean_p_draft", a->p_d / a->n);
        cJSON_AddNumberToObject(j, "mean_rank_target", a->r_t / a->n);
        cJSON_AddNumberToObject(j, "mean_rank_draft", a->r_d / a->n);
        cJSON_AddNumberToObject(j, "rank_draft_wins", a->rank_win / a->n);
        cJSON_AddNumberToObject(j, "prob_draft_wins", a->prob_win / a->n);
    }
    return j;
}

static const char *const bucket_names[4] = {"p<0.01", "0.01-0.1", "0.1-0.5", ">=0.5"};
static int bucket_of(double p) { return p < 0.01 ? 0 : p < 0.1 ? 1 : p < 0.5 ? 2 : 3; }

/* The document's three figures and the per-token draft-advantage heatmap (seed 001). */
static void diag_figures(const exp_out *o, const bool modes[3], agg bucket[4][3], const agg *per_block,
                         uint32_t nblk, double R_rand, double R_mask, double R_gold, double R_tgt,
                         double chance, const double *hm, size_t hm_rows, size_t hm_cols,
                         const char *const *hm_labels) {
    /* bucket rank comparison: groups = buckets, series = target + each mode's draft */
    const char *series[4];
    double vals[4 * 4];
    size_t ns = 0;
    series[ns] = "target";
    for (int b = 0; b < 4; b++) {
        double n = 0, r = 0;
        for (int md = 0; md < 3; md++) if (bucket[b][md].n > 0) { n = bucket[b][md].n; r = bucket[b][md].r_t; break; }
        vals[ns * 4 + b] = mean_of(r, n);
    }
    ns++;
    static const char *const draft_names[3] = {"draft (gold)", "draft (mask)", "draft (random)"};
    for (int md = 0; md < 3; md++) {
        if (!modes[md]) continue;
        series[ns] = draft_names[md];
        for (int b = 0; b < 4; b++) vals[ns * 4 + b] = mean_of(bucket[b][md].r_d, bucket[b][md].n);
        ns++;
    }
    fig_chart ch = {.kind = FIG_BAR, .title = "Mean rank of the gold token by target confidence",
                    .xlabel = "target confidence bucket (p_target)", .ylabel = "mean rank (log)"};
    ch.bar = (fig_bar){.n_groups = 4, .n_series = ns, .values = vals, .group_labels = bucket_names,
                       .series_labels = series, .log_y = true, .annotate = true};
    exp_write_figure(o, "fig_bucket_rank_comparison.png", &ch);

    /* signal decomposition */
    static const char *const comp[5] = {"random", "+ layer signal (mask)", "+ gold leakage (gold)", "target", "chance"};
    double dv[5] = {R_rand, R_mask, R_gold, R_tgt, chance};
    fig_chart dc = {.kind = FIG_BAR, .title = "Signal decomposition (p_target < 0.01): mean gold rank",
                    .xlabel = "pathway", .ylabel = "mean rank (log)"};
    dc.bar = (fig_bar){.n_groups = 5, .n_series = 1, .values = dv, .group_labels = comp, .log_y = true,
                       .annotate = true};
    exp_write_figure(o, "fig_signal_decomposition.png", &dc);

    /* per-block rank decay */
    double *x = malloc((nblk + 1) * sizeof *x), *yv = malloc((nblk + 1) * 4 * sizeof *yv);
    fig_series ls[4];
    size_t nl = 0;
    for (uint32_t k = 0; k < nblk; k++) {
        x[k] = k;
        const agg *a = per_block + k * 3;
        double n = 0, r = 0;
        for (int md = 0; md < 3; md++) if (a[md].n > 0) { n = a[md].n; r = a[md].r_t; break; }
        yv[k] = mean_of(r, n);
    }
    ls[nl++] = (fig_series){.label = "target", .n = nblk, .y = yv};
    for (int md = 0; md < 3; md++) {
        if (!modes[md]) continue;
        double *y = yv + (nl) * (nblk + 1);
        for (uint32_t k = 0; k < nblk; k++) y[k] = mean_of(per_block[k * 3 + md].r_d, per_block[k * 3 + md].n);
        ls[nl++] = (fig_series){.label = draft_names[md], .n = nblk, .y = y};
    }
    fig_chart lc = {.kind = FIG_LINE, .title = "Mean gold rank per block index",
                    .xlabel = "block index (block 0 sees the whole prompt)", .ylabel = "mean rank (log)"};
    lc.line = (fig_line){.n_series = nl, .series = ls, .x = x, .log_y = true};
    exp_write_figure(o, "fig_block_rank_decay.png", &lc);
    free(x);
    free(yv);

    /* per-token draft advantage (mask mode) */
    fig_chart hc = {.kind = FIG_HEATMAP, .title = "Draft advantage per answer token (mask mode)",
                    .xlabel = "compared answer token", .ylabel = "example",
                    .height = hm_rows > 20 ? (int)(hm_rows * 14 + 200 < 4000 ? hm_rows * 14 + 200 : 4000) : 0};
    hc.heatmap = (fig_heatmap){.rows = hm_rows, .cols = hm_cols, .values = hm, .row_labels = hm_labels,
                               .cmap = FIG_CMAP_DIVERGING,
                               .colorbar_label = "log10(rank_target / rank_draft)"};
    exp_write_figure(o, "fig_draft_advantage_heatmap.png", &hc);
}

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* --modes "gold,mask,random" -> modes[vkd_tf_mode]; usage error on an unknown name or an empty list. */
static void parse_modes(const char *cmd, const char *modes_s, bool modes[3]) {
    char *s = strdup(modes_s), *save = NULL;
    for (char *tkn = strtok_r(s, ",", &save); tkn; tkn = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int md = 0; md < 3; md++) if (!strcmp(tkn, vkd_tf_mode_names[md])) k = md;
        if (k < 0) cli_usage_error(cmd, "--modes: unknown mode '%s' (expected gold, mask, random)", tkn);
        modes[k] = true;
    }
    free(s);
    if (!modes[0] && !modes[1] && !modes[2]) cli_usage_error(cmd, "--modes is empty");
}

/* Sequences compared: each chat-rendered prompt followed by its answer's raw text tokens. */
typedef struct seqs {
    int32_t **ids;
    uint32_t *lens;
    uint64_t longest;
} seqs;

static void seqs_build(vkd_tok *tok, const exp_data *data, seqs *s) {
    s->ids = calloc(data->n, sizeof *s->ids);
    s->lens = calloc(data->n, sizeof *s->lens);
    s->longest = 0;
    vkd_error err = {0};
    for (size_t k = 0; k < data->n; k++) {
        int32_t *a;
        size_t na;
        const char *ans = data->ex[k].answer;
        cli_check(vkd_tok_encode(tok, ans, strlen(ans), false, &a, &na, &err), &err);
        uint32_t n = data->ex[k].n_prompt + (uint32_t)na;
        s->ids[k] = malloc((size_t)n * sizeof **s->ids);
        memcpy(s->ids[k], data->ex[k].prompt, data->ex[k].n_prompt * sizeof **s->ids);
        memcpy(s->ids[k] + data->ex[k].n_prompt, a, na * sizeof *a);
        s->lens[k] = n;
        free(a);
        if (n > s->longest) s->longest = n;
    }
}

static void seqs_free(seqs *s, size_t n) {
    for (size_t k = 0; k < n; k++) free(s->ids[k]);
    free(s->ids);
    free(s->lens);
}

/* What this invocation ran: wall time of the phases, summed over examples. */
typedef struct run_stats {
    vkd_diagnose_times timing;
    uint64_t work;                   /* tokens compared */
    double t_run;
} run_stats;

/* The journal record of example k: skipped (answer too short, too long for the context) or its
 * per-token rows [pos, block, block_pos, gold, p_t, rank_t, (p_d, rank_d) x gold, mask, random]. */
static cJSON *diagnose_one(vkd_diagnose *dg, const exp_models *m, const exp_data *data, const seqs *s, size_t k,
                           uint32_t B, const bool modes[3], unsigned long long seed, run_stats *st) {
    const exp_example *e = &data->ex[k];
    uint32_t len = s->lens[k];
    cJSON *rj = exp_record_new(e);
    cJSON_AddNumberToObject(rj, "answer_tokens", len - e->n_prompt);
    if (len - e->n_prompt < 2) {
        fprintf(stderr, "diagnose: %s:%zu: skipped: the answer encodes to %u token(s), nothing to compare\n",
                data->path, e->line, len - e->n_prompt);
        cJSON_AddStringToObject(rj, "skipped", "answer shorter than 2 tokens");
        return rj;
    }
    if (len + B > m->t->ctx_len) {
        fprintf(stderr, "diagnose: %s:%zu: skipped: prompt + answer (%u tokens) exceed the context (%u)\n",
                data->path, e->line, len, m->t->ctx_len);
        cJSON_AddStringToObject(rj, "skipped", "longer than the context");
        return rj;
    }
    vkd_diagnose_token *rows;
    uint32_t nr;
    vkd_error err = {0};
    double t0 = vkd_now();
    cli_check(vkd_diagnose_run(dg, m->rec, s->ids[k], len, e->n_prompt, modes, seed, (uint32_t)k, &rows, &nr,
                               &st->timing, &err), &err);
    st->t_run += vkd_now() - t0;
    st->work += len;
    cJSON *ta = cJSON_AddArrayToObject(rj, "tokens");
    for (uint32_t i = 0; i < nr; i++) {
        const vkd_diagnose_token *t = &rows[i];
        double v[12] = {t->pos, t->block, t->block_pos, t->gold, t->p_t, t->rank_t,
                        t->p_d[0], t->rank_d[0], t->p_d[1], t->rank_d[1], t->p_d[2], t->rank_d[2]};
        cJSON *row = cJSON_CreateArray();
        for (int q = 0; q < 12; q++) cJSON_AddItemToArray(row, isnan(v[q]) ? cJSON_CreateNull() : cJSON_CreateNumber(v[q]));
        cJSON_AddItemToArray(ta, row);
    }
    free(rows);
    return rj;
}

/* Everything the tables, summary and figures need, tallied from the whole journal. */
typedef struct tally {
    agg overall[3], bucket[4][3], low[4];
    agg *per_block;                  /* [block][mode] */
    uint32_t nblk;
    double mean_prompt;
    double *hm;                      /* [hm_rows][hm_cols] mask mode log10(rank_t / rank_d) */
    char **hm_labels;
    size_t hm_rows, hm_cols;
} tally;

/* One journal record's token rows into the aggregates, tokens.csv and heatmap row hr. */
static void tally_record(tally *T, const cJSON *rj, size_t hr, vkd_tok *tok, exp_buf *csv) {
    const cJSON *ta = item(rj, "tokens"), *row;
    const char *id = cJSON_GetStringValue(item(rj, "id"));
    T->hm_labels[hr] = strdup(id);
    size_t col = 0;
    vkd_error err = {0};
    cJSON_ArrayForEach(row, ta) {
        double v[12];
        for (int q = 0; q < 12; q++) {
            const cJSON *x = cJSON_GetArrayItem(row, q);
            v[q] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        }
        uint32_t blk = (uint32_t)v[1];
        if (blk + 1 > T->nblk) {
            T->per_block = realloc(T->per_block, (blk + 1) * 3 * sizeof *T->per_block);
            memset(T->per_block + T->nblk * 3, 0, (blk + 1 - T->nblk) * 3 * sizeof *T->per_block);
            T->nblk = blk + 1;
        }
        int b = bucket_of(v[4]);
        int32_t gold = (int32_t)v[3];
        char *text = NULL;
        size_t tl;
        if (vkd_tok_decode(tok, &gold, 1, false, &text, &tl, &err)) text = strdup("");
        for (int md = 0; md < 3; md++) {
            double pd = v[6 + 2 * md], rd = v[7 + 2 * md];
            if (isnan(pd)) continue;
            agg_add(&T->overall[md], v[4], pd, v[5], rd);
            agg_add(&T->bucket[b][md], v[4], pd, v[5], rd);
            agg_add(&T->per_block[blk * 3 + md], v[4], pd, v[5], rd);
            if (b == 0) agg_add(&T->low[md], v[4], pd, v[5], rd);
            exp_buf_csv(csv, id);
            exp_buf_printf(csv, ",%s,%.0f,%.0f,%.0f,%d,", vkd_tf_mode_names[md], v[0], v[1], v[2], gold);
            exp_buf_csv(csv, text);
            exp_buf_printf(csv, ",%.9g,%.9g,%.0f,%.0f\n", v[4], pd, v[5], rd);
        }
        free(text);
        if (col < T->hm_cols && !isnan(v[9])) T->hm[hr * T->hm_cols + col] = log10(v[5] / v[9]);
        col++;
    }
}

/* Tallies the journal and writes tokens.csv. */
static void tally_journal(exp_out *o, vkd_tok *tok, tally *T) {
    memset(T, 0, sizeof *T);
    double prompt_sum = 0, prompt_n = 0;
    for (size_t ri = 0; ri < o->done.n; ri++) {
        const cJSON *rj = o->done.rec[ri];
        const cJSON *ta = item(rj, "tokens");
        if (!cJSON_IsArray(ta)) continue;
        T->hm_rows++;
        size_t nt = (size_t)cJSON_GetArraySize(ta);
        if (nt > T->hm_cols) T->hm_cols = nt;
        prompt_sum += cJSON_GetNumberValue(item(rj, "prompt_tokens"));
        prompt_n += 1;
    }
    T->mean_prompt = mean_of(prompt_sum, prompt_n);
    if (T->hm_cols > 400) T->hm_cols = 400;
    T->hm = malloc((T->hm_rows * T->hm_cols + 1) * sizeof *T->hm);
    T->hm_labels = calloc(T->hm_rows + 1, sizeof *T->hm_labels);
    for (size_t q = 0; q < T->hm_rows * T->hm_cols; q++) T->hm[q] = NAN;
    exp_buf csv = {0};
    exp_buf_printf(&csv, "example,mode,position,block,block_pos,gold_id,gold_text,p_target,p_draft,rank_target,rank_draft\n");
    size_t hr = 0;
    for (size_t ri = 0; ri < o->done.n; ri++)
        if (cJSON_IsArray(item(o->done.rec[ri], "tokens"))) tally_record(T, o->done.rec[ri], hr++, tok, &csv);
    exp_write(o, "tokens.csv", csv.s ? csv.s : "", csv.n);
    exp_buf_free(&csv);
}

static void tally_free(tally *T) {
    for (size_t q = 0; q < T->hm_rows; q++) free(T->hm_labels[q]);
    free(T->hm_labels);
    free(T->hm);
    free(T->per_block);
}

static const char *const mode_label[3] = {"gold", "mask", "random"};

/* Causal decomposition on the low-confidence bucket: mean gold ranks. */
typedef struct decomp {
    double R_rand, R_mask, R_gold, R_tgt, chance;
} decomp;

static decomp decompose(const tally *T, uint32_t vocab) {
    decomp D = {.R_rand = mean_of(T->low[2].r_d, T->low[2].n), .R_mask = mean_of(T->low[1].r_d, T->low[1].n),
                .R_gold = mean_of(T->low[0].r_d, T->low[0].n), .R_tgt = NAN, .chance = (vocab + 1) / 2.0};
    for (int md = 0; md < 3 && isnan(D.R_tgt); md++) D.R_tgt = mean_of(T->low[md].r_t, T->low[md].n);
    return D;
}

/* report.txt's tables: overall, by confidence bucket, per block, the decomposition. */
static void report_tables(exp_buf *rep, const tally *T, const decomp *D, const bool modes[3], uint32_t B,
                          const vkd_target *t) {
    exp_buf_printf(rep, "diagnose: %zu example(s), block size %u, target vocabulary %u\n\n", T->hm_rows, B, t->vocab);
    exp_buf_printf(rep, "Overall\n| Mode | tokens | Mean p_target | Mean p_draft | Mean rank_target | Mean rank_draft | %% rank draft wins | %% prob draft wins |\n|---|---|---|---|---|---|---|---|\n");
    for (int md = 0; md < 3; md++) {
        const agg *a = &T->overall[md];
        if (!modes[md] || a->n == 0) continue;
        exp_buf_printf(rep, "| %s | %.0f | %.4f | %.4f | %.0f | %.0f | %.1f%% | %.1f%% |\n", mode_label[md], a->n,
                       a->p_t / a->n, a->p_d / a->n, a->r_t / a->n, a->r_d / a->n, 100 * a->rank_win / a->n,
                       100 * a->prob_win / a->n);
    }
    exp_buf_printf(rep, "\nBy target confidence\n| Bucket | Mode | n | Mean rank_target | Mean rank_draft | %% rank draft wins | %% prob draft wins |\n|---|---|---|---|---|---|---|\n");
    for (int b = 0; b < 4; b++)
        for (int md = 0; md < 3; md++) {
            const agg *a = &T->bucket[b][md];
            if (!modes[md] || a->n == 0) continue;
            exp_buf_printf(rep, "| %s | %s | %.0f | %.0f | %.0f | %.1f%% | %.1f%% |\n", bucket_names[b], mode_label[md], a->n,
                           a->r_t / a->n, a->r_d / a->n, 100 * a->rank_win / a->n, 100 * a->prob_win / a->n);
        }
    exp_buf_printf(rep, "\nPer block\n| Block | Context positions | n | rank_target | rank_draft (mask) | rank_draft (gold) | rank_draft (random) |\n|---|---|---|---|---|---|---|\n");
    for (uint32_t k = 0; k < T->nblk; k++) {
        const agg *a = T->per_block + k * 3;
        double n = a[0].n > 0 ? a[0].n : a[1].n > 0 ? a[1].n : a[2].n;
        double rt = a[0].n > 0 ? a[0].r_t / a[0].n : a[1].n > 0 ? a[1].r_t / a[1].n : a[2].r_t / a[2].n;
        exp_buf_printf(rep, "| %u | %.0f%s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", k, k ? (double)B : T->mean_prompt,
                       k ? "" : " (full prompt)", n, rt, mean_of(a[1].r_d, a[1].n), mean_of(a[0].r_d, a[0].n),
                       mean_of(a[2].r_d, a[2].n));
    }
    double R_rand = D->R_rand, R_mask = D->R_mask, R_gold = D->R_gold, R_tgt = D->R_tgt, chance = D->chance;
    exp_buf_printf(rep, "\nCausal decomposition (p_target < 0.01 bucket, mean rank of the gold token)\n"
                        "| Component | Computation | Rank | Factor |\n|---|---|---|---|\n");
    exp_buf_printf(rep, "| Random baseline | - | %.0f | 1.0x |\n", R_rand);
    exp_buf_printf(rep, "| + Intermediate layer signal | random -> mask | %.0f -> %.0f | %.1fx |\n", R_rand, R_mask, R_rand / R_mask);
    exp_buf_printf(rep, "| + Gold token leakage | mask -> gold | %.0f -> %.0f | %.1fx |\n", R_mask, R_gold, R_mask / R_gold);
    exp_buf_printf(rep, "| Combined | random -> gold | %.0f -> %.0f | %.1fx |\n", R_rand, R_gold, R_rand / R_gold);
    exp_buf_printf(rep, "| Target (%u layers) | - | %.0f | %.1fx |\n", t->n_layers, R_tgt, R_rand / R_tgt);
    exp_buf_printf(rep, "| Chance level | (V+1)/2 | %.0f | %.2fx |\n", chance, R_rand / chance);
}

/* summary.json. */
static cJSON *summary_json(const tally *T, const decomp *D, const bool modes[3], uint32_t B, uint32_t vocab,
                           const run_stats *st) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "examples", (double)T->hm_rows);
    cJSON_AddNumberToObject(sum, "block_size", B);
    cJSON_AddNumberToObject(sum, "vocab", vocab);
    cJSON_AddNumberToObject(sum, "mean_prompt_tokens", T->mean_prompt);
    cJSON *jo = cJSON_AddObjectToObject(sum, "overall");
    for (int md = 0; md < 3; md++) if (modes[md]) cJSON_AddItemToObject(jo, mode_label[md], agg_json(&T->overall[md]));
    cJSON *jb = cJSON_AddObjectToObject(sum, "buckets");
    for (int b = 0; b < 4; b++) {
        cJSON *x = cJSON_AddObjectToObject(jb, bucket_names[b]);
        for (int md = 0; md < 3; md++) if (modes[md]) cJSON_AddItemToObject(x, mode_label[md], agg_json(&T->bucket[b][md]));
    }
    cJSON *jk = cJSON_AddArrayToObject(sum, "blocks");
    for (uint32_t k = 0; k < T->nblk; k++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "block", k);
        cJSON_AddNumberToObject(x, "context_positions", k ? (double)B : T->mean_prompt);
        for (int md = 0; md < 3; md++)
            if (modes[md]) cJSON_AddItemToObject(x, mode_label[md], agg_json(&T->per_block[k * 3 + md]));
        cJSON_AddItemToArray(jk, x);
    }
    double R_rand = D->R_rand, R_mask = D->R_mask, R_gold = D->R_gold, R_tgt = D->R_tgt;
    cJSON *jd = cJSON_AddObjectToObject(sum, "decomposition_low_confidence");
    double dv[4] = {R_rand, R_mask, R_gold, R_tgt};
    const char *dn[4] = {"rank_random", "rank_mask", "rank_gold", "rank_target"};
    for (int q = 0; q < 4; q++) if (!isnan(dv[q])) cJSON_AddNumberToObject(jd, dn[q], dv[q]);
    cJSON_AddNumberToObject(jd, "rank_chance", D->chance);
    if (!isnan(R_rand / R_mask)) cJSON_AddNumberToObject(jd, "factor_layer_signal", R_rand / R_mask);
    if (!isnan(R_mask / R_gold)) cJSON_AddNumberToObject(jd, "factor_gold_leakage", R_mask / R_gold);
    if (!isnan(R_rand / R_gold)) cJSON_AddNumberToObject(jd, "factor_combined", R_rand / R_gold);
    if (!isnan(R_rand / R_tgt)) cJSON_AddNumberToObject(jd, "factor_target", R_rand / R_tgt);
    cJSON *jt = cJSON_AddObjectToObject(sum, "timing");
    cJSON_AddNumberToObject(jt, "seconds", st->t_run);
    cJSON_AddNumberToObject(jt, "tokens", (double)st->work);
    cJSON_AddNumberToObject(jt, "tok_s", st->t_run > 0 ? st->work / st->t_run : 0);
    cJSON_AddNumberToObject(jt, "prompt_pass_s", st->timing.prompt);
    cJSON_AddNumberToObject(jt, "draft_blocks_s", st->timing.draft);
    cJSON_AddNumberToObject(jt, "target_blocks_s", st->timing.target);
    cJSON_AddNumberToObject(jt, "random_pass_s", st->timing.random);
    return sum;
}

/* Tables, summary.json, report.txt (also on stdout) and the figures, from the whole journal. */
static void diag_report(exp_out *o, const exp_models *m, const bool modes[3], uint32_t B, const run_stats *st) {
    tally T;
    tally_journal(o, m->tok, &T);
    decomp D = decompose(&T, m->t->vocab);
    exp_buf rep = {0};
    report_tables(&rep, &T, &D, modes, B, m->t);
    cJSON *sum = summary_json(&T, &D, modes, B, m->t->vocab, st);
    const vkd_diagnose_times *tm = &st->timing;
    exp_buf_printf(&rep, "\nTime (this invocation): %.1fs for %llu tokens (%.2f tok/s): prompt pass %.1fs, "
                         "target blocks %.1fs, draft blocks (gold+mask) %.1fs, random-mode pass %.1fs\n",
                   st->t_run, (unsigned long long)st->work, st->t_run > 0 ? st->work / st->t_run : 0, tm->prompt,
                   tm->target, tm->draft, tm->random);
    exp_write_json(o, "summary.json", sum);
    cJSON_Delete(sum);
    fputs(rep.s, stdout);
    exp_write(o, "report.txt", rep.s, rep.n);
    diag_figures(o, modes, T.bucket, T.per_block, T.nblk, D.R_rand, D.R_mask, D.R_gold, D.R_tgt, D.chance, T.hm,
                 T.hm_rows, T.hm_cols, (const char *const *)T.hm_labels);
    tally_free(&T);
    exp_buf_free(&rep);
}

int vkd_cmd_diagnose(int argc, char **argv) {
    exp_common c = {.cmd = "diagnose"};
    const char *modes_s = "gold,mask,random";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(&c, argc, argv, &i)) continue;
        if ((v = cli_value(c.cmd, "--modes", argc, argv, &i))) modes_s = v;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error(c.cmd, "unknown flag '%s'", argv[i]);
    }
    exp_require(&c, true);
    bool modes[3] = {false, false, false};
    parse_modes(c.cmd, modes_s, modes);

    exp_models m = {0};
    exp_load_tokenizer(&c, &m);
    exp_data data;
    exp_load_data(&c, m.tok, DEFAULT_DATASET, true, &data);
    seqs s;
    seqs_build(m.tok, &data, &s);
    exp_load_models(&c, exp_ctx_cap(&c, s.longest + 64), &m);
    vkd_error err = {0};
    vkd_draft *g;
    vkd_diagnose *dg;
    cli_check(vkd_draft_dflash(m.d, &g, &err), &err);
    uint32_t B = g->block;
    if (B > 64 || B > m.t->logit_rows) cli_fatal("diagnose: block size %u is larger than 64", B);
    cli_check(vkd_diagnose_create(m.t, g, &dg, &err), &err);

    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "modes", modes_s);
    cJSON_AddStringToObject(params, "dataset", data.path);
    cJSON_AddNumberToObject(params, "block_size", B);
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = m.t->ctx_len, .block = B};
    exp_open_out(&c, params, jr_check_diagnose, &lim, &o);

    exp_progress pg;
    exp_progress_start(&pg, c.cmd, data.n);
    run_stats st = {0};
    for (size_t k = 0; k < data.n; k++) {
        if (exp_claim(&o, k, data.ex[k].id)) exp_journal(&o, diagnose_one(dg, &m, &data, &s, k, B, modes, c.seed, &st));
        exp_progress_update(&pg, k + 1, st.work, "tok");
    }
    exp_finish_work(&o);
    exp_progress_end(&pg, data.n, st.work, "tok");

    diag_report(&o, &m, modes, B, &st);

    vkd_diagnose_free(dg);
    vkd_draft_free(g);
    seqs_free(&s, data.n);
    exp_close_out(&o);
    exp_free_data(&data);
    exp_free_models(&m);
    return 0;
}
