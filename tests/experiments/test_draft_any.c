/* test_draft_any: every experiment takes any vkd_draft. The autoregressive draft is here the
 * target model itself (a second instance with its own KV cache), so whatever an experiment
 * measures between target and draft has a known answer: they agree, up to f32 rounding of
 * the same model run with other row batches (a GEMV for one row, a GEMM for several).
 *   - guide at alpha 1 (guided = the draft's row): greedy output == vkd_generate's, KL tiny;
 *   - diagnose (gold, mask, random): p_draft == p_target and rank_draft == rank_target;
 *   - probe at alpha 1, draft temperature 1: KL and TVD ~ 0, the baseline TVD ~ 0;
 *   - power with the draft proposal at alpha 1, no top-k/top-p (q = p): |log r| ~ 0, every
 *     MCMC step accepted, and the chain's sum log p == a teacher-forced decode's;
 *   - the same with the DFlash draft where the answer is not known: runs, counters agree.
 * Target: the DFlash fixture's target with max_rows 8 (prompts in several chunks). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../models/fixture_util.h"
#include "safetensors.h"
#include "vkd_diagnose.h"
#include "vkd_guide.h"
#include "vkd_power.h"
#include "vkd_probe.h"
#include "vkd_test.h"

static void check_guide(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *prompt, uint32_t n) {
    vkd_error err = {0};
    vkd_generate_options go = {.max_new_tokens = 20};
    vkd_generate_result gr;
    REQUIRE(!vkd_generate(t, rec, prompt, n, &go, &gr, &err), "%s", err.msg);
    vkd_guide_options o = {.gen = go, .alpha = 1};
    vkd_guide_result r;
    REQUIRE(!vkd_guide_generate(t, g, rec, prompt, n, &o, &r, &err), "%s", err.msg);
    CHECK(r.n == gr.n && !memcmp(r.ids, gr.ids, r.n * 4), "guide, self-draft at alpha 1: output differs from greedy");
    double worst = 0;
    for (uint32_t i = 0; i < r.n; i++) worst = fmax(worst, r.kl[i]);
    CHECK(worst < 1e-4 && r.changed_frac == 0, "guide, self-draft: KL up to %.3g, %.3f argmax changed", worst,
          r.changed_frac);
    fprintf(stderr, "  guide (autoregressive self-draft, alpha 1): %u tokens == greedy, worst KL %.2g\n", r.n, worst);
    vkd_guide_result_free(&r);
    free(gr.ids);
}

static void check_diagnose(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P) {
    vkd_error err = {0};
    vkd_diagnose *dg;
    REQUIRE(!vkd_diagnose_create(t, g, &dg, &err), "%s", err.msg);
    bool modes[3] = {true, true, true};
    vkd_diagnose_token *tk;
    uint32_t nt;
    vkd_diagnose_times tm = {0};
    REQUIRE(!vkd_diagnose_run(dg, rec, seq, n, P, modes, 3, 0, &tk, &nt, &tm, &err), "%s", err.msg);
    double worst = 0;
    uint32_t rank_diff = 0;
    for (uint32_t i = 0; i < nt; i++)
        for (int md = 0; md < 3; md++) {
            worst = fmax(worst, fabs(tk[i].p_d[md] - tk[i].p_t));
            rank_diff += tk[i].rank_d[md] != tk[i].rank_t;
        }
    CHECK(nt == n - P - (n - P + g->block - 1) / g->block, "diagnose: %u compared tokens", nt);
    CHECK(worst < 1e-4 && rank_diff == 0, "diagnose, self-draft: |p_d - p_t| up to %.3g, %u ranks differ", worst,
          rank_diff);
    fprintf(stderr, "  diagnose (self-draft, 3 modes): %u tokens, worst |p_d - p_t| %.2g, ranks equal\n", nt, worst);
    free(tk);
    vkd_diagnose_free(dg);
}

static void check_probe(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P) {
    vkd_error err = {0};
    double temps[1] = {1.0};
    vkd_probe_options po = {.alpha = 1, .temps = temps, .ntemps = 1, .samples = 8, .seed = 5};
    vkd_probe *pr;
    REQUIRE(!vkd_probe_create(t, g, &po, &pr, &err), "%s", err.msg);
    vkd_probe_pos *ps;
    vkd_probe_block *bs;
    uint32_t np, nb;
    vkd_probe_times tm;
    REQUIRE(!vkd_probe_run(pr, rec, seq, n, P, 1, NULL, NULL, &ps, &np, &bs, &nb, &tm, &err), "%s", err.msg);
    double worst = 0;
    for (uint32_t i = 0; i < np; i++) worst = fmax(worst, fmax(ps[i].kl[0], fmax(ps[i].tvd[0], ps[i].base_tvd)));
    CHECK(np > 0 && worst < 1e-4, "probe, self-draft: %u positions, KL/TVD up to %.3g", np, worst);
    fprintf(stderr, "  probe (self-draft, alpha 1, T 1): %u positions, worst KL/TVD %.2g\n", np, worst);
    free(ps);
    free(bs);
    vkd_probe_free(pr);
}

typedef struct steps {
    uint32_t n, accepted;
    double worst;
} steps;

static void on_step(void *user, const vkd_power_step *s) {
    steps *st = user;
    if (s->step < 0) return;
    st->n++;
    st->accepted += s->accepted;
    st->worst = fmax(st->worst, fabs(s->log_r));
}

/* sum of log p (alpha 1) of ids after prompt by plain one-token steps */
static double teacher_logp(vkd_target *t, vkd_rec *rec, const int32_t *prompt, uint32_t n, const int32_t *ids,
                           uint32_t m) {
    vkd_error err = {0};
    uint32_t V = t->vocab;
    float *row = malloc(V * 4);
    double *lq = malloc(V * sizeof *lq), s = 0;
    vkd_sample_params sp1 = {.temperature = 1};
    t->len = 0;
    REQUIRE(!vkd_target_prefill(t, rec, prompt, n, row, &err), "%s", err.msg);
    for (uint32_t i = 0; i < m; i++) {
        REQUIRE(!vkd_sample_logq(row, V, &sp1, lq, NULL, &err), "%s", err.msg);
        s += lq[ids[i]];
        if (i + 1 < m) REQUIRE(!vkd_target_prefill(t, rec, &ids[i], 1, row, &err), "%s", err.msg);
    }
    free(row);
    free(lq);
    return s;
}

