/* vkdraft probe: the speculative-MCMC probe of seed 002 (design.md section 6, vkd_probe.h).
 *
 * Per example: greedy reference generation by the target (vkd_generate), then the
 * teacher-forced walk over prompt + reference (target step and draft block in mask mode per
 * block of B, distances on the device, Monte Carlo on the host: methods/probe.c). Each
 * finished example goes to the journal; the tables, CSV files, summary.json and figures are
 * rebuilt from the whole journal at the end, so --resume continues an interrupted run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"
#include "figure.h"
#include "grade.h"
#include "report.h"
#include "vkd_generate.h"
#include "vkd_probe.h"

#define DEFAULT_DATASET "../shared/datasets/math500.json"

static void usage(void) {
    printf("usage: vkdraft probe --target DIR (--draft DIR | --exit-head DIR) --out DIR [--dataset FILE] [--limit N]\n"
           "           [--alpha A] [--draft-temps T1,T2,..] [--samples K] [--mcmc-steps S] [--max-new-tokens N]\n"
           "           [--seed S] [--block-size B] [--resume]\n\n"
           "Can the DFlash draft serve as an MCMC proposal for p^alpha? (seed 002)\n"
           "Per record: the chat-rendered problem (thinking off unless --think), a greedy reference\n"
           "generation by the target (--max-new-tokens, default 3072; stops at the target's eos ids),\n"
           "then teacher forcing over prompt + reference: the target's logits at every position and the\n"
           "draft in mask mode ([known token, MASK x (B-1)]) block by block with the KV-cached context\n"
           "speculative decoding builds (block 0 sees the prompt, block k adds block k-1).\n\n"
           "Per predicted position (B-1 per block), l_t / l_d the target / draft logits:\n"
           "  p^alpha = softmax(alpha*l_t), q_T = softmax(l_d/T) for each --draft-temps T\n"
           "  KL(p^alpha||q_T), TVD = 0.5*sum|p^alpha - q_T|, token accept = 1 - TVD\n"
           "  spec-decode baseline: 1 - TVD(softmax(l_t), softmax(l_d)) (T = 1, alpha = 1)\n"
           "Per block and T: block product = prod(token accept); --samples K blocks drawn from q_T\n"
           "(each position independently, inverse CDF, Philox uniforms keyed by seed/example/block/\n"
           "temperature/sample/position); log w = alpha*sum log p - sum log q_T with p = softmax(l_t);\n"
           "an independence Metropolis-Hastings chain over the K samples (start at sample 0, move to\n"
           "sample j with probability min(1, w_j/w_state)): sim accept = accepted moves / (K-1).\n"
           "'log w mean' = mean over blocks of the block's mean log w over its K samples; 'log w std'\n"
           "= mean over blocks of the within-block std of log w (the spread that decides the MH\n"
           "acceptance; the std across blocks of the block means is in summary.json too).\n"
           "Aggregates: KL, TVD and token accept are means over positions; sim accept, block product\n"
           "and log w over blocks. Block position groups: block index k in the example, 0-9/10-29/30+.\n"
           "MCMC chains (sections 4.3 and 5): beside the acceptance, the accepted moves whose sample\n"
           "differs from the state's tokens (a one-hot proposal accepts every move without moving) and\n"
           "the distinct samples per block; the K samples cut into floor(K/(S+1)) independent chains\n"
           "of S steps (a fresh start, S proposals) give P(moves >= 1), P(moves >= 3) and P(changed\n"
           "the block >= 1), beside the seed's binomial arithmetic at the median acceptance; the cost\n"
           "per effective accepted token: one proposal = one draft call + one target forward scoring\n"
           "the block, bringing change rate x positions per block tokens (target forwards and block\n"
           "wall time per effective token). With a GSM8K / MATH-500 file name each greedy reference is\n"
           "graded and the chain table is split easy (correct) / hard (wrong).\n\n"
           "  --alpha A             power of the target distribution (default 4)\n"
           "  --draft-temps LIST    draft temperatures (default 1.0,0.5,0.25)\n"
           "  --samples K           Monte Carlo blocks per block and temperature (default 100)\n"
           "  --mcmc-steps S        steps of the section 4.3 chains (default 10)\n"
           "  --max-new-tokens N    reference generation length (default 3072)\n\n"
           "Outputs in --out: positions.csv (example, block, block_pos, position = index in the\n"
           "reference, token, text, kl_T*, tvd_T*, accept_T*, baseline_accept), blocks.csv (example,\n"
           "block, start, positions, product_T*, sim_accept_T*, logw_mean_T*, logw_std_T*, kl_mean_T*),\n"
           "summary.json, report.txt (the tables printed: aggregate per temperature, percentiles of\n"
           "block acceptance, fraction of blocks above 1/5/10/20/50/70%%, by block position, token\n"
           "acceptance percentiles, MCMC chains), config.json, examples.jsonl (the journal; it keeps\n"
           "each reference generation's ids, its grading and the chain counts per block), figures fig_block_accept_hist.png, fig_token_accept_hist.png (histograms\n"
           "per temperature), kl_by_block.csv and fig_kl_by_block.png (mean KL by block index per\n"
           "temperature, with its 95%% bootstrap CI over examples: temperature, block, examples,\n"
           "positions, kl_mean, ci_lo, ci_hi; error bars).\n"
           "Default dataset: %s.\n\n%s", DEFAULT_DATASET, exp_common_help);
}

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) {
    const cJSON *x = item(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}
static double arr_at(const cJSON *row, int i) {
    const cJSON *x = cJSON_GetArrayItem(row, i);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* growable double vector */
typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;
static void dv_push(dvec *d, double x) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->v = realloc(d->v, d->cap * sizeof *d->v);
        if (!d->v) cli_fatal("out of memory");
    }
    d->v[d->n++] = x;
}
static double frac_above(const dvec *d, double th) {
    if (!d->n) return NAN;
    size_t c = 0;
    for (size_t i = 0; i < d->n; i++) c += d->v[i] > th;
    return (double)c / (double)d->n;
}

#define NGROUP 3
static const char *const group_names[NGROUP] = {"Early (0-9)", "Mid (10-29)", "Late (30+)"};
static const char *const group_keys[NGROUP] = {"early_0_9", "mid_10_29", "late_30_plus"};
static int group_of(double k) { return k < 10 ? 0 : k < 30 ? 1 : 2; }

/* Per temperature, everything the tables need. */
typedef struct tstats {
    dvec kl, tvd, acc;                         /* per position */
    dvec sim, prod, lwm, lws;                  /* per block */
    dvec g_sim[NGROUP];                        /* per block, by position group */
    double g_kl[NGROUP], g_kln[NGROUP];        /* KL sum / count over positions, by group */
    dvec kl_by_block_sum, kl_by_block_n;       /* KL by block index (figure) */
    rep_col *c_klb;                            /* per block index: per example KL sum / positions */
    size_t n_klb;
    rep_col c_kl, c_acc, c_sim;                /* per example: sums over its positions / blocks */
} tstats;

