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
    printf("usage: vkdraft guide --target DIR (--draft DIR | --exit-head DIR) --dataset FILE --out DIR\n"
           "           [--alphas LIST] [--temperatures LIST] [--conditions LIST]\n"
           "           [--max-new-tokens N] [--top-k K] [--top-p P] [--guide-top-k K]\n"
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
           "          the speed baseline\n"           "  adaptive  (seeds 001/004 phase 3.3) alpha scaled per token by the draft-target\n"
           "          divergence: alpha_t = alpha * TVD(softmax(target), softmax(draft))\n"
           "  topk    (the risk table's mitigation) the guided row on the target's --guide-top-k\n"
           "          (default 20) best tokens, -inf elsewhere: only tokens the target ranks among\n"
           "          its k best can be chosen\n"
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
           "response, condition, alpha, temperature, ttt, reference_answer), heatmap.png,\n"
           "tokens.jsonl (per generated token of every drafted cell: token, text, changed = guidance\n"
           "changed the argmax, target_argmax, guided_argmax, alpha_applied, p_target / p_draft =\n"
           "softmax of the target / draft row (temperature 1) at the chosen token, p_target_pref /\n"
           "p_draft_pref at the target's argmax) and compare.md (per example, the responses of\n"
           "every cell under one another).\n\n");
    fputs(exp_common_help, stdout);
}

typedef enum { C_GUIDED, C_NULL, C_PLAIN, C_ADAPTIVE, C_TOPK, NCOND } cond;
static const char *cond_name[] = {"guided", "null", "plain", "adaptive", "topk"};
/* the conditions that use the draft, in matrix order */
static const cond drafted_conds[4] = {C_GUIDED, C_NULL, C_ADAPTIVE, C_TOPK};

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

/* ---- one cell and example ------------------------------------------------------------------ */

typedef struct run_ctx {
    exp_common *c;
    exp_models *m;
    exp_data *d;
    vkd_draft *g;
    uint32_t max_new, top_k, guide_top_k;
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
    cJSON *per_token = NULL;
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
        vkd_guide_options o = {.gen = go, .alpha = (float)k->alpha, .top_k = R->guide_top_k,
                               .condition = k->c == C_NULL ? VKD_GUIDE_NULL : k->c == C_ADAPTIVE ? VKD_GUIDE_ADAPTIVE
                                          : k->c == C_TOPK ? VKD_GUIDE_TOPK : VKD_GUIDE_GUIDED};
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
        per_token = cJSON_CreateArray(); /* tokens.jsonl is rebuilt from these rows */
        for (uint32_t i = 0; i < n; i++) {
            const vkd_guide_token *t = &r.tokens[i];
            double v[7] = {t->target_argmax, t->guided_argmax, t->alpha, t->p_target, t->p_draft, t->p_target_pref,
                           t->p_draft_pref};
            cJSON *row = cJSON_CreateArray();
            for (int q = 0; q < 7; q++) cJSON_AddItemToArray(row, cJSON_CreateNumber(v[q]));
            cJSON_AddItemToArray(per_token, row);
        }
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
    if (ex->answer) { /* scored when the dataset's preset has an answer kind (GSM8K, MATH-500) */
        vkd_answer_kind kind = vkd_answer_kind_from_name(vkd_ds_preset_for_file(R->d->path));
        if (kind != VKD_ANSWER_NONE) exp_add_grade(o, kind, text, ex->answer, "predicted");
        else {
            cJSON_AddNullToObject(o, "predicted");
            cJSON_AddNullToObject(o, "correct");
        }
    }
    cJSON_AddNumberToObject(o, "kl_sum", kl_sum);
    cJSON_AddNumberToObject(o, "changed", changed);
    cJSON_AddNumberToObject(o, "target_forwards", tfwd);
    cJSON_AddNumberToObject(o, "draft_calls", dcalls);
    cJSON_AddNumberToObject(o, "prefill_s", prefill_s);
    cJSON_AddNumberToObject(o, "decode_s", decode_s);
    cJSON *ia = cJSON_AddArrayToObject(o, "ids");
    for (uint32_t i = 0; i < n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(ids[i]));
    if (per_token) cJSON_AddItemToObject(o, "per_token", per_token);
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

typedef struct guide_opts {
    exp_common c;
    const char *ttt_s;
    long max_new, top_k, ttt_steps, ttt_rank;
    double top_p, ttt_lr;
    double *alphas, *temps;
    size_t na, nt;
    bool want[NCOND];          /* by cond */
    long guide_top_k;          /* topk condition: k */
    bool ttt_off, ttt_on;
    cell *cells;
    size_t ncells;
} guide_opts;

/* --conditions "guided,null,plain,adaptive,topk" -> want[cond]; usage error on an unknown or
 * repeated name. */
static void parse_conditions(const char *conds_s, bool want[NCOND]) {
    char *s = strdup(conds_s), *save = NULL;
    bool any = false;
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int q = 0; q < NCOND; q++) if (!strcmp(t, cond_name[q])) k = q;
        if (k < 0)
            cli_usage_error("guide", "--conditions: unknown condition '%s' (expected guided, null, plain, adaptive, topk)", t);
        if (want[k]) cli_usage_error("guide", "--conditions: '%s' appears twice", t);
        want[k] = any = true;
    }
    free(s);
    if (!any) cli_usage_error("guide", "--conditions: expected a list of guided, null, plain, adaptive, topk");
}

