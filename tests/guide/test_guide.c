/* test_guide: draft-guided decoding (methods/guide.c) on the DFlash fixture pair (target +
 * draft-b4 loaded with block 2) against tools/reference/guide_ref.py (float64 PyTorch,
 * tests/guide/fixtures/expected.safetensors), and against itself:
 *   - greedy guided output at alpha 0, 0.3, 1 == the reference (alpha 0: the target's greedy
 *     continuation; alpha 1: greedy decoding from the draft's logits alone), with the
 *     reference's per-token KL and argmax-changed flags;
 *   - the target and draft rows at alpha 0.3 against the reference's rows; the sampled-from
 *     row against target + alpha * (draft - target) computed here in double; at alpha 0 it
 *     is the target row bit for bit, at alpha 1 the draft row;
 *   - alpha 0 == vkd_generate token for token, greedy and sampled (same seed);
 *   - KL at a sampling temperature against a double computation from the rows;
 *   - the null control: RMS(null - target) == alpha * std(draft - target) per token, the
 *     noise is the documented Philox normals (mean 0, variance 1, tails), keyed by seed and
 *     position;
 *   - stop ids, bad arguments.
 * The target runs with max_rows 8, so the 20-token prompt is prefilled in 3 chunks.
 * Row bound: max |vk - ref| <= 2e-4 * (1 + max |ref|) (f32 vs float64, as test_dflash). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../models/fixture_util.h"
#include "safetensors.h"
#include "vkd_guide.h"
#include "vkd_test.h"

typedef struct env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_dflash *d;
    vkd_draft *g;
    vkd_st_file *f;
    const int32_t *prompt;
    uint32_t n;
} env;

/* Per-token rows captured through on_rows. */
typedef struct rows {
    uint32_t V, n, cap;
    uint32_t *pos;
    float *t, *d, *g;
} rows;

static void on_rows(void *user, uint32_t pos, const float *t, const float *d, const float *g) {
    rows *r = user;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 32;
        r->pos = realloc(r->pos, r->cap * sizeof *r->pos);
        r->t = realloc(r->t, (size_t)r->cap * r->V * 4);
        r->d = realloc(r->d, (size_t)r->cap * r->V * 4);
        r->g = realloc(r->g, (size_t)r->cap * r->V * 4);
    }
    size_t o = (size_t)r->n * r->V;
    r->pos[r->n] = pos;
    memcpy(r->t + o, t, r->V * 4);
    memcpy(r->d + o, d, r->V * 4);
    memcpy(r->g + o, g, r->V * 4);
    r->n++;
}

static void rows_free(rows *r) {
    free(r->pos);
    free(r->t);
    free(r->d);
    free(r->g);
    memset(r, 0, sizeof *r);
}

static void run(env *e, float alpha, vkd_guide_condition c, const vkd_sample_params *sp, uint32_t max_new,
                rows *capture, vkd_guide_result *res) {
    vkd_error err = {0};
    vkd_guide_options o = {.gen = {.max_new_tokens = max_new}, .alpha = alpha, .condition = c};
    if (sp) o.gen.sample = *sp;
    if (capture) {
        capture->V = e->t->vocab;
        o.on_rows = on_rows;
        o.rows_user = capture;
    }
    REQUIRE(!vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, res, &err), "%s", err.msg);
    CHECK(res->target_forwards == 3 + res->n - 1, "target forwards %u for %u tokens (3 prompt chunks)",
          res->target_forwards, res->n);
    CHECK(res->draft_calls == res->n, "draft calls %u for %u tokens", res->draft_calls, res->n);
}

/* KL(softmax(s*a) || softmax(s*b)) in double */
static double kl_rows(const float *a, const float *b, uint32_t V, double s) {
    double ma = -INFINITY, mb = -INFINITY, za = 0, zb = 0, kl = 0;
    for (uint32_t i = 0; i < V; i++) {
        ma = fmax(ma, s * a[i]);
        mb = fmax(mb, s * b[i]);
    }
    for (uint32_t i = 0; i < V; i++) {
        za += exp(s * a[i] - ma);
        zb += exp(s * b[i] - mb);
    }
    for (uint32_t i = 0; i < V; i++) {
        double la = s * a[i] - ma - log(za), lb = s * b[i] - mb - log(zb);
        kl += exp(la) * (la - lb);
    }
    return kl;
}

