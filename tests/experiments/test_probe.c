/* test_probe: methods/probe.c (vkd_probe.h) on the committed DFlash fixture pair.
 *   - the host MH routine: hand-computed chains, and q == p^alpha (draft logits == target
 *     logits, T = 1/alpha) gives acceptance exactly 1;
 *   - the Monte Carlo sampler against a plain double computation (inverse CDF, log w);
 *   - the teacher-forced mask-mode draft logits of the walk equal the DFlash proposer's
 *     logits inside vkd_spec_generate for the same committed prefix (every spec step, with
 *     walks whose block grid is shifted so that some block starts at each step's position);
 *   - bad input: prompt of 0 tokens, a sequence longer than the context.
 * With `--dump FILE` it also writes the walk's metrics, samples and uniforms as JSON for
 * tests/experiments/test_probe_ref.py (independent float64 PyTorch reference). */
#include <stdlib.h>
#include <string.h>

#include "../models/fixture_util.h"
#include "vkd_generate.h"
#include "vkd_probe.h"
#include "vkd_sample.h"
#include "vkd_spec.h"
#include "vkd_test.h"

static char fx[4096];

/* ---- host routines ---- */

static void check_mh(void) {
    /* two samples: move iff u_1 < w_1 / w_0 = 0.3 */
    double lw2[2] = {0, log(0.3)}, ua[2] = {0, 0.2}, ub[2] = {0, 0.5};
    CHECK(vkd_probe_mh(lw2, ua, 2) == 1, "2 samples, u 0.2 < 0.3: accepted");
    CHECK(vkd_probe_mh(lw2, ub, 2) == 0, "2 samples, u 0.5 > 0.3: rejected");
    /* w = 1, 2, 0.5, 4, 0.1 with u = -, 0.9, 0.3, 0.99, 0.02:
     * j=1: 2/1 >= 1 accept (state 1); j=2: 0.5/2 = 0.25 < 0.3 reject; j=3: 4/2 >= 1 accept
     * (state 3); j=4: 0.1/4 = 0.025 > 0.02 accept: 3 of 4 */
    double w5[5] = {log(1), log(2), log(0.5), log(4), log(0.1)}, u5[5] = {0, 0.9, 0.3, 0.99, 0.02};
    CHECK(vkd_probe_mh(w5, u5, 5) == 3, "hand chain: %u accepts, expected 3", vkd_probe_mh(w5, u5, 5));
    /* the same chain with tokens (2 rows): samples 0 and 1 equal, 3 and 4 equal, 2 apart.
     * Accepted moves 0->1 (no change), 1->3 (change), 3->4 (no change): 1 change; 3 distinct.
     * Windows of S = 1 (2 windows): {0 -> 1} accepted, {2 -> 3}: 4/0.5 accepted, a change.
     * S = 2 (1 window): 0 -> 1 accepted, 1 -> 2 rejected: 1 move, no change.
     * S = 4 (1 window): the whole chain, 3 moves. */
    {
        int32_t tk[10] = {1, 2, 1, 2, 3, 3, 5, 6, 5, 6};
        vkd_probe_key keys[5];
        vkd_probe_chain ch;
        struct { uint32_t S, windows, moved1, moved3, changed1; } want[3] = {{1, 2, 2, 0, 1}, {2, 1, 1, 0, 0},
                                                                            {4, 1, 1, 1, 1}};
        for (int q = 0; q < 3; q++) {
            vkd_probe_chain_stats(w5, u5, tk, 2, 5, want[q].S, keys, &ch);
            CHECK(ch.accepts == 3 && ch.changes == 1 && ch.distinct == 3, "hand chain S=%u: accepts %u changes %u "
                  "distinct %u, expected 3 1 3", want[q].S, ch.accepts, ch.changes, ch.distinct);
            CHECK(ch.windows == want[q].windows && ch.moved1 == want[q].moved1 && ch.moved3 == want[q].moved3 &&
                  ch.changed1 == want[q].changed1, "hand chain S=%u: windows %u moved>=1 %u moved>=3 %u changed>=1 %u",
                  want[q].S, ch.windows, ch.moved1, ch.moved3, ch.changed1);
        }
        /* a one-hot proposal: every sample the same tokens, every move accepted, nothing changes */
        int32_t one[10] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
        double flat[5] = {0, 0, 0, 0, 0};
        vkd_probe_chain_stats(flat, u5, one, 2, 5, 2, keys, &ch);
        CHECK(ch.accepts == 4 && ch.changes == 0 && ch.distinct == 1 && ch.changed1 == 0 && ch.moved1 == 1,
              "one-hot chain: accepts %u changes %u distinct %u", ch.accepts, ch.changes, ch.distinct);
        /* equal FNV hashes with different rows would still count apart: all rows distinct */
        int32_t dist[10] = {0, 1, 1, 0, 2, 0, 0, 2, 3, 3};
        vkd_probe_chain_stats(flat, u5, dist, 2, 5, 2, keys, &ch);
        CHECK(ch.distinct == 5 && ch.changes == 4, "all-distinct chain: distinct %u changes %u", ch.distinct, ch.changes);
    }

    /* q == p^alpha: equal weights, every move accepted */
    unsigned long long rs = 7;
    uint32_t rows = 5, V = 300, K = 64;
    float *l = malloc((size_t)rows * V * sizeof *l);
    for (size_t i = 0; i < (size_t)rows * V; i++) l[i] = (float)(3 * vkd_test_rand_normal(&rs));
    double *scratch = malloc(V * sizeof *scratch), *logw = malloc(K * sizeof *logw);
    double cases[2][2] = {{4, 0.25}, {1, 1}};
    for (int c = 0; c < 2; c++) {
        uint32_t acc = vkd_probe_block_mc(l, l, rows, V, cases[c][0], cases[c][1], K, 11, 3, 0, scratch, logw,
                                          NULL, NULL, NULL);
        CHECK(acc == K - 1, "q == p^alpha (alpha %g, T %g): %u of %u accepted", cases[c][0], cases[c][1], acc, K - 1);
        double spread = 0;
        for (uint32_t j = 1; j < K; j++) spread = fmax(spread, fabs(logw[j] - logw[0]));
        CHECK(spread == 0, "q == p^alpha: log w spread %g", spread);
    }

    /* sampler and log w against a direct double computation on other logits */
    float *ld = malloc((size_t)rows * V * sizeof *ld);
    for (size_t i = 0; i < (size_t)rows * V; i++) ld[i] = l[i] + (float)vkd_test_rand_normal(&rs);
    int32_t *tok = malloc((size_t)K * rows * sizeof *tok);
    double *us = malloc((size_t)K * rows * sizeof *us), *um = malloc(K * sizeof *um);
    double alpha = 4, T = 0.5;
    uint32_t acc = vkd_probe_block_mc(l, ld, rows, V, alpha, T, K, 5, 9, 1234, scratch, logw, tok, us, um);
    double worst = 0;
    int bad_draw = 0;
    for (uint32_t j = 0; j < K; j++) {
        double lw = 0;
        for (uint32_t i = 0; i < rows; i++) {
            const float *a = l + (size_t)i * V, *b = ld + (size_t)i * V;
            double u = vkd_uniform(5, 18, (1234 + j) * VKD_PROBE_MAX_BLOCK + i);
            if (u != us[(size_t)j * rows + i]) bad_draw++;
            double zt = 0, zq = 0;
            for (uint32_t x = 0; x < V; x++) { zt += exp(a[x]); zq += exp(b[x] / T); }
            double cum = 0;
            int32_t want = -1;
            for (uint32_t x = 0; x < V && want < 0; x++) {
                cum += exp(b[x] / T) / zq;
                if (u < cum) want = (int32_t)x;
            }
            int32_t x = tok[(size_t)j * rows + i];
            if (x != want && !(want < 0 && x == (int32_t)V - 1)) bad_draw++;
            lw += alpha * log(exp(a[x]) / zt) - log(exp(b[x] / T) / zq);
        }
        worst = fmax(worst, fabs(lw - logw[j]) / (1 + fabs(lw)));
    }
    for (uint32_t j = 1; j < K; j++) CHECK(um[j] == vkd_uniform(5, 19, 1234 + j), "MH uniform %u", j);
    CHECK(acc == vkd_probe_mh(logw, um, K), "accepts = the MH routine over the same weights");
    CHECK(bad_draw == 0, "%d draws differ from a direct inverse CDF", bad_draw);
    CHECK(worst < 1e-12, "log w relative error %.3g", worst);
    fprintf(stderr, "  host Monte Carlo: log w worst relative error %.2g, %u/%u MH moves accepted\n", worst, acc, K - 1);
    free(l);
    free(ld);
    free(tok);
    free(us);
    free(um);
    free(scratch);
    free(logw);
}

