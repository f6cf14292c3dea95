/* vkdraft ttt: test-time training of the DFlash draft on each example's context (seeds 001
 * and 004 phase 1 / 1.5; vkd_ttt.h has the objective and the measurement protocol).
 *
 * Per example: the draft is measured without an adapter (greedy spec tau of the prompt's
 * continuation; teacher-forced p / rank of the gold answer in mask mode), then for each
 * (rank, lr) of the sweep one training run of max(--steps) updates whose adapter is measured
 * again after each --steps count. Each finished example goes to the journal; results.csv,
 * summary.json (delta tau with a bootstrap CI over examples), report.txt and the figures are
 * rebuilt from the whole journal at the end, so --resume continues an interrupted sweep. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "figure.h"
#include "prompt.h"
#include "report.h"
#include "vkd_generate.h"
#include "vkd_ttt.h"


static void usage(void) {
    printf("usage: vkdraft ttt --target DIR --draft DIR (--dataset FILE [--limit N] | --chat TEXT | --ids LIST)\n"
           "           --out DIR [--steps N,..] [--lr X,..] [--optimizer adamw|sgd] [--rank R,..]\n"
           "           [--lora-alpha A] [--lora-targets fc,k_proj,v_proj,q_proj]\n"
           "           [--anchors-per-step K | --anchors A1,A2,..] [--gamma G] [--max-new-tokens N]\n"
           "           [--init-adapter DIR] [--save-adapter DIR] [--json] [--seed S] [--resume]\n\n"
           "Test-time training of the DFlash draft on its context (seeds 001 and 004).\n"
           "Context x_0..x_{T-1}: the chat-rendered prompt (thinking off unless --think), plus the\n"
           "record's answer when it has one (--chat and --ids: the prompt only; --ids is used as is).\n"
           "The target runs once over it with taps. For an anchor a (1 <= a <= T-2) the draft gets\n"
           "[x_a, MASK x (B-1)] at positions a..a+B-1 with the context features of positions < a;\n"
           "block row k (a+k <= T-1) learns x_{a+k} with weight w_k = exp(-(k-1)/gamma). Loss of a\n"
           "step = sum of w_k * CE over its anchors and rows / sum of the same w_k. Anchors: K per\n"
           "step drawn uniformly without replacement from 1..T-2 (Philox keyed by --seed, the\n"
           "example and the step), or --anchors (every step uses them). LoRA: y = x W^T +\n"
           "(alpha/r) (x A^T) B^T, A Kaiming-uniform (seeded), B = 0; constant learning rate.\n\n"
           "Measured per example without and with the adapter: tau of greedy speculative decoding\n"
           "of the prompt's continuation (same prompt, --max-new-tokens, the target's eos ids), and\n"
           "with an answer the teacher-forced mean p and rank of its tokens under the draft in mask\n"
           "mode (the diagnose protocol). Training: loss per step (the first is the loss before any\n"
           "update), time per step, training tokens/s (trained rows per second).\n\n"
           "Sweeps: every (rank, lr, steps) of the lists. One run of max(steps) updates per (rank,\n"
           "lr) is measured after each step count on the way (the learning rate is constant and the\n"
           "anchors of a step do not depend on the step count, so this is the adapter a shorter run\n"
           "would end with).\n\n"
           "  --steps LIST          updates (default %d)\n"
           "  --lr LIST             learning rates > 0 (default %g)\n"
           "  --optimizer O         adamw (torch.optim.AdamW, weight decay 0; default) or sgd\n"
           "  --rank LIST           LoRA ranks (default %d)\n"
           "  --lora-alpha A        LoRA alpha (default %g)\n"
           "  --lora-targets LIST   modules of the draft (default fc,k_proj,v_proj; also q_proj)\n"
           "  --anchors-per-step K  (default %d, capped at T-2)\n"
           "  --anchors LIST        fixed anchors, each in 1..T-2\n"
           "  --gamma G             row weight decay (default %g)\n"
           "  --max-new-tokens N    spec decoding length of the tau measurement (default 128)\n"
           "  --init-adapter DIR    start from this PEFT adapter (its rank and targets; --rank and\n"
           "                        --lora-targets must agree when given)\n"
           "  --save-adapter DIR    write the adapter after training (PEFT layout); needs one\n"
           "                        example and one setting\n"
           "  --json                print per example and setting the per-step losses as JSON on\n"
           "                        stdout (instead of the report)\n\n"
           "Outputs in --out: results.csv (one row per example x setting), summary.json (per\n"
           "setting: means, delta tau with its 95%% bootstrap CI over examples), report.txt,\n"
           "fig_delta_tau.png (mean delta tau vs steps, one line per lr and rank),\n"
           "fig_loss_curves.png (mean loss per step of the longest run per lr and rank),\n"
           "config.json, examples.jsonl (the journal).\n\n%s",
           VKD_TTT_DEFAULT_STEPS, VKD_TTT_DEFAULT_LR, VKD_TTT_DEFAULT_RANK, VKD_TTT_DEFAULT_ALPHA,
           VKD_TTT_DEFAULT_ANCHORS, VKD_TTT_DEFAULT_GAMMA, exp_common_help);
}

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) {
    const cJSON *x = item(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}
static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

/* "1,2,3" of integers in [lo, hi] */
static uint32_t *parse_u32_list(const char *flag, const char *s, long lo, long hi, size_t *n) {
    double *v = exp_parse_list("ttt", flag, s, (double)lo, (double)hi, n);
    uint32_t *u = malloc(*n * sizeof *u);
    if (!u) cli_fatal("out of memory");
    for (size_t i = 0; i < *n; i++) {
        if (v[i] != floor(v[i])) cli_usage_error("ttt", "%s: '%g' is not an integer", flag, v[i]);
        u[i] = (uint32_t)v[i];
    }
    free(v);
    return u;
}

