/* exp.h: what the experiment commands (diagnose, probe, power, guide) share: common flags,
 * loading models and a dataset, the output folder (config.json, a resumable journal of
 * finished examples, atomic result files), a progress bar, and small statistics.
 *
 * Output folder protocol (docs/results.md). Models, dataset and parameters are validated
 * before `--out DIR` is touched. DIR is created if missing and locked (an exclusive flock on
 * DIR/.vkdraft.lock; a second writer is refused). A run starts only in an empty folder; a
 * folder that holds results is continued with --resume when its config.json equals this run's
 * parameters and models (else an error names the differing field), or moved aside whole to
 * DIR.old-N with --overwrite; anything else is refused. config.json is written first
 * (atomically). Each finished example is appended as one JSON line to DIR/examples.jsonl
 * (flushed and fsynced; the journal, never truncated: only a torn last line left by an
 * interrupted write is dropped on resume). Every record read back is validated (type, range,
 * length of each field: apps/journal.h) and a bad one is an error "file:line: field ...".
 * Tables, CSV, summary.json and figures are regenerated from the whole journal at the end,
 * each written atomically. */
#ifndef VKD_EXP_H
#define VKD_EXP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "dataset.h"
#include "journal.h"
#include "tokenizer.h"
#include "vkd_dflash.h"

/* Flags every experiment takes. */
typedef struct exp_common {
    const char *cmd;                 /* "diagnose", ... (messages, config.json) */
    const char *target_dir, *draft_dir;
    const char *adapter;             /* --adapter: a PEFT LoRA adapter attached to the draft */
    const char *dataset;             /* NULL: the command's default */
    const char *prompt_field, *answer_field, *id_field;
    const char *out_dir;
    const char *kv;                  /* "f32" (default) or "f16" */
    long limit;                      /* 0: all examples; else the first N of the seed-0 draw, in draw order */
    double subset_frac;              /* 0: off; else round(F * records) drawn with seed 0, in file order */
    long block;                      /* 0: the draft's block size */
    unsigned long long seed;
    bool resume, overwrite, think, quiet;
    bool train;                      /* the command trains the draft: row-major weights */
    uint32_t bootstrap;              /* --bootstrap N: resamples of each 95% CI (0: 1000) */
    bool svg;                        /* --svg: figures also as .svg */
    bool tok_optional;               /* exp_load_models may run without a tokenizer (spec --ids) */
    const char *const *ds_fields;    /* other dataset fields each record keeps (vkd_ds_options.fields) */
    size_t n_ds_fields;
    const char *draft_model;         /* an ordinary draft model (spec --draft-model): exp_models.dm */
    const char *exit_head;           /* --exit-head DIR: an early-exit draft (exp_models.exit) */
    const char *exit_mode;           /* --exit-mode reuse|plain (NULL: reuse) */
    uint32_t shard_i, shard_n;       /* --shard I/N (0-based I); shard_n 0: not sharded */
    uint32_t nmerge;                 /* --merge-shard DIR flags (vkdraft merge): the shards' folders */
    int argc;                        /* the command line (a shard keeps it for vkdraft merge) */
    char **argv;
} exp_common;

/* Parses one of the common flags at argv[*i] (--target --draft --exit-head --exit-mode --adapter
 * --dataset --prompt-field --answer-field --id-field --out --kv-dtype --limit --block-size --seed
 * --resume --overwrite --think --quiet --bootstrap --svg --shard); true when it was one. */
bool exp_flag(exp_common *c, int argc, char **argv, int *i);
/* Help text for the common flags (printed by each command's usage). */
extern const char exp_common_help[];
/* Checks required flags (--target, --out; a draft, --draft or --exit-head, when need_draft) and
 * that --resume and --overwrite are not both given; usage error otherwise. */
void exp_require(const exp_common *c, bool need_draft);

/* One example: the dataset record rendered through the chat template (one user turn,
 * thinking off unless --think; add_generation_prompt on) and encoded. */
typedef struct exp_example {
    char *id;
    const char *question;            /* borrowed from the dataset */
    const char *answer;              /* NULL when the dataset has none */
    size_t line;                     /* 1-based line in the dataset file */
    size_t index;                    /* 0-based record number in the file: the key of per-example randomness */
    const struct vkd_ds_record *record; /* the dataset record (borrowed) */
    int32_t *prompt;                 /* chat-rendered prompt ids */
    uint32_t n_prompt;
} exp_example;

typedef struct exp_data {
    vkd_ds *ds;
    exp_example *ex;
    size_t n;
    const char *path;                /* dataset path actually used */
} exp_data;