/* ---- walk + dump + spec equality ---- */

typedef struct dump_ctx {
    FILE *f;
    bool first;
    /* mask-mode draft logits per block start (for the spec comparison) */
    uint32_t *starts, n, cap, rows_per;
    float *logits;
    uint32_t V;
} dump_ctx;

static void hook(void *user, const vkd_probe_trace *tr) {
    dump_ctx *dc = user;
    if (tr->temp_index == 0 && dc->logits) { /* keep the draft logits once per block */
        if (dc->n == dc->cap) {
            dc->cap = dc->cap ? 2 * dc->cap : 64;
            dc->starts = realloc(dc->starts, dc->cap * sizeof *dc->starts);
            dc->logits = realloc(dc->logits, (size_t)dc->cap * dc->rows_per * dc->V * sizeof *dc->logits);
        }
        dc->starts[dc->n] = tr->start;
        memset(dc->logits + (size_t)dc->n * dc->rows_per * dc->V, 0, (size_t)dc->rows_per * dc->V * 4);
        memcpy(dc->logits + (size_t)dc->n * dc->rows_per * dc->V, tr->draft_logits, (size_t)tr->rows * tr->vocab * 4);
        dc->n++;
    }
    if (!dc->f) return;
    FILE *f = dc->f;
    fprintf(f, "%s\n{\"block\": %u, \"start\": %u, \"rows\": %u, \"ti\": %u, \"T\": %.17g, \"accepts\": %u,",
            dc->first ? "" : ",", tr->block, tr->start, tr->rows, tr->temp_index, tr->temperature, tr->accepts);
    dc->first = false;
    fprintf(f, " \"tokens\": [");
    for (uint32_t q = 0; q < tr->samples * tr->rows; q++) fprintf(f, "%s%d", q ? "," : "", tr->tokens[q]);
    fprintf(f, "], \"u_sample\": [");
    for (uint32_t q = 0; q < tr->samples * tr->rows; q++) fprintf(f, "%s%.17g", q ? "," : "", tr->u_sample[q]);
    fprintf(f, "], \"logw\": [");
    for (uint32_t q = 0; q < tr->samples; q++) fprintf(f, "%s%.17g", q ? "," : "", tr->logw[q]);
    fprintf(f, "], \"u_mh\": [");
    for (uint32_t q = 0; q < tr->samples; q++) fprintf(f, "%s%.17g", q ? "," : "", tr->u_mh[q]);
    const vkd_probe_chain *ch = &tr->chain;
    fprintf(f, "], \"steps\": %u, \"chain\": [%u, %u, %u, %u, %u, %u, %u]}", tr->mcmc_steps, ch->accepts, ch->changes,
            ch->distinct, ch->windows, ch->moved1, ch->moved3, ch->changed1);
}

