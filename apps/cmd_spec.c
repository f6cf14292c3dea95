/* vkdraft spec: DFlash (or autoregressive-draft) speculative decoding over one prompt, a
 * dataset or the built-in prompt set, with acceptance statistics and the speed-up over
 * plain decoding measured in the same run. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin_prompts.h"
#include "budget.h"
#include "cli.h"
#include "cmds.h"
#include "dataset.h"
#include "exp.h"
#include "prompt.h"
#include "vkd_exit.h"
#include "vkd_spec.h"
#include "vkd_ttt.h"

static void usage(void) {
    printf("usage: vkdraft spec --target DIR (--draft DIR [--adapter DIR] | --draft-model DIR [--gamma N] |\n"
           "           --exit-head DIR | --exit-layer L [--exit-mode reuse|plain] [--gamma N])\n"
           "           [--prompt TEXT | --chat TEXT | --ids 1,2,3 | --dataset FILE]\n"
           "           [--prompt-field F] [--turn N] [--limit N] [--block-size B]\n"
           "           [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
           "           [--baseline] [--json] [--out FILE.jsonl] [--think] [--kv-dtype f32|f16]\n\n"
           "Speculative decoding with a DFlash draft (--draft: blocks of B-1 proposals read from\n"
           "the target's hidden states) or an ordinary smaller model of the same tokenizer\n"
           "(--draft-model, gamma proposals per step, default 4). Temperature 0 (the default)\n"
           "is greedy and token-identical to plain greedy decoding; otherwise speculative\n"
           "sampling keeps the target's sampling distribution (temperature, top-k, top-p).\n\n"
           "Prompts: one of --prompt/--chat/--ids; or --dataset FILE (JSONL or the MATH-500\n"
           "JSON array; GSM8K, MATH-500, HumanEval and MT-Bench field names are recognised,\n"
           "--prompt-field overrides; --turn picks an MT-Bench turn, default 0), each prompt\n"
           "through the target's chat template with thinking off (--think turns it on), as\n"
           "the DFlash benchmark protocol; --limit N takes N prompts after a shuffle with\n"
           "seed 0. Without prompt flags the built-in set (math, code, chat) is used.\n\n"
           "--baseline also decodes each prompt plainly and reports the speed-up (ratio of\n"
           "per-token decode times), after a warm-up run of the first prompt, untimed, in\n"
           "which the pipelines compile (at their first use on most drivers). Prints each\n"
           "prompt's generated text (after its id when there are several), tau (mean\n"
           "tokens committed per target forward), the acceptance-length histogram and\n"
           "tokens/s. --json prints one JSON document\n"
           "(per prompt: id, prompt, ids, text, acceptance_lengths, tau, tok_s, speedup; plus\n"
           "totals); --out writes one JSON line per prompt, atomically (prompt and text make\n"
           "it a dataset of the target's answers: --prompt-field prompt --answer-field text).\n"
           "Defaults: --max-new-tokens 128,\n"
           "--block-size from the draft's config. --adapter DIR attaches a PEFT LoRA adapter\n"
           "(e.g. from vkdraft ttt --save-adapter) to the DFlash draft.\n\n"
           "Early exit (seed 003): --exit-head DIR (from vkdraft exit-train) drafts gamma tokens\n"
           "with the target's first l+1 layers and the trained head; --exit-layer L does the\n"
           "same with an untrained copy of the target's own norm and head at layer L.\n"
           "--exit-mode reuse (default) is self-speculative: the drafted tokens' K/V of layers\n"
           "0..l are written into the target's cache and the verification runs only layers\n"
           "l+1.. for them; plain runs the truncated model as a separate draft with its own cache.\n\n"
           "The summary ends with the compute budget of these prompts (total.compute_budget in\n"
           "--json): target prefill time, draft and verification time per step, and the bytes\n"
           "the target's and the draft's KV caches and the hidden-state taps hold per token and\n"
           "at the longest prompt + output.\n");
}

typedef struct job {
    char *id;
    char *prompt;              /* the user text (--out's "prompt"); NULL for --ids and chats */
    int32_t *ids;
    size_t n;
} job;

