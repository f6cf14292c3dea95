/* test_guide_tokens: the per-token analysis and the adaptive / top-k conditions of
 * methods/guide.c (vkd_guide.h) on the DFlash fixture pair (target + draft-b4 at block 2),
 * expected values computed here in double from the rows read back through on_rows:
 *   - every token's p_target, p_draft (softmax of the target / draft row at the chosen token)
 *     and p_target_pref, p_draft_pref (at the target's argmax), target_argmax and the chosen
 *     id, for guided, adaptive and top-k decoding (greedy and sampled);
 *   - adaptive: alpha_t = alpha * TVD(softmax(target), softmax(draft)) per token, the row
 *     sampled from = (1 - alpha_t) target + alpha_t draft, greedy picks its argmax;
 *   - top-k: the row is the guided row on the target's k best entries and -inf elsewhere
 *     (ties to the lower index, checked on a hand-made row), greedy picks inside the target's
 *     top k; k = vocab equals plain guided decoding token for token;
 *   - bad k refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_guide.h"
#include "vkd_test.h"

typedef struct env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_dflash *d;
    vkd_draft *g;
} env;

typedef struct rows {
    uint32_t V, n, cap;
    float *t, *d, *g;
} rows;

static void on_rows(void *user, uint32_t pos, const float *t, const float *d, const float *g) {
    rows *r = user;
    (void)pos;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 32;
        r->t = realloc(r->t, (size_t)r->cap * r->V * 4);
        r->d = realloc(r->d, (size_t)r->cap * r->V * 4);
        r->g = realloc(r->g, (size_t)r->cap * r->V * 4);
    }
    size_t o = (size_t)r->n * r->V;
    memcpy(r->t + o, t, r->V * 4);
    memcpy(r->d + o, d, r->V * 4);
    memcpy(r->g + o, g, r->V * 4);
    r->n++;
}

/* softmax(row)[j] in double */
static double prob(const float *row, uint32_t V, int32_t j) {
    double m = -INFINITY, z = 0;
    for (uint32_t i = 0; i < V; i++) m = fmax(m, row[i]);
    for (uint32_t i = 0; i < V; i++) z += exp((double)row[i] - m);
    return exp((double)row[j] - m) / z;
}

static uint32_t argmax(const float *row, uint32_t V) {
    uint32_t a = 0;
    for (uint32_t i = 1; i < V; i++) if (row[i] > row[a]) a = i;
    return a;
}

static double worst_p = 0, worst_alpha = 0, worst_row = 0;