/* measurement of the draft as it is, into a JSON object */
static vkd_result measure_json(exp_models *m, const int32_t *prompt, uint32_t P, const int32_t *seq, uint32_t n,
                               uint32_t max_new, cJSON **out, vkd_error *err) {
    vkd_ttt_metrics mt;
    vkd_ttt_measure_options mo = {.max_new_tokens = max_new, .stop_ids = m->stops, .nstop = m->nstop};
    *out = NULL;
    vkd_result r = vkd_ttt_measure(m->d, m->rec, prompt, P, seq, n, &mo, &mt, err);
    if (r) return r;
    cJSON *j = cJSON_CreateObject();
    add_num(j, "tau", mt.tau);
    cJSON_AddNumberToObject(j, "spec_steps", mt.spec_steps);
    cJSON_AddNumberToObject(j, "generated", mt.generated);
    cJSON_AddBoolToObject(j, "stopped", mt.stopped);
    cJSON_AddNumberToObject(j, "spec_s", mt.spec_s);
    cJSON_AddNumberToObject(j, "tf_tokens", mt.tf_tokens);
    add_num(j, "p_mean", mt.p_mean);
    add_num(j, "rank_mean", mt.rank_mean);
    add_num(j, "logp_mean", mt.logp_mean);
    cJSON *ids = cJSON_AddArrayToObject(j, "ids");
    for (uint32_t i = 0; i < mt.generated; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(mt.ids[i]));
    vkd_ttt_metrics_free(&mt);
    *out = j;
    return VKD_OK;
}

/* state of one training run, seen by the checkpoint callback */
typedef struct run_ctx {
    exp_models *m;
    const int32_t *prompt, *seq;
    uint32_t P, n, max_new;
    const vkd_ttt_trace *trace;
    double lr;
    uint32_t rank;
    cJSON *settings;             /* the example's array of setting rows */
} run_ctx;

static vkd_result on_checkpoint(void *user, uint32_t steps, vkd_error *err) {
    run_ctx *r = user;
    /* a failed measurement (e.g. the adapted draft's logits overflow) ends the run as a failed
     * step does: the caller keeps the adapter as it stands */
    cJSON *row;
    vkd_result res = measure_json(r->m, r->prompt, r->P, r->seq, r->n, r->max_new, &row, err);
    if (res) return res;
    cJSON_AddNumberToObject(row, "steps", steps);
    cJSON_AddNumberToObject(row, "lr", r->lr);
    cJSON_AddNumberToObject(row, "rank", r->rank);
    const vkd_ttt_trace *t = r->trace;
    cJSON *ls = cJSON_AddArrayToObject(row, "losses");
    for (uint32_t i = 0; i < steps && i < t->n; i++) cJSON_AddItemToArray(ls, cJSON_CreateNumber(t->losses[i]));
    cJSON_AddNumberToObject(row, "features_s", t->features_s);
    cJSON_AddNumberToObject(row, "train_s", t->train_s);
    cJSON_AddNumberToObject(row, "train_rows", (double)t->train_rows);
    cJSON_AddItemToArray(r->settings, row);
    return VKD_OK;
}

/* one (rank, lr, steps) of the sweep, aggregated over examples */
typedef struct agg {
    vkd_ttt_setting s;
    double *dtau, *tau_b, *tau_t, *dp, *drank, *loss0, *loss1, *step_ms, *tok_s;
    size_t n;
    double *loss_sum;            /* per step */
    double *loss_cnt;
} agg;

/* The command's flags and what is derived from them. */
typedef struct ttt_opts {
    exp_common c;
    const char *steps_s, *lr_s, *rank_s, *targets_s, *anchors_s, *chat, *ids_s, *init_adapter, *save_adapter, *opt_s;
    double alpha, gamma;
    long K, max_new;
    bool json;
    vkd_ttt_optimizer optimizer;
    uint32_t def_steps, def_rank;
    double def_lr;
    uint32_t *steps, *ranks, *anchors;   /* steps, ranks: &def_* when not given */
    double *lrs;
    size_t nsteps, nlr, nrank, nanch;
    vkd_ttt_setting *grid;           /* the sweep, steps fastest */
    size_t ng;
    uint32_t targets;
    char targets_str[64];
    uint32_t Kdef, B;
} ttt_opts;

