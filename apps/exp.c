/* exp.c: the shared side of the experiment commands (see exp.h). */
#include "exp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "cli.h"
#include "config.h"
#include "figure.h"
#include "prompt.h"
#include "safetensors.h"
#include "vkd_answer.h"
#include "vkd_draft.h"
#include "vkd_exit.h"
#include "vkd_generate.h"
#include "vkd_ttt.h"

const char exp_common_help[] =
    "common experiment flags:\n"
    "  --target DIR          target model folder (Hugging Face layout)\n"
    "  --draft DIR           DFlash draft folder\n"
    "  --exit-head DIR       instead of --draft: an early-exit head from vkdraft exit-train as the\n"
    "                        draft (gamma = block size - 1, default block 5)\n"
    "  --exit-mode M         reuse (self-speculative: the target's KV cache; probe only, its\n"
    "                        default) or plain (the truncated target with its own KV cache; the\n"
    "                        default and only mode of diagnose, power and guide, which draft\n"
    "                        blocks behind the target's end)\n"
    "  --adapter DIR         PEFT LoRA adapter (e.g. from vkdraft ttt --save-adapter) on the draft\n"
    "  --dataset FILE        JSONL (or the MATH-500 JSON array); GSM8K, MATH-500, HumanEval and\n"
    "                        MT-Bench field names are recognised from the file name\n"
    "  --prompt-field F, --answer-field F, --id-field F   override the field names\n"
    "  --limit N             N records drawn with seed 0 as spec --limit draws them (the first N\n"
    "                        of a fixed permutation, run in that order; default: all, in file order)\n"
    "  --subset-frac F       a fraction 0 < F <= 1 of the records (round(F * records), at least\n"
    "                        1), drawn with seed 0 as spec --limit draws them, run in file order\n"
    "  --out DIR             results folder: config.json, examples.jsonl (journal), tables\n"
    "  --resume              continue the run in DIR: skip examples already in its journal\n"
    "                        (same parameters and models, else refused)\n"
    "  --overwrite           move earlier results in DIR aside (to DIR.old-N) and start again;\n"
    "                        without --resume or --overwrite a folder with results is refused\n"
    "  --seed S              every random choice derives from S (default 0)\n"
    "  --block-size B        draft block size (default: the draft's config)\n"
    "  --kv-dtype f32|f16    KV cache precision (default f32)\n"
    "  --think               Qwen3 chat template with thinking on (default off)\n"
    "  --quiet               no progress bar\n"
    "  --bootstrap N         resamples of the examples behind each 95% bootstrap confidence\n"
    "                        interval in summary.json, report.txt and the figures (default\n"
    "                        1000; seeded by --seed)\n"
    "  --svg                 write every figure as .svg too (always .png and .pdf)\n"
    "  --shard I/N           run only shard I (0 <= I < N) of the work: the examples whose index\n"
    "                        mod N is I, every cell of them; `vkdraft merge OUT DIR...` combines\n"
    "                        the N shards' folders into the outputs of one unsharded run\n"
    "  --merge-shard DIR     (what vkdraft merge passes, once per shard in order) take every\n"
    "                        record from the shard folders instead of computing it\n";

/* --shard I/N */
static void parse_shard(exp_common *c, const char *v) {
    char *end;
    errno = 0;
    unsigned long a = strtoul(v, &end, 10), b = 0;
    bool ok = end != v && *end == '/' && v[0] != '-' && errno == 0;
    if (ok) {
        const char *q = end + 1;
        b = strtoul(q, &end, 10);
        ok = end != q && *end == 0 && q[0] != '-' && errno == 0 && b >= 1 && b <= (1u << 20) && a < b;
    }
    if (!ok) cli_usage_error(c->cmd, "--shard: expected I/N with 0 <= I < N <= 1048576 (e.g. 0/4), got '%s'", v);
    c->shard_i = (uint32_t)a;
    c->shard_n = (uint32_t)b;
}

