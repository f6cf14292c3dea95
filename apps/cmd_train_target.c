/* cmd_train_target.c: `vkdraft train-target` trains a small tied Qwen3 / Llama from scratch
 * on plain text (methods/vkd_train_target.h) and writes a Hugging Face folder. Everything is
 * validated first; the run works in OUT.partial and renames it to OUT at the end, so OUT
 * always holds one finished run (an existing OUT is refused). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmds.h"
#include "tokenizer.h"
#include "vkd_generate.h" /* vkd_now */
#include "vkd_train_draft.h"
#include "vkd_train_target.h"

#define CMD "train-target"
#define MAX_DATA 64

typedef struct opts {
    const char *config, *tokenizer, *out;
    const char *data[MAX_DATA];
    int ndata;
    long seq_len, batch_tokens, steps, eval_every, ckpt_every, stop_after, held_out;
    double lr, warmup;
    unsigned long long seed;
    vkd_dtype dtype;
    bool quiet, resume;
} opts;

static void usage(void) {
    printf("usage: vkdraft train-target --config FILE --tokenizer DIR --data FILE... --out DIR [options]\n"
           "Trains a tied Qwen3 / Llama (config.json with tie_word_embeddings true) from scratch on\n"
           "plain text, one document per line (in a .jsonl file: the \"text\" string of each line's\n"
           "object, which may hold newlines and special tokens such as the chat template's),\n"
           "tokenised with DIR/tokenizer.json; every document ends with the tokenizer's EOS.\n"
           "The token stream is cut into windows of --seq-len tokens, each trained from\n"
           "position 0; the last 5%% of windows (1..--held-out) are held out. AdamW, global\n"
           "norm clipped to 1.0, linear warmup then cosine decay; initial weights N(0, 0.02^2),\n"
           "norms 1. Writes OUT: config.json, model.safetensors, tokenizer.json,\n"
           "tokenizer_config.json (with its chat template, from DIR) and generation_config.json.\n"
           "  --seq-len N        tokens per window (default 256)\n"
           "  --batch-tokens N   tokens per step (default 4096: 16 windows of 256)\n"
           "  --steps N          optimizer steps (default 200)\n"
           "  --lr X             peak learning rate (default 1e-3)\n"
           "  --warmup F         warmup as a fraction of the steps (default 0.05)\n"
           "  --seed S           initial weights and window order (default 0)\n"
           "  --dtype bf16|f32   saved weights (default bf16)\n"
           "  --held-out N       at most N windows held out (default 64)\n"
           "  --eval-every N     held-out loss every N steps (default: at the start and the end)\n"
           "  --checkpoint-every N  weights, AdamW moments and step to OUT.partial/ckpt (default 50)\n"
           "  --stop-after N     end after N steps of this run with a checkpoint (an interruption)\n"
           "  --resume           continue the stopped run in OUT.partial (same arguments): the same\n"
           "                     losses and weights, bit for bit, as an uninterrupted run\n"
           "  --quiet            no progress lines\n"
           "Progress: step, loss, held-out loss, learning rate, gradient norm, tokens/s (stderr);\n"
           "OUT/train_log.jsonl: step, loss, lr, grad_norm (and held_out) of every step.\n");
}

