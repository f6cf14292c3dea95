/* vkdraft guide: draft-guided decoding sweeps (seeds 001, 004): condition x temperature x
 * alpha x TTT cells over a dataset, one journal record per (cell, example). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "prompt.h"
#include "figure.h"
#include "report.h"
#include "vkd_answer.h"
#include "vkd_guide.h"
#include "vkd_ttt.h"

static void usage(void) {
    printf("usage: vkdraft guide --target DIR --draft DIR --dataset FILE --out DIR\n"
           "           [--alphas LIST] [--temperatures LIST] [--conditions LIST]\n"
           "           [--max-new-tokens N] [--top-k K] [--top-p P]\n"
           "           [--ttt off|on|both [--ttt-steps N] [--ttt-lr X] [--ttt-rank R]] [common flags]\n\n"
           "Draft-guided decoding: token by token from\n"
           "    guided = target + alpha * (draft - target)   (= (1-beta) target + beta draft, beta = alpha)\n"
           "where the DFlash draft predicts the next token from the committed prefix (a block of 2\n"
           "rows, [last token, MASK], against its KV-cached context of the target's hidden states;\n"
           "--block-size B > 2 adds mask rows). alpha 0 is plain target decoding (token for token,\n"
           "greedy and sampled at the same seed), alpha 1 decoding from the draft's logits alone.\n\n"
           "Conditions (--conditions, default guided,null):\n"
           "  guided  target + alpha * (draft - target)\n"
           "  null    target + alpha * noise: per token, noise = z * std(draft - target) / rms(z)\n"
           "          with z ~ N(0, 1) per vocabulary entry from Philox keyed by (--seed, position);\n"
           "          so the noise's RMS over the vocabulary equals the standard deviation of the\n"
           "          draft's correction at that token (same scale, no information)\n"
           "  plain   plain target decoding (vkd_generate; one cell per temperature, alpha '-'):\n"
           "          the speed baseline\n"
           "Sweeps: --alphas (default 0,0.1,0.2,0.3,0.5), --temperatures (default 0.3,0.6,1.0; 0 is\n"
           "greedy). Sampling: temperature, then --top-k (default 0: off), --top-p (default 1: off),\n"
           "transformers' semantics; the token at position p draws Philox counter p. The matrix has\n"
           "a ttt column: --ttt off (default), on or both. With ttt on, the draft is adapted to each\n"
           "example's prompt before its guided / null cells (vkdraft ttt's objective and defaults: LoRA\n"
           "on fc,k_proj,v_proj, alpha 16, 8 anchors per step, gamma 7, AdamW; --ttt-steps (default\n"
           "30), --ttt-lr (default 5e-4), --ttt-rank (default 8); the gold answer is never seen), and\n"
           "the adapter is removed afterwards. Plain cells do not use the draft: they are ttt=off.\n\n"
           "Per cell: accuracy (when the dataset has answers: GSM8K/MATH-style extraction), mean\n"
           "per-token KL(guided || target) of softmax(logits / T) (T = 1 for greedy), fraction of\n"
           "tokens whose argmax guidance changed, mean response tokens, decode ms per token and\n"
           "target forwards per token. --max-new-tokens defaults to 512.\n\n"
           "Outputs in --out DIR: config.json, examples.jsonl (journal: one record per cell and\n"
           "example; --resume continues an interrupted sweep), matrix.csv, summary.json,\n"
           "responses.jsonl (for an external rubric grader, CL-bench style: id, context, question,\n"
           "response, condition, alpha, temperature, ttt, reference_answer), heatmap.png.\n\n");
    fputs(exp_common_help, stdout);
}

typedef enum { C_GUIDED, C_NULL, C_PLAIN } cond;
static const char *cond_name[] = {"guided", "null", "plain"};

typedef struct cell {
    cond c;
    double alpha, temp;        /* alpha NAN for plain */
    bool ttt;                  /* the draft adapted to the example first (never for plain) */
    char key[96];              /* "guided/a0.3/T0.6/ttt-off" */
} cell;

/* The key names the parsed values exactly (shortest text that reads back as the same double):
 * two different alphas never share a key. */