static void check_power(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *prompt, uint32_t n, bool self) {
    vkd_error err = {0};
    steps st = {0};
    vkd_power_options o = {.alpha = self ? 1 : 3, .max_new_tokens = 18, .block_tokens = 6, .mcmc_steps = 4,
                           .proposal = VKD_POWER_DFLASH, .mh = VKD_POWER_MH_EXACT, .draft_temp = 1, .seed = 9,
                           .on_step = on_step, .user = &st};
    vkd_power_result r;
    REQUIRE(!vkd_power_sample(t, g, rec, prompt, n, &o, &r, &err), "%s", err.msg);
    double want = teacher_logp(t, rec, prompt, n, r.ids, r.n);
    double rel = fabs(r.sum_logp - want) / (1 + fabs(want));
    CHECK(rel < 1e-4, "power (%s): chain's sum log p %.6f, teacher-forced %.6f", g->name, r.sum_logp, want);
    CHECK(r.attempts == st.n && r.attempts == r.blocks * 4 && r.draft_calls > 0 && r.tokens_proposed >= r.n,
          "power (%s): %u attempts, %u steps seen, %llu draft calls", g->name, r.attempts, st.n,
          (unsigned long long)r.draft_calls);
    if (self)
        CHECK(st.worst < 1e-3 && st.accepted == st.n, "power, self-draft at alpha 1: |log r| up to %.3g, %u/%u accepted",
              st.worst, st.accepted, st.n);
    fprintf(stderr, "  power (%s): %u tokens, %u/%u accepted, worst |log r| %.2g, sum log p rel err %.2g\n", g->name,
            r.n, r.accepts, r.attempts, st.worst, rel);
    vkd_power_result_free(&r);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    char fx[4096], dir[4300];
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures/dflash", root);
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t, *self;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/target/model", fx);
    vkd_target_options to = {.ctx_len = 128, .max_rows = 8};
    REQUIRE(!vkd_target_load(ctx, dir, &to, &t, &err), "%s", err.msg);
    REQUIRE(!vkd_target_load(ctx, dir, &to, &self, &err), "%s", err.msg);
    vkd_draft *ar;
    REQUIRE(!vkd_draft_ar(self, 3, &ar, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/draft-b4/expected.safetensors", fx);
    vkd_st_file *sf;
    REQUIRE(!vkd_st_open(dir, &sf, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(sf, "input_ids");
    uint32_t P = (uint32_t)ids->numel;
    /* a known sequence: the prompt and 23 greedy tokens */
    vkd_generate_options go = {.max_new_tokens = 23};
    vkd_generate_result gr;
    REQUIRE(!vkd_generate(t, rec, ids->data, P, &go, &gr, &err), "%s", err.msg);
    uint32_t n = P + gr.n;
    int32_t *seq = malloc(n * sizeof *seq);
    memcpy(seq, ids->data, P * 4);
    memcpy(seq + P, gr.ids, gr.n * 4);
    free(gr.ids);

    check_guide(t, ar, rec, ids->data, P);
    check_diagnose(t, ar, rec, seq, n, P);
    check_probe(t, ar, rec, seq, n, P);
    check_power(t, ar, rec, ids->data, P, true);

    vkd_dflash *d;
    vkd_draft *df;
    snprintf(dir, sizeof dir, "%s/draft-b4/model", fx);
    REQUIRE(!vkd_dflash_load(ctx, t, dir, &(vkd_dflash_options){0}, &d, &err), "%s", err.msg);
    REQUIRE(!vkd_draft_dflash(d, &df, &err), "%s", err.msg);
    check_power(t, df, rec, ids->data, P, false);

    /* bad input: a draft of another vocabulary or target is refused by name */
    vkd_target *other;
    snprintf(dir, sizeof dir, "%s/../qwen3-tied-f32/model", fx);
    REQUIRE(!vkd_target_load(ctx, dir, &(vkd_target_options){.ctx_len = 32}, &other, &err), "%s", err.msg);
    vkd_draft *og;
    REQUIRE(!vkd_draft_ar(other, 2, &og, &err), "%s", err.msg);
    vkd_guide_options bo = {.gen = {.max_new_tokens = 2}};
    vkd_guide_result br;
    if (other->vocab != t->vocab)
        CHECK(vkd_guide_generate(t, og, rec, ids->data, P, &bo, &br, &err) == VKD_ERR_INVALID &&
                  strstr(err.msg, "vocabulary"), "guide with another vocabulary: %s", err.msg);
    vkd_probe *pb;
    CHECK(vkd_probe_create(other, df, &(vkd_probe_options){0}, &pb, &err) != VKD_OK, "probe: a DFlash draft of another target accepted");
    fprintf(stderr, "  refused: %s\n", err.msg);
    vkd_draft_free(og);
    vkd_target_free(other);

    vkd_draft_free(df);
    vkd_dflash_free(d);
    vkd_draft_free(ar);
    free(seq);
    vkd_st_close(sf);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_target_free(self);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_draft_any");
}
