/* cmd_exit_train.c: vkdraft exit-train (seed 003): distil early-exit heads of a target.
 *
 * Data: every --data FILE becomes token sequences: JSONL / JSON records (chat `messages`
 * rendered by the model's chat template; prompt + response/answer: the prompt as a user turn,
 * then the response text) or, for any other extension, plain text split at blank lines.
 * Each text is cut into windows of --seq-len tokens (shorter than 3 tokens: dropped). A
 * deterministic split (hash of seed and sequence index) holds out --holdout of them.
 * With --self-distill, a JSONL record without a response (no answer/response field, or
 * messages ending with a user turn: e.g. MT-Bench) is completed by the target's own greedy
 * response (at most --self-distill-tokens, within --seq-len), cached in
 * OUT/self_distill.jsonl (self_distill.h) so that --resume does not generate again; those
 * sequences follow the others.
 * Per (layer, temperature) a head is trained in OUT/layer<l>-T<T>/ (exit.safetensors,
 * exit_config.json, state.safetensors = AdamW moments, train.jsonl = one line per step);
 * OUT/summary.json lists the heads with their last training and held-out losses.
 * OUT follows the experiment-folder protocol (apps/exp.h, docs/results.md): locked,
 * config.json (models and parameters) written first, a folder with results continued only
 * by --resume with equal parameters or moved aside by --overwrite. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmds.h"
#include "dataset.h"
#include "exit_data.h"
#include "exp.h"
#include "prompt.h"
#include "safetensors.h"
#include "self_distill.h"
#include "st_write.h"
#include "tokenizer.h"
#include "vkd_exit.h"
#include "vkd_generate.h"

#define CMD "exit-train"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vkdraft exit-train --model DIR --layers L1,L2,.. --data FILE [--data FILE..] --out DIR\n"
            "           [--temperatures T1,..] [--loss kl|ce+kl] [--steps N] [--lr X] [--warmup N]\n"
            "           [--weight-decay W] [--clip C] [--batch-tokens N] [--seq-len N] [--holdout F]\n"
            "           [--checkpoint-every N] [--seed S] [--resume | --overwrite] [--ft-last-block]\n"
            "           [--self-distill [--self-distill-tokens N]] [--quiet]\n\n"
            "Trains early-exit heads (seed 003): at each exit layer l (0-based, after decoder layer l)\n"
            "a copy of the target's final norm and LM head is distilled towards the target's own\n"
            "logits from the same forward pass: token-mean KL(p_target || p_exit) at temperature T,\n"
            "scaled by T^2 (first token of each sequence masked), plus CE on the next tokens with\n"
            "--loss ce+kl. AdamW, linear warmup then cosine decay, gradient clipping.\n\n"
            "  --model DIR            target model folder (config.json, safetensors, tokenizer)\n"
            "  --layers LIST          exit layers, each in 0..num_hidden_layers-1\n"
            "  --temperatures LIST    distillation temperatures (default 1)\n"
            "  --loss kl|ce+kl        objective (default kl)\n"
            "  --data FILE            JSONL/JSON (chat messages, prompt + response/answer) or plain text\n"
            "  --self-distill         records without a response (e.g. MT-Bench prompts) get the target's\n"
            "                         own greedy response, cached in DIR/self_distill.jsonl for --resume\n"
            "  --self-distill-tokens N  at most N generated tokens per response (default 128)\n"
            "  --out DIR              heads go to DIR/layer<l>-T<T>/ (exit.safetensors, exit_config.json)\n"
            "  --steps N              optimizer steps per head (default 200)\n"
            "  --lr X                 peak learning rate (default 1e-3)\n"
            "  --warmup N             warmup steps (default steps/10)\n"
            "  --weight-decay W       AdamW decoupled weight decay (default 0)\n"
            "  --clip C               clip gradients to global norm C, 0: off (default 1)\n"
            "  --batch-tokens N       tokens per optimizer step (default 2048)\n"
            "  --seq-len N            tokens per sequence window (default 256)\n"
            "  --holdout F            fraction of sequences held out (default 0.1)\n"
            "  --checkpoint-every N   save head and optimizer state every N steps (default 50)\n"
            "  --seed S               data split and order (default 0)\n"
            "  --resume               continue heads from their last checkpoint in DIR (its config.json\n"
            "                         must name the same models and parameters)\n"
            "  --overwrite            move earlier results in DIR aside to DIR.old-N and start again\n"
            "  --stop-after N         end each head after N steps of this run, as an interruption\n"
            "                         would (after a checkpoint only if N is a multiple of it)\n"
            "  --ft-last-block        also train a copy of decoder block l with the head (seed 003's\n"
            "                         Option B); saved in exit.safetensors as block.*, run by the exit\n"
            "                         draft in place of the target's block l (plain variant only)\n");
}

static void seqs_add(seqs *s, const int32_t *ids, size_t n, uint32_t win) {
    for (size_t at = 0; at < n; at += win) {
        size_t k = n - at < win ? n - at : win;
        if (k < 3) break;
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 256;
            s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
            s->len = realloc(s->len, s->cap * sizeof *s->len);
            if (!s->ids || !s->len) cli_fatal("out of host memory");
        }
        s->ids[s->n] = malloc(k * sizeof(int32_t));
        if (!s->ids[s->n]) cli_fatal("out of host memory");
        memcpy(s->ids[s->n], ids + at, k * sizeof(int32_t));
        s->len[s->n++] = (uint32_t)k;
    }
}

/* Prompts waiting for a self-distilled response. */
typedef struct pending {
    sd_prompt *p;
    size_t n, cap;
} pending;

