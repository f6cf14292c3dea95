/* vkdraft train-draft: trains a DFlash draft from scratch for a target (methods/
 * vkd_train_draft.h) and writes it in z-lab's folder layout, resumable.
 *
 * OUT/config.json, OUT/model.safetensors   the draft (bf16), refreshed at every save
 * OUT/train/run.json                        this run's parameters (a resume must match)
 * OUT/train/ckpt/                           f32 draft folder + optim.safetensors + state.json
 *                                           (replaced whole: written as ckpt.tmp, renamed)
 * OUT/train/log.jsonl                       one line per step {step, loss, grad_norm, lr,
 *                                           tau_est, rows, tok_s; ce+tv: tv_accept} and per
 *                                           eval {step, eval_tau}
 * A resume restarts from the checkpoint's step; log lines past it are dropped, so the log
 * of a resumed run equals the uninterrupted one (same anchors, same order, same updates). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmds.h"
#include "dataset.h"
#include "prompt.h"
#include "tokenizer.h"
#include "vkd_spec.h"
#include "vkd_train_draft.h"

static void usage(void) {
    printf("usage: vkdraft train-draft --target DIR --data FILE [--data FILE ...] --out DIR\n"
           "           [--block-size 16] [--layers 5] [--target-layers auto|LIST]\n"
           "           [--anchors-per-seq 512] [--steps N | --epochs E] [--lr 6e-4] [--warmup 0.04]\n"
           "           [--batch-tokens N] [--loss ce|ce+tv] [--seed S] [--regenerate [--max-new-tokens 128]]\n"
           "           [--ce-weight 0.1] [--tv-weight 0.9]\n"
           "           [--eval-prompts 4] [--eval-every N] [--eval-tokens 32] [--save-every N]\n"
           "           [--mask-token-id ID] [--max-len N] [--init DIR] [--resume] [--quiet]\n\n"
           "Trains a DFlash draft for the target from scratch, with the published recipe:\n"
           "training sequences are chat-rendered prompts + the target's responses (--regenerate:\n"
           "the target's greedy continuation, --max-new-tokens long; else the file's answers);\n"
           "per step one sequence (--batch-tokens N: consecutive sequences of the epoch's order\n"
           "packed into steps of at most N tokens, at least one sequence; with --regenerate a\n"
           "sequence counts as prompt + --max-new-tokens), --anchors-per-seq anchors drawn on\n"
           "each sequence's response tokens (all blocks of a sequence go through the draft in\n"
           "one pass, a block-sparse attention mask, up to 512 rows a pass); block\n"
           "[x_a, MASK...] at positions a.. sees the target's features of positions < a and\n"
           "itself (not the other blocks); row k predicts x_{a+k} with weight exp(-(k-1)/7);\n"
           "AdamW (lr 6e-4, weight decay 0), warmup 4 %% then cosine, gradient norm clipped to 1.\n"
           "Embeddings and lm_head are the target's (frozen, not saved). Every draft weight\n"
           "trains in f32. --data files: JSONL (or the MATH-500 JSON array) with prompt and\n"
           "answer fields (names recognised as in `vkdraft spec --dataset`), or token ids:\n"
           "JSONL lines {\"prompt_ids\": [..], \"response_ids\": [..]} (no tokenizer needed). The last\n"
           "--eval-prompts records are held out: tau of greedy speculative decoding on them\n"
           "(--eval-tokens new tokens each) is measured before training, every --eval-every\n"
           "steps and at the end. --steps defaults to one pass over the training sequences\n"
           "(--epochs E: E passes). --target-layers auto: z-lab's rule for --layers draft\n"
           "layers (targets with < 8 layers: 1..L-1, at most 5). --mask-token-id defaults to\n"
           "the first id past the tokenizer's vocabulary, or vocab_size - 1. --init DIR starts\n"
           "from a draft folder's weights instead of random ones (continued training or\n"
           "fine-tuning; its layers, width, block size, mask token and target layers must be\n"
           "this run's); the optimizer state and the schedule start afresh.\n\n"
           "OUT gets config.json and model.safetensors (bf16, z-lab's DFlashDraftModel layout,\n"
           "loadable with --draft OUT), refreshed at every save (--save-every, default the\n"
           "eval interval or 50 steps); OUT/train holds the f32 checkpoint, optimizer state\n"
           "and log.jsonl. --resume continues an interrupted run from its last checkpoint\n"
           "with the same parameters (the same loss curve as an uninterrupted run).\n"
           "--loss ce: row loss w_k CE. --loss ce+tv (DSpark): w_k (ce_w CE + tv_w ||q - p||_1), q the\n"
           "draft's distribution, p the target's own next-token distribution at that position;\n"
           "--ce-weight (>= 0, default 0.1) and --tv-weight (> 0, default 0.9) only with ce+tv;\n"
           "the log then also gives tv_accept, the mean of 1 - L1/2 over the step's rows.\n");
}

typedef struct seq {
    int32_t *ids;
    uint32_t n, resp;          /* tokens, first response position */
} seq;

