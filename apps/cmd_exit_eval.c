/* vkdraft exit-eval (seed 003): quality, acceptance and speed of early-exit heads.
 *
 * Per head (a folder written by exit-train, checked to belong to --model): teacher-forced
 * quality on the held-out sequences of --data (the split exit-train makes with the same
 * --seed, --holdout and --seq-len; methods/vkd_exit_eval.h), then speculative decoding on
 * the prompts of --prompts (its held-out sequences, each cut to its first half: the seed's
 * "take half" rule) with the self-speculative (reuse) and the plain variant of the exit
 * draft, and the overlap of target and head along the reuse variant's output. The target
 * alone decodes the same prompts once (the "vanilla" record). Every run decodes exactly
 * --max-new-tokens (no stop tokens), so all rows compare equal work. One journal record per
 * head: --resume skips heads already evaluated; the outputs come from the whole journal
 * (apps/exit_eval_out.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "cmds.h"
#include "exit_data.h"
#include "exit_eval_out.h"
#include "exp.h"
#include "vkd_exit_eval.h"
#include "vkd_generate.h"
#include "vkd_spec.h"

#define CMD "exit-eval"
#define MAX_HEADS 64

static void usage(void) {
    printf("usage: vkdraft exit-eval --model DIR --heads DIR [DIR..] --data FILE --prompts FILE --out DIR\n"
           "           [--gamma G] [--temperature T] [--top-p P] [--top-k K] [--max-new-tokens N]\n"
           "           [--topk-acc K] [--seq-len N] [--holdout F] [--max-sequences N] [--max-prompts N]\n"
           "           [--bootstrap N] [--seed S] [--resume | --overwrite] [--quiet]\n\n"
           "Evaluates early-exit heads written by vkdraft exit-train (seed 003's metrics section).\n"
           "Quality, on the held-out sequences of --data (the split exit-train makes with the same\n"
           "--seed, --holdout and --seq-len), teacher-forced, rows 1..n-2 of each sequence (the first\n"
           "token masked as in training): KL(target || head) in nats/token at the head's training\n"
           "temperature and at T = 1 (unscaled), CE and perplexity of the head against the next\n"
           "tokens, top-1 and top-k accuracy (label ranked first / among the first K by the head).\n"
           "Speculative decoding, on the held-out sequences of --prompts cut to their first half\n"
           "(\"take half\"), each decoding exactly --max-new-tokens (stop tokens ignored) with the\n"
           "sampling policy below: the target alone (vanilla), the self-speculative draft that\n"
           "reuses the target's KV cache (reuse) and the truncated model with its own cache (plain).\n"
           "E[accepted] = draft tokens accepted per verification, accept_rate = E[accepted]/gamma,\n"
           "target calls per token = verifications / tokens, overlap = mean over the generated\n"
           "positions (reuse variant's output, teacher-forced) of sum_v min(p, q) after the same\n"
           "warp, TV = 1 - overlap; tokens/s = tokens / decode time, speed-up = spec / vanilla.\n"
           "Peak memory: the process's peak resident set (getrusage; on a software Vulkan driver\n"
           "it includes device memory, on a GPU it does not: the runtime keeps no device total).\n"
           "95%% bootstrap CIs over sequences (quality) and prompts (decoding).\n\n"
           "  --model DIR            target model folder\n"
           "  --heads DIR..          head folders (exit.safetensors + exit_config.json); repeatable\n"
           "  --data FILE            held-out quality data (as exit-train's --data)\n"
           "  --prompts FILE         prompt source (JSONL chat / prompt+response, or plain text)\n"
           "  --out DIR              results folder (config.json, examples.jsonl, results.csv,\n"
           "                         summary.json, report.txt, figures .png and .pdf)\n"
           "  --gamma G              draft tokens per verification (default 4)\n"
           "  --temperature T        sampling temperature, 0: greedy (default 1)\n"
           "  --top-p P, --top-k K   sampling warps (default off)\n"
           "  --max-new-tokens N     tokens each decoding generates (default 64)\n"
           "  --topk-acc K           k of the top-k accuracy (default 5)\n"
           "  --seq-len N, --holdout F   exit-train's split (defaults 256, 0.1)\n"
           "  --max-sequences N      score the first N held-out sequences (default all)\n"
           "  --max-prompts N        decode the first N prompts (default all)\n"
           "  --bootstrap N          resamples of each 95%% CI (default 1000)\n"
           "  --seed S               split (as exit-train's --seed), sampling and bootstrap (default 0)\n"
           "  --resume, --overwrite  continue the run in --out / move it aside (docs/results.md)\n"
           "  --quiet                no progress lines\n\n"
           "The coarse layer sweep of seed 003 (exits 3,7,11,15, short training, then this):\n"
           "tools/exit-sweep.sh MODEL DATA PROMPTS OUT.\n");
}

typedef struct opts {
    exp_common c;
    const char *heads[MAX_HEADS];
    size_t nheads;
    const char *data, *prompts;
    long gamma, max_new, top_k, topk_acc, seq_len, max_seqs, max_prompts;
    double temperature, top_p, holdout;
} opts;

static bool parse_args(int argc, char **argv, opts *o) {
    *o = (opts){.gamma = 4, .max_new = 64, .topk_acc = 5, .seq_len = 256, .temperature = 1, .holdout = 0.1};
    exp_common *c = &o->c;
    c->cmd = CMD;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            usage();
            return false;
        } else if ((v = cli_value(CMD, "--model", argc, argv, &i))) c->target_dir = v;
        else if ((v = cli_value(CMD, "--out", argc, argv, &i))) c->out_dir = v;
        else if ((v = cli_value(CMD, "--data", argc, argv, &i))) o->data = v;
        else if ((v = cli_value(CMD, "--prompts", argc, argv, &i))) o->prompts = v;
        else if ((v = cli_value(CMD, "--heads", argc, argv, &i))) {
            for (;;) {
                if (o->nheads == MAX_HEADS) cli_usage_error(CMD, "--heads: at most %d folders", MAX_HEADS);
                o->heads[o->nheads++] = v;
                if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) break;
                v = argv[++i];
            }
        } else if ((v = cli_value(CMD, "--gamma", argc, argv, &i))) o->gamma = cli_parse_long(CMD, "--gamma", v, 1, 63);
        else if ((v = cli_value(CMD, "--max-new-tokens", argc, argv, &i)))
            o->max_new = cli_parse_long(CMD, "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value(CMD, "--top-k", argc, argv, &i))) o->top_k = cli_parse_long(CMD, "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value(CMD, "--topk-acc", argc, argv, &i)))
            o->topk_acc = cli_parse_long(CMD, "--topk-acc", v, 1, 1 << 30);
        else if ((v = cli_value(CMD, "--seq-len", argc, argv, &i))) o->seq_len = cli_parse_long(CMD, "--seq-len", v, 3, 16384);
        else if ((v = cli_value(CMD, "--max-sequences", argc, argv, &i)))
            o->max_seqs = cli_parse_long(CMD, "--max-sequences", v, 1, 1L << 40);
        else if ((v = cli_value(CMD, "--max-prompts", argc, argv, &i)))
            o->max_prompts = cli_parse_long(CMD, "--max-prompts", v, 1, 1L << 40);
        else if ((v = cli_value(CMD, "--temperature", argc, argv, &i)))
            o->temperature = cli_parse_double(CMD, "--temperature", v, 0, 100);
        else if ((v = cli_value(CMD, "--top-p", argc, argv, &i))) o->top_p = cli_parse_double(CMD, "--top-p", v, 0, 1);
        else if ((v = cli_value(CMD, "--holdout", argc, argv, &i))) o->holdout = cli_parse_double(CMD, "--holdout", v, 0, 0.9);
        else if ((v = cli_value(CMD, "--bootstrap", argc, argv, &i)))
            c->bootstrap = (uint32_t)cli_parse_long(CMD, "--bootstrap", v, 1, 1000000);
        else if ((v = cli_value(CMD, "--seed", argc, argv, &i)))
            c->seed = (unsigned long long)cli_parse_long(CMD, "--seed", v, 0, 0x7fffffffffffffffL);
        else if (cli_is("--resume", argv[i])) c->resume = true;
        else if (cli_is("--overwrite", argv[i])) c->overwrite = true;
        else if (cli_is("--quiet", argv[i])) c->quiet = true;
        else cli_usage_error(CMD, "unknown flag '%s'", argv[i]);
    }
    if (!c->target_dir || !c->out_dir || !o->nheads || !o->data || !o->prompts)
        cli_usage_error(CMD, "--model, --heads, --data, --prompts and --out are required");
    if (!c->out_dir[0]) cli_usage_error(CMD, "--out: empty path");
    if (c->resume && c->overwrite) cli_usage_error(CMD, "--resume and --overwrite exclude each other");
    c->dataset = o->data;
    return true;
}

/* The held-out sequences of path (at most max, 0: all); exits when there are none. */
static void held_out(const opts *o, vkd_tok *tok, const char *path, const char *what, long max, seqs *out) {
    seqs all = {0};
    exit_data_load(CMD, path, tok, (uint32_t)o->seq_len, &all);
    for (size_t i = 0; i < all.n; i++) {
        bool keep = exit_data_held(o->c.seed, i, o->holdout) && !(max && (long)out->n >= max);
        if (keep) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->ids = realloc(out->ids, out->cap * sizeof *out->ids);
                out->len = realloc(out->len, out->cap * sizeof *out->len);
                if (!out->ids || !out->len) cli_fatal("out of host memory");
            }
            out->ids[out->n] = all.ids[i];
            out->len[out->n++] = all.len[i];
        } else free(all.ids[i]);
    }
    free(all.ids);
    free(all.len);
    if (!out->n)
        cli_fatal("%s: no held-out sequence for %s (%zu sequences, --holdout %g, --seed %llu): use more text or a "
                  "larger --holdout", path, what, all.n, o->holdout, (unsigned long long)o->c.seed);
}