/* Figures (apps/figure.h), per temperature:
 *   fig_block_accept_hist.png  histogram of the blocks' simulated MH acceptance
 *   fig_token_accept_hist.png  histogram of the positions' token acceptance (1 - TVD)
 *   fig_kl_by_block.png        mean KL(p^alpha || q_T) by block index within the example, with
 *                              95% bootstrap CIs over examples (also kl_by_block.csv) */
static void probe_figures(const exp_out *o, const double *temps, size_t nt, const tstats *ts, const rep_boot *bt) {
    fig_series *sr = calloc(nt, sizeof *sr);
    char (*labels)[32] = calloc(nt, sizeof *labels);
    double **klm = calloc(nt, sizeof *klm), **klo = calloc(nt, sizeof *klo), **khi = calloc(nt, sizeof *khi);
    if (!sr || !labels || !klm || !klo || !khi) cli_fatal("out of memory");
    for (size_t ti = 0; ti < nt; ti++) snprintf(labels[ti], sizeof labels[ti], "T=%g", temps[ti]);
    exp_buf kcsv = {0};
    exp_buf_printf(&kcsv, "temperature,block,examples,positions,kl_mean,ci_lo,ci_hi\n");
    for (size_t ti = 0; ti < nt; ti++) sr[ti] = (fig_series){.label = labels[ti], .n = ts[ti].sim.n, .y = ts[ti].sim.v};
    fig_chart ch = {.kind = FIG_HIST, .title = "Simulated MH acceptance per block", .xlabel = "acceptance rate",
                    .ylabel = "fraction of blocks",
                    .hist = {.n_series = nt, .series = sr, .nbins = 20, .lo = 0, .hi = 1, .side_by_side = true,
                             .fraction = true}};
    exp_write_figure(o, "fig_block_accept_hist.png", &ch);
    for (size_t ti = 0; ti < nt; ti++) sr[ti] = (fig_series){.label = labels[ti], .n = ts[ti].acc.n, .y = ts[ti].acc.v};
    ch.title = "Token acceptance (1 - TVD(p^alpha, q_T))";
    ch.xlabel = "token acceptance";
    ch.ylabel = "fraction of positions";
    exp_write_figure(o, "fig_token_accept_hist.png", &ch);
    for (size_t ti = 0; ti < nt; ti++) {
        const dvec *su = &ts[ti].kl_by_block_sum, *cn = &ts[ti].kl_by_block_n;
        klm[ti] = malloc((su->n ? su->n : 1) * sizeof **klm);
        klo[ti] = malloc((su->n ? su->n : 1) * sizeof **klo);
        khi[ti] = malloc((su->n ? su->n : 1) * sizeof **khi);
        if (!klm[ti] || !klo[ti] || !khi[ti]) cli_fatal("out of memory");
        for (size_t k = 0; k < su->n; k++) {
            klm[ti][k] = cn->v[k] > 0 ? su->v[k] / cn->v[k] : NAN;
            rep_ci ci = k < ts[ti].n_klb && ts[ti].c_klb[k].n ? rep_col_ci(bt, &ts[ti].c_klb[k]) : (rep_ci){NAN, NAN, NAN, 0};
            klo[ti][k] = ci.lo;
            khi[ti][k] = ci.hi;
            char t[32];
            jr_fmt_double(t, sizeof t, temps[ti]);
            exp_buf_printf(&kcsv, "%s,%zu,%zu,%.0f,%.9g,%.9g,%.9g\n", t, k, ci.n, cn->v[k], klm[ti][k], ci.lo, ci.hi);
        }
        sr[ti] = (fig_series){.label = labels[ti], .n = su->n, .y = klm[ti], .lo = klo[ti], .hi = khi[ti]};
    }
    exp_write(o, "kl_by_block.csv", kcsv.s, kcsv.n);
    exp_buf_free(&kcsv);
    fig_chart ln = {.kind = FIG_LINE, .title = "KL(p^alpha || q_T) by block position", .xlabel = "block index k",
                    .ylabel = "mean KL (nats)", .line = {.n_series = nt, .series = sr}};
    exp_write_figure(o, "fig_kl_by_block.png", &ln);
    for (size_t ti = 0; ti < nt; ti++) free(klm[ti]), free(klo[ti]), free(khi[ti]);
    free(klm);
    free(klo);
    free(khi);
    free(labels);
    free(sr);
}

/* live progress during a long reference generation */
typedef struct gen_watch {
    exp_progress *pg;
    size_t done;
    uint64_t *work;
    bool quiet;
} gen_watch;
static void on_token(void *user, int32_t id) {
    gen_watch *w = user;
    (void)id;
    (*w->work)++;
    if (!w->quiet) exp_progress_update(w->pg, w->done, *w->work, "tok");
}

typedef struct probe_opts {
    exp_common c;
    double alpha;
    long K, max_new, steps;
    vkd_answer_kind kind;            /* grading of the reference (easy / hard); NONE: not graded */
    double *temps;
    size_t nt;
} probe_opts;

/* Parses and checks the flags into P; false after --help. */
static bool parse_args(int argc, char **argv, probe_opts *P) {
    exp_common *c = &P->c;
    const char *temps_s = "1.0,0.5,0.25";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (exp_flag(c, argc, argv, &i)) continue;
        if ((v = cli_value(c->cmd, "--alpha", argc, argv, &i))) P->alpha = cli_parse_double(c->cmd, "--alpha", v, 1e-3, 1e3);
        else if ((v = cli_value(c->cmd, "--draft-temps", argc, argv, &i))) temps_s = v;
        else if ((v = cli_value(c->cmd, "--samples", argc, argv, &i))) P->K = cli_parse_long(c->cmd, "--samples", v, 2, 1L << 20);
        else if ((v = cli_value(c->cmd, "--max-new-tokens", argc, argv, &i)))
            P->max_new = cli_parse_long(c->cmd, "--max-new-tokens", v, 2, 1L << 20);
        else if ((v = cli_value(c->cmd, "--mcmc-steps", argc, argv, &i)))
            P->steps = cli_parse_long(c->cmd, "--mcmc-steps", v, 1, 1L << 20);
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return false; }
        else cli_usage_error(c->cmd, "unknown flag '%s'", argv[i]);
    }
    exp_require(c, true);
    P->temps = exp_parse_list(c->cmd, "--draft-temps", temps_s, 1e-3, 1e3, &P->nt);
    if (P->nt > VKD_PROBE_MAX_TEMPS) cli_usage_error(c->cmd, "--draft-temps: at most %d temperatures", VKD_PROBE_MAX_TEMPS);
    return true;
}