/* A token-id data file: JSONL lines {"prompt_ids": [..], "response_ids": [..]} (response
 * optional with --regenerate). Appends to *all; false when the first line is not of this
 * kind (then the file is a text dataset). */
static bool load_id_file(const char *path, bool regenerate, int64_t vocab, seq **all, size_t *nall) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_fatal("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    bool ids = false;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (len <= 1) continue;
        cJSON *j = cJSON_Parse(line);
        const cJSON *p = j ? cJSON_GetObjectItem(j, "prompt_ids") : NULL, *r = j ? cJSON_GetObjectItem(j, "response_ids") : NULL;
        if (lineno == 1 && !p) {
            cJSON_Delete(j);
            break;
        }
        ids = true;
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) < 1)
            cli_fatal("%s:%zu: field 'prompt_ids': expected a non-empty list of token ids", path, lineno);
        if (!regenerate && (!cJSON_IsArray(r) || cJSON_GetArraySize(r) < 2))
            cli_fatal("%s:%zu: field 'response_ids': expected a list of >= 2 token ids (or use --regenerate)", path,
                      lineno);
        int np = cJSON_GetArraySize(p), nr = regenerate ? 0 : cJSON_GetArraySize(r);
        *all = realloc(*all, (*nall + 1) * sizeof **all);
        seq *q = &(*all)[(*nall)++];
        q->ids = malloc((size_t)(np + nr + 1) * 4);
        q->n = (uint32_t)(np + nr);
        q->resp = (uint32_t)np;
        for (int k = 0; k < np + nr; k++) {
            const cJSON *e = cJSON_GetArrayItem(k < np ? p : r, k < np ? k : k - np);
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (double)vocab ||
                e->valuedouble != (double)(int64_t)e->valuedouble)
                cli_fatal("%s:%zu: field '%s': entry %d is not a token id in 0..%lld", path, lineno,
                          k < np ? "prompt_ids" : "response_ids", k < np ? k : k - np, (long long)vocab - 1);
            q->ids[k] = (int32_t)e->valuedouble;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return ids;
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (!s) cli_fatal("out of memory");
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void mkdir_or_die(const char *p) {
    if (mkdir(p, 0777) != 0 && errno != EEXIST) cli_fatal("%s: cannot create the folder: %s", p, strerror(errno));
}

static void rm_tree_files(const char *dir) { /* a checkpoint folder: plain files only */
    const char *names[] = {"config.json", "model.safetensors", "optim.safetensors", "state.json"};
    for (size_t i = 0; i < 4; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!b) return NULL;
    b[got] = 0;
    cJSON *j = cJSON_Parse(b);
    free(b);
    return j;
}

static void write_json_or_die(const char *path, const cJSON *j) {
    vkd_error err = {0};
    char *s = cJSON_Print(j);
    cli_check(vkd_write_atomic(path, s, strlen(s), &err), &err);
    free(s);
}

/* the log of steps <= upto (the checkpoint's; 0: nothing, the run starts over with its
 * first evaluation), then opened for appending */
static FILE *open_log(const char *path, uint64_t upto) {
    FILE *f = fopen(path, "rb");
    char *keep = NULL;
    size_t klen = 0;
    if (f) {
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            cJSON *j = cJSON_Parse(line);
            const cJSON *s = j ? cJSON_GetObjectItem(j, "step") : NULL;
            bool ok = upto > 0 && cJSON_IsNumber(s) && (uint64_t)s->valuedouble <= upto && strchr(line, '\n');
            cJSON_Delete(j);
            if (!ok) continue;
            size_t l = strlen(line);
            keep = realloc(keep, klen + l + 1);
            memcpy(keep + klen, line, l + 1);
            klen += l;
        }
        fclose(f);
    }
    vkd_error err = {0};
    cli_check(vkd_write_atomic(path, keep ? keep : "", klen, &err), &err);
    free(keep);
    f = fopen(path, "ab");
    if (!f) cli_fatal("%s: cannot open: %s", path, strerror(errno));
    return f;
}

static void log_line(FILE *f, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    fprintf(f, "%s\n", s);
    fflush(f);
    fsync(fileno(f));
    free(s);
    cJSON_Delete(j);
}

/* tau of greedy speculative decoding over the held-out prompts */
static double eval_tau(vkd_target *t, vkd_dflash *d, vkd_rec *rec, seq *ev, size_t nev, uint32_t tokens,
                       const int32_t *stops, uint32_t nstop) {
    vkd_error err = {0};
    vkd_draft *p;
    cli_check(vkd_draft_dflash(d, &p, &err), &err);
    vkd_generate_options go = {.max_new_tokens = tokens, .stop_ids = stops, .nstop = nstop};
    uint64_t steps = 0, commit = 0;
    for (size_t k = 0; k < nev; k++) {
        vkd_spec_result res;
        cli_check(vkd_spec_generate(t, p, rec, ev[k].ids, ev[k].resp, &go, &res, &err), &err);
        steps += res.stats.steps;
        for (uint32_t s = 0; s < res.stats.steps; s++) commit += res.stats.accept[s];
        vkd_spec_result_free(&res);
    }
    vkd_draft_free(p);
    return steps ? (double)commit / steps : 0;
}