bool exp_flag(exp_common *c, int argc, char **argv, int *i) {
    const char *v, *cmd = c->cmd;
    c->argc = argc;
    c->argv = argv;
    if ((v = cli_value(cmd, "--target", argc, argv, i))) c->target_dir = v;
    else if ((v = cli_value(cmd, "--draft", argc, argv, i))) c->draft_dir = v;
    else if ((v = cli_value(cmd, "--exit-head", argc, argv, i))) c->exit_head = v;
    else if ((v = cli_value(cmd, "--exit-mode", argc, argv, i))) {
        if (strcmp(v, "reuse") && strcmp(v, "plain")) cli_usage_error(cmd, "--exit-mode: expected reuse or plain, got '%s'", v);
        c->exit_mode = v;
    } else if ((v = cli_value(cmd, "--adapter", argc, argv, i))) c->adapter = v;
    else if ((v = cli_value(cmd, "--dataset", argc, argv, i))) c->dataset = v;
    else if ((v = cli_value(cmd, "--prompt-field", argc, argv, i))) c->prompt_field = v;
    else if ((v = cli_value(cmd, "--answer-field", argc, argv, i))) c->answer_field = v;
    else if ((v = cli_value(cmd, "--id-field", argc, argv, i))) c->id_field = v;
    else if ((v = cli_value(cmd, "--out", argc, argv, i))) c->out_dir = v;
    else if ((v = cli_value(cmd, "--kv-dtype", argc, argv, i))) {
        if (strcmp(v, "f32") && strcmp(v, "f16")) cli_usage_error(cmd, "--kv-dtype must be f32 or f16");
        c->kv = v;
    } else if ((v = cli_value(cmd, "--limit", argc, argv, i))) c->limit = cli_parse_long(cmd, "--limit", v, 1, 1L << 30);
    else if ((v = cli_value(cmd, "--subset-frac", argc, argv, i))) {
        c->subset_frac = cli_parse_double(cmd, "--subset-frac", v, 0, 1);
        if (!(c->subset_frac > 0)) cli_usage_error(cmd, "--subset-frac expects a fraction in (0, 1], got '%s'", v);
    }
    else if ((v = cli_value(cmd, "--block-size", argc, argv, i))) c->block = cli_parse_long(cmd, "--block-size", v, 2, 64);
    else if ((v = cli_value(cmd, "--seed", argc, argv, i)))
        c->seed = (unsigned long long)cli_parse_long(cmd, "--seed", v, 0, __LONG_MAX__);
    else if (cli_is("--resume", argv[*i])) c->resume = true;
    else if (cli_is("--overwrite", argv[*i])) c->overwrite = true;
    else if (cli_is("--think", argv[*i])) c->think = true;
    else if (cli_is("--quiet", argv[*i])) c->quiet = true;
    else if ((v = cli_value(cmd, "--bootstrap", argc, argv, i)))
        c->bootstrap = (uint32_t)cli_parse_long(cmd, "--bootstrap", v, 1, 1000000);
    else if (cli_is("--svg", argv[*i])) c->svg = true;
    else if ((v = cli_value(cmd, "--shard", argc, argv, i))) parse_shard(c, v);
    else if ((v = cli_value(cmd, "--merge-shard", argc, argv, i))) c->nmerge++;
    else return false;
    return true;
}

void exp_require(const exp_common *c, bool need_draft) {
    if (!c->target_dir) cli_usage_error(c->cmd, "--target DIR is required");
    if (need_draft && !c->draft_dir && !c->exit_head)
        cli_usage_error(c->cmd, "a draft is required: --draft DIR (DFlash) or --exit-head DIR (early exit)");
    if (c->draft_dir && c->exit_head) cli_usage_error(c->cmd, "--draft and --exit-head exclude each other");
    if (c->exit_mode && !c->exit_head) cli_usage_error(c->cmd, "--exit-mode goes with --exit-head");
    if (c->adapter && !c->draft_dir) cli_usage_error(c->cmd, "--adapter goes with --draft");
    if (!c->out_dir) cli_usage_error(c->cmd, "--out DIR is required");
    if (!c->out_dir[0]) cli_usage_error(c->cmd, "--out needs a folder name, got ''");
    if (c->resume && c->overwrite) cli_usage_error(c->cmd, "--resume and --overwrite exclude each other");
    if (c->limit && c->subset_frac) cli_usage_error(c->cmd, "--limit and --subset-frac exclude each other");
    if (c->nmerge && (c->shard_n || c->resume))
        cli_usage_error(c->cmd, "--merge-shard (vkdraft merge) excludes --shard and --resume");
}