/* As guide and power: a run in which no example can be probed is an error. */
static void check_fits(const exp_data *data, uint64_t extra, long max_new, uint32_t ctx_len) {
    size_t fits = 0, at = 0;
    for (size_t k = 0; k < data->n; k++) {
        if ((uint64_t)data->ex[k].n_prompt + extra <= ctx_len) fits++;
        if (data->ex[k].n_prompt < data->ex[at].n_prompt) at = k;
    }
    if (!fits)
        cli_fatal("%s:%zu: no example fits the context: the shortest prompt (%u tokens) + --max-new-tokens %ld "
                  "+ a block exceed the target's max_position_embeddings (%u)", data->path, data->ex[at].line,
                  data->ex[at].n_prompt, max_new, ctx_len);
}

static cJSON *probe_params(const probe_opts *P, const exp_data *data, uint32_t B) {
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "dataset", data->path);
    cJSON_AddNumberToObject(params, "alpha", P->alpha);
    cJSON *jt = cJSON_AddArrayToObject(params, "draft_temps");
    for (size_t i = 0; i < P->nt; i++) cJSON_AddItemToArray(jt, cJSON_CreateNumber(P->temps[i]));
    cJSON_AddNumberToObject(params, "samples", (double)P->K);
    cJSON_AddNumberToObject(params, "max_new_tokens", (double)P->max_new);
    cJSON_AddNumberToObject(params, "mcmc_steps", (double)P->steps);
    cJSON_AddNumberToObject(params, "block_size", B);
    return params;
}

/* the chain statistics per block and temperature (vkd_probe_chain), in journal order */
#define NCHAIN 7
enum { CH_ACCEPTS, CH_CHANGES, CH_DISTINCT, CH_WINDOWS, CH_MOVED1, CH_MOVED3, CH_CHANGED1 };

/* Journal rows: positions [block, block_pos, position, token, kl x T, tvd x T, base_tvd] and
 * blocks [block, start, positions, (product, sim_accept, logw_mean, logw_std) x T]. */
static void add_rows(cJSON *rj, const exp_example *e, size_t nt, const vkd_probe_pos *ps, uint32_t np,
                     const vkd_probe_block *bs, uint32_t nb) {
    cJSON *pa = cJSON_AddArrayToObject(rj, "positions");
    for (uint32_t i = 0; i < np; i++) {
        const vkd_probe_pos *q = &ps[i];
        cJSON *row = cJSON_CreateArray();
        double head[4] = {q->block, q->block_pos, q->pos - e->n_prompt, q->token};
        for (int h = 0; h < 4; h++) cJSON_AddItemToArray(row, cJSON_CreateNumber(head[h]));
        for (size_t ti = 0; ti < nt; ti++) cJSON_AddItemToArray(row, cJSON_CreateNumber(q->kl[ti]));
        for (size_t ti = 0; ti < nt; ti++) cJSON_AddItemToArray(row, cJSON_CreateNumber(q->tvd[ti]));
        cJSON_AddItemToArray(row, cJSON_CreateNumber(q->base_tvd));
        cJSON_AddItemToArray(pa, row);
    }
    cJSON *ba = cJSON_AddArrayToObject(rj, "blocks");
    for (uint32_t i = 0; i < nb; i++) {
        const vkd_probe_block *b = &bs[i];
        cJSON *row = cJSON_CreateArray();
        double head[3] = {b->block, b->start - e->n_prompt, b->npos};
        for (int h = 0; h < 3; h++) cJSON_AddItemToArray(row, cJSON_CreateNumber(head[h]));
        const double *cols[4] = {b->product, b->sim_accept, b->logw_mean, b->logw_std};
        for (int q = 0; q < 4; q++)
            for (size_t ti = 0; ti < nt; ti++) cJSON_AddItemToArray(row, cJSON_CreateNumber(cols[q][ti]));
        cJSON_AddItemToArray(ba, row);
    }
    cJSON *ca = cJSON_AddArrayToObject(rj, "chains");
    for (uint32_t i = 0; i < nb; i++) {
        cJSON *row = cJSON_CreateArray();
        cJSON_AddItemToArray(row, cJSON_CreateNumber(bs[i].block));
        for (size_t ti = 0; ti < nt; ti++) {
            const vkd_probe_chain *ch = &bs[i].chain[ti];
            uint32_t v[NCHAIN] = {ch->accepts, ch->changes, ch->distinct, ch->windows, ch->moved1, ch->moved3,
                                  ch->changed1};
            for (int q = 0; q < NCHAIN; q++) cJSON_AddItemToArray(row, cJSON_CreateNumber(v[q]));
        }
        cJSON_AddItemToArray(ca, row);
    }
}

typedef struct probe_run {
    const probe_opts *P;
    exp_models *m;
    const exp_data *data;
    vkd_probe *pr;
    uint64_t extra;                  /* context beyond the prompt: max_new + a block */
    exp_progress pg;
    uint64_t work;
} probe_run;

/* The journal record of example k: skipped (too long for the context, reference too short)
 * or the greedy reference and the probe's rows. */
static cJSON *probe_one(probe_run *R, size_t k) {
    const probe_opts *P = R->P;
    exp_models *m = R->m;
    const exp_example *e = &R->data->ex[k];
    const char *path = R->data->path;
    vkd_error err = {0};
    cJSON *rj = exp_record_new(e);
    if ((uint64_t)e->n_prompt + R->extra > m->t->ctx_len) {
        fprintf(stderr, "probe: %s:%zu: skipped: prompt (%u tokens) + --max-new-tokens %ld + a block exceed "
                "the context (%u, the target's max_position_embeddings)\n", path, e->line, e->n_prompt,
                P->max_new, m->t->ctx_len);
        cJSON_AddStringToObject(rj, "skipped", "longer than the context");
        return rj;
    }
    /* greedy reference generation */
    gen_watch gw = {.pg = &R->pg, .done = k, .work = &R->work, .quiet = P->c.quiet};
    vkd_generate_options go = {.max_new_tokens = (uint32_t)P->max_new, .stop_ids = m->stops, .nstop = m->nstop,
                               .on_token = on_token, .user = &gw};
    vkd_generate_result gr;
    double t0 = vkd_now();
    cli_check(vkd_generate(m->t, m->rec, e->prompt, e->n_prompt, &go, &gr, &err), &err);
    double gen_s = vkd_now() - t0;
    uint32_t n = e->n_prompt + gr.n;
    int32_t *seq = malloc((size_t)n * sizeof *seq);
    memcpy(seq, e->prompt, e->n_prompt * sizeof *seq);
    memcpy(seq + e->n_prompt, gr.ids, gr.n * sizeof *seq);
    cJSON_AddNumberToObject(rj, "generated_tokens", gr.n);
    cJSON_AddBoolToObject(rj, "stopped", gr.stopped);
    cJSON_AddNumberToObject(rj, "gen_s", gen_s);
    cJSON *ra = cJSON_AddArrayToObject(rj, "reference");
    for (uint32_t i = 0; i < gr.n; i++) cJSON_AddItemToArray(ra, cJSON_CreateNumber(gr.ids[i]));
    if (P->kind != VKD_ANSWER_NONE && e->answer) /* easy / hard: the greedy reference graded */
        grade_ids(m->tok, P->kind, e, gr.ids, gr.n, cJSON_AddObjectToObject(rj, "graded"));
    free(gr.ids);
    if (gr.n < 2) {
        fprintf(stderr, "probe: %s:%zu: skipped: the reference generation has %u token(s), nothing to compare\n",
                path, e->line, gr.n);
        cJSON_AddStringToObject(rj, "skipped", "reference shorter than 2 tokens");
        free(seq);
        return rj;
    }
    vkd_probe_pos *ps;
    vkd_probe_block *bs;
    uint32_t np, nb;
    vkd_probe_times tm;
    cli_check(vkd_probe_run(R->pr, m->rec, seq, n, e->n_prompt, (uint32_t)e->index, NULL, NULL, &ps, &np, &bs, &nb, &tm,
                            &err), &err);
    cJSON_AddNumberToObject(rj, "prompt_s", tm.prompt_s);
    cJSON_AddNumberToObject(rj, "blocks_s", tm.blocks_s);
    cJSON_AddNumberToObject(rj, "mc_s", tm.mc_s);
    add_rows(rj, e, P->nt, ps, np, bs, nb);
    free(ps);
    free(bs);
    free(seq);
    return exp_reparsed(rj);
}