static void save(vkd_dflash *d, vkd_train_draft *tr, const char *out, const char *train_dir, uint64_t step,
                 const vkd_cfg *tcfg, const vkd_train_draft_shape *shape) {
    vkd_error err = {0};
    char *tmp = path_join(train_dir, "ckpt.tmp"), *ck = path_join(train_dir, "ckpt"),
         *old = path_join(train_dir, "ckpt.old");
    rm_tree_files(tmp);
    mkdir_or_die(tmp);
    cli_check(vkd_train_draft_write_config(tcfg, shape, "float32", tmp, &err), &err);
    cli_check(vkd_train_draft_save_weights(d, tmp, VKD_DTYPE_F32, &err), &err);
    char *op = path_join(tmp, "optim.safetensors"), *sp = path_join(tmp, "state.json");
    cli_check(vkd_train_draft_save_optim(tr, op, &err), &err);
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "step", (double)step);
    write_json_or_die(sp, s);
    cJSON_Delete(s);
    rm_tree_files(old);
    if (exists(ck) && rename(ck, old) != 0) cli_fatal("%s: cannot rename: %s", ck, strerror(errno));
    if (rename(tmp, ck) != 0) cli_fatal("%s: cannot rename: %s", tmp, strerror(errno));
    rm_tree_files(old);
    /* the bf16 export */
    cli_check(vkd_train_draft_write_config(tcfg, shape, "bfloat16", out, &err), &err);
    cli_check(vkd_train_draft_save_weights(d, out, VKD_DTYPE_BF16, &err), &err);
    free(op), free(sp), free(tmp), free(ck), free(old);
}

#define CMD "train-draft"

typedef struct opts {
    const char *target_dir, *out, *target_layers, *loss, *init;
    const char *data[16];
    int ndata;
    long block, layers, anchors, steps, epochs, max_new, eval_prompts, eval_every, eval_tokens, save_every, mask_id,
        max_len, batch_tokens;
    double lr, warmup, ce_w, tv_w; /* weights: < 0 until given */
    unsigned long long seed;
    bool resume, regenerate, quiet;
} opts;

/* The flags into *o; false when --help was printed (exit 0). */
static bool parse_args(int argc, char **argv, opts *o) {
    const char *c = CMD;
    *o = (opts){.target_layers = "auto", .loss = "ce", .block = 16, .layers = 5, .anchors = 512, .max_new = 128,
                .eval_prompts = 4, .eval_tokens = 32, .mask_id = -1, .lr = 6e-4, .warmup = 0.04,
                .ce_w = -1, .tv_w = -1};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_value(c, "--target", argc, argv, &i))) o->target_dir = v;
        else if ((v = cli_value(c, "--data", argc, argv, &i))) {
            if (o->ndata == 16) cli_usage_error(c, "at most 16 --data files");
            o->data[o->ndata++] = v;
        } else if ((v = cli_value(c, "--out", argc, argv, &i))) o->out = v;
        else if ((v = cli_value(c, "--block-size", argc, argv, &i))) o->block = cli_parse_long(c, "--block-size", v, 2, 64);
        else if ((v = cli_value(c, "--layers", argc, argv, &i))) o->layers = cli_parse_long(c, "--layers", v, 1, 64);
        else if ((v = cli_value(c, "--target-layers", argc, argv, &i))) o->target_layers = v;
        else if ((v = cli_value(c, "--anchors-per-seq", argc, argv, &i))) o->anchors = cli_parse_long(c, "--anchors-per-seq", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--steps", argc, argv, &i))) o->steps = cli_parse_long(c, "--steps", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--epochs", argc, argv, &i))) o->epochs = cli_parse_long(c, "--epochs", v, 1, 1 << 20);
        else if ((v = cli_value(c, "--lr", argc, argv, &i))) o->lr = cli_parse_double(c, "--lr", v, 1e-12, 10);
        else if ((v = cli_value(c, "--warmup", argc, argv, &i))) o->warmup = cli_parse_double(c, "--warmup", v, 0, 1);
        else if ((v = cli_value(c, "--loss", argc, argv, &i))) o->loss = v;
        else if ((v = cli_value(c, "--ce-weight", argc, argv, &i))) o->ce_w = cli_parse_double(c, "--ce-weight", v, 0, 1e6);
        else if ((v = cli_value(c, "--tv-weight", argc, argv, &i))) o->tv_w = cli_parse_double(c, "--tv-weight", v, 0, 1e6);
        else if ((v = cli_value(c, "--batch-tokens", argc, argv, &i)))
            o->batch_tokens = cli_parse_long(c, "--batch-tokens", v, 1, 1L << 30);
        else if ((v = cli_value(c, "--seed", argc, argv, &i))) o->seed = (unsigned long long)cli_parse_long(c, "--seed", v, 0, __LONG_MAX__);
        else if ((v = cli_value(c, "--max-new-tokens", argc, argv, &i))) o->max_new = cli_parse_long(c, "--max-new-tokens", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--eval-prompts", argc, argv, &i))) o->eval_prompts = cli_parse_long(c, "--eval-prompts", v, 0, 1 << 16);
        else if ((v = cli_value(c, "--eval-every", argc, argv, &i))) o->eval_every = cli_parse_long(c, "--eval-every", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--eval-tokens", argc, argv, &i))) o->eval_tokens = cli_parse_long(c, "--eval-tokens", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--save-every", argc, argv, &i))) o->save_every = cli_parse_long(c, "--save-every", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--mask-token-id", argc, argv, &i))) o->mask_id = cli_parse_long(c, "--mask-token-id", v, 0, 1L << 40);
        else if ((v = cli_value(c, "--max-len", argc, argv, &i))) o->max_len = cli_parse_long(c, "--max-len", v, 4, 1 << 20);
        else if ((v = cli_value(c, "--init", argc, argv, &i))) o->init = v;
        else if (cli_is("--resume", argv[i])) o->resume = true;
        else if (cli_is("--regenerate", argv[i])) o->regenerate = true;
        else if (cli_is("--quiet", argv[i])) o->quiet = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error(c, "unknown flag '%s'", argv[i]);
    }
    if (!o->target_dir || !o->out || !o->ndata) cli_usage_error(c, "--target DIR, --data FILE and --out DIR are required");
    if (o->steps && o->epochs) cli_usage_error(c, "give --steps or --epochs, not both");
    bool tv = !strcmp(o->loss, "ce+tv");
    if (!tv && strcmp(o->loss, "ce")) cli_usage_error(c, "--loss must be ce or ce+tv, got '%s'", o->loss);
    if (!tv && (o->ce_w >= 0 || o->tv_w >= 0)) cli_usage_error(c, "--ce-weight and --tv-weight need --loss ce+tv");
    if (tv && o->ce_w < 0) o->ce_w = 0.1;
    if (tv && o->tv_w < 0) o->tv_w = 0.9;
    if (tv && o->tv_w == 0) cli_usage_error(c, "--tv-weight must be > 0 with --loss ce+tv (for CE alone: --loss ce)");
    if (!o->save_every) o->save_every = o->eval_every ? o->eval_every : 50;
    return true;
}

