/* test_power: power sampling (methods/power.c).
 *
 * Without arguments: self-checks on the committed DFlash fixture pair (target with
 * max_rows 8, so prompt prefill and the lazy re-forward after a rejection run in chunks):
 *   - alpha = 1, naive proposal without top-k/top-p: log r == 0 exactly, every step accepted;
 *   - the chain's bookkeeping of alpha*log p equals a plain teacher-forced decode of the final
 *     sequence (the KV cache crops and re-forwards are right), both proposals;
 *   - same seed, same output (both proposals); counters consistent;
 *   - a max_new_tokens that is not a multiple of block_tokens; bad arguments.
 * With --run: a runner for test_power.py (exact enumeration of p^alpha, replay against
 * tools/reference/power_ref.py): runs chains with seeds seed0 .. seed0+K-1 and writes each
 * move (--log) and each chain's final answer (--finals) as JSON lines. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_power.h"
#include "vkd_sample.h"
#include "vkd_test.h"

/* the fixture target's generation_config top_k / top_p (the reference's warping) */
#define GEN_TOP_K 20
#define GEN_TOP_P 0.95f

/* log q through the sampling module; the number of tokens kept */
static uint32_t logq_kept(const float *row, uint32_t n, const vkd_sample_params *sp, double *lq) {
    vkd_error err = {0};
    uint32_t kept = 0;
    REQUIRE(!vkd_sample_logq(row, n, sp, lq, &kept, &err), "%s", err.msg);
    return kept;
}

typedef struct rec_log {
    FILE *f;                     /* JSON lines, or NULL */
    uint32_t chain;
    uint32_t moves, steps, accepted;
    double worst_logr;           /* max |log r| */
    uint64_t hash;               /* over every move: determinism */
} rec_log;

static void put_ids(FILE *f, const char *k, const int32_t *v, uint32_t a, uint32_t b) {
    fprintf(f, "\"%s\":[", k);
    for (uint32_t i = a; i < b; i++) fprintf(f, "%s%d", i > a ? "," : "", v[i]);
    fputc(']', f);
}
static void put_dbl(FILE *f, const char *k, const double *v, uint32_t a, uint32_t b) {
    fprintf(f, "\"%s\":[", k);
    for (uint32_t i = a; i < b; i++) fprintf(f, "%s%.17g", i > a ? "," : "", v[i]);
    fputc(']', f);
}

static void on_step(void *user, const vkd_power_step *s) {
    rec_log *L = user;
    L->moves++;
    uint64_t h = L->hash ^ (uint64_t)s->idx * 0x9E3779B97F4A7C15ull ^ s->s;
    for (uint32_t i = s->idx; i < s->s; i++) h = (h ^ (uint32_t)s->prop[i]) * 0x100000001B3ull;
    L->hash = h ^ s->accepted;
    if (s->step >= 0) {
        L->steps++;
        L->accepted += s->accepted;
        if (fabs(s->log_r) > L->worst_logr) L->worst_logr = fabs(s->log_r);
    }
    if (!L->f) return;
    FILE *f = L->f;
    fprintf(f, "{\"chain\":%u,\"block\":%u,\"step\":%d,\"move\":%u,\"c\":%u,\"idx\":%u,\"t\":%u,\"s\":%u,", L->chain,
            s->block, s->step, s->move, s->c, s->idx, s->t, s->s);
    put_ids(f, "prop", s->prop, s->c, s->s);
    fputc(',', f);
    put_ids(f, "cur", s->cur, s->c, s->t);
    fputc(',', f);
    put_dbl(f, "prop_lp", s->prop_lp, s->idx, s->s);
    fputc(',', f);
    put_dbl(f, "prop_lq", s->prop_lq, s->idx, s->s);
    fputc(',', f);
    put_dbl(f, "cur_lp", s->cur_lp, s->idx, s->t);
    fputc(',', f);
    put_dbl(f, "cur_lq", s->cur_lq, s->idx, s->t);
    fprintf(f, ",\"log_r\":%.17g,\"u\":%.17g,\"accepted\":%s}\n", s->log_r, s->u, s->accepted ? "true" : "false");
}