/* The DFlash draft wrapped to keep each proposal's draft logits (spec greedy otherwise unchanged) */
typedef struct spy {
    vkd_draft base, *inner;
    uint32_t *pos, n, cap, V, rows;
    float *logits;
} spy;

static vkd_draft *inner_of(const vkd_draft *g) { return ((const spy *)g->self)->inner; }
static vkd_result spy_reset(vkd_draft *g, vkd_error *err) { return vkd_draft_reset(inner_of(g), err); }
static vkd_result spy_crop(vkd_draft *g, uint32_t len, vkd_error *err) { return vkd_draft_crop(inner_of(g), len, err); }
static uint32_t spy_len(const vkd_draft *g) { return vkd_draft_len(inner_of(g)); }
static vkd_result spy_context(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, uint32_t n,
                              const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    return vkd_draft_context(inner_of(g), rec, ids, pos, n, features, row0, err);
}
static vkd_result spy_block(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, vkd_error *err) {
    return vkd_draft_block(inner_of(g), rec, ids, pos, err);
}

static vkd_result spy_propose(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos, uint32_t n,
                              vkd_draft_draw_fn draw, void *user, int32_t *tokens, uint32_t *count, vkd_error *err) {
    spy *s = g->self;
    vkd_result r = vkd_draft_propose(s->inner, rec, last, pos, n, draw, user, tokens, count, err);
    if (r) return r;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->pos = realloc(s->pos, s->cap * sizeof *s->pos);
        s->logits = realloc(s->logits, (size_t)s->cap * s->rows * s->V * sizeof *s->logits);
    }
    s->pos[s->n] = pos;
    /* a greedy proposal need not write the logits (the DFlash draft's fused head + argmax):
     * block() over the proposal's ids gives the logits it was drawn from, whose argmax must
     * be the proposed tokens */
    int32_t ids[64];
    REQUIRE(s->rows + 1 <= 64, "block of %u", s->rows + 1);
    vkd_draft_proposal_ids(s->inner, last, tokens, *count, ids);
    vkd_rec_begin(rec);
    r = vkd_draft_submit(rec, vkd_draft_block(s->inner, rec, ids, pos, err), err);
    float *l = s->logits + (size_t)s->n * s->rows * s->V;
    if (!r) r = vkd_tensor_download(s->inner->logits, 0, l, (uint64_t)s->rows * s->V * 4, err);
    for (uint32_t i = 0; !r && i < *count; i++) {
        uint32_t best = 0;
        for (uint32_t v = 1; v < s->V; v++)
            if (l[(size_t)i * s->V + v] > l[(size_t)i * s->V + best]) best = v;
        CHECK(tokens[i] == (int32_t)best, "spec step at %u: proposal %u is %d, the argmax of its logits %u", pos, i,
              tokens[i], best);
    }
    s->n++;
    return r;
}