/* Whether record r has no response of its own: no answer, and not a chat ending with the
 * assistant. */
static bool needs_response(const vkd_ds_record *r) {
    if (r->answer) return false;
    if (r->prompt) return true;
    return r->n_messages && !strcmp(r->messages[r->n_messages - 1].role, "user");
}

/* Appends the sequences of one file; exits naming the file when it gives none. With pend, a
 * record without a response is set aside there for --self-distill instead. */
static void load_file(const char *cmd, const char *path, vkd_tok *tok, uint32_t win, seqs *s, pending *pend) {
    size_t before = s->n, pend_before = pend ? pend->n : 0;
    vkd_error err = {0};
    if (cli_has_ext(path, ".jsonl") || cli_has_ext(path, ".json")) {
        vkd_ds *ds;
        cli_check(vkd_ds_load(path, &(vkd_ds_options){0}, &ds, &err), &err);
        bool any_answer = false;
        for (size_t i = 0; i < ds->count; i++) any_answer |= ds->records[i].answer != NULL;
        if (!any_answer) { /* prompt / response files */
            vkd_ds *d2;
            if (!vkd_ds_load(path, &(vkd_ds_options){.answer_field = "response"}, &d2, &err)) {
                vkd_ds_free(ds);
                ds = d2;
            }
        }
        for (size_t i = 0; i < ds->count; i++) {
            const vkd_ds_record *r = &ds->records[i];
            char *text = chat_render_record(cmd, tok, r, false);
            if (pend && needs_response(r)) {
                if (pend->n == pend->cap) {
                    pend->cap = pend->cap ? 2 * pend->cap : 64;
                    pend->p = realloc(pend->p, pend->cap * sizeof *pend->p);
                    if (!pend->p) cli_fatal("out of host memory");
                }
                sd_prompt *q = &pend->p[pend->n++];
                *q = (sd_prompt){.file = path, .line = r->line};
                q->ids = encode_rendered(tok, text, &q->n);
                free(text);
                continue;
            }
            if (r->answer) {
                size_t a = strlen(text), b = strlen(r->answer);
                text = realloc(text, a + b + 1);
                if (!text) cli_fatal("out of host memory");
                memcpy(text + a, r->answer, b + 1);
            }
            size_t n;
            int32_t *ids = encode_rendered(tok, text, &n);
            seqs_add(s, ids, n, win);
            free(ids);
            free(text);
        }
        vkd_ds_free(ds);
    } else {
        FILE *f = fopen(path, "rb");
        if (!f) cli_fatal("%s: cannot read (%s)", path, strerror(errno));
        size_t cap = 1 << 16, n = 0, k;
        char *buf = malloc(cap + 1);
        while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0)
            if ((n += k) == cap) buf = realloc(buf, (cap *= 2) + 1);
        fclose(f);
        if (!buf) cli_fatal("out of host memory");
        buf[n] = 0;
        if (strlen(buf) != n) cli_fatal("%s: holds a NUL byte: expected plain UTF-8 text", path);
        /* paragraphs: split at blank lines */
        for (char *p = buf; *p;) {
            char *q = strstr(p, "\n\n");
            size_t len = q ? (size_t)(q - p) : strlen(p);
            bool blank = true;
            for (size_t i = 0; i < len && blank; i++) blank = p[i] == ' ' || p[i] == '\n' || p[i] == '\t' || p[i] == '\r';
            if (!blank) {
                int32_t *ids;
                size_t m;
                vkd_result r = vkd_tok_encode(tok, p, len, true, &ids, &m, &err);
                if (r) cli_fatal("%s: %s", path, err.msg);
                seqs_add(s, ids, m, win);
                free(ids);
            }
            p += len;
            while (*p == '\n') p++;
        }
        free(buf);
    }
    if (s->n == before && (!pend || pend->n == pend_before))
        cli_fatal("%s: no usable text (expected JSONL records with messages, prompt/response or "
                  "question/answer fields, or plain text of at least 3 tokens)", path);
}