/* The flag loop; false after --help. */
static bool parse_flags(int argc, char **argv, ttt_opts *T) {
    exp_common *c = &T->c;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(c, argc, argv, &i)) continue;
        if ((v = cli_value(c->cmd, "--steps", argc, argv, &i))) T->steps_s = v;
        else if ((v = cli_value(c->cmd, "--lr", argc, argv, &i))) T->lr_s = v;
        else if ((v = cli_value(c->cmd, "--rank", argc, argv, &i))) T->rank_s = v;
        else if ((v = cli_value(c->cmd, "--optimizer", argc, argv, &i))) T->opt_s = v;
        else if ((v = cli_value(c->cmd, "--lora-alpha", argc, argv, &i))) T->alpha = cli_parse_double(c->cmd, "--lora-alpha", v, 1e-6, 1e6);
        else if ((v = cli_value(c->cmd, "--lora-targets", argc, argv, &i))) T->targets_s = v;
        else if ((v = cli_value(c->cmd, "--anchors-per-step", argc, argv, &i)))
            T->K = cli_parse_long(c->cmd, "--anchors-per-step", v, 1, 1L << 20);
        else if ((v = cli_value(c->cmd, "--anchors", argc, argv, &i))) T->anchors_s = v;
        else if ((v = cli_value(c->cmd, "--gamma", argc, argv, &i))) T->gamma = cli_parse_double(c->cmd, "--gamma", v, 1e-6, 1e6);
        else if ((v = cli_value(c->cmd, "--max-new-tokens", argc, argv, &i)))
            T->max_new = cli_parse_long(c->cmd, "--max-new-tokens", v, 1, 1L << 20);
        else if ((v = cli_value(c->cmd, "--chat", argc, argv, &i))) T->chat = v;
        else if ((v = cli_value(c->cmd, "--ids", argc, argv, &i))) T->ids_s = v;
        else if ((v = cli_value(c->cmd, "--init-adapter", argc, argv, &i))) T->init_adapter = v;
        else if ((v = cli_value(c->cmd, "--save-adapter", argc, argv, &i))) T->save_adapter = v;
        else if (cli_is("--json", argv[i])) T->json = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error(c->cmd, "unknown flag '%s'", argv[i]);
    }
    return true;
}

/* Parses and checks every flag (before --out is touched); false after --help. */
static bool parse_args(int argc, char **argv, ttt_opts *T) {
    if (!parse_flags(argc, argv, T)) return false;
    exp_common *c = &T->c;
    exp_require(c, true);
    if ((c->dataset != NULL) + (T->chat != NULL) + (T->ids_s != NULL) != 1)
        cli_usage_error(c->cmd, "exactly one of --dataset, --chat, --ids is required");
    if (c->limit && !c->dataset) cli_usage_error(c->cmd, "--limit goes with --dataset");
    if (c->adapter) cli_usage_error(c->cmd, "--adapter: ttt trains its own adapter (start from one with --init-adapter)");
    if (T->K && T->anchors_s) cli_usage_error(c->cmd, "--anchors-per-step and --anchors exclude each other");
    if (!strcmp(T->opt_s, "adamw")) T->optimizer = VKD_TTT_ADAMW;
    else if (!strcmp(T->opt_s, "sgd")) T->optimizer = VKD_TTT_SGD;
    else cli_usage_error(c->cmd, "--optimizer: '%s' is not adamw or sgd", T->opt_s);
    T->nsteps = T->nlr = T->nrank = 1;
    T->steps = T->steps_s ? parse_u32_list("--steps", T->steps_s, 1, 1000000, &T->nsteps) : &T->def_steps;
    T->ranks = T->rank_s ? parse_u32_list("--rank", T->rank_s, 1, 4096, &T->nrank) : &T->def_rank;
    if (T->nsteps > 64) cli_usage_error(c->cmd, "--steps: at most 64 step counts");
    T->lrs = T->lr_s ? exp_parse_list(c->cmd, "--lr", T->lr_s, -INFINITY, INFINITY, &T->nlr) : &T->def_lr;
    for (size_t i = 0; i < T->nlr; i++)
        if (!(T->lrs[i] > 0) || !isfinite(T->lrs[i])) cli_usage_error(c->cmd, "--lr: %g is not a finite number > 0", T->lrs[i]);
    T->anchors = T->anchors_s ? parse_u32_list("--anchors", T->anchors_s, 1, 1L << 30, &T->nanch) : NULL;
    vkd_error err = {0};
    if (vkd_ttt_grid(T->steps, T->nsteps, T->lrs, T->nlr, T->ranks, T->nrank, &T->grid, &T->ng, &err))
        cli_usage_error(c->cmd, "%s", err.msg);
    T->targets = VKD_TTT_DEFAULT_TARGETS;
    if (T->targets_s && vkd_ttt_parse_targets(T->targets_s, &T->targets, &err))
        cli_usage_error(c->cmd, "--lora-targets: %s", err.msg);
    vkd_ttt_targets_str(T->targets, T->targets_str, sizeof T->targets_str);
    if (T->init_adapter) {
        char p[4200];
        snprintf(p, sizeof p, "%s/adapter_config.json", T->init_adapter);
        struct stat sb;
        if (stat(p, &sb)) cli_fatal("--init-adapter: %s: no such file (expected a PEFT adapter folder)", p);
        if (T->nrank > 1) cli_usage_error(c->cmd, "--init-adapter fixes the rank: --rank takes no list with it");
    }
    if (T->save_adapter && T->ng > 1) cli_usage_error(c->cmd, "--save-adapter needs a single setting (%zu in the sweep)", T->ng);
    if (T->save_adapter && c->dataset) cli_usage_error(c->cmd, "--save-adapter needs a single example (--chat or --ids)");
    if (c->resume && T->json) cli_usage_error(c->cmd, "--json reports this run's losses; it does not go with --resume");
    return true;
}