static void seqs_free(seqs *s) {
    for (size_t i = 0; i < s->n; i++) free(s->ids[i]);
    free(s->ids);
    free(s->len);
}

/* {"path", "fnv1a64" of the file's bytes} (exits when it cannot be read). */
static cJSON *file_identity(const char *path) {
    size_t n = 0;
    char *b = exp_slurp(path, &n);
    if (!b) cli_fatal("%s: cannot read (%s)", path, strerror(errno));
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)b[i]) * 0x100000001b3ull;
    free(b);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", path);
    cJSON_AddStringToObject(j, "fnv1a64", hex);
    return j;
}

static cJSON *params_of(const opts *o, const xe_settings *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON *h = cJSON_AddArrayToObject(p, "heads");
    char path[4200];
    for (size_t i = 0; i < o->nheads; i++) { /* exit_config.json names layer, T, steps and the target */
        snprintf(path, sizeof path, "%s/exit_config.json", o->heads[i]);
        cJSON_AddItemToArray(h, file_identity(path));
    }
    cJSON_AddItemToObject(p, "data", file_identity(o->data));
    cJSON_AddItemToObject(p, "prompts", file_identity(o->prompts));
    cJSON_AddNumberToObject(p, "gamma", s->gamma);
    cJSON_AddNumberToObject(p, "temperature", o->temperature);
    cJSON_AddNumberToObject(p, "top_p", o->top_p);
    cJSON_AddNumberToObject(p, "top_k", s->top_k);
    cJSON_AddNumberToObject(p, "max_new_tokens", s->max_new);
    cJSON_AddNumberToObject(p, "topk_acc", s->topk_acc);
    cJSON_AddNumberToObject(p, "seq_len", (double)o->seq_len);
    cJSON_AddNumberToObject(p, "holdout", o->holdout);
    cJSON_AddNumberToObject(p, "sequences", (double)s->nseq);
    cJSON_AddNumberToObject(p, "prompts_count", (double)s->nprompt);
    return p;
}

