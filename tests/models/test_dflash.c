/* test_dflash: the DFlash draft and speculative decoding against the fixtures of
 * tools/reference/make_fixtures.py (float64 PyTorch reference of z-lab's DFlashDraftModel
 * and dflash_generate).
 *   - draft logits of a first call, of a second call through the draft KV cache, and of the
 *     same second call computed from scratch over all committed context (catches cache and
 *     RoPE-offset bugs that spec == greedy cannot);
 *   - greedy speculative output == greedy autoregressive output at block sizes 2, 4, 16,
 *     with the reference's acceptance lengths, with and without stop tokens;
 *   - the autoregressive-draft proposer is lossless too;
 *   - speculative sampling emits the target's sampling distribution (chi-square).
 * Bound for logits: max |vk - ref| <= 2e-4 * (1 + max |ref|) (f32 vs float64 on the same
 * stored weights, see test_target.c). */
#include <stdlib.h>
#include <string.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "spec_check.h"
#include "vkd_spec.h"
#include "vkd_test.h"

static char fx[4096];


typedef struct env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
} env;

static vkd_dflash *load_draft(env *e, const char *name, uint32_t block) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/dflash/%s/model", fx, name);
    vkd_error err = {0};
    vkd_dflash *d;
    vkd_dflash_options o = {.block_size = block};
    REQUIRE(!vkd_dflash_load(e->ctx, e->t, dir, &o, &d, &err), "%s", err.msg);
    return d;
}