/* Everything the tables need, tallied from the whole journal. */
#define NDIFF 3 /* all, easy (graded reference correct), hard (wrong) */
static const char *const diff_keys[NDIFF] = {"all", "easy", "hard"};

typedef struct ptally {
    size_t nt;
    tstats *ts;
    dvec base;
    size_t n_ex, n_skip, n_blocks, n_pos;
    double sum_gen, sum_prompt, sum_blocks, sum_mc, sum_tok;
    /* by difficulty: examples, blocks, predicted positions, block time, chain sums per T */
    double d_ex[NDIFF], d_blocks[NDIFF], d_pos[NDIFF], d_blocks_s[NDIFF];
    double chain[NDIFF][VKD_PROBE_MAX_TEMPS][NCHAIN];
} ptally;

/* One record's chains (and its blocks' sizes) into the difficulty dg (and "all"). */
static void tally_chains(ptally *T, const cJSON *rj, int dg) {
    const cJSON *ca = item(rj, "chains"), *ba = item(rj, "blocks"), *row;
    int ds[2] = {0, dg};
    for (int q = 0; q < (dg ? 2 : 1); q++) {
        int d = ds[q];
        T->d_ex[d]++;
        T->d_blocks_s[d] += num(rj, "blocks_s");
        cJSON_ArrayForEach(row, ba) {
            T->d_blocks[d]++;
            T->d_pos[d] += arr_at(row, 2);
        }
        if (!cJSON_IsArray(ca)) continue;
        cJSON_ArrayForEach(row, ca)
            for (size_t ti = 0; ti < T->nt; ti++)
                for (int c = 0; c < NCHAIN; c++) T->chain[d][ti][c] += arr_at(row, 1 + (int)ti * NCHAIN + c);
    }
}

/* One record's positions into the tally and positions.csv; klb/kln: KL sum per (block, T) and
 * count per block of this example (for blocks.csv). */
static void tally_positions(ptally *T, const cJSON *pa, const char *id, vkd_tok *tok, uint32_t maxk, double *klb,
                            double *kln, exp_buf *pcsv) {
    size_t nt = T->nt;
    const cJSON *row;
    vkd_error err = {0};
    cJSON_ArrayForEach(row, pa) {
        uint32_t blk = (uint32_t)arr_at(row, 0);
        int32_t tk = (int32_t)arr_at(row, 3);
        char *text = NULL;
        size_t tl;
        if (vkd_tok_decode(tok, &tk, 1, false, &text, &tl, &err)) text = strdup("");
        exp_buf_csv(pcsv, id);
        exp_buf_printf(pcsv, ",%u,%.0f,%.0f,%d,", blk, arr_at(row, 1), arr_at(row, 2), tk);
        exp_buf_csv(pcsv, text);
        free(text);
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(pcsv, ",%.9g", arr_at(row, 4 + (int)ti));
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(pcsv, ",%.9g", arr_at(row, 4 + (int)(nt + ti)));
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(pcsv, ",%.9g", 1.0 - arr_at(row, 4 + (int)(nt + ti)));
        double bt = arr_at(row, 4 + 2 * (int)nt);
        exp_buf_printf(pcsv, ",%.9g\n", 1.0 - bt);
        dv_push(&T->base, 1.0 - bt);
        int g = group_of(blk);
        if (blk <= maxk) kln[blk] += 1;
        for (size_t ti = 0; ti < nt; ti++) {
            tstats *s = &T->ts[ti];
            double kl = arr_at(row, 4 + (int)ti), tvd = arr_at(row, 4 + (int)(nt + ti));
            dv_push(&s->kl, kl);
            dv_push(&s->tvd, tvd);
            dv_push(&s->acc, 1.0 - tvd);
            s->g_kl[g] += kl;
            s->g_kln[g] += 1;
            if (blk <= maxk) klb[(size_t)blk * nt + ti] += kl;
            while (s->kl_by_block_sum.n <= blk) { dv_push(&s->kl_by_block_sum, 0); dv_push(&s->kl_by_block_n, 0); }
            s->kl_by_block_sum.v[blk] += kl;
            s->kl_by_block_n.v[blk] += 1;
        }
        T->n_pos++;
    }
}

/* One record's blocks into the tally and blocks.csv. */
static void tally_blocks(ptally *T, const cJSON *ba, const char *id, const double *klb, const double *kln,
                         exp_buf *bcsv) {
    size_t nt = T->nt;
    const cJSON *row;
    cJSON_ArrayForEach(row, ba) {
        uint32_t blk = (uint32_t)arr_at(row, 0);
        exp_buf_csv(bcsv, id);
        exp_buf_printf(bcsv, ",%u,%.0f,%.0f", blk, arr_at(row, 1), arr_at(row, 2));
        for (int q = 0; q < 4; q++)
            for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(bcsv, ",%.9g", arr_at(row, 3 + q * (int)nt + (int)ti));
        for (size_t ti = 0; ti < nt; ti++)
            exp_buf_printf(bcsv, ",%.9g", kln[blk] > 0 ? klb[(size_t)blk * nt + ti] / kln[blk] : NAN);
        exp_buf_printf(bcsv, "\n");
        int g = group_of(blk);
        for (size_t ti = 0; ti < nt; ti++) {
            tstats *s = &T->ts[ti];
            double sim = arr_at(row, 3 + (int)(nt + ti));
            dv_push(&s->prod, arr_at(row, 3 + (int)ti));
            dv_push(&s->sim, sim);
            dv_push(&s->lwm, arr_at(row, 3 + (int)(2 * nt + ti)));
            dv_push(&s->lws, arr_at(row, 3 + (int)(3 * nt + ti)));
            dv_push(&s->g_sim[g], sim);
        }
        T->n_blocks++;
    }
}