static bool any_drafted(const guide_opts *G) {
    for (int q = 0; q < 4; q++) if (G->want[drafted_conds[q]]) return true;
    return false;
}

/* Parses and checks the flags into G; false after --help. */
static bool parse_args(int argc, char **argv, guide_opts *G) {
    exp_common *c = &G->c;
    const char *alphas_s = "0,0.1,0.2,0.3,0.5", *temps_s = "0.3,0.6,1.0", *conds_s = "guided,null";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(c, argc, argv, &i)) continue;
        if ((v = cli_value("guide", "--alphas", argc, argv, &i))) alphas_s = v;
        else if ((v = cli_value("guide", "--temperatures", argc, argv, &i))) temps_s = v;
        else if ((v = cli_value("guide", "--conditions", argc, argv, &i))) conds_s = v;
        else if ((v = cli_value("guide", "--max-new-tokens", argc, argv, &i)))
            G->max_new = cli_parse_long("guide", "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value("guide", "--top-k", argc, argv, &i))) G->top_k = cli_parse_long("guide", "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value("guide", "--top-p", argc, argv, &i))) G->top_p = cli_parse_double("guide", "--top-p", v, 0, 1);
        else if ((v = cli_value("guide", "--ttt", argc, argv, &i))) G->ttt_s = v;
        else if ((v = cli_value("guide", "--guide-top-k", argc, argv, &i)))
            G->guide_top_k = cli_parse_long("guide", "--guide-top-k", v, 1, 1 << 30);
        else if ((v = cli_value("guide", "--ttt-steps", argc, argv, &i))) G->ttt_steps = cli_parse_long("guide", "--ttt-steps", v, 1, 1000000);
        else if ((v = cli_value("guide", "--ttt-rank", argc, argv, &i))) G->ttt_rank = cli_parse_long("guide", "--ttt-rank", v, 1, 4096);
        else if ((v = cli_value("guide", "--ttt-lr", argc, argv, &i))) G->ttt_lr = cli_parse_double("guide", "--ttt-lr", v, 1e-12, 1e6);
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error("guide", "unknown flag '%s'", argv[i]);
    }
    G->alphas = exp_parse_list("guide", "--alphas", alphas_s, 0, 10, &G->na);
    G->temps = exp_parse_list("guide", "--temperatures", temps_s, 0, 100, &G->nt);
    parse_conditions(conds_s, G->want);
    exp_require(c, any_drafted(G));
    if (!c->block) c->block = 2;
    const char *ttt_s = G->ttt_s;
    G->ttt_off = !strcmp(ttt_s, "off") || !strcmp(ttt_s, "both");
    G->ttt_on = !strcmp(ttt_s, "on") || !strcmp(ttt_s, "both");
    if (!G->ttt_off && !G->ttt_on) cli_usage_error("guide", "--ttt: '%s' is not off, on or both", ttt_s);
    if (G->ttt_on && !any_drafted(G)) cli_usage_error("guide", "--ttt on needs a condition that uses the draft");
    if (G->ttt_on && c->exit_head) cli_usage_error("guide", "--ttt on adapts a DFlash draft (--draft), not --exit-head");
    c->train = G->ttt_on;
    if (c->adapter) cli_usage_error("guide", "--adapter is not taken by guide (its ttt column adapts the draft: --ttt on)");
    if (G->ttt_on && !vkd_ttt_engine_available())
        cli_fatal("guide: --ttt on needs the training engine (draft backward, fused LM head + loss, optimizer, PEFT "
                  "adapters), which this build does not have yet; nothing was written");
    return true;
}