static bool parse_args(int argc, char **argv, opts *o) {
    *o = (opts){.seq_len = 256, .batch_tokens = 4096, .steps = 200, .lr = 1e-3, .warmup = 0.05, .ckpt_every = 50, .held_out = 64,
                .dtype = VKD_DTYPE_BF16};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) return usage(), false;
        else if ((v = cli_value(CMD, "--config", argc, argv, &i))) o->config = v;
        else if ((v = cli_value(CMD, "--tokenizer", argc, argv, &i))) o->tokenizer = v;
        else if ((v = cli_value(CMD, "--out", argc, argv, &i))) o->out = v;
        else if ((v = cli_value(CMD, "--seq-len", argc, argv, &i))) o->seq_len = cli_parse_long(CMD, "--seq-len", v, 2, 65536);
        else if ((v = cli_value(CMD, "--batch-tokens", argc, argv, &i)))
            o->batch_tokens = cli_parse_long(CMD, "--batch-tokens", v, 2, 1L << 24);
        else if ((v = cli_value(CMD, "--steps", argc, argv, &i))) o->steps = cli_parse_long(CMD, "--steps", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--eval-every", argc, argv, &i)))
            o->eval_every = cli_parse_long(CMD, "--eval-every", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--checkpoint-every", argc, argv, &i)))
            o->ckpt_every = cli_parse_long(CMD, "--checkpoint-every", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--held-out", argc, argv, &i)))
            o->held_out = cli_parse_long(CMD, "--held-out", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--stop-after", argc, argv, &i)))
            o->stop_after = cli_parse_long(CMD, "--stop-after", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--lr", argc, argv, &i))) o->lr = cli_parse_double(CMD, "--lr", v, 1e-12, 10);
        else if ((v = cli_value(CMD, "--warmup", argc, argv, &i))) o->warmup = cli_parse_double(CMD, "--warmup", v, 0, 1);
        else if ((v = cli_value(CMD, "--seed", argc, argv, &i)))
            o->seed = (unsigned long long)cli_parse_long(CMD, "--seed", v, 0, 0x7fffffffL);
        else if ((v = cli_value(CMD, "--dtype", argc, argv, &i))) {
            if (!strcmp(v, "bf16")) o->dtype = VKD_DTYPE_BF16;
            else if (!strcmp(v, "f32")) o->dtype = VKD_DTYPE_F32;
            else cli_usage_error(CMD, "--dtype %s: expected bf16 or f32", v);
        } else if (cli_is("--quiet", argv[i])) o->quiet = true;
        else if (cli_is("--resume", argv[i])) o->resume = true;
        else if ((v = cli_value(CMD, "--data", argc, argv, &i))) {
            do {
                if (o->ndata == MAX_DATA) cli_usage_error(CMD, "--data: at most %d files", MAX_DATA);
                o->data[o->ndata++] = v;
                v = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : NULL;
            } while (v);
        } else cli_usage_error(CMD, "unknown argument '%s' (see --help)", argv[i]);
    }
    if (!o->config || !o->tokenizer || !o->out || !o->ndata)
        cli_usage_error(CMD, "--config, --tokenizer, --data and --out are required");
    return true;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_fatal("%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, len = 0, got;
    do {
        if (len + 65536 + 1 > cap) buf = realloc(buf, cap = (cap + 65536) * 2);
        if (!buf) cli_fatal("out of host memory");
        got = fread(buf + len, 1, 65536, f);
        len += got;
    } while (got);
    bool bad = ferror(f);
    fclose(f);
    if (bad) cli_fatal("%s: read error", path);
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (!p) cli_fatal("out of host memory");
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* config.json of the run with torch_dtype set; validated (tied) by loading it */
static void write_config(cJSON *cfg, const char *dir, const char *dtype) {
    cJSON_DeleteItemFromObject(cfg, "torch_dtype");
    cJSON_AddStringToObject(cfg, "torch_dtype", dtype);
    char *text = cJSON_Print(cfg), *p = path_join(dir, "config.json");
    vkd_error err = {0};
    cli_check(vkd_write_text_atomic(p, text, &err), &err);
    free(text), free(p);
}

static void copy_file(const char *from_dir, const char *name, const char *to_dir, bool required) {
    char *src = path_join(from_dir, name), *dst = path_join(to_dir, name);
    struct stat sb;
    if (stat(src, &sb) == 0 || required) {
        size_t n;
        char *data = read_all(src, &n);
        vkd_error err = {0};
        cli_check(vkd_write_atomic(dst, data, n, &err), &err);
        free(data);
    }
    free(src), free(dst);
}

/* every document of the --data files (a line; in .jsonl files a line's "text" string, which
 * may hold newlines and the chat template's special tokens), encoded, each followed by EOS:
 * one token stream */
static int32_t *load_stream(const opts *o, vkd_tok *tok, size_t *n) {
    int32_t eos = vkd_tok_eos_id(tok);
    int32_t *all = NULL;
    size_t len = 0, cap = 0;
    for (int f = 0; f < o->ndata; f++) {
        char *text = read_all(o->data[f], NULL), *save = NULL;
        bool jsonl = cli_has_ext(o->data[f], ".jsonl");
        size_t lineno = 0;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            size_t ln = strlen(line), k;
            lineno++;
            if (ln && line[ln - 1] == '\r') line[--ln] = 0;
            if (!ln) continue;
            cJSON *doc = NULL;
            const char *src = line;
            if (jsonl) {
                doc = cJSON_ParseWithLength(line, ln);
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "text");
                if (!cJSON_IsString(t))
                    cli_fatal("%s:%zu: expected a JSON object with a \"text\" string", o->data[f], lineno);
                src = t->valuestring;
                ln = strlen(src);
            }
            int32_t *ids;
            vkd_error err = {0};
            if (vkd_tok_encode(tok, src, ln, false, &ids, &k, &err))
                cli_fatal("%s:%zu: %s", o->data[f], lineno, err.msg);
            cJSON_Delete(doc);
            if (len + k + 1 > cap) all = realloc(all, (cap = (len + k + 1) * 2) * sizeof *all);
            if (!all) cli_fatal("out of host memory");
            memcpy(all + len, ids, k * sizeof *ids);
            len += k;
            if (eos >= 0) all[len++] = eos;
            free(ids);
        }
        free(text);
    }
    *n = len;
    return all;
}

static double eval_loss(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *w, const uint32_t *lens,
                        uint32_t n) {
    vkd_error err = {0};
    double loss;
    cli_check(vkd_train_target_eval(tr, rec, w, lens, n, &loss, &err), &err);
    return loss;
}

/* what a resumed run must share with the stopped one */
static cJSON *run_params(const opts *o, const cJSON *cfg) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "config", cJSON_Duplicate(cfg, true));
    cJSON_AddStringToObject(r, "tokenizer", o->tokenizer);
    cJSON *d = cJSON_AddArrayToObject(r, "data");
    for (int f = 0; f < o->ndata; f++) cJSON_AddItemToArray(d, cJSON_CreateString(o->data[f]));
    cJSON_AddNumberToObject(r, "seq_len", (double)o->seq_len);
    cJSON_AddNumberToObject(r, "batch_tokens", (double)o->batch_tokens);
    cJSON_AddNumberToObject(r, "steps", (double)o->steps);
    cJSON_AddNumberToObject(r, "lr", o->lr);
    cJSON_AddNumberToObject(r, "warmup", o->warmup);
    cJSON_AddNumberToObject(r, "seed", (double)o->seed);
    cJSON_AddNumberToObject(r, "held_out", (double)o->held_out);
    cJSON_AddStringToObject(r, "dtype", o->dtype == VKD_DTYPE_BF16 ? "bf16" : "f32");
    return r;
}

/* the training windows' order in pass p: a Fisher-Yates shuffle keyed by (seed, p), so any
 * step's windows follow from its index (a resumed run needs no saved order) */
static void pass_order(size_t *order, size_t n, unsigned long long seed, uint64_t pass) {
    unsigned long long rng = (seed + 1) * 0x9e3779b97f4a7c15ull ^ (pass + 1) * 0xbf58476d1ce4e5b9ull;
    for (size_t w = 0; w < n; w++) order[w] = w;
    for (size_t k = n - 1; k > 0; k--) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t r = (size_t)((rng >> 33) % (k + 1)), tmp = order[k];
        order[k] = order[r], order[r] = tmp;
    }
}