/* Tallies the whole journal; writes positions.csv and blocks.csv. */
static void tally_journal(exp_out *o, vkd_tok *tok, const double *temps, size_t nt, ptally *T) {
    memset(T, 0, sizeof *T);
    T->nt = nt;
    T->ts = calloc(nt, sizeof *T->ts);
    exp_buf pcsv = {0}, bcsv = {0};
    exp_buf_printf(&pcsv, "example,block,block_pos,position,token,text");
    exp_buf_printf(&bcsv, "example,block,start,positions");
    const char *pn[3] = {"kl", "tvd", "accept"}, *bn[5] = {"product", "sim_accept", "logw_mean", "logw_std", "kl_mean"};
    char tkey[VKD_PROBE_MAX_TEMPS][32]; /* column keys name each temperature exactly */
    for (size_t ti = 0; ti < nt; ti++) jr_fmt_double(tkey[ti], sizeof tkey[ti], temps[ti]);
    for (int q = 0; q < 3; q++) for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(&pcsv, ",%s_T%s", pn[q], tkey[ti]);
    exp_buf_printf(&pcsv, ",baseline_accept\n");
    for (int q = 0; q < 5; q++) for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(&bcsv, ",%s_T%s", bn[q], tkey[ti]);
    exp_buf_printf(&bcsv, "\n");
    for (size_t ri = 0; ri < o->done.n; ri++) {
        const cJSON *rj = o->done.rec[ri];
        const cJSON *pa = item(rj, "positions"), *ba = item(rj, "blocks"), *row;
        if (!cJSON_IsArray(pa) || !cJSON_IsArray(ba)) { T->n_skip++; continue; }
        T->n_ex++;
        const char *id = cJSON_GetStringValue(item(rj, "id"));
        T->sum_gen += num(rj, "gen_s");
        T->sum_prompt += num(rj, "prompt_s");
        T->sum_blocks += num(rj, "blocks_s");
        T->sum_mc += num(rj, "mc_s");
        T->sum_tok += num(rj, "generated_tokens");
        const cJSON *gc = item(item(rj, "graded"), "correct");
        tally_chains(T, rj, cJSON_IsBool(gc) ? (cJSON_IsTrue(gc) ? 1 : 2) : 0);
        /* mean KL per block (for blocks.csv) */
        uint32_t maxk = 0;
        cJSON_ArrayForEach(row, ba) if (arr_at(row, 0) > maxk) maxk = (uint32_t)arr_at(row, 0);
        double *klb = calloc((size_t)(maxk + 1) * nt, sizeof *klb), *kln = calloc(maxk + 1, sizeof *kln);
        size_t st_pos[VKD_PROBE_MAX_TEMPS], st_blk[VKD_PROBE_MAX_TEMPS]; /* this example's first values */
        for (size_t ti = 0; ti < nt; ti++) st_pos[ti] = T->ts[ti].kl.n, st_blk[ti] = T->ts[ti].sim.n;
        tally_positions(T, pa, id, tok, maxk, klb, kln, &pcsv);
        tally_blocks(T, ba, id, klb, kln, &bcsv);
        for (size_t ti = 0; ti < nt; ti++) { /* per example sums -> bootstrap CIs over problems */
            tstats *s = &T->ts[ti];
            double kl = 0, acc = 0, sim = 0;
            for (size_t i = st_pos[ti]; i < s->kl.n; i++) kl += s->kl.v[i], acc += s->acc.v[i];
            for (size_t i = st_blk[ti]; i < s->sim.n; i++) sim += s->sim.v[i];
            rep_col_add(&s->c_kl, kl, (double)(s->kl.n - st_pos[ti]));
            rep_col_add(&s->c_acc, acc, (double)(s->kl.n - st_pos[ti]));
            rep_col_add(&s->c_sim, sim, (double)(s->sim.n - st_blk[ti]));
            if (s->n_klb < (size_t)maxk + 1) { /* per block index, for kl_by_block.csv's CIs */
                s->c_klb = realloc(s->c_klb, ((size_t)maxk + 1) * sizeof *s->c_klb);
                if (!s->c_klb) cli_fatal("out of memory");
                memset(s->c_klb + s->n_klb, 0, ((size_t)maxk + 1 - s->n_klb) * sizeof *s->c_klb);
                s->n_klb = (size_t)maxk + 1;
            }
            for (uint32_t k = 0; k <= maxk; k++)
                if (kln[k] > 0) rep_col_add(&s->c_klb[k], klb[(size_t)k * nt + ti], kln[k]);
        }
        free(klb);
        free(kln);
    }
    exp_write(o, "positions.csv", pcsv.s, pcsv.n);
    exp_write(o, "blocks.csv", bcsv.s, bcsv.n);
    exp_buf_free(&pcsv);
    exp_buf_free(&bcsv);
}

static void tally_free(ptally *T) {
    for (size_t ti = 0; ti < T->nt; ti++) {
        tstats *s = &T->ts[ti];
        dvec *all[9] = {&s->kl, &s->tvd, &s->acc, &s->sim, &s->prod, &s->lwm, &s->lws, &s->kl_by_block_sum,
                        &s->kl_by_block_n};
        for (int q = 0; q < 9; q++) free(all[q]->v);
        for (int g = 0; g < NGROUP; g++) free(s->g_sim[g].v);
        rep_col_free(&s->c_kl), rep_col_free(&s->c_acc), rep_col_free(&s->c_sim);
        for (size_t k = 0; k < s->n_klb; k++) rep_col_free(&s->c_klb[k]);
        free(s->c_klb);
    }
    free(T->ts);
    free(T->base.v);
}

static const double pcts[7] = {5, 10, 25, 50, 75, 90, 95}, tpcts[5] = {5, 25, 50, 75, 95};
static const double ths[6] = {0.01, 0.05, 0.10, 0.20, 0.50, 0.70};

/* The column headers of a table with a column per temperature (" T=x |" each, then the
 * alignment row). */
static void temps_header(exp_buf *rep, const double *temps, size_t nt) {
    for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(rep, " T=%g |", temps[ti]);
    exp_buf_printf(rep, "\n|:---:|");
    for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(rep, ":---:|");
}