/* Runs one condition and checks every token against its captured rows. */
static void check_run(env *e, const int32_t *prompt, uint32_t n, vkd_guide_condition c, float alpha, uint32_t k,
                      const vkd_sample_params *sp, vkd_guide_result *res) {
    vkd_error err = {0};
    uint32_t V = e->t->vocab;
    rows cap = {.V = V};
    vkd_guide_options o = {.gen = {.max_new_tokens = 20}, .alpha = alpha, .condition = c, .top_k = k,
                           .on_rows = on_rows, .rows_user = &cap};
    if (sp) o.gen.sample = *sp;
    REQUIRE(!vkd_guide_generate(e->t, e->g, e->rec, prompt, n, &o, res, &err), "%s", err.msg);
    CHECK(cap.n == res->n, "%u rows for %u tokens", cap.n, res->n);
    uint32_t kk = k ? k : 20;
    for (uint32_t i = 0; i < res->n && i < cap.n; i++) {
        const float *t = cap.t + (size_t)i * V, *d = cap.d + (size_t)i * V, *g = cap.g + (size_t)i * V;
        const vkd_guide_token *tk = &res->tokens[i];
        uint32_t at = argmax(t, V);
        CHECK(tk->id == res->ids[i] && tk->target_argmax == (int32_t)at, "token %u: id %d / %d, target argmax %d / %u",
              i, tk->id, res->ids[i], tk->target_argmax, at);
        double want[4] = {prob(t, V, tk->id), prob(d, V, tk->id), prob(t, V, (int32_t)at), prob(d, V, (int32_t)at)};
        double got[4] = {tk->p_target, tk->p_draft, tk->p_target_pref, tk->p_draft_pref};
        for (int q = 0; q < 4; q++) {
            double er = fabs(got[q] - want[q]) / (1e-3 + want[q]);
            worst_p = fmax(worst_p, er);
            CHECK(er < 1e-3, "condition %d token %u: probability %d %.7g vs %.7g", (int)c, i, q, got[q], want[q]);
        }
        /* the row sampled from, rebuilt in double */
        double a = alpha;
        if (c == VKD_GUIDE_ADAPTIVE) {
            double tvd = 0;
            for (uint32_t j = 0; j < V; j++) tvd += fabs(prob(t, V, (int32_t)j) - prob(d, V, (int32_t)j));
            a = alpha * 0.5 * tvd;
            worst_alpha = fmax(worst_alpha, fabs(tk->alpha - a));
            CHECK(fabs(tk->alpha - a) < 1e-5, "adaptive token %u: alpha %g vs %g", i, tk->alpha, a);
        } else {
            CHECK(tk->alpha == alpha, "token %u: alpha %g vs %g", i, tk->alpha, alpha);
        }
        /* the target's top k by value, ties to the lower index */
        uint32_t above_or_tie_rank;
        for (uint32_t j = 0; j < V; j++) {
            double w = (1 - a) * t[j] + a * d[j];
            if (c == VKD_GUIDE_TOPK) {
                above_or_tie_rank = 0;
                for (uint32_t q = 0; q < V; q++) above_or_tie_rank += t[q] > t[j] || (t[q] == t[j] && q < j);
                if (above_or_tie_rank >= kk) w = -INFINITY;
            }
            if (isinf(w)) CHECK(isinf(g[j]) && g[j] < 0, "token %u entry %u: %g, expected -inf", i, j, g[j]);
            else worst_row = fmax(worst_row, fabs(g[j] - w) / (1 + fabs(w)));
        }
        if (!sp || sp->temperature == 0) CHECK(tk->id == (int32_t)argmax(g, V), "greedy token %u not the row's argmax", i);
    }
    free(cap.t);
    free(cap.d);
    free(cap.g);
}