/* Cells: condition-major in the order plain, guided, null (a null cell at alpha 0 reuses the
 * guided one: both are the target's logits). */
static void build_cells(guide_opts *G) {
    G->cells = calloc(2 * NCOND * G->na * G->nt + 1, sizeof *G->cells);
    G->ncells = 0;
    static const cond order[NCOND] = {C_PLAIN, C_GUIDED, C_NULL, C_ADAPTIVE, C_TOPK};
    for (int tt = 0; tt < 2; tt++) {
        if (!(tt ? G->ttt_on : G->ttt_off)) continue;
        for (int oi = 0; oi < NCOND; oi++) {
            cond cc = order[oi];
            if (!G->want[cc] || (tt && cc == C_PLAIN)) continue;
            for (size_t ti = 0; ti < G->nt; ti++)
                for (size_t ai = 0; ai < (cc == C_PLAIN ? 1 : G->na); ai++) {
                    cell *k = &G->cells[G->ncells++];
                    k->c = cc;
                    k->temp = G->temps[ti];
                    k->alpha = cc == C_PLAIN ? NAN : G->alphas[ai];
                    k->ttt = tt;
                    cell_key(k);
                }
        }
    }
}

/* The command's own parameters for config.json. */
static cJSON *guide_params(const guide_opts *G) {
    cJSON *params = cJSON_CreateObject();
    cJSON *pa = cJSON_AddArrayToObject(params, "alphas");
    for (size_t i = 0; i < G->na; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(G->alphas[i]));
    cJSON *pt = cJSON_AddArrayToObject(params, "temperatures");
    for (size_t i = 0; i < G->nt; i++) cJSON_AddItemToArray(pt, cJSON_CreateNumber(G->temps[i]));
    cJSON *pc = cJSON_AddArrayToObject(params, "conditions");
    for (int k = 0; k < NCOND; k++)
        if (G->want[k]) cJSON_AddItemToArray(pc, cJSON_CreateString(cond_name[k]));
    if (G->want[C_TOPK]) cJSON_AddNumberToObject(params, "guide_top_k", (double)G->guide_top_k);
    cJSON_AddStringToObject(params, "ttt", G->ttt_s);
    if (G->ttt_on) {
        cJSON_AddNumberToObject(params, "ttt_steps", (double)G->ttt_steps);
        cJSON_AddNumberToObject(params, "ttt_lr", G->ttt_lr);
        cJSON_AddNumberToObject(params, "ttt_rank", (double)G->ttt_rank);
    }
    cJSON_AddNumberToObject(params, "max_new_tokens", (double)G->max_new);
    cJSON_AddNumberToObject(params, "top_k", (double)G->top_k);
    cJSON_AddNumberToObject(params, "top_p", G->top_p);
    cJSON_AddStringToObject(params, "null_noise", "z * std(draft - target) / rms(z), z ~ N(0,1) Philox(seed, position)");
    return params;
}

/* A null cell at alpha 0 is the guided cell at alpha 0 (both decode the target's logits): its
 * record, copied under the null cell's id, or NULL when the guided one is not in the journal. */