static cJSON *num_array(cJSON *r, const char *k) { return cJSON_AddArrayToObject(r, k); }
static void push(cJSON *a, double v) { cJSON_AddItemToArray(a, cJSON_CreateNumber(v)); }

typedef struct run {
    exp_models m;
    seqs data, prompts;        /* prompts: whole held-out sequences; the first half is the prompt */
    vkd_generate_options gen;
    xe_settings s;
    bool quiet;
} run;

static uint32_t half(uint32_t n) { return n / 2 ? n / 2 : 1; }

/* An untimed decoding of the first prompt (g NULL: the target alone), so that pipeline
 * creation and first-touch costs stay out of the timed runs. */
static void warm_up(run *R, vkd_draft *g) {
    vkd_error err = {0};
    uint32_t n = half(R->prompts.len[0]);
    if (g) {
        vkd_spec_result res = {0};
        cli_check(vkd_spec_generate(R->m.t, g, R->m.rec, R->prompts.ids[0], n, &R->gen, &res, &err), &err);
        vkd_spec_result_free(&res);
    } else {
        vkd_generate_result res = {0};
        cli_check(vkd_generate(R->m.t, R->m.rec, R->prompts.ids[0], n, &R->gen, &res, &err), &err);
        free(res.ids);
    }
}

static cJSON *vanilla_record(run *R) {
    vkd_error err = {0};
    warm_up(R, NULL);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", "vanilla");
    cJSON *tok = num_array(r, "tokens"), *pre = num_array(r, "prefill_s"), *dec = num_array(r, "decode_s");
    cJSON *outs = num_array(r, "outputs");
    for (size_t j = 0; j < R->prompts.n; j++) {
        vkd_generate_result g = {0};
        cli_check(vkd_generate(R->m.t, R->m.rec, R->prompts.ids[j], half(R->prompts.len[j]), &R->gen, &g, &err), &err);
        push(tok, g.n);
        push(pre, g.prefill_s);
        push(dec, g.decode_s);
        cJSON *ids = cJSON_CreateArray();
        for (uint32_t i = 0; i < g.n; i++) push(ids, g.ids[i]);
        cJSON_AddItemToArray(outs, ids);
        free(g.ids);
    }
    return r;
}