static void progress(size_t done, size_t total, double elapsed) {
    if (total < 2) return;
    if (!isatty(2)) { /* a log: one line at the end */
        if (done == total) fprintf(stderr, "spec: %zu prompts in %.0fs\n", total, elapsed);
        return;
    }
    int w = 30, fill = (int)(w * done / total);
    double eta = done ? elapsed / done * (total - done) : 0;
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu  %.0fs elapsed, ETA %.0fs ", fill,
            "##############################", w - fill, "", done, total, elapsed, eta);
    if (done == total) fputc('\n', stderr);
}

typedef struct spec_opts {
    exp_common c;                    /* target, draft, adapter, dataset, prompt field, limit, block, kv, seed */
    const char *draft_model, *out;
    const char *exit_head, *exit_mode;  /* --exit-head DIR, --exit-mode reuse|plain */
    long exit_layer;                    /* --exit-layer L, -1: none */
    prompt_flags pf;
    long gamma, max_new, top_k, turn;
    double temp, top_p;
    bool baseline, json;
} spec_opts;

/* Parses and checks the flags into S; false after --help. */
static bool parse_args(int argc, char **argv, spec_opts *S) {
    exp_common *x = &S->c;
    prompt_flags *pf = &S->pf;
    const char *c = "spec";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (prompt_flag(c, pf, argc, argv, &i)) continue;
        if ((v = cli_value(c, "--target", argc, argv, &i))) x->target_dir = v;
        else if ((v = cli_value(c, "--draft", argc, argv, &i))) x->draft_dir = v;
        else if ((v = cli_value(c, "--draft-model", argc, argv, &i))) S->draft_model = v;
        else if ((v = cli_value(c, "--adapter", argc, argv, &i))) x->adapter = v;
        else if ((v = cli_value(c, "--exit-head", argc, argv, &i))) S->exit_head = v;
        else if ((v = cli_value(c, "--exit-layer", argc, argv, &i))) S->exit_layer = cli_parse_long(c, "--exit-layer", v, 0, 1 << 20);
        else if ((v = cli_value(c, "--exit-mode", argc, argv, &i))) S->exit_mode = v;
        else if ((v = cli_value(c, "--gamma", argc, argv, &i))) S->gamma = cli_parse_long(c, "--gamma", v, 1, 63);
        else if ((v = cli_value(c, "--dataset", argc, argv, &i))) x->dataset = v;
        else if ((v = cli_value(c, "--prompt-field", argc, argv, &i))) x->prompt_field = v;
        else if ((v = cli_value(c, "--turn", argc, argv, &i))) S->turn = cli_parse_long(c, "--turn", v, 0, 100);
        else if ((v = cli_value(c, "--limit", argc, argv, &i))) x->limit = cli_parse_long(c, "--limit", v, 1, 1 << 30);
        else if ((v = cli_value(c, "--block-size", argc, argv, &i))) x->block = cli_parse_long(c, "--block-size", v, 2, 64);
        else if ((v = cli_value(c, "--max-new-tokens", argc, argv, &i))) S->max_new = cli_parse_long(c, "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value(c, "--temperature", argc, argv, &i))) S->temp = cli_parse_double(c, "--temperature", v, 0, 100);
        else if ((v = cli_value(c, "--top-k", argc, argv, &i))) S->top_k = cli_parse_long(c, "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value(c, "--top-p", argc, argv, &i))) S->top_p = cli_parse_double(c, "--top-p", v, 0, 1);
        else if ((v = cli_value(c, "--seed", argc, argv, &i))) x->seed = (unsigned long long)cli_parse_long(c, "--seed", v, 0, __LONG_MAX__);
        else if ((v = cli_value(c, "--out", argc, argv, &i))) S->out = v;
        else if ((v = cli_value(c, "--kv-dtype", argc, argv, &i))) x->kv = v;
        else if (cli_is("--baseline", argv[i])) S->baseline = true;
        else if (cli_is("--json", argv[i])) S->json = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error(c, "unknown flag '%s'", argv[i]);
    }
    bool given = pf->prompt || pf->chat || pf->ids;
    if (!x->target_dir) cli_usage_error("spec", "--target DIR is required");
    if (!!x->draft_dir + !!S->draft_model + !!S->exit_head + (S->exit_layer >= 0) != 1)
        cli_usage_error("spec", "give exactly one of --draft DIR (DFlash), --draft-model DIR, --exit-head DIR or --exit-layer L");
    if (strcmp(S->exit_mode, "reuse") && strcmp(S->exit_mode, "plain"))
        cli_usage_error("spec", "--exit-mode: expected reuse or plain, got '%s'", S->exit_mode);
    if (x->adapter && !x->draft_dir) cli_usage_error("spec", "--adapter goes with --draft (a DFlash draft)");
    if (given && x->dataset) cli_usage_error("spec", "--dataset excludes --prompt/--chat/--ids");
    if (given) prompt_require("spec", pf);
    if (strcmp(x->kv, "f32") && strcmp(x->kv, "f16")) cli_usage_error("spec", "--kv-dtype must be f32 or f16");
    /* flags that would be ignored are errors */
    if (!x->dataset && (x->limit || S->turn || x->prompt_field))
        cli_usage_error("spec", "--limit, --turn and --prompt-field apply to --dataset only");
    if (!pf->chat && pf->system) cli_usage_error("spec", "--system applies to --chat only");
    if (S->out) cli_check_out_file("spec", "--out", S->out);
    return true;
}

/* --dataset: each record through the chat template; --limit N takes N drawn with seed 0. */
static job *dataset_jobs(const spec_opts *S, vkd_tok *tok, size_t *njobs) {
    const exp_common *x = &S->c;
    vkd_ds_options o = {.prompt_field = x->prompt_field, .answer_field = "", .turn = (int)S->turn};
    vkd_ds *ds;
    vkd_error err = {0};
    cli_check(vkd_ds_load(x->dataset, &o, &ds, &err), &err);
    if (ds->count == 0) cli_fatal("%s: the dataset has no records", x->dataset);
    size_t n = x->limit && (size_t)x->limit < ds->count ? (size_t)x->limit : ds->count;
    size_t *order = x->limit ? draw_records(ds->count) : NULL; /* shuffled with seed 0, the first N */
    job *jobs = calloc(n, sizeof *jobs);
    for (size_t k = 0; k < n; k++) {
        const vkd_ds_record *rec = &ds->records[order ? order[k] : k];
        char *text = chat_render_record("spec", tok, rec, S->pf.think);
        jobs[k].id = strdup(rec->id);
        jobs[k].prompt = rec->prompt ? strdup(rec->prompt) : NULL;
        jobs[k].ids = encode_rendered(tok, text, &jobs[k].n);
        free(text);
        if (jobs[k].n == 0) cli_fatal("%s:%zu: the prompt encodes to no tokens", x->dataset, rec->line);
    }
    free(order);
    vkd_ds_free(ds);
    *njobs = n;
    return jobs;
}

/* The prompts: one from --prompt/--chat/--ids, a dataset, or the built-in set. */
static job *load_jobs(const spec_opts *S, vkd_tok *tok, size_t *njobs) {
    const prompt_flags *pf = &S->pf;
    if (pf->prompt || pf->chat || pf->ids) {
        job *jobs = calloc(1, sizeof *jobs);
        jobs[0].id = strdup("prompt");
        jobs[0].prompt = pf->chat ? strdup(pf->chat) : pf->prompt ? strdup(pf->prompt) : NULL;
        jobs[0].ids = prompt_encode("spec", pf, tok, &jobs[0].n);
        *njobs = 1;
        return jobs;
    }
    if (S->c.dataset) return dataset_jobs(S, tok, njobs);
    *njobs = builtin_prompt_count;
    job *jobs = calloc(*njobs, sizeof *jobs);
    for (size_t k = 0; k < *njobs; k++) {
        char *text = chat_render("spec", tok, NULL, builtin_prompts[k].text, pf->think);
        char id[32];
        snprintf(id, sizeof id, "%s-%zu", builtin_prompts[k].kind, k);
        jobs[k].id = strdup(id);
        jobs[k].prompt = strdup(builtin_prompts[k].text);
        jobs[k].ids = encode_rendered(tok, text, &jobs[k].n);
        free(text);
    }
    return jobs;
}

/* Totals over the prompts. */
typedef struct totals {
    uint64_t *hist;                  /* [B + 1] acceptance lengths */
    uint64_t tokens, steps, commit, spec_dec, base_dec;
    double spec_s, base_s, draft_s, verify_s;
    compute_budget cb;               /* seeds 001/004 item 0.4, for these prompts */
} totals;

/* One prompt: speculative decoding (and the plain baseline); its JSON object. print_text: the
 * decoded text on stdout (label: after the prompt's id). */
static cJSON *spec_one(const spec_opts *S, exp_models *m, vkd_draft *p, const vkd_generate_options *go,
                       const job *jb, bool print_text, bool label, totals *T) {
    vkd_error err = {0};
    uint32_t B = p->gamma + 1;
    vkd_spec_result res;
    cli_check(vkd_spec_generate(m->t, p, m->rec, jb->ids, (uint32_t)jb->n, go, &res, &err), &err);
    double spec_per_tok = res.n > 1 ? res.stats.total_s / (res.n - 1) : 0;
    double base_per_tok = 0;
    bool base_same = true;
    if (S->baseline) {
        vkd_generate_result g;
        cli_check(vkd_generate(m->t, m->rec, jb->ids, (uint32_t)jb->n, go, &g, &err), &err);
        base_per_tok = g.n > 1 ? g.decode_s / (g.n - 1) : 0;
        if (S->temp == 0) base_same = g.n == res.n && !memcmp(g.ids, res.ids, g.n * 4);
        T->base_s += g.decode_s;
        T->base_dec += g.n > 1 ? g.n - 1 : 0;
        free(g.ids);
    }
    if (!base_same)
        cli_fatal("spec: prompt %s: greedy speculative output differs from plain greedy decoding "
                  "(a bug: please report)", jb->id);
    T->tokens += res.n;
    T->steps += res.stats.steps;
    T->spec_s += res.stats.total_s;
    T->draft_s += res.stats.draft_s;
    T->verify_s += res.stats.verify_s;
    T->spec_dec += res.n > 1 ? res.n - 1 : 0;
    T->cb.prompt_tokens += jb->n;
    T->cb.prefill_s += res.stats.prefill_s;
    if (jb->n + res.n > T->cb.max_len) T->cb.max_len = jb->n + res.n;
    for (uint32_t s = 0; s < res.stats.steps; s++) {
        T->hist[res.stats.accept[s] <= B ? res.stats.accept[s] : B]++;
        T->commit += res.stats.accept[s];
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", jb->id);
    if (jb->prompt) cJSON_AddStringToObject(o, "prompt", jb->prompt);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)jb->n);
    cJSON *ia = cJSON_AddArrayToObject(o, "ids");
    for (uint32_t i = 0; i < res.n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(res.ids[i]));
    if (m->tok) {
        char *text = decode_generated(m->tok, res.ids, res.n);
        cJSON_AddStringToObject(o, "text", text);
        if (print_text && label) printf("[%s] %s\n\n", jb->id, text);
        else if (print_text) printf("%s\n", text);
        free(text);
    }
    cJSON *aa = cJSON_AddArrayToObject(o, "acceptance_lengths");
    for (uint32_t s = 0; s < res.stats.steps; s++) cJSON_AddItemToArray(aa, cJSON_CreateNumber(res.stats.accept[s]));
    cJSON_AddNumberToObject(o, "tau", res.stats.tau);
    cJSON_AddNumberToObject(o, "tok_s", spec_per_tok > 0 ? 1.0 / spec_per_tok : 0);
    cJSON_AddBoolToObject(o, "stopped", res.stopped);
    if (S->baseline) {
        cJSON_AddNumberToObject(o, "baseline_tok_s", base_per_tok > 0 ? 1.0 / base_per_tok : 0);
        cJSON_AddNumberToObject(o, "speedup", spec_per_tok > 0 ? base_per_tok / spec_per_tok : 0);
    }
    vkd_spec_result_free(&res);
    return o;
}

