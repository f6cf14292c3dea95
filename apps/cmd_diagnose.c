/* vkdraft diagnose: the deep-readout diagnostic of seed 000 (design.md section 6): flags,
 * the per-example passes (methods/vkd_diagnose.h), and the tables, CSV, JSON and figures
 * made from the journal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "figure.h"
#include "grade.h"
#include "report.h"
#include "vkd_generate.h"
#include "vkd_diagnose.h"

#define DEFAULT_DATASET "../shared/datasets/gsm8k_test.jsonl"

static void usage(void) {
    printf("usage: vkdraft diagnose --target DIR (--draft DIR | --exit-head DIR) --out DIR [--dataset FILE] [--limit N]\n"
           "           [--modes gold,mask,random] [--only-target-wrong [--judge-tokens N]] [--seed S]\n"
           "           [--block-size B] [--resume]\n\n"
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
           "  --only-target-wrong   seed 001's decisive condition: the target first answers each\n"
           "                        record greedily (--judge-tokens, default 512, its eos ids), graded\n"
           "                        as guide and power grade (GSM8K '####' / MATH-500 \\boxed{}, by the\n"
           "                        dataset's file name); records it answers correctly are skipped\n"
           "                        ('target greedy answer correct' in the journal, counted in the\n"
           "                        report). A dataset that cannot be graded is refused.\n\n"
           "Warnings (report.txt, summary.json 'warnings'): random mode equal to gold mode (the draft\n"
           "ignores the target's features) and p_draft of the gold token within 1e-6 of 1 or below\n"
           "1e-12 for >= 99%% of a mode's tokens (one-hot proposals); either makes the figures\n"
           "meaningless. The compute budget of the run (prompt pass, draft blocks, teacher-forced\n"
           "target blocks, KV caches and taps at the longest sequence) closes the report.\n\n"
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
static void diag_figures(const exp_out *o, const bool modes[3], agg bucket[4][3], rep_ci bucket_ci[4][3][2],
                         const agg *per_block,
                         uint32_t nblk, double R_rand, double R_mask, double R_gold, double R_tgt,
                         double chance, const double *hm, size_t hm_rows, size_t hm_cols,
                         const char *const *hm_labels) {
    /* bucket rank comparison: groups = buckets, series = target + each mode's draft */
    const char *series[4];
    double vals[4 * 4], lo[4 * 4], hi[4 * 4], cnt[4 * 4]; /* 95% CIs over examples, tokens per bar */
    size_t ns = 0;
    series[ns] = "target";
    for (int b = 0; b < 4; b++) {
        double n = 0, r = 0;
        lo[b] = hi[b] = NAN;
        for (int md = 0; md < 3; md++)
            if (bucket[b][md].n > 0) {
                n = bucket[b][md].n, r = bucket[b][md].r_t, lo[b] = bucket_ci[b][md][0].lo, hi[b] = bucket_ci[b][md][0].hi;
                break;
            }
        vals[ns * 4 + b] = mean_of(r, n);
        cnt[ns * 4 + b] = n;
    }
    ns++;
    static const char *const draft_names[3] = {"draft (gold)", "draft (mask)", "draft (random)"};
    for (int md = 0; md < 3; md++) {
        if (!modes[md]) continue;
        series[ns] = draft_names[md];
        for (int b = 0; b < 4; b++) {
            vals[ns * 4 + b] = mean_of(bucket[b][md].r_d, bucket[b][md].n);
            lo[ns * 4 + b] = bucket_ci[b][md][1].lo, hi[ns * 4 + b] = bucket_ci[b][md][1].hi;
            cnt[ns * 4 + b] = bucket[b][md].n;
        }
        ns++;
    }
    fig_chart ch = {.kind = FIG_BAR, .title = "Mean rank of the gold token by target confidence (95% CI over examples)",
                    .xlabel = "target confidence bucket (p_target); n = tokens", .ylabel = "mean rank (log)"};
    ch.bar = (fig_bar){.n_groups = 4, .n_series = ns, .values = vals, .group_labels = bucket_names,
                       .series_labels = series, .log_y = true, .annotate = true, .err_lo = lo, .err_hi = hi,
                       .count = cnt};
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
    uint64_t blocks;                 /* draft blocks walked (per mode pass) */
    /* --only-target-wrong: grade the target's greedy answer first (seed 001's condition) */
    vkd_answer_kind kind;
    long judge_tokens;               /* 0: off */
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
    if (st->judge_tokens) {
        if ((uint64_t)e->n_prompt + (uint64_t)st->judge_tokens > m->t->ctx_len) {
            fprintf(stderr, "diagnose: %s:%zu: skipped: prompt + --judge-tokens %ld exceed the context (%u)\n",
                    data->path, e->line, st->judge_tokens, m->t->ctx_len);
            cJSON_AddStringToObject(rj, "skipped", "longer than the context");
            return rj;
        }
        int v = grade_target_greedy(m, st->kind, e, (uint32_t)st->judge_tokens, cJSON_AddObjectToObject(rj, "target_greedy"));
        if (v == 1) {
            cJSON_AddStringToObject(rj, "skipped", "target greedy answer correct");
            return rj;
        }
    }
    vkd_diagnose_token *rows;
    uint32_t nr;
    vkd_error err = {0};
    double t0 = vkd_now();
    cli_check(vkd_diagnose_run(dg, m->rec, s->ids[k], len, e->n_prompt, modes, seed, (uint32_t)e->index, &rows, &nr,
                               &st->timing, &err), &err);
    st->t_run += vkd_now() - t0;
    st->work += len;
    st->blocks += (len - e->n_prompt + B - 1) / B;
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
    double saturated[3];             /* tokens whose p_draft is ~1 or ~0 (a one-hot proposal) */
    size_t wrong_skipped;            /* --only-target-wrong: examples left out, target right */
    agg *per_block;                  /* [block][mode] */
    uint32_t nblk;
    double mean_prompt;
    double *hm;                      /* [hm_rows][hm_cols] mask mode log10(rank_t / rank_d) */
    char **hm_labels;
    size_t hm_rows, hm_cols;
    /* per example sums -> 95% bootstrap CIs over examples: overall [mode][p_t, p_d, r_t, r_d],
     * buckets [bucket][mode][r_t, r_d] */
    rep_col col_ov[3][4], col_bk[4][3][2];
} tally;