void exit_data_load(const char *cmd, const char *path, vkd_tok *tok, uint32_t win, seqs *s) {
    load_file(cmd, path, tok, win, s, NULL);
}

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

bool exit_data_held(uint64_t seed, size_t i, double holdout) {
    return (double)(mix64(seed ^ mix64(i)) % 1000000) < holdout * 1e6;
}

/* Training order: epoch e is a seeded Fisher-Yates shuffle of the training sequences. */
static void epoch_order(const size_t *train, size_t n, uint64_t seed, uint64_t epoch, size_t *out) {
    memcpy(out, train, n * sizeof *out);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(mix64(seed * 0x100000001B3ull ^ mix64(epoch * 1000003 + i)) % i);
        size_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
}

typedef struct cursor {
    uint64_t epoch;
    size_t at;
} cursor;

/* The sequences of the next batch (at least one, about batch_tokens tokens). */
static size_t next_batch(cursor *c, size_t *order, const size_t *train, size_t ntrain, const seqs *s,
                         uint64_t seed, uint32_t batch_tokens, size_t *out, size_t cap) {
    size_t k = 0;
    uint64_t tokens = 0;
    while (k < cap && k < ntrain && (k == 0 || tokens + s->len[order[c->at]] <= batch_tokens)) {
        out[k++] = order[c->at];
        tokens += s->len[order[c->at]];
        if (++c->at == ntrain) {
            c->at = 0;
            epoch_order(train, ntrain, seed, ++c->epoch, order);
        }
    }
    return k;
}

/* Keeps the lines of a step log with "step" <= done (steps after the last checkpoint rerun). */
static void truncate_log(const char *path, uint64_t done) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    exp_buf keep = {0};
    char line[1024];
    unsigned long long st;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "{\"step\": %llu", &st) == 1 && st <= done) exp_buf_printf(&keep, "%s", line);
    fclose(f);
    vkd_error err = {0};
    cli_check(vkd_write_atomic(path, keep.s ? keep.s : "", keep.n, &err), &err);
    exp_buf_free(&keep);
}

static void mkdir_p(const char *d) {
    if (mkdir(d, 0777) && errno != EEXIST) cli_fatal("%s: cannot create folder (%s)", d, strerror(errno));
}

static bool file_exists(const char *p) { return access(p, F_OK) == 0; }

typedef struct opts {
    const char *model, *out, *layers_s, *temps_s, *loss_s;
    const char *data[16];
    int ndata;
    long steps, stop_after, warmup, batch_tokens, seq_len, every, sd_tokens;
    double lr, wd, clip, holdout;
    unsigned long long seed;
    bool resume, overwrite, quiet, ce, ft_block, self_distill;
    int32_t *layers; /* [nl] */
    double *temps;   /* [nt] */
    size_t nl, nt;
} opts;