/* ---- data ---- */

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* by id, then by line (so a repeat is reported at its later line) */
static int cmp_record_id(const void *a, const void *b) {
    const vkd_ds_record *x = *(const vkd_ds_record *const *)a, *y = *(const vkd_ds_record *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

void exp_load_data(const exp_common *c, vkd_tok *tok, const char *default_path, bool need_answer,
                   exp_data *out) {
    memset(out, 0, sizeof *out);
    out->path = c->dataset ? c->dataset : default_path;
    if (!out->path) cli_usage_error(c->cmd, "--dataset FILE is required");
    vkd_ds_options o = {.prompt_field = c->prompt_field, .answer_field = c->answer_field,
                        .id_field = c->id_field, .fields = c->ds_fields, .nfields = c->n_ds_fields};
    vkd_error err = {0};
    cli_check(vkd_ds_load(out->path, &o, &out->ds, &err), &err);
    vkd_ds *ds = out->ds;
    if (ds->count == 0) cli_fatal("%s: the dataset has no records", out->path);
    size_t n = c->limit && (size_t)c->limit < ds->count ? (size_t)c->limit : ds->count;
    size_t *pick = NULL; /* record index of each example */
    if (c->limit) pick = draw_records(ds->count); /* spec's DFlash protocol: the first N, in draw order */
    if (c->subset_frac) {
        n = (size_t)floor(c->subset_frac * (double)ds->count + 0.5);
        if (n < 1) n = 1;
        pick = draw_records(ds->count);
        qsort(pick, n, sizeof *pick, cmp_size);
    }
    out->ex = calloc(n, sizeof *out->ex);
    if (!out->ex) cli_fatal("out of memory");
    {   /* ids must be unique: sort the record order by id, compare neighbours */
        const vkd_ds_record **byid = malloc((n ? n : 1) * sizeof *byid);
        if (!byid) cli_fatal("out of memory");
        for (size_t k = 0; k < n; k++) byid[k] = &ds->records[pick ? pick[k] : k];
        qsort(byid, n, sizeof *byid, cmp_record_id);
        for (size_t k = 1; k < n; k++)
            if (!strcmp(byid[k - 1]->id, byid[k]->id))
                cli_fatal("%s:%zu: id '%s' repeats line %zu: ids must be unique (--id-field)", out->path,
                          byid[k]->line, byid[k]->id, byid[k - 1]->line);
        free(byid);
    }
    for (size_t k = 0; k < n; k++) {
        const vkd_ds_record *r = &ds->records[pick ? pick[k] : k];
        exp_example *e = &out->ex[k];
        e->record = r;
        if (need_answer && (!r->answer || !r->answer[0]))
            cli_fatal("%s:%zu: record '%s' has no answer (field '%s'; --answer-field names it)",
                      out->path, r->line, r->id, c->answer_field ? c->answer_field : "answer");
        char *text = chat_render_record(c->cmd, tok, r, c->think);
        e->question = r->prompt ? r->prompt : r->n_messages ? r->messages[r->n_messages - 1].content : "";
        size_t np;
        e->prompt = encode_rendered(tok, text, &np);
        free(text);
        if (np == 0) cli_fatal("%s:%zu: the prompt encodes to no tokens", out->path, r->line);
        e->n_prompt = (uint32_t)np;
        e->id = strdup(r->id);
        e->answer = r->answer;
        e->line = r->line;
        e->index = (size_t)(r - ds->records);
    }
    free(pick);
    out->n = n;
}

void exp_free_data(exp_data *d) {
    for (size_t k = 0; k < d->n; k++) {
        free(d->ex[k].id);
        free(d->ex[k].prompt);
    }
    free(d->ex);
    vkd_ds_free(d->ds);
    memset(d, 0, sizeof *d);
}

/* ---- models ---- */

uint32_t exp_ctx_len(const exp_common *c, const exp_data *d, uint64_t extra) {
    size_t longest = 0, at = 0;
    for (size_t k = 0; k < d->n; k++)
        if (d->ex[k].n_prompt > longest) { longest = d->ex[k].n_prompt; at = k; }
    uint64_t need = longest + extra;
    return ctx_len_fit(c->target_dir, need, need, "%s:%zu: prompt of %zu tokens + %llu more", d->path,
                       d->n ? d->ex[at].line : 0, longest, (unsigned long long)extra);
}
uint32_t exp_ctx_cap(const exp_common *c, uint64_t need) { return ctx_len_fit(c->target_dir, need, 0, "%s", c->cmd); }

void exp_load_tokenizer(const exp_common *c, exp_models *m) {
    vkd_error err = {0};
    cli_check(vkd_tok_load(c->target_dir, &m->tok, &err), &err);
}

void exp_load_models(const exp_common *c, uint32_t ctx_len, exp_models *m) {
    vkd_error err = {0};
    if (!m->tok && !c->tok_optional) exp_load_tokenizer(c, m);
    /* training (ttt, guide --ttt) reads weights row-major: see vkd_ctx_options */
    cli_check(vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = c->train}, &m->ctx, &err), &err);
    vkd_dtype kv = c->kv && !strcmp(c->kv, "f16") ? VKD_DTYPE_F16 : VKD_DTYPE_F32;
    /* TTT reads the frozen head only forward and in the fused loss: the device's layout */
    vkd_target_options to = {.ctx_len = ctx_len, .kv_dtype = kv, .frozen_head = c->train};
    cli_check(vkd_target_load(m->ctx, c->target_dir, &to, &m->t, &err), &err);
    if (c->draft_dir) {
        vkd_dflash_options dop = {.block_size = (uint32_t)c->block, .kv_dtype = kv, .ctx_len = ctx_len};
        cli_check(vkd_dflash_load(m->ctx, m->t, c->draft_dir, &dop, &m->d, &err), &err);
        if (c->adapter && vkd_ttt_adapter_load(m->d, c->adapter, &m->adapter, &err))
            cli_fatal("--adapter %s: %s", c->adapter, err.msg);
    }
    if (c->exit_head) {
        cli_check(vkd_exit_load(m->t, c->target_dir, c->exit_head, &m->exit, &err), &err);
        cli_check(vkd_exit_freeze(m->exit, &err), &err);
    }
    if (c->draft_model) {
        cli_check(vkd_target_load(m->ctx, c->draft_model, &to, &m->dm, &err), &err);
        if (m->dm->vocab != m->t->vocab)
            cli_fatal("%s: the draft model's vocabulary (%u) differs from the target's (%u)", c->cmd, m->dm->vocab,
                      m->t->vocab);
    }
    cli_check(vkd_rec_create(m->ctx, &m->rec, &err), &err);
    m->nstop = target_stop_ids(m->t, m->stops, sizeof m->stops / sizeof m->stops[0]);
}