/* Loads the dataset (default_path when --dataset is absent), keeps --limit N records (the first N
 * of the seed-0 permutation draw_records gives spec, in that order: a smaller N is a prefix) or
 * the --subset-frac draw (in file order), renders and encodes prompts. need_answer: a record without an answer is an error naming
 * its line. Exits on error. */
void exp_load_data(const exp_common *c, vkd_tok *tok, const char *default_path, bool need_answer,
                   exp_data *out);
void exp_free_data(exp_data *d);

/* Models of one experiment. */
typedef struct exp_models {
    vkd_ctx *ctx;
    vkd_tok *tok;
    vkd_target *t;
    vkd_dflash *d;                   /* NULL when no --draft */
    vkd_target *dm;                  /* c->draft_model, or NULL */
    struct vkd_exit *exit;           /* c->exit_head loaded for t and frozen, or NULL */
    struct vkd_ttt_adapter *adapter; /* --adapter attached to d, or NULL */
    vkd_rec *rec;
    int32_t stops[2 * VKD_CFG_MAX_EOS]; /* target_stop_ids: generation_config eos ids (else config's) */
    uint32_t nstop;
} exp_models;

/* Loads the tokenizer (exits if missing, unless c->tok_optional), target with a KV cache of
 * ctx_len tokens, and the draft when c->draft_dir (block size c->block, or the draft's own)
 * with c->adapter attached (checked against the draft), or the ordinary draft model
 * c->draft_model (same KV cache; its vocabulary must equal the target's). Exits on error. */
void exp_load_models(const exp_common *c, uint32_t ctx_len, exp_models *m);
/* The draft of an experiment through the single draft interface: the DFlash draft (--draft)
 * or the early-exit draft (--exit-head; gamma = --block-size - 1, default block
 * EXP_EXIT_BLOCK; --exit-mode reuse: self-speculative, plain: own KV cache); NULL when the
 * command runs without a draft. reuse_ok: the command drafts only at the target's end (as
 * speculative decoding does), so the self-speculative variant can share the target's cache;
 * otherwise (blocks behind the target: teacher forcing, resampling) reuse is refused and
 * plain is the default. Exits on error. */
#define EXP_EXIT_BLOCK 5
struct vkd_draft *exp_draft(const exp_common *c, exp_models *m, bool reuse_ok);
void exp_load_tokenizer(const exp_common *c, exp_models *m); /* only the tokenizer */
/* Context capacity for the longest prompt + extra tokens, capped by
 * max_position_embeddings; exits with a clear message when it does not fit. */
uint32_t exp_ctx_len(const exp_common *c, const exp_data *d, uint64_t extra);
/* Context capacity need, capped by max_position_embeddings (commands that skip examples
 * longer than the context). */
uint32_t exp_ctx_cap(const exp_common *c, uint64_t need);
/* Exits when Vulkan validation reported anything; frees everything. */
void exp_free_models(exp_models *m);

/* Identity of a model folder: {"path", "config_fnv1a64", "tensors", "bytes"}. */
cJSON *exp_model_identity(const char *dir);

/* Output folder. `params` (owned by the call) holds the command's own parameters; the
 * common ones, the models' identities, the dataset and the vkdraft version are added. Call it
 * after the models and the dataset are loaded and every parameter is checked: it creates and
 * locks the folder, refuses or moves aside (--overwrite) earlier results, reads a resumed
 * journal back (each record checked with `check` against `lim`), writes config.json and opens
 * the journal. Exits on error. */
typedef struct exp_out {
    char *dir;
    char *journal_path;
    FILE *journal;                   /* append mode */
    jr_journal done;                 /* the journal's records, in order, indexed by id */
    cJSON *config;
    int lock_fd;
    jr_check_fn check;
    jr_limits lim;
    bool svg;                        /* exp_write_figure also writes .svg */
    uint32_t shard_i, shard_n;       /* from --shard */
    struct exp_merge *merge;         /* --merge-shard: the shards' journals (apps/shard.c) */
    char **work;                     /* ids of this run's work items in claim order (exp_claim) */
    size_t nwork, capwork;
} exp_out;
void exp_open_out(const exp_common *c, cJSON *params, jr_check_fn check, const jr_limits *lim, exp_out *o);
/* True when example id is already in the journal (resume). */
bool exp_done(exp_out *o, const char *id);
/* The record as it reads back from the journal (cJSON prints 15 digits when they come within
 * an ulp): what a command keeps, so that tables from a resumed journal equal those of an
 * uninterrupted run. Takes rj. */
cJSON *exp_reparsed(cJSON *rj);
/* Whether this run does the work item with journal id `id` of example number ex (its index in
 * the loaded data): false when the item is in the journal already (resume) or belongs to
 * another shard. --shard I/N gives example ex to shard ex mod N, so all cells of one example
 * run in the same shard (a null cell at alpha 0 finds its guided twin, ttt adapts once). */