/* One training run: its parameters, data, paths, models and trainer. */
typedef struct job {
    const opts *o;
    vkd_cfg tcfg;
    vkd_train_draft_shape shape;
    vkd_tok *tok;             /* NULL when every --data file holds token ids */
    seq *all;                 /* [nall]: [0, ntrain) train, then the held-out ones (ev) */
    size_t nall, ntrain;
    seq *ev;
    uint32_t longest;         /* tokens of the longest sequence (the models' context) */
    uint64_t total, start;    /* steps of the run, the step it starts (resumes) from */
    size_t *plan;             /* the sequences of every step, in order (build_plan) */
    uint64_t *plan_at;        /* [total + 1]: step s takes plan[plan_at[s] .. plan_at[s + 1]) */
    char *train_dir, *run_path, *ck, *log_path;
    vkd_ctx *ctx;
    vkd_target *t;
    vkd_dflash *d;
    vkd_rec *rec;
    vkd_train_draft *tr;
    int32_t stops[16];
    uint32_t nstop;
} job;

/* The target layers the draft reads (--target-layers) and its mask token id. */
static void choose_taps(job *j) {
    const opts *o = j->o;
    const char *c = CMD;
    vkd_train_draft_shape *shape = &j->shape;
    *shape = (vkd_train_draft_shape){.n_layers = (uint32_t)o->layers, .block = (uint32_t)o->block};
    const int64_t TL = j->tcfg.num_hidden_layers;
    if (!strcmp(o->target_layers, "auto")) {
        if (TL >= 8) {
            shape->ntaps = o->layers < VKD_CFG_MAX_TAPS ? (uint32_t)o->layers : VKD_CFG_MAX_TAPS;
            vkd_cfg_dflash_default_ids(TL, (int)shape->ntaps, shape->tap_ids);
        } else {
            for (int64_t l = 1; l < TL && shape->ntaps < 5; l++) shape->tap_ids[shape->ntaps++] = l;
            if (!shape->ntaps) shape->tap_ids[shape->ntaps++] = 0;
        }
    } else {
        size_t n;
        int32_t *ids = parse_index_list(c, "--target-layers", o->target_layers, "layer", &n);
        if (n == 0 || n > VKD_CFG_MAX_TAPS) cli_usage_error(c, "--target-layers: 1..%d ids", VKD_CFG_MAX_TAPS);
        for (size_t k = 0; k < n; k++) {
            if (ids[k] >= TL) cli_usage_error(c, "--target-layers: layer %d, the target has %lld", ids[k], (long long)TL);
            shape->tap_ids[shape->ntaps++] = ids[k];
        }
        free(ids);
    }
    size_t tv = j->tok ? vkd_tok_vocab_size(j->tok) : (size_t)j->tcfg.vocab_size;
    shape->mask_id = o->mask_id >= 0 ? o->mask_id : (int64_t)tv < j->tcfg.vocab_size ? (int64_t)tv : j->tcfg.vocab_size - 1;
    if (shape->mask_id >= j->tcfg.vocab_size)
        cli_usage_error(c, "--mask-token-id %lld: the target's vocabulary has %lld ids", (long long)shape->mask_id,
                        (long long)j->tcfg.vocab_size);
}