vkd_draft *exp_draft(const exp_common *c, exp_models *m, bool reuse_ok) {
    vkd_error err = {0};
    vkd_draft *g = NULL;
    if (m->d) cli_check(vkd_draft_dflash(m->d, &g, &err), &err);
    else if (m->exit) {
        uint32_t gamma = (uint32_t)(c->block ? c->block : EXP_EXIT_BLOCK) - 1;
        bool reuse = c->exit_mode ? !strcmp(c->exit_mode, "reuse") : reuse_ok;
        if (reuse && !reuse_ok)
            cli_usage_error(c->cmd, "--exit-mode reuse shares the target's KV cache, which needs every draft block at "
                                    "the target's end; %s drafts blocks behind it: use --exit-mode plain", c->cmd);
        if (vkd_draft_exit(m->exit, gamma, reuse, &g, &err)) cli_fatal("--exit-head %s: %s", c->exit_head, err.msg);
    }
    return g;
}

void exp_free_models(exp_models *m) {
    if (m->ctx && vkd_ctx_validation_count(m->ctx))
        cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(m->ctx));
    vkd_rec_destroy(m->rec);
    vkd_ttt_adapter_free(m->adapter);
    vkd_dflash_free(m->d);
    vkd_exit_free(m->exit);
    vkd_target_free(m->dm);
    vkd_target_free(m->t);
    if (m->ctx) cli_print_profile(m->ctx);
    vkd_ctx_destroy(m->ctx);
    vkd_tok_free(m->tok);
    memset(m, 0, sizeof *m);
}

/* ---- identity, config, journal ---- */

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *n = len;
    return buf;
}

cJSON *exp_model_identity(const char *dir) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t n = 0;
    char *cfg = slurp(path, &n);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; cfg && i < n; i++) h = (h ^ (uint8_t)cfg[i]) * 0x100000001b3ull;
    free(cfg);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    cJSON_AddStringToObject(j, "config_fnv1a64", hex);
    vkd_st_model *m;
    vkd_error err = {0};
    if (vkd_st_model_open(dir, &m, &err) == VKD_OK) {
        uint64_t bytes = 0;
        size_t cnt = vkd_st_model_count(m);
        for (size_t i = 0; i < cnt; i++) {
            const vkd_st_tensor *t;
            if (vkd_st_model_get_at(m, i, &t, &err) == VKD_OK) bytes += t->nbytes;
        }
        cJSON_AddNumberToObject(j, "tensors", (double)cnt);
        cJSON_AddNumberToObject(j, "bytes", (double)bytes);
        vkd_st_model_close(m);
    }
    cJSON *pb = budget_json_of_dir(dir); /* seed 000 section 4.1: parameters by component */
    if (pb) cJSON_AddItemToObject(j, "parameters", pb);
    return j;
}