static void cell_key(cell *k) {
    char a[32], t[32];
    jr_fmt_double(a, sizeof a, k->alpha);
    jr_fmt_double(t, sizeof t, k->temp);
    if (k->c == C_PLAIN) snprintf(k->key, sizeof k->key, "plain/T%s/ttt-off", t);
    else snprintf(k->key, sizeof k->key, "%s/a%s/T%s/ttt-%s", cond_name[k->c], a, t, k->ttt ? "on" : "off");
}

/* Journal id of (cell, example): "<cell key>/<example id>", the full id (malloc'd). */
static char *record_id(const cell *k, const char *example) {
    size_t n = strlen(k->key) + strlen(example) + 2;
    char *id = malloc(n);
    if (!id) cli_fatal("out of memory");
    snprintf(id, n, "%s/%s", k->key, example);
    return id;
}

static const cJSON *find_record(exp_out *o, const cell *k, const char *example) {
    char *id = record_id(k, example);
    const cJSON *r = exp_find(o, id);
    free(id);
    return r;
}

static double num(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- answers ---------------------------------------------------------------------------- */

/* Scores a response against the gold answer: 1 correct, 0 wrong, -1 not scored (a dataset
 * whose preset has no answer kind: GSM8K and MATH-500 are scored); *pred the extracted
 * answer (malloc'd, may be NULL). Rules: text/vkd_answer.h. */
static int score(const char *dataset, const char *response, const char *gold, char **pred) {
    *pred = NULL;
    vkd_answer_kind kind = vkd_answer_kind_from_name(vkd_ds_preset_for_file(dataset));
    if (kind == VKD_ANSWER_NONE || !gold) return -1;
    *pred = vkd_answer_extract(kind, response, 0);
    char *g = vkd_answer_gold(kind, gold);
    int ok = vkd_answer_equal(kind, *pred, g) ? 1 : 0;
    free(g);
    return ok;
}

/* ---- one cell and example ------------------------------------------------------------------ */

typedef struct run_ctx {
    exp_common *c;
    exp_models *m;
    exp_data *d;
    vkd_draft *g;
    uint32_t max_new, top_k;
    double top_p;
} run_ctx;

static cJSON *run_one(run_ctx *R, const cell *k, const exp_example *ex, const char *id) {
    vkd_error err = {0};
    exp_models *m = R->m;
    vkd_generate_options go = {.max_new_tokens = R->max_new, .stop_ids = m->stops, .nstop = m->nstop};
    go.sample = (vkd_sample_params){.temperature = (float)k->temp, .top_k = R->top_k,
                                    .top_p = (float)R->top_p, .seed = R->c->seed};
    int32_t *ids;
    uint32_t n;
    bool stopped;
    double decode_s, prefill_s, kl_sum = 0;
    uint32_t changed = 0, tfwd, dcalls = 0;
    if (k->c == C_PLAIN) {
        vkd_generate_result g;
        cli_check(vkd_generate(m->t, m->rec, ex->prompt, ex->n_prompt, &go, &g, &err), &err);
        ids = g.ids;
        n = g.n;
        stopped = g.stopped;
        decode_s = g.decode_s;
        prefill_s = g.prefill_s;
        tfwd = (ex->n_prompt + m->t->max_rows - 1) / m->t->max_rows + (n ? n - 1 : 0);
    } else {
        vkd_guide_options o = {.gen = go, .alpha = (float)k->alpha,
                               .condition = k->c == C_NULL ? VKD_GUIDE_NULL : VKD_GUIDE_GUIDED};
        vkd_guide_result r;
        err.msg[0] = 0;
        if (vkd_guide_generate(m->t, R->g, m->rec, ex->prompt, ex->n_prompt, &o, &r, &err))
            cli_fatal("%s: example '%s' (line %zu): %s", R->d->path, ex->id, ex->line, err.msg);
        ids = r.ids;
        r.ids = NULL;
        n = r.n;
        stopped = r.stopped;
        decode_s = r.decode_s;
        prefill_s = r.prefill_s;
        for (uint32_t i = 0; i < n; i++) {
            kl_sum += r.kl[i];
            changed += r.changed[i];
        }
        tfwd = r.target_forwards;
        dcalls = r.draft_calls;
        vkd_guide_result_free(&r);
    }
    char *text = decode_generated(m->tok, ids, n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "example", ex->id);
    cJSON_AddStringToObject(o, "cell", k->key);
    cJSON_AddStringToObject(o, "condition", cond_name[k->c]);
    if (k->c == C_PLAIN) cJSON_AddNullToObject(o, "alpha");
    else cJSON_AddNumberToObject(o, "alpha", k->alpha);
    cJSON_AddNumberToObject(o, "temperature", k->temp);
    cJSON_AddStringToObject(o, "ttt", k->ttt ? "on" : "off");
    cJSON_AddNumberToObject(o, "prompt_tokens", ex->n_prompt);
    cJSON_AddNumberToObject(o, "tokens", n);
    cJSON_AddBoolToObject(o, "stopped", stopped);
    cJSON_AddStringToObject(o, "response", text);
    if (ex->answer) {
        char *pred;
        int ok = score(R->d->path, text, ex->answer, &pred);
        if (pred) cJSON_AddStringToObject(o, "predicted", pred);
        else cJSON_AddNullToObject(o, "predicted");
        if (ok < 0) cJSON_AddNullToObject(o, "correct");
        else cJSON_AddBoolToObject(o, "correct", ok == 1);
        free(pred);
    }
    cJSON_AddNumberToObject(o, "kl_sum", kl_sum);
    cJSON_AddNumberToObject(o, "changed", changed);
    cJSON_AddNumberToObject(o, "target_forwards", tfwd);
    cJSON_AddNumberToObject(o, "draft_calls", dcalls);
    cJSON_AddNumberToObject(o, "prefill_s", prefill_s);
    cJSON_AddNumberToObject(o, "decode_s", decode_s);
    cJSON *ia = cJSON_AddArrayToObject(o, "ids");
    for (uint32_t i = 0; i < n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(ids[i]));
    free(text);
    free(ids);
    return o;
}

/* ---- aggregation ------------------------------------------------------------------------------ */

typedef struct agg {
    size_t n, n_scored, correct, timed;
    double tokens, kl_sum, changed, tfwd, decode_s, decode_tokens;
    rep_col c_acc, c_kl;  /* per example: correct / 1, kl_sum / tokens (bootstrap CIs) */
} agg;

static agg aggregate(const exp_out *o, const cell *k) {
    agg a = {0};
    for (size_t q = 0; q < o->done.n; q++) {
        const cJSON *r = o->done.rec[q];
        if (strcmp(str(r, "cell"), k->key)) continue;
        a.n++;
        double n = num(r, "tokens");
        a.tokens += n;
        a.kl_sum += num(r, "kl_sum");
        a.changed += num(r, "changed");
        a.tfwd += num(r, "target_forwards");
        rep_col_add(&a.c_kl, num(r, "kl_sum"), n);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "correct");
        if (cJSON_IsBool(c)) {
            a.n_scored++;
            a.correct += cJSON_IsTrue(c);
            rep_col_add(&a.c_acc, cJSON_IsTrue(c), 1);
        }
        if (!str(r, "reused_from") && n > 1) {
            a.timed++;
            a.decode_s += num(r, "decode_s");
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

/* ---- the command ------------------------------------------------------------------------------- */

int vkd_cmd_guide(int argc, char **argv) {
    exp_common c = {.cmd = "guide"};
    const char *alphas_s = "0,0.1,0.2,0.3,0.5", *temps_s = "0.3,0.6,1.0", *conds_s = "guided,null";
    long max_new = 512, top_k = 0, ttt_steps = VKD_TTT_DEFAULT_STEPS, ttt_rank = VKD_TTT_DEFAULT_RANK;
    double top_p = 1, ttt_lr = VKD_TTT_DEFAULT_LR;
    const char *ttt_s = "off";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(&c, argc, argv, &i)) continue;
        if ((v = cli_value("guide", "--alphas", argc, argv, &i))) alphas_s = v;
        else if ((v = cli_value("guide", "--temperatures", argc, argv, &i))) temps_s = v;
        else if ((v = cli_value("guide", "--conditions", argc, argv, &i))) conds_s = v;
        else if ((v = cli_value("guide", "--max-new-tokens", argc, argv, &i)))
            max_new = cli_parse_long("guide", "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value("guide", "--top-k", argc, argv, &i))) top_k = cli_parse_long("guide", "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value("guide", "--top-p", argc, argv, &i))) top_p = cli_parse_double("guide", "--top-p", v, 0, 1);
        else if ((v = cli_value("guide", "--ttt", argc, argv, &i))) ttt_s = v;
        else if ((v = cli_value("guide", "--ttt-steps", argc, argv, &i))) ttt_steps = cli_parse_long("guide", "--ttt-steps", v, 1, 1000000);
        else if ((v = cli_value("guide", "--ttt-rank", argc, argv, &i))) ttt_rank = cli_parse_long("guide", "--ttt-rank", v, 1, 4096);
        else if ((v = cli_value("guide", "--ttt-lr", argc, argv, &i))) ttt_lr = cli_parse_double("guide", "--ttt-lr", v, 1e-12, 1e6);
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error("guide", "unknown flag '%s'", argv[i]);
    }
    size_t na, nt;
    double *alphas = exp_parse_list("guide", "--alphas", alphas_s, 0, 10, &na);
    double *temps = exp_parse_list("guide", "--temperatures", temps_s, 0, 100, &nt);
    bool want[3] = {false, false, false};
    {
        char *s = strdup(conds_s), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int k = !strcmp(t, "guided") ? C_GUIDED : !strcmp(t, "null") ? C_NULL : !strcmp(t, "plain") ? C_PLAIN : -1;
            if (k < 0) cli_usage_error("guide", "--conditions: unknown condition '%s' (expected guided, null, plain)", t);
            if (want[k]) cli_usage_error("guide", "--conditions: '%s' appears twice", t);
            want[k] = true;
        }
        free(s);
        if (!want[0] && !want[1] && !want[2]) cli_usage_error("guide", "--conditions: expected a list of guided, null, plain");
    }
    exp_require(&c, want[C_GUIDED] || want[C_NULL]);
    if (!c.block) c.block = 2;
    bool ttt_off = !strcmp(ttt_s, "off") || !strcmp(ttt_s, "both"), ttt_on = !strcmp(ttt_s, "on") || !strcmp(ttt_s, "both");
    if (!ttt_off && !ttt_on) cli_usage_error("guide", "--ttt: '%s' is not off, on or both", ttt_s);
    if (ttt_on && !want[C_GUIDED] && !want[C_NULL]) cli_usage_error("guide", "--ttt on needs a guided or null condition");
    c.train = ttt_on;
    if (c.adapter) cli_usage_error("guide", "--adapter is not taken by guide (its ttt column adapts the draft: --ttt on)");
    if (ttt_on && !vkd_ttt_engine_available())
        cli_fatal("guide: --ttt on needs the training engine (draft backward, fused LM head + loss, optimizer, PEFT "
                  "adapters), which this build does not have yet; nothing was written");

    /* cells: condition-major in the order plain, guided, null (a null cell at alpha 0 reuses
     * the guided one: both are the target's logits) */
    cell *cells = calloc(6 * na * nt + 1, sizeof *cells);
    size_t ncells = 0;
    static const cond order[3] = {C_PLAIN, C_GUIDED, C_NULL};
    for (int tt = 0; tt < 2; tt++) {
        if (!(tt ? ttt_on : ttt_off)) continue;
        for (int oi = 0; oi < 3; oi++) {
            cond cc = order[oi];
            if (!want[cc] || (tt && cc == C_PLAIN)) continue;
            for (size_t ti = 0; ti < nt; ti++)
                for (size_t ai = 0; ai < (cc == C_PLAIN ? 1 : na); ai++) {
                    cell *k = &cells[ncells++];
                    k->c = cc;
                    k->temp = temps[ti];
                    k->alpha = cc == C_PLAIN ? NAN : alphas[ai];
                    k->ttt = tt;
                    cell_key(k);
                }
        }
    }

    exp_models m = {0};
    exp_load_tokenizer(&c, &m);
    exp_data d;
    exp_load_data(&c, m.tok, NULL, false, &d);

    cJSON *params = cJSON_CreateObject();
    cJSON *pa = cJSON_AddArrayToObject(params, "alphas");
    for (size_t i = 0; i < na; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(alphas[i]));
    cJSON *pt = cJSON_AddArrayToObject(params, "temperatures");
    for (size_t i = 0; i < nt; i++) cJSON_AddItemToArray(pt, cJSON_CreateNumber(temps[i]));
    cJSON *pc = cJSON_AddArrayToObject(params, "conditions");
    for (int k = 0; k < 3; k++)
        if (want[k]) cJSON_AddItemToArray(pc, cJSON_CreateString(cond_name[k]));
    cJSON_AddStringToObject(params, "ttt", ttt_s);
    if (ttt_on) {
        cJSON_AddNumberToObject(params, "ttt_steps", (double)ttt_steps);
        cJSON_AddNumberToObject(params, "ttt_lr", ttt_lr);
        cJSON_AddNumberToObject(params, "ttt_rank", (double)ttt_rank);
    }
    cJSON_AddNumberToObject(params, "max_new_tokens", (double)max_new);
    cJSON_AddNumberToObject(params, "top_k", (double)top_k);
    cJSON_AddNumberToObject(params, "top_p", top_p);
    cJSON_AddStringToObject(params, "null_noise", "z * std(draft - target) / rms(z), z ~ N(0,1) Philox(seed, position)");
    /* everything that can fail on the inputs fails before --out is touched */
    uint32_t ctx_len = exp_ctx_len(&c, &d, (uint64_t)max_new + c.block + 1);
    exp_load_models(&c, ctx_len, &m);
    vkd_error err = {0};
    vkd_draft *g = NULL;
    if (m.d) cli_check(vkd_draft_dflash(m.d, &g, &err), &err);
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = ctx_len};
    exp_open_out(&c, params, jr_check_guide, &lim, &o);
    run_ctx R = {.c = &c, .m = &m, .d = &d, .g = g, .max_new = (uint32_t)max_new,
                 .top_k = (uint32_t)top_k, .top_p = top_p};

    size_t total = ncells * d.n, done = 0;
    uint64_t work = 0;
    exp_progress prog;
    if (!c.quiet) exp_progress_start(&prog, "guide", total);
    for (size_t ci = 0; ci < ncells; ci++) {
        const cell *k = &cells[ci];
        if (k->ttt) continue; /* below, example by example */
        for (size_t e = 0; e < d.n; e++, done++) {
            const exp_example *ex = &d.ex[e];
            char *id = record_id(k, ex->id);
            if (exp_done(&o, id)) {
                free(id);
                continue;
            }
            cJSON *rec = NULL;
            if (k->c == C_NULL && k->alpha == 0 && want[C_GUIDED]) {
                cell twin = *k;
                twin.c = C_GUIDED;
                cell_key(&twin);
                const cJSON *src = find_record(&o, &twin, ex->id);
                if (src) {
                    rec = cJSON_Duplicate(src, true);
                    cJSON_ReplaceItemInObject(rec, "id", cJSON_CreateString(id));
                    cJSON_ReplaceItemInObject(rec, "cell", cJSON_CreateString(k->key));
                    cJSON_ReplaceItemInObject(rec, "condition", cJSON_CreateString("null"));
                    cJSON_AddStringToObject(rec, "reused_from", str(src, "id"));
                }
            }
            if (!rec) rec = run_one(&R, k, ex, id);
            free(id);
            work += (uint64_t)num(rec, "tokens");
            exp_journal(&o, rec);
            if (!c.quiet) exp_progress_update(&prog, done + 1, work, "tok");
        }
    }
    /* ttt on: the draft adapted once per example (on its prompt), then that example's ttt cells */
    for (size_t e = 0; ttt_on && e < d.n; e++) {
        const exp_example *ex = &d.ex[e];
        vkd_ttt_trace tr = {0};
        vkd_ttt_adapter *ad = NULL;
        bool adapted = false;
        for (size_t ci = 0; ci < ncells; ci++) {
            const cell *k = &cells[ci];
            if (!k->ttt) continue;
            done++;
            char id[512];
            snprintf(id, sizeof id, "%s/%s", k->key, ex->id);
            if (exp_done(&o, id)) continue;
            if (!adapted && ex->n_prompt >= 3) {
                uint32_t K = VKD_TTT_DEFAULT_ANCHORS < ex->n_prompt - 2 ? VKD_TTT_DEFAULT_ANCHORS : ex->n_prompt - 2;
                vkd_ttt_options to = {.steps = (uint32_t)ttt_steps, .lr = ttt_lr, .anchors_per_step = K,
                                      .seed = c.seed, .key = (uint32_t)e};
                if (vkd_ttt_adapter_new(m.d, (uint32_t)ttt_rank, VKD_TTT_DEFAULT_ALPHA, 0, c.seed, &ad, &err) ||
                    vkd_ttt_adapt(m.d, ad, m.rec, ex->prompt, ex->n_prompt, &to, &tr, &err))
                    cli_fatal("%s: example '%s' (line %zu): ttt: %s", d.path, ex->id, ex->line, err.msg);
                adapted = true;
            }
            cJSON *rec = run_one(&R, k, ex, id);
            cJSON_AddNumberToObject(rec, "ttt_updates", tr.updates);
            if (tr.n) {
                cJSON_AddNumberToObject(rec, "ttt_loss_first", tr.losses[0]);
                cJSON_AddNumberToObject(rec, "ttt_loss_last", tr.losses[tr.n - 1]);
            }
            work += (uint64_t)num(rec, "tokens");
            exp_journal(&o, rec);
            if (!c.quiet) exp_progress_update(&prog, done, work, "tok");
        }
        vkd_ttt_adapter_free(ad);
        vkd_ttt_trace_free(&tr);
    }
    if (!c.quiet) exp_progress_end(&prog, done, work, "tok");

    /* the matrix, from the whole journal */
    bool scored = false;
    {
        for (size_t q = 0; q < o.done.n; q++)
            scored |= cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(o.done.rec[q], "correct"));
    }
    exp_buf csv = {0};
    exp_buf_printf(&csv, "condition,ttt,temperature,alpha,examples,accuracy,kl_mean,changed_frac,tokens_mean,"
                         "ms_per_token,target_forwards_per_token\n");
    cJSON *summary = cJSON_CreateObject();
    cJSON *sc = cJSON_AddArrayToObject(summary, "cells");
    printf("guide: %zu example(s) from %s, %zu cell(s), draft block %ld, seed %llu%s\n", d.n, d.path, ncells,
           c.block, c.seed, want[C_GUIDED] || want[C_NULL] ? "" : " (plain only)");
    printf("%-7s %-4s %5s %6s %5s %8s %9s %8s %8s %9s %9s\n", "cond", "ttt", "T", "alpha", "n", "accuracy", "KL/token",
           "changed", "tokens", "ms/token", "tfwd/tok");
    double *acc_grid = malloc(ncells * sizeof *acc_grid);
    rep_boot bt = rep_boot_of(&c);
    rep_boot_json(summary, &bt);
    for (size_t ci = 0; ci < ncells; ci++) {
        const cell *k = &cells[ci];
        agg a = aggregate(&o, k);
        double acc = a.n_scored ? (double)a.correct / a.n_scored : NAN;
        double kl = ratio(a.kl_sum, a.tokens), ch = ratio(a.changed, a.tokens);
        double toks = ratio(a.tokens, (double)a.n), ms = 1000 * ratio(a.decode_s, a.decode_tokens);
        double tf = ratio(a.tfwd, a.tokens);
        acc_grid[ci] = scored ? acc : kl;
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
        printf("%-7s %-4s %5g %6s %5zu %8s %9s %8s %8s %9s %9s\n", cond_name[k->c], k->ttt ? "on" : "off", k->temp, sa, a.n, sacc,
               skl, sch, stok, sms, stf);
        exp_buf_printf(&csv, "%s,%s,%s,%s,%zu,%s,%s,%s,%s,%s,%s\n", cond_name[k->c], k->ttt ? "on" : "off", st_x,
                       k->c == C_PLAIN ? "" : sa, a.n, isnan(acc) ? "" : sacc, isnan(kl) ? "" : skl,
                       isnan(ch) ? "" : sch, isnan(toks) ? "" : stok, isnan(ms) ? "" : sms, isnan(tf) ? "" : stf);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "cell", k->key);
        cJSON_AddStringToObject(j, "condition", cond_name[k->c]);
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
        if (a.c_acc.n) rep_ci_json(j, "accuracy_ci", rep_col_ci(&bt, &a.c_acc));
        if (a.c_kl.n) rep_ci_json(j, "kl_mean_ci", rep_col_ci(&bt, &a.c_kl));
        rep_col_free(&a.c_acc);
        rep_col_free(&a.c_kl);
        cJSON_AddItemToArray(sc, j);
    }
    /* alpha 0 must be plain decoding: compare token ids where both were run */
    size_t compared = 0, differ = 0;
    if (want[C_PLAIN] && want[C_GUIDED])
        for (size_t ti = 0; ti < nt; ti++) {
            bool has0 = false;
            for (size_t ai = 0; ai < na; ai++) has0 |= alphas[ai] == 0;
            if (!has0) break;
            cell p = {.c = C_PLAIN, .temp = temps[ti], .alpha = NAN}, g0 = {.c = C_GUIDED, .temp = temps[ti]};
            cell_key(&p);
            cell_key(&g0);
            for (size_t e = 0; e < d.n; e++) {
                const cJSON *ra = find_record(&o, &p, d.ex[e].id), *rb = find_record(&o, &g0, d.ex[e].id);
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
        printf("alpha 0 vs plain decoding: %zu of %zu responses identical\n", compared - differ, compared);
        cJSON_AddNumberToObject(summary, "alpha0_plain_compared", (double)compared);
        cJSON_AddNumberToObject(summary, "alpha0_plain_differ", (double)differ);
    }
    if (!scored) printf("(no scored answers: accuracy is '-'; the matrix below shows KL/token)\n");
    /* the evaluation matrix: rows condition x temperature, columns plain and the alphas */
    for (int tt = 0; tt < 2 && (want[C_GUIDED] || want[C_NULL]); tt++) {
        if (!(tt ? ttt_on : ttt_off)) continue;
        printf("\n%s (rows: condition, temperature; columns: plain decoding, alpha), ttt %s\n%-16s %7s",
               scored ? "accuracy" : "KL(guided || target) per token", tt ? "on" : "off", "", "plain");
        for (size_t ai = 0; ai < na; ai++) printf(" %7g", alphas[ai]);
        printf("\n");
        for (int cc = C_GUIDED; cc <= C_NULL; cc++) {
            if (!want[cc]) continue;
            for (size_t ti = 0; ti < nt; ti++) {
                char label[32], v[16];
                snprintf(label, sizeof label, "%s T=%g", cond_name[cc], temps[ti]);
                double pv = NAN;
                for (size_t ci = 0; ci < ncells; ci++)
                    if (cells[ci].c == C_PLAIN && cells[ci].temp == temps[ti]) pv = acc_grid[ci];
                fmt(v, sizeof v, scored ? "%.3f" : "%.4f", pv);
                printf("%-16s %7s", label, v);
                for (size_t ai = 0; ai < na; ai++) {
                    double x = NAN;
                    for (size_t ci = 0; ci < ncells; ci++)
                        if (cells[ci].c == (cond)cc && cells[ci].temp == temps[ti] && cells[ci].alpha == alphas[ai] &&
                            cells[ci].ttt == tt)
                            x = acc_grid[ci];
                    fmt(v, sizeof v, scored ? "%.3f" : "%.4f", x);
                    printf(" %7s", v);
                }
                printf("\n");
            }
        }
    }
    exp_write(&o, "matrix.csv", csv.s, csv.n);
    exp_write_json(&o, "summary.json", summary);
    if (want[C_GUIDED] || want[C_NULL]) { /* the matrix as a heatmap */
        size_t hr = 0, hc = na + 1;
        double *hv = malloc(4 * nt * hc * sizeof *hv);
        char **rl = calloc(4 * nt, sizeof *rl), **cl = calloc(hc, sizeof *cl);
        cl[0] = strdup("plain");
        for (size_t ai = 0; ai < na; ai++) {
            char b[32];
            snprintf(b, sizeof b, "a=%g", alphas[ai]);
            cl[ai + 1] = strdup(b);
        }
        for (int tt = 0; tt < 2; tt++)
        for (int cc = C_GUIDED; cc <= C_NULL; cc++) {
            if (!want[cc] || !(tt ? ttt_on : ttt_off)) continue;
            for (size_t ti = 0; ti < nt; ti++, hr++) {
                char label[40];
                snprintf(label, sizeof label, "%s T=%g%s", cond_name[cc], temps[ti], tt ? " ttt" : "");
                rl[hr] = strdup(label);
                for (size_t q = 0; q < hc; q++) hv[hr * hc + q] = NAN;
                for (size_t ci = 0; ci < ncells; ci++) {
                    if (cells[ci].temp != temps[ti]) continue;
                    if (cells[ci].c == C_PLAIN) hv[hr * hc] = acc_grid[ci];
                    for (size_t ai = 0; ai < na; ai++)
                        if (cells[ci].c == (cond)cc && cells[ci].alpha == alphas[ai] && cells[ci].ttt == tt)
                            hv[hr * hc + ai + 1] = acc_grid[ci];
                }
            }
        }
        fig_chart ch = {.kind = FIG_HEATMAP,
                        .title = scored ? (ttt_on ? "Guided decoding: accuracy" : "Guided decoding: accuracy (ttt off)")
                                        : (ttt_on ? "Guided decoding: KL(guided || target) per token"
                                                  : "Guided decoding: KL(guided || target) per token (ttt off)"),
                        .xlabel = "alpha (plain = plain decoding)", .ylabel = "condition, temperature"};
        ch.heatmap = (fig_heatmap){.rows = hr, .cols = hc, .values = hv, .row_labels = (const char *const *)rl,
                                   .col_labels = (const char *const *)cl, .cmap = FIG_CMAP_SEQUENTIAL,
                                   .annotate = true, .value_digits = 3,
                                   .colorbar_label = scored ? "accuracy" : "KL per token"};
        exp_write_figure(&o, "heatmap.png", &ch);
        for (size_t q = 0; q < hr; q++) free(rl[q]);
        for (size_t q = 0; q < hc; q++) free(cl[q]);
        free(rl);
        free(cl);
        free(hv);
    }

    /* rubric export: every response with its context and question */
    exp_buf jl = {0};
    for (size_t ci = 0; ci < ncells; ci++)
        for (size_t e = 0; e < d.n; e++) {
            const cJSON *r = find_record(&o, &cells[ci], d.ex[e].id);
            if (!r) continue;
            const vkd_ds_record *dr = &d.ds->records[e];
            exp_buf ctx = {0};
            for (size_t mi = 0; dr->messages && mi + 1 < dr->n_messages; mi++)
                exp_buf_printf(&ctx, "%s%s: %s", mi ? "\n\n" : "", dr->messages[mi].role, dr->messages[mi].content);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "id", str(r, "id"));
            cJSON_AddStringToObject(x, "example", d.ex[e].id);
            cJSON_AddStringToObject(x, "context", ctx.s ? ctx.s : "");
            cJSON_AddStringToObject(x, "question", d.ex[e].question);
            cJSON_AddStringToObject(x, "response", str(r, "response") ? str(r, "response") : "");
            cJSON_AddStringToObject(x, "condition", cond_name[cells[ci].c]);
            if (cells[ci].c == C_PLAIN) cJSON_AddNullToObject(x, "alpha");
            else cJSON_AddNumberToObject(x, "alpha", cells[ci].alpha);
            cJSON_AddNumberToObject(x, "temperature", cells[ci].temp);
            cJSON_AddStringToObject(x, "ttt", cells[ci].ttt ? "on" : "off");
            if (d.ex[e].answer) cJSON_AddStringToObject(x, "reference_answer", d.ex[e].answer);
            else cJSON_AddNullToObject(x, "reference_answer");
            char *line = cJSON_PrintUnformatted(x);
            exp_buf_printf(&jl, "%s\n", line);
            free(line);
            cJSON_Delete(x);
            exp_buf_free(&ctx);
        }
    exp_write(&o, "responses.jsonl", jl.s ? jl.s : "", jl.n);
    printf("wrote %s/{matrix.csv,summary.json,responses.jsonl,heatmap.png,examples.jsonl,config.json}\n", o.dir);

    free(acc_grid);
    exp_buf_free(&jl);
    exp_buf_free(&csv);
    cJSON_Delete(summary);
    vkd_draft_free(g);
    exp_close_out(&o);
    exp_free_data(&d);
    exp_free_models(&m);
    free(cells);
    free(alphas);
    free(temps);
    return 0;
}