/* The text --data files (text_data[f]), chat-rendered and encoded, appended to j->all. */
static void load_text_files(job *j, const bool *text_data) {
    const opts *o = j->o;
    vkd_error err = {0};
    for (int f = 0; f < o->ndata; f++) {
        if (!text_data[f]) continue;
        vkd_ds *ds;
        vkd_ds_options dso = {0};
        cli_check(vkd_ds_load(o->data[f], &dso, &ds, &err), &err);
        j->all = realloc(j->all, (j->nall + ds->count) * sizeof *j->all);
        for (size_t k = 0; k < ds->count; k++) {
            const vkd_ds_record *r = &ds->records[k];
            char *text = chat_render_record(CMD, j->tok, r, false);
            size_t np, na = 0;
            int32_t *p = encode_rendered(j->tok, text, &np), *a = NULL;
            free(text);
            if (!np) cli_fatal("%s:%zu: the prompt encodes to no tokens", o->data[f], r->line);
            if (!o->regenerate) {
                if (!r->answer || !*r->answer)
                    cli_fatal("%s:%zu: field 'answer': a response is needed (or use --regenerate)", o->data[f], r->line);
                a = encode_rendered(j->tok, r->answer, &na);
            }
            seq *q = &j->all[j->nall];
            q->ids = realloc(p, (np + na + 1) * 4);
            if (na) memcpy(q->ids + np, a, na * 4);
            free(a);
            q->n = (uint32_t)(np + na);
            q->resp = (uint32_t)np;
            j->nall++;
        }
        vkd_ds_free(ds);
    }
}

/* The target's config, the data (the last --eval-prompts records held out), the taps, the
 * sequence length and the step count. */
static void load_data(job *j) {
    const opts *o = j->o;
    vkd_error err = {0};
    cli_check(vkd_cfg_load(o->target_dir, &j->tcfg, &err), &err);
    /* token-id files need no tokenizer; text datasets do */
    bool text_data[16] = {0}, any_text = false;
    for (int f = 0; f < o->ndata; f++)
        any_text |= text_data[f] = !load_id_file(o->data[f], o->regenerate, j->tcfg.vocab_size, &j->all, &j->nall);
    if (any_text) cli_check(vkd_tok_load(o->target_dir, &j->tok, &err), &err);
    choose_taps(j);
    /* data: every record of every file (text files in --data order after the id files);
     * the last --eval-prompts are held out */
    load_text_files(j, text_data);
    if (j->nall <= (size_t)o->eval_prompts)
        cli_fatal("train-draft: %zu records in --data, more than --eval-prompts (%ld) are needed", j->nall,
                  o->eval_prompts);
    j->ntrain = j->nall - (size_t)o->eval_prompts;
    j->ev = j->all + j->ntrain;
    uint32_t longest = 0;
    for (size_t k = 0; k < j->nall; k++) {
        uint32_t n = k < j->ntrain ? j->all[k].n + (o->regenerate ? (uint32_t)o->max_new : 0)
                                   : j->all[k].n + (uint32_t)o->eval_tokens + 2 * (uint32_t)o->block + 2;
        if (n > longest) longest = n;
    }
    if (o->max_len && longest > (uint64_t)o->max_len) longest = (uint32_t)o->max_len;
    if ((int64_t)longest > j->tcfg.max_position_embeddings)
        cli_fatal("train-draft: sequences of %u tokens exceed the target's max_position_embeddings (%lld); "
                  "use --max-len", longest, (long long)j->tcfg.max_position_embeddings);
    j->longest = longest;
}

/* run.json's content: the parameters a --resume must repeat */
static cJSON *run_params(const job *j) {
    const opts *o = j->o;
    cJSON *run = cJSON_CreateObject();
    cJSON_AddStringToObject(run, "target", o->target_dir);
    cJSON *dj = cJSON_AddArrayToObject(run, "data");
    for (int f = 0; f < o->ndata; f++) cJSON_AddItemToArray(dj, cJSON_CreateString(o->data[f]));
    cJSON_AddNumberToObject(run, "block_size", (double)o->block);
    cJSON_AddNumberToObject(run, "layers", (double)o->layers);
    cJSON *tj = cJSON_AddArrayToObject(run, "target_layer_ids");
    for (uint32_t k = 0; k < j->shape.ntaps; k++) cJSON_AddItemToArray(tj, cJSON_CreateNumber((double)j->shape.tap_ids[k]));
    cJSON_AddNumberToObject(run, "mask_token_id", (double)j->shape.mask_id);
    cJSON_AddNumberToObject(run, "anchors_per_seq", (double)o->anchors);
    cJSON_AddNumberToObject(run, "batch_tokens", (double)o->batch_tokens);
    cJSON_AddNumberToObject(run, "steps", (double)j->total);
    cJSON_AddNumberToObject(run, "lr", o->lr);
    cJSON_AddNumberToObject(run, "warmup", o->warmup);
    cJSON_AddStringToObject(run, "loss", o->loss);
    if (!strcmp(o->loss, "ce+tv")) {
        cJSON_AddNumberToObject(run, "ce_weight", o->ce_w);
        cJSON_AddNumberToObject(run, "tv_weight", o->tv_w);
    }
    cJSON_AddNumberToObject(run, "seed", (double)o->seed);
    cJSON_AddBoolToObject(run, "regenerate", o->regenerate);
    cJSON_AddNumberToObject(run, "max_new_tokens", (double)o->max_new);
    cJSON_AddNumberToObject(run, "eval_prompts", (double)o->eval_prompts);
    cJSON_AddNumberToObject(run, "max_len", (double)o->max_len);
    if (o->init) cJSON_AddStringToObject(run, "init", o->init);
    return run;
}