static void mkdirs(const char *cmd, const char *dir) {
    if (!dir[0]) cli_usage_error(cmd, "--out needs a folder name, got ''");
    char *p = strdup(dir);
    if (!p) cli_fatal("out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) cli_fatal("%s: cannot create folder: %s", dir, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) cli_fatal("%s: not a folder (--out of %s)", dir, cmd);
    free(p);
}

/* Path ("params.alpha") of the first value that differs between two configs, or NULL. Not
 * compared: the vkdraft version (a resumed run may use a rebuilt binary), common.limit
 * (the journal is per example: a larger --limit resumes into more examples) and a shard's
 * argv (the same run may be given its flags in another order). */
static bool config_diff(const cJSON *a, const cJSON *b, const char *prefix, char *path, size_t cap) {
    const cJSON *x;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *from = pass ? b : a;
        cJSON_ArrayForEach(x, from) {
            char p[256];
            snprintf(p, sizeof p, "%s%s%s", prefix, prefix[0] ? "." : "", x->string);
            if (!strcmp(p, "vkdraft") || !strcmp(p, "common.limit") || !strcmp(p, "argv")) continue;
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(pass ? a : b, x->string);
            if (pass == 1) {
                if (!y) { snprintf(path, cap, "%s", p); return true; }
                continue;
            }
            if (y && cJSON_IsObject(x) && cJSON_IsObject(y)) {
                if (config_diff(x, y, p, path, cap)) return true;
            } else if (!y || !cJSON_Compare(x, y, true)) {
                snprintf(path, cap, "%s", p);
                return true;
            }
        }
    }
    return false;
}

static const cJSON *config_at(const cJSON *c, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *x = c;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && x; k = strtok_r(NULL, ".", &save))
        x = cJSON_GetObjectItemCaseSensitive(x, k);
    return x;
}

/* JSON text parsed with 64-bit integers kept exact (as strings, journal.h); NULL if invalid. */
static cJSON *parse_exact(const char *text, size_t n) {
    char *x = jr_exact_ints(text, n);
    if (!x) cli_fatal("out of memory");
    cJSON *j = cJSON_Parse(x);
    free(x);
    return j;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) cli_fatal("out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

#define LOCK_NAME ".vkdraft.lock"

/* Takes the folder's lock (an exclusive flock on DIR/.vkdraft.lock, released when the process
 * ends, however it ends); exits when another process holds it. */
static int lock_folder(const char *dir) {
    char *p = path_in(dir, LOCK_NAME);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) cli_fatal("%s: cannot create the lock file: %s", p, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            cli_fatal("%s: another vkdraft run is writing this folder (it holds %s); wait for it to end or "
                      "use another --out", dir, p);
        cli_fatal("%s: cannot lock: %s", p, strerror(errno));
    }
    free(p);
    return fd;
}

/* Whether the folder holds anything besides the lock file. */
static bool folder_used(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) cli_fatal("%s: cannot read the folder: %s", dir, strerror(errno));
    bool used = false;
    struct dirent *e;
    while (!used && (e = readdir(d)))
        used = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, LOCK_NAME);
    closedir(d);
    return used;
}

/* --overwrite: renames the folder to the first free DIR.old-N beside it (one atomic rename,
 * the old run stays whole), then creates and locks a fresh DIR. Returns the new lock. */
static int move_aside(const char *cmd, const char *dir, int lock_fd) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    char *aside = malloc(n + 32);
    if (!aside) cli_fatal("out of memory");
    for (unsigned k = 1;; k++) {
        snprintf(aside, n + 32, "%.*s.old-%u", (int)n, dir, k);
        struct stat st;
        if (lstat(aside, &st) != 0 && errno == ENOENT) break;
        if (k == 100000) cli_fatal("%s: no free name to move the old results to", dir);
    }
    if (rename(dir, aside) != 0)
        cli_fatal("%s: cannot move the old results to %s: %s", dir, aside, strerror(errno));
    fprintf(stderr, "%s: --overwrite: moved the earlier results in %s to %s\n", cmd, dir, aside);
    free(aside);
    mkdirs(cmd, dir);
    int fd = lock_folder(dir);
    close(lock_fd); /* the lock of the moved folder */
    return fd;
}

static char *config_text(const char *dir, size_t *n) {
    char *p = path_in(dir, "config.json");
    char *t = slurp(p, n);
    free(p);
    return t;
}