static cJSON *reuse_guided(exp_out *o, const cell *k, const exp_example *ex, const char *id) {
    cell twin = *k;
    twin.c = C_GUIDED;
    cell_key(&twin);
    const cJSON *src = find_record(o, &twin, ex->id);
    if (!src) return NULL;
    cJSON *rec = cJSON_Duplicate(src, true);
    cJSON_ReplaceItemInObject(rec, "id", cJSON_CreateString(id));
    cJSON_ReplaceItemInObject(rec, "cell", cJSON_CreateString(k->key));
    cJSON_ReplaceItemInObject(rec, "condition", cJSON_CreateString("null"));
    cJSON_AddStringToObject(rec, "reused_from", str(src, "id"));
    return rec;
}

typedef struct sweep {
    const guide_opts *G;
    run_ctx R;
    exp_out *o;
    exp_progress prog;
    size_t done;
    uint64_t work;
} sweep;

static void sweep_journal(sweep *S, cJSON *rec) {
    S->work += (uint64_t)num(rec, "tokens");
    exp_journal(S->o, rec);
}

/* ttt off cells, cell by cell. */
static void run_untrained(sweep *S) {
    const guide_opts *G = S->G;
    const exp_data *d = S->R.d;
    for (size_t ci = 0; ci < G->ncells; ci++) {
        const cell *k = &G->cells[ci];
        if (k->ttt) continue; /* run_adapted: example by example */
        for (size_t e = 0; e < d->n; e++, S->done++) {
            const exp_example *ex = &d->ex[e];
            char *id = record_id(k, ex->id);
            if (!exp_claim(S->o, e, id)) {
                free(id);
                continue;
            }
            cJSON *rec = NULL;
            if (k->c == C_NULL && k->alpha == 0 && G->want[C_GUIDED]) rec = reuse_guided(S->o, k, ex, id);
            if (!rec) rec = run_one(&S->R, k, ex, id);
            free(id);
            sweep_journal(S, rec);
            if (!G->c.quiet) exp_progress_update(&S->prog, S->done + 1, S->work, "tok");
        }
    }
}

/* ttt on: the draft adapted once per example (on its prompt), then that example's ttt cells. */
static void run_adapted(sweep *S) {
    const guide_opts *G = S->G;
    const exp_data *d = S->R.d;
    exp_models *m = S->R.m;
    vkd_error err = {0};
    for (size_t e = 0; G->ttt_on && e < d->n; e++) {
        const exp_example *ex = &d->ex[e];
        vkd_ttt_trace tr = {0};
        vkd_ttt_adapter *ad = NULL;
        bool adapted = false;
        for (size_t ci = 0; ci < G->ncells; ci++) {
            const cell *k = &G->cells[ci];
            if (!k->ttt) continue;
            S->done++;
            char id[512];
            snprintf(id, sizeof id, "%s/%s", k->key, ex->id);
            if (!exp_claim(S->o, e, id)) continue;
            if (!adapted && ex->n_prompt >= 3) {
                uint32_t K = VKD_TTT_DEFAULT_ANCHORS < ex->n_prompt - 2 ? VKD_TTT_DEFAULT_ANCHORS : ex->n_prompt - 2;
                vkd_ttt_options to = {.steps = (uint32_t)G->ttt_steps, .lr = G->ttt_lr, .anchors_per_step = K,
                                      .seed = G->c.seed, .key = (uint32_t)e};
                if (vkd_ttt_adapter_new(m->d, (uint32_t)G->ttt_rank, VKD_TTT_DEFAULT_ALPHA, 0, G->c.seed, &ad, &err) ||
                    vkd_ttt_adapt(m->d, ad, m->rec, ex->prompt, ex->n_prompt, &to, &tr, &err))
                    cli_fatal("%s: example '%s' (line %zu): ttt: %s", d->path, ex->id, ex->line, err.msg);
                adapted = true;
            }
            cJSON *rec = run_one(&S->R, k, ex, id);
            cJSON_AddNumberToObject(rec, "ttt_updates", tr.updates);
            if (tr.n) {
                cJSON_AddNumberToObject(rec, "ttt_loss_first", tr.losses[0]);
                cJSON_AddNumberToObject(rec, "ttt_loss_last", tr.losses[tr.n - 1]);
            }
            sweep_journal(S, rec);
            if (!G->c.quiet) exp_progress_update(&S->prog, S->done, S->work, "tok");
        }
        vkd_ttt_adapter_free(ad);
        vkd_ttt_trace_free(&tr);
    }
}

