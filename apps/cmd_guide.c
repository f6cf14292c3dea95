/* vkdraft guide: draft-guided decoding sweeps (seeds 001, 004): condition x temperature x
 * alpha x TTT cells over a dataset, one journal record per (cell, example). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "guide.h"
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
           "           [--ttt off|on|both [--ttt-steps N] [--ttt-lr X] [--ttt-rank R]]\n"
           "           [--group-by FIELD] [--keep-fields A,B] [common flags]\n\n"
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
           "example; --resume continues an interrupted sweep), report.txt (the table and the\n"
           "matrix printed, then each cell's accuracy and KL per token with its 95%% bootstrap CI\n"
           "over examples, --bootstrap resamples), matrix.csv, summary.json,\n"
           "responses.jsonl (for an external rubric grader, CL-bench style: id, context, question,\n"
           "response, condition, alpha, temperature, ttt, reference_answer), heatmap.png,\n"
           "tokens.jsonl (per generated token of every drafted cell: token, text, changed = guidance\n"
           "changed the argmax, target_argmax, guided_argmax, alpha_applied, p_target / p_draft =\n"
           "softmax of the target / draft row (temperature 1) at the chosen token, p_target_pref /\n"
           "p_draft_pref at the target's argmax) and compare.md (per example, the responses of\n"
           "every cell under one another).\n\n"
           "--group-by FIELD breaks every table down by a dataset field (a name, or a dotted path\n"
           "into objects: CL-bench's metadata.context_category, MT-Bench's category): report.txt\n"
           "gets one section per group (table, matrix, CIs), matrix.csv a leading group column\n"
           "(\"all\" rows, then each group's), summary.json a \"groups\" list (cells with CIs) and\n"
           "each group a heatmap_<group>-<i>.png; a record without the field is an error.\n"
           "--keep-fields A,B copies those dataset fields (names or dotted paths), as the dataset\n"
           "holds them, into each responses.jsonl line for an external grader (CL-bench: rubrics,\n"
           "metadata; null when a record lacks one). CL-bench records (messages: system and user\n"
           "turns with the context and task; rubrics; metadata) are read as chats; a file named\n"
           "*cl-bench* / *clbench* takes the cl-bench preset (id metadata.task_id, no answer).\n\n");
    fputs(exp_common_help, stdout);
}

const char *const guide_cond_name[NCOND] = {"guided", "null", "plain", "adaptive", "topk"};
const cond guide_drafted[4] = {C_GUIDED, C_NULL, C_ADAPTIVE, C_TOPK};

void guide_cell_key(cell *k) {
    char a[32], t[32];
    jr_fmt_double(a, sizeof a, k->alpha);
    jr_fmt_double(t, sizeof t, k->temp);
    if (k->c == C_PLAIN) snprintf(k->key, sizeof k->key, "plain/T%s/ttt-off", t);
    else snprintf(k->key, sizeof k->key, "%s/a%s/T%s/ttt-%s", guide_cond_name[k->c], a, t, k->ttt ? "on" : "off");
}

char *guide_record_id(const cell *k, const char *example) {
    size_t n = strlen(k->key) + strlen(example) + 2;
    char *id = malloc(n);
    if (!id) cli_fatal("out of memory");
    snprintf(id, n, "%s/%s", k->key, example);
    return id;
}

const cJSON *guide_find_record(exp_out *o, const cell *k, const char *example) {
    char *id = guide_record_id(k, example);
    const cJSON *r = exp_find(o, id);
    free(id);
    return r;
}

bool guide_any_drafted(const guide_opts *G) {
    for (int q = 0; q < 4; q++) if (G->want[guide_drafted[q]]) return true;
    return false;
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
    cJSON_AddStringToObject(o, "condition", guide_cond_name[k->c]);
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

/* ---- the command ------------------------------------------------------------------------------- */


/* --conditions "guided,null,plain,adaptive,topk" -> want[cond]; usage error on an unknown or
 * repeated name. */
static void parse_conditions(const char *conds_s, bool want[NCOND]) {
    char *s = strdup(conds_s), *save = NULL;
    bool any = false;
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int q = 0; q < NCOND; q++) if (!strcmp(t, guide_cond_name[q])) k = q;
        if (k < 0)
            cli_usage_error("guide", "--conditions: unknown condition '%s' (expected guided, null, plain, adaptive, topk)", t);
        if (want[k]) cli_usage_error("guide", "--conditions: '%s' appears twice", t);
        want[k] = any = true;
    }
    free(s);
    if (!any) cli_usage_error("guide", "--conditions: expected a list of guided, null, plain, adaptive, topk");
}

/* Parses and checks the flags into G; false after --help. */
/* --keep-fields "a,b" and --group-by F: the dataset fields the loader keeps (keep first, then
 * the group field); usage error on an empty or repeated name. */