static void check_host_rows(void) {
    /* top-k with ties: target 3 5 5 1 5 0, k 2: 5 at index 1 and 2 (index 4 loses the tie) */
    float t[6] = {3, 5, 5, 1, 5, 0}, d[6] = {1, 1, 1, 1, 1, 9}, s[6], out[6];
    vkd_guide_topk_row(t, d, 0.5f, 2, 6, s, out);
    CHECK(out[1] == 3 && out[2] == 3 && isinf(out[0]) && isinf(out[3]) && isinf(out[4]) && isinf(out[5]),
          "top-2 with ties: %g %g %g %g %g %g", out[0], out[1], out[2], out[3], out[4], out[5]);
    vkd_guide_topk_row(t, d, 0.0f, 4, 6, s, out);
    CHECK(out[0] == 3 && out[1] == 5 && out[2] == 5 && out[4] == 5 && isinf(out[3]) && isinf(out[5]), "top-4");
    /* adaptive: identical rows give alpha 0; disjoint one-hot-like rows give ~alpha */
    float a[3] = {0, 0, 0}, b[3] = {100, -100, -100}, c[3] = {-100, 100, -100};
    CHECK(vkd_guide_adaptive_row(a, a, 0.7f, 3, out) == 0 && out[0] == 0, "adaptive: equal rows");
    double at = vkd_guide_adaptive_row(b, c, 0.7f, 3, out);
    CHECK(fabs(at - 0.7f) < 1e-12, "adaptive: disjoint rows alpha %g", at);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    char dir[4200];
    env e = {0};
    vkd_error err = {0};
    REQUIRE(!vkd_ctx_create(NULL, &e.ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(e.ctx, &e.rec, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/target/model", root);
    vkd_target_options to = {.ctx_len = 96, .max_rows = 8};
    REQUIRE(!vkd_target_load(e.ctx, dir, &to, &e.t, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/draft-b4/model", root);
    vkd_dflash_options dop = {.block_size = 2};
    REQUIRE(!vkd_dflash_load(e.ctx, e.t, dir, &dop, &e.d, &err), "%s", err.msg);
    REQUIRE(!vkd_draft_dflash(e.d, &e.g, &err), "%s", err.msg);
    uint32_t V = e.t->vocab;
    int32_t prompt[11];
    for (uint32_t i = 0; i < 11; i++) prompt[i] = (int32_t)((i * 37 + 5) % V);

    check_host_rows();
    vkd_sample_params sp = {.temperature = 0.8f, .seed = 9};
    vkd_guide_result r[6];
    check_run(&e, prompt, 11, VKD_GUIDE_GUIDED, 0.4f, 0, NULL, &r[0]);
    check_run(&e, prompt, 11, VKD_GUIDE_GUIDED, 0.4f, 0, &sp, &r[1]);
    check_run(&e, prompt, 11, VKD_GUIDE_ADAPTIVE, 0.8f, 0, NULL, &r[2]);
    check_run(&e, prompt, 11, VKD_GUIDE_TOPK, 0.6f, 3, NULL, &r[3]);
    check_run(&e, prompt, 11, VKD_GUIDE_TOPK, 0.4f, V, NULL, &r[4]);
    check_run(&e, prompt, 11, VKD_GUIDE_ADAPTIVE, 0.8f, 0, &sp, &r[5]);
    CHECK(r[4].n == r[0].n && !memcmp(r[4].ids, r[0].ids, r[0].n * 4), "top-k with k = vocab differs from guided");
    double amin = 1, amax = 0;
    for (uint32_t i = 0; i < r[2].n; i++) {
        amin = fmin(amin, r[2].tokens[i].alpha);
        amax = fmax(amax, r[2].tokens[i].alpha);
    }
    CHECK(amax > amin && amax <= 0.8 + 1e-6, "adaptive alpha range %g .. %g (a constant alpha tests nothing)", amin, amax);
    uint32_t pref_differs = 0;
    for (int q = 0; q < 6; q++)
        for (uint32_t i = 0; i < r[q].n; i++) pref_differs += r[q].tokens[i].id != r[q].tokens[i].target_argmax;
    CHECK(pref_differs > 0, "every chosen token is the target's argmax (a weak test)");
    vkd_guide_options bad = {.gen = {.max_new_tokens = 4}, .alpha = 0.5f, .condition = VKD_GUIDE_TOPK, .top_k = V + 1};
    vkd_guide_result br;
    CHECK(vkd_guide_generate(e.t, e.g, e.rec, prompt, 11, &bad, &br, &err) == VKD_ERR_INVALID &&
          strstr(err.msg, "top-k"), "k > vocab refused: %s", err.msg);
    fprintf(stderr, "  per-token probabilities worst rel err %.2g, adaptive alpha %.3g .. %.3g (worst err %.2g), "
            "rows worst rel err %.2g, %u chosen tokens not the target's argmax\n", worst_p, amin, amax, worst_alpha,
            worst_row, pref_differs);
    CHECK(worst_row < 1e-6, "rows: worst relative error %.3g", worst_row);
    for (int q = 0; q < 6; q++) vkd_guide_result_free(&r[q]);
    CHECK(vkd_ctx_validation_count(e.ctx) == 0, "validation: %s", vkd_ctx_validation_first(e.ctx));
    vkd_draft_free(e.g);
    vkd_dflash_free(e.d);
    vkd_target_free(e.t);
    vkd_rec_destroy(e.rec);
    vkd_ctx_destroy(e.ctx);
    return vkd_test_result("test_guide_tokens");
}