/* a checkpoint folder: its four files, then itself */
static void remove_ckpt(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "optim.safetensors", "step.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char *f = path_join(dir, files[k]);
        unlink(f);
        free(f);
    }
    rmdir(dir);
}

/* work/ckpt: f32 weights (a loadable folder), AdamW moments, the step; built in ckpt.next
 * and swapped in, so a stop at any moment leaves one whole checkpoint */
static void checkpoint(vkd_train_target *tr, const cJSON *cfg, const char *work, uint64_t step) {
    vkd_error err = {0};
    char *next = path_join(work, "ckpt.next"), *ck = path_join(work, "ckpt"), *old = path_join(work, "ckpt.old");
    mkdir(next, 0777);
    write_config((cJSON *)cfg, next, "float32");
    cli_check(vkd_train_target_save_weights(tr, next, VKD_DTYPE_F32, &err), &err);
    char *op = path_join(next, "optim.safetensors"), *sp = path_join(next, "step.json"), num[32];
    cli_check(vkd_train_target_save_optim(tr, op, &err), &err);
    snprintf(num, sizeof num, "%llu\n", (unsigned long long)step);
    cli_check(vkd_write_text_atomic(sp, num, &err), &err);
    struct stat sb;
    if (stat(ck, &sb) == 0 && rename(ck, old)) cli_fatal("%s: cannot rename: %s", ck, strerror(errno));
    if (rename(next, ck)) cli_fatal("%s: cannot rename: %s", next, strerror(errno));
    if (stat(old, &sb) == 0) remove_ckpt(old);
    free(next), free(ck), free(old), free(op), free(sp);
}