void exp_open_out(const exp_common *c, cJSON *params, jr_check_fn check, const jr_limits *lim, exp_out *o) {
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
    o->svg = c->svg;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "command", c->cmd);
    cJSON_AddStringToObject(cfg, "vkdraft", VKD_VERSION);
    cJSON *models = cJSON_AddObjectToObject(cfg, "models");
    cJSON_AddItemToObject(models, "target", exp_model_identity(c->target_dir));
    if (c->draft_dir) cJSON_AddItemToObject(models, "draft", exp_model_identity(c->draft_dir));
    if (c->exit_head) { /* the head's exit_config.json names its layer, T, steps and target */
        cJSON *x = cJSON_AddObjectToObject(models, "exit_head");
        cJSON_AddStringToObject(x, "path", c->exit_head);
        char *p = path_in(c->exit_head, "exit_config.json");
        size_t n = 0;
        char *t = slurp(p, &n);
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; t && i < n; i++) h = (h ^ (uint8_t)t[i]) * 0x100000001b3ull;
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        cJSON_AddStringToObject(x, "exit_config_fnv1a64", hex);
        cJSON_AddStringToObject(x, "mode", c->exit_mode ? c->exit_mode : "default");
        free(t);
        free(p);
    }
    cJSON *common = cJSON_AddObjectToObject(cfg, "common");
    if (c->dataset) cJSON_AddStringToObject(common, "dataset", c->dataset);
    if (c->adapter) cJSON_AddStringToObject(common, "adapter", c->adapter);
    if (c->prompt_field) cJSON_AddStringToObject(common, "prompt_field", c->prompt_field);
    if (c->answer_field) cJSON_AddStringToObject(common, "answer_field", c->answer_field);
    if (c->id_field) cJSON_AddStringToObject(common, "id_field", c->id_field);
    cJSON_AddNumberToObject(common, "limit", (double)c->limit);
    if (c->subset_frac) cJSON_AddNumberToObject(common, "subset_frac", c->subset_frac);
    cJSON_AddNumberToObject(common, "block_size", (double)c->block);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", c->seed); /* exact: a double would round above 2^53 */
    cJSON_AddRawToObject(common, "seed", seed);
    cJSON_AddStringToObject(common, "kv_dtype", c->kv ? c->kv : "f32");
    cJSON_AddBoolToObject(common, "think", c->think);
    if (c->shard_n) { /* a shard: its part and the command line vkdraft merge replays */
        char sh[32];
        snprintf(sh, sizeof sh, "%u/%u", c->shard_i, c->shard_n);
        cJSON_AddStringToObject(common, "shard", sh);
        cJSON *av = cJSON_AddArrayToObject(cfg, "argv");
        for (int a = 0; a < c->argc; a++) cJSON_AddItemToArray(av, cJSON_CreateString(c->argv[a]));
    }
    cJSON_AddItemToObject(cfg, "params", params);
    o->config = cfg;
    if (c->nmerge) exp_merge_open(c, check, lim, o); /* checked before --out is touched */

    mkdirs(c->cmd, c->out_dir);
    o->dir = strdup(c->out_dir);
    o->lock_fd = lock_folder(o->dir);
    o->journal_path = path_in(o->dir, "examples.jsonl");
    bool used = folder_used(o->dir);
    if (used && c->overwrite) {
        o->lock_fd = move_aside(c->cmd, o->dir, o->lock_fd);
        used = false;
    }
    if (used) {
        /* the folder holds a run: only the same run may continue in it (--resume) */
        size_t len;
        char *old = config_text(o->dir, &len);
        cJSON *oc = old ? parse_exact(old, len) : NULL;
        free(old);
        if (!oc)
            cli_fatal("%s: the folder is not empty and has no readable config.json (not the results of a vkdraft "
                      "run): use another --out, or --overwrite to move its files aside", o->dir);
        char *now_s = cJSON_PrintUnformatted(cfg);
        cJSON *now = now_s ? parse_exact(now_s, strlen(now_s)) : NULL;
        free(now_s);
        if (!now) cli_fatal("out of memory");
        char k[256];
        if (config_diff(oc, now, "", k, sizeof k)) {
            const cJSON *a = config_at(oc, k), *b = config_at(now, k);
            char *sa = a ? cJSON_PrintUnformatted(a) : strdup("absent");
            char *sb = b ? cJSON_PrintUnformatted(b) : strdup("absent");
            cli_fatal("%s/config.json: field '%s' differs from this run (%s there, %s now): %s needs the same "
                      "parameters and models; use another --out, or --overwrite to move the earlier results aside",
                      o->dir, k, sa, sb, c->resume ? "--resume" : "a folder that holds results");
        }
        cJSON_Delete(now);
        cJSON_Delete(oc);
        if (!c->resume)
            cli_fatal("%s: already holds results of this run: --resume continues it, --overwrite moves them "
                      "aside (to %s.old-N) and starts again", o->dir, o->dir);
        char *j = slurp(o->journal_path, &len);
        if (j) {
            size_t keep;
            vkd_error err = {0};
            cli_check(jr_parse(o->journal_path, j, len, check, lim, &o->done, &keep, &err), &err);
            free(j);
            /* the only bytes ever removed: a torn last line (no newline), never a record */
            if (keep < len && truncate(o->journal_path, (off_t)keep) != 0)
                cli_fatal("%s: cannot drop the torn last line: %s", o->journal_path, strerror(errno));
        }
    }
    o->check = check;
    if (lim) o->lim = *lim;
    o->shard_i = c->shard_i;
    o->shard_n = c->shard_n;
    /* an empty folder gets its config first; a resumed run rewrites it equal up to the version */
    exp_write_json(o, "config.json", cfg);
    o->journal = fopen(o->journal_path, "a");
    if (!o->journal) cli_fatal("%s: cannot open: %s", o->journal_path, strerror(errno));
}