/* One cell's row: the table on stdout, matrix.csv and summary.json's "cells"; returns the value
 * the matrix shows (accuracy when scored, else KL per token). */
static double report_cell(const exp_out *o, const cell *k, bool scored, const rep_boot *bt, exp_buf *csv, cJSON *sc) {
    agg a = aggregate(o, k);
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
    printf("%-7s %-4s %5g %6s %5zu %8s %9s %8s %8s %9s %9s\n", cond_name[k->c], k->ttt ? "on" : "off", k->temp, sa, a.n, sacc,
           skl, sch, stok, sms, stf);
    exp_buf_printf(csv, "%s,%s,%s,%s,%zu,%s,%s,%s,%s,%s,%s\n", cond_name[k->c], k->ttt ? "on" : "off", st_x,
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
    if (a.c_acc.n) rep_ci_json(j, "accuracy_ci", rep_col_ci(bt, &a.c_acc));
    if (a.c_kl.n) rep_ci_json(j, "kl_mean_ci", rep_col_ci(bt, &a.c_kl));
    rep_col_free(&a.c_acc);
    rep_col_free(&a.c_kl);
    cJSON_AddItemToArray(sc, j);
    return scored ? acc : kl;
}

/* Alpha 0 must be plain decoding: compares token ids where both were run (summary and stdout). */
static void check_alpha0(const guide_opts *G, exp_out *o, const exp_data *d, cJSON *summary) {
    size_t compared = 0, differ = 0;
    if (G->want[C_PLAIN] && G->want[C_GUIDED])
        for (size_t ti = 0; ti < G->nt; ti++) {
            bool has0 = false;
            for (size_t ai = 0; ai < G->na; ai++) has0 |= G->alphas[ai] == 0;
            if (!has0) break;
            cell p = {.c = C_PLAIN, .temp = G->temps[ti], .alpha = NAN}, g0 = {.c = C_GUIDED, .temp = G->temps[ti]};
            cell_key(&p);
            cell_key(&g0);
            for (size_t e = 0; e < d->n; e++) {
                const cJSON *ra = find_record(o, &p, d->ex[e].id), *rb = find_record(o, &g0, d->ex[e].id);
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
static void print_matrix(const guide_opts *G, const double *grid, bool scored) {
    for (int tt = 0; tt < 2 && any_drafted(G); tt++) {
        if (!(tt ? G->ttt_on : G->ttt_off)) continue;
        printf("\n%s (rows: condition, temperature; columns: plain decoding, alpha), ttt %s\n%-16s %7s",
               scored ? "accuracy" : "KL(guided || target) per token", tt ? "on" : "off", "", "plain");
        for (size_t ai = 0; ai < G->na; ai++) printf(" %7g", G->alphas[ai]);
        printf("\n");
        for (int q = 0; q < 4; q++) {
            cond cc = drafted_conds[q];
            if (!G->want[cc]) continue;
            for (size_t ti = 0; ti < G->nt; ti++) {
                char label[32], v[16];
                snprintf(label, sizeof label, "%s T=%g", cond_name[cc], G->temps[ti]);
                fmt(v, sizeof v, scored ? "%.3f" : "%.4f", grid_at(G, grid, C_PLAIN, G->temps[ti], 0, false));
                printf("%-16s %7s", label, v);
                for (size_t ai = 0; ai < G->na; ai++) {
                    fmt(v, sizeof v, scored ? "%.3f" : "%.4f", grid_at(G, grid, (cond)cc, G->temps[ti], G->alphas[ai], tt));
                    printf(" %7s", v);
                }
                printf("\n");
            }
        }
    }
}

/* The matrix as a heatmap (heatmap.png). */
static void write_heatmap(const guide_opts *G, const exp_out *o, const double *grid, bool scored) {
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
            cond cc = drafted_conds[q];
            if (!G->want[cc] || !(tt ? G->ttt_on : G->ttt_off)) continue;
            for (size_t ti = 0; ti < nt; ti++, hr++) {
                char label[40];
                snprintf(label, sizeof label, "%s T=%g%s", cond_name[cc], G->temps[ti], tt ? " ttt" : "");
                rl[hr] = strdup(label);
                hv[hr * hc] = grid_at(G, grid, C_PLAIN, G->temps[ti], 0, false);
                for (size_t ai = 0; ai < na; ai++)
                    hv[hr * hc + ai + 1] = grid_at(G, grid, (cond)cc, G->temps[ti], G->alphas[ai], tt);
            }
        }
    bool ttt_on = G->ttt_on;
    fig_chart ch = {.kind = FIG_HEATMAP,
                    .title = scored ? (ttt_on ? "Guided decoding: accuracy" : "Guided decoding: accuracy (ttt off)")
                                    : (ttt_on ? "Guided decoding: KL(guided || target) per token"
                                              : "Guided decoding: KL(guided || target) per token (ttt off)"),
                    .xlabel = "alpha (plain = plain decoding)", .ylabel = "condition, temperature"};
    ch.heatmap = (fig_heatmap){.rows = hr, .cols = hc, .values = hv, .row_labels = (const char *const *)rl,
                               .col_labels = (const char *const *)cl, .cmap = FIG_CMAP_SEQUENTIAL,
                               .annotate = true, .value_digits = 3,
                               .colorbar_label = scored ? "accuracy" : "KL per token"};
    exp_write_figure(o, "heatmap.png", &ch);
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
            const cJSON *r = find_record(o, k, d->ex[e].id);
            if (!r) continue;
            const vkd_ds_record *dr = d->ex[e].record;
            exp_buf ctx = {0};
            for (size_t mi = 0; dr->messages && mi + 1 < dr->n_messages; mi++)
                exp_buf_printf(&ctx, "%s%s: %s", mi ? "\n\n" : "", dr->messages[mi].role, dr->messages[mi].content);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "id", str(r, "id"));
            cJSON_AddStringToObject(x, "example", d->ex[e].id);
            cJSON_AddStringToObject(x, "context", ctx.s ? ctx.s : "");
            cJSON_AddStringToObject(x, "question", d->ex[e].question);
            cJSON_AddStringToObject(x, "response", str(r, "response") ? str(r, "response") : "");
            cJSON_AddStringToObject(x, "condition", cond_name[k->c]);
            if (k->c == C_PLAIN) cJSON_AddNullToObject(x, "alpha");
            else cJSON_AddNumberToObject(x, "alpha", k->alpha);
            cJSON_AddNumberToObject(x, "temperature", k->temp);
            cJSON_AddStringToObject(x, "ttt", k->ttt ? "on" : "off");
            if (d->ex[e].answer) cJSON_AddStringToObject(x, "reference_answer", d->ex[e].answer);
            else cJSON_AddNullToObject(x, "reference_answer");
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
            const cJSON *r = find_record(o, k, d->ex[e].id);
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
                cJSON_AddStringToObject(x, "id", str(r, "id"));
                cJSON_AddStringToObject(x, "example", d->ex[e].id);
                cJSON_AddStringToObject(x, "condition", cond_name[k->c]);
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
            const cJSON *r = find_record(o, k, d->ex[e].id);
            if (!r) continue;
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "correct");
            exp_buf_printf(&md, "\n### %s%s (%.0f tokens, %.0f argmax changed)\n\n```\n%s\n```\n", k->key,
                           cJSON_IsBool(c) ? (cJSON_IsTrue(c) ? " - correct" : " - wrong") : "", num(r, "tokens"),
                           num(r, "changed"), str(r, "response") ? str(r, "response") : "");
        }
    }
    exp_write(o, "compare.md", md.s, md.n);
    exp_buf_free(&md);
}