typedef struct env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_dflash *d;
    vkd_draft *g;                /* the draft behind d */
} env;

/* sum of log p (alpha 1) of ids after prompt, by a plain one-token-at-a-time decode */
static double teacher_logp(env *e, const int32_t *prompt, uint32_t n, const int32_t *ids, uint32_t m) {
    vkd_error err = {0};
    vkd_target *t = e->t;
    uint32_t V = t->vocab;
    float *row = malloc(V * 4);
    double *lq = malloc(V * sizeof *lq);
    vkd_sample_params sp1 = {.temperature = 1};
    t->len = 0;
    REQUIRE(!vkd_target_prefill(t, e->rec, prompt, n, row, &err), "%s", err.msg);
    double s = 0;
    for (uint32_t i = 0; i < m; i++) {
        logq_kept(row, V, &sp1, lq);
        s += lq[ids[i]];
        if (i + 1 < m) REQUIRE(!vkd_target_prefill(t, e->rec, &ids[i], 1, row, &err), "%s", err.msg);
    }
    free(row);
    free(lq);
    return s;
}

static void selftest(env *e) {
    static const int32_t prompt[20] = {3, 77, 120, 5, 9, 300, 41, 17, 250, 8, 66, 2, 19, 400, 33, 12, 7, 90, 101, 44};
    uint32_t n = 20;
    int32_t stops[2] = {510, 509};
    vkd_error err = {0};
    vkd_power_result res, res2;

    /* alpha 1, naive, unfiltered: the proposal is the target, log r == 0 */
    rec_log L = {0};
    vkd_power_options o = {.alpha = 1, .max_new_tokens = 24, .block_tokens = 8, .mcmc_steps = 4, .top_k = 0,
                           .top_p = 1, .seed = 11, .stop_ids = stops, .nstop = 2, .on_step = on_step, .user = &L};
    REQUIRE(!vkd_power_sample(e->t, NULL, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
    CHECK(L.steps == res.attempts && res.attempts == res.accepts && res.attempts > 0,
          "alpha 1: %u of %u steps accepted", res.accepts, res.attempts);
    CHECK(L.worst_logr < 1e-12, "alpha 1: |log r| up to %g, expected 0 up to rounding", L.worst_logr);
    fprintf(stderr, "alpha 1 naive: %u/%u accepted, worst |log r| %g, %u tokens\n", res.accepts, res.attempts,
            L.worst_logr, res.n);
    vkd_power_result_free(&res);

    /* bookkeeping of log p vs a teacher-forced decode, and determinism */
    for (int prop = 0; prop < 2; prop++) {
        for (int mh = 0; mh < 2; mh++) {
            rec_log A = {0}, Bl = {0};
            o = (vkd_power_options){.alpha = 4, .max_new_tokens = 30, .block_tokens = 12, .mcmc_steps = 5,
                                    .proposal = prop, .mh = mh, .draft_temp = 1.0f, .seed = 5 + prop,
                                    .top_k = GEN_TOP_K, .top_p = GEN_TOP_P,
                                    .stop_ids = stops, .nstop = 2, .on_step = on_step, .user = &A};
            REQUIRE(!vkd_power_sample(e->t, e->g, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
            o.user = &Bl;
            REQUIRE(!vkd_power_sample(e->t, e->g, e->rec, prompt, n, &o, &res2, &err), "%s", err.msg);
            CHECK(res.n == res2.n && !memcmp(res.ids, res2.ids, res.n * 4) && A.hash == Bl.hash,
                  "proposal %d mh %d: same seed, different runs", prop, mh);
            double want = teacher_logp(e, prompt, n, res.ids, res.n);
            double rel = fabs(res.sum_logp - want) / (1 + fabs(want));
            CHECK(rel < 1e-4, "proposal %d mh %d: chain's sum log p %.6f, teacher-forced %.6f", prop, mh,
                  res.sum_logp, want);
            CHECK(res.blocks == 3 || res.stopped, "proposal %d: %u blocks", prop, res.blocks);
            CHECK(res.n <= 30 && res.n > 0, "proposal %d: %u tokens", prop, res.n);
            CHECK(res.attempts == res.blocks * 5, "proposal %d: %u attempts in %u blocks", prop, res.attempts, res.blocks);
            CHECK(res.tokens_proposed >= res.n, "tokens proposed %llu < %u", (unsigned long long)res.tokens_proposed, res.n);
            uint32_t sa = 0, sb = 0;
            for (uint32_t k = 0; k < 5; k++) sa += res.step_accepts[k];
            for (uint32_t b = 0; b < res.blocks; b++) sb += res.block_accepts[b];
            CHECK(sa == res.accepts && sb == res.accepts, "accept counters %u %u %u", sa, sb, res.accepts);
            if (prop == 1) CHECK(res.draft_calls > 0, "dflash: no draft calls");
            fprintf(stderr, "proposal %s mh %s: %u tokens, %u/%u accepted, %llu target forwards, %llu draft calls, "
                    "sum log p %.5f (teacher-forced %.5f, rel %.2g)\n", prop ? "dflash" : "naive_temp",
                    mh ? "exact" : "reference", res.n, res.accepts, res.attempts,
                    (unsigned long long)res.target_forwards, (unsigned long long)res.draft_calls, res.sum_logp, want, rel);
            vkd_power_result_free(&res);
            vkd_power_result_free(&res2);
        }
    }

    /* last block shorter; no MCMC */
    o = (vkd_power_options){.alpha = 2, .max_new_tokens = 10, .block_tokens = 4, .mcmc_steps = 1, .seed = 3,
                            .top_k = GEN_TOP_K, .top_p = GEN_TOP_P};
    REQUIRE(!vkd_power_sample(e->t, NULL, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
    CHECK(res.n == 10 && res.blocks == 3, "10 tokens in blocks of 4: %u tokens, %u blocks", res.n, res.blocks);
    vkd_power_result_free(&res);
    o.mcmc_steps = VKD_POWER_NO_STEPS;
    REQUIRE(!vkd_power_sample(e->t, NULL, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
    CHECK(res.attempts == 0 && res.n == 10, "no steps: %u attempts", res.attempts);
    vkd_power_result_free(&res);

    /* bad arguments */
    struct { vkd_power_options o; vkd_draft *d; uint32_t n; const char *what; } bad[] = {
        {{.proposal = VKD_POWER_DFLASH, .max_new_tokens = 8, .block_tokens = 4}, NULL, n, "draft"},
        {{.max_new_tokens = 4, .block_tokens = 8}, NULL, n, "block_tokens"},
        {{.max_new_tokens = 200, .block_tokens = 8}, NULL, n, "context"},
        {{.alpha = -1, .max_new_tokens = 8, .block_tokens = 4}, NULL, n, "alpha"},
        {{.max_new_tokens = 8, .block_tokens = 4}, NULL, 0, "empty"},
        {{.mh = 7, .max_new_tokens = 8, .block_tokens = 4}, NULL, n, "MH"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (vkd_error){0};
        vkd_result r = vkd_power_sample(e->t, bad[i].d, e->rec, prompt, bad[i].n, &bad[i].o, &res, &err);
        CHECK(r != VKD_OK && strstr(err.msg, bad[i].what), "bad case %zu: result %d, message '%s' (want '%s')", i, r,
              err.msg, bad[i].what);
        CHECK(res.ids == NULL, "bad case %zu left a result", i);
    }
    /* still works after errors */
    o = (vkd_power_options){.alpha = 2, .max_new_tokens = 6, .block_tokens = 3, .mcmc_steps = 2, .seed = 3,
                            .top_k = GEN_TOP_K, .top_p = GEN_TOP_P};
    REQUIRE(!vkd_power_sample(e->t, NULL, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
    CHECK(res.n == 6, "after errors: %u tokens", res.n);
    vkd_power_result_free(&res);

    /* logq: top-k keeps ties, top-p keeps at least one */
    float row[6] = {1, 3, 3, 0, 2, -1};
    double lq[6];
    vkd_sample_params sp = {.temperature = 1, .top_k = 2};
    CHECK(logq_kept(row, 6, &sp, lq) == 2 && isinf(lq[4]), "top-k 2");
    sp = (vkd_sample_params){.temperature = 0.5f, .top_k = 3};
    CHECK(logq_kept(row, 6, &sp, lq) == 3 && lq[4] > -INFINITY && isinf(lq[0]), "top-k 3");
    sp = (vkd_sample_params){.temperature = 0.1f, .top_p = 0.1f};
    CHECK(logq_kept(row, 6, &sp, lq) == 1 && lq[1] == 0 && isinf(lq[2]), "top-p: lower index of a tie first");
    sp = (vkd_sample_params){.temperature = 1};
    double z = 0;
    CHECK(logq_kept(row, 6, &sp, lq) == 6, "unfiltered");
    for (int i = 0; i < 6; i++) z += exp(lq[i]);
    CHECK(fabs(z - 1) < 1e-12, "normalised: %g", z);
}

/* ---- runner ----------------------------------------------------------------------------- */

static const char *arg(int argc, char **argv, const char *k, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], k)) return argv[i + 1];
    return def;
}

static int runner(env *e, int argc, char **argv) {
    vkd_error err = {0};
    int32_t prompt[256];
    uint32_t n = 0;
    for (char *s = (char *)arg(argc, argv, "--prompt", "0"); *s && n < 256;) {
        prompt[n++] = (int32_t)strtol(s, &s, 10);
        if (*s == ',') s++;
    }
    int32_t stops[16];
    uint32_t ns = 0;
    for (int i = 0; i < e->t->gen.n_eos && ns < 16; i++) stops[ns++] = (int32_t)e->t->gen.eos_token_ids[i];
    const char *pr = arg(argc, argv, "--proposal", "naive");
    vkd_power_options o = {
        .alpha = (float)atof(arg(argc, argv, "--alpha", "4")),
        .max_new_tokens = (uint32_t)atoi(arg(argc, argv, "--max-new", "4")),
        .block_tokens = (uint32_t)atoi(arg(argc, argv, "--block", "2")),
        .mcmc_steps = (uint32_t)atoi(arg(argc, argv, "--steps", "10")),
        .proposal = !strcmp(pr, "dflash") ? VKD_POWER_DFLASH : VKD_POWER_NAIVE_TEMP,
        .mh = !strcmp(arg(argc, argv, "--mh", "reference"), "exact") ? VKD_POWER_MH_EXACT : VKD_POWER_MH_REFERENCE,
        .draft_temp = (float)atof(arg(argc, argv, "--draft-temp", "0")),
        .top_k = (uint32_t)atoi(arg(argc, argv, "--top-k", "0")),
        .top_p = (float)atof(arg(argc, argv, "--top-p", "1")),
        .stop_ids = stops, .nstop = ns,
    };
    if (!strcmp(arg(argc, argv, "--steps", "10"), "0")) o.mcmc_steps = VKD_POWER_NO_STEPS;
    uint32_t K = (uint32_t)atoi(arg(argc, argv, "--chains", "1"));
    uint64_t seed0 = strtoull(arg(argc, argv, "--seed0", "1"), NULL, 10);
    const char *logp = arg(argc, argv, "--log", NULL), *finp = arg(argc, argv, "--finals", NULL);
    FILE *lf = logp ? fopen(logp, "w") : NULL, *ff = finp ? fopen(finp, "w") : NULL;
    REQUIRE(!logp || lf, "cannot write %s", logp);
    REQUIRE(!finp || ff, "cannot write %s", finp);
    uint64_t fw = 0, steps = 0, acc = 0;
    for (uint32_t k = 0; k < K; k++) {
        rec_log L = {.f = lf, .chain = k};
        o.seed = seed0 + k;
        o.on_step = on_step;
        o.user = &L;
        vkd_power_result res;
        REQUIRE(!vkd_power_sample(e->t, e->g, e->rec, prompt, n, &o, &res, &err), "%s", err.msg);
        if (ff) {
            fprintf(ff, "{\"chain\":%u,\"seed\":%llu,", k, (unsigned long long)o.seed);
            put_ids(ff, "ids", res.ids, 0, res.n);
            fprintf(ff, ",\"stopped\":%s,\"attempts\":%u,\"accepts\":%u,\"target_forwards\":%llu,\"sum_logp\":%.17g,"
                    "\"changes\":%u,\"tokens_changed\":%llu,\"distinct_proposals\":%u}\n",
                    res.stopped ? "true" : "false", res.attempts, res.accepts,
                    (unsigned long long)res.target_forwards, res.sum_logp, res.changes,
                    (unsigned long long)res.tokens_changed, res.distinct_proposals);
        }
        fw += res.target_forwards;
        steps += res.attempts;
        acc += res.accepts;
        vkd_power_result_free(&res);
    }
    if (lf) fclose(lf);
    if (ff) fclose(ff);
    fprintf(stderr, "%u chains: %llu/%llu steps accepted, %llu target forwards\n", K, (unsigned long long)acc,
            (unsigned long long)steps, (unsigned long long)fw);
    return 0;
}

int main(int argc, char **argv) {
    vkd_error err = {0};
    env e = {0};
    bool run = argc > 1 && !strcmp(argv[1], "--run");
    char dir[4200];
    REQUIRE(!vkd_ctx_create(NULL, &e.ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(e.ctx, &e.rec, &err), "%s", err.msg);
    vkd_target_options to = {.ctx_len = 128, .max_rows = (uint32_t)atoi(run ? arg(argc, argv, "--max-rows", "8") : "8")};
    if (run) {
        REQUIRE(!vkd_target_load(e.ctx, arg(argc, argv, "--target", "."), &to, &e.t, &err), "%s", err.msg);
        const char *dd = arg(argc, argv, "--draft", NULL);
        vkd_dflash_options dop = {.block_size = (uint32_t)atoi(arg(argc, argv, "--draft-block", "0"))};
        if (dd) REQUIRE(!vkd_dflash_load(e.ctx, e.t, dd, &dop, &e.d, &err), "%s", err.msg);
        if (dd) REQUIRE(!vkd_draft_dflash(e.d, &e.g, &err), "%s", err.msg);
        runner(&e, argc, argv);
    } else {
        const char *root = getenv("VKDRAFT_SOURCE_ROOT");
        REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
        snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/target/model", root);
        REQUIRE(!vkd_target_load(e.ctx, dir, &to, &e.t, &err), "%s", err.msg);
        snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/draft-b4/model", root);
        vkd_dflash_options dop = {0};
        REQUIRE(!vkd_dflash_load(e.ctx, e.t, dir, &dop, &e.d, &err), "%s", err.msg);
        REQUIRE(!vkd_draft_dflash(e.d, &e.g, &err), "%s", err.msg);
        selftest(&e);
    }
    CHECK(vkd_ctx_validation_count(e.ctx) == 0, "validation: %s", vkd_ctx_validation_first(e.ctx));
    vkd_draft_free(e.g);
    if (e.d) vkd_dflash_free(e.d);
    vkd_target_free(e.t);
    vkd_rec_destroy(e.rec);
    vkd_ctx_destroy(e.ctx);
    return vkd_test_result("test_power");
}