/* The "total" object of the JSON document, and the text report unless --json. */
static void report(const spec_opts *S, totals *T, const exp_models *m, const vkd_draft *p, size_t njobs, cJSON *doc) {
    uint32_t B = p->gamma + 1;
    const uint64_t *hist = T->hist;
    double tau = T->steps ? (double)T->commit / T->steps : 0;
    double spec_tps = T->spec_s > 0 ? T->spec_dec / T->spec_s : 0;
    double base_tps = T->base_s > 0 ? T->base_dec / T->base_s : 0;
    cJSON *tj = cJSON_AddObjectToObject(doc, "total");
    cJSON_AddNumberToObject(tj, "prompts", (double)njobs);
    cJSON_AddNumberToObject(tj, "tokens", (double)T->tokens);
    cJSON_AddNumberToObject(tj, "steps", (double)T->steps);
    cJSON_AddNumberToObject(tj, "tau", tau);
    cJSON_AddNumberToObject(tj, "tok_s", spec_tps);
    cJSON_AddNumberToObject(tj, "draft_s", T->draft_s);
    cJSON_AddNumberToObject(tj, "verify_s", T->verify_s);
    cJSON_AddNumberToObject(tj, "block_size", B);
    cJSON_AddStringToObject(tj, "proposer", p->name);
    cJSON *hj = cJSON_AddArrayToObject(tj, "acceptance_histogram");
    for (uint32_t a = 1; a <= B; a++) cJSON_AddItemToArray(hj, cJSON_CreateNumber((double)hist[a]));
    if (S->baseline) {
        cJSON_AddNumberToObject(tj, "baseline_tok_s", base_tps);
        cJSON_AddNumberToObject(tj, "speedup", base_tps > 0 ? spec_tps / base_tps : 0);
    }
    compute_budget *cb = &T->cb;
    cb->prompts = njobs;
    cb->draft_calls = cb->verify_steps = T->steps; /* one draft proposal and one verification per step */
    cb->draft_s = T->draft_s;
    cb->verify_s = T->verify_s;
    compute_budget_sizes(m->t, m->d, cb);
    if (m->dm) { /* an autoregressive draft: its own KV cache, no taps */
        compute_budget ar = {0};
        compute_budget_sizes(m->dm, NULL, &ar);
        cb->draft_kv_per_token = ar.target_kv_per_token;
    }
    cJSON_AddItemToObject(tj, "compute_budget", compute_budget_json(cb));
    if (S->json) {
        char *s = cJSON_Print(doc);
        puts(s);
        free(s);
        return;
    }
    printf("spec: %zu prompt(s), %llu tokens, %s proposer, block %u, %s\n", njobs, (unsigned long long)T->tokens,
           p->name, B, S->temp > 0 ? "sampling" : "greedy");
    printf("tau (mean tokens per target forward): %.3f over %llu steps\n", tau, (unsigned long long)T->steps);
    printf("acceptance length histogram:\n");
    uint64_t hmax = 1;
    for (uint32_t a = 1; a <= B; a++) if (hist[a] > hmax) hmax = hist[a];
    for (uint32_t a = 1; a <= B; a++)
        printf("  %3u %7llu %.*s\n", a, (unsigned long long)hist[a], (int)(40 * hist[a] / hmax),
               "########################################");
    printf("decode: %.2f tok/s (draft %.2fs, verify %.2fs)\n", spec_tps, T->draft_s, T->verify_s);
    if (S->baseline)
        printf("baseline: %.2f tok/s  ->  speed-up %.2fx\n", base_tps, base_tps > 0 ? spec_tps / base_tps : 0);
    compute_budget_print(stdout, cb);
}

