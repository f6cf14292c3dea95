/* test_exit: the early-exit head (models/vkd_exit.h) and its drafts (methods/exit_draft.c).
 *   - the exit draft's logits at layer 0 of the tied Qwen3 fixture equal
 *     (rmsnorm(h_0) * norm) W^T computed in double from PyTorch's hidden.0 and the
 *     checkpoint's weights (the draft reads its context through its own KV cache);
 *   - a head with its own block (--ft-last-block) round-trips through save/load, is refused
 *     by the reuse variant, and its plain draft keeps greedy output identical;
 *   - greedy speculative decoding with an exit head, plain (own cache) and reuse
 *     (self-speculative, the target's cache), is token-identical to the target's greedy
 *     decoding at layers 0, 3, 7 of the 8-layer fixture and gamma 1, 3, 5;
 *   - an exit head at the last layer copied from the target's head accepts every proposal;
 *   - sampling keeps the target's distribution (chi-square over the first two tokens, as
 *     test_dflash does for the DFlash draft), both variants;
 *   - save/load round trip; bad input: layer out of range, a head loaded with another target. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "spec_check.h"
#include "vkd_exit.h"
#include "vkd_spec.h"
#include "vkd_test.h"

static char fx[4096];

typedef struct env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
} env;

/* The exit draft at layer 0 against a double-precision head over PyTorch's hidden.0. */
static void check_head_reference(env *e) {
    vkd_error err = {0};
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/qwen3-tied-f32/model", fx);
    vkd_target *t;
    REQUIRE(!vkd_target_load(e->ctx, dir, &(vkd_target_options){.ctx_len = 64}, &t, &err), "%s", err.msg);
    vkd_exit *x;
    REQUIRE(!vkd_exit_create(t, dir, 0, &x, &err), "%s", err.msg);
    vkd_draft *g;
    REQUIRE(!vkd_draft_exit(x, 4, false, &g, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/qwen3-tied-f32/expected.safetensors", fx);
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(dir, &f, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(f, "input_ids"), *h0 = fixture_get(f, "hidden.0");
    snprintf(dir, sizeof dir, "%s/qwen3-tied-f32/model/model.safetensors", fx);
    vkd_st_file *mf;
    REQUIRE(!vkd_st_open(dir, &mf, &err), "%s", err.msg);
    const vkd_st_tensor *W = fixture_get(mf, "model.embed_tokens.weight"), *nw = fixture_get(mf, "model.norm.weight");
    REQUIRE(W->dtype == VKD_DTYPE_F32 && nw->dtype == VKD_DTYPE_F32, "fixture weights are not f32");
    uint32_t P = (uint32_t)ids->numel, H = t->hidden, V = t->vocab, B = 5, c = P - B;
    const int32_t *id = ids->data;
    vkd_rec_begin(e->rec);
    REQUIRE(!vkd_draft_context(g, e->rec, id, 0, c, NULL, 0, &err), "%s", err.msg);
    REQUIRE(!vkd_draft_block(g, e->rec, id + c, c, &err), "%s", err.msg);
    float *got = malloc((size_t)B * V * 4);
    double *want = malloc((size_t)B * V * sizeof *want);
    vkd_rec_read(e->rec, g->logits, 0, got, (uint64_t)B * V * 4);
    REQUIRE(!vkd_rec_submit(e->rec), "%s", vkd_rec_error(e->rec)->msg);
    const float *h = h0->data, *w = W->data, *n = nw->data;
    for (uint32_t r = 0; r < B; r++) {
        const float *hr = h + (size_t)(c + r) * H;
        double ss = 0;
        for (uint32_t j = 0; j < H; j++) ss += (double)hr[j] * hr[j];
        double rs = 1.0 / sqrt(ss / H + t->cfg.rms_norm_eps);
        for (uint32_t v = 0; v < V; v++) {
            double s = 0;
            for (uint32_t j = 0; j < H; j++) s += hr[j] * rs * n[j] * w[(size_t)v * H + j];
            want[(size_t)r * V + v] = s;
        }
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)B * V; i++) {
        scale = fmax(scale, fabs(want[i]));
        double d = fabs(got[i] - want[i]);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    fprintf(stderr, "  exit head at layer 0 vs double reference over PyTorch hidden.0: max abs err %.3g (scale %.3g)\n",
            worst, scale);
    CHECK(worst < 2e-4 * (1 + scale), "exit logits differ from the reference by %g", worst);
    free(got);
    free(want);
    vkd_st_close(f);
    vkd_st_close(mf);
    vkd_draft_free(g);
    vkd_exit_free(x);
    vkd_target_free(t);
}

/* Greedy self-speculative decoding with head x (reuse variant) equals ref; all_full: every
 * step but a last one cut by max_new_tokens accepts all gamma proposals. */
static void spec_check(env *e, vkd_exit *x, uint32_t gamma, const vkd_generate_result *ref, bool all_full,
                       const char *what) {
    vkd_error err = {0};
    const int32_t prompt[9] = {5, 88, 301, 17, 42, 250, 3, 99, 411};
    vkd_generate_options go = {.max_new_tokens = 40};
    vkd_draft *g;
    REQUIRE(!vkd_draft_exit(x, gamma, true, &g, &err), "%s", err.msg);
    vkd_spec_result sr;
    REQUIRE(!vkd_spec_generate(e->t, g, e->rec, prompt, 9, &go, &sr, &err), "%s", err.msg);
    bool same = sr.n == ref->n && !memcmp(sr.ids, ref->ids, ref->n * sizeof *ref->ids);
    uint32_t full = 0;
    for (uint32_t s = 0; s < sr.stats.steps; s++) full += sr.stats.accept[s] == gamma + 1;
    fprintf(stderr, "  layer %u gamma %u %s (reuse): %s greedy, tau %.2f, %u/%u steps accept all\n", x->layer, gamma,
            what, same ? "==" : "!=", sr.stats.tau, full, sr.stats.steps);
    CHECK(same, "layer %u %s: speculative output differs from greedy", x->layer, what);
    if (all_full) CHECK(full + 1 >= sr.stats.steps, "layer %u %s: proposals rejected", x->layer, what);
    vkd_spec_result_free(&sr);
    vkd_draft_free(g);
}

/* A head with its own block (--ft-last-block), the block's down projection scaled by 1.1
 * so that it differs from the target's: it saves and loads back bit for bit, the reuse
 * variant is refused, and the plain variant's greedy speculative output equals ref. */
static void check_block_head(env *e, const char *tdir, uint32_t layer, const vkd_generate_result *ref) {
    vkd_error err = {0};
    const int32_t prompt[9] = {5, 88, 301, 17, 42, 250, 3, 99, 411};
    vkd_exit *x, *y;
    REQUIRE(!vkd_exit_create(e->t, tdir, layer, &x, &err) && !vkd_exit_add_block(x, tdir, &err), "%s", err.msg);
    vkd_exit_block_tensor bx[VKD_EXIT_BLOCK_MAX], by[VKD_EXIT_BLOCK_MAX];
    uint32_t nb = vkd_exit_block_tensors(x, bx);
    REQUIRE(nb >= 9 && !strcmp(bx[8].name, "mlp.down_proj.weight"), "block tensor table");
    size_t nd = bx[8].rows * bx[8].cols;
    float *w = malloc(nd * 4);
    REQUIRE(w && !vkd_tensor_download(bx[8].w, 0, w, nd * 4, &err), "%s", err.msg);
    for (size_t i = 0; i < nd; i++) w[i] *= 1.1f;
    REQUIRE(!vkd_tensor_upload(bx[8].w, 0, w, nd * 4, &err), "%s", err.msg);
    free(w);
    snprintf(x->info.trained, sizeof x->info.trained, "head+block");
    char tmp[] = "/tmp/vkd_test_exit_block.XXXXXX";
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    REQUIRE(!vkd_exit_save(x, tmp, &err), "%s", err.msg);
    REQUIRE(!vkd_exit_load(e->t, tdir, tmp, &y, &err), "%s", err.msg);
    REQUIRE(vkd_exit_block_tensors(y, by) == nb && !strcmp(y->info.trained, "head+block"), "loaded head has no block");
    for (uint32_t i = 0; i < nb; i++) {
        size_t k = (bx[i].rows ? bx[i].rows : 1) * bx[i].cols * 4;
        char *a = malloc(k), *b = malloc(k);
        REQUIRE(a && b && !vkd_tensor_download(bx[i].w, 0, a, k, &err) && !vkd_tensor_download(by[i].w, 0, b, k, &err),
                "%s", err.msg);
        CHECK(!memcmp(a, b, k), "block tensor %s differs after save and load", bx[i].name);
        free(a);
        free(b);
    }
    char p[4400];
    const char *files[2] = {"exit.safetensors", "exit_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
        unlink(p);
    }
    rmdir(tmp);
    vkd_exit_free(x);
    REQUIRE(!vkd_exit_freeze(y, &err), "%s", err.msg);
    vkd_draft *g;
    vkd_result r = vkd_draft_exit(y, 3, true, &g, &err);
    CHECK(r == VKD_ERR_INVALID && strstr(err.msg, "plain variant"), "reuse accepted a head with its own block: %s",
          err.msg);
    fprintf(stderr, "  layer %u head+block, reuse: %s\n", layer, err.msg);
    const uint32_t gammas[2] = {1, 3};
    for (int gi = 0; gi < 2; gi++) {
        vkd_generate_options go = {.max_new_tokens = 40};
        REQUIRE(!vkd_draft_exit(y, gammas[gi], false, &g, &err), "%s", err.msg);
        vkd_spec_result sr;
        REQUIRE(!vkd_spec_generate(e->t, g, e->rec, prompt, 9, &go, &sr, &err), "%s", err.msg);
        bool same = sr.n == ref->n && !memcmp(sr.ids, ref->ids, ref->n * sizeof *ref->ids);
        fprintf(stderr, "  layer %u gamma %u head+block (plain): %u tokens %s greedy, tau %.2f\n", layer, gammas[gi], sr.n,
                same ? "==" : "!=", sr.stats.tau);
        CHECK(same, "layer %u gamma %u head+block: speculative output differs from greedy", layer, gammas[gi]);
        vkd_spec_result_free(&sr);
        vkd_draft_free(g);
    }
    vkd_exit_free(y);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures", root);
    env e = {0};
    vkd_error err = {0};
    REQUIRE(!vkd_ctx_create(NULL, &e.ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(e.ctx, &e.rec, &err), "%s", err.msg);
    check_head_reference(&e);

    char tdir[4300], other[4300];
    snprintf(tdir, sizeof tdir, "%s/dflash/target/model", fx);
    snprintf(other, sizeof other, "%s/qwen3-tied-f32/model", fx);
    REQUIRE(!vkd_target_load(e.ctx, tdir, &(vkd_target_options){.ctx_len = 160}, &e.t, &err), "%s", err.msg);
    const uint32_t L = e.t->n_layers;
    const int32_t prompt[9] = {5, 88, 301, 17, 42, 250, 3, 99, 411};
    vkd_generate_options go = {.max_new_tokens = 40};
    vkd_generate_result ref;
    REQUIRE(!vkd_generate(e.t, e.rec, prompt, 9, &go, &ref, &err), "%s", err.msg);

    /* bad input */
    vkd_exit *x = NULL;
    vkd_result r = vkd_exit_create(e.t, tdir, L, &x, &err);
    CHECK(r == VKD_ERR_RANGE && strstr(err.msg, "out of range"), "layer %u accepted: %s", L, err.msg);
    fprintf(stderr, "  layer out of range: %s\n", err.msg);

    const uint32_t layers[3] = {0, 3, L - 1}, gammas[3] = {1, 3, 5};
    for (int li = 0; li < 3; li++) {
        REQUIRE(!vkd_exit_create(e.t, tdir, layers[li], &x, &err), "%s", err.msg);
        for (int gi = 0; gi < 3; gi++)
            for (int reuse = 0; reuse < 2; reuse++) {
                vkd_draft *g;
                REQUIRE(!vkd_draft_exit(x, gammas[gi], reuse, &g, &err), "%s", err.msg);
                vkd_spec_result sr;
                REQUIRE(!vkd_spec_generate(e.t, g, e.rec, prompt, 9, &go, &sr, &err), "%s", err.msg);
                bool same = sr.n == ref.n && !memcmp(sr.ids, ref.ids, ref.n * sizeof *ref.ids);
                CHECK(same, "layer %u gamma %u %s: speculative output differs from greedy", layers[li], gammas[gi],
                      g->name);
                uint32_t full = 0;
                for (uint32_t s = 0; s < sr.stats.steps; s++) full += sr.stats.accept[s] == gammas[gi] + 1;
                fprintf(stderr, "  layer %u gamma %u %-10s: %u tokens %s greedy, tau %.2f, %u/%u steps accept all\n",
                        layers[li], gammas[gi], g->name, sr.n, same ? "==" : "!=", sr.stats.tau, full, sr.stats.steps);
                if (layers[li] == L - 1) /* the last step may be cut by max_new_tokens */
                    CHECK(full + 1 >= sr.stats.steps, "last-layer exit head rejected proposals (%u of %u steps full)", full,
                          sr.stats.steps);
                vkd_spec_result_free(&sr);
                vkd_draft_free(g);
            }
        if (layers[li] == 3) {
            check_block_head(&e, tdir, 3, &ref);
            /* save / load round trip, then the same head with another target */
            char tmp[] = "/tmp/vkd_test_exit.XXXXXX";
            REQUIRE(mkdtemp(tmp), "mkdtemp");
            x->info.steps = 7;
            x->info.temperature = 2;
            snprintf(x->info.trained, sizeof x->info.trained, "head");
            REQUIRE(!vkd_exit_save(x, tmp, &err), "%s", err.msg);
            vkd_exit *y;
            REQUIRE(!vkd_exit_load(e.t, tdir, tmp, &y, &err), "%s", err.msg);
            size_t nw = (size_t)x->vocab * x->hidden;
            float *a = malloc(nw * 4), *b = malloc(nw * 4);
            REQUIRE(!vkd_tensor_download(x->head, 0, a, nw * 4, &err) && !vkd_tensor_download(y->head, 0, b, nw * 4, &err),
                    "%s", err.msg);
            CHECK(!memcmp(a, b, nw * 4) && y->layer == 3 && y->info.steps == 7 && y->info.temperature == 2 &&
                      !strcmp(y->info.trained, "head"),
                  "loaded head differs from the saved one");
            free(a);
            free(b);
            /* a trained head, frozen: converted to the target head's dtype and layout */
            REQUIRE(!vkd_exit_freeze(y, &err), "%s", err.msg);
            spec_check(&e, y, 3, &ref, false, "frozen trained");
            vkd_exit_free(y);
            vkd_target *t2;
            REQUIRE(!vkd_target_load(e.ctx, other, &(vkd_target_options){.ctx_len = 32}, &t2, &err), "%s", err.msg);
            r = vkd_exit_load(t2, other, tmp, &y, &err);
            CHECK(r == VKD_ERR_INVALID && strstr(err.msg, "trained for target"), "head loaded for another target: %s",
                  err.msg);
            fprintf(stderr, "  head with another target: %s\n", err.msg);
            vkd_target_free(t2);
            char p[4400];
            snprintf(p, sizeof p, "%s/exit.safetensors", tmp);
            unlink(p);
            snprintf(p, sizeof p, "%s/exit_config.json", tmp);
            unlink(p);
            rmdir(tmp);
            for (int reuse = 0; reuse < 2; reuse++) {
                vkd_draft *g;
                REQUIRE(!vkd_draft_exit(x, 3, reuse, &g, &err), "%s", err.msg);
                spec_check_sampling(e.t, e.rec, g, 5000, g->name);
                vkd_draft_free(g);
            }
        }
        /* frozen (drafting only): the untrained copy reads the target's own norm and head */
        REQUIRE(!vkd_exit_freeze(x, &err), "%s", err.msg);
        CHECK(vkd_exit_save(x, "/nonexistent", &err) == VKD_ERR_INVALID, "a frozen head was saved");
        spec_check(&e, x, 3, &ref, layers[li] == L - 1, "frozen copy");
        vkd_exit_free(x);
    }
    free(ref.ids);
    vkd_target_free(e.t);
    REQUIRE(vkd_ctx_validation_count(e.ctx) == 0, "validation: %s", vkd_ctx_validation_first(e.ctx));
    vkd_rec_destroy(e.rec);
    vkd_ctx_destroy(e.ctx);
    return vkd_test_result("test_exit");
}