static void check_reference(env *e) {
    static const struct { float alpha; const char *tag; } cases[] = {
        {0.0f, "alpha0"}, {0.3f, "alpha0.3"}, {1.0f, "alpha1"}};
    uint32_t V = e->t->vocab;
    const vkd_st_tensor *greedy = fixture_get(e->f, "greedy");
    for (int c = 0; c < 3; c++) {
        char name[64];
        snprintf(name, sizeof name, "%s.ids", cases[c].tag);
        const vkd_st_tensor *want = fixture_get(e->f, name);
        snprintf(name, sizeof name, "%s.kl", cases[c].tag);
        const float *want_kl = fixture_get(e->f, name)->data;
        snprintf(name, sizeof name, "%s.changed", cases[c].tag);
        const int32_t *want_ch = fixture_get(e->f, name)->data;
        uint32_t N = (uint32_t)want->numel;
        rows cap = {0};
        vkd_guide_result res;
        run(e, cases[c].alpha, VKD_GUIDE_GUIDED, NULL, N, &cap, &res);
        bool same = res.n == N && !memcmp(res.ids, want->data, N * 4);
        CHECK(same, "alpha %g: guided greedy output differs from the reference", cases[c].alpha);
        if (c == 0)
            CHECK(res.n == greedy->numel && !memcmp(res.ids, greedy->data, res.n * 4),
                  "alpha 0: output differs from the target's greedy continuation");
        double worst_kl = 0, worst_g = 0;
        uint32_t ch = 0, ch_ref = 0;
        for (uint32_t i = 0; i < res.n && i < N; i++) {
            worst_kl = fmax(worst_kl, fabs(res.kl[i] - want_kl[i]) / (1e-2 + fabs(want_kl[i])));
            CHECK(res.changed[i] == (want_ch[i] != 0), "alpha %g token %u: changed %d, reference %d",
                  cases[c].alpha, i, res.changed[i], want_ch[i]);
            ch += res.changed[i];
            ch_ref += want_ch[i] != 0;
            /* the sampled-from row against an independent combination of the loop's own rows */
            const float *t = cap.t + (size_t)i * V, *d = cap.d + (size_t)i * V, *g = cap.g + (size_t)i * V;
            for (uint32_t j = 0; j < V; j++) {
                double want_g = t[j] + (double)cases[c].alpha * ((double)d[j] - t[j]);
                worst_g = fmax(worst_g, fabs(g[j] - want_g) / (1 + fabs(want_g)));
            }
            if (cases[c].alpha == 0.0f) CHECK(!memcmp(g, t, V * 4), "alpha 0: row %u is not the target row", i);
            if (cases[c].alpha == 1.0f) CHECK(!memcmp(g, d, V * 4), "alpha 1: row %u is not the draft row", i);
            CHECK(cap.pos[i] == e->n + i, "row %u at position %u", i, cap.pos[i]);
        }
        CHECK(worst_kl < 2e-3, "alpha %g: per-token KL differs from the reference by %.3g (relative)",
              cases[c].alpha, worst_kl);
        CHECK(worst_g < 1e-6, "alpha %g: guided row differs from target + alpha (draft - target) by %.3g",
              cases[c].alpha, worst_g);
        double e_t = NAN, e_d = NAN;
        snprintf(name, sizeof name, "%s.target", cases[c].tag);
        if (vkd_st_find(e->f, name) && same) {
            e_t = fixture_rel_err(cap.t, fixture_get(e->f, name)->data, (size_t)N * V);
            snprintf(name, sizeof name, "%s.draft", cases[c].tag);
            e_d = fixture_rel_err(cap.d, fixture_get(e->f, name)->data, (size_t)N * V);
            CHECK(e_t <= 2e-4 && e_d <= 2e-4, "alpha %g: target rows error %.3g, draft rows error %.3g",
                  cases[c].alpha, e_t, e_d);
        }
        fprintf(stderr, "  alpha %-4g: %u tokens %s, %u/%u changed (ref %u), mean KL %.4f, KL rel err %.2g, "
                "guided row err %.2g, rows err t %.2g d %.2g\n", cases[c].alpha, res.n,
                same ? "== reference" : "DIFFERENT", ch, res.n, ch_ref, res.kl_mean, worst_kl, worst_g, e_t, e_d);
        CHECK(c == 0 || ch > 0, "alpha %g: guidance never changed the argmax (a weak test)", cases[c].alpha);
        vkd_guide_result_free(&res);
        rows_free(&cap);
    }
}