/* The flags into *o; false when --help was printed (exit 0). */
static bool parse_args(int argc, char **argv, opts *o) {
    *o = (opts){.temps_s = "1", .loss_s = "kl", .steps = 200, .warmup = -1, .batch_tokens = 2048, .seq_len = 256,
                .every = 50, .lr = 1e-3, .clip = 1, .holdout = 0.1, .sd_tokens = 128};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            usage(stdout);
            return false;
        } else if ((v = cli_value(CMD, "--model", argc, argv, &i))) o->model = v;
        else if ((v = cli_value(CMD, "--out", argc, argv, &i))) o->out = v;
        else if ((v = cli_value(CMD, "--layers", argc, argv, &i))) o->layers_s = v;
        else if ((v = cli_value(CMD, "--temperatures", argc, argv, &i))) o->temps_s = v;
        else if ((v = cli_value(CMD, "--loss", argc, argv, &i))) o->loss_s = v;
        else if ((v = cli_value(CMD, "--data", argc, argv, &i))) {
            if (o->ndata == 16) cli_usage_error(CMD, "--data: at most 16 files");
            o->data[o->ndata++] = v;
        } else if ((v = cli_value(CMD, "--steps", argc, argv, &i))) o->steps = cli_parse_long(CMD, "--steps", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--stop-after", argc, argv, &i)))
            o->stop_after = cli_parse_long(CMD, "--stop-after", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--warmup", argc, argv, &i))) o->warmup = cli_parse_long(CMD, "--warmup", v, 0, 100000000);
        else if ((v = cli_value(CMD, "--batch-tokens", argc, argv, &i)))
            o->batch_tokens = cli_parse_long(CMD, "--batch-tokens", v, 3, 1 << 24);
        else if ((v = cli_value(CMD, "--seq-len", argc, argv, &i))) o->seq_len = cli_parse_long(CMD, "--seq-len", v, 3, 16384);
        else if ((v = cli_value(CMD, "--checkpoint-every", argc, argv, &i)))
            o->every = cli_parse_long(CMD, "--checkpoint-every", v, 1, 100000000);
        else if ((v = cli_value(CMD, "--lr", argc, argv, &i))) o->lr = cli_parse_double(CMD, "--lr", v, 0, 10);
        else if ((v = cli_value(CMD, "--weight-decay", argc, argv, &i))) o->wd = cli_parse_double(CMD, "--weight-decay", v, 0, 10);
        else if ((v = cli_value(CMD, "--clip", argc, argv, &i))) o->clip = cli_parse_double(CMD, "--clip", v, 0, 1e9);
        else if ((v = cli_value(CMD, "--holdout", argc, argv, &i))) o->holdout = cli_parse_double(CMD, "--holdout", v, 0, 0.9);
        else if ((v = cli_value(CMD, "--seed", argc, argv, &i)))
            o->seed = (unsigned long long)cli_parse_long(CMD, "--seed", v, 0, 0x7fffffffffffffffL);
        else if (cli_is("--resume", argv[i])) o->resume = true;
        else if (cli_is("--overwrite", argv[i])) o->overwrite = true;
        else if (cli_is("--quiet", argv[i])) o->quiet = true;
        else if (cli_is("--ft-last-block", argv[i])) o->ft_block = true;
        else if (cli_is("--self-distill", argv[i])) o->self_distill = true;
        else if ((v = cli_value(CMD, "--self-distill-tokens", argc, argv, &i)))
            o->sd_tokens = cli_parse_long(CMD, "--self-distill-tokens", v, 1, 1 << 20);
        else cli_usage_error(CMD, "unknown flag '%s'", argv[i]);
    }
    if (!o->model || !o->out || !o->layers_s || !o->ndata)
        cli_usage_error(CMD, "--model, --layers, --data and --out are required");
    if (o->resume && o->overwrite) cli_usage_error(CMD, "--resume and --overwrite exclude each other");
    o->ce = !strcmp(o->loss_s, "ce+kl");
    if (!o->ce && strcmp(o->loss_s, "kl")) cli_usage_error(CMD, "--loss: expected kl or ce+kl, got '%s'", o->loss_s);
    if (o->warmup < 0) o->warmup = o->steps / 10;
    o->layers = parse_index_list(CMD, "--layers", o->layers_s, "layer indices", &o->nl);
    o->temps = exp_parse_list(CMD, "--temperatures", o->temps_s, 1e-3, 1e3, &o->nt);
    return true;
}

/* What every head's training shares: the data, its split, the target and scratch. */
typedef struct run {
    vkd_tok *tok;
    seqs S;
    size_t *train, *held, ntrain, nheld; /* indices into S */
    vkd_ctx *ctx;
    vkd_target *t;
    vkd_rec *rec;
    uint32_t rows;   /* --seq-len */
    size_t *order;   /* [ntrain] this epoch's order */
    size_t batch[4096];
    float *loss_rows; /* [rows] */
    exp_out out;      /* OUT, locked */
} run;