/* The examples: the dataset, or the one --chat / --ids context. */
static void load_examples(const ttt_opts *T, vkd_tok *tok, exp_data *data) {
    const exp_common *c = &T->c;
    memset(data, 0, sizeof *data);
    if (c->dataset) {
        exp_load_data(c, tok, NULL, false, data);
        return;
    }
    data->ex = calloc(1, sizeof *data->ex);
    if (!data->ex) cli_fatal("out of memory");
    size_t np;
    if (T->chat) {
        char *text = chat_render(c->cmd, tok, NULL, T->chat, c->think);
        data->ex[0].prompt = encode_rendered(tok, text, &np);
        free(text);
    } else {
        data->ex[0].prompt = parse_id_list(c->cmd, "--ids", T->ids_s, &np);
    }
    if (np < 3) cli_usage_error(c->cmd, "the context has %zu token(s); TTT needs at least 3", np);
    data->ex[0].n_prompt = (uint32_t)np;
    data->ex[0].id = strdup(T->chat ? "chat" : "ids");
    data->ex[0].question = T->chat ? T->chat : "";
    data->path = T->chat ? "--chat" : "--ids";
    data->n = 1;
}

/* Contexts: prompt (+ answer) per example; returns the context capacity they need. */
static uint64_t build_contexts(const ttt_opts *T, vkd_tok *tok, const exp_data *data, int32_t ***seqs_out,
                               uint32_t **lens_out) {
    int32_t **seqs = calloc(data->n, sizeof *seqs);
    uint32_t *lens = calloc(data->n, sizeof *lens);
    uint64_t longest = 0;
    vkd_error err = {0};
    for (size_t k = 0; k < data->n; k++) {
        const exp_example *e = &data->ex[k];
        int32_t *a = NULL;
        size_t na = 0;
        if (e->answer && e->answer[0]) cli_check(vkd_tok_encode(tok, e->answer, strlen(e->answer), false, &a, &na, &err), &err);
        lens[k] = e->n_prompt + (uint32_t)na;
        seqs[k] = malloc((size_t)lens[k] * sizeof **seqs);
        memcpy(seqs[k], e->prompt, e->n_prompt * sizeof **seqs);
        if (na) memcpy(seqs[k] + e->n_prompt, a, na * sizeof *a);
        free(a);
        uint64_t need = (lens[k] > e->n_prompt + (uint64_t)T->max_new ? lens[k] : e->n_prompt + (uint64_t)T->max_new);
        if (need > longest) longest = need;
    }
    *seqs_out = seqs;
    *lens_out = lens;
    return longest + 64;
}

/* --init-adapter: its rank and targets must agree with the flags given; they become the run's. */
static void check_init_adapter(ttt_opts *T, vkd_dflash *d) {
    vkd_error err = {0};
    vkd_ttt_adapter *ad;
    if (vkd_ttt_adapter_load(d, T->init_adapter, &ad, &err)) cli_fatal("--init-adapter: %s", err.msg);
    uint32_t r0 = vkd_ttt_adapter_rank(ad), t0 = vkd_ttt_adapter_targets(ad);
    vkd_ttt_adapter_free(ad);
    if (T->rank_s && T->ranks[0] != r0)
        cli_usage_error(T->c.cmd, "--rank %u does not match the rank %u of --init-adapter %s", T->ranks[0], r0,
                        T->init_adapter);
    char ts[64];
    vkd_ttt_targets_str(t0, ts, sizeof ts);
    if (T->targets_s && T->targets != t0)
        cli_usage_error(T->c.cmd, "--lora-targets %s does not match the targets %s of --init-adapter %s",
                        T->targets_str, ts, T->init_adapter);
    T->ranks[0] = r0;
    for (size_t g = 0; g < T->ng; g++) T->grid[g].rank = r0;
    T->targets = t0;
    memcpy(T->targets_str, ts, sizeof ts);
}

/* The command's own parameters for config.json. */
static cJSON *ttt_params(const ttt_opts *T, const exp_data *data) {
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "input", T->c.dataset ? data->path : T->chat ? "chat" : "ids");
    if (T->chat) cJSON_AddStringToObject(params, "chat", T->chat);
    if (T->ids_s) cJSON_AddStringToObject(params, "ids", T->ids_s);
    cJSON *ja = cJSON_AddArrayToObject(params, "steps");
    for (size_t i = 0; i < T->nsteps; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(T->steps[i]));
    ja = cJSON_AddArrayToObject(params, "lr");
    for (size_t i = 0; i < T->nlr; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(T->lrs[i]));
    ja = cJSON_AddArrayToObject(params, "rank");
    for (size_t i = 0; i < T->nrank; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(T->ranks[i]));
    cJSON_AddStringToObject(params, "optimizer", T->opt_s);
    cJSON_AddNumberToObject(params, "lora_alpha", T->alpha);
    cJSON_AddStringToObject(params, "lora_targets", T->targets_str);
    if (T->anchors) {
        ja = cJSON_AddArrayToObject(params, "anchors");
        for (size_t i = 0; i < T->nanch; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(T->anchors[i]));
    } else {
        cJSON_AddNumberToObject(params, "anchors_per_step", T->Kdef);
    }
    cJSON_AddNumberToObject(params, "gamma", T->gamma);
    cJSON_AddNumberToObject(params, "max_new_tokens", (double)T->max_new);
    cJSON_AddNumberToObject(params, "block_size", T->B);
    if (T->init_adapter) cJSON_AddStringToObject(params, "init_adapter", T->init_adapter);
    return params;
}