/* alpha 0 against vkd_generate, greedy and sampled at the same seed; sampled runs are
 * reproducible and KL at the temperature matches a double computation. */
static void check_plain(env *e) {
    vkd_error err = {0};
    vkd_sample_params modes[3] = {{0}, {.temperature = 0.9f, .top_k = 40, .seed = 11},
                                  {.temperature = 1.3f, .top_p = 0.95f, .seed = 12}};
    for (int m = 0; m < 3; m++) {
        vkd_generate_options go = {.max_new_tokens = 24, .sample = modes[m]};
        vkd_generate_result plain;
        REQUIRE(!vkd_generate(e->t, e->rec, e->prompt, e->n, &go, &plain, &err), "%s", err.msg);
        vkd_guide_result res;
        run(e, 0.0f, VKD_GUIDE_GUIDED, &modes[m], 24, NULL, &res);
        bool same = res.n == plain.n && !memcmp(res.ids, plain.ids, res.n * 4);
        CHECK(same, "alpha 0, temperature %g: output differs from vkd_generate", modes[m].temperature);
        for (uint32_t i = 0; i < res.n; i++) CHECK(res.kl[i] == 0 || fabs(res.kl[i]) < 1e-6, "alpha 0 KL %g", res.kl[i]);
        CHECK(res.changed_frac == 0, "alpha 0 changed %g", res.changed_frac);
        vkd_guide_result r0;
        run(e, 0.0f, VKD_GUIDE_NULL, &modes[m], 24, NULL, &r0);
        CHECK(r0.n == plain.n && !memcmp(r0.ids, plain.ids, r0.n * 4),
              "null control at alpha 0, temperature %g: output differs from vkd_generate", modes[m].temperature);
        fprintf(stderr, "  alpha 0 vs vkd_generate (T %.1f, top-k %u, top-p %.2f): %u tokens %s\n",
                modes[m].temperature, modes[m].top_k, modes[m].top_p, res.n, same ? "identical" : "DIFFERENT");
        free(plain.ids);
        vkd_guide_result_free(&res);
        vkd_guide_result_free(&r0);
    }
    /* sampled guided: reproducible; KL at temperature T */
    vkd_sample_params sp = {.temperature = 0.7f, .seed = 5};
    rows cap = {0};
    vkd_guide_result a, b;
    run(e, 0.5f, VKD_GUIDE_GUIDED, &sp, 16, &cap, &a);
    run(e, 0.5f, VKD_GUIDE_GUIDED, &sp, 16, NULL, &b);
    CHECK(a.n == b.n && !memcmp(a.ids, b.ids, a.n * 4), "sampled guided decoding is not reproducible");
    double worst = 0;
    for (uint32_t i = 0; i < a.n; i++) {
        double want = kl_rows(cap.g + (size_t)i * cap.V, cap.t + (size_t)i * cap.V, cap.V, 1.0 / 0.7);
        worst = fmax(worst, fabs(a.kl[i] - want) / (1e-2 + want));
    }
    CHECK(worst < 2e-3, "KL at temperature 0.7: relative error %.3g", worst);
    fprintf(stderr, "  sampled alpha 0.5 T 0.7: reproducible, mean KL %.4f (rel err %.2g), changed %.2f\n",
            a.kl_mean, worst, a.changed_frac);
    vkd_guide_result_free(&a);
    vkd_guide_result_free(&b);
    rows_free(&cap);
}