/* features rows -> device, context call, block call, logits back */
static void draft_call(env *e, vkd_dflash *d, const vkd_st_tensor *F, const int32_t *block, float *out) {
    vkd_error err = {0};
    uint32_t n = (uint32_t)F->shape[0], W = (uint32_t)F->shape[1];
    vkd_tensor *ft;
    REQUIRE(!vkd_tensor_create_2d(e->ctx, VKD_DTYPE_F32, n, W, "features", &ft, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(ft, 0, F->data, F->nbytes, &err), "%s", err.msg);
    vkd_rec_begin(e->rec);
    REQUIRE(!vkd_dflash_context_record(d, e->rec, ft, 0, n, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_block_record(d, e->rec, block, &err), "%s", err.msg);
    vkd_rec_read(e->rec, d->logits, 0, out, (uint64_t)(d->block - 1) * d->vocab * 4);
    REQUIRE(!vkd_rec_submit(e->rec), "%s", vkd_rec_error(e->rec)->msg);
    vkd_tensor_destroy(ft);
}

static void check_calls(env *e, const char *name) {
    char path[4300];
    snprintf(path, sizeof path, "%s/dflash/%s/expected.safetensors", fx, name);
    vkd_error err = {0};
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(path, &f, &err), "%s", err.msg);
    vkd_dflash *d = load_draft(e, name, 0);
    CHECK(!vkd_ctx_profile(e->ctx)->attn_splits || d->attn_part,
          "no split-K partials in a draft on a context that forces splits");
    uint32_t B = d->block, V = d->vocab;
    float *l = malloc((size_t)(B - 1) * V * 4);
    const vkd_st_tensor *F1 = fixture_get(f, "call1.features"), *F2 = fixture_get(f, "call2.features");
    CHECK(*(const int32_t *)fixture_get(f, "call1.start")->data == (int32_t)F1->shape[0], "fixture start");
    draft_call(e, d, F1, fixture_get(f, "call1.block")->data, l);
    double e1 = fixture_rel_err(l, fixture_get(f, "call1.logits")->data, (size_t)(B - 1) * V);
    CHECK(e1 <= 2e-4, "%s: first draft call error %.3g", name, e1);
    draft_call(e, d, F2, fixture_get(f, "call2.block")->data, l);
    CHECK(d->len == (uint32_t)*(const int32_t *)fixture_get(f, "call2.start")->data, "draft cache length %u", d->len);
    double e2 = fixture_rel_err(l, fixture_get(f, "call2.logits")->data, (size_t)(B - 1) * V);
    CHECK(e2 <= 2e-4, "%s: cached second call error %.3g", name, e2);
    /* from scratch: all committed context at once */
    REQUIRE(!vkd_dflash_crop(d, 0, &err), "%s", err.msg);
    uint32_t n1 = (uint32_t)F1->shape[0], n2 = (uint32_t)F2->shape[0], W = (uint32_t)F1->shape[1];
    float *all = malloc((size_t)(n1 + n2) * W * 4);
    memcpy(all, F1->data, F1->nbytes);
    memcpy(all + (size_t)n1 * W, F2->data, F2->nbytes);
    vkd_st_tensor cat = *F1;
    cat.shape[0] = n1 + n2;
    cat.data = all;
    cat.nbytes = F1->nbytes + F2->nbytes;
    draft_call(e, d, &cat, fixture_get(f, "call2.block")->data, l);
    double e3 = fixture_rel_err(l, fixture_get(f, "call2.scratch_logits")->data, (size_t)(B - 1) * V);
    CHECK(e3 <= 2e-4, "%s: from-scratch second call error %.3g", name, e3);
    fprintf(stderr, "  %s: draft logits errors: first %.2g, cached %.2g, scratch %.2g\n", name, e1, e2, e3);
    free(all);
    free(l);
    vkd_dflash_free(d);
    vkd_st_close(f);
}

static uint32_t spec_run(env *e, vkd_draft *p, const int32_t *prompt, uint32_t n,
                         uint32_t max_new, const int32_t *stops, uint32_t nstop, vkd_spec_result *res) {
    vkd_error err = {0};
    vkd_generate_options o = {.max_new_tokens = max_new, .stop_ids = stops, .nstop = nstop};
    REQUIRE(!vkd_spec_generate(e->t, p, e->rec, prompt, n, &o, res, &err), "%s", err.msg);
    return res->n;
}

static void check_spec(env *e, const char *name, uint32_t block, bool want_trace) {
    char path[4300];
    snprintf(path, sizeof path, "%s/dflash/%s/expected.safetensors", fx, name);
    vkd_error err = {0};
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(path, &f, &err), "%s", err.msg);
    vkd_dflash *d = load_draft(e, name, block);
    vkd_draft *p;
    REQUIRE(!vkd_draft_dflash(d, &p, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(f, "input_ids"), *g = fixture_get(f, "greedy");
    const int32_t *greedy = g->data;
    uint32_t G = (uint32_t)g->numel;
    vkd_spec_result res;
    spec_run(e, p, ids->data, (uint32_t)ids->numel, G, NULL, 0, &res);
    bool same = res.n == G && !memcmp(res.ids, greedy, G * 4);
    CHECK(same, "%s at block %u: speculative output differs from greedy", name, d->block);
    uint32_t hist[257] = {0}, maxacc = 0;
    for (uint32_t i = 0; i < res.stats.steps; i++) {
        hist[res.stats.accept[i]]++;
        if (res.stats.accept[i] > maxacc) maxacc = res.stats.accept[i];
    }
    fprintf(stderr, "  %s block %2u: %u tokens in %u steps, tau %.2f, max acceptance %u, output %s\n",
            name, d->block, res.n, res.stats.steps, res.stats.tau, maxacc, same ? "== greedy" : "DIFFERENT");
    if (want_trace) {
        /* the reference's acceptance lengths, step by step (its first token is the prefill's) */
        const vkd_st_tensor *acc = fixture_get(f, "spec.accept");
        const int32_t *a = acc->data;
        bool same_acc = acc->numel == res.stats.steps;
        for (uint32_t i = 0; same_acc && i < res.stats.steps; i++) same_acc = (int32_t)res.stats.accept[i] == a[i];
        CHECK(same_acc, "%s: acceptance lengths differ from the reference (%u vs %llu steps)", name,
              res.stats.steps, (unsigned long long)acc->numel);
        CHECK(maxacc > 1, "%s: nothing was ever accepted (a useless draft makes the test weak)", name);
    }
    /* a stop token in the middle: output is greedy up to and including it */
    uint32_t k = G / 2;
    int32_t stop = greedy[k];
    uint32_t first = 0;
    while (greedy[first] != stop) first++;
    vkd_spec_result rs;
    spec_run(e, p, ids->data, (uint32_t)ids->numel, G, &stop, 1, &rs);
    CHECK(rs.stopped && rs.n == first + 1 && !memcmp(rs.ids, greedy, rs.n * 4),
          "%s block %u: stop token %d: %u tokens, stopped %d", name, d->block, stop, rs.n, rs.stopped);
    vkd_spec_result_free(&rs);
    vkd_spec_result_free(&res);
    vkd_draft_free(p);
    vkd_dflash_free(d);
    vkd_st_close(f);
}

/* The autoregressive-draft proposer with a different model as the draft: lossless. */
static void check_ar(env *e) {
    char path[4300], dir[4300];
    snprintf(path, sizeof path, "%s/dflash/draft-b16/expected.safetensors", fx);
    vkd_error err = {0};
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(path, &f, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(f, "input_ids"), *g = fixture_get(f, "greedy");
    uint32_t G = (uint32_t)g->numel;
    const char *drafts[] = {"llama3-f16/model", "dflash/target/model"};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/%s", fx, drafts[i]);
        vkd_target *dm;
        vkd_target_options o = {.ctx_len = e->t->ctx_len};
        REQUIRE(!vkd_target_load(e->ctx, dir, &o, &dm, &err), "%s", err.msg);
        vkd_draft *p;
        REQUIRE(!vkd_draft_ar(dm, 4, &p, &err), "%s", err.msg);
        vkd_spec_result res;
        spec_run(e, p, ids->data, (uint32_t)ids->numel, G, NULL, 0, &res);
        bool same = res.n == G && !memcmp(res.ids, g->data, G * 4);
        CHECK(same, "autoregressive draft %s: output differs from greedy", drafts[i]);
        fprintf(stderr, "  autoregressive draft %-20s gamma 4: tau %.2f, output %s\n", drafts[i],
                res.stats.tau, same ? "== greedy" : "DIFFERENT");
        if (i == 1) /* the target drafting for itself: every step but the last (cut at max_new) commits 5 */
            for (uint32_t s = 0; s + 1 < res.stats.steps; s++)
                CHECK(res.stats.accept[s] == 5, "self-draft step %u committed %u tokens, expected 5", s, res.stats.accept[s]);
        vkd_spec_result_free(&res);
        vkd_draft_free(p);
        vkd_target_free(dm);
    }
    vkd_st_close(f);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures", root);
    env e = {0};
    vkd_error err = {0};
    REQUIRE(!vkd_ctx_create(NULL, &e.ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(e.ctx, &e.rec, &err), "%s", err.msg);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/dflash/target/model", fx);
    vkd_target_options to = {.ctx_len = 160};
    REQUIRE(!vkd_target_load(e.ctx, dir, &to, &e.t, &err), "%s", err.msg);

    check_calls(&e, "draft-b16");
    check_calls(&e, "draft-b4");
    check_spec(&e, "draft-b16", 0, true);
    check_spec(&e, "draft-b4", 0, true);
    check_spec(&e, "draft-b16", 2, false);
    check_spec(&e, "draft-b16", 4, false);
    check_ar(&e);

    /* bad input: block size < 2, a draft against a target of another width */
    vkd_dflash *d;
    vkd_dflash_options bo = {.block_size = 1};
    snprintf(dir, sizeof dir, "%s/dflash/draft-b16/model", fx);
    CHECK(vkd_dflash_load(e.ctx, e.t, dir, &bo, &d, &err) == VKD_ERR_INVALID && strstr(err.msg, "block size"),
          "block size 1 accepted: %s", err.msg);

    {   /* a draft whose target_layer_ids exceed its target's layers */
        vkd_target *small;
        char sdir[4200];
        snprintf(sdir, sizeof sdir, "%s/qwen3-tied-f32/model", fx);
        vkd_target_options so = {.ctx_len = 32};
        REQUIRE(!vkd_target_load(e.ctx, sdir, &so, &small, &err), "%s", err.msg);
        CHECK(vkd_dflash_load(e.ctx, small, dir, NULL, &d, &err) != VKD_OK, "draft accepted for a 2-layer target");
        fprintf(stderr, "  mismatch: %s\n", err.msg);
        vkd_target_free(small);
    }

    d = load_draft(&e, "draft-b4", 0);
    vkd_draft *p;
    REQUIRE(!vkd_draft_dflash(d, &p, &err), "%s", err.msg);
    spec_check_sampling(e.t, e.rec, p, 1000, "dflash draft");
    vkd_draft_free(p);
    vkd_dflash_free(d);
    vkd_target *dm;
    snprintf(dir, sizeof dir, "%s/llama3-f16/model", fx);
    vkd_target_options o = {.ctx_len = e.t->ctx_len};
    REQUIRE(!vkd_target_load(e.ctx, dir, &o, &dm, &err), "%s", err.msg);
    REQUIRE(!vkd_draft_ar(dm, 3, &p, &err), "%s", err.msg);
    spec_check_sampling(e.t, e.rec, p, 1000, "autoregressive draft");
    vkd_draft_free(p);
    vkd_target_free(dm);

    {   /* split-K attention in the target and the draft (vkd_op_attention_split): a context
         * whose profile forces 3 splits, against the same fixtures */
        setenv("VKDRAFT_ATTN_SPLITS", "3", 1);
        env s = {0};
        REQUIRE(!vkd_ctx_create(NULL, &s.ctx, &err) && !vkd_rec_create(s.ctx, &s.rec, &err), "%s", err.msg);
        unsetenv("VKDRAFT_ATTN_SPLITS");
        snprintf(dir, sizeof dir, "%s/dflash/target/model", fx);
        REQUIRE(!vkd_target_load(s.ctx, dir, &to, &s.t, &err), "%s", err.msg);
        CHECK(s.t->attn_part, "no split-K partials in a target on a context that forces splits");
        fprintf(stderr, "  split-K attention (3 splits):\n");
        check_calls(&s, "draft-b16");
        check_spec(&s, "draft-b16", 0, true);
        CHECK(vkd_ctx_validation_count(s.ctx) == 0, "validation (split-K): %s", vkd_ctx_validation_first(s.ctx));
        vkd_target_free(s.t);
        vkd_rec_destroy(s.rec);
        vkd_ctx_destroy(s.ctx);
    }

    CHECK(vkd_ctx_validation_count(e.ctx) == 0, "validation: %s", vkd_ctx_validation_first(e.ctx));
    vkd_target_free(e.t);
    vkd_rec_destroy(e.rec);
    vkd_ctx_destroy(e.ctx);
    return vkd_test_result("test_dflash");
}