/* The run's parameters for OUT/config.json (--resume must match them). */
static cJSON *run_params(const opts *o) {
    cJSON *p = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(p, "layers");
    for (size_t i = 0; i < o->nl; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(o->layers[i]));
    a = cJSON_AddArrayToObject(p, "temperatures");
    for (size_t i = 0; i < o->nt; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(o->temps[i]));
    a = cJSON_AddArrayToObject(p, "data");
    for (int i = 0; i < o->ndata; i++) cJSON_AddItemToArray(a, cJSON_CreateString(o->data[i]));
    cJSON_AddStringToObject(p, "loss", o->loss_s);
    cJSON_AddBoolToObject(p, "ft_last_block", o->ft_block);
    cJSON_AddBoolToObject(p, "self_distill", o->self_distill);
    if (o->self_distill) cJSON_AddNumberToObject(p, "self_distill_tokens", (double)o->sd_tokens);
    const struct { const char *k; double v; } num[] = {
        {"steps", (double)o->steps}, {"lr", o->lr}, {"warmup", (double)o->warmup}, {"weight_decay", o->wd},
        {"clip", o->clip}, {"batch_tokens", (double)o->batch_tokens}, {"seq_len", (double)o->seq_len},
        {"holdout", o->holdout}, {"checkpoint_every", (double)o->every}};
    for (size_t i = 0; i < sizeof num / sizeof num[0]; i++) cJSON_AddNumberToObject(p, num[i].k, num[i].v);
    return p;
}

/* Models and data, all checked before OUT is touched; then OUT is created. */
static void load_run(const opts *o, run *r) {
    vkd_error err = {0};
    vkd_cfg cfg;
    cli_check(vkd_cfg_load(o->model, &cfg, &err), &err);
    for (size_t i = 0; i < o->nl; i++)
        if (o->layers[i] >= cfg.num_hidden_layers)
            cli_usage_error(CMD, "--layers: layer %d out of range: %s has layers 0..%lld", o->layers[i], o->model,
                            (long long)cfg.num_hidden_layers - 1);
    cli_check(vkd_tok_load(o->model, &r->tok, &err), &err);
    pending pend = {0};
    for (int i = 0; i < o->ndata; i++)
        load_file(CMD, o->data[i], r->tok, (uint32_t)o->seq_len, &r->S, o->self_distill ? &pend : NULL);
    if (o->self_distill && !pend.n && !o->quiet)
        fprintf(stderr, "exit-train: --self-distill: every record has a response; nothing to generate\n");
    /* the target is frozen (the trained head and block are f32 row-major copies): its weights take
     * the device's layout, texel blocks on lavapipe */
    cli_check(vkd_ctx_create(NULL, &r->ctx, &err), &err);
    r->rows = (uint32_t)o->seq_len;
    cli_check(vkd_target_load(r->ctx, o->model, &(vkd_target_options){.ctx_len = r->rows, .max_rows = r->rows}, &r->t,
                              &err),
              &err);
    cli_check(vkd_rec_create(r->ctx, &r->rec, &err), &err);
    exp_common c = {.cmd = CMD, .target_dir = o->model, .out_dir = o->out, .seed = o->seed, .resume = o->resume,
                    .overwrite = o->overwrite, .quiet = o->quiet};
    exp_open_out(&c, run_params(o), NULL, NULL, &r->out);
    /* exit-train keeps no per-example journal: its steps are logged per head */
    if (fclose(r->out.journal)) cli_fatal("%s: close failed (%s)", r->out.journal_path, strerror(errno));
    r->out.journal = NULL;
    struct stat st;
    if (!stat(r->out.journal_path, &st) && st.st_size == 0) unlink(r->out.journal_path);
    if (pend.n) {
        char cache[4200];
        snprintf(cache, sizeof cache, "%s/self_distill.jsonl", o->out);
        int32_t stops[2 * VKD_CFG_MAX_EOS];
        uint32_t nstop = target_stop_ids(r->t, stops, sizeof stops / sizeof stops[0]);
        sd_generate(CMD, r->t, r->rec, stops, nstop, r->rows, cache, pend.p, pend.n, (uint32_t)o->sd_tokens, o->quiet);
        for (size_t i = 0; i < pend.n; i++) {
            sd_prompt *q = &pend.p[i];
            int32_t *all = malloc((q->n + q->n_response + 1) * sizeof *all);
            if (!all) cli_fatal("out of host memory");
            memcpy(all, q->ids, q->n * sizeof *all);
            if (q->n_response) memcpy(all + q->n, q->response, q->n_response * sizeof *all);
            seqs_add(&r->S, all, q->n + q->n_response, r->rows);
            free(all);
            free(q->ids);
            free(q->response);
        }
        free(pend.p);
    }
    r->train = malloc(r->S.n * sizeof *r->train), r->held = malloc(r->S.n * sizeof *r->held);
    for (size_t i = 0; i < r->S.n; i++) {
        if (exit_data_held(o->seed, i, o->holdout)) r->held[r->nheld++] = i;
        else r->train[r->ntrain++] = i;
    }
    if (r->ntrain == 0)
        cli_fatal("%s: all %zu sequences are held out: lower --holdout or add data", o->data[0], r->S.n);
    if (!o->quiet)
        fprintf(stderr, "exit-train: %zu sequences (%zu train, %zu held out) from %d file(s)\n", r->S.n, r->ntrain,
                r->nheld, o->ndata);
    r->order = malloc(r->ntrain * sizeof *r->order);
    r->loss_rows = malloc(r->rows * sizeof *r->loss_rows);
}

