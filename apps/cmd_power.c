/* vkdraft power: power sampling from p^alpha by block-wise Metropolis-Hastings (Karan & Du
 * 2025; design.md section 6; methods/vkd_power.h), with plain greedy and temperature
 * sampling of the same prompts as baselines.
 *
 * Per example: the power run (vkd_power_sample) and each baseline (vkd_generate), decoded,
 * answers extracted and scored (text/vkd_answer.h) when the dataset is GSM8K or MATH-500;
 * one journal record per example. answers.jsonl, acceptance.csv, summary.json and report.txt
 * are rebuilt from the whole journal at the end (so --resume continues a run). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "dataset.h"
#include "exp.h"
#include "prompt.h"
#include "report.h"
#include "figure.h"
#include "vkd_answer.h"
#include "vkd_generate.h"
#include "vkd_power.h"

#define DEFAULT_DATASET "../shared/datasets/math500.json"

static void usage(void) {
    printf("usage: vkdraft power --target DIR --out DIR [(--draft DIR | --exit-head DIR) --proposal dflash] [--dataset FILE]\n"
           "           [--limit N] [--alpha A] [--block-tokens J] [--mcmc-steps S] [--max-new-tokens N]\n"
           "           [--seed S] [--resume]\n\n"
           "Samples from p^alpha (p = the target) by block-wise Metropolis-Hastings, as mcmc_power_samp in\n"
           "aakaran/reasoning-with-sampling: the answer grows by blocks of J tokens drawn from the proposal;\n"
           "after each block, S times: pick a position uniformly in the generated part, regenerate the\n"
           "suffix from there with the proposal, accept with\n"
           "  log r = alpha*sum log p(new) + sum log q(old) - alpha*sum log p(old) - sum log q(new).\n"
           "Stops after the block in which an eos id of the target appears.\n\n"
           "  --proposal P          naive_temp (the target at temperature 1/alpha, default) or dflash\n"
           "                        (the DFlash draft, blocks of B-1 tokens, q at --draft-temp)\n"
           "  --alpha A             power (default 4)\n"
           "  --block-tokens J      tokens per block (default 192; the reference: 3072 / 16)\n"
           "  --mcmc-steps S        MH steps after each block (default 10; 0: none)\n"
           "  --max-new-tokens N    answer length limit (default 3072)\n"
           "  --draft-temp T        DFlash proposal temperature (default 1/alpha)\n"
           "  --top-k K, --top-p P  filtering of the proposal after the temperature (default: the target's\n"
           "                        generation_config, transformers' 50 / 1.0 when absent, as the\n"
           "                        reference's generate() applies them; --top-k 0 / --top-p 1: off)\n"
           "  --mh reference|exact  reference (default): mcmc_power_samp exactly; exact: a reversible\n"
           "                        variant that differs only when an eos shortens a proposal\n"
           "                        (vkd_power.h)\n"
           "  --baselines LIST      greedy,sample,lowtemp or none (default greedy,sample): plain decoding of\n"
           "                        the same prompts: greedy; sampling with the generation_config's\n"
           "                        temperature/top-k/top-p (the reference's 'std'); temperature 1/alpha\n"
           "                        (the reference's 'naive'); same --max-new-tokens\n\n"
           "Outputs in --out: answers.jsonl (one line per example and method: id, method, text, answer,\n"
           "gold, correct, tokens), acceptance.csv and fig_acceptance.png (acceptance rate by MCMC\n"
           "step index and by block index, with its 95%% bootstrap CI over examples: columns\n"
           "examples, ci_lo, ci_hi; error bars), summary.json and report.txt (accuracy per method,\n"
           "acceptance, target forward passes, tokens proposed ('spent') per answer token, wall\n"
           "time and tokens/s), config.json,\n"
           "examples.jsonl (the journal). Accuracy is scored for GSM8K (#### number) and MATH-500\n"
           "(\\boxed{} answer, normalised); other datasets report '-'.\n"
           "Default dataset: %s.\n\n%s", DEFAULT_DATASET, exp_common_help);
}

enum { M_POWER, M_GREEDY, M_SAMPLE, M_LOWTEMP, NMETHOD };
static const char *const method_names[NMETHOD] = {"power", "greedy", "sample", "lowtemp"};

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) {
    const cJSON *x = item(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
/* Per-example seed: from --seed and the example id, so a resumed run draws the same numbers. */
static uint64_t example_seed(uint64_t seed, const char *id, int method) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return mix64(seed ^ mix64(h + (uint64_t)method));
}

typedef struct run_ctx {
    exp_progress *pg;
    size_t done;
    uint64_t *work;
    bool quiet;
} run_ctx;
static void on_step(void *user, const vkd_power_step *s) {
    run_ctx *r = user;
    *r->work += s->s - s->idx;
    if (!r->quiet) exp_progress_update(r->pg, r->done, *r->work, "tok");
}
static void on_token(void *user, int32_t id) {
    run_ctx *r = user;
    (void)id;
    (*r->work)++;
    if (!r->quiet) exp_progress_update(r->pg, r->done, *r->work, "tok");
}