/* report.txt: aggregate metrics, acceptance distributions, per-group table, time. */
static void report_tables(exp_buf *rep, const probe_opts *P, const ptally *T, uint32_t B) {
    const double *temps = P->temps;
    size_t nt = P->nt;
    const tstats *ts = T->ts;
    exp_buf_printf(rep, "probe: %zu problem(s), %zu block(s), %zu position(s), alpha=%g, block size %u, K=%ld\n\n",
                   T->n_ex, T->n_blocks, T->n_pos, P->alpha, B, P->K);
    if (T->n_skip) exp_buf_printf(rep, "(%zu example(s) skipped: see examples.jsonl)\n\n", T->n_skip);
    exp_buf_printf(rep, "Aggregate metrics\n| Draft Temp | KL(p^alpha || q) | TVD | Token Accept | Sim Accept (mean) | "
                        "Sim Accept (median) | Block Product | log w mean | log w std |\n"
                        "|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|\n");
    for (size_t ti = 0; ti < nt; ti++) {
        const tstats *s = &ts[ti];
        char kl_s[32], tvd_s[32]; /* small divergences keep their digits */
        exp_buf_printf(rep, "| T=%g | %s | %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f | %.1f |\n", temps[ti],
                       rep_num(kl_s, sizeof kl_s, exp_mean(s->kl.v, s->kl.n)),
                       rep_num(tvd_s, sizeof tvd_s, exp_mean(s->tvd.v, s->tvd.n)), 100 * exp_mean(s->acc.v, s->acc.n),
                       100 * exp_mean(s->sim.v, s->sim.n), 100 * exp_percentile(s->sim.v, s->sim.n, 50),
                       100 * exp_mean(s->prod.v, s->prod.n), exp_mean(s->lwm.v, s->lwm.n), exp_mean(s->lws.v, s->lws.n));
    }
    exp_buf_printf(rep, "\nSpec-decode baseline (T=1, p vs q): %.1f%% token acceptance.\n",
                   100 * exp_mean(T->base.v, T->base.n));
    exp_buf_printf(rep, "\nDistribution of block-level acceptance (simulated accept rate)\n| Percentile |");
    temps_header(rep, temps, nt);
    for (int q = 0; q < 7; q++) {
        exp_buf_printf(rep, "\n| P%.0f |", pcts[q]);
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(rep, " %.1f%% |", 100 * exp_percentile(ts[ti].sim.v, ts[ti].sim.n, pcts[q]));
    }
    exp_buf_printf(rep, "\n\nFraction of blocks exceeding acceptance threshold\n| Threshold |");
    temps_header(rep, temps, nt);
    for (int q = 0; q < 6; q++) {
        exp_buf_printf(rep, "\n| > %.0f%% |", 100 * ths[q]);
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(rep, " %.1f%% |", 100 * frac_above(&ts[ti].sim, ths[q]));
    }
    exp_buf_printf(rep, "\n");
    for (size_t ti = 0; ti < nt; ti++) {
        const tstats *s = &ts[ti];
        exp_buf_printf(rep, "\nAcceptance by block position (T=%g)\n| Block position | N blocks | Sim Accept (mean) | "
                            "Sim Accept (median) | Mean KL |\n|:---:|:---:|:---:|:---:|:---:|\n", temps[ti]);
        for (int g = 0; g < NGROUP; g++) {
            if (!s->g_sim[g].n) {
                exp_buf_printf(rep, "| %s | 0 | - | - | - |\n", group_names[g]);
                continue;
            }
            exp_buf_printf(rep, "| %s | %zu | %.1f%% | %.1f%% | %.2f |\n", group_names[g], s->g_sim[g].n,
                           100 * exp_mean(s->g_sim[g].v, s->g_sim[g].n), 100 * exp_percentile(s->g_sim[g].v, s->g_sim[g].n, 50),
                           s->g_kln[g] > 0 ? s->g_kl[g] / s->g_kln[g] : NAN);
        }
    }
    exp_buf_printf(rep, "\nToken-level acceptance distribution\n| Percentile |");
    temps_header(rep, temps, nt);
    for (int q = 0; q < 5; q++) {
        exp_buf_printf(rep, "\n| P%.0f |", tpcts[q]);
        for (size_t ti = 0; ti < nt; ti++) exp_buf_printf(rep, " %.1f%% |", 100 * exp_percentile(ts[ti].acc.v, ts[ti].acc.n, tpcts[q]));
    }
    double total_s = T->sum_gen + T->sum_prompt + T->sum_blocks + T->sum_mc;
    exp_buf_printf(rep, "\n\nTime: %.1fs for %.0f reference tokens (%.2f tok/s): reference generation %.1fs, "
                        "prompt pass %.1fs, blocks (draft + target + distances) %.1fs, Monte Carlo %.1fs\n",
                   total_s, T->sum_tok, total_s > 0 ? T->sum_tok / total_s : 0, T->sum_gen, T->sum_prompt,
                   T->sum_blocks, T->sum_mc);
}

/* Seed 002 sections 4.3 and 5 for difficulty d and temperature ti: the chain's moves beside
 * its acceptance and the cost per effective accepted token (a proposed block costs one
 * draft call and one target forward that scores it; an accepted move that changed the block
 * brings the block's positions). */
typedef struct chain_fig {
    double accept, change, distinct_frac, p1, p3, pc1, eff_per_proposal, fwd_per_eff, s_per_eff;
} chain_fig;

static chain_fig chain_figures(const ptally *T, const probe_opts *P, int d, size_t ti) {
    const double *c = T->chain[d][ti];
    double props = T->d_blocks[d] * (double)(P->K - 1), w = c[CH_WINDOWS];
    chain_fig f = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    if (props > 0) {
        f.accept = c[CH_ACCEPTS] / props;
        f.change = c[CH_CHANGES] / props;
        f.distinct_frac = c[CH_DISTINCT] / (T->d_blocks[d] * (double)P->K);
        f.eff_per_proposal = f.change * T->d_pos[d] / T->d_blocks[d];
        if (f.eff_per_proposal > 0) {
            f.fwd_per_eff = 1.0 / f.eff_per_proposal;
            f.s_per_eff = T->d_blocks_s[d] / T->d_blocks[d] / f.eff_per_proposal;
        }
    }
    if (w > 0) {
        f.p1 = c[CH_MOVED1] / w;
        f.p3 = c[CH_MOVED3] / w;
        f.pc1 = c[CH_CHANGED1] / w;
    }
    return f;
}

/* P(X >= 1) and P(X >= 3) for X ~ Binomial(S, a): the seed's section 4.3 arithmetic. */
static void binomial_moves(double a, long S, double *p1, double *p3) {
    double q = 1 - a, p0 = pow(q, (double)S), pp1 = S * a * pow(q, (double)(S - 1)),
           pp2 = S >= 2 ? 0.5 * S * (S - 1) * a * a * pow(q, (double)(S - 2)) : 0;
    *p1 = 1 - p0;
    *p3 = S >= 3 ? 1 - p0 - pp1 - pp2 : 0;
}