bool exp_done(exp_out *o, const char *id) { return jr_find(&o->done, id) >= 0; }

static void work_add(exp_out *o, const char *id) {
    if (o->nwork == o->capwork) {
        o->capwork = o->capwork ? 2 * o->capwork : 64;
        o->work = realloc(o->work, o->capwork * sizeof *o->work);
        if (!o->work) cli_fatal("out of memory");
    }
    if (!(o->work[o->nwork++] = strdup(id))) cli_fatal("out of memory");
}

bool exp_claim(exp_out *o, size_t ex, const char *id) {
    if (o->merge) {
        work_add(o, id);
        return exp_merge_take(o, ex, id);
    }
    if (o->shard_n && ex % o->shard_n != o->shard_i) return false;
    work_add(o, id);
    return !exp_done(o, id);
}

const cJSON *exp_find(exp_out *o, const char *id) {
    long k = jr_find(&o->done, id);
    return k < 0 ? NULL : o->done.rec[k];
}

cJSON *exp_record_new(const exp_example *e) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", e->id);
    cJSON_AddNumberToObject(r, "line", (double)e->line);
    cJSON_AddNumberToObject(r, "prompt_tokens", e->n_prompt);
    return r;
}

void exp_journal(exp_out *o, cJSON *record) {
    char *s = cJSON_PrintUnformatted(record);
    if (!s) cli_fatal("out of memory");
    /* keep what a resumed run will read back (cJSON prints 15-17 significant digits), so
     * tables from a resumed journal equal those of an uninterrupted run */
    cJSON_Delete(record);
    record = cJSON_Parse(s);
    if (!record) cli_fatal("journal record does not parse back");
    char msg[256] = "";
    if (o->check && !o->check(record, &o->lim, msg, sizeof msg)) /* what a resume will accept */
        cli_fatal("internal error: a new journal record fails its own check: %s", msg);
    if (fputs(s, o->journal) < 0 || fputc('\n', o->journal) < 0 || fflush(o->journal) != 0 ||
        fsync(fileno(o->journal)) != 0)
        cli_fatal("%s: write failed: %s", o->journal_path, strerror(errno));
    free(s);
    vkd_error err = {0};
    cli_check(jr_add(&o->done, record, 0, &err), &err);
}

void exp_write(const exp_out *o, const char *name, const void *data, size_t n) {
    size_t len = strlen(o->dir) + strlen(name) + 2;
    char *path = malloc(len);
    snprintf(path, len, "%s/%s", o->dir, name);
    vkd_error err = {0};
    cli_check(vkd_write_atomic(path, data, n, &err), &err);
    free(path);
}

void exp_write_json(const exp_out *o, const char *name, const cJSON *j) {
    char *s = cJSON_Print(j);
    if (!s) cli_fatal("out of memory");
    size_t n = strlen(s);
    s = realloc(s, n + 2);
    s[n] = '\n';
    exp_write(o, name, s, n + 1);
    free(s);
}

void exp_write_figure(const exp_out *o, const char *name, const fig_chart *ch) {
    size_t len = strlen(name), stem = len > 4 && !strcmp(name + len - 4, ".png") ? len - 4 : len;
    char *file = malloc(stem + 5);
    if (!file) cli_fatal("out of memory");
    for (int f = FIG_FMT_PNG; f <= (o->svg ? FIG_FMT_SVG : FIG_FMT_PDF); f++) {
        uint8_t *data;
        size_t n;
        vkd_error err = {0};
        snprintf(file, stem + 5, "%.*s.%s", (int)stem, name, fig_format_ext((fig_format)f));
        if (fig_render(ch, (fig_format)f, &data, &n, &err) != VKD_OK) cli_fatal("%s/%s: %s", o->dir, file, err.msg);
        exp_write(o, file, data, n);
        free(data);
    }
    free(file);
}

void exp_close_out(exp_out *o) {
    if (o->journal && fclose(o->journal) != 0) cli_fatal("%s: close failed: %s", o->journal_path, strerror(errno));
    if (o->lock_fd >= 0) close(o->lock_fd);
    jr_free(&o->done);
    for (size_t k = 0; k < o->nwork; k++) free(o->work[k]);
    free(o->work);
    exp_merge_free(o);
    cJSON_Delete(o->config);
    free(o->journal_path);
    free(o->dir);
    memset(o, 0, sizeof *o);
}

/* ---- progress ---- */