/* One variant's decoding of prompt j: its numbers appended; the output ids returned when want. */
static int32_t *spec_one(run *R, vkd_draft *g, size_t j, cJSON *r, const char *pfx, uint32_t *hist, uint32_t *nout) {
    vkd_error err = {0};
    vkd_spec_result res = {0};
    uint32_t n = half(R->prompts.len[j]);
    cli_check(vkd_spec_generate(R->m.t, g, R->m.rec, R->prompts.ids[j], n, &R->gen, &res, &err), &err);
    if (nout) {
        cJSON *ids = cJSON_CreateArray();
        for (uint32_t i = 0; i < res.n; i++) push(ids, res.ids[i]);
        cJSON_AddItemToArray(cJSON_GetObjectItem(r, "outputs"), ids);
    }
    double acc = 0;
    for (uint32_t i = 0; i < res.stats.steps; i++) {
        acc += res.stats.accept[i] - 1;
        if (hist && res.stats.accept[i] - 1 <= R->s.gamma) hist[res.stats.accept[i] - 1]++;
    }
    char k[64];
#define PUT(name, v) (snprintf(k, sizeof k, "%s_%s", pfx, name), push(cJSON_GetObjectItem(r, k), v))
    PUT("tokens", res.n);
    PUT("steps", res.stats.steps);
    PUT("accepted", acc);
    PUT("prefill_s", res.stats.prefill_s);
    PUT("decode_s", res.stats.total_s);
#undef PUT
    int32_t *ids = NULL;
    if (nout) {
        ids = malloc(((size_t)n + res.n) * sizeof *ids);
        if (!ids) cli_fatal("out of host memory");
        memcpy(ids, R->prompts.ids[j], n * sizeof *ids);
        memcpy(ids + n, res.ids, res.n * sizeof *ids);
        *nout = n + res.n;
    }
    vkd_spec_result_free(&res);
    return ids;
}