static const vkd_draft_ops spy_ops = {.reset = spy_reset, .crop = spy_crop, .len = spy_len, .context = spy_context,
                                      .block = spy_block, .propose = spy_propose};

int main(int argc, char **argv) {
    const char *dump = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump = argv[++i];
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures/dflash", root);

    if (!dump) check_mh();

    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_dflash *d;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/target/model", fx);
    vkd_target_options to = {.ctx_len = 128};
    REQUIRE(!vkd_target_load(ctx, dir, &to, &t, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/draft-b4/model", fx);
    REQUIRE(!vkd_dflash_load(ctx, t, dir, &(vkd_dflash_options){0}, &d, &err), "%s", err.msg);
    uint32_t B = d->block, V = d->vocab;

    /* the sequence: the fixture's prompt + the target's greedy continuation */
    snprintf(dir, sizeof dir, "%s/draft-b4/expected.safetensors", fx);
    vkd_st_file *sf;
    REQUIRE(!vkd_st_open(dir, &sf, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(sf, "input_ids");
    uint32_t P = (uint32_t)ids->numel, G = 37;
    vkd_generate_options go = {.max_new_tokens = G + B};
    vkd_generate_result gr;
    REQUIRE(!vkd_generate(t, rec, ids->data, P, &go, &gr, &err), "%s", err.msg);
    uint32_t n = P + gr.n;
    int32_t *seq = malloc((size_t)n * sizeof *seq);
    memcpy(seq, ids->data, P * 4);
    memcpy(seq + P, gr.ids, gr.n * 4);
    free(gr.ids);

    double temps[3] = {1.0, 0.5, 0.25};
    vkd_probe_options po = {.alpha = 4, .temps = temps, .ntemps = 3, .samples = 40, .mcmc_steps = 4, .seed = 17};
    vkd_probe *pr;
    vkd_draft *draft;
    REQUIRE(!vkd_draft_dflash(d, &draft, &err), "%s", err.msg);
    REQUIRE(!vkd_probe_create(t, draft, &po, &pr, &err), "%s", err.msg);
    vkd_probe_pos *ps;
    vkd_probe_block *bs;
    uint32_t np, nb;
    vkd_probe_times tm;
    const uint32_t key = 2;

    if (dump) {
        FILE *f = fopen(dump, "w");
        REQUIRE(f, "cannot write %s", dump);
        dump_ctx dc = {.f = f, .first = true};
        fprintf(f, "{\"alpha\": 4, \"seed\": 17, \"key\": %u, \"samples\": 40, \"temps\": [1.0, 0.5, 0.25], "
                   "\"block\": %u, \"P\": %u, \"seq\": [", key, B, P);
        for (uint32_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", seq[i]);
        fprintf(f, "],\n\"traces\": [");
        REQUIRE(!vkd_probe_run(pr, rec, seq, n, P, key, hook, &dc, &ps, &np, &bs, &nb, &tm, &err), "%s", err.msg);
        fprintf(f, "],\n\"positions\": [");
        for (uint32_t i = 0; i < np; i++)
            fprintf(f, "%s\n[%u, %u, %u, %d, %.9g, %.9g, %.9g, %.9g, %.9g, %.9g, %.9g]", i ? "," : "", ps[i].block,
                    ps[i].block_pos, ps[i].pos, ps[i].token, ps[i].kl[0], ps[i].kl[1], ps[i].kl[2], ps[i].tvd[0],
                    ps[i].tvd[1], ps[i].tvd[2], ps[i].base_tvd);
        fprintf(f, "],\n\"blocks\": [");
        for (uint32_t i = 0; i < nb; i++) {
            const vkd_probe_block *b = &bs[i];
            fprintf(f, "%s\n{\"block\": %u, \"start\": %u, \"npos\": %u", i ? "," : "", b->block, b->start, b->npos);
            const char *nm[4] = {"product", "sim_accept", "logw_mean", "logw_std"};
            const double *v[4] = {b->product, b->sim_accept, b->logw_mean, b->logw_std};
            for (int q = 0; q < 4; q++) fprintf(f, ", \"%s\": [%.17g, %.17g, %.17g]", nm[q], v[q][0], v[q][1], v[q][2]);
            fprintf(f, "}");
        }
        fprintf(f, "]}\n");
        fclose(f);
        free(ps);
        free(bs);
    } else {
        /* walks with the block grid shifted by m = 0..B-1 (prompt P + m) record every block's
         * mask-mode draft logits by start position */
        dump_ctx dc = {.rows_per = B - 1, .V = V, .logits = malloc(4)};
        for (uint32_t m = 0; m < B; m++) {
            REQUIRE(!vkd_probe_run(pr, rec, seq, n, P + m, key, hook, &dc, &ps, &np, &bs, &nb, &tm, &err), "%s", err.msg);
            CHECK(nb == (n - P - m - 2) / B + 1, "walk at P+%u: %u blocks", m, nb);
            for (uint32_t i = 0; i < np; i++)
                for (int ti = 0; ti < 3; ti++)
                    CHECK(isfinite(ps[i].kl[ti]) && ps[i].kl[ti] >= -1e-5 && ps[i].tvd[ti] >= 0 && ps[i].tvd[ti] <= 1 + 1e-6,
                          "position %u: kl %g tvd %g", ps[i].pos, ps[i].kl[ti], ps[i].tvd[ti]);
            free(ps);
            free(bs);
        }
        /* speculative decoding (greedy) over the same prompt with a spying DFlash proposer */
        spy s = {.inner = draft, .V = V, .rows = B - 1};
        s.base = *draft;
        s.base.name = "spy";
        s.base.ops = &spy_ops;
        s.base.self = &s;
        vkd_generate_options so = {.max_new_tokens = G};
        vkd_spec_result sr;
        REQUIRE(!vkd_spec_generate(t, &s.base, rec, ids->data, P, &so, &sr, &err), "%s", err.msg);
        CHECK(sr.n == G && !memcmp(sr.ids, seq + P, G * 4), "spec output == greedy reference");
        double worst = 0;
        uint32_t matched = 0;
        for (uint32_t st = 0; st < s.n; st++) {
            uint32_t w = UINT32_MAX;
            for (uint32_t b = 0; b < dc.n; b++)
                if (dc.starts[b] == s.pos[st]) w = b;
            CHECK(w != UINT32_MAX, "spec step at %u: no walk block starts there", s.pos[st]);
            if (w == UINT32_MAX) continue;
            uint32_t rows = n - s.pos[st] - 1 < B - 1 ? n - s.pos[st] - 1 : B - 1;
            const float *a = s.logits + (size_t)st * s.rows * V, *b = dc.logits + (size_t)w * dc.rows_per * V;
            double e = fixture_rel_err(b, a, (size_t)rows * V);
            worst = fmax(worst, e);
            matched++;
        }
        CHECK(matched == s.n && matched > 3, "%u of %u spec steps compared", matched, s.n);
        CHECK(worst <= 1e-5, "teacher-forced mask-mode draft logits vs spec's proposer: %.3g", worst);
        fprintf(stderr, "  mask-mode walk vs spec proposer: %u steps (tau %.2f), worst relative logit error %.2g\n",
                matched, sr.stats.tau, worst);
        vkd_spec_result_free(&sr);
        free(s.pos);
        free(s.logits);
        free(dc.starts);
        free(dc.logits);

        /* bad input */
        CHECK(vkd_probe_run(pr, rec, seq, n, 0, key, NULL, NULL, &ps, &np, &bs, &nb, &tm, &err) == VKD_ERR_INVALID,
              "empty prompt refused");
        int32_t *longer = calloc(200, sizeof *longer);
        CHECK(vkd_probe_run(pr, rec, longer, 200, 5, key, NULL, NULL, &ps, &np, &bs, &nb, &tm, &err) == VKD_ERR_INVALID &&
              strstr(err.msg, "context"), "sequence longer than the context refused: %s", err.msg);
        free(longer);
        vkd_probe_options bad = {.temps = temps, .ntemps = 0};
        vkd_probe *pb;
        CHECK(vkd_probe_create(t, draft, &bad, &pb, &err) == VKD_ERR_INVALID, "no temperatures refused");
        bad = (vkd_probe_options){.samples = 1};
        CHECK(vkd_probe_create(t, draft, &bad, &pb, &err) == VKD_ERR_INVALID, "1 sample refused");
    }
    vkd_probe_free(pr);
    vkd_draft_free(draft);
    free(seq);
    vkd_st_close(sf);
    vkd_dflash_free(d);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation messages: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_probe");
}