/* a draft row counts as one-hot at the gold token when p_draft is within these of 1 or 0 */
#define SAT_EPS 1e-6
#define SAT_ZERO 1e-12

/* One journal record's token rows into the aggregates, tokens.csv and heatmap row hr. */
static void tally_record(tally *T, const cJSON *rj, size_t hr, vkd_tok *tok, exp_buf *csv) {
    const cJSON *ta = item(rj, "tokens"), *row;
    const char *id = cJSON_GetStringValue(item(rj, "id"));
    T->hm_labels[hr] = strdup(id);
    size_t col = 0;
    vkd_error err = {0};
    agg ex_ov[3] = {0}, ex_bk[4][3] = {0};
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
            T->saturated[md] += pd >= 1 - SAT_EPS || pd <= SAT_ZERO;
            agg_add(&T->bucket[b][md], v[4], pd, v[5], rd);
            agg_add(&ex_ov[md], v[4], pd, v[5], rd);
            agg_add(&ex_bk[b][md], v[4], pd, v[5], rd);
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
    for (int md = 0; md < 3; md++) {
        const agg *a = &ex_ov[md];
        double sums[4] = {a->p_t, a->p_d, a->r_t, a->r_d};
        for (int q = 0; q < 4; q++) rep_col_add(&T->col_ov[md][q], sums[q], a->n);
        for (int b = 0; b < 4; b++) {
            rep_col_add(&T->col_bk[b][md][0], ex_bk[b][md].r_t, ex_bk[b][md].n);
            rep_col_add(&T->col_bk[b][md][1], ex_bk[b][md].r_d, ex_bk[b][md].n);
        }
    }
}

