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
#include "prompt.h"
#include "vkd_spec.h"
#include "vkd_ttt.h"

static void usage(void) {
    printf("usage: vkdraft spec --target DIR (--draft DIR [--adapter DIR] | --draft-model DIR [--gamma N]\n"
           "           | (--exit-head DIR | --exit-layer L) [--exit-mode reuse|plain] [--gamma N])\n"
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
           "per-token decode times). Prints tau (mean tokens committed per target forward),\n"
           "the acceptance-length histogram and tokens/s. --json prints one JSON document\n"
           "(per prompt: ids, acceptance_lengths, tau, tok_s, speedup; plus totals); --out\n"
           "writes one JSON line per prompt, atomically. Defaults: --max-new-tokens 128,\n"
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

int vkd_cmd_spec(int argc, char **argv) {
    const char *target_dir = NULL, *draft_dir = NULL, *draft_model = NULL, *adapter = NULL, *dataset = NULL,
               *prompt_field = NULL, *out = NULL, *kv = "f32", *exit_head = NULL, *exit_mode = "reuse";
    long exit_layer = -1;
    prompt_flags pf = {0};
    long block = 0, gamma = 4, limit = 0, max_new = 128, top_k = 0, turn = 0;
    double temp = 0, top_p = 1;
    unsigned long long seed = 0;
    bool baseline = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        const char *c = "spec";
        if (prompt_flag(c, &pf, argc, argv, &i)) continue;
        if ((v = cli_value(c, "--target", argc, argv, &i))) target_dir = v;
        else if ((v = cli_value(c, "--draft", argc, argv, &i))) draft_dir = v;
        else if ((v = cli_value(c, "--draft-model", argc, argv, &i))) draft_model = v;
        else if ((v = cli_value(c, "--adapter", argc, argv, &i))) adapter = v;
        else if ((v = cli_value(c, "--exit-head", argc, argv, &i))) exit_head = v;
        else if ((v = cli_value(c, "--exit-layer", argc, argv, &i))) exit_layer = cli_parse_long(c, "--exit-layer", v, 0, 1 << 20);
        else if ((v = cli_value(c, "--exit-mode", argc, argv, &i))) exit_mode = v;
        else if ((v = cli_value(c, "--gamma", argc, argv, &i))) gamma = cli_parse_long(c, "--gamma", v, 1, 63);
        else if ((v = cli_value(c, "--dataset", argc, argv, &i))) dataset = v;
        else if ((v = cli_value(c, "--prompt-field", argc, argv, &i))) prompt_field = v;
        else if ((v = cli_value(c, "--turn", argc, argv, &i))) turn = cli_parse_long(c, "--turn", v, 0, 100);
        else if ((v = cli_value(c, "--limit", argc, argv, &i))) limit = cli_parse_long(c, "--limit", v, 1, 1 << 30);
        else if ((v = cli_value(c, "--block-size", argc, argv, &i))) block = cli_parse_long(c, "--block-size", v, 2, 64);
        else if ((v = cli_value(c, "--max-new-tokens", argc, argv, &i))) max_new = cli_parse_long(c, "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value(c, "--temperature", argc, argv, &i))) temp = cli_parse_double(c, "--temperature", v, 0, 100);
        else if ((v = cli_value(c, "--top-k", argc, argv, &i))) top_k = cli_parse_long(c, "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value(c, "--top-p", argc, argv, &i))) top_p = cli_parse_double(c, "--top-p", v, 0, 1);
        else if ((v = cli_value(c, "--seed", argc, argv, &i))) seed = (unsigned long long)cli_parse_long(c, "--seed", v, 0, __LONG_MAX__);
        else if ((v = cli_value(c, "--out", argc, argv, &i))) out = v;
        else if ((v = cli_value(c, "--kv-dtype", argc, argv, &i))) kv = v;
        else if (cli_is("--baseline", argv[i])) baseline = true;
        else if (cli_is("--json", argv[i])) json = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error(c, "unknown flag '%s'", argv[i]);
    }
    if (!target_dir) cli_usage_error("spec", "--target DIR is required");
    if (!!draft_dir + !!draft_model + !!exit_head + (exit_layer >= 0) != 1)
        cli_usage_error("spec", "give exactly one of --draft DIR (DFlash), --draft-model DIR, --exit-head DIR or --exit-layer L");
    if (strcmp(exit_mode, "reuse") && strcmp(exit_mode, "plain"))
        cli_usage_error("spec", "--exit-mode: expected reuse or plain, got '%s'", exit_mode);
    if (adapter && !draft_dir) cli_usage_error("spec", "--adapter goes with --draft (a DFlash draft)");
    if ((pf.prompt || pf.chat || pf.ids) && dataset) cli_usage_error("spec", "--dataset excludes --prompt/--chat/--ids");
    if (pf.prompt || pf.chat || pf.ids) prompt_require("spec", &pf);
    if (strcmp(kv, "f32") && strcmp(kv, "f16")) cli_usage_error("spec", "--kv-dtype must be f32 or f16");
    /* flags that would be ignored are errors */
    if (!dataset && (limit || turn || prompt_field))
        cli_usage_error("spec", "--limit, --turn and --prompt-field apply to --dataset only");
    if (!pf.chat && pf.system) cli_usage_error("spec", "--system applies to --chat only");
    if (out) cli_check_out_file("spec", "--out", out);

    vkd_error err = {0};
    vkd_tok *tok = NULL;
    vkd_result tr = vkd_tok_load(target_dir, &tok, &err);
    if (tr && !pf.ids) cli_check(tr, &err);

    /* prompts */
    job *jobs = NULL;
    size_t njobs = 0;
    if (pf.prompt || pf.chat || pf.ids) {
        jobs = calloc(1, sizeof *jobs);
        jobs[0].id = strdup("prompt");
        jobs[0].ids = prompt_encode("spec", &pf, tok, &jobs[0].n);
        njobs = 1;
    } else if (dataset) {
        vkd_ds_options o = {.prompt_field = prompt_field, .answer_field = "", .turn = (int)turn};
        vkd_ds *ds;
        cli_check(vkd_ds_load(dataset, &o, &ds, &err), &err);
        if (ds->count == 0) cli_fatal("%s: the dataset has no records", dataset);
        size_t *order = malloc(ds->count * sizeof *order);
        for (size_t i = 0; i < ds->count; i++) order[i] = i;
        if (limit) { /* shuffle with seed 0, then take the first N */
            unsigned long long s = 0x9E3779B97F4A7C15ull;
            for (size_t i = ds->count - 1; i > 0; i--) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                size_t j = (size_t)(s % (i + 1));
                size_t tmp = order[i]; order[i] = order[j]; order[j] = tmp;
            }
        }
        njobs = limit && (size_t)limit < ds->count ? (size_t)limit : ds->count;
        jobs = calloc(njobs, sizeof *jobs);
        for (size_t k = 0; k < njobs; k++) {
            const vkd_ds_record *rec = &ds->records[order[k]];
            char *text = chat_render_record("spec", tok, rec, pf.think);
            jobs[k].id = strdup(rec->id);
            jobs[k].ids = encode_rendered(tok, text, &jobs[k].n);
            free(text);
            if (jobs[k].n == 0) cli_fatal("%s:%zu: the prompt encodes to no tokens", dataset, rec->line);
        }
        free(order);
        vkd_ds_free(ds);
    } else {
        if (!tok) cli_check(tr, &err);
        njobs = builtin_prompt_count;
        jobs = calloc(njobs, sizeof *jobs);
        for (size_t k = 0; k < njobs; k++) {
            char *text = chat_render("spec", tok, NULL, builtin_prompts[k].text, pf.think);
            char id[32];
            snprintf(id, sizeof id, "%s-%zu", builtin_prompts[k].kind, k);
            jobs[k].id = strdup(id);
            jobs[k].ids = encode_rendered(tok, text, &jobs[k].n);
            free(text);
        }
    }

    /* models */
    size_t longest = 0;
    for (size_t k = 0; k < njobs; k++) if (jobs[k].n > longest) longest = jobs[k].n;
    vkd_cfg tc;
    cli_check(vkd_cfg_load(target_dir, &tc, &err), &err);
    uint64_t need = longest + (uint64_t)max_new + 2 * 64 + 2;
    if ((int64_t)need > tc.max_position_embeddings) need = (uint64_t)tc.max_position_embeddings;
    if (longest + (uint64_t)max_new + 66 > need)
        cli_fatal("spec: the longest prompt (%zu tokens) + --max-new-tokens (%ld) exceeds the "
                  "target's max_position_embeddings (%lld)", longest, max_new, (long long)tc.max_position_embeddings);
    vkd_ctx *ctx;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    vkd_target_options to = {.ctx_len = (uint32_t)need, .kv_dtype = strcmp(kv, "f16") ? VKD_DTYPE_F32 : VKD_DTYPE_F16};
    vkd_target *t;
    cli_check(vkd_target_load(ctx, target_dir, &to, &t, &err), &err);
    vkd_dflash *d = NULL;
    vkd_ttt_adapter *ad = NULL;
    vkd_target *dm = NULL;
    vkd_exit *ex = NULL;
    vkd_draft *p;
    if (draft_dir) {
        vkd_dflash_options dop = {.block_size = (uint32_t)block, .kv_dtype = to.kv_dtype};
        cli_check(vkd_dflash_load(ctx, t, draft_dir, &dop, &d, &err), &err);
        if (adapter && vkd_ttt_adapter_load(d, adapter, &ad, &err)) cli_fatal("--adapter %s: %s", adapter, err.msg);
        cli_check(vkd_draft_dflash(d, &p, &err), &err);
    } else if (exit_head || exit_layer >= 0) {
        if (exit_head) cli_check(vkd_exit_load(t, target_dir, exit_head, &ex, &err), &err);
        else cli_check(vkd_exit_create(t, target_dir, (uint32_t)exit_layer, &ex, &err), &err);
        cli_check(vkd_exit_freeze(ex, &err), &err);
        cli_check(vkd_draft_exit(ex, (uint32_t)gamma, !strcmp(exit_mode, "reuse"), &p, &err), &err);
    } else {
        cli_check(vkd_target_load(ctx, draft_model, &to, &dm, &err), &err);
        if (dm->vocab != t->vocab)
            cli_fatal("spec: the draft model's vocabulary (%u) differs from the target's (%u)", dm->vocab, t->vocab);
        cli_check(vkd_draft_ar(dm, (uint32_t)gamma, &p, &err), &err);
    }
    uint32_t B = p->gamma + 1;

    vkd_generate_options go = {.max_new_tokens = (uint32_t)max_new};
    go.sample = (vkd_sample_params){.temperature = (float)temp, .top_k = (uint32_t)top_k,
                                    .top_p = (float)top_p, .seed = seed};
    int32_t stops[2 * VKD_CFG_MAX_EOS];
    go.stop_ids = stops;
    go.nstop = target_stop_ids(t, stops, 2 * VKD_CFG_MAX_EOS);

    vkd_rec *rec;
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    uint64_t *hist = calloc(B + 1, sizeof *hist);
    uint64_t tot_tokens = 0, tot_steps = 0, tot_commit = 0;
    double tot_spec_s = 0, tot_base_s = 0, tot_draft_s = 0, tot_verify_s = 0;
    uint64_t tot_spec_dec = 0, tot_base_dec = 0;
    compute_budget cb = {.prompts = njobs}; /* seeds 001/004 item 0.4, for these prompts */
    cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "prompts");
    char *lines = NULL;
    size_t lines_len = 0;
    double t_start = vkd_now();
    for (size_t k = 0; k < njobs; k++) {
        vkd_spec_result res;
        cli_check(vkd_spec_generate(t, p, rec, jobs[k].ids, (uint32_t)jobs[k].n, &go, &res, &err), &err);
        double spec_per_tok = res.n > 1 ? res.stats.total_s / (res.n - 1) : 0;
        double base_per_tok = 0;
        bool base_same = true;
        if (baseline) {
            vkd_generate_result g;
            cli_check(vkd_generate(t, rec, jobs[k].ids, (uint32_t)jobs[k].n, &go, &g, &err), &err);
            base_per_tok = g.n > 1 ? g.decode_s / (g.n - 1) : 0;
            if (temp == 0) base_same = g.n == res.n && !memcmp(g.ids, res.ids, g.n * 4);
            tot_base_s += g.decode_s;
            tot_base_dec += g.n > 1 ? g.n - 1 : 0;
            free(g.ids);
        }
        if (!base_same)
            cli_fatal("spec: prompt %s: greedy speculative output differs from plain greedy decoding "
                      "(a bug: please report)", jobs[k].id);
        tot_tokens += res.n;
        tot_steps += res.stats.steps;
        tot_spec_s += res.stats.total_s;
        tot_draft_s += res.stats.draft_s;
        tot_verify_s += res.stats.verify_s;
        tot_spec_dec += res.n > 1 ? res.n - 1 : 0;
        cb.prompt_tokens += jobs[k].n;
        cb.prefill_s += res.stats.prefill_s;
        if (jobs[k].n + res.n > cb.max_len) cb.max_len = jobs[k].n + res.n;
        for (uint32_t s = 0; s < res.stats.steps; s++) {
            hist[res.stats.accept[s] <= B ? res.stats.accept[s] : B]++;
            tot_commit += res.stats.accept[s];
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", jobs[k].id);
        cJSON_AddNumberToObject(o, "prompt_tokens", (double)jobs[k].n);
        cJSON *ia = cJSON_AddArrayToObject(o, "ids");
        for (uint32_t i = 0; i < res.n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(res.ids[i]));
        if (tok) {
            char *text = decode_generated(tok, res.ids, res.n);
            cJSON_AddStringToObject(o, "text", text);
            if (!json && njobs == 1) printf("%s\n", text);
            free(text);
        }
        cJSON *aa = cJSON_AddArrayToObject(o, "acceptance_lengths");
        for (uint32_t s = 0; s < res.stats.steps; s++) cJSON_AddItemToArray(aa, cJSON_CreateNumber(res.stats.accept[s]));
        cJSON_AddNumberToObject(o, "tau", res.stats.tau);
        cJSON_AddNumberToObject(o, "tok_s", spec_per_tok > 0 ? 1.0 / spec_per_tok : 0);
        cJSON_AddBoolToObject(o, "stopped", res.stopped);
        if (baseline) {
            cJSON_AddNumberToObject(o, "baseline_tok_s", base_per_tok > 0 ? 1.0 / base_per_tok : 0);
            cJSON_AddNumberToObject(o, "speedup", spec_per_tok > 0 ? base_per_tok / spec_per_tok : 0);
        }
        if (out) {
            char *line = cJSON_PrintUnformatted(o);
            size_t ll = strlen(line);
            lines = realloc(lines, lines_len + ll + 2);
            memcpy(lines + lines_len, line, ll);
            lines[lines_len + ll] = '\n';
            lines_len += ll + 1;
            free(line);
        }
        cJSON_AddItemToArray(arr, o);
        vkd_spec_result_free(&res);
        progress(k + 1, njobs, vkd_now() - t_start);
    }
    double tau = tot_steps ? (double)tot_commit / tot_steps : 0;
    double spec_tps = tot_spec_s > 0 ? tot_spec_dec / tot_spec_s : 0;
    double base_tps = tot_base_s > 0 ? tot_base_dec / tot_base_s : 0;
    cJSON *tj = cJSON_AddObjectToObject(doc, "total");
    cJSON_AddNumberToObject(tj, "prompts", (double)njobs);
    cJSON_AddNumberToObject(tj, "tokens", (double)tot_tokens);
    cJSON_AddNumberToObject(tj, "steps", (double)tot_steps);
    cJSON_AddNumberToObject(tj, "tau", tau);
    cJSON_AddNumberToObject(tj, "tok_s", spec_tps);
    cJSON_AddNumberToObject(tj, "draft_s", tot_draft_s);
    cJSON_AddNumberToObject(tj, "verify_s", tot_verify_s);
    cJSON_AddNumberToObject(tj, "block_size", B);
    cJSON_AddStringToObject(tj, "proposer", p->name);
    cJSON *hj = cJSON_AddArrayToObject(tj, "acceptance_histogram");
    for (uint32_t a = 1; a <= B; a++) cJSON_AddItemToArray(hj, cJSON_CreateNumber((double)hist[a]));
    if (baseline) {
        cJSON_AddNumberToObject(tj, "baseline_tok_s", base_tps);
        cJSON_AddNumberToObject(tj, "speedup", base_tps > 0 ? spec_tps / base_tps : 0);
    }
    cb.draft_calls = cb.verify_steps = tot_steps; /* one draft proposal and one verification per step */
    cb.draft_s = tot_draft_s;
    cb.verify_s = tot_verify_s;
    compute_budget_sizes(t, d, &cb);
    if (!d) { /* an autoregressive draft: its own KV cache, no taps */
        compute_budget ar = {0};
        compute_budget_sizes(dm, NULL, &ar);
        cb.draft_kv_per_token = ar.target_kv_per_token;
    }
    cJSON_AddItemToObject(tj, "compute_budget", compute_budget_json(&cb));
    if (out) cli_check(cli_write_atomic(out, lines ? lines : "", lines_len, &err), &err);
    if (json) {
        char *s = cJSON_Print(doc);
        puts(s);
        free(s);
    } else {
        printf("spec: %zu prompt(s), %llu tokens, %s proposer, block %u, %s\n", njobs,
               (unsigned long long)tot_tokens, p->name, B, temp > 0 ? "sampling" : "greedy");
        printf("tau (mean tokens per target forward): %.3f over %llu steps\n", tau, (unsigned long long)tot_steps);
        printf("acceptance length histogram:\n");
        uint64_t hmax = 1;
        for (uint32_t a = 1; a <= B; a++) if (hist[a] > hmax) hmax = hist[a];
        for (uint32_t a = 1; a <= B; a++)
            printf("  %3u %7llu %.*s\n", a, (unsigned long long)hist[a], (int)(40 * hist[a] / hmax),
                   "########################################");
        printf("decode: %.2f tok/s (draft %.2fs, verify %.2fs)\n", spec_tps, tot_draft_s, tot_verify_s);
        if (baseline)
            printf("baseline: %.2f tok/s  ->  speed-up %.2fx\n", base_tps, base_tps > 0 ? spec_tps / base_tps : 0);
        compute_budget_print(stdout, &cb);
    }
    if (vkd_ctx_validation_count(ctx))
        cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(ctx));
    cJSON_Delete(doc);
    free(lines);
    free(hist);
    for (size_t k = 0; k < njobs; k++) { free(jobs[k].id); free(jobs[k].ids); }
    free(jobs);
    vkd_draft_free(p);
    vkd_ttt_adapter_free(ad);
    vkd_dflash_free(d);
    vkd_target_free(dm);
    vkd_exit_free(ex);
    vkd_rec_destroy(rec);
    vkd_target_free(t);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    vkd_tok_free(tok);
    return 0;
}