bool exp_claim(exp_out *o, size_t ex, const char *id);
/* Call after the last exp_claim, before the progress summary and the outputs are written. It
 * puts o->done in work order (the order of the exp_claim calls; journal records that are no
 * work item of this run after them), so tables from a journal resumed with another --limit equal
 * those of one uninterrupted run. With --merge-shard (vkdraft
 * merge) exp_claim journals each item's record from its shard instead of running it, and this
 * checks that every shard record was taken (a record that is no work item of this run is an
 * error naming it). A no-op otherwise. */
void exp_finish_work(exp_out *o);

/* apps/shard.c: the --merge-shard side of exp_open_out / exp_claim / exp_close_out. */
void exp_merge_open(const exp_common *c, jr_check_fn check, const jr_limits *lim, exp_out *o);
bool exp_merge_take(exp_out *o, size_t ex, const char *id);
void exp_merge_free(exp_out *o);
/* Helpers shared with apps/shard.c and cmd_merge.c: DIR/config.json parsed (64-bit integers
 * exact), NULL when missing or invalid; the path of the first differing field of two configs
 * (version, common.limit and argv are not compared); the value at such a path; a whole file. */
cJSON *exp_read_config(const char *dir);
/* "I/N" of a shard's config.json (common.shard); false when absent or malformed. */
bool exp_shard_of(const cJSON *cfg, uint32_t *i, uint32_t *n);
/* A copy of a shard's config as the unsharded run writes it (no common.shard, no argv). */
cJSON *exp_unsharded_config(const cJSON *cfg);
/* Like exp_config_diff, common.limit included (shards of one run share it). */
bool exp_config_differs(const cJSON *a, const cJSON *b, char *path, size_t cap);
bool exp_config_diff(const cJSON *a, const cJSON *b, char *path, size_t cap);
const cJSON *exp_config_at(const cJSON *c, const char *path);
char *exp_slurp(const char *path, size_t *n);
/* The journal record with this id, or NULL. */
const cJSON *exp_find(exp_out *o, const char *id);
/* A new journal record for example e: {"id", "line", "prompt_tokens"}. */
cJSON *exp_record_new(const exp_example *e);
/* Appends one finished example (owned by the call; must have "id" and pass the command's
 * record check) to the journal and to o->done; flushes and fsyncs. */
void exp_journal(exp_out *o, cJSON *record);
/* Writes DIR/name atomically; exits on error. */
void exp_write(const exp_out *o, const char *name, const void *data, size_t n);
void exp_write_json(const exp_out *o, const char *name, const cJSON *j);
/* Renders a chart (apps/figure.h) to DIR/name (a .png name) as PNG and, beside it, as PDF
 * (the same name ending .pdf) and, with --svg, SVG; each atomically; exits on error. */
struct fig_chart;
void exp_write_figure(const exp_out *o, const char *name, const struct fig_chart *ch);
void exp_close_out(exp_out *o);

/* Progress bar on stderr with rate and ETA (a single summary line when stderr is not a
 * terminal). units: what `work` counts ("tok"). */
typedef struct exp_progress {
    const char *cmd;
    size_t total;
    double t0;
    double last_draw;
} exp_progress;
void exp_progress_start(exp_progress *p, const char *cmd, size_t total);
void exp_progress_update(exp_progress *p, size_t done, uint64_t work, const char *units);
void exp_progress_end(exp_progress *p, size_t done, uint64_t work, const char *units);

/* Growable text buffer for CSV and reports. */
typedef struct exp_buf {
    char *s;
    size_t n, cap;
} exp_buf;
void exp_buf_printf(exp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as one CSV field (quoted when it holds a comma, quote, CR or LF). */
void exp_buf_csv(exp_buf *b, const char *s);
void exp_buf_free(exp_buf *b);

/* Grades a response against a dataset's answer field (text/vkd_answer.h: the gold answer, the
 * extracted one, equality): adds pred_key (the extracted answer, or null) and "correct" (a
 * bool) to obj. Returns 1 correct, 0 wrong. */
int exp_add_grade(cJSON *obj, int kind, const char *response, const char *gold_field, const char *pred_key);

/* Statistics over n doubles (n may be 0: NAN). Percentile q in [0, 100] with linear
 * interpolation between order statistics (numpy's default). v is not modified. */
double exp_mean(const double *v, size_t n);
double exp_std(const double *v, size_t n);      /* population (ddof 0), as numpy */
double exp_percentile(const double *v, size_t n, double q);

/* Parses "a,b,c" into distinct doubles in [lo, hi]; usage error naming flag otherwise. */
double *exp_parse_list(const char *cmd, const char *flag, const char *s, double lo, double hi,
                       size_t *n);

#endif