/* One (rank, lr) run on example k, its checkpoints (the step counts of the sweep) appended to
 * settings; returns the optimizer steps taken. */
static uint32_t adapt_run(const ttt_opts *T, exp_models *m, const exp_data *data, size_t k, const int32_t *seq,
                          uint32_t n, const vkd_ttt_setting *gs, cJSON *settings) {
    const exp_example *e = &data->ex[k];
    vkd_error err = {0};
    uint32_t cps[64], ncp = 0;
    for (size_t s = 0; s < T->nsteps && ncp < 64; s++) cps[ncp++] = gs[s].steps;
    vkd_ttt_trace tr = {0};
    const int32_t *ans_seq = n > e->n_prompt ? seq : NULL;
    run_ctx rc = {.m = m, .prompt = e->prompt, .seq = ans_seq, .P = e->n_prompt, .n = n,
                  .max_new = (uint32_t)T->max_new, .trace = &tr, .lr = gs->lr, .rank = gs->rank, .settings = settings};
    uint32_t Kx = T->Kdef < n - 2 ? T->Kdef : n - 2;
    vkd_ttt_options to = {.steps = cps[ncp - 1], .lr = gs->lr, .optimizer = T->optimizer,
                          .anchors_per_step = Kx, .anchors = T->anchors, .nanchors = (uint32_t)T->nanch,
                          .gamma = T->gamma, .seed = T->c.seed, .key = (uint32_t)e->index, .checkpoints = cps,
                          .ncheckpoints = ncp, .on_checkpoint = on_checkpoint, .user = &rc};
    vkd_ttt_adapter *ad;
    if (T->init_adapter) cli_check(vkd_ttt_adapter_load(m->d, T->init_adapter, &ad, &err), &err);
    else cli_check(vkd_ttt_adapter_new(m->d, gs->rank, T->alpha, T->targets, T->c.seed, &ad, &err), &err);
    vkd_result r = vkd_ttt_adapt(m->d, ad, m->rec, seq, n, &to, &tr, &err);
    if (r) {
        char kept[4400] = "";
        vkd_error e2 = {0};
        if (r == VKD_ERR_RANGE && T->save_adapter && !vkd_ttt_adapter_save(ad, T->save_adapter, &e2))
            snprintf(kept, sizeof kept, "; the last good adapter (after %u update(s)) is in %s", tr.updates,
                     T->save_adapter);
        cli_fatal("ttt: %s:%zu: rank %u, lr %g: %s%s", data->path, e->line, gs->rank, gs->lr, err.msg, kept);
    }
    uint32_t steps = tr.n;
    if (T->save_adapter) cli_check(vkd_ttt_adapter_save(ad, T->save_adapter, &err), &err);
    vkd_ttt_adapter_free(ad);
    vkd_ttt_trace_free(&tr);
    return steps;
}

/* The journal record of example k: skipped, or the baseline and every setting's rows. */
static cJSON *ttt_one(const ttt_opts *T, exp_models *m, const exp_data *data, int32_t *const *seqs,
                      const uint32_t *lens, size_t k, uint64_t *work) {
    const exp_example *e = &data->ex[k];
    vkd_error err = {0};
    cJSON *rj = exp_record_new(e);
    uint32_t n = lens[k], B = T->B;
    cJSON_AddNumberToObject(rj, "context_tokens", n);
    const char *skip = NULL;
    if (n < 3) skip = "context shorter than 3 tokens";
    else if (T->anchors && vkd_ttt_check_anchors(T->anchors, (uint32_t)T->nanch, n, &err)) skip = "--anchors do not fit the context";
    else if ((uint64_t)e->n_prompt + T->max_new + B > m->t->ctx_len || n + B > m->t->ctx_len) skip = "longer than the context";
    if (skip) {
        fprintf(stderr, "ttt: %s:%zu: skipped: %s\n", data->path, e->line, skip);
        cJSON_AddStringToObject(rj, "skipped", skip);
        return rj;
    }
    const int32_t *ans_seq = n > e->n_prompt ? seqs[k] : NULL;
    cJSON *bj;
    cli_check(measure_json(m, e->prompt, e->n_prompt, ans_seq, n, (uint32_t)T->max_new, &bj, &err), &err);
    cJSON_AddItemToObject(rj, "baseline", bj);
    cJSON *settings = cJSON_AddArrayToObject(rj, "settings");
    for (size_t g0 = 0; g0 < T->ng; g0 += T->nsteps) /* one run per (rank, lr) */
        *work += adapt_run(T, m, data, k, seqs[k], n, &T->grid[g0], settings);
    return exp_reparsed(rj);
}

/* Per setting, over the journal's examples; results.csv and the --json document on the way. */
typedef struct tally {
    agg *ag;                         /* [ng] */
    size_t n_done, n_skip;
    cJSON *jout;
} tally;

