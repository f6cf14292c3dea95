/* test_spec_sampled: speculative sampling through vkd_draft gives exactly the ids and
 * acceptance lengths recorded in fixtures/spec_sampled.txt, for the DFlash draft (blocks 4
 * and 16) and the autoregressive draft (another model, gamma 3; the target itself, gamma 4),
 * three warpings (temperature only; top-k 20 + top-p 0.9; top-k 5) and three seeds.
 *
 * What it guards: the refactoring of the proposers into vkd_draft and of host warping into
 * the sampling module (vkd_sample.h) changed no result. The expectation is a regression
 * record, not an independent reference: it was written by the code as of commit 992478d
 * (the vkd_proposer interface and methods/warp.c) with the same configurations; the
 * distribution these outputs follow is checked against the target's own probabilities by
 * test_dflash's chi-square test, greedy speculative output against the PyTorch reference.
 *
 * Also: a prompt prefilled in several chunks (a target with max_rows 5) gives the DFlash draft
 * the same context as one chunk: greedy acceptance lengths equal those of the reference
 * fixture (each chunk's hidden states join the draft's context in the chunk's own
 * submission, before the next chunk overwrites the feature rows). */
#include <stdlib.h>
#include <string.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "vkd_spec.h"
#include "vkd_test.h"

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    char fx[4096], dir[4300];
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures", root);
    snprintf(dir, sizeof dir, "%s/spec_sampled.txt", fx);
    FILE *ef = fopen(dir, "r");
    REQUIRE(ef, "cannot read %s", dir);
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/dflash/target/model", fx);
    vkd_target_options to = {.ctx_len = 160};
    REQUIRE(!vkd_target_load(ctx, dir, &to, &t, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/dflash/draft-b16/expected.safetensors", fx);
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(dir, &f, &err), "%s", err.msg);
    const vkd_st_tensor *ids = fixture_get(f, "input_ids");
    uint32_t P = (uint32_t)ids->numel;
    struct { float T; uint32_t k; float p; } sp[3] = {{0.8f, 0, 1}, {1.0f, 20, 0.9f}, {0.6f, 5, 0}};
    const char *names[4] = {"dflash-b4", "dflash-b16", "ar-llama3-f16-g3", "ar-self-g4"};
    char line[8192], want[8192];
    uint32_t runs = 0, same = 0, tokens = 0;
    for (int di = 0; di < 4; di++) {
        vkd_dflash *d = NULL;
        vkd_target *dm = NULL;
        vkd_draft *g;
        if (di < 2) {
            snprintf(dir, sizeof dir, "%s/dflash/%s/model", fx, di ? "draft-b16" : "draft-b4");
            REQUIRE(!vkd_dflash_load(ctx, t, dir, &(vkd_dflash_options){0}, &d, &err), "%s", err.msg);
            REQUIRE(!vkd_draft_dflash(d, &g, &err), "%s", err.msg);
        } else {
            snprintf(dir, sizeof dir, "%s/%s", fx, di == 2 ? "llama3-f16/model" : "dflash/target/model");
            REQUIRE(!vkd_target_load(ctx, dir, &to, &dm, &err), "%s", err.msg);
            REQUIRE(!vkd_draft_ar(dm, di == 2 ? 3 : 4, &g, &err), "%s", err.msg);
        }
        for (int s = 0; s < 3; s++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                vkd_generate_options go = {.max_new_tokens = 24};
                go.sample = (vkd_sample_params){.temperature = sp[s].T, .top_k = sp[s].k, .top_p = sp[s].p, .seed = seed};
                vkd_spec_result r;
                REQUIRE(!vkd_spec_generate(t, g, rec, ids->data, P, &go, &r, &err), "%s", err.msg);
                int at = snprintf(line, sizeof line, "%s T=%g top_k=%u top_p=%g seed=%llu ids", names[di], sp[s].T,
                                  sp[s].k, sp[s].p, (unsigned long long)seed);
                for (uint32_t i = 0; i < r.n; i++) at += snprintf(line + at, sizeof line - at, " %d", r.ids[i]);
                at += snprintf(line + at, sizeof line - at, " accept");
                for (uint32_t i = 0; i < r.stats.steps; i++)
                    at += snprintf(line + at, sizeof line - at, " %u", r.stats.accept[i]);
                REQUIRE(fgets(want, sizeof want, ef), "expectation file ends before run %u", runs);
                want[strcspn(want, "\n")] = 0;
                runs++;
                tokens += r.n;
                if (!strcmp(line, want)) same++;
                else CHECK(false, "run %u differs:\n  got  %s\n  want %s", runs, line, want);
                vkd_spec_result_free(&r);
            }
        vkd_draft_free(g);
        vkd_dflash_free(d);
        vkd_target_free(dm);
    }
    CHECK(!fgets(want, sizeof want, ef), "expectation file has more runs than the test (%u)", runs);

    /* chunked prefill: acceptance lengths of the reference (greedy, block 16) */
    {
        vkd_target *tc;
        vkd_dflash *d;
        vkd_draft *g;
        snprintf(dir, sizeof dir, "%s/dflash/target/model", fx);
        REQUIRE(!vkd_target_load(ctx, dir, &(vkd_target_options){.ctx_len = 160, .max_rows = 17}, &tc, &err), "%s",
                err.msg);
        snprintf(dir, sizeof dir, "%s/dflash/draft-b16/model", fx);
        REQUIRE(!vkd_dflash_load(ctx, tc, dir, &(vkd_dflash_options){0}, &d, &err), "%s", err.msg);
        REQUIRE(!vkd_draft_dflash(d, &g, &err), "%s", err.msg);
        const vkd_st_tensor *gt = fixture_get(f, "greedy"), *acc = fixture_get(f, "spec.accept");
        vkd_generate_options go = {.max_new_tokens = (uint32_t)gt->numel};
        vkd_spec_result r;
        REQUIRE(!vkd_spec_generate(tc, g, rec, ids->data, P, &go, &r, &err), "%s", err.msg);
        bool ok = r.n == gt->numel && !memcmp(r.ids, gt->data, r.n * 4) && r.stats.steps == acc->numel;
        for (uint32_t i = 0; ok && i < r.stats.steps; i++) ok = (int32_t)r.stats.accept[i] == ((const int32_t *)acc->data)[i];
        CHECK(P > 17 && ok, "prompt of %u tokens in chunks of 17: acceptance lengths differ from the reference", P);
        fprintf(stderr, "  prompt of %u tokens prefilled in chunks of 17: tau %.2f, the reference's acceptance lengths\n", P,
                r.stats.tau);
        vkd_spec_result_free(&r);
        vkd_draft_free(g);
        vkd_dflash_free(d);
        vkd_target_free(tc);
    }
    fprintf(stderr, "  %u/%u sampled speculative runs (%u tokens) identical to the record\n", same, runs, tokens);
    fclose(ef);
    vkd_st_close(f);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_spec_sampled");
}