/* text, extracted answer and score of one method's ids into obj */
static void add_answer(cJSON *obj, vkd_tok *tok, const int32_t *ids, uint32_t n, vkd_answer_kind kind,
                       const char *gold_field) {
    char *text = decode_generated(tok, ids, n);
    cJSON_AddStringToObject(obj, "text", text);
    cJSON *ia = cJSON_AddArrayToObject(obj, "ids");
    for (uint32_t i = 0; i < n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(obj, "tokens", n);
    if (kind != VKD_ANSWER_NONE && gold_field) exp_add_grade(obj, kind, text, gold_field, "answer");
    free(text);
}

static cJSON *u32_array(const uint32_t *v, uint32_t n) {
    cJSON *a = cJSON_CreateArray();
    for (uint32_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* ---- report from the journal ------------------------------------------------------------ */

typedef struct agg {
    size_t n, scored, correct;
    double tokens, forwards, proposed, wall, attempts, accepts, draft_calls;
    rep_col c_acc, c_fpt, c_rate;  /* per example: correct / 1, forwards / tokens, accepts / attempts */
    double changes, tokens_changed, distinct; /* NAN once a record lacks them (older journal) */
} agg;

/* Seed 002 section 5 for the power method: the moves that changed the answer and the cost
 * per effective accepted token (a position an accepted MCMC step changed). */
static void moves_json(cJSON *m, const agg *a) {
    double eff = a->tokens_changed;
    cJSON_AddNumberToObject(m, "changes", a->changes);
    cJSON_AddNumberToObject(m, "change_rate", a->attempts > 0 ? a->changes / a->attempts : NAN);
    cJSON_AddNumberToObject(m, "distinct_proposals", a->distinct);
    cJSON_AddNumberToObject(m, "tokens_changed", eff);
    cJSON_AddNumberToObject(m, "forwards_per_effective_token", eff > 0 ? a->forwards / eff : NAN);
    cJSON_AddNumberToObject(m, "wall_s_per_effective_token", eff > 0 ? a->wall / eff : NAN);
}

/* easy / hard: the example's greedy target answer graded correct / wrong */
#define NDIFF 3
static const char *const diff_names[NDIFF] = {"all", "easy", "hard"};

/* The totals of one method record into a (the difficulty split's tables). */
static void add_agg(agg *a, const cJSON *x, bool power) {
    const cJSON *corr = item(x, "correct");
    a->n++;
    if (cJSON_IsBool(corr)) {
        a->scored++;
        a->correct += cJSON_IsTrue(corr);
    }
    a->tokens += num(x, "tokens");
    a->forwards += num(x, "target_forwards");
    a->wall += num(x, "wall_s");
    if (!power) return;
    a->attempts += num(x, "attempts");
    a->accepts += num(x, "accepts");
    a->changes += num(x, "changes");
    a->tokens_changed += num(x, "tokens_changed");
    a->distinct += num(x, "distinct_proposals");
}

static void sum_counts(const cJSON *arr, double **v, size_t *n) {
    size_t m = (size_t)cJSON_GetArraySize(arr);
    if (m > *n) {
        *v = realloc(*v, m * sizeof **v);
        if (!*v) cli_fatal("out of memory");
        for (size_t i = *n; i < m; i++) (*v)[i] = 0;
        *n = m;
    }
    for (size_t i = 0; i < m; i++) (*v)[i] += cJSON_GetArrayItem(arr, (int)i)->valuedouble;
}

/* One example's accepts / attempts per index into c[index] (the acceptance CIs), growing c. */
static void col_counts(const cJSON *att, const cJSON *acc, rep_col **c, size_t *n) {
    size_t m = (size_t)cJSON_GetArraySize(att);
    if (m > *n) {
        *c = realloc(*c, m * sizeof **c);
        if (!*c) cli_fatal("out of memory");
        memset(*c + *n, 0, (m - *n) * sizeof **c);
        *n = m;
    }
    for (size_t i = 0; i < m; i++) {
        double a = cJSON_GetArrayItem(att, (int)i)->valuedouble;
        const cJSON *k = cJSON_GetArrayItem(acc, (int)i);
        if (a > 0) rep_col_add(&(*c)[i], cJSON_IsNumber(k) ? k->valuedouble : 0, a);
    }
}

/* Acceptance rate per index: accepts / attempts (NAN without attempts); acc may be shorter. */
static double *rates(const double *att, size_t n, const double *acc, size_t nacc) {
    double *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) cli_fatal("out of memory");
    for (size_t i = 0; i < n; i++) r[i] = att[i] > 0 ? (i < nacc ? acc[i] : 0) / att[i] : NAN;
    return r;
}

/* One line of answers.jsonl: a method's response to an example, its answer and grade. */
static void answer_line(exp_buf *ans, const char *id, const char *method, const cJSON *x, const char *gold,
                        const cJSON *corr) {
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "id", id ? id : "");
    cJSON_AddStringToObject(line, "method", method);
    cJSON_AddItemToObject(line, "text", cJSON_Duplicate(item(x, "text"), 1));
    if (item(x, "answer")) cJSON_AddItemToObject(line, "answer", cJSON_Duplicate(item(x, "answer"), 1));
    if (gold) cJSON_AddStringToObject(line, "gold", gold);
    if (cJSON_IsBool(corr)) cJSON_AddBoolToObject(line, "correct", cJSON_IsTrue(corr));
    cJSON_AddNumberToObject(line, "tokens", num(x, "tokens"));
    char *s = cJSON_PrintUnformatted(line);
    exp_buf_printf(ans, "%s\n", s);
    free(s);
    cJSON_Delete(line);
}

/* The 95% bootstrap CI over examples of each index's acceptance rate (cols: per index, NULL
 * past ncol) into lo / hi (NAN without attempts); n: examples behind each. */
static void acceptance_cis(const rep_boot *bt, const rep_col *cols, size_t ncol, size_t n, double *lo, double *hi,
                           size_t *ex) {
    for (size_t i = 0; i < n; i++) {
        rep_ci ci = i < ncol && cols[i].n ? rep_col_ci(bt, &cols[i]) : (rep_ci){NAN, NAN, NAN, 0};
        lo[i] = ci.lo, hi[i] = ci.hi, ex[i] = ci.n;
    }
}

/* acceptance.csv and fig_acceptance: MH acceptance by step index within a block and by block,
 * with 95% bootstrap CIs over examples (columns examples, ci_lo, ci_hi; error bars). */
static void acceptance_outputs(const exp_out *o, const double *sa, size_t nsa, const double *sc, size_t nsc,
                               double *srate, const double *ba, size_t nba, const double *bc, size_t nbc,
                               double *brate, const rep_boot *bt, const rep_col *cs, size_t ncs, const rep_col *cb,
                               size_t ncb) {
    size_t m = (nsa > nba ? nsa : nba) + 1;
    double *slo = malloc(m * sizeof *slo), *shi = malloc(m * sizeof *shi), *blo = malloc(m * sizeof *blo),
           *bhi = malloc(m * sizeof *bhi);
    size_t *sex = malloc(m * sizeof *sex), *bex = malloc(m * sizeof *bex);
    if (!slo || !shi || !blo || !bhi || !sex || !bex) cli_fatal("out of memory");
    acceptance_cis(bt, cs, ncs, nsa, slo, shi, sex);
    acceptance_cis(bt, cb, ncb, nba, blo, bhi, bex);
    exp_buf csv = {0};
    exp_buf_printf(&csv, "kind,index,attempts,accepts,rate,examples,ci_lo,ci_hi\n");
    for (size_t i = 0; i < nsa; i++)
        exp_buf_printf(&csv, "step,%zu,%.0f,%.0f,%.6f,%zu,%.6f,%.6f\n", i, sa[i], i < nsc ? sc[i] : 0, srate[i], sex[i],
                       slo[i], shi[i]);
    for (size_t i = 0; i < nba; i++)
        exp_buf_printf(&csv, "block,%zu,%.0f,%.0f,%.6f,%zu,%.6f,%.6f\n", i, ba[i], i < nbc ? bc[i] : 0, brate[i], bex[i],
                       blo[i], bhi[i]);
    exp_write(o, "acceptance.csv", csv.s ? csv.s : "", csv.n);
    exp_buf_free(&csv);
    fig_series fs[2] = {{.label = "by MCMC step index", .n = nsa, .y = srate, .lo = slo, .hi = shi},
                        {.label = "by block index", .n = nba, .y = brate, .lo = blo, .hi = bhi}};
    fig_chart ch = {.kind = FIG_LINE, .title = "Power sampling: MH acceptance rate",
                    .xlabel = "index (step within a block, or block)", .ylabel = "acceptance rate"};
    ch.line = (fig_line){.n_series = 2, .series = fs};
    exp_write_figure(o, "fig_acceptance.png", &ch);
    free(slo), free(shi), free(blo), free(bhi), free(sex), free(bex);
}

/* The easy/hard split (by the greedy target answer's grade): summary and report table. */
static void report_difficulty(exp_buf *rep, cJSON *summ, agg D[NDIFF][NMETHOD]) {
    if (D[1][M_POWER].n + D[2][M_POWER].n) {
        cJSON *bd = cJSON_AddObjectToObject(summ, "by_difficulty");
        exp_buf_printf(rep, "\nby difficulty (easy: the greedy target answer is correct; hard: wrong)\n"
                             "%-5s %-8s %5s %8s %9s %9s %11s %11s\n", "group", "method", "n", "accuracy", "accept",
                       "changed", "fwd/eff", "s/eff");
        for (int dg = 1; dg < NDIFF; dg++) {
            if (!D[dg][M_POWER].n) continue;
            cJSON *g = cJSON_AddObjectToObject(bd, diff_names[dg]);
            for (int mth = 0; mth < NMETHOD; mth++) {
                const agg *a = &D[dg][mth];
                if (!a->n) continue;
                cJSON *m = cJSON_AddObjectToObject(g, method_names[mth]);
                double acc = a->scored ? (double)a->correct / (double)a->scored : NAN;
                cJSON_AddNumberToObject(m, "examples", (double)a->n);
                cJSON_AddNumberToObject(m, "accuracy", acc);
                cJSON_AddNumberToObject(m, "target_forwards", a->forwards);
                cJSON_AddNumberToObject(m, "wall_s", a->wall);
                double ar = a->attempts > 0 ? a->accepts / a->attempts : NAN, cr = a->attempts > 0 ? a->changes / a->attempts : NAN;
                if (mth == M_POWER) {
                    cJSON_AddNumberToObject(m, "attempts", a->attempts);
                    cJSON_AddNumberToObject(m, "accepts", a->accepts);
                    cJSON_AddNumberToObject(m, "acceptance", ar);
                    moves_json(m, a);
                }
                double eff = a->tokens_changed;
                char f[4][24] = {"-", "-", "-", "-"};
                if (mth == M_POWER && a->attempts > 0) {
                    snprintf(f[0], sizeof f[0], "%.1f%%", 100 * ar);
                    snprintf(f[1], sizeof f[1], "%.1f%%", 100 * cr);
                }
                if (mth == M_POWER && eff > 0) {
                    snprintf(f[2], sizeof f[2], "%.3f", a->forwards / eff);
                    snprintf(f[3], sizeof f[3], "%.4g", a->wall / eff);
                }
                exp_buf_printf(rep, "%-5s %-8s %5zu %7.1f%% %9s %9s %11s %11s\n", diff_names[dg], method_names[mth],
                               a->n, 100 * acc, f[0], f[1], f[2], f[3]);
            }
        }
    }
}

/* 95% bootstrap CIs over examples per method: summary and report lines. */
static void report_cis(exp_buf *rep, cJSON *summ, agg *A, const rep_boot *bt) {
    exp_buf_printf(rep, "\n\n%.0f%% bootstrap CIs over examples (%u resamples):\n", 100 * REP_LEVEL, bt->reps);
    rep_boot_json(summ, bt);
    for (int mth = 0; mth < NMETHOD; mth++) {
        agg *a = &A[mth];
        cJSON *m = cJSON_GetObjectItemCaseSensitive(summ, method_names[mth]);
        char label[64];
        if (m && a->c_acc.n) {
            rep_ci ci = rep_col_ci(bt, &a->c_acc);
            rep_ci_json(m, "accuracy_ci", ci);
            snprintf(label, sizeof label, "%s accuracy", method_names[mth]);
            rep_ci_line(rep, label, ci);
        }
        if (m && a->c_fpt.n) {
            rep_ci ci = rep_col_ci(bt, &a->c_fpt);
            rep_ci_json(m, "forwards_per_token_ci", ci);
            snprintf(label, sizeof label, "%s target forwards per token", method_names[mth]);
            rep_ci_line(rep, label, ci);
        }
        if (m && a->c_rate.n) {
            rep_ci ci = rep_col_ci(bt, &a->c_rate);
            rep_ci_json(m, "acceptance_ci", ci);
            snprintf(label, sizeof label, "%s MH acceptance", method_names[mth]);
            rep_ci_line(rep, label, ci);
        }
        rep_col_free(&a->c_acc), rep_col_free(&a->c_fpt), rep_col_free(&a->c_rate);
    }
}

static void report(const exp_out *o, vkd_answer_kind kind, double alpha, const rep_boot *bt) {
    agg D[NDIFF][NMETHOD] = {{{0}}}, *A = D[0];
    double *sa = NULL, *sc = NULL, *ba = NULL, *bc = NULL;
    size_t nsa = 0, nsc = 0, nba = 0, nbc = 0, ncs = 0, ncb = 0;
    rep_col *cs = NULL, *cb = NULL; /* per step / block index: each example's accepts / attempts */
    exp_buf ans = {0};
    for (size_t q = 0; q < o->done.n; q++) {
        const cJSON *rec = o->done.rec[q];
        const char *id = cJSON_GetStringValue(item(rec, "id"));
        const char *gold = cJSON_GetStringValue(item(rec, "gold_answer"));
        if (!gold) gold = cJSON_GetStringValue(item(rec, "gold"));
        const cJSON *gc = item(item(rec, "greedy"), "correct");
        int dg = cJSON_IsBool(gc) ? (cJSON_IsTrue(gc) ? 1 : 2) : 0;
        for (int mth = 0; mth < NMETHOD; mth++) {
            const cJSON *x = item(rec, method_names[mth]);
            if (!cJSON_IsObject(x)) continue;
            if (dg) add_agg(&D[dg][mth], x, mth == M_POWER);
            agg *a = &A[mth];
            a->n++;
            const cJSON *corr = item(x, "correct");
            if (cJSON_IsBool(corr)) {
                a->scored++;
                a->correct += cJSON_IsTrue(corr);
                rep_col_add(&a->c_acc, cJSON_IsTrue(corr), 1);
            }
            rep_col_add(&a->c_fpt, num(x, "target_forwards"), num(x, "tokens"));
            if (mth == M_POWER) rep_col_add(&a->c_rate, num(x, "accepts"), num(x, "attempts"));
            a->tokens += num(x, "tokens");
            a->forwards += num(x, "target_forwards");
            a->wall += num(x, "wall_s");
            double p = num(x, "tokens_proposed");
            a->proposed += isnan(p) ? num(x, "tokens") : p;
            if (mth == M_POWER) {
                a->attempts += num(x, "attempts");
                a->accepts += num(x, "accepts");
                a->draft_calls += num(x, "draft_calls");
                a->changes += num(x, "changes");
                a->tokens_changed += num(x, "tokens_changed");
                a->distinct += num(x, "distinct_proposals");
                sum_counts(item(x, "step_attempts"), &sa, &nsa);
                sum_counts(item(x, "step_accepts"), &sc, &nsc);
                sum_counts(item(x, "block_attempts"), &ba, &nba);
                sum_counts(item(x, "block_accepts"), &bc, &nbc);
                col_counts(item(x, "step_attempts"), item(x, "step_accepts"), &cs, &ncs);
                col_counts(item(x, "block_attempts"), item(x, "block_accepts"), &cb, &ncb);
            }
            answer_line(&ans, id, method_names[mth], x, gold, corr);
        }
    }
    exp_write(o, "answers.jsonl", ans.s ? ans.s : "", ans.n);
    exp_buf_free(&ans);

    double *srate = rates(sa, nsa, sc, nsc), *brate = rates(ba, nba, bc, nbc);
    acceptance_outputs(o, sa, nsa, sc, nsc, srate, ba, nba, bc, nbc, brate, bt, cs, ncs, cb, ncb);
    for (size_t i = 0; i < ncs; i++) rep_col_free(&cs[i]);
    for (size_t i = 0; i < ncb; i++) rep_col_free(&cb[i]);
    free(cs);
    free(cb);

    cJSON *summ = cJSON_CreateObject();
    cJSON_AddStringToObject(summ, "answer_kind", vkd_answer_kind_name(kind));
    cJSON_AddNumberToObject(summ, "alpha", alpha);
    exp_buf rep = {0};
    exp_buf_printf(&rep, "power sampling, alpha %g, %zu examples (answers scored as %s)\n\n", alpha, A[M_POWER].n,
                   vkd_answer_kind_name(kind));
    exp_buf_printf(&rep, "%-8s %8s %9s %11s %11s %11s %9s %9s\n", "method", "accuracy", "tok/answer",
                   "fwd/token", "spent/token", "s/token", "tok/s", "accept");
    for (int mth = 0; mth < NMETHOD; mth++) {
        agg *a = &A[mth];
        if (!a->n) continue;
        cJSON *m = cJSON_AddObjectToObject(summ, method_names[mth]);
        double acc = a->scored ? (double)a->correct / (double)a->scored : NAN;
        cJSON_AddNumberToObject(m, "examples", (double)a->n);
        if (a->scored) {
            cJSON_AddNumberToObject(m, "scored", (double)a->scored);
            cJSON_AddNumberToObject(m, "accuracy", acc);
        }
        cJSON_AddNumberToObject(m, "tokens", a->tokens);
        cJSON_AddNumberToObject(m, "target_forwards", a->forwards);
        cJSON_AddNumberToObject(m, "tokens_proposed", a->proposed);
        cJSON_AddNumberToObject(m, "wall_s", a->wall);
        double fpt = a->tokens > 0 ? a->forwards / a->tokens : NAN, spt = a->tokens > 0 ? a->proposed / a->tokens : NAN;
        double wpt = a->tokens > 0 ? a->wall / a->tokens : NAN, tps = a->wall > 0 ? a->tokens / a->wall : NAN;
        cJSON_AddNumberToObject(m, "forwards_per_token", fpt);
        cJSON_AddNumberToObject(m, "tokens_spent_per_token", spt);
        cJSON_AddNumberToObject(m, "wall_s_per_token", wpt);
        cJSON_AddNumberToObject(m, "tokens_per_s", tps);
        double rate = a->attempts > 0 ? a->accepts / a->attempts : NAN;
        if (mth == M_POWER) {
            cJSON_AddNumberToObject(m, "attempts", a->attempts);
            cJSON_AddNumberToObject(m, "accepts", a->accepts);
            cJSON_AddNumberToObject(m, "acceptance", rate);
            cJSON_AddNumberToObject(m, "draft_calls", a->draft_calls);
            moves_json(m, a);
        }
        char accs[32], rates[32];
        if (a->scored) snprintf(accs, sizeof accs, "%.1f%%", 100 * acc);
        else snprintf(accs, sizeof accs, "-");
        if (mth == M_POWER && a->attempts > 0) snprintf(rates, sizeof rates, "%.1f%%", 100 * rate);
        else snprintf(rates, sizeof rates, "-");
        exp_buf_printf(&rep, "%-8s %8s %9.1f %11.3f %11.3f %11.4f %9.2f %9s\n", method_names[mth], accs,
                       a->tokens / (double)a->n, fpt, spt, wpt, tps, rates);
    }
    if (A[M_GREEDY].n && A[M_POWER].n && A[M_GREEDY].tokens > 0 && A[M_POWER].tokens > 0) {
        double ratio = (A[M_POWER].proposed / A[M_POWER].tokens) / (A[M_GREEDY].proposed / A[M_GREEDY].tokens);
        cJSON_AddNumberToObject(summ, "tokens_spent_vs_greedy", ratio);
        exp_buf_printf(&rep, "\ntokens spent per answer token, power / greedy: %.2fx (the paper: ~8.8x on MATH500)\n",
                       ratio);
    }
    if (A[M_POWER].attempts > 0) {
        const agg *a = &A[M_POWER];
        exp_buf_printf(&rep, "\npower MCMC moves: %.0f accepted of %.0f, %.0f changed the answer (%.1f%%), %.0f distinct "
                             "proposals; %.0f effective accepted tokens: %.2f target forwards and %.4f s each\n",
                       a->accepts, a->attempts, a->changes, 100 * a->changes / a->attempts, a->distinct,
                       a->tokens_changed, a->tokens_changed > 0 ? a->forwards / a->tokens_changed : NAN,
                       a->tokens_changed > 0 ? a->wall / a->tokens_changed : NAN);
    }
    report_difficulty(&rep, summ, D);
    cJSON *st = cJSON_AddArrayToObject(summ, "acceptance_by_step");
    exp_buf_printf(&rep, "\nacceptance by MCMC step index:");
    for (size_t i = 0; i < nsa; i++) {
        cJSON_AddItemToArray(st, cJSON_CreateNumber(srate[i]));
        exp_buf_printf(&rep, " %.2f", srate[i]);
    }
    cJSON *bl = cJSON_AddArrayToObject(summ, "acceptance_by_block");
    exp_buf_printf(&rep, "\nacceptance by block index:   ");
    for (size_t i = 0; i < nba; i++) {
        cJSON_AddItemToArray(bl, cJSON_CreateNumber(brate[i]));
        exp_buf_printf(&rep, " %.2f", brate[i]);
    }
    report_cis(&rep, summ, A, bt);
    exp_write_json(o, "summary.json", summ);
    exp_write(o, "report.txt", rep.s, rep.n);
    fputs(rep.s, stdout);
    exp_buf_free(&rep);
    cJSON_Delete(summ);
    free(srate);
    free(brate);
    free(sa);
    free(sc);
    free(ba);
    free(bc);
}

/* --baselines "greedy,sample,lowtemp" or "none" -> base[method]; usage error otherwise. */
static void parse_baselines(const char *cmd, const char *baselines, bool base[NMETHOD]) {
    if (!strcmp(baselines, "none")) return;
    for (const char *p = baselines; *p;) {
        size_t l = strcspn(p, ",");
        int found = -1;
        for (int mth = M_GREEDY; mth < NMETHOD; mth++)
            if (strlen(method_names[mth]) == l && !strncmp(p, method_names[mth], l)) found = mth;
        if (found < 0 && l == 4 && !strncmp(p, "none", 4))
            cli_usage_error(cmd, "--baselines: 'none' stands alone (no baselines), got '%s'", baselines);
        if (found < 0) cli_usage_error(cmd, "--baselines: '%.*s' is not greedy, sample, lowtemp or none", (int)l, p);
        if (base[found]) cli_usage_error(cmd, "--baselines: '%.*s' appears twice", (int)l, p);
        base[found] = true;
        p += l;
        if (*p == ',') p++;
    }
}

int vkd_cmd_power(int argc, char **argv) {
    exp_common c = {.cmd = "power"};
    double alpha = 4, draft_temp = 0, top_p = 0;
    long J = 192, S = 10, N = 3072, top_k = LONG_MIN;
    const char *proposal = "naive_temp", *mh = "reference", *baselines = "greedy,sample";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(&c, argc, argv, &i)) continue;
        if ((v = cli_value(c.cmd, "--alpha", argc, argv, &i))) alpha = cli_parse_double(c.cmd, "--alpha", v, 1e-3, 1e3);
        else if ((v = cli_value(c.cmd, "--block-tokens", argc, argv, &i))) J = cli_parse_long(c.cmd, "--block-tokens", v, 1, 1L << 20);
        else if ((v = cli_value(c.cmd, "--mcmc-steps", argc, argv, &i))) S = cli_parse_long(c.cmd, "--mcmc-steps", v, 0, 1L << 20);
        else if ((v = cli_value(c.cmd, "--max-new-tokens", argc, argv, &i)))
            N = cli_parse_long(c.cmd, "--max-new-tokens", v, 1, 1L << 20);
        else if ((v = cli_value(c.cmd, "--draft-temp", argc, argv, &i)))
            draft_temp = cli_parse_double(c.cmd, "--draft-temp", v, 1e-3, 1e3);
        else if ((v = cli_value(c.cmd, "--top-k", argc, argv, &i))) top_k = cli_parse_long(c.cmd, "--top-k", v, 0, 1L << 30);
        else if ((v = cli_value(c.cmd, "--top-p", argc, argv, &i))) top_p = cli_parse_double(c.cmd, "--top-p", v, 1e-6, 1);
        else if ((v = cli_value(c.cmd, "--proposal", argc, argv, &i))) proposal = v;
        else if ((v = cli_value(c.cmd, "--mh", argc, argv, &i))) mh = v;
        else if ((v = cli_value(c.cmd, "--baselines", argc, argv, &i))) baselines = v;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error(c.cmd, "unknown flag '%s'", argv[i]);
    }
    bool dfl = !strcmp(proposal, "dflash");
    if (!dfl && strcmp(proposal, "naive_temp")) cli_usage_error(c.cmd, "--proposal must be naive_temp or dflash, got '%s'", proposal);
    if (strcmp(mh, "reference") && strcmp(mh, "exact")) cli_usage_error(c.cmd, "--mh must be reference or exact, got '%s'", mh);
    if (J > N) cli_usage_error(c.cmd, "--block-tokens %ld exceeds --max-new-tokens %ld", J, N);
    if (draft_temp > 0 && !dfl) cli_usage_error(c.cmd, "--draft-temp applies to --proposal dflash only");
    bool base[NMETHOD] = {false};
    parse_baselines(c.cmd, baselines, base);
    exp_require(&c, dfl);
    if ((c.draft_dir || c.exit_head) && !dfl)
        cli_usage_error(c.cmd, "--draft / --exit-head are used by --proposal dflash (the draft proposal) only");

    exp_models m = {0};
    exp_load_tokenizer(&c, &m);
    exp_data data;
    exp_load_data(&c, m.tok, DEFAULT_DATASET, false, &data);
    exp_load_models(&c, exp_ctx_len(&c, &data, (uint64_t)N), &m);
    vkd_answer_kind kind = vkd_answer_kind_from_name(vkd_ds_preset_for_file(data.path));

    /* the reference's q: the target's generation_config top_k/top_p unless given */
    const vkd_gen_cfg *g = &m.t->gen;
    uint32_t eff_k = top_k == LONG_MIN ? (g->top_k > 0 && g->top_k < UINT32_MAX ? (uint32_t)g->top_k : 0) : (uint32_t)top_k;
    double eff_p = top_p > 0 ? top_p : g->top_p;
    vkd_power_options po = {
        .alpha = (float)alpha, .max_new_tokens = (uint32_t)N, .block_tokens = (uint32_t)J,
        .mcmc_steps = S ? (uint32_t)S : VKD_POWER_NO_STEPS, .proposal = dfl ? VKD_POWER_DFLASH : VKD_POWER_NAIVE_TEMP,
        .mh = strcmp(mh, "exact") ? VKD_POWER_MH_REFERENCE : VKD_POWER_MH_EXACT, .draft_temp = (float)draft_temp,
        .top_k = eff_k, .top_p = (float)eff_p, .stop_ids = m.stops, .nstop = m.nstop,
    };
    vkd_error err = {0};
    vkd_draft *pd = NULL;
    pd = exp_draft(&c, &m, false);

    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "dataset", data.path);
    cJSON_AddStringToObject(params, "proposal", proposal);
    cJSON_AddNumberToObject(params, "alpha", alpha);
    cJSON_AddNumberToObject(params, "block_tokens", (double)J);
    cJSON_AddNumberToObject(params, "mcmc_steps", (double)S);
    cJSON_AddNumberToObject(params, "max_new_tokens", (double)N);
    cJSON_AddStringToObject(params, "mh", mh);
    cJSON_AddNumberToObject(params, "top_k", eff_k);
    cJSON_AddNumberToObject(params, "top_p", eff_p);
    if (dfl) {
        cJSON_AddNumberToObject(params, "draft_temp", draft_temp > 0 ? draft_temp : 1.0 / alpha);
        cJSON_AddNumberToObject(params, "draft_block", pd->block);
    }
    cJSON *jb = cJSON_AddArrayToObject(params, "baselines");
    for (int mth = M_GREEDY; mth < NMETHOD; mth++)
        if (base[mth]) cJSON_AddItemToArray(jb, cJSON_CreateString(method_names[mth]));
    cJSON_AddNumberToObject(params, "sample_temperature", g->temperature);
    cJSON_AddStringToObject(params, "answer_kind", vkd_answer_kind_name(kind));
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = m.t->ctx_len};
    exp_open_out(&c, params, jr_check_power, &lim, &o);

    exp_progress pg;
    exp_progress_start(&pg, c.cmd, data.n);
    uint64_t work = 0;
    for (size_t k = 0; k < data.n; k++) {
        const exp_example *e = &data.ex[k];
        if (!exp_claim(&o, k, e->id)) { exp_progress_update(&pg, k + 1, work, "tok"); continue; }
        run_ctx rc = {.pg = &pg, .done = k, .work = &work, .quiet = c.quiet};
        cJSON *rj = exp_record_new(e);
        if (e->answer) cJSON_AddStringToObject(rj, "gold", e->answer);
        char *gold = kind != VKD_ANSWER_NONE && e->answer ? vkd_answer_gold(kind, e->answer) : NULL;
        if (gold) cJSON_AddStringToObject(rj, "gold_answer", gold);
        free(gold);

        vkd_power_result res;
        po.seed = example_seed(c.seed, e->id, M_POWER);
        po.on_step = on_step;
        po.user = &rc;
        cli_check(vkd_power_sample(m.t, pd, m.rec, e->prompt, e->n_prompt, &po, &res, &err), &err);
        cJSON *pj = cJSON_AddObjectToObject(rj, "power");
        add_answer(pj, m.tok, res.ids, res.n, kind, e->answer);
        cJSON_AddBoolToObject(pj, "stopped", res.stopped);
        cJSON_AddNumberToObject(pj, "sum_logp", res.sum_logp);
        cJSON_AddNumberToObject(pj, "blocks", res.blocks);
        cJSON_AddNumberToObject(pj, "attempts", res.attempts);
        cJSON_AddNumberToObject(pj, "accepts", res.accepts);
        cJSON_AddNumberToObject(pj, "acceptance", res.attempts ? (double)res.accepts / res.attempts : NAN);
        cJSON_AddNumberToObject(pj, "changes", res.changes);
        cJSON_AddNumberToObject(pj, "tokens_changed", (double)res.tokens_changed);
        cJSON_AddNumberToObject(pj, "distinct_proposals", res.distinct_proposals);
        cJSON_AddItemToObject(pj, "block_attempts", u32_array(res.block_attempts, res.blocks));
        cJSON_AddItemToObject(pj, "block_accepts", u32_array(res.block_accepts, res.blocks));
        cJSON_AddItemToObject(pj, "step_attempts", u32_array(res.step_attempts, S ? (uint32_t)S : 0));
        cJSON_AddItemToObject(pj, "step_accepts", u32_array(res.step_accepts, S ? (uint32_t)S : 0));
        cJSON_AddNumberToObject(pj, "target_forwards", (double)res.target_forwards);
        cJSON_AddNumberToObject(pj, "target_rows", (double)res.target_rows);
        cJSON_AddNumberToObject(pj, "draft_calls", (double)res.draft_calls);
        cJSON_AddNumberToObject(pj, "tokens_proposed", (double)res.tokens_proposed);
        cJSON_AddNumberToObject(pj, "wall_s", res.total_s);
        cJSON_AddNumberToObject(pj, "tokens_per_s", res.total_s > 0 ? res.n / res.total_s : NAN);
        vkd_power_result_free(&res);

        for (int mth = M_GREEDY; mth < NMETHOD; mth++) {
            if (!base[mth]) continue;
            vkd_generate_options go = {.max_new_tokens = (uint32_t)N, .stop_ids = m.stops, .nstop = m.nstop,
                                  .on_token = on_token, .user = &rc};
            if (mth != M_GREEDY) {
                go.sample = (vkd_sample_params){.temperature = mth == M_SAMPLE ? (float)g->temperature : (float)(1.0 / alpha),
                                                .top_k = eff_k, .top_p = (float)eff_p,
                                                .seed = example_seed(c.seed, e->id, mth)};
                if (mth == M_SAMPLE) go.sample.top_k = g->top_k > 0 ? (uint32_t)g->top_k : 0, go.sample.top_p = (float)g->top_p;
            }
            vkd_generate_result gr;
            cli_check(vkd_generate(m.t, m.rec, e->prompt, e->n_prompt, &go, &gr, &err), &err);
            cJSON *bj = cJSON_AddObjectToObject(rj, method_names[mth]);
            add_answer(bj, m.tok, gr.ids, gr.n, kind, e->answer);
            cJSON_AddBoolToObject(bj, "stopped", gr.stopped);
            uint32_t chunks = (e->n_prompt + m.t->max_rows - 1) / m.t->max_rows;
            cJSON_AddNumberToObject(bj, "target_forwards", chunks + (gr.n ? gr.n - 1 : 0));
            cJSON_AddNumberToObject(bj, "wall_s", gr.prefill_s + gr.decode_s);
            cJSON_AddNumberToObject(bj, "tokens_per_s", gr.prefill_s + gr.decode_s > 0 ? gr.n / (gr.prefill_s + gr.decode_s) : NAN);
            free(gr.ids);
        }
        exp_journal(&o, rj);
        exp_progress_update(&pg, k + 1, work, "tok");
    }
    exp_finish_work(&o);
    exp_progress_end(&pg, data.n, work, "tok");
    rep_boot bt = rep_boot_of(&c);
    report(&o, kind, alpha, &bt);
    exp_close_out(&o);
    exp_free_data(&data);
    vkd_draft_free(pd);
    exp_free_models(&m);
    return 0;
}