/* The head of (layer li, temperature ti) in dir: loaded (*cont, --resume) or new. */
static vkd_exit *open_head(const opts *o, const run *r, size_t li, size_t ti, const char *dir, bool *cont) {
    vkd_error err = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/exit.safetensors", dir);
    vkd_exit *e;
    *cont = o->resume && file_exists(path);
    mkdir_p(dir);
    if (*cont) cli_check(vkd_exit_load(r->t, o->model, dir, &e, &err), &err);
    else {
        cli_check(vkd_exit_create(r->t, o->model, (uint32_t)o->layers[li], &e, &err), &err);
        if (o->ft_block) cli_check(vkd_exit_add_block(e, o->model, &err), &err);
    }
    const char *trained = o->ft_block ? "head+block" : "head";
    if (*cont && (e->layer != (uint32_t)o->layers[li] || fabsf(e->info.temperature - (float)o->temps[ti]) > 1e-6f ||
                  strcmp(e->info.loss, o->loss_s) || strcmp(e->info.trained, trained)))
        cli_fatal("%s: head at layer %u, T %g, loss '%s', trained '%s'; this run asks layer %d, T %g, loss '%s', "
                  "trained '%s'", path, e->layer, e->info.temperature, e->info.loss, e->info.trained, o->layers[li],
                  o->temps[ti], o->loss_s, trained);
    return e;
}

/* The optimizer moments of a resumed head (np values each, at step done). */
static void load_state(vkd_exit_trainer *tr, const char *dir, size_t np, uint64_t done) {
    vkd_error err = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    vkd_st_file *f;
    cli_check(vkd_st_open(path, &f, &err), &err);
    const vkd_st_tensor *m = vkd_st_find(f, "adam_m"), *v = vkd_st_find(f, "adam_v");
    const char *st = vkd_st_metadata_get(f, "steps");
    if (!m || !v || m->numel != np || v->numel != np || m->dtype != VKD_DTYPE_F32 || !st ||
        strtoull(st, NULL, 10) != done)
        cli_fatal("%s: expected adam_m, adam_v (F32, %zu values) at step %llu", path, np, (unsigned long long)done);
    cli_check(vkd_exit_train_state_set(tr, m->data, v->data, &err), &err);
    vkd_st_close(f);
}

/* A checkpoint after step `step`: state first, then the head (a head always has its state on disk). */
static void save_state(vkd_exit *e, vkd_exit_trainer *tr, const char *dir, size_t np, uint64_t step) {
    vkd_error err = {0};
    float *m = malloc(np * 4), *v = malloc(np * 4);
    if (!m || !v) cli_fatal("out of host memory");
    cli_check(vkd_exit_train_state_get(tr, m, v, &err), &err);
    char st[24], path[4200];
    snprintf(st, sizeof st, "%llu", (unsigned long long)step);
    const char *meta[] = {"steps", st, NULL};
    vkd_st_out ts[2] = {{"adam_m", VKD_DTYPE_F32, 1, {(int64_t)np}, m}, {"adam_v", VKD_DTYPE_F32, 1, {(int64_t)np}, v}};
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    cli_check(vkd_st_write(path, ts, 2, meta, &err), &err);
    cli_check(vkd_exit_save(e, dir, &err), &err);
    free(m);
    free(v);
}