/* log.jsonl lines of steps <= upto kept (a resume drops what the stopped run logged later) */
static FILE *open_log(const char *path, uint64_t upto) {
    char *keep = NULL;
    size_t nk = 0;
    struct stat sb;
    if (upto && stat(path, &sb) == 0) {
        char *text = read_all(path, NULL), *save = NULL;
        keep = calloc(strlen(text) + 1, 1);
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            cJSON *j = cJSON_Parse(l);
            const cJSON *s = j ? cJSON_GetObjectItem(j, "step") : NULL;
            if (cJSON_IsNumber(s) && s->valuedouble <= (double)upto) nk += (size_t)sprintf(keep + nk, "%s\n", l);
            cJSON_Delete(j);
        }
        free(text);
    }
    FILE *f = fopen(path, "w");
    if (!f) cli_fatal("%s: cannot write: %s", path, strerror(errno));
    if (nk) fputs(keep, f);
    free(keep);
    return f;
}

/* the finished run: final held-out loss, the HF folder (weights in --dtype, config,
 * tokenizer files, generation config), the checkpoint removed, OUT.partial renamed to OUT */
static void finish(const opts *o, vkd_train_target *tr, vkd_rec *rec, cJSON *cfg, vkd_tok *tok, const char *work,
                   const char *ck, const char *run_path, const int32_t *const *held_w, const uint32_t *held_lens,
                   uint32_t nheld, uint64_t steps_run, uint64_t tokens, double train_s, double first, double last) {
    vkd_error err = {0};
    double held = eval_loss(tr, rec, held_w, held_lens, nheld);
    cli_check(vkd_train_target_save_weights(tr, work, o->dtype, &err), &err);
    write_config(cfg, work, o->dtype == VKD_DTYPE_BF16 ? "bfloat16" : "float32");
    copy_file(o->tokenizer, "tokenizer.json", work, true);
    copy_file(o->tokenizer, "tokenizer_config.json", work, false);
    cJSON *gen = cJSON_CreateObject();
    if (vkd_tok_eos_id(tok) >= 0) cJSON_AddNumberToObject(gen, "eos_token_id", vkd_tok_eos_id(tok));
    char *gtext = cJSON_Print(gen), *gpath = path_join(work, "generation_config.json");
    cli_check(vkd_write_text_atomic(gpath, gtext, &err), &err);
    /* the run's bookkeeping goes; the log stays */
    remove_ckpt(ck);
    unlink(run_path);
    if (rename(work, o->out)) cli_fatal("renaming %s to %s: %s", work, o->out, strerror(errno));
    printf("train-target: %ld steps (%llu this run), %llu tokens in %.1fs (%.0f tok/s); loss %.4f -> %.4f, "
           "held-out loss %.4f; model in %s\n", o->steps, (unsigned long long)steps_run, (unsigned long long)tokens,
           train_s, train_s > 0 ? tokens / train_s : 0, first, last, held, o->out);
    free(gtext), free(gpath), cJSON_Delete(gen);
}

