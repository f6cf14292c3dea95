/* test_nonfinite: the methods' checks of what the logits ops read back (vkd_sample.h:
 * vkd_check_tokens / vkd_check_stats / vkd_check_logits), alone and fed by the device ops
 * over a row with an overflowed (NaN, +Inf) logit: each must fail with VKD_ERR_RANGE and the
 * message naming the row; clean input (-Inf included: a masked token) must pass. */
#include <math.h>
#include <string.h>

#include "vkd_sample.h"
#include "vkd_test.h"

#define MSG "logits row %d are not finite (NaN/Inf): the model's activations overflowed"

static void expect_fail(vkd_result r, const vkd_error *err, const char *who, int row, const char *what) {
    char want[256];
    snprintf(want, sizeof want, "%s " MSG, who, row);
    CHECK(r == VKD_ERR_RANGE, "%s: result %d, expected VKD_ERR_RANGE", what, (int)r);
    CHECK(strstr(err->msg, want) != NULL, "%s: message '%s', expected '%s'", what, err->msg, want);
}

static void host_checks(void) {
    vkd_error err = {0};
    int32_t tok[5] = {3, 0, 7, -1, 2};
    CHECK(vkd_check_tokens(tok, 3, 10, "target", &err) == VKD_OK, "clean tokens refused: %s", err.msg);
    expect_fail(vkd_check_tokens(tok, 5, 10, "target", &err), &err, "target", 13, "token -1");
    float st[4 * 3] = {1, 2, 3, -INFINITY, 5, 6, 1, 2, NAN, 0, 0, 0};
    CHECK(vkd_check_stats(st, 2, 3, 3, 0, "draft", &err) == VKD_OK, "clean stats refused: %s", err.msg);
    expect_fail(vkd_check_stats(st, 4, 3, 3, 4, "draft", &err), &err, "draft", 6, "NaN stat");
    float kl[2 * 2] = {0.5f, 0.25f, 0.1f, NAN};
    expect_fail(vkd_check_stats(kl, 2, 2, 2, 0, "guided", &err), &err, "guided", 1, "NaN tvd");
    CHECK(vkd_check_stats(kl, 2, 2, 1, 0, "guided", &err) == VKD_OK, "width 1 read the tvd column");
    float row[1001];
    for (int i = 0; i < 1001; i++) row[i] = (float)(i % 17) - 8.0f;
    row[500] = -INFINITY;
    CHECK(vkd_check_logits(row, 1001, 2, "target", &err) == VKD_OK, "-inf (masked) refused: %s", err.msg);
    row[999] = INFINITY;
    expect_fail(vkd_check_logits(row, 1001, 2, "target", &err), &err, "target", 2, "+inf logit");
    row[999] = 1.0f;
    row[0] = -NAN;
    expect_fail(vkd_check_logits(row, 1001, 3, "draft", &err), &err, "draft", 3, "-nan logit");
}

/* The chain a method runs: an op over logits rows, the read-back, the check. */
static void device_chain(void) {
    enum { R = 3, N = 1001 };
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    float x[R * N];
    for (int i = 0; i < R * N; i++) x[i] = (float)((i * 37) % 101) * 0.05f;
    x[1 * N + 77] = NAN;
    x[2 * N + 1000] = INFINITY;
    vkd_tensor *tx, *ti, *ts, *tid;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, R, N, "logits", &tx, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, R, "tok", &ti, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, R, 3, "stats", &ts, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, R, "ids", &tid, &err), "%s", err.msg);
    int32_t ids[R] = {5, 6, 7}, tok[R];
    float st[R * 3];
    REQUIRE(!vkd_tensor_upload(tx, 0, x, sizeof x, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tid, 0, ids, sizeof ids, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_sample_params sp = {.temperature = 1.0f, .seed = 5};
    vkd_rec_begin(rec);
    vkd_sample_record(rec, ti, tx, 0, R, N, &sp, 0);
    vkd_op_token_stats(rec, ts, tx, 0, tid, R, N);
    vkd_rec_read(rec, ti, 0, tok, sizeof tok);
    vkd_rec_read(rec, ts, 0, st, sizeof st);
    REQUIRE(vkd_rec_submit(rec) == VKD_OK, "%s", vkd_rec_error(rec)->msg);
    CHECK(vkd_check_tokens(tok, 1, 0, "target", &err) == VKD_OK, "clean row 0 refused: %s", err.msg);
    expect_fail(vkd_check_tokens(tok, R, 40, "target", &err), &err, "target", 41, "sampled NaN row");
    expect_fail(vkd_check_tokens(tok + 2, 1, 42, "target", &err), &err, "target", 42, "sampled +Inf row");
    CHECK(vkd_check_stats(st, 1, 3, 3, 0, "target", &err) == VKD_OK, "clean stats refused: %s", err.msg);
    expect_fail(vkd_check_stats(st, R, 3, 3, 0, "target", &err), &err, "target", 1, "token_stats NaN row");
    fprintf(stderr, "  device chain: %s\n", err.msg);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(tx); vkd_tensor_destroy(ti); vkd_tensor_destroy(ts); vkd_tensor_destroy(tid);
    vkd_ctx_destroy(ctx);
}

int main(void) {
    host_checks();
    device_chain();
    return vkd_test_result("test_nonfinite");
}