/* One optimizer step on batch[0..k): returns the summed loss; *gnorm, *lr, *scored filled. */
static double train_step(const opts *o, run *r, vkd_exit_trainer *tr, size_t k, uint64_t s, uint64_t *tokens,
                         float *gnorm, double *lr, uint32_t *scored) {
    vkd_error err = {0};
    *scored = 0;
    for (size_t j = 0; j < k; j++) *scored += vkd_exit_train_rows(tr, r->S.len[r->batch[j]]);
    double loss = 0;
    vkd_rec_begin(r->rec);
    vkd_exit_train_zero(r->rec, tr);
    for (size_t j = 0; j < k; j++) {
        uint32_t n = r->S.len[r->batch[j]];
        if (j) vkd_rec_begin(r->rec);
        cli_check(vkd_exit_train_seq(r->rec, tr, r->S.ids[r->batch[j]], n, *scored ? 1.0f / *scored : 0, r->loss_rows,
                                     &err),
                  &err);
        if (vkd_rec_submit(r->rec)) cli_check(vkd_rec_error(r->rec)->code, vkd_rec_error(r->rec));
        for (uint32_t i = 0; i < n; i++) loss += r->loss_rows[i];
        *tokens += n;
    }
    *gnorm = NAN;
    vkd_optim_params p = {.kind = VKD_OPTIM_ADAMW, .lr = o->lr * vkd_lr_cosine(s, (uint64_t)o->warmup, (uint64_t)o->steps),
                          .weight_decay = o->wd, .step = s + 1, .max_grad_norm = o->clip};
    vkd_rec_begin(r->rec);
    cli_check(vkd_exit_train_update(r->rec, tr, &p, gnorm, &err), &err);
    if (vkd_rec_submit(r->rec)) cli_check(vkd_rec_error(r->rec)->code, vkd_rec_error(r->rec));
    *lr = p.lr;
    return loss;
}

/* Steps done..--steps (or --stop-after of them) of one head, logged to dir/train.jsonl and
 * checkpointed; returns the last step's loss (NAN when none ran). */
static double train_head(const opts *o, run *r, vkd_exit *e, vkd_exit_trainer *tr, const char *dir, size_t li,
                         size_t ti, bool cont, uint64_t done, size_t np) {
    /* replay the data order up to `done` (host only) */
    cursor c = {0};
    epoch_order(r->train, r->ntrain, o->seed, 0, r->order);
    for (uint64_t s = 0; s < done; s++)
        next_batch(&c, r->order, r->train, r->ntrain, &r->S, o->seed, (uint32_t)o->batch_tokens, r->batch, 4096);
    char path[4200];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    if (cont) truncate_log(path, done);
    FILE *log = fopen(path, cont ? "a" : "w");
    if (!log) cli_fatal("%s: cannot write (%s)", path, strerror(errno));
    double t0 = vkd_now(), last_loss = NAN;
    uint64_t tokens = 0;
    for (uint64_t s = done; s < (uint64_t)o->steps && !(o->stop_after && s - done >= (uint64_t)o->stop_after); s++) {
        size_t k = next_batch(&c, r->order, r->train, r->ntrain, &r->S, o->seed, (uint32_t)o->batch_tokens, r->batch,
                              4096);
        float gnorm;
        double lr;
        uint32_t scored;
        double loss = train_step(o, r, tr, k, s, &tokens, &gnorm, &lr, &scored);
        if (!isfinite(loss)) cli_fatal("%s: loss is not finite at step %llu (lower --lr)", dir, (unsigned long long)s);
        last_loss = loss;
        double el = vkd_now() - t0;
        fprintf(log, "{\"step\": %llu, \"loss\": %.6g, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens\": %u}\n",
                (unsigned long long)s + 1, loss, lr, o->clip > 0 ? gnorm : NAN, scored);
        fflush(log);
        if (!o->quiet && (isatty(2) || (s + 1) % 10 == 0 || s + 1 == (uint64_t)o->steps))
            fprintf(stderr, "%sexit-train layer %d T %g: step %llu/%ld  loss %.4f  %.0f tok/s%s", isatty(2) ? "\r" : "",
                    o->layers[li], o->temps[ti], (unsigned long long)s + 1, o->steps, loss, el > 0 ? tokens / el : 0,
                    isatty(2) ? "  " : "\n");
        e->info.steps = s + 1;
        if ((s + 1) % (uint64_t)o->every == 0 || s + 1 == (uint64_t)o->steps) save_state(e, tr, dir, np, s + 1);
    }
    if (!o->quiet && isatty(2)) fputc('\n', stderr);
    fclose(log);
    return last_loss;
}

