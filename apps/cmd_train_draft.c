/* vkdraft train-draft: trains a DFlash draft from scratch for a target (methods/
 * vkd_train_draft.h) and writes it in z-lab's folder layout, resumable.
 *
 * OUT/config.json, OUT/model.safetensors   the draft (bf16), refreshed at every save
 * OUT/train/run.json                        this run's parameters (a resume must match)
 * OUT/train/ckpt/                           f32 draft folder + optim.safetensors + state.json
 *                                           (replaced whole: written as ckpt.tmp, renamed)
 * OUT/train/log.jsonl                       one line per step {step, loss, grad_norm, lr,
 *                                           tau_est, rows, tok_s} and per eval {step, eval_tau}
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
           "           [--loss ce] [--seed S] [--regenerate [--max-new-tokens 128]]\n"
           "           [--eval-prompts 4] [--eval-every N] [--eval-tokens 32] [--save-every N]\n"
           "           [--mask-token-id ID] [--max-len N] [--resume] [--quiet]\n\n"
           "Trains a DFlash draft for the target from scratch, with the published recipe:\n"
           "training sequences are chat-rendered prompts + the target's responses (--regenerate:\n"
           "the target's greedy continuation, --max-new-tokens long; else the file's answers);\n"
           "per step one sequence, --anchors-per-seq anchors drawn on response tokens; block\n"
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
           "the first id past the tokenizer's vocabulary, or vocab_size - 1.\n\n"
           "OUT gets config.json and model.safetensors (bf16, z-lab's DFlashDraftModel layout,\n"
           "loadable with --draft OUT), refreshed at every save (--save-every, default the\n"
           "eval interval or 50 steps); OUT/train holds the f32 checkpoint, optimizer state\n"
           "and log.jsonl. --resume continues an interrupted run from its last checkpoint\n"
           "with the same parameters (the same loss curve as an uninterrupted run).\n"
           "Blocks are computed one anchor at a time; --loss ce+tv is not implemented.\n");
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
    cli_check(cli_write_atomic(path, s, strlen(s), &err), &err);
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
    cli_check(cli_write_atomic(path, keep ? keep : "", klen, &err), &err);
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

int vkd_cmd_train_draft(int argc, char **argv) {
    const char *c = "train-draft", *target_dir = NULL, *out = NULL, *target_layers = "auto", *loss = "ce";
    const char *data[16];
    int ndata = 0;
    long block = 16, layers = 5, anchors = 512, steps = 0, epochs = 0, max_new = 128, eval_prompts = 4,
         eval_every = 0, eval_tokens = 32, save_every = 0, mask_id = -1, max_len = 0;
    double lr = 6e-4, warmup = 0.04;
    unsigned long long seed = 0;
    bool resume = false, regenerate = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_value(c, "--target", argc, argv, &i))) target_dir = v;
        else if ((v = cli_value(c, "--data", argc, argv, &i))) {
            if (ndata == 16) cli_usage_error(c, "at most 16 --data files");
            data[ndata++] = v;
        } else if ((v = cli_value(c, "--out", argc, argv, &i))) out = v;
        else if ((v = cli_value(c, "--block-size", argc, argv, &i))) block = cli_parse_long(c, "--block-size", v, 2, 64);
        else if ((v = cli_value(c, "--layers", argc, argv, &i))) layers = cli_parse_long(c, "--layers", v, 1, 64);
        else if ((v = cli_value(c, "--target-layers", argc, argv, &i))) target_layers = v;
        else if ((v = cli_value(c, "--anchors-per-seq", argc, argv, &i))) anchors = cli_parse_long(c, "--anchors-per-seq", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--steps", argc, argv, &i))) steps = cli_parse_long(c, "--steps", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--epochs", argc, argv, &i))) epochs = cli_parse_long(c, "--epochs", v, 1, 1 << 20);
        else if ((v = cli_value(c, "--lr", argc, argv, &i))) lr = cli_parse_double(c, "--lr", v, 1e-12, 10);
        else if ((v = cli_value(c, "--warmup", argc, argv, &i))) warmup = cli_parse_double(c, "--warmup", v, 0, 1);
        else if ((v = cli_value(c, "--loss", argc, argv, &i))) loss = v;
        else if ((v = cli_value(c, "--seed", argc, argv, &i))) seed = (unsigned long long)cli_parse_long(c, "--seed", v, 0, __LONG_MAX__);
        else if ((v = cli_value(c, "--max-new-tokens", argc, argv, &i))) max_new = cli_parse_long(c, "--max-new-tokens", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--eval-prompts", argc, argv, &i))) eval_prompts = cli_parse_long(c, "--eval-prompts", v, 0, 1 << 16);
        else if ((v = cli_value(c, "--eval-every", argc, argv, &i))) eval_every = cli_parse_long(c, "--eval-every", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--eval-tokens", argc, argv, &i))) eval_tokens = cli_parse_long(c, "--eval-tokens", v, 1, 1 << 16);
        else if ((v = cli_value(c, "--save-every", argc, argv, &i))) save_every = cli_parse_long(c, "--save-every", v, 1, 1L << 40);
        else if ((v = cli_value(c, "--mask-token-id", argc, argv, &i))) mask_id = cli_parse_long(c, "--mask-token-id", v, 0, 1L << 40);
        else if ((v = cli_value(c, "--max-len", argc, argv, &i))) max_len = cli_parse_long(c, "--max-len", v, 4, 1 << 20);
        else if (cli_is("--resume", argv[i])) resume = true;
        else if (cli_is("--regenerate", argv[i])) regenerate = true;
        else if (cli_is("--quiet", argv[i])) quiet = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error(c, "unknown flag '%s'", argv[i]);
    }
    if (!target_dir || !out || !ndata) cli_usage_error(c, "--target DIR, --data FILE and --out DIR are required");
    if (steps && epochs) cli_usage_error(c, "give --steps or --epochs, not both");
    if (!strcmp(loss, "ce+tv")) cli_fatal("train-draft: --loss ce+tv is not implemented yet (only ce)");
    if (strcmp(loss, "ce")) cli_usage_error(c, "--loss must be ce");

    vkd_error err = {0};
    vkd_cfg tcfg;
    cli_check(vkd_cfg_load(target_dir, &tcfg, &err), &err);
    /* token-id files need no tokenizer; text datasets do */
    seq *all = NULL;
    size_t nall = 0;
    bool text_data[16] = {0}, any_text = false;
    for (int f = 0; f < ndata; f++)
        any_text |= text_data[f] = !load_id_file(data[f], regenerate, tcfg.vocab_size, &all, &nall);
    vkd_tok *tok = NULL;
    if (any_text) cli_check(vkd_tok_load(target_dir, &tok, &err), &err);
    vkd_train_draft_shape shape = {.n_layers = (uint32_t)layers, .block = (uint32_t)block};
    const int64_t TL = tcfg.num_hidden_layers;
    if (!strcmp(target_layers, "auto")) {
        if (TL >= 8) {
            shape.ntaps = layers < VKD_CFG_MAX_TAPS ? (uint32_t)layers : VKD_CFG_MAX_TAPS;
            vkd_cfg_dflash_default_ids(TL, (int)shape.ntaps, shape.tap_ids);
        } else {
            for (int64_t l = 1; l < TL && shape.ntaps < 5; l++) shape.tap_ids[shape.ntaps++] = l;
            if (!shape.ntaps) shape.tap_ids[shape.ntaps++] = 0;
        }
    } else {
        size_t n;
        int32_t *ids = parse_index_list(c, "--target-layers", target_layers, "layer", &n);
        if (n == 0 || n > VKD_CFG_MAX_TAPS) cli_usage_error(c, "--target-layers: 1..%d ids", VKD_CFG_MAX_TAPS);
        for (size_t k = 0; k < n; k++) {
            if (ids[k] >= TL) cli_usage_error(c, "--target-layers: layer %d, the target has %lld", ids[k], (long long)TL);
            shape.tap_ids[shape.ntaps++] = ids[k];
        }
        free(ids);
    }
    size_t tv = tok ? vkd_tok_vocab_size(tok) : (size_t)tcfg.vocab_size;
    shape.mask_id = mask_id >= 0 ? mask_id : (int64_t)tv < tcfg.vocab_size ? (int64_t)tv : tcfg.vocab_size - 1;
    if (shape.mask_id >= tcfg.vocab_size)
        cli_usage_error(c, "--mask-token-id %lld: the target's vocabulary has %lld ids", (long long)shape.mask_id,
                        (long long)tcfg.vocab_size);

    /* data: every record of every file (text files in --data order after the id files);
     * the last --eval-prompts are held out */
    for (int f = 0; f < ndata; f++) {
        if (!text_data[f]) continue;
        vkd_ds *ds;
        vkd_ds_options o = {0};
        cli_check(vkd_ds_load(data[f], &o, &ds, &err), &err);
        all = realloc(all, (nall + ds->count) * sizeof *all);
        for (size_t k = 0; k < ds->count; k++) {
            const vkd_ds_record *r = &ds->records[k];
            char *text = chat_render_record(c, tok, r, false);
            size_t np, na = 0;
            int32_t *p = encode_rendered(tok, text, &np), *a = NULL;
            free(text);
            if (!np) cli_fatal("%s:%zu: the prompt encodes to no tokens", data[f], r->line);
            if (!regenerate) {
                if (!r->answer || !*r->answer)
                    cli_fatal("%s:%zu: field 'answer': a response is needed (or use --regenerate)", data[f], r->line);
                a = encode_rendered(tok, r->answer, &na);
            }
            all[nall].ids = realloc(p, (np + na + 1) * 4);
            if (na) memcpy(all[nall].ids + np, a, na * 4);
            free(a);
            all[nall].n = (uint32_t)(np + na);
            all[nall].resp = (uint32_t)np;
            nall++;
        }
        vkd_ds_free(ds);
    }
    if (nall <= (size_t)eval_prompts)
        cli_fatal("train-draft: %zu records in --data, more than --eval-prompts (%ld) are needed", nall, eval_prompts);
    size_t ntrain = nall - (size_t)eval_prompts;
    seq *ev = all + ntrain;
    uint32_t longest = 0;
    for (size_t k = 0; k < nall; k++) {
        uint32_t n = k < ntrain ? all[k].n + (regenerate ? (uint32_t)max_new : 0) : all[k].n + (uint32_t)eval_tokens + 2 * (uint32_t)block + 2;
        if (n > longest) longest = n;
    }
    if (max_len && longest > (uint64_t)max_len) longest = (uint32_t)max_len;
    if ((int64_t)longest > tcfg.max_position_embeddings)
        cli_fatal("train-draft: sequences of %u tokens exceed the target's max_position_embeddings (%lld); "
                  "use --max-len", longest, (long long)tcfg.max_position_embeddings);
    uint64_t total = steps ? (uint64_t)steps : (uint64_t)(epochs ? epochs : 1) * ntrain;
    if (!save_every) save_every = eval_every ? eval_every : 50;

    /* the output folder: fresh, or a run to resume with the same parameters */
    cJSON *run = cJSON_CreateObject();
    cJSON_AddStringToObject(run, "target", target_dir);
    cJSON *dj = cJSON_AddArrayToObject(run, "data");
    for (int f = 0; f < ndata; f++) cJSON_AddItemToArray(dj, cJSON_CreateString(data[f]));
    cJSON_AddNumberToObject(run, "block_size", (double)block);
    cJSON_AddNumberToObject(run, "layers", (double)layers);
    cJSON *tj = cJSON_AddArrayToObject(run, "target_layer_ids");
    for (uint32_t k = 0; k < shape.ntaps; k++) cJSON_AddItemToArray(tj, cJSON_CreateNumber((double)shape.tap_ids[k]));
    cJSON_AddNumberToObject(run, "mask_token_id", (double)shape.mask_id);
    cJSON_AddNumberToObject(run, "anchors_per_seq", (double)anchors);
    cJSON_AddNumberToObject(run, "steps", (double)total);
    cJSON_AddNumberToObject(run, "lr", lr);
    cJSON_AddNumberToObject(run, "warmup", warmup);
    cJSON_AddStringToObject(run, "loss", loss);
    cJSON_AddNumberToObject(run, "seed", (double)seed);
    cJSON_AddBoolToObject(run, "regenerate", regenerate);
    cJSON_AddNumberToObject(run, "max_new_tokens", (double)max_new);
    cJSON_AddNumberToObject(run, "eval_prompts", (double)eval_prompts);
    cJSON_AddNumberToObject(run, "max_len", (double)max_len);
    char *train_dir = path_join(out, "train"), *run_path = path_join(train_dir, "run.json"),
         *ck = path_join(train_dir, "ckpt"), *log_path = path_join(train_dir, "log.jsonl");
    uint64_t start = 0;
    if (resume) {
        cJSON *prev = read_json(run_path);
        if (!prev) cli_fatal("%s: no run to resume (missing or unreadable)", run_path);
        if (!cJSON_Compare(prev, run, true)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, run) {
                const cJSON *o = cJSON_GetObjectItem(prev, it->string);
                if (!o || !cJSON_Compare(o, it, true))
                    cli_fatal("%s: field '%s' differs from this run's; --resume needs the same parameters", run_path, it->string);
            }
        }
        cJSON_Delete(prev);
        char *old = path_join(train_dir, "ckpt.old");
        if (!exists(ck) && exists(old) && rename(old, ck) != 0) cli_fatal("%s: cannot rename: %s", old, strerror(errno));
        free(old);
        char *sp = path_join(ck, "state.json");
        cJSON *st = read_json(sp);
        const cJSON *s = st ? cJSON_GetObjectItem(st, "step") : NULL;
        if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > (double)total)
            cli_fatal("%s: field 'step' missing or out of range", sp);
        start = (uint64_t)s->valuedouble;
        cJSON_Delete(st);
        free(sp);
    } else {
        if (exists(out)) {
            char *cfgp = path_join(out, "config.json");
            bool used = exists(cfgp) || exists(train_dir);
            free(cfgp);
            if (used) cli_fatal("%s: holds a draft or a training run; use --resume or another --out", out);
        }
        mkdir_or_die(out);
        mkdir_or_die(train_dir);
        write_json_or_die(run_path, run);
        char *tmp = path_join(train_dir, "ckpt.tmp");
        rm_tree_files(tmp);
        mkdir_or_die(tmp);
        cli_check(vkd_train_draft_write_config(&tcfg, &shape, "float32", tmp, &err), &err);
        cli_check(vkd_train_draft_write_init(tmp, seed, &err), &err);
        cJSON *st = cJSON_CreateObject();
        cJSON_AddNumberToObject(st, "step", 0);
        char *sp = path_join(tmp, "state.json");
        write_json_or_die(sp, st);
        cJSON_Delete(st);
        free(sp);
        if (rename(tmp, ck) != 0) cli_fatal("%s: cannot rename: %s", tmp, strerror(errno));
        free(tmp);
    }
    cJSON_Delete(run);

    /* models: the target in the device's fast layout, the draft's weights f32 row-major (trainable) */
    vkd_ctx *ctx;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    vkd_target_options to = {.ctx_len = longest + 2};
    vkd_target *t;
    cli_check(vkd_target_load(ctx, target_dir, &to, &t, &err), &err);
    vkd_dflash *d;
    vkd_dflash_options dop = {.ctx_len = longest + 2};
    cli_check(vkd_dflash_load(ctx, t, ck, &dop, &d, &err), &err);
    cli_check(vkd_train_draft_rows_weights(d, ck, &err), &err);
    vkd_rec *rec;
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    int32_t stops[16];
    uint32_t nstop = target_stop_ids(t, stops, 16);
    if (regenerate) {
        vkd_generate_options go = {.max_new_tokens = (uint32_t)max_new, .stop_ids = stops, .nstop = nstop};
        for (size_t k = 0; k < ntrain; k++) {
            vkd_generate_result g;
            cli_check(vkd_generate(t, rec, all[k].ids, all[k].resp, &go, &g, &err), &err);
            all[k].ids = realloc(all[k].ids, (all[k].resp + g.n) * 4);
            memcpy(all[k].ids + all[k].resp, g.ids, g.n * 4);
            all[k].n = all[k].resp + g.n;
            free(g.ids);
        }
    }
    for (size_t k = 0; k < ntrain; k++) {
        if (all[k].n > longest) all[k].n = longest;
        if (all[k].n < 3 || all[k].resp > all[k].n - 2)
            cli_fatal("train-draft: training record %zu has no response token to anchor on (%u tokens, response "
                      "from %u)", k + 1, all[k].n, all[k].resp);
    }
    vkd_train_draft_options o = {.max_len = longest, .anchors = (uint32_t)anchors, .lr = lr,
                                 .warmup = (uint64_t)(warmup * (double)total + 0.5), .total = total, .seed = seed,
                                 .target_dir = target_dir};
    vkd_train_draft *tr;
    cli_check(vkd_train_draft_create(d, &o, &tr, &err), &err);
    if (resume && start > 0) {
        char *op = path_join(ck, "optim.safetensors");
        cli_check(vkd_train_draft_load_optim(tr, op, &err), &err);
        free(op);
    }
    FILE *log = open_log(log_path, start);
    if (start == 0 && eval_prompts > 0) {
        double tau = eval_tau(t, d, rec, ev, (size_t)eval_prompts, (uint32_t)eval_tokens, stops, nstop);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", 0);
        cJSON_AddNumberToObject(j, "eval_tau", tau);
        log_line(log, j);
        if (!quiet) fprintf(stderr, "train-draft: untrained draft: tau %.3f on %ld held-out prompts\n", tau, eval_prompts);
    }
    /* sequence order: a Philox shuffle per epoch */
    size_t *order = malloc(ntrain * sizeof *order);
    uint64_t cur_epoch = UINT64_MAX, tokens = 0;
    double t0 = vkd_now(), last_tau = 0;
    bool tty = isatty(2);
    for (uint64_t s = start; s < total; s++) {
        uint64_t epoch = s / ntrain;
        if (epoch != cur_epoch) {
            for (size_t k = 0; k < ntrain; k++) order[k] = k;
            for (size_t k = ntrain - 1; k > 0; k--) {
                uint32_t w[4];
                vkd_philox4x32(seed, 0x54440001ull, epoch * ntrain + k, w);
                size_t j = (size_t)(w[0] % (k + 1)), x = order[k];
                order[k] = order[j], order[j] = x;
            }
            cur_epoch = epoch;
        }
        size_t q = order[s % ntrain];
        vkd_train_draft_stats st;
        cli_check(vkd_train_draft_step(tr, rec, all[q].ids, all[q].n, all[q].resp, (uint32_t)q, s, &st, &err), &err);
        tokens += st.rows;
        double el = vkd_now() - t0;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)s + 1);
        cJSON_AddNumberToObject(j, "loss", st.loss);
        cJSON_AddNumberToObject(j, "grad_norm", st.grad_norm);
        cJSON_AddNumberToObject(j, "lr", st.lr);
        cJSON_AddNumberToObject(j, "tau_est", st.tau_est);
        cJSON_AddNumberToObject(j, "rows", st.rows);
        cJSON_AddNumberToObject(j, "seconds", st.seconds);
        log_line(log, j);
        if (!quiet && (tty || s + 1 == total || (s + 1) % 50 == 0)) {
            int w = 24, fill = (int)(w * (s + 1) / total);
            fprintf(stderr, "%s[%.*s%*s] step %llu/%llu  loss %.4f  est. tau %.2f  %.0f tok/s%s", tty ? "\r" : "",
                    fill, "########################", w - fill, "", (unsigned long long)s + 1,
                    (unsigned long long)total, st.loss, st.tau_est, el > 0 ? tokens / el : 0, tty ? "  " : "\n");
        }
        bool last = s + 1 == total;
        if (eval_prompts > 0 && ((eval_every && (s + 1) % (uint64_t)eval_every == 0) || last)) {
            last_tau = eval_tau(t, d, rec, ev, (size_t)eval_prompts, (uint32_t)eval_tokens, stops, nstop);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "step", (double)s + 1);
            cJSON_AddNumberToObject(e, "eval_tau", last_tau);
            log_line(log, e);
            if (!quiet) fprintf(stderr, "%sstep %llu: tau %.3f on %ld held-out prompts\n", tty ? "\n" : "",
                                (unsigned long long)s + 1, last_tau, eval_prompts);
        }
        if ((s + 1) % (uint64_t)save_every == 0 || last) save(d, tr, out, train_dir, s + 1, &tcfg, &shape);
    }
    if (start >= total) save(d, tr, out, train_dir, total, &tcfg, &shape);
    fclose(log);
    double el = vkd_now() - t0;
    printf("train-draft: %llu steps (%llu this run), %llu trained rows in %.1fs (%.0f tok/s); draft in %s\n",
           (unsigned long long)total, (unsigned long long)(total - start), (unsigned long long)tokens, el,
           el > 0 ? tokens / el : 0, out);
    if (eval_prompts > 0 && start < total) printf("held-out tau: %.3f\n", last_tau);
    if (vkd_ctx_validation_count(ctx)) cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(ctx));
    free(order);
    for (size_t k = 0; k < nall; k++) free(all[k].ids);
    free(all);
    free(train_dir), free(run_path), free(ck), free(log_path);
    vkd_train_draft_free(tr);
    vkd_dflash_free(d);
    vkd_rec_destroy(rec);
    vkd_target_free(t);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    if (tok) vkd_tok_free(tok);
    return 0;
}