static cJSON *head_record(run *R, const char *dir, vkd_exit *e, exp_progress *pg, size_t *done) {
    vkd_error err = {0};
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", dir);
    cJSON_AddNumberToObject(r, "layer", e->layer);
    cJSON_AddNumberToObject(r, "train_temperature", e->info.temperature);
    cJSON_AddStringToObject(r, "trained", e->info.trained);
    cJSON_AddNumberToObject(r, "steps", (double)e->info.steps);
    static const char *qk[] = {"q_kl_t", "q_kl_1", "q_ce", "q_top1", "q_topk", "q_rows"};
    cJSON *qa[6];
    for (int i = 0; i < 6; i++) qa[i] = num_array(r, qk[i]);
    vkd_exit_eval *ev;
    cli_check(vkd_exit_eval_create(e, &ev, &err), &err);
    double T = e->info.temperature > 0 ? e->info.temperature : 1.0;
    for (size_t j = 0; j < R->data.n; j++) {
        vkd_exit_quality q;
        if (vkd_exit_eval_quality(ev, R->m.rec, R->data.ids[j], R->data.len[j], T, R->s.topk_acc, &q, &err))
            cli_fatal("%s: held-out sequence %zu: %s", dir, j, err.msg);
        double v[6] = {q.kl_t, q.kl_1, q.ce, q.top1, q.topk, q.rows};
        for (int i = 0; i < 6; i++) push(qa[i], v[i]);
        ++*done;
        if (!R->quiet) exp_progress_update(pg, *done, *done, "items");
    }
    static const char *sk[] = {"tokens", "steps", "accepted", "prefill_s", "decode_s"};
    char k[64];
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) snprintf(k, sizeof k, "%s_%s", p ? "plain" : "reuse", sk[i]), num_array(r, k);
    cJSON *ov = num_array(r, "overlap"), *ovr = num_array(r, "overlap_rows");
    num_array(r, "outputs");
    uint32_t *hist = calloc(R->s.gamma + 1, sizeof *hist);
    vkd_draft *reuse, *plain;
    cli_check(vkd_draft_exit(e, R->s.gamma, true, &reuse, &err), &err);
    cli_check(vkd_draft_exit(e, R->s.gamma, false, &plain, &err), &err);
    warm_up(R, reuse);
    warm_up(R, plain);
    for (size_t j = 0; j < R->prompts.n; j++) {
        uint32_t n;
        int32_t *ids = spec_one(R, reuse, j, r, "reuse", hist, &n);
        spec_one(R, plain, j, r, "plain", NULL, NULL);
        double sum;
        uint32_t rows;
        if (vkd_exit_eval_overlap(ev, R->m.rec, ids, n, half(R->prompts.len[j]) - 1, &R->gen.sample, &sum, &rows, &err))
            cli_fatal("%s: prompt %zu: %s", dir, j, err.msg);
        push(ov, sum);
        push(ovr, rows);
        free(ids);
        ++*done;
        if (!R->quiet) exp_progress_update(pg, *done, *done, "items");
    }
    cJSON *h = num_array(r, "hist");
    for (uint32_t i = 0; i <= R->s.gamma; i++) push(h, hist[i]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cJSON_AddNumberToObject(r, "peak_rss_mib", ru.ru_maxrss / 1024.0);
    free(hist);
    vkd_draft_free(reuse);
    vkd_draft_free(plain);
    vkd_exit_eval_free(ev);
    return r;
}