int vkd_cmd_spec(int argc, char **argv) {
    spec_opts S = {.c = {.cmd = "spec", .kv = "f32", .tok_optional = true}, .gamma = 4, .max_new = 128, .top_p = 1,
                   .exit_mode = "reuse", .exit_layer = -1};
    if (!parse_args(argc, argv, &S)) return 0;
    exp_common *x = &S.c;
    exp_models m = {0};
    vkd_error err = {0};
    vkd_result tr = vkd_tok_load(x->target_dir, &m.tok, &err);
    if (tr && !S.pf.ids) cli_check(tr, &err);
    if (!tr) x->tok_optional = false;

    size_t njobs;
    job *jobs = load_jobs(&S, m.tok, &njobs);
    size_t longest = 0;
    for (size_t k = 0; k < njobs; k++) if (jobs[k].n > longest) longest = jobs[k].n;
    /* room for two blocks past the last token; at least one block must fit */
    uint64_t need = ctx_len_fit(x->target_dir, longest + (uint64_t)S.max_new + 2 * 64 + 2,
                                longest + (uint64_t)S.max_new + 66,
                                "spec: the longest prompt (%zu tokens) + --max-new-tokens (%ld) + a block", longest,
                                S.max_new);
    x->draft_model = S.draft_model;
    exp_load_models(x, (uint32_t)need, &m);
    vkd_draft *p;
    vkd_exit *ex = NULL;
    if (m.d) cli_check(vkd_draft_dflash(m.d, &p, &err), &err);
    else if (m.dm) cli_check(vkd_draft_ar(m.dm, (uint32_t)S.gamma, &p, &err), &err);
    else {
        if (S.exit_head) cli_check(vkd_exit_load(m.t, x->target_dir, S.exit_head, &ex, &err), &err);
        else cli_check(vkd_exit_create(m.t, x->target_dir, (uint32_t)S.exit_layer, &ex, &err), &err);
        cli_check(vkd_exit_freeze(ex, &err), &err);
        cli_check(vkd_draft_exit(ex, (uint32_t)S.gamma, !strcmp(S.exit_mode, "reuse"), &p, &err), &err);
    }

    vkd_generate_options go = {.max_new_tokens = (uint32_t)S.max_new, .stop_ids = m.stops, .nstop = m.nstop};
    go.sample = (vkd_sample_params){.temperature = (float)S.temp, .top_k = (uint32_t)S.top_k,
                                    .top_p = (float)S.top_p, .seed = x->seed};
    totals T = {.hist = calloc(p->gamma + 2, sizeof *T.hist)};
    cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "prompts");
    exp_buf lines = {0};
    if (S.baseline && njobs) {
        /* the first dispatch of each pipeline compiles it (10-150 ms each on lavapipe): run the
         * first prompt once untimed, so that neither side of the comparison pays for it */
        totals W = {.hist = calloc(p->gamma + 2, sizeof *W.hist)};
        double t0 = vkd_now();
        cJSON_Delete(spec_one(&S, &m, p, &go, &jobs[0], false, false, &W));
        fprintf(stderr, "spec: warm-up, prompt %s once untimed (pipelines compile at first use): %.2f s\n",
                jobs[0].id, vkd_now() - t0);
        free(W.hist);
    }
    double t_start = vkd_now();
    for (size_t k = 0; k < njobs; k++) {
        cJSON *o = spec_one(&S, &m, p, &go, &jobs[k], !S.json, njobs > 1, &T);
        if (S.out) {
            char *line = cJSON_PrintUnformatted(o);
            exp_buf_printf(&lines, "%s\n", line);
            free(line);
        }
        cJSON_AddItemToArray(arr, o);
        progress(k + 1, njobs, vkd_now() - t_start);
    }
    if (S.out) cli_check(vkd_write_atomic(S.out, lines.s ? lines.s : "", lines.n, &err), &err);
    report(&S, &T, &m, p, njobs, doc);
    cJSON_Delete(doc);
    exp_buf_free(&lines);
    free(T.hist);
    for (size_t k = 0; k < njobs; k++) { free(jobs[k].id); free(jobs[k].prompt); free(jobs[k].ids); }
    free(jobs);
    vkd_draft_free(p);
    vkd_exit_free(ex);
    exp_free_models(&m);
    return 0;
}