static void check_null(env *e) {
    uint32_t V = e->t->vocab;
    const float alpha = 0.5f;
    vkd_sample_params sps[2] = {{0}, {.temperature = 1.0f, .seed = 3}};
    for (int m = 0; m < 2; m++) {
        rows cap = {0};
        vkd_guide_result res;
        run(e, alpha, VKD_GUIDE_NULL, &sps[m], 20, &cap, &res);
        double worst_scale = 0, worst_dir = 0, worst_kl = 0;
        float *z = malloc(V * 4);
        for (uint32_t i = 0; i < cap.n; i++) {
            const float *t = cap.t + (size_t)i * V, *d = cap.d + (size_t)i * V, *g = cap.g + (size_t)i * V;
            double s1 = 0, s2 = 0, nn = 0;
            for (uint32_t j = 0; j < V; j++) {
                double dl = (double)d[j] - t[j], nz = (double)g[j] - t[j];
                s1 += dl;
                s2 += dl * dl;
                nn += nz * nz;
            }
            double std_d = sqrt(s2 / V - (s1 / V) * (s1 / V)), rms_noise = sqrt(nn / V);
            worst_scale = fmax(worst_scale, fabs(rms_noise - alpha * std_d) / (alpha * std_d));
            /* the noise is the documented normals, scaled */
            vkd_guide_noise(sps[m].seed, cap.pos[i], z, V);
            double zz = 0;
            for (uint32_t j = 0; j < V; j++) zz += (double)z[j] * z[j];
            double k = alpha * std_d / sqrt(zz / V);
            for (uint32_t j = 0; j < V; j++)
                worst_dir = fmax(worst_dir, fabs(((double)g[j] - t[j]) - k * z[j]) / (1 + fabs(t[j])));
            double s = sps[m].temperature > 0 ? 1.0 / sps[m].temperature : 1.0;
            double want = kl_rows(g, t, V, s);
            worst_kl = fmax(worst_kl, fabs(res.kl[i] - want) / (1e-2 + want));
        }
        free(z);
        CHECK(worst_scale < 1e-4, "null control: RMS(noise) vs alpha * std(draft - target): rel err %.3g", worst_scale);
        CHECK(worst_dir < 1e-6, "null control: noise differs from the scaled Philox normals by %.3g", worst_dir);
        CHECK(worst_kl < 2e-3, "null control: KL relative error %.3g", worst_kl);
        fprintf(stderr, "  null alpha %.1f T %.1f: %u tokens, changed %.2f, mean KL %.4f; noise RMS rel err %.2g, "
                "direction err %.2g\n", alpha, sps[m].temperature, res.n, res.changed_frac, res.kl_mean,
                worst_scale, worst_dir);
        vkd_guide_result_free(&res);
        rows_free(&cap);
    }
    /* the generator: N(0, 1) marginals, keyed by (seed, position) */
    const uint32_t NPOS = 64, W = 1001; /* odd length: the last Box-Muller pair is cut */
    float *z = malloc(W * 4), *z2 = malloc(W * 4);
    double s1 = 0, s2 = 0, s4 = 0;
    uint64_t tail = 0, total = 0;
    for (uint32_t p = 0; p < NPOS; p++) {
        vkd_guide_noise(77, p, z, W);
        for (uint32_t j = 0; j < W; j++) {
            double x = z[j];
            if (!isfinite(x)) CHECK(0, "noise %g at position %u entry %u", x, p, j);
            s1 += x;
            s2 += x * x;
            s4 += x * x * x * x;
            tail += fabs(x) > 1.959964;
            total++;
        }
    }
    double mean = s1 / total, var = s2 / total - mean * mean, kurt = s4 / total / (var * var);
    double tail_frac = (double)tail / total;
    CHECK(fabs(mean) < 0.02 && fabs(var - 1) < 0.03 && fabs(kurt - 3) < 0.15 && fabs(tail_frac - 0.05) < 0.006,
          "noise moments: mean %.4f var %.4f kurtosis %.3f P(|z|>1.96) %.4f", mean, var, kurt, tail_frac);
    vkd_guide_noise(77, 5, z, W);
    vkd_guide_noise(77, 5, z2, W);
    CHECK(!memcmp(z, z2, W * 4), "noise not reproducible");
    vkd_guide_noise(77, 6, z2, W);
    CHECK(memcmp(z, z2, W * 4), "noise does not depend on the position");
    vkd_guide_noise(78, 5, z2, W);
    CHECK(memcmp(z, z2, W * 4), "noise does not depend on the seed");
    fprintf(stderr, "  noise over %llu draws: mean %.4f var %.4f kurtosis %.3f P(|z|>1.96) %.4f\n",
            (unsigned long long)total, mean, var, kurt, tail_frac);
    free(z);
    free(z2);
}