int vkd_cmd_exit_eval(int argc, char **argv) {
    opts o;
    if (!parse_args(argc, argv, &o)) return 0;
    exp_common *c = &o.c;
    run R = {0};
    vkd_error err = {0};
    /* ---- every input is checked before --out is touched ---- */
    exp_load_tokenizer(c, &R.m);
    held_out(&o, R.m.tok, o.data, "the quality metrics", o.max_seqs, &R.data);
    held_out(&o, R.m.tok, o.prompts, "the prompts", o.max_prompts, &R.prompts);
    uint32_t longest = 0;
    for (size_t j = 0; j < R.data.n; j++) longest = R.data.len[j] > longest ? R.data.len[j] : longest;
    for (size_t j = 0; j < R.prompts.n; j++) {
        uint32_t need = half(R.prompts.len[j]) + (uint32_t)o.max_new + (uint32_t)o.gamma + 1;
        longest = need > longest ? need : longest;
    }
    exp_load_models(c, exp_ctx_cap(c, longest), &R.m);
    if (R.m.t->ctx_len < longest)
        cli_fatal("%s: a sequence of %u tokens (prompt + --max-new-tokens + gamma) exceeds max_position_embeddings %u",
                  c->target_dir, longest, R.m.t->ctx_len);
    vkd_exit *heads[MAX_HEADS] = {0};
    for (size_t i = 0; i < o.nheads; i++) {
        if (vkd_exit_load(R.m.t, c->target_dir, o.heads[i], &heads[i], &err)) cli_fatal("%s: %s", o.heads[i], err.msg);
        cli_check(vkd_exit_freeze(heads[i], &err), &err);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o.heads[k], o.heads[i])) cli_usage_error(CMD, "--heads: %s given twice", o.heads[i]);
    }
    R.s = (xe_settings){.gamma = (uint32_t)o.gamma, .max_new = (uint32_t)o.max_new, .topk_acc = (uint32_t)o.topk_acc,
                        .temperature = (float)o.temperature, .top_p = (float)o.top_p, .top_k = (uint32_t)o.top_k,
                        .nseq = R.data.n, .nprompt = R.prompts.n};
    R.gen = (vkd_generate_options){.max_new_tokens = (uint32_t)o.max_new,
                                   .sample = {.temperature = (float)o.temperature, .top_p = (float)o.top_p,
                                              .top_k = (uint32_t)o.top_k, .seed = c->seed}};
    xe_check_init(&R.s);
    jr_limits lim = {.vocab = R.m.t->vocab, .ctx_len = R.m.t->ctx_len, .block = (uint32_t)o.gamma + 1};
    exp_out out;
    exp_open_out(c, params_of(&o, &R.s), xe_check, &lim, &out);
    /* ---- work ---- */
    R.quiet = c->quiet;
    exp_progress pg;
    exp_progress_start(&pg, CMD, (R.data.n + R.prompts.n) * o.nheads);
    size_t done = 0;
    if (!exp_done(&out, "vanilla")) exp_journal(&out, vanilla_record(&R));
    for (size_t i = 0; i < o.nheads; i++) {
        if (exp_done(&out, o.heads[i])) {
            done += R.data.n + R.prompts.n;
            continue;
        }
        exp_journal(&out, head_record(&R, o.heads[i], heads[i], &pg, &done));
    }
    if (!c->quiet) exp_progress_end(&pg, done, done, "items");
    rep_boot boot = rep_boot_of(c);
    xe_write_outputs(&out, &R.s, &boot, o.heads, o.nheads);
    exp_close_out(&out);
    for (size_t i = 0; i < o.nheads; i++) vkd_exit_free(heads[i]);
    seqs_free(&R.data);
    seqs_free(&R.prompts);
    exp_free_models(&R.m);
    return 0;
}