/* Everything written from the whole journal: the table, matrix.csv, summary.json, the matrix,
 * heatmap.png and responses.jsonl. */
static void report(const guide_opts *G, exp_out *o, const exp_data *d, vkd_tok *tok) {
    bool scored = false;
    for (size_t q = 0; q < o->done.n; q++)
        scored |= cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(o->done.rec[q], "correct"));
    exp_buf csv = {0};
    exp_buf_printf(&csv, "condition,ttt,temperature,alpha,examples,accuracy,kl_mean,changed_frac,tokens_mean,"
                         "ms_per_token,target_forwards_per_token\n");
    cJSON *summary = cJSON_CreateObject();
    cJSON *sc = cJSON_AddArrayToObject(summary, "cells");
    bool drafted = any_drafted(G);
    printf("guide: %zu example(s) from %s, %zu cell(s), draft block %ld, seed %llu%s\n", d->n, d->path, G->ncells,
           G->c.block, G->c.seed, drafted ? "" : " (plain only)");
    printf("%-7s %-4s %5s %6s %5s %8s %9s %8s %8s %9s %9s\n", "cond", "ttt", "T", "alpha", "n", "accuracy", "KL/token",
           "changed", "tokens", "ms/token", "tfwd/tok");
    double *grid = malloc(G->ncells * sizeof *grid);
    rep_boot bt = rep_boot_of(&G->c);
    rep_boot_json(summary, &bt);
    for (size_t ci = 0; ci < G->ncells; ci++) grid[ci] = report_cell(o, &G->cells[ci], scored, &bt, &csv, sc);
    check_alpha0(G, o, d, summary);
    if (!scored) printf("(no scored answers: accuracy is '-'; the matrix below shows KL/token)\n");
    print_matrix(G, grid, scored);
    exp_write(o, "matrix.csv", csv.s, csv.n);
    exp_write_json(o, "summary.json", summary);
    if (drafted) write_heatmap(G, o, grid, scored);
    write_responses(G, o, d);
    write_tokens(G, o, d, tok);
    write_compare(G, o, d);
    printf("wrote %s/{matrix.csv,summary.json,responses.jsonl,tokens.jsonl,compare.md,heatmap.png,examples.jsonl,"
           "config.json}\n", o->dir);
    free(grid);
    exp_buf_free(&csv);
    cJSON_Delete(summary);
}

