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
#include "report.h"
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

/* wall time of the phases, summed over examples */
static vkd_diagnose_times timing;

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
    {
        char *s = strdup(modes_s), *save = NULL;
        for (char *tkn = strtok_r(s, ",", &save); tkn; tkn = strtok_r(NULL, ",", &save)) {
            int k = -1;
            for (int md = 0; md < 3; md++) if (!strcmp(tkn, vkd_tf_mode_names[md])) k = md;
            if (k < 0) cli_usage_error(c.cmd, "--modes: unknown mode '%s' (expected gold, mask, random)", tkn);
            modes[k] = true;
        }
        free(s);
        if (!modes[0] && !modes[1] && !modes[2]) cli_usage_error(c.cmd, "--modes is empty");
    }

    exp_models m = {0};
    exp_load_tokenizer(&c, &m);
    exp_data data;
    exp_load_data(&c, m.tok, DEFAULT_DATASET, true, &data);
    /* answers: raw text tokens appended to the chat-rendered prompt */
    int32_t **seqs = calloc(data.n, sizeof *seqs);
    uint32_t *lens = calloc(data.n, sizeof *lens);
    uint64_t longest = 0;
    vkd_error err = {0};
    for (size_t k = 0; k < data.n; k++) {
        int32_t *a;
        size_t na;
        const char *ans = data.ex[k].answer;
        cli_check(vkd_tok_encode(m.tok, ans, strlen(ans), false, &a, &na, &err), &err);
        uint32_t n = data.ex[k].n_prompt + (uint32_t)na;
        seqs[k] = malloc((size_t)n * sizeof **seqs);
        memcpy(seqs[k], data.ex[k].prompt, data.ex[k].n_prompt * sizeof **seqs);
        memcpy(seqs[k] + data.ex[k].n_prompt, a, na * sizeof *a);
        lens[k] = n;
        free(a);
        if (n > longest) longest = n;
    }
    exp_load_models(&c, exp_ctx_cap(&c, longest + 64), &m);
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
    uint64_t work = 0;
    double t_run = 0;
    for (size_t k = 0; k < data.n; k++) {
        const exp_example *e = &data.ex[k];
        if (exp_done(&o, e->id)) { exp_progress_update(&pg, k + 1, work, "tok"); continue; }
        cJSON *rj = exp_record_new(e);
        cJSON_AddNumberToObject(rj, "answer_tokens", lens[k] - e->n_prompt);
        if (lens[k] - e->n_prompt < 2) {
            fprintf(stderr, "diagnose: %s:%zu: skipped: the answer encodes to %u token(s), nothing to compare\n",
                    data.path, e->line, lens[k] - e->n_prompt);
            cJSON_AddStringToObject(rj, "skipped", "answer shorter than 2 tokens");
            exp_journal(&o, rj);
            continue;
        }
        if (lens[k] + B > m.t->ctx_len) {
            fprintf(stderr, "diagnose: %s:%zu: skipped: prompt + answer (%u tokens) exceed the context (%u)\n",
                    data.path, e->line, lens[k], m.t->ctx_len);
            cJSON_AddStringToObject(rj, "skipped", "longer than the context");
            exp_journal(&o, rj);
            continue;
        }
        vkd_diagnose_token *rows;
        uint32_t nr;
        double t0 = vkd_now();
        cli_check(vkd_diagnose_run(dg, m.rec, seqs[k], lens[k], e->n_prompt, modes, c.seed, (uint32_t)k, &rows, &nr,
                                   &timing, &err), &err);
        t_run += vkd_now() - t0;
        work += lens[k];
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
        exp_journal(&o, rj);
        exp_progress_update(&pg, k + 1, work, "tok");
    }
    exp_progress_end(&pg, data.n, work, "tok");

    /* ---- tables from the whole journal ---- */
    agg overall[3] = {0}, bucket[4][3] = {0}, low[4] = {0};
    /* per example sums -> 95% bootstrap CIs over examples: overall [mode][p_t, p_d, r_t, r_d],
     * buckets [bucket][mode][r_t, r_d] */
    rep_col col_ov[3][4] = {{{0}}}, col_bk[4][3][2] = {{{{0}}}};
    agg *per_block = NULL; /* [block][mode] */
    uint32_t nblk = 0;
    double prompt_sum = 0, prompt_n = 0;
    exp_buf csv = {0}, rep = {0};
    exp_buf_printf(&csv, "example,mode,position,block,block_pos,gold_id,gold_text,p_target,p_draft,rank_target,rank_draft\n");
    /* heatmap: mask mode log10(rank_t / rank_d) */
    size_t hm_rows = 0, hm_cols = 0;
    for (size_t ri = 0; ri < o.done.n; ri++) {
        const cJSON *rj = o.done.rec[ri];
        const cJSON *ta = item(rj, "tokens");
        if (!cJSON_IsArray(ta)) continue;
        hm_rows++;
        size_t nt = (size_t)cJSON_GetArraySize(ta);
        if (nt > hm_cols) hm_cols = nt;
        prompt_sum += cJSON_GetNumberValue(item(rj, "prompt_tokens"));
        prompt_n += 1;
    }
    if (hm_cols > 400) hm_cols = 400;
    double *hm = malloc((hm_rows * hm_cols + 1) * sizeof *hm);
    char **hm_labels = calloc(hm_rows + 1, sizeof *hm_labels);
    for (size_t q = 0; q < hm_rows * hm_cols; q++) hm[q] = NAN;
    size_t hr = 0;
    for (size_t ri = 0; ri < o.done.n; ri++) {
        const cJSON *rj = o.done.rec[ri];
        const cJSON *ta = item(rj, "tokens"), *row;
        if (!cJSON_IsArray(ta)) continue;
        const char *id = cJSON_GetStringValue(item(rj, "id"));
        hm_labels[hr] = strdup(id);
        size_t col = 0;
        agg ex_ov[3] = {0}, ex_bk[4][3] = {0};
        cJSON_ArrayForEach(row, ta) {
            double v[12];
            for (int q = 0; q < 12; q++) {
                const cJSON *x = cJSON_GetArrayItem(row, q);
                v[q] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            }
            uint32_t blk = (uint32_t)v[1];
            if (blk + 1 > nblk) {
                per_block = realloc(per_block, (blk + 1) * 3 * sizeof *per_block);
                memset(per_block + nblk * 3, 0, (blk + 1 - nblk) * 3 * sizeof *per_block);
                nblk = blk + 1;
            }
            int b = bucket_of(v[4]);
            int32_t gold = (int32_t)v[3];
            char *text = NULL;
            size_t tl;
            if (vkd_tok_decode(m.tok, &gold, 1, false, &text, &tl, &err)) text = strdup("");
            for (int md = 0; md < 3; md++) {
                double pd = v[6 + 2 * md], rd = v[7 + 2 * md];
                if (isnan(pd)) continue;
                agg_add(&overall[md], v[4], pd, v[5], rd);
                agg_add(&bucket[b][md], v[4], pd, v[5], rd);
                agg_add(&ex_ov[md], v[4], pd, v[5], rd);
                agg_add(&ex_bk[b][md], v[4], pd, v[5], rd);
                agg_add(&per_block[blk * 3 + md], v[4], pd, v[5], rd);
                if (b == 0) agg_add(&low[md], v[4], pd, v[5], rd);
                exp_buf_csv(&csv, id);
                exp_buf_printf(&csv, ",%s,%.0f,%.0f,%.0f,%d,", vkd_tf_mode_names[md], v[0], v[1], v[2], gold);
                exp_buf_csv(&csv, text);
                exp_buf_printf(&csv, ",%.9g,%.9g,%.0f,%.0f\n", v[4], pd, v[5], rd);
            }
            free(text);
            if (col < hm_cols && !isnan(v[9])) hm[hr * hm_cols + col] = log10(v[5] / v[9]);
            col++;
        }
        for (int md = 0; md < 3; md++) {
            const agg *a = &ex_ov[md];
            double sums[4] = {a->p_t, a->p_d, a->r_t, a->r_d};
            for (int q = 0; q < 4; q++) rep_col_add(&col_ov[md][q], sums[q], a->n);
            for (int b = 0; b < 4; b++) {
                rep_col_add(&col_bk[b][md][0], ex_bk[b][md].r_t, ex_bk[b][md].n);
                rep_col_add(&col_bk[b][md][1], ex_bk[b][md].r_d, ex_bk[b][md].n);
            }
        }
        hr++;
    }
    rep_boot bt = rep_boot_of(&c);
    rep_ci ci_ov[3][4], ci_bk[4][3][2];
    for (int md = 0; md < 3; md++) {
        for (int q = 0; q < 4; q++) ci_ov[md][q] = rep_col_ci(&bt, &col_ov[md][q]), rep_col_free(&col_ov[md][q]);
        for (int b = 0; b < 4; b++)
            for (int q = 0; q < 2; q++) ci_bk[b][md][q] = rep_col_ci(&bt, &col_bk[b][md][q]), rep_col_free(&col_bk[b][md][q]);
    }
    exp_write(&o, "tokens.csv", csv.s ? csv.s : "", csv.n);

    const char *mn[3] = {"gold", "mask", "random"};
    exp_buf_printf(&rep, "diagnose: %zu example(s), block size %u, target vocabulary %u\n\n", hm_rows, B, m.t->vocab);
    exp_buf_printf(&rep, "Overall\n| Mode | tokens | Mean p_target | Mean p_draft | Mean rank_target | Mean rank_draft | %% rank draft wins | %% prob draft wins |\n|---|---|---|---|---|---|---|---|\n");
    for (int md = 0; md < 3; md++) {
        const agg *a = &overall[md];
        if (!modes[md] || a->n == 0) continue;
        char pt[32], pd[32]; /* small probabilities keep their digits */
        exp_buf_printf(&rep, "| %s | %.0f | %s | %s | %.0f | %.0f | %.1f%% | %.1f%% |\n", mn[md], a->n,
                       rep_num(pt, sizeof pt, a->p_t / a->n), rep_num(pd, sizeof pd, a->p_d / a->n), a->r_t / a->n,
                       a->r_d / a->n, 100 * a->rank_win / a->n,
                       100 * a->prob_win / a->n);
    }
    exp_buf_printf(&rep, "\nBy target confidence\n| Bucket | Mode | n | Mean rank_target | Mean rank_draft | %% rank draft wins | %% prob draft wins |\n|---|---|---|---|---|---|---|\n");
    for (int b = 0; b < 4; b++)
        for (int md = 0; md < 3; md++) {
            const agg *a = &bucket[b][md];
            if (!modes[md] || a->n == 0) continue;
            exp_buf_printf(&rep, "| %s | %s | %.0f | %.0f | %.0f | %.1f%% | %.1f%% |\n", bucket_names[b], mn[md], a->n,
                           a->r_t / a->n, a->r_d / a->n, 100 * a->rank_win / a->n, 100 * a->prob_win / a->n);
        }
    double mean_prompt = mean_of(prompt_sum, prompt_n);
    exp_buf_printf(&rep, "\nPer block\n| Block | Context positions | n | rank_target | rank_draft (mask) | rank_draft (gold) | rank_draft (random) |\n|---|---|---|---|---|---|---|\n");
    for (uint32_t k = 0; k < nblk; k++) {
        const agg *a = per_block + k * 3;
        double n = a[0].n > 0 ? a[0].n : a[1].n > 0 ? a[1].n : a[2].n;
        double rt = a[0].n > 0 ? a[0].r_t / a[0].n : a[1].n > 0 ? a[1].r_t / a[1].n : a[2].r_t / a[2].n;
        exp_buf_printf(&rep, "| %u | %.0f%s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", k, k ? (double)B : mean_prompt,
                       k ? "" : " (full prompt)", n, rt, mean_of(a[1].r_d, a[1].n), mean_of(a[0].r_d, a[0].n),
                       mean_of(a[2].r_d, a[2].n));
    }
    /* causal decomposition on the low-confidence bucket */
    double R_rand = mean_of(low[2].r_d, low[2].n), R_mask = mean_of(low[1].r_d, low[1].n),
           R_gold = mean_of(low[0].r_d, low[0].n);
    double R_tgt = NAN;
    for (int md = 0; md < 3 && isnan(R_tgt); md++) R_tgt = mean_of(low[md].r_t, low[md].n);
    double chance = (m.t->vocab + 1) / 2.0;
    exp_buf_printf(&rep, "\nCausal decomposition (p_target < 0.01 bucket, mean rank of the gold token)\n"
                         "| Component | Computation | Rank | Factor |\n|---|---|---|---|\n");
    exp_buf_printf(&rep, "| Random baseline | - | %.0f | 1.0x |\n", R_rand);
    exp_buf_printf(&rep, "| + Intermediate layer signal | random -> mask | %.0f -> %.0f | %.1fx |\n", R_rand, R_mask, R_rand / R_mask);
    exp_buf_printf(&rep, "| + Gold token leakage | mask -> gold | %.0f -> %.0f | %.1fx |\n", R_mask, R_gold, R_mask / R_gold);
    exp_buf_printf(&rep, "| Combined | random -> gold | %.0f -> %.0f | %.1fx |\n", R_rand, R_gold, R_rand / R_gold);
    exp_buf_printf(&rep, "| Target (%u layers) | - | %.0f | %.1fx |\n", m.t->n_layers, R_tgt, R_rand / R_tgt);
    exp_buf_printf(&rep, "| Chance level | (V+1)/2 | %.0f | %.2fx |\n", chance, R_rand / chance);
    exp_buf_printf(&rep, "\n%.0f%% bootstrap CIs over examples (%u resamples; token-pooled means as above)\n",
                   100 * REP_LEVEL, bt.reps);
    static const char *const stat_names[4] = {"mean p_target", "mean p_draft", "mean rank_target", "mean rank_draft"};
    for (int md = 0; md < 3; md++) {
        if (!modes[md] || overall[md].n == 0) continue;
        for (int q = 0; q < 4; q++) {
            char label[96];
            snprintf(label, sizeof label, "%s: %s", mn[md], stat_names[q]);
            rep_ci_line(&rep, label, ci_ov[md][q]);
        }
        for (int b = 0; b < 4; b++) {
            if (bucket[b][md].n == 0) continue;
            char label[96];
            snprintf(label, sizeof label, "%s, p_target %s: mean rank_draft", mn[md], bucket_names[b]);
            rep_ci_line(&rep, label, ci_bk[b][md][1]);
        }
    }

    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "examples", (double)hm_rows);
    cJSON_AddNumberToObject(sum, "block_size", B);
    cJSON_AddNumberToObject(sum, "vocab", m.t->vocab);
    cJSON_AddNumberToObject(sum, "mean_prompt_tokens", mean_prompt);
    rep_boot_json(sum, &bt);
    static const char *const ci_keys[4] = {"mean_p_target_ci", "mean_p_draft_ci", "mean_rank_target_ci",
                                           "mean_rank_draft_ci"};
    cJSON *jo = cJSON_AddObjectToObject(sum, "overall");
    for (int md = 0; md < 3; md++) {
        if (!modes[md]) continue;
        cJSON *x = agg_json(&overall[md]);
        for (int q = 0; q < 4; q++) rep_ci_json(x, ci_keys[q], ci_ov[md][q]);
        cJSON_AddItemToObject(jo, mn[md], x);
    }
    cJSON *jb = cJSON_AddObjectToObject(sum, "buckets");
    for (int b = 0; b < 4; b++) {
        cJSON *x = cJSON_AddObjectToObject(jb, bucket_names[b]);
        for (int md = 0; md < 3; md++) {
            if (!modes[md]) continue;
            cJSON *y = agg_json(&bucket[b][md]);
            rep_ci_json(y, "mean_rank_target_ci", ci_bk[b][md][0]);
            rep_ci_json(y, "mean_rank_draft_ci", ci_bk[b][md][1]);
            cJSON_AddItemToObject(x, mn[md], y);
        }
    }
    cJSON *jk = cJSON_AddArrayToObject(sum, "blocks");
    for (uint32_t k = 0; k < nblk; k++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "block", k);
        cJSON_AddNumberToObject(x, "context_positions", k ? (double)B : mean_prompt);
        for (int md = 0; md < 3; md++) if (modes[md]) cJSON_AddItemToObject(x, mn[md], agg_json(&per_block[k * 3 + md]));
        cJSON_AddItemToArray(jk, x);
    }
    cJSON *jd = cJSON_AddObjectToObject(sum, "decomposition_low_confidence");
    double dv[4] = {R_rand, R_mask, R_gold, R_tgt};
    const char *dn[4] = {"rank_random", "rank_mask", "rank_gold", "rank_target"};
    for (int q = 0; q < 4; q++) if (!isnan(dv[q])) cJSON_AddNumberToObject(jd, dn[q], dv[q]);
    cJSON_AddNumberToObject(jd, "rank_chance", chance);
    if (!isnan(R_rand / R_mask)) cJSON_AddNumberToObject(jd, "factor_layer_signal", R_rand / R_mask);
    if (!isnan(R_mask / R_gold)) cJSON_AddNumberToObject(jd, "factor_gold_leakage", R_mask / R_gold);
    if (!isnan(R_rand / R_gold)) cJSON_AddNumberToObject(jd, "factor_combined", R_rand / R_gold);
    if (!isnan(R_rand / R_tgt)) cJSON_AddNumberToObject(jd, "factor_target", R_rand / R_tgt);
    cJSON *jt = cJSON_AddObjectToObject(sum, "timing");
    cJSON_AddNumberToObject(jt, "seconds", t_run);
    cJSON_AddNumberToObject(jt, "tokens", (double)work);
    cJSON_AddNumberToObject(jt, "tok_s", t_run > 0 ? work / t_run : 0);
    cJSON_AddNumberToObject(jt, "prompt_pass_s", timing.prompt);
    cJSON_AddNumberToObject(jt, "draft_blocks_s", timing.draft);
    cJSON_AddNumberToObject(jt, "target_blocks_s", timing.target);
    cJSON_AddNumberToObject(jt, "random_pass_s", timing.random);
    exp_buf_printf(&rep, "\nTime (this invocation): %.1fs for %llu tokens (%.2f tok/s): prompt pass %.1fs, "
                         "target blocks %.1fs, draft blocks (gold+mask) %.1fs, random-mode pass %.1fs\n",
                   t_run, (unsigned long long)work, t_run > 0 ? work / t_run : 0, timing.prompt, timing.target,
                   timing.draft, timing.random);
    exp_write_json(&o, "summary.json", sum);
    cJSON_Delete(sum);
    fputs(rep.s, stdout);
    exp_write(&o, "report.txt", rep.s, rep.n);

    /* figures */
    diag_figures(&o, modes, bucket, ci_bk, per_block, nblk, R_rand, R_mask, R_gold, R_tgt, chance, hm, hm_rows,
                 hm_cols, (const char *const *)hm_labels);

    for (size_t q = 0; q < hm_rows; q++) free(hm_labels[q]);
    free(hm_labels);
    free(hm);
    free(per_block);
    exp_buf_free(&csv);
    exp_buf_free(&rep);
    vkd_diagnose_free(dg);
    vkd_draft_free(g);
    for (size_t k = 0; k < data.n; k++) free(seqs[k]);
    free(seqs);
    free(lens);
    exp_close_out(&o);
    exp_free_data(&data);
    exp_free_models(&m);
    return 0;
}