/* --resume: run.json must equal `run`; returns the checkpoint's step */
static uint64_t resume_step(const job *j, const cJSON *run) {
    cJSON *prev = read_json(j->run_path);
    if (!prev) cli_fatal("%s: no run to resume (missing or unreadable)", j->run_path);
    if (!cJSON_Compare(prev, run, true)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, run) {
            const cJSON *o = cJSON_GetObjectItem(prev, it->string);
            if (!o || !cJSON_Compare(o, it, true))
                cli_fatal("%s: field '%s' differs from this run's; --resume needs the same parameters", j->run_path,
                          it->string);
        }
    }
    cJSON_Delete(prev);
    char *old = path_join(j->train_dir, "ckpt.old");
    if (!exists(j->ck) && exists(old) && rename(old, j->ck) != 0) cli_fatal("%s: cannot rename: %s", old, strerror(errno));
    free(old);
    char *sp = path_join(j->ck, "state.json");
    cJSON *st = read_json(sp);
    const cJSON *s = st ? cJSON_GetObjectItem(st, "step") : NULL;
    if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > (double)j->total)
        cli_fatal("%s: field 'step' missing or out of range", sp);
    uint64_t start = (uint64_t)s->valuedouble;
    cJSON_Delete(st);
    free(sp);
    return start;
}

/* a fresh run: OUT, OUT/train/run.json and the initial checkpoint (step 0) */
static void fresh_out(const job *j, const cJSON *run) {
    vkd_error err = {0};
    const char *out = j->o->out;
    if (exists(out)) {
        char *cfgp = path_join(out, "config.json");
        bool used = exists(cfgp) || exists(j->train_dir);
        free(cfgp);
        if (used) cli_fatal("%s: holds a draft or a training run; use --resume or another --out", out);
    }
    bool made_out = !exists(out);
    mkdir_or_die(out);
    mkdir_or_die(j->train_dir);
    write_json_or_die(j->run_path, run);
    char *tmp = path_join(j->train_dir, "ckpt.tmp");
    rm_tree_files(tmp);
    mkdir_or_die(tmp);
    vkd_result r = vkd_train_draft_write_config(&j->tcfg, &j->shape, "float32", tmp, &err);
    if (!r) r = j->o->init ? vkd_train_draft_write_from(tmp, j->o->init, &err)
                           : vkd_train_draft_write_init(tmp, j->o->seed, &err);
    if (r) { /* a bad --init folder: leave --out as it was, so the same command can run again */
        rm_tree_files(tmp);
        unlink(j->run_path);
        rmdir(j->train_dir);
        if (made_out) rmdir(out);
        cli_check(r, &err);
    }
    cJSON *st = cJSON_CreateObject();
    cJSON_AddNumberToObject(st, "step", 0);
    char *sp = path_join(tmp, "state.json");
    write_json_or_die(sp, st);
    cJSON_Delete(st);
    free(sp);
    if (rename(tmp, j->ck) != 0) cli_fatal("%s: cannot rename: %s", tmp, strerror(errno));
    free(tmp);
}

/* The models: the target in the device's fast layout, the draft's weights f32 row-major
 * (trainable); with --regenerate the training responses are the target's; then the trainer. */