/* One setting row of one record into results.csv, the --json document and its aggregate. */
static void tally_row(const ttt_opts *T, tally *Y, const cJSON *rj, const cJSON *base, const cJSON *row,
                      const char *id, cJSON *jsets, exp_buf *csv) {
    uint32_t st = (uint32_t)num(row, "steps"), rk = (uint32_t)num(row, "rank");
    double lr = num(row, "lr");
    size_t g = T->ng;
    for (size_t q = 0; q < T->ng; q++)
        if (T->grid[q].steps == st && T->grid[q].rank == rk && T->grid[q].lr == lr) g = q;
    const cJSON *ls = item(row, "losses");
    int nl = cJSON_GetArraySize(ls);
    double l0 = nl ? cJSON_GetArrayItem(ls, 0)->valuedouble : NAN;
    double l1 = nl ? cJSON_GetArrayItem(ls, nl - 1)->valuedouble : NAN;
    double train_s = num(row, "train_s"), rows = num(row, "train_rows");
    double step_ms = st ? 1e3 * train_s / st : NAN, tok_s = train_s > 0 ? rows / train_s : NAN;
    double tb = num(base, "tau"), tt = num(row, "tau"), pb = num(base, "p_mean"), pt = num(row, "p_mean");
    double rb = num(base, "rank_mean"), rt = num(row, "rank_mean");
    exp_buf_csv(csv, id ? id : "");
    exp_buf_printf(csv, ",%u,%g,%u,%s,%.0f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.9g,%.9g,%.6g,%.6g,%.0f,%.0f\n",
                   st, lr, rk, T->opt_s, num(rj, "context_tokens"), tb, tt, tt - tb, pb, pt, pt - pb, rb, rt,
                   l0, l1, step_ms, tok_s, num(base, "generated"), num(row, "generated"));
    cJSON *js = cJSON_CreateObject();
    cJSON_AddNumberToObject(js, "steps", st);
    cJSON_AddNumberToObject(js, "lr", lr);
    cJSON_AddNumberToObject(js, "rank", rk);
    cJSON_AddItemToObject(js, "losses", cJSON_Duplicate(ls, true));
    cJSON_AddItemToArray(jsets, js);
    if (g == T->ng) return; /* a setting of another invocation (refused by --resume's config check) */
    agg *a = &Y->ag[g];
    a->dtau[a->n] = tt - tb;
    a->tau_b[a->n] = tb;
    a->tau_t[a->n] = tt;
    a->dp[a->n] = pt - pb;
    a->drank[a->n] = rt - rb;
    a->loss0[a->n] = l0;
    a->loss1[a->n] = l1;
    a->step_ms[a->n] = step_ms;
    a->tok_s[a->n] = tok_s;
    a->n++;
    for (int i = 0; i < nl && (uint32_t)i < a->s.steps; i++) {
        double v = cJSON_GetArrayItem(ls, i)->valuedouble;
        if (isfinite(v)) { a->loss_sum[i] += v; a->loss_cnt[i] += 1; }
    }
}

/* Tallies the whole journal; writes results.csv. */
static void tally_journal(const ttt_opts *T, exp_out *o, size_t nexamples, tally *Y) {
    Y->ag = calloc(T->ng, sizeof *Y->ag);
    Y->n_done = Y->n_skip = 0;
    size_t nex = nexamples ? nexamples : 1;
    for (size_t g = 0; g < T->ng; g++) {
        agg *a = &Y->ag[g];
        a->s = T->grid[g];
        double **cols[9] = {&a->dtau, &a->tau_b, &a->tau_t, &a->dp, &a->drank, &a->loss0, &a->loss1, &a->step_ms, &a->tok_s};
        for (int q = 0; q < 9; q++) *cols[q] = calloc(nex, sizeof(double));
        a->loss_sum = calloc(T->grid[g].steps, sizeof(double));
        a->loss_cnt = calloc(T->grid[g].steps, sizeof(double));
    }
    exp_buf csv = {0};
    exp_buf_printf(&csv, "example,steps,lr,rank,optimizer,context_tokens,tau_base,tau_ttt,delta_tau,p_base,p_ttt,"
                         "delta_p,rank_base,rank_ttt,loss_first,loss_last,step_ms,train_tok_s,generated_base,"
                         "generated_ttt\n");
    Y->jout = cJSON_CreateObject();
    cJSON *jex = cJSON_AddArrayToObject(Y->jout, "examples");
    for (size_t ri = 0; ri < o->done.n; ri++) {
        const cJSON *rj = o->done.rec[ri];
        const cJSON *base = item(rj, "baseline"), *sets = item(rj, "settings"), *row;
        if (!cJSON_IsObject(base) || !cJSON_IsArray(sets)) { Y->n_skip++; continue; }
        Y->n_done++;
        const char *id = cJSON_GetStringValue(item(rj, "id"));
        cJSON *je = cJSON_CreateObject(), *jsets = cJSON_AddArrayToObject(je, "settings");
        cJSON_AddStringToObject(je, "id", id ? id : "");
        cJSON_AddItemToArray(jex, je);
        cJSON_ArrayForEach(row, sets) tally_row(T, Y, rj, base, row, id, jsets, &csv);
    }
    exp_write(o, "results.csv", csv.s, csv.n);
    exp_buf_free(&csv);
}

static void tally_free(const ttt_opts *T, tally *Y) {
    for (size_t g = 0; g < T->ng; g++) {
        agg *a = &Y->ag[g];
        double *cols[11] = {a->dtau, a->tau_b, a->tau_t, a->dp, a->drank, a->loss0,
                            a->loss1, a->step_ms, a->tok_s, a->loss_sum, a->loss_cnt};
        for (int q = 0; q < 11; q++) free(cols[q]);
    }
    free(Y->ag);
    cJSON_Delete(Y->jout);
}