static void parse_fields(guide_opts *G, const char *keep_s) {
    if (G->group_by && !G->group_by[0]) cli_usage_error("guide", "--group-by expects a field name");
    G->keep = calloc(64, sizeof *G->keep);
    G->ds_fields = calloc(65, sizeof *G->ds_fields);
    if (!G->keep || !G->ds_fields) cli_fatal("out of memory");
    if (keep_s) {
        char *s = strdup(keep_s), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            for (size_t q = 0; q < G->nkeep; q++)
                if (!strcmp(G->keep[q], t)) cli_usage_error("guide", "--keep-fields: '%s' appears twice", t);
            if (G->nkeep == 64) cli_usage_error("guide", "--keep-fields: at most 64 fields");
            static const char *const own[] = {"id", "example", "context", "question", "response", "condition", "alpha",
                                              "temperature", "ttt", "reference_answer"};
            for (size_t q = 0; q < sizeof own / sizeof own[0]; q++)
                if (!strcmp(t, own[q]))
                    cli_usage_error("guide", "--keep-fields: '%s' is a field responses.jsonl writes itself", t);
            G->keep[G->nkeep++] = strdup(t);
        }
        free(s);
        if (!G->nkeep) cli_usage_error("guide", "--keep-fields expects a list of field names, got '%s'", keep_s);
    }
    size_t n = 0;
    for (size_t q = 0; q < G->nkeep; q++) G->ds_fields[n++] = G->keep[q];
    if (G->group_by) G->ds_fields[n++] = G->group_by;
    G->c.ds_fields = G->ds_fields;
    G->c.n_ds_fields = n;
}

static bool parse_args(int argc, char **argv, guide_opts *G) {
    exp_common *c = &G->c;
    const char *alphas_s = "0,0.1,0.2,0.3,0.5", *temps_s = "0.3,0.6,1.0", *conds_s = "guided,null", *keep_s = NULL;
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
        else if ((v = cli_value("guide", "--group-by", argc, argv, &i))) G->group_by = v;
        else if ((v = cli_value("guide", "--keep-fields", argc, argv, &i))) keep_s = v;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error("guide", "unknown flag '%s'", argv[i]);
    }
    G->alphas = exp_parse_list("guide", "--alphas", alphas_s, 0, 10, &G->na);
    G->temps = exp_parse_list("guide", "--temperatures", temps_s, 0, 100, &G->nt);
    parse_conditions(conds_s, G->want);
    parse_fields(G, keep_s);
    exp_require(c, guide_any_drafted(G));
    if (!c->block) c->block = 2;
    const char *ttt_s = G->ttt_s;
    G->ttt_off = !strcmp(ttt_s, "off") || !strcmp(ttt_s, "both");
    G->ttt_on = !strcmp(ttt_s, "on") || !strcmp(ttt_s, "both");
    if (!G->ttt_off && !G->ttt_on) cli_usage_error("guide", "--ttt: '%s' is not off, on or both", ttt_s);
    if (G->ttt_on && !guide_any_drafted(G)) cli_usage_error("guide", "--ttt on needs a condition that uses the draft");
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
                    guide_cell_key(k);
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
        if (G->want[k]) cJSON_AddItemToArray(pc, cJSON_CreateString(guide_cond_name[k]));
    if (G->want[C_TOPK]) cJSON_AddNumberToObject(params, "guide_top_k", (double)G->guide_top_k);
    cJSON_AddStringToObject(params, "ttt", G->ttt_s);
    if (G->ttt_on) {
        cJSON_AddNumberToObject(params, "ttt_steps", (double)G->ttt_steps);
        cJSON_AddNumberToObject(params, "ttt_lr", G->ttt_lr);
        cJSON_AddNumberToObject(params, "ttt_rank", (double)G->ttt_rank);
    }
    if (G->group_by) cJSON_AddStringToObject(params, "group_by", G->group_by);
    if (G->nkeep) {
        cJSON *kf = cJSON_AddArrayToObject(params, "keep_fields");
        for (size_t q = 0; q < G->nkeep; q++) cJSON_AddItemToArray(kf, cJSON_CreateString(G->keep[q]));
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
    guide_cell_key(&twin);
    const cJSON *src = guide_find_record(o, &twin, ex->id);
    if (!src) return NULL;
    cJSON *rec = cJSON_Duplicate(src, true);
    cJSON_ReplaceItemInObject(rec, "id", cJSON_CreateString(id));
    cJSON_ReplaceItemInObject(rec, "cell", cJSON_CreateString(k->key));
    cJSON_ReplaceItemInObject(rec, "condition", cJSON_CreateString("null"));
    cJSON_AddStringToObject(rec, "reused_from", guide_str(src, "id"));
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
    S->work += (uint64_t)guide_num(rec, "tokens");
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
            char *id = guide_record_id(k, ex->id);
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
                                      .seed = G->c.seed, .key = (uint32_t)ex->index};
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
    for (size_t e = 0; G.group_by && e < d.n; e++)
        if (!d.ex[e].record->fields[G.nkeep])
            cli_fatal("%s:%zu: field '%s' is missing (expected the --group-by value)", d.path, d.ex[e].line, G.group_by);
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

    guide_report(&G, &o, &d, m.tok);

    vkd_draft_free(g);
    exp_close_out(&o);
    exp_free_data(&d);
    exp_free_models(&m);
    free(G.cells);
    free(G.alphas);
    free(G.temps);
    for (size_t q = 0; q < G.nkeep; q++) free(G.keep[q]);
    free(G.keep);
    free(G.ds_fields);
    return 0;
}