static void load_models(job *j) {
    const opts *o = j->o;
    vkd_error err = {0};
    cli_check(vkd_ctx_create(NULL, &j->ctx, &err), &err);
    vkd_target_options to = {.ctx_len = j->longest + 2};
    cli_check(vkd_target_load(j->ctx, o->target_dir, &to, &j->t, &err), &err);
    vkd_dflash_options dop = {.ctx_len = j->longest + 2};
    cli_check(vkd_dflash_load(j->ctx, j->t, j->ck, &dop, &j->d, &err), &err);
    cli_check(vkd_train_draft_rows_weights(j->d, j->ck, &err), &err);
    cli_check(vkd_rec_create(j->ctx, &j->rec, &err), &err);
    j->nstop = target_stop_ids(j->t, j->stops, 16);
    seq *all = j->all;
    if (o->regenerate) {
        vkd_generate_options go = {.max_new_tokens = (uint32_t)o->max_new, .stop_ids = j->stops, .nstop = j->nstop};
        for (size_t k = 0; k < j->ntrain; k++) {
            vkd_generate_result g;
            cli_check(vkd_generate(j->t, j->rec, all[k].ids, all[k].resp, &go, &g, &err), &err);
            all[k].ids = realloc(all[k].ids, (all[k].resp + g.n) * 4);
            memcpy(all[k].ids + all[k].resp, g.ids, g.n * 4);
            all[k].n = all[k].resp + g.n;
            free(g.ids);
        }
    }
    for (size_t k = 0; k < j->ntrain; k++) {
        if (all[k].n > j->longest) all[k].n = j->longest;
        if (all[k].n < 3 || all[k].resp > all[k].n - 2)
            cli_fatal("train-draft: training record %zu has no response token to anchor on (%u tokens, response "
                      "from %u)", k + 1, all[k].n, all[k].resp);
    }
    vkd_train_draft_options tro = {.max_len = j->longest, .anchors = (uint32_t)o->anchors, .lr = o->lr,
                                   .warmup = (uint64_t)(o->warmup * (double)j->total + 0.5), .total = j->total,
                                   .seed = o->seed, .target_dir = o->target_dir, .ce_tv = !strcmp(o->loss, "ce+tv"),
                                   .ce_weight = o->ce_w, .tv_weight = o->tv_w};
    cli_check(vkd_train_draft_create(j->d, &tro, &j->tr, &err), &err);
    if (o->resume && j->start > 0) {
        char *op = path_join(j->ck, "optim.safetensors");
        cli_check(vkd_train_draft_load_optim(j->tr, op, &err), &err);
        free(op);
    }
}

/* an {step, eval_tau} log line: tau on the held-out prompts now */
static double eval_line(job *j, FILE *log, uint64_t step) {
    const opts *o = j->o;
    double tau = eval_tau(j->t, j->d, j->rec, j->ev, (size_t)o->eval_prompts, (uint32_t)o->eval_tokens, j->stops, j->nstop);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "step", (double)step);
    cJSON_AddNumberToObject(e, "eval_tau", tau);
    log_line(log, e);
    return tau;
}

/* sequence order: a Philox shuffle per epoch */
static void epoch_shuffle(size_t *order, size_t ntrain, unsigned long long seed, uint64_t epoch) {
    for (size_t k = 0; k < ntrain; k++) order[k] = k;
    for (size_t k = ntrain - 1; k > 0; k--) {
        uint32_t w[4];
        vkd_philox4x32(seed, 0x54440001ull, epoch * ntrain + k, w);
        size_t x = (size_t)(w[0] % (k + 1)), y = order[k];
        order[k] = order[x], order[x] = y;
    }
}

/* The steps' sequences: epoch after epoch in its shuffled order, one sequence a step, or
 * with --batch-tokens N consecutive ones while their tokens stay <= N (at least one); as
 * many epochs as --epochs (default 1), or as --steps needs (the last one cut). Sets total. */
static void build_plan(job *j) {
    const opts *o = j->o;
    size_t ntrain = j->ntrain, *order = malloc(ntrain * sizeof *order), cap = 0, n = 0;
    uint64_t steps = 0, cap_s = 0, want = o->steps ? (uint64_t)o->steps : UINT64_MAX;
    uint64_t epochs = o->steps ? UINT64_MAX : (uint64_t)(o->epochs ? o->epochs : 1);
    j->plan = NULL, j->plan_at = NULL;
    for (uint64_t e = 0; e < epochs && steps < want; e++) {
        epoch_shuffle(order, ntrain, o->seed, e);
        uint64_t tok = 0;
        for (size_t k = 0; k < ntrain; k++) {
            const seq *q = &j->all[order[k]];
            uint64_t len = q->n + (o->regenerate ? (uint64_t)o->max_new : 0);
            if (len > j->longest) len = j->longest;
            bool start = k == 0 || !o->batch_tokens || tok + len > (uint64_t)o->batch_tokens;
            if (start && steps == want) break;
            if (n == cap) j->plan = realloc(j->plan, (cap = cap ? 2 * cap : 1024) * sizeof *j->plan);
            if (start && steps + 2 > cap_s)
                j->plan_at = realloc(j->plan_at, (cap_s = cap_s ? 2 * cap_s : 1024) * sizeof *j->plan_at);
            if (!j->plan || !j->plan_at) cli_fatal("out of host memory");
            if (start) j->plan_at[steps++] = n, tok = 0;
            j->plan[n++] = order[k];
            tok += len;
        }
    }
    j->plan_at[steps] = n;
    j->total = steps;
    free(order);
}

/* Steps start..total, logged, evaluated and saved; returns the last held-out tau (0 if none),
 * *tokens the trained rows and *t0 the time the steps began. */
