/* train_draft_logits: the draft logits of one block, for test_train_draft.py to compare with
 * tools/reference (PyTorch float64) on a folder written by `vkdraft train-draft`.
 * usage: train_draft_logits TARGET_DIR DRAFT_DIR OUT.safetensors ID,ID,...
 * Context: the target over ids[0 .. n-1) with taps; block [ids[n-1], MASK x (B-1)] at
 * position n-1. Writes "logits" [B-1, V] f32 (predictions for positions n .. n+B-2). */
#include <stdlib.h>
#include <string.h>

#include "st_write.h"
#include "vkd_dflash.h"
#include "vkd_test.h"

int main(int argc, char **argv) {
    REQUIRE(argc == 5, "usage: train_draft_logits TARGET_DIR DRAFT_DIR OUT.safetensors ID,ID,...");
    int32_t ids[512];
    uint32_t n = 0;
    for (char *s = argv[4]; *s && n < 512;) {
        ids[n++] = (int32_t)strtol(s, &s, 10);
        if (*s == ',') s++;
    }
    REQUIRE(n >= 2, "need at least 2 ids");
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    vkd_target *t;
    vkd_target_options to = {.ctx_len = n + 64};
    REQUIRE(!vkd_target_load(ctx, argv[1], &to, &t, &err), "%s", err.msg);
    vkd_dflash *d;
    REQUIRE(!vkd_dflash_load(ctx, t, argv[2], NULL, &d, &err), "%s", err.msg);
    vkd_tensor *feats;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, n, (uint64_t)d->ntaps * d->hidden, "features", &feats, &err),
            "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    const uint32_t B = d->block, V = d->vocab;
    int32_t *block = malloc(B * 4);
    block[0] = ids[n - 1];
    for (uint32_t i = 1; i < B; i++) block[i] = d->mask_id;
    float *logits = malloc((size_t)(B - 1) * V * 4);
    vkd_target_step st = {.ids = ids, .m = n - 1, .tap_layers = d->tap_layers, .ntaps = d->ntaps,
                          .features = feats, .feat_row0 = 0};
    vkd_rec_begin(rec);
    REQUIRE(!vkd_target_step_record(t, rec, &st, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_context_record(d, rec, feats, 0, n - 1, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_block_record(d, rec, block, &err), "%s", err.msg);
    vkd_rec_read(rec, d->logits, 0, logits, (uint64_t)(B - 1) * V * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    vkd_st_out o = {"logits", VKD_DTYPE_F32, 2, {B - 1, V}, logits};
    REQUIRE(!vkd_st_write(argv[3], &o, 1, NULL, &err), "%s", err.msg);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    free(block), free(logits);
    vkd_tensor_destroy(feats);
    vkd_rec_destroy(rec);
    vkd_dflash_free(d);
    vkd_target_free(t);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("train_draft_logits");
}