/* Tallies the journal and writes tokens.csv. */
static void tally_journal(exp_out *o, vkd_tok *tok, tally *T) {
    memset(T, 0, sizeof *T);
    double prompt_sum = 0, prompt_n = 0;
    for (size_t ri = 0; ri < o->done.n; ri++) {
        const cJSON *rj = o->done.rec[ri];
        const cJSON *ta = item(rj, "tokens");
        const char *sk = cJSON_GetStringValue(item(rj, "skipped"));
        if (sk && !strcmp(sk, "target greedy answer correct")) T->wrong_skipped++;
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
    for (int md = 0; md < 3; md++) {
        for (int q = 0; q < 4; q++) rep_col_free(&T->col_ov[md][q]);
        for (int b = 0; b < 4; b++)
            for (int q = 0; q < 2; q++) rep_col_free(&T->col_bk[b][md][q]);
    }
    for (size_t q = 0; q < T->hm_rows; q++) free(T->hm_labels[q]);
    free(T->hm_labels);
    free(T->hm);
    free(T->per_block);
}

static const char *const mode_label[3] = {"gold", "mask", "random"};

/* 95% bootstrap CIs over examples of the tallied means. */
typedef struct diag_cis {
    rep_boot bt;
    rep_ci ov[3][4], bk[4][3][2];
} diag_cis;

static void diag_cis_of(const exp_common *c, const tally *T, diag_cis *C) {
    C->bt = rep_boot_of(c);
    for (int md = 0; md < 3; md++) {
        for (int q = 0; q < 4; q++) C->ov[md][q] = rep_col_ci(&C->bt, &T->col_ov[md][q]);
        for (int b = 0; b < 4; b++)
            for (int q = 0; q < 2; q++) C->bk[b][md][q] = rep_col_ci(&C->bt, &T->col_bk[b][md][q]);
    }
}

/* report.txt's CI lines. */
static void report_cis(exp_buf *rep, const tally *T, const diag_cis *C, const bool modes[3]) {
    exp_buf_printf(rep, "\n%.0f%% bootstrap CIs over examples (%u resamples; token-pooled means as above)\n",
                   100 * REP_LEVEL, C->bt.reps);
    static const char *const stat_names[4] = {"mean p_target", "mean p_draft", "mean rank_target", "mean rank_draft"};
    for (int md = 0; md < 3; md++) {
        if (!modes[md] || T->overall[md].n == 0) continue;
        for (int q = 0; q < 4; q++) {
            char label[96];
            snprintf(label, sizeof label, "%s: %s", mode_label[md], stat_names[q]);
            rep_ci_line(rep, label, C->ov[md][q]);
        }
        for (int b = 0; b < 4; b++) {
            if (T->bucket[b][md].n == 0) continue;
            char label[96];
            snprintf(label, sizeof label, "%s, p_target %s: mean rank_draft", mode_label[md], bucket_names[b]);
            rep_ci_line(rep, label, C->bk[b][md][1]);
        }
    }
}

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
        char pt[32], pd[32]; /* small probabilities keep their digits */
        exp_buf_printf(rep, "| %s | %.0f | %s | %s | %.0f | %.0f | %.1f%% | %.1f%% |\n", mode_label[md], a->n,
                       rep_num(pt, sizeof pt, a->p_t / a->n), rep_num(pd, sizeof pd, a->p_d / a->n), a->r_t / a->n,
                       a->r_d / a->n, 100 * a->rank_win / a->n, 100 * a->prob_win / a->n);
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
static cJSON *summary_json(const tally *T, const diag_cis *C, const decomp *D, const bool modes[3], uint32_t B,
                           uint32_t vocab, const run_stats *st) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "examples", (double)T->hm_rows);
    cJSON_AddNumberToObject(sum, "block_size", B);
    cJSON_AddNumberToObject(sum, "vocab", vocab);
    cJSON_AddNumberToObject(sum, "mean_prompt_tokens", T->mean_prompt);
    rep_boot_json(sum, &C->bt);
    static const char *const ci_keys[4] = {"mean_p_target_ci", "mean_p_draft_ci", "mean_rank_target_ci",
                                           "mean_rank_draft_ci"};
    cJSON *jo = cJSON_AddObjectToObject(sum, "overall");
    for (int md = 0; md < 3; md++) {
        if (!modes[md]) continue;
        cJSON *x = agg_json(&T->overall[md]);
        for (int q = 0; q < 4; q++) rep_ci_json(x, ci_keys[q], C->ov[md][q]);
        cJSON_AddItemToObject(jo, mode_label[md], x);
    }
    cJSON *jb = cJSON_AddObjectToObject(sum, "buckets");
    for (int b = 0; b < 4; b++) {
        cJSON *x = cJSON_AddObjectToObject(jb, bucket_names[b]);
        for (int md = 0; md < 3; md++) {
            if (!modes[md]) continue;
            cJSON *y = agg_json(&T->bucket[b][md]);
            rep_ci_json(y, "mean_rank_target_ci", C->bk[b][md][0]);
            rep_ci_json(y, "mean_rank_draft_ci", C->bk[b][md][1]);
            cJSON_AddItemToObject(x, mode_label[md], y);
        }
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

/* Warnings that make the figures meaningless (seed 000): a draft whose random mode equals its
 * gold mode ignores the target's features; a draft whose p at the gold token is all but
 * always ~1 or ~0 proposes one-hot distributions. Each a line into rep and warn[]. */
static void diag_warnings(const tally *T, const bool modes[3], exp_buf *rep, cJSON *warn) {
    char line[400];
    const agg *g = &T->overall[0], *r = &T->overall[2];
    if (modes[0] && modes[2] && g->n > 0 && r->n > 0) {
        double pg = g->p_d / g->n, pr = r->p_d / r->n, rg = g->r_d / g->n, rr = r->r_d / r->n;
        if (fabs(pg - pr) <= 1e-3 + 0.01 * pg && fabs(rg - rr) <= 0.01 * rg) {
            snprintf(line, sizeof line, "the draft ignores the target's features: random mode equals gold mode (mean "
                     "p_draft %.4g vs %.4g, mean rank_draft %.1f vs %.1f); the decomposition means nothing", pr, pg, rr, rg);
            exp_buf_printf(rep, "WARNING: %s\n", line);
            cJSON_AddItemToArray(warn, cJSON_CreateString(line));
        }
    }
    for (int md = 0; md < 3; md++) {
        const agg *a = &T->overall[md];
        if (!modes[md] || a->n < 1) continue;
        double f = T->saturated[md] / a->n;
        if (f >= 0.99) {
            snprintf(line, sizeof line, "the draft proposes one-hot distributions: in %s mode p_draft of the gold token "
                     "is within 1e-6 of 1 or below 1e-12 for %.1f%% of %.0f tokens; ranks and probabilities of such a "
                     "pair mean little", mode_label[md], 100 * f, a->n);
            exp_buf_printf(rep, "WARNING: %s\n", line);
            cJSON_AddItemToArray(warn, cJSON_CreateString(line));
            break;
        }
    }
}

/* The compute budget of this invocation (seeds 001/004 item 0.4): the prompt pass (target
 * prefill with taps), the draft's blocks, the teacher-forced target blocks (verification),
 * memory at the longest prompt + answer. */
static compute_budget diag_budget(const exp_models *m, const run_stats *st, uint64_t longest, uint64_t prompts,
                                  uint64_t prompt_tokens) {
    compute_budget b = {.prompts = prompts, .prompt_tokens = prompt_tokens, .max_len = longest,
                        .prefill_s = st->timing.prompt, .draft_calls = st->blocks, .draft_s = st->timing.draft,
                        .verify_steps = st->blocks, .verify_s = st->timing.target};
    compute_budget_sizes(m->t, m->d, &b);
    return b;
}

/* Tables, summary.json, report.txt (also on stdout) and the figures, from the whole journal. */
typedef struct budget_in {
    uint64_t longest, prompts, prompt_tokens;
} budget_in;

static void diag_report(exp_out *o, const exp_common *c, const exp_models *m, const bool modes[3], uint32_t B,
                        const run_stats *st, const budget_in *bud) {
    tally T;
    tally_journal(o, m->tok, &T);
    decomp D = decompose(&T, m->t->vocab);
    diag_cis C;
    diag_cis_of(c, &T, &C);
    exp_buf rep = {0};
    report_tables(&rep, &T, &D, modes, B, m->t);
    report_cis(&rep, &T, &C, modes);
    cJSON *sum = summary_json(&T, &C, &D, modes, B, m->t->vocab, st);
    const vkd_diagnose_times *tm = &st->timing;
    exp_buf_printf(&rep, "\nTime (this invocation): %.1fs for %llu tokens (%.2f tok/s): prompt pass %.1fs, "
                         "target blocks %.1fs, draft blocks (gold+mask) %.1fs, random-mode pass %.1fs\n",
                   st->t_run, (unsigned long long)st->work, st->t_run > 0 ? st->work / st->t_run : 0, tm->prompt,
                   tm->target, tm->draft, tm->random);
    diag_warnings(&T, modes, &rep, cJSON_AddArrayToObject(sum, "warnings"));
    cJSON *js = cJSON_AddObjectToObject(sum, "one_hot_fraction");
    for (int md = 0; md < 3; md++)
        if (modes[md] && T.overall[md].n > 0) cJSON_AddNumberToObject(js, mode_label[md], T.saturated[md] / T.overall[md].n);
    if (st->judge_tokens) {
        cJSON_AddNumberToObject(sum, "target_correct_skipped", (double)T.wrong_skipped);
        exp_buf_printf(&rep, "--only-target-wrong: %zu example(s) left out (the target's greedy answer is correct)\n",
                       T.wrong_skipped);
    }
    compute_budget cb = diag_budget(m, st, bud->longest, bud->prompts, bud->prompt_tokens);
    cJSON_AddItemToObject(sum, "compute_budget", compute_budget_json(&cb));
    char *cbt = NULL;
    size_t cbn = 0;
    FILE *mf = open_memstream(&cbt, &cbn);
    if (!mf) cli_fatal("out of memory");
    compute_budget_print(mf, &cb);
    fclose(mf);
    exp_buf_printf(&rep, "\n%s", cbt);
    free(cbt);
    exp_write_json(o, "summary.json", sum);
    cJSON_Delete(sum);
    fputs(rep.s, stdout);
    exp_write(o, "report.txt", rep.s, rep.n);
    diag_figures(o, modes, T.bucket, C.bk, T.per_block, T.nblk, D.R_rand, D.R_mask, D.R_gold, D.R_tgt, D.chance, T.hm,
                 T.hm_rows, T.hm_cols, (const char *const *)T.hm_labels);
    tally_free(&T);
    exp_buf_free(&rep);
}

int vkd_cmd_diagnose(int argc, char **argv) {
    exp_common c = {.cmd = "diagnose"};
    const char *modes_s = "gold,mask,random";
    bool only_wrong = false;
    long judge = 512;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(&c, argc, argv, &i)) continue;
        if ((v = cli_value(c.cmd, "--modes", argc, argv, &i))) modes_s = v;
        else if (cli_is("--only-target-wrong", argv[i])) only_wrong = true;
        else if ((v = cli_value(c.cmd, "--judge-tokens", argc, argv, &i)))
            judge = cli_parse_long(c.cmd, "--judge-tokens", v, 1, 1L << 20);
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
    run_stats st = {.kind = grade_kind(&c, &data, only_wrong, "--only-target-wrong"), .judge_tokens = only_wrong ? judge : 0};
    budget_in bud = {.longest = s.longest, .prompts = data.n};
    uint64_t need = s.longest + 64;
    for (size_t k = 0; k < data.n; k++) {
        bud.prompt_tokens += data.ex[k].n_prompt;
        if (only_wrong && (uint64_t)data.ex[k].n_prompt + judge > need) need = data.ex[k].n_prompt + judge;
    }
    exp_load_models(&c, exp_ctx_cap(&c, need), &m);
    vkd_error err = {0};
    vkd_draft *g;
    vkd_diagnose *dg;
    g = exp_draft(&c, &m, false);
    uint32_t B = g->block;
    if (B > 64 || B > m.t->logit_rows) cli_fatal("diagnose: block size %u is larger than 64", B);
    cli_check(vkd_diagnose_create(m.t, g, &dg, &err), &err);

    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "modes", modes_s);
    cJSON_AddStringToObject(params, "dataset", data.path);
    cJSON_AddNumberToObject(params, "block_size", B);
    if (only_wrong) cJSON_AddNumberToObject(params, "only_target_wrong_judge_tokens", (double)judge);
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = m.t->ctx_len, .block = B};
    exp_open_out(&c, params, jr_check_diagnose, &lim, &o);

    exp_progress pg;
    exp_progress_start(&pg, c.cmd, data.n);
    for (size_t k = 0; k < data.n; k++) {
        if (exp_claim(&o, k, data.ex[k].id)) exp_journal(&o, diagnose_one(dg, &m, &data, &s, k, B, modes, c.seed, &st));
        exp_progress_update(&pg, k + 1, st.work, "tok");
    }
    exp_finish_work(&o);
    exp_progress_end(&pg, data.n, st.work, "tok");

    diag_report(&o, &c, &m, modes, B, &st, &bud);

    vkd_diagnose_free(dg);
    vkd_draft_free(g);
    seqs_free(&s, data.n);
    exp_close_out(&o);
    exp_free_data(&data);
    exp_free_models(&m);
    return 0;
}