/* summary.json and report.txt (the report, or the --json document, on stdout). */
static void ttt_report(const ttt_opts *T, exp_out *o, const tally *Y) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "examples", (double)Y->n_done);
    cJSON_AddNumberToObject(sum, "skipped", (double)Y->n_skip);
    rep_boot bt = rep_boot_of(&T->c);
    cJSON_AddNumberToObject(sum, "bootstrap_reps", bt.reps);
    cJSON *jset = cJSON_AddArrayToObject(sum, "settings");
    exp_buf rep = {0};
    exp_buf_printf(&rep, "ttt: %zu example(s)%s, block size %u, optimizer %s, targets %s, alpha %g, gamma %g\n\n",
                   Y->n_done, Y->n_skip ? " (some skipped: see examples.jsonl)" : "", T->B, T->opt_s, T->targets_str,
                   T->alpha, T->gamma);
    exp_buf_printf(&rep, "| rank | lr | steps | n | tau base | tau ttt | delta tau | 95%% CI | delta p | loss first | "
                         "loss last | ms/step | train tok/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int best = -1;
    double best_d = -INFINITY;
    for (size_t g = 0; g < T->ng; g++) {
        const agg *a = &Y->ag[g];
        double lo, hi;
        vkd_ttt_bootstrap_ci(a->dtau, a->n, bt.reps, REP_LEVEL, T->c.seed, &lo, &hi);
        double md = exp_mean(a->dtau, a->n);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "steps", a->s.steps);
        cJSON_AddNumberToObject(x, "lr", a->s.lr);
        cJSON_AddNumberToObject(x, "rank", a->s.rank);
        cJSON_AddNumberToObject(x, "examples", (double)a->n);
        add_num(x, "tau_base", exp_mean(a->tau_b, a->n));
        add_num(x, "tau_ttt", exp_mean(a->tau_t, a->n));
        rep_ci_json(x, "tau_base_ci", rep_ci_of(&bt, a->tau_b, NULL, a->n));
        rep_ci_json(x, "tau_ttt_ci", rep_ci_of(&bt, a->tau_t, NULL, a->n));
        add_num(x, "delta_tau", md);
        cJSON *ci = cJSON_AddArrayToObject(x, "delta_tau_ci95");
        cJSON_AddItemToArray(ci, isfinite(lo) ? cJSON_CreateNumber(lo) : cJSON_CreateNull());
        cJSON_AddItemToArray(ci, isfinite(hi) ? cJSON_CreateNumber(hi) : cJSON_CreateNull());
        double dp = 0, dr = 0;
        size_t np = 0;
        for (size_t i = 0; i < a->n; i++)
            if (isfinite(a->dp[i])) { dp += a->dp[i]; dr += a->drank[i]; np++; }
        add_num(x, "delta_p", np ? dp / np : NAN);
        add_num(x, "delta_rank", np ? dr / np : NAN);
        add_num(x, "loss_first", exp_mean(a->loss0, a->n));
        add_num(x, "loss_last", exp_mean(a->loss1, a->n));
        add_num(x, "step_ms", exp_mean(a->step_ms, a->n));
        add_num(x, "train_tok_s", exp_mean(a->tok_s, a->n));
        cJSON_AddItemToArray(jset, x);
        if (a->n && md > best_d) { best_d = md; best = (int)g; }
        exp_buf_printf(&rep, "| %u | %g | %u | %zu | %.3f | %.3f | %+.3f | [%+.3f, %+.3f] | %+.4f | %.4f | %.4f | %.1f | %.0f |\n",
                       a->s.rank, a->s.lr, a->s.steps, a->n, exp_mean(a->tau_b, a->n), exp_mean(a->tau_t, a->n), md,
                       lo, hi, np ? dp / np : NAN, exp_mean(a->loss0, a->n), exp_mean(a->loss1, a->n),
                       exp_mean(a->step_ms, a->n), exp_mean(a->tok_s, a->n));
    }
    if (best >= 0) {
        cJSON *b = cJSON_AddObjectToObject(sum, "best");
        cJSON_AddNumberToObject(b, "steps", Y->ag[best].s.steps);
        cJSON_AddNumberToObject(b, "lr", Y->ag[best].s.lr);
        cJSON_AddNumberToObject(b, "rank", Y->ag[best].s.rank);
        cJSON_AddNumberToObject(b, "delta_tau", best_d);
    }
    exp_write_json(o, "summary.json", sum);
    exp_write(o, "report.txt", rep.s, rep.n);
    if (T->json) {
        char *t = cJSON_Print(Y->jout);
        if (!t) cli_fatal("out of memory");
        puts(t);
        free(t);
    } else {
        fputs(rep.s, stdout);
    }
    cJSON_Delete(sum);
    exp_buf_free(&rep);
}