static void chains_report(exp_buf *rep, const probe_opts *P, const ptally *T) {
    exp_buf_printf(rep, "\nMCMC chains (seed 002 sections 4.3 and 5; S = %ld steps per chain, %ld samples per block)\n"
                        "| Group | Draft Temp | Blocks | Accept | Moves that changed the block | Distinct samples | "
                        "P(moves >= 1) | P(moves >= 3) | P(changed >= 1) | Binomial P(>= 1) / P(>= 3) at the median "
                        "accept | Target fwd / eff. token | s / eff. token |\n"
                        "|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|\n", P->steps, P->K);
    for (int d = 0; d < NDIFF; d++) {
        if (!T->d_blocks[d]) continue;
        for (size_t ti = 0; ti < P->nt; ti++) {
            chain_fig f = chain_figures(T, P, d, ti);
            char bin[48] = "-";
            if (d == 0) {
                double b1, b3;
                binomial_moves(exp_percentile(T->ts[ti].sim.v, T->ts[ti].sim.n, 50), P->steps, &b1, &b3);
                snprintf(bin, sizeof bin, "%.1f%% / %.1f%%", 100 * b1, 100 * b3);
            }
            exp_buf_printf(rep, "| %s | T=%g | %.0f | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %s | %.3g | %.3g |\n",
                           diff_keys[d], P->temps[ti], T->d_blocks[d], 100 * f.accept, 100 * f.change,
                           100 * f.distinct_frac, 100 * f.p1, 100 * f.p3, 100 * f.pc1, bin, f.fwd_per_eff, f.s_per_eff);
        }
    }
    if (T->d_blocks[1] + T->d_blocks[2] == 0)
        exp_buf_printf(rep, "(no easy / hard split: the dataset's answers are not graded)\n");
    else
        exp_buf_printf(rep, "easy: %.0f problem(s) whose greedy reference is graded correct, hard: %.0f wrong\n",
                       T->d_ex[1], T->d_ex[2]);
}

static cJSON *chains_json(const probe_opts *P, const ptally *T, int d) {
    cJSON *a = cJSON_CreateArray();
    for (size_t ti = 0; ti < P->nt; ti++) {
        chain_fig f = chain_figures(T, P, d, ti);
        const double *c = T->chain[d][ti];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "temperature", P->temps[ti]);
        cJSON_AddNumberToObject(x, "problems", T->d_ex[d]);
        cJSON_AddNumberToObject(x, "blocks", T->d_blocks[d]);
        static const char *const keys[NCHAIN] = {"accepts", "changes", "distinct", "windows", "moved1", "moved3",
                                                 "changed1"};
        for (int q = 0; q < NCHAIN; q++) cJSON_AddNumberToObject(x, keys[q], c[q]);
        cJSON_AddNumberToObject(x, "accept_rate", f.accept);
        cJSON_AddNumberToObject(x, "change_rate", f.change);
        cJSON_AddNumberToObject(x, "distinct_fraction", f.distinct_frac);
        cJSON_AddNumberToObject(x, "p_moves_ge1", f.p1);
        cJSON_AddNumberToObject(x, "p_moves_ge3", f.p3);
        cJSON_AddNumberToObject(x, "p_changed_ge1", f.pc1);
        if (d == 0) {
            double b1, b3;
            binomial_moves(exp_percentile(T->ts[ti].sim.v, T->ts[ti].sim.n, 50), P->steps, &b1, &b3);
            cJSON_AddNumberToObject(x, "binomial_p_moves_ge1", b1);
            cJSON_AddNumberToObject(x, "binomial_p_moves_ge3", b3);
        }
        cJSON_AddNumberToObject(x, "effective_tokens_per_proposal", f.eff_per_proposal);
        cJSON_AddNumberToObject(x, "target_forwards_per_effective_token", f.fwd_per_eff);
        cJSON_AddNumberToObject(x, "wall_s_per_effective_token", f.s_per_eff);
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

/* summary.json's entry for one temperature. */
/* 95% bootstrap CIs over problems, per temperature: KL, token accept, sim accept (mean). */
typedef struct probe_cis {
    rep_boot bt;
    rep_ci kl[VKD_PROBE_MAX_TEMPS], acc[VKD_PROBE_MAX_TEMPS], sim[VKD_PROBE_MAX_TEMPS];
} probe_cis;

static void probe_cis_of(const probe_opts *P, const ptally *T, probe_cis *C) {
    C->bt = rep_boot_of(&P->c);
    for (size_t ti = 0; ti < P->nt; ti++) {
        C->kl[ti] = rep_col_ci(&C->bt, &T->ts[ti].c_kl);
        C->acc[ti] = rep_col_ci(&C->bt, &T->ts[ti].c_acc);
        C->sim[ti] = rep_col_ci(&C->bt, &T->ts[ti].c_sim);
    }
}

static void report_cis(exp_buf *rep, const probe_opts *P, const probe_cis *C) {
    exp_buf_printf(rep, "\n%.0f%% bootstrap CIs over problems (%u resamples; pooled means as above):\n",
                   100 * REP_LEVEL, C->bt.reps);
    for (size_t ti = 0; ti < P->nt; ti++) {
        char label[64];
        snprintf(label, sizeof label, "T=%g KL(p^alpha || q)", P->temps[ti]);
        rep_ci_line(rep, label, C->kl[ti]);
        snprintf(label, sizeof label, "T=%g token accept", P->temps[ti]);
        rep_ci_line(rep, label, C->acc[ti]);
        snprintf(label, sizeof label, "T=%g sim accept (mean)", P->temps[ti]);
        rep_ci_line(rep, label, C->sim[ti]);
    }
}

static cJSON *temp_json(const tstats *s, double temp, const probe_cis *C, size_t ti) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "temperature", temp);
    cJSON_AddNumberToObject(x, "kl", exp_mean(s->kl.v, s->kl.n));
    cJSON_AddNumberToObject(x, "tvd", exp_mean(s->tvd.v, s->tvd.n));
    cJSON_AddNumberToObject(x, "token_accept", exp_mean(s->acc.v, s->acc.n));
    cJSON_AddNumberToObject(x, "sim_accept_mean", exp_mean(s->sim.v, s->sim.n));
    cJSON_AddNumberToObject(x, "sim_accept_median", exp_percentile(s->sim.v, s->sim.n, 50));
    rep_ci_json(x, "kl_ci", C->kl[ti]);
    rep_ci_json(x, "token_accept_ci", C->acc[ti]);
    rep_ci_json(x, "sim_accept_mean_ci", C->sim[ti]);
    cJSON_AddNumberToObject(x, "block_product", exp_mean(s->prod.v, s->prod.n));
    cJSON_AddNumberToObject(x, "logw_mean", exp_mean(s->lwm.v, s->lwm.n));
    cJSON_AddNumberToObject(x, "logw_std", exp_mean(s->lws.v, s->lws.n));
    cJSON_AddNumberToObject(x, "logw_std_across_blocks", exp_std(s->lwm.v, s->lwm.n));
    cJSON *jp = cJSON_AddObjectToObject(x, "sim_accept_percentiles");
    for (int q = 0; q < 7; q++) {
        char k[8];
        snprintf(k, sizeof k, "P%.0f", pcts[q]);
        cJSON_AddNumberToObject(jp, k, exp_percentile(s->sim.v, s->sim.n, pcts[q]));
    }
    cJSON *jf = cJSON_AddObjectToObject(x, "fraction_blocks_above");
    for (int q = 0; q < 6; q++) {
        char k[8];
        snprintf(k, sizeof k, "%.2f", ths[q]);
        cJSON_AddNumberToObject(jf, k, frac_above(&s->sim, ths[q]));
    }
    cJSON *jg = cJSON_AddObjectToObject(x, "by_block_position");
    for (int g = 0; g < NGROUP; g++) {
        cJSON *y = cJSON_AddObjectToObject(jg, group_keys[g]);
        cJSON_AddNumberToObject(y, "blocks", (double)s->g_sim[g].n);
        if (s->g_sim[g].n) {
            cJSON_AddNumberToObject(y, "sim_accept_mean", exp_mean(s->g_sim[g].v, s->g_sim[g].n));
            cJSON_AddNumberToObject(y, "sim_accept_median", exp_percentile(s->g_sim[g].v, s->g_sim[g].n, 50));
            cJSON_AddNumberToObject(y, "kl_mean", s->g_kl[g] / s->g_kln[g]);
        }
    }
    cJSON *jk = cJSON_AddObjectToObject(x, "token_accept_percentiles");
    for (int q = 0; q < 5; q++) {
        char k[8];
        snprintf(k, sizeof k, "P%.0f", tpcts[q]);
        cJSON_AddNumberToObject(jk, k, exp_percentile(s->acc.v, s->acc.n, tpcts[q]));
    }
    return x;
}