int vkd_cmd_guide(int argc, char **argv) {
    guide_opts G = {.c = {.cmd = "guide"}, .ttt_s = "off", .max_new = 512, .top_k = 0, .top_p = 1, .guide_top_k = 20,
                    .ttt_steps = VKD_TTT_DEFAULT_STEPS, .ttt_rank = VKD_TTT_DEFAULT_RANK, .ttt_lr = VKD_TTT_DEFAULT_LR};
    if (!parse_args(argc, argv, &G)) return 0;
    build_cells(&G);
    exp_common *c = &G.c;

    exp_models m = {0};
    exp_load_tokenizer(c, &m);
    exp_data d;
    exp_load_data(c, m.tok, NULL, false, &d);
    cJSON *params = guide_params(&G);
    /* everything that can fail on the inputs fails before --out is touched */
    uint32_t ctx_len = exp_ctx_len(c, &d, (uint64_t)G.max_new + c->block + 1);
    exp_load_models(c, ctx_len, &m);
    vkd_draft *g = exp_draft(c, &m, false);
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = ctx_len};
    exp_open_out(c, params, jr_check_guide, &lim, &o);

    sweep S = {.G = &G, .o = &o};
    S.R = (run_ctx){.c = c, .m = &m, .d = &d, .g = g, .max_new = (uint32_t)G.max_new,
                    .top_k = (uint32_t)G.top_k, .top_p = G.top_p, .guide_top_k = (uint32_t)G.guide_top_k};
    if (!c->quiet) exp_progress_start(&S.prog, "guide", G.ncells * d.n);
    run_untrained(&S);
    run_adapted(&S);
    exp_finish_work(&o);
    if (!c->quiet) exp_progress_end(&S.prog, S.done, S.work, "tok");

    report(&G, &o, &d, m.tok);

    vkd_draft_free(g);
    exp_close_out(&o);
    exp_free_data(&d);
    exp_free_models(&m);
    free(G.cells);
    free(G.alphas);
    free(G.temps);
    return 0;
}