/* Held-out loss (the same objective, forward only); NAN when no row is scored. */
static double heldout_loss(run *r, vkd_exit_trainer *tr, uint32_t *hscored) {
    vkd_error err = {0};
    double hl = NAN;
    *hscored = 0;
    for (size_t j = 0; j < r->nheld; j++) *hscored += vkd_exit_train_rows(tr, r->S.len[r->held[j]]);
    if (*hscored) {
        hl = 0;
        for (size_t j = 0; j < r->nheld; j++) {
            vkd_rec_begin(r->rec);
            cli_check(vkd_exit_train_loss(r->rec, tr, r->S.ids[r->held[j]], r->S.len[r->held[j]], 1.0f / *hscored,
                                         r->loss_rows, &err),
                      &err);
            if (vkd_rec_submit(r->rec)) cli_check(vkd_rec_error(r->rec)->code, vkd_rec_error(r->rec));
            for (uint32_t i = 0; i < r->S.len[r->held[j]]; i++) hl += r->loss_rows[i];
        }
    }
    return hl;
}

/* One head, (layer li, temperature ti): trained, evaluated, its summary entry appended. */
static void run_head(const opts *o, run *r, size_t li, size_t ti, exp_buf *summary) {
    vkd_error err = {0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/layer%d-T%g", o->out, o->layers[li], o->temps[ti]);
    bool cont;
    vkd_exit *e = open_head(o, r, li, ti, dir, &cont);
    vkd_exit_trainer *tr;
    vkd_exit_train_options to = {.temperature = (float)o->temps[ti], .ce = o->ce, .max_rows = r->rows};
    cli_check(vkd_exit_trainer_create(e, &to, &tr, &err), &err);
    uint64_t done = cont ? e->info.steps : 0;
    size_t np = (size_t)vkd_exit_train_params(tr);
    if (cont && done) load_state(tr, dir, np, done);
    snprintf(e->info.trained, sizeof e->info.trained, "%s", o->ft_block ? "head+block" : "head");
    snprintf(e->info.loss, sizeof e->info.loss, "%s", o->loss_s);
    e->info.temperature = (float)o->temps[ti];
    double last_loss = train_head(o, r, e, tr, dir, li, ti, cont, done, np);
    uint32_t hscored;
    double hl = heldout_loss(r, tr, &hscored);
    if (!o->quiet) fprintf(stderr, "exit-train: %s: train loss %.4f, held-out loss %.4f\n", dir, last_loss, hl);
    exp_buf_printf(summary, "%s\n    {\"dir\": \"%s\", \"layer\": %d, \"temperature\": %g, \"train_loss\": %.6g, "
                   "\"heldout_loss\": %.6g, \"heldout_tokens\": %u}", li + ti ? "," : "", dir, o->layers[li], o->temps[ti],
                   last_loss, hl, hscored);
    vkd_exit_trainer_free(tr);
    vkd_exit_free(e);
}

int vkd_cmd_exit_train(int argc, char **argv) {
    opts o;
    if (!parse_args(argc, argv, &o)) return 0;
    run r = {0};
    load_run(&o, &r);
    vkd_error err = {0};
    exp_buf summary = {0};
    exp_buf_printf(&summary, "{\n  \"model\": \"%s\",\n  \"loss\": \"%s\",\n  \"steps\": %ld,\n  \"heads\": [", o.model,
                   o.loss_s, o.steps);
    for (size_t li = 0; li < o.nl; li++)
        for (size_t ti = 0; ti < o.nt; ti++) run_head(&o, &r, li, ti, &summary);
    exp_buf_printf(&summary, "\n  ],\n  \"sequences\": %zu,\n  \"train_sequences\": %zu,\n  \"heldout_sequences\": %zu\n}\n",
                   r.S.n, r.ntrain, r.nheld);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", o.out);
    cli_check(vkd_write_atomic(path, summary.s, summary.n, &err), &err);
    exp_buf_free(&summary);
    exp_close_out(&r.out);
    for (size_t i = 0; i < r.S.n; i++) free(r.S.ids[i]);
    free(r.S.ids);
    free(r.S.len);
    free(r.train);
    free(r.held);
    free(r.order);
    free(r.loss_rows);
    free(o.layers);
    free(o.temps);
    cli_print_profile(r.ctx);
    vkd_rec_destroy(r.rec);
    vkd_target_free(r.t);
    if (vkd_ctx_validation_count(r.ctx)) cli_fatal("Vulkan validation: %s", vkd_ctx_validation_first(r.ctx));
    vkd_ctx_destroy(r.ctx);
    vkd_tok_free(r.tok);
    return 0;
}