static cJSON *summary_json(const probe_opts *P, const ptally *T, const probe_cis *C, uint32_t B) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "problems", (double)T->n_ex);
    cJSON_AddNumberToObject(sum, "skipped", (double)T->n_skip);
    cJSON_AddNumberToObject(sum, "blocks", (double)T->n_blocks);
    cJSON_AddNumberToObject(sum, "positions", (double)T->n_pos);
    cJSON_AddNumberToObject(sum, "alpha", P->alpha);
    cJSON_AddNumberToObject(sum, "block_size", B);
    cJSON_AddNumberToObject(sum, "samples", (double)P->K);
    cJSON_AddNumberToObject(sum, "baseline_token_accept", exp_mean(T->base.v, T->base.n));
    rep_boot_json(sum, &C->bt);
    cJSON *jtemps = cJSON_AddArrayToObject(sum, "temperatures");
    for (size_t ti = 0; ti < P->nt; ti++) cJSON_AddItemToArray(jtemps, temp_json(&T->ts[ti], P->temps[ti], C, ti));
    cJSON_AddNumberToObject(sum, "mcmc_steps", (double)P->steps);
    cJSON *jc = cJSON_AddObjectToObject(sum, "chains");
    for (int d = 0; d < NDIFF; d++)
        if (T->d_blocks[d]) cJSON_AddItemToObject(jc, diff_keys[d], chains_json(P, T, d));
    double total_s = T->sum_gen + T->sum_prompt + T->sum_blocks + T->sum_mc;
    cJSON *jtime = cJSON_AddObjectToObject(sum, "timing");
    cJSON_AddNumberToObject(jtime, "reference_tokens", T->sum_tok);
    cJSON_AddNumberToObject(jtime, "generation_s", T->sum_gen);
    cJSON_AddNumberToObject(jtime, "prompt_s", T->sum_prompt);
    cJSON_AddNumberToObject(jtime, "blocks_s", T->sum_blocks);
    cJSON_AddNumberToObject(jtime, "monte_carlo_s", T->sum_mc);
    cJSON_AddNumberToObject(jtime, "total_s", total_s);
    cJSON_AddNumberToObject(jtime, "tok_s", total_s > 0 ? T->sum_tok / total_s : 0);
    return sum;
}

/* CSV files, report.txt (also on stdout), summary.json and figures, from the whole journal. */
static void probe_report(exp_out *o, const probe_opts *P, vkd_tok *tok, uint32_t B) {
    ptally T;
    tally_journal(o, tok, P->temps, P->nt, &T);
    probe_cis C;
    probe_cis_of(P, &T, &C);
    exp_buf rep = {0};
    report_tables(&rep, P, &T, B);
    chains_report(&rep, P, &T);
    report_cis(&rep, P, &C);
    fputs(rep.s, stdout);
    exp_write(o, "report.txt", rep.s, rep.n);
    cJSON *sum = summary_json(P, &T, &C, B);
    exp_write_json(o, "summary.json", sum);
    cJSON_Delete(sum);
    probe_figures(o, P->temps, P->nt, T.ts, &C.bt);
    tally_free(&T);
    exp_buf_free(&rep);
}

int vkd_cmd_probe(int argc, char **argv) {
    probe_opts P = {.c = {.cmd = "probe"}, .alpha = 4.0, .K = 100, .max_new = 3072, .steps = 10};
    if (!parse_args(argc, argv, &P)) return 0;
    exp_common *c = &P.c;

    exp_models m = {0};
    exp_load_tokenizer(c, &m);
    exp_data data;
    exp_load_data(c, m.tok, DEFAULT_DATASET, false, &data);
    P.kind = grade_kind(c, &data, false, NULL);
    vkd_error err = {0};
    uint64_t longest = 0;
    for (size_t k = 0; k < data.n; k++) if (data.ex[k].n_prompt > longest) longest = data.ex[k].n_prompt;
    uint64_t extra = (uint64_t)P.max_new + 64; /* 64 >= any block size */
    exp_load_models(c, exp_ctx_cap(c, longest + extra), &m);
    vkd_draft *draft = exp_draft(c, &m, true);
    uint32_t B = draft->block;
    check_fits(&data, extra, P.max_new, m.t->ctx_len);

    exp_out o;
    jr_limits lim = {.vocab = m.t->vocab, .ctx_len = m.t->ctx_len, .ntemps = (uint32_t)P.nt, .block = B};
    exp_open_out(c, probe_params(&P, &data, B), jr_check_probe, &lim, &o);

    vkd_probe_options po = {.alpha = P.alpha, .temps = P.temps, .ntemps = (uint32_t)P.nt, .samples = (uint32_t)P.K,
                            .mcmc_steps = (uint32_t)P.steps, .seed = c->seed};
    probe_run R = {.P = &P, .m = &m, .data = &data, .extra = extra};
    cli_check(vkd_probe_create(m.t, draft, &po, &R.pr, &err), &err);

    exp_progress_start(&R.pg, c->cmd, data.n);
    for (size_t k = 0; k < data.n; k++) {
        if (exp_claim(&o, k, data.ex[k].id)) exp_journal(&o, probe_one(&R, k));
        exp_progress_update(&R.pg, k + 1, R.work, "tok");
    }
    exp_finish_work(&o);
    exp_progress_end(&R.pg, data.n, R.work, "tok");
    vkd_probe_free(R.pr);
    vkd_draft_free(draft);

    probe_report(&o, &P, m.tok, B);

    free(P.temps);
    exp_close_out(&o);
    exp_free_data(&data);
    exp_free_models(&m);
    return 0;
}