static double train_loop(job *j, FILE *log, uint64_t *tokens, double *t0) {
    const opts *o = j->o;
    const bool tro_tv = !strcmp(o->loss, "ce+tv");
    vkd_error err = {0};
    uint64_t total = j->total;
    vkd_train_draft_seq *batch = malloc(j->ntrain * sizeof *batch);
    if (!batch) cli_fatal("out of host memory");
    double last_tau = 0;
    *tokens = 0;
    *t0 = vkd_now();
    bool tty = isatty(2);
    for (uint64_t s = j->start; s < total; s++) {
        uint32_t nb = 0;
        for (uint64_t k = j->plan_at[s]; k < j->plan_at[s + 1]; k++, nb++) {
            const seq *q = &j->all[j->plan[k]];
            batch[nb] = (vkd_train_draft_seq){.ids = q->ids, .n = q->n, .resp_start = q->resp, .key = (uint32_t)j->plan[k]};
        }
        vkd_train_draft_stats st;
        cli_check(vkd_train_draft_step_batch(j->tr, j->rec, batch, nb, s, &st, &err), &err);
        *tokens += st.rows;
        double el = vkd_now() - *t0;
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "step", (double)s + 1);
        cJSON_AddNumberToObject(l, "loss", st.loss);
        cJSON_AddNumberToObject(l, "grad_norm", st.grad_norm);
        cJSON_AddNumberToObject(l, "lr", st.lr);
        cJSON_AddNumberToObject(l, "tau_est", st.tau_est);
        if (tro_tv) cJSON_AddNumberToObject(l, "tv_accept", st.tv_accept);
        cJSON_AddNumberToObject(l, "rows", st.rows);
        cJSON_AddNumberToObject(l, "seconds", st.seconds);
        log_line(log, l);
        if (!o->quiet && (tty || s + 1 == total || (s + 1) % 50 == 0)) {
            int w = 24, fill = (int)(w * (s + 1) / total);
            char acc[32] = "";
            if (tro_tv) snprintf(acc, sizeof acc, "  tv acc. %.3f", st.tv_accept);
            fprintf(stderr, "%s[%.*s%*s] step %llu/%llu  loss %.4f%s  est. tau %.2f  %.0f tok/s%s", tty ? "\r" : "",
                    fill, "########################", w - fill, "", (unsigned long long)s + 1,
                    (unsigned long long)total, st.loss, acc, st.tau_est, el > 0 ? *tokens / el : 0, tty ? "  " : "\n");
        }
        bool last = s + 1 == total;
        if (o->eval_prompts > 0 && ((o->eval_every && (s + 1) % (uint64_t)o->eval_every == 0) || last)) {
            last_tau = eval_line(j, log, s + 1);
            if (!o->quiet) fprintf(stderr, "%sstep %llu: tau %.3f on %ld held-out prompts\n", tty ? "\n" : "",
                                   (unsigned long long)s + 1, last_tau, o->eval_prompts);
        }
        if ((s + 1) % (uint64_t)o->save_every == 0 || last)
            save(j->d, j->tr, o->out, j->train_dir, s + 1, &j->tcfg, &j->shape);
    }
    if (j->start >= total) save(j->d, j->tr, o->out, j->train_dir, total, &j->tcfg, &j->shape);
    free(batch);
    return last_tau;
}

int vkd_cmd_train_draft(int argc, char **argv) {
    opts o;
    if (!parse_args(argc, argv, &o)) return 0;
    job j = {.o = &o};
    load_data(&j);
    build_plan(&j);
    /* the output folder: fresh, or a run to resume with the same parameters */
    cJSON *run = run_params(&j);
    j.train_dir = path_join(o.out, "train"), j.run_path = path_join(j.train_dir, "run.json");
    j.ck = path_join(j.train_dir, "ckpt"), j.log_path = path_join(j.train_dir, "log.jsonl");
    if (o.resume) j.start = resume_step(&j, run);
    else fresh_out(&j, run);
    cJSON_Delete(run);
    load_models(&j);
    FILE *log = open_log(j.log_path, j.start);
    if (j.start == 0 && o.eval_prompts > 0) {
        double tau = eval_line(&j, log, 0);
        if (!o.quiet) fprintf(stderr, "train-draft: untrained draft: tau %.3f on %ld held-out prompts\n", tau, o.eval_prompts);
    }
    uint64_t tokens, total = j.total, start = j.start;
    double t0, last_tau = train_loop(&j, log, &tokens, &t0);
    fclose(log);
    double el = vkd_now() - t0;
    printf("train-draft: %llu steps (%llu this run), %llu trained rows in %.1fs (%.0f tok/s); draft in %s\n",
           (unsigned long long)total, (unsigned long long)(total - start), (unsigned long long)tokens, el,
           el > 0 ? tokens / el : 0, o.out);
    if (o.eval_prompts > 0 && start < total) printf("held-out tau: %.3f\n", last_tau);
    if (vkd_ctx_validation_count(j.ctx)) cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(j.ctx));
    for (size_t k = 0; k < j.nall; k++) free(j.all[k].ids);
    free(j.all);
    free(j.train_dir), free(j.run_path), free(j.ck), free(j.log_path), free(j.plan), free(j.plan_at);
    vkd_train_draft_free(j.tr);
    vkd_dflash_free(j.d);
    vkd_rec_destroy(j.rec);
    vkd_target_free(j.t);
    cli_print_profile(j.ctx);
    vkd_ctx_destroy(j.ctx);
    if (j.tok) vkd_tok_free(j.tok);
    return 0;
}