void exp_progress_start(exp_progress *p, const char *cmd, size_t total) {
    p->cmd = cmd;
    p->total = total;
    p->t0 = vkd_now();
    p->last_draw = 0;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "--");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void exp_progress_update(exp_progress *p, size_t done, uint64_t work, const char *units) {
    if (!isatty(2) || p->total == 0) return;
    double now = vkd_now(), el = now - p->t0;
    if (done < p->total && now - p->last_draw < 0.2) return;
    p->last_draw = now;
    int w = 30, fill = (int)(w * done / p->total);
    char e[32], r[32];
    fmt_time(el, e, sizeof e);
    fmt_time(done ? el / done * (double)(p->total - done) : -1, r, sizeof r);
    fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu  %.1f %s/s  %s elapsed, ETA %s ", p->cmd, fill,
            "##############################", w - fill, "", done, p->total,
            el > 0 ? (double)work / el : 0, units, e, r);
}

void exp_progress_end(exp_progress *p, size_t done, uint64_t work, const char *units) {
    double el = vkd_now() - p->t0;
    if (isatty(2) && p->total) fputc('\n', stderr);
    fprintf(stderr, "%s: %zu example(s), %llu %s in %.1fs (%.2f %s/s)\n", p->cmd, done,
            (unsigned long long)work, units, el, el > 0 ? (double)work / el : 0, units);
}

/* ---- text ---- */

void exp_buf_printf(exp_buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) cli_fatal("format error");
        if (b->s && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) cli_fatal("out of memory");
        b->s = s;
        b->cap = cap;
    }
}

void exp_buf_csv(exp_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        exp_buf_printf(b, "%s", s);
        return;
    }
    exp_buf_printf(b, "\"");
    for (const char *c = s; *c; c++) exp_buf_printf(b, *c == '"' ? "\"\"" : "%c", *c);
    exp_buf_printf(b, "\"");
}

void exp_buf_free(exp_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* ---- statistics ---- */

double exp_mean(const double *v, size_t n) {
    if (!n) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

double exp_std(const double *v, size_t n) {
    if (!n) return NAN;
    double m = exp_mean(v, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (double)n);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double exp_percentile(const double *v, size_t n, double q) {
    if (!n) return NAN;
    double *s = malloc(n * sizeof *s);
    if (!s) cli_fatal("out of memory");
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double pos = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    double r = s[lo] + (s[hi] - s[lo]) * (pos - (double)lo);
    free(s);
    return r;
}

double *exp_parse_list(const char *cmd, const char *flag, const char *s, double lo, double hi,
                       size_t *n) {
    size_t cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    double *v = malloc(cap * sizeof *v);
    *n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) cli_usage_error(cmd, "%s expects a comma-separated list of numbers, got '%s'", flag, s);
        memcpy(item, p, len);
        item[len] = 0;
        v[*n] = cli_parse_double(cmd, flag, item, lo, hi);
        for (size_t j = 0; j < *n; j++)
            if (v[j] == v[*n]) cli_usage_error(cmd, "%s: %s appears twice (as the same number)", flag, item);
        ++*n;
        if (!e) break;
        p = e + 1;
    }
    return v;
}

int exp_add_grade(cJSON *obj, int kind, const char *response, const char *gold_field, const char *pred_key) {
    char *pred = vkd_answer_extract((vkd_answer_kind)kind, response, 0);
    char *gold = vkd_answer_gold((vkd_answer_kind)kind, gold_field);
    bool ok = vkd_answer_equal((vkd_answer_kind)kind, pred, gold);
    if (pred) cJSON_AddStringToObject(obj, pred_key, pred);
    else cJSON_AddNullToObject(obj, pred_key);
    cJSON_AddBoolToObject(obj, "correct", ok);
    free(pred);
    free(gold);
    return ok;
}

/* ---- for apps/shard.c ---- */

cJSON *exp_read_config(const char *dir) {
    size_t len;
    char *t = config_text(dir, &len);
    cJSON *j = t ? parse_exact(t, len) : NULL;
    free(t);
    return j;
}

bool exp_config_diff(const cJSON *a, const cJSON *b, char *path, size_t cap) { return config_diff(a, b, "", path, cap); }

const cJSON *exp_config_at(const cJSON *c, const char *path) { return config_at(c, path); }

char *exp_slurp(const char *path, size_t *n) { return slurp(path, n); }

cJSON *exp_reparsed(cJSON *rj) {
    char *txt = cJSON_PrintUnformatted(rj);
    cJSON *back = txt ? cJSON_Parse(txt) : NULL;
    if (!back) cli_fatal("out of memory");
    free(txt);
    cJSON_Delete(rj);
    return back;
}