int vkd_cmd_train_target(int argc, char **argv) {
    opts o;
    if (!parse_args(argc, argv, &o)) return 0;
    vkd_error err = {0};
    struct stat sb;
    if (stat(o.out, &sb) == 0) cli_fatal("--out %s: exists; give a new folder (a run is never mixed into another)", o.out);
    char *cfg_text = read_all(o.config, NULL);
    cJSON *cfg = cJSON_Parse(cfg_text);
    free(cfg_text);
    if (!cJSON_IsObject(cfg)) cli_fatal("%s: not a JSON object", o.config);
    if (!cJSON_IsTrue(cJSON_GetObjectItem(cfg, "tie_word_embeddings")))
        cli_fatal("%s: field 'tie_word_embeddings': expected true (train-target trains tied models)", o.config);
    vkd_tok *tok;
    cli_check(vkd_tok_load(o.tokenizer, &tok, &err), &err);
    const cJSON *vs = cJSON_GetObjectItem(cfg, "vocab_size");
    if (!cJSON_IsNumber(vs) || vs->valuedouble < (double)vkd_tok_vocab_size(tok))
        cli_fatal("%s: field 'vocab_size': expected a number >= the tokenizer's %zu ids", o.config,
                  vkd_tok_vocab_size(tok));
    size_t ntok;
    int32_t *stream = load_stream(&o, tok, &ntok);
    const uint32_t S = (uint32_t)o.seq_len;
    size_t nwin = ntok / S;
    if (nwin < 2) cli_fatal("--data: %zu tokens make fewer than 2 windows of --seq-len %u", ntok, S);
    size_t nheld = nwin / 20, cap = (size_t)o.held_out;
    nheld = nheld < 1 ? 1 : nheld > cap ? cap : nheld;
    size_t ntrain = nwin - nheld;
    uint32_t per_step = o.batch_tokens / S ? (uint32_t)(o.batch_tokens / S) : 1;
    /* the work folder: fresh (initial weights), or a stopped run with the same parameters */
    char *work = malloc(strlen(o.out) + 16);
    sprintf(work, "%s.partial", o.out);
    char *run_path = path_join(work, "run.json"), *ck = path_join(work, "ckpt"), *log_path = path_join(work, "train_log.jsonl");
    cJSON *run = run_params(&o, cfg);
    char *run_text = cJSON_Print(run);
    uint64_t start = 0;
    const char *model_dir = work;
    if (o.resume) {
        if (stat(run_path, &sb) != 0) cli_fatal("--resume: %s has no stopped run to continue", work);
        char *prev = read_all(run_path, NULL), *sp = path_join(ck, "step.json");
        cJSON *pj = cJSON_Parse(prev);
        for (cJSON *f = run->child; f; f = f->next)
            if (!cJSON_Compare(f, cJSON_GetObjectItem(pj, f->string), true))
                cli_fatal("--resume: '%s' differs from the stopped run's (%s)", f->string, run_path);
        if (stat(sp, &sb) != 0) cli_fatal("--resume: %s has no checkpoint yet; start again without --resume", work);
        char *st = read_all(sp, NULL);
        start = strtoull(st, NULL, 10);
        if (start == 0 || start > (uint64_t)o.steps) cli_fatal("%s: step %s outside 1..%ld", sp, st, o.steps);
        model_dir = ck;
        free(prev), free(sp), free(st), cJSON_Delete(pj);
    } else {
        if (stat(work, &sb) == 0)
            cli_fatal("%s exists: another train-target run writes there, or one stopped (--resume continues it)", work);
        if (mkdir(work, 0777)) cli_fatal("%s: cannot create: %s", work, strerror(errno));
        cli_check(vkd_write_text_atomic(run_path, run_text, &err), &err);
        write_config(cfg, work, "float32");
        cli_check(vkd_train_draft_write_init(work, o.seed, &err), &err); /* N(0, 0.02^2), norms 1 */
    }
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_train_target *tr;
    cli_check(vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), &err);
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    cli_check(vkd_target_load(ctx, model_dir, &(vkd_target_options){.ctx_len = S, .max_rows = S}, &t, &err), &err);
    uint64_t warm = (uint64_t)llround(o.warmup * (double)o.steps);
    vkd_train_target_options to = {.max_len = S, .lr = o.lr, .warmup = warm, .total = (uint64_t)o.steps};
    cli_check(vkd_train_target_create(t, &to, &tr, &err), &err);
    if (start) {
        char *op = path_join(ck, "optim.safetensors");
        cli_check(vkd_train_target_load_optim(tr, op, &err), &err);
        free(op);
    }
    FILE *log = open_log(log_path, start);
    const int32_t **win = malloc(nwin * sizeof *win);
    uint32_t *lens = malloc(nwin * sizeof *lens);
    size_t *order = malloc(ntrain * sizeof *order);
    for (size_t w = 0; w < nwin; w++) win[w] = stream + w * S, lens[w] = S;
    const int32_t **batch = malloc(per_step * sizeof *batch);
    double held = eval_loss(tr, rec, win + ntrain, lens + ntrain, (uint32_t)nheld), first = NAN, last = NAN;
    if (!o.quiet) fprintf(stderr, "train-target: %zu tokens, %zu training windows of %u, %zu held out; %u windows a step; "
                          "held-out loss %.4f %s\n", ntok, ntrain, S, nheld, per_step, held,
                          start ? "at the checkpoint" : "before training");
    uint64_t tokens = 0, end = (uint64_t)o.steps, pass = UINT64_MAX;
    if (o.stop_after && start + (uint64_t)o.stop_after < end) end = start + (uint64_t)o.stop_after;
    double tstart = vkd_now();
    for (uint64_t s = start; s < end; s++) {
        for (uint32_t b = 0; b < per_step; b++) {
            uint64_t g = s * per_step + b;
            if (g / ntrain != pass) pass_order(order, ntrain, o.seed, pass = g / ntrain);
            batch[b] = win[order[g % ntrain]];
        }
        vkd_train_target_stats st;
        cli_check(vkd_train_target_step(tr, rec, batch, lens, per_step, s, &st, &err), &err);
        tokens += st.tokens;
        if (s == start) first = st.loss;
        last = st.loss;
        bool ev = o.eval_every && (s + 1) % (uint64_t)o.eval_every == 0;
        if (ev) held = eval_loss(tr, rec, win + ntrain, lens + ntrain, (uint32_t)nheld);
        fprintf(log, "{\"step\": %llu, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g", (unsigned long long)s + 1,
                st.loss, st.lr, (double)st.grad_norm);
        if (ev) fprintf(log, ", \"held_out\": %.9g", held);
        fputs("}\n", log);
        fflush(log);
        if (!o.quiet && (ev || s + 1 == end || (s + 1) % 10 == 0 || s == start)) {
            double el = vkd_now() - tstart;
            fprintf(stderr, "step %llu/%ld loss %.4f lr %.3g gnorm %.3g %.0f tok/s\n", (unsigned long long)s + 1,
                    o.steps, st.loss, st.lr, (double)st.grad_norm, el > 0 ? tokens / el : 0);
            if (ev) fprintf(stderr, "  held-out loss %.4f\n", held);
        }
        if ((s + 1) % (uint64_t)o.ckpt_every == 0 || (s + 1 == end && end < (uint64_t)o.steps))
            checkpoint(tr, cfg, work, s + 1);
    }
    fclose(log);
    double train_s = vkd_now() - tstart;
    if (vkd_ctx_validation_count(ctx)) cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(ctx));
    if (end < (uint64_t)o.steps)
        printf("train-target: stopped after step %llu (--stop-after); --resume continues from %s\n",
               (unsigned long long)end, ck);
    else finish(&o, tr, rec, cfg, tok, work, ck, run_path, win + ntrain, lens + ntrain, (uint32_t)nheld, end - start,
                tokens, train_s, first, last);
    cJSON_Delete(cfg), cJSON_Delete(run), free(run_text);
    free(win), free(lens), free(order), free(batch), free(stream), free(work), free(run_path), free(ck), free(log_path);
    vkd_train_target_free(tr);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    vkd_tok_free(tok);
    return 0;
}