static void check_stops_and_errors(env *e) {
    vkd_error err = {0};
    const int32_t *want = fixture_get(e->f, "alpha0.3.ids")->data;
    int32_t stop = want[6];
    uint32_t first = 0;
    while (want[first] != stop) first++;
    vkd_guide_options o = {.gen = {.max_new_tokens = 20, .stop_ids = &stop, .nstop = 1}, .alpha = 0.3f};
    vkd_guide_result res;
    REQUIRE(!vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err), "%s", err.msg);
    CHECK(res.stopped && res.n == first + 1 && !memcmp(res.ids, want, res.n * 4),
          "stop id %d: %u tokens, stopped %d", stop, res.n, res.stopped);
    vkd_guide_result_free(&res);
    o.gen.nstop = 0;
    o.gen.max_new_tokens = e->t->ctx_len;
    CHECK(vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err) == VKD_ERR_RANGE &&
              strstr(err.msg, "context"), "too long: %s", err.msg);
    CHECK(res.ids == NULL && res.n == 0, "failed run left a result");
    o.gen.max_new_tokens = 4;
    CHECK(vkd_guide_generate(e->t, e->g, e->rec, e->prompt, 0, &o, &res, &err) == VKD_ERR_INVALID, "empty prompt");
    o.alpha = -0.5f;
    CHECK(vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err) == VKD_ERR_INVALID &&
              strstr(err.msg, "alpha"), "negative alpha: %s", err.msg);
    o.alpha = NAN;
    CHECK(vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err) == VKD_ERR_INVALID, "NaN alpha");
    o.alpha = 0.3f;
    o.condition = (vkd_guide_condition)7;
    CHECK(vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err) == VKD_ERR_INVALID, "bad condition");
    /* after errors the loop still works */
    o.condition = VKD_GUIDE_GUIDED;
    REQUIRE(!vkd_guide_generate(e->t, e->g, e->rec, e->prompt, e->n, &o, &res, &err), "%s", err.msg);
    CHECK(res.n == 4 && !memcmp(res.ids, want, 16), "run after errors differs");
    vkd_guide_result_free(&res);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    char dir[4200], path[4200];
    env e = {0};
    vkd_error err = {0};
    REQUIRE(!vkd_ctx_create(NULL, &e.ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(e.ctx, &e.rec, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/target/model", root);
    vkd_target_options to = {.ctx_len = 128, .max_rows = 8};
    REQUIRE(!vkd_target_load(e.ctx, dir, &to, &e.t, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/draft-b4/model", root);
    vkd_dflash_options dop = {.block_size = 2};
    REQUIRE(!vkd_dflash_load(e.ctx, e.t, dir, &dop, &e.d, &err), "%s", err.msg);
    REQUIRE(!vkd_draft_dflash(e.d, &e.g, &err), "%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/guide/fixtures/expected.safetensors", root);
    REQUIRE(!vkd_st_open(path, &e.f, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(e.f, "input_ids");
    e.prompt = ids->data;
    e.n = (uint32_t)ids->numel;
    REQUIRE(e.n > 16, "the prompt must span 3 chunks of 8");

    check_reference(&e);
    check_plain(&e);
    check_null(&e);
    check_stops_and_errors(&e);

    CHECK(vkd_ctx_validation_count(e.ctx) == 0, "validation: %s", vkd_ctx_validation_first(e.ctx));
    vkd_st_close(e.f);
    vkd_draft_free(e.g);
    vkd_dflash_free(e.d);
    vkd_target_free(e.t);
    vkd_rec_destroy(e.rec);
    vkd_ctx_destroy(e.ctx);
    return vkd_test_result("test_guide");
}