/* Figures: one series per (rank, lr). */
static void ttt_figures(const ttt_opts *T, const exp_out *o, const tally *Y) {
    size_t nsteps = T->nsteps, ng = T->ng, nrun = ng / nsteps;
    const vkd_ttt_setting *grid = T->grid;
    const agg *ag = Y->ag;
    fig_series *sr = calloc(nrun, sizeof *sr);
    char (*labels)[48] = calloc(nrun, sizeof *labels);
    double *xs = calloc(nsteps, sizeof *xs), *ys = calloc(ng, sizeof *ys);
    double *ylo = calloc(ng, sizeof *ylo), *yhi = calloc(ng, sizeof *yhi); /* delta tau 95% CIs */
    rep_boot bt = rep_boot_of(&T->c);
    double **curves = calloc(nrun, sizeof *curves);
    for (size_t s = 0; s < nsteps; s++) xs[s] = grid[s].steps;
    for (size_t r = 0; r < nrun; r++) {
        const agg *last = &ag[r * nsteps + nsteps - 1];
        snprintf(labels[r], sizeof labels[r], "lr=%g r=%u", grid[r * nsteps].lr, grid[r * nsteps].rank);
        for (size_t s = 0; s < nsteps; s++) {
            const agg *a = &ag[r * nsteps + s];
            ys[r * nsteps + s] = exp_mean(a->dtau, a->n);
            vkd_ttt_bootstrap_ci(a->dtau, a->n, bt.reps, REP_LEVEL, T->c.seed, &ylo[r * nsteps + s], &yhi[r * nsteps + s]);
        }
        sr[r] = (fig_series){.label = labels[r], .n = nsteps, .x = xs, .y = ys + r * nsteps, .lo = ylo + r * nsteps,
                             .hi = yhi + r * nsteps};
        curves[r] = calloc(last->s.steps, sizeof **curves);
        for (uint32_t i = 0; i < last->s.steps; i++) curves[r][i] = last->loss_cnt[i] > 0 ? last->loss_sum[i] / last->loss_cnt[i] : NAN;
    }
    fig_chart ch = {.kind = FIG_LINE, .title = "TTT: mean delta tau vs steps (95% bootstrap CI)", .xlabel = "TTT steps",
                    .ylabel = "mean tau(ttt) - tau(base)", .line = {.n_series = nrun, .series = sr}};
    exp_write_figure(o, "fig_delta_tau.png", &ch);
    for (size_t r = 0; r < nrun; r++)
        sr[r] = (fig_series){.label = labels[r], .n = ag[r * nsteps + nsteps - 1].s.steps, .y = curves[r]};
    fig_chart lc = {.kind = FIG_LINE, .title = "TTT: mean loss per step", .xlabel = "step (0: before any update)",
                    .ylabel = "weighted CE (nats)", .line = {.n_series = nrun, .series = sr, .no_markers = true}};
    exp_write_figure(o, "fig_loss_curves.png", &lc);
    for (size_t r = 0; r < nrun; r++) free(curves[r]);
    free(curves);
    free(sr);
    free(labels);
    free(xs);
    free(ys);
    free(ylo);
    free(yhi);
}

int vkd_cmd_ttt(int argc, char **argv) {
    ttt_opts T = {.c = {.cmd = "ttt", .train = true}, .opt_s = "adamw", .alpha = VKD_TTT_DEFAULT_ALPHA,
                  .gamma = VKD_TTT_DEFAULT_GAMMA, .max_new = 128, .def_steps = VKD_TTT_DEFAULT_STEPS,
                  .def_rank = VKD_TTT_DEFAULT_RANK, .def_lr = VKD_TTT_DEFAULT_LR};
    /* ---- every input is checked before --out is touched ---- */
    if (!parse_args(argc, argv, &T)) return 0;
    exp_common *c = &T.c;
    exp_models m = {0};
    exp_load_tokenizer(c, &m);
    exp_data data;
    load_examples(&T, m.tok, &data);
    int32_t **seqs;
    uint32_t *lens;
    exp_load_models(c, exp_ctx_cap(c, build_contexts(&T, m.tok, &data, &seqs, &lens)), &m);
    T.B = m.d->block;
    if (T.init_adapter) check_init_adapter(&T, m.d);
    if (!vkd_ttt_engine_available())
        cli_fatal("ttt: test-time training needs the DFlash draft's training forward and backward, which this "
                  "build does not have yet; nothing was written");
    vkd_error err = {0};
    if (T.anchors && c->dataset == NULL) {
        if (vkd_ttt_check_anchors(T.anchors, (uint32_t)T.nanch, lens[0], &err)) cli_usage_error(c->cmd, "--anchors: %s", err.msg);
    }
    T.Kdef = T.K ? (uint32_t)T.K : VKD_TTT_DEFAULT_ANCHORS;
    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = m.t->ctx_len, .block = T.B};
    exp_open_out(c, ttt_params(&T, &data), jr_check_ttt, &lim, &o);

    exp_progress pg;
    exp_progress_start(&pg, c->cmd, data.n);
    uint64_t work = 0;
    for (size_t k = 0; k < data.n; k++) {
        if (exp_claim(&o, k, data.ex[k].id)) exp_journal(&o, ttt_one(&T, &m, &data, seqs, lens, k, &work));
        exp_progress_update(&pg, k + 1, work, "step");
    }
    exp_finish_work(&o);
    exp_progress_end(&pg, data.n, work, "step");

    /* ---- tables from the whole journal ---- */
    tally Y;
    tally_journal(&T, &o, data.n, &Y);
    ttt_report(&T, &o, &Y);
    ttt_figures(&T, &o, &Y);

    tally_free(&T, &Y);
    exp_close_out(&o);
    for (size_t k = 0; k < data.n; k++) free(seqs[k]);
    free(seqs);
    free(lens);
    free(T.grid);
    free(T.anchors);
    if (T.steps != &T.def_steps) free(T.steps);
    if (T.ranks != &T.def_rank) free(T.ranks);
    if (T.lrs != &T.def_lr) free(T.lrs);
    exp_free_data(&data);
    exp_free_models(&m);
    return 0;
}
