/* test_exit_train: early-exit head distillation (models/exit_train.c) against the float64
 * PyTorch reference tools/reference/exit_ref.py (run by test_exit_train.py on a generated
 * odd-sized target): the batch loss (KL at T scaled by T^2, optional CE; first token and
 * label-less rows masked; two sequences accumulated), the gradients of the head's norm and
 * LM head, and K AdamW updates with clipping (loss per step, final parameters). Also: the
 * loss decreases. With BLOCK = 1 the head also trains its copy of block LAYER (Option B,
 * vkd_exit_add_block): the block's gradients and updated tensors are checked too, and the
 * resume check moves the block with the head.
 * usage: test_exit_train TARGET_DIR EXPECTED.safetensors LAYER T CE(0|1) STEPS LR CLIP SEQS [BLOCK] */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "vkd_exit.h"
#include "vkd_test.h"

static double rel_report(const char *what, const float *a, const float *b, size_t n, double tol) {
    double e = fixture_rel_err(a, b, n);
    fprintf(stderr, "  %-28s max err %.3g (relative to 1 + max |ref|)\n", what, e);
    CHECK(e < tol, "%s: error %g over %g", what, e, tol);
    return e;
}

/* The block's tensors (grads: their gradients) against the reference's <prefix><name>. */
static void check_block(const vkd_exit *e, vkd_st_file *f, const char *prefix, bool grads) {
    vkd_exit_block_tensor bt[VKD_EXIT_BLOCK_MAX];
    uint32_t nb = vkd_exit_block_tensors(e, bt);
    vkd_error err = {0};
    for (uint32_t i = 0; i < nb; i++) {
        size_t n = (bt[i].rows ? bt[i].rows : 1) * bt[i].cols;
        float *a = malloc(n * 4);
        REQUIRE(a && !vkd_tensor_download(grads ? bt[i].grad : bt[i].w, 0, a, n * 4, &err), "%s", err.msg);
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, bt[i].name);
        const vkd_st_tensor *want = fixture_get(f, name);
        REQUIRE(want->numel == n, "%s: %zu values in the reference, %zu here", name, (size_t)want->numel, n);
        rel_report(name, a, want->data, n, 1e-4);
        free(a);
    }
}

/* Copies the block's tensors of a into b (resume); VKD_OK without blocks. */
static vkd_result copy_block(const vkd_exit *a, vkd_exit *b, vkd_error *err) {
    vkd_exit_block_tensor ta[VKD_EXIT_BLOCK_MAX], tb[VKD_EXIT_BLOCK_MAX];
    uint32_t n = vkd_exit_block_tensors(a, ta);
    if (n != vkd_exit_block_tensors(b, tb)) return vkd_fail(err, VKD_ERR_INVALID, "blocks differ in shape");
    vkd_result r = VKD_OK;
    for (uint32_t i = 0; i < n && !r; i++) {
        size_t k = (ta[i].rows ? ta[i].rows : 1) * ta[i].cols * 4;
        void *buf = malloc(k);
        r = buf ? vkd_tensor_download(ta[i].w, 0, buf, k, err) : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        if (!r) r = vkd_tensor_upload(tb[i].w, 0, buf, k, err);
        free(buf);
    }
    return r;
}

/* Whether the blocks of a and b hold the same bits (true without blocks). */
static bool blocks_equal(const vkd_exit *a, const vkd_exit *b) {
    vkd_exit_block_tensor ta[VKD_EXIT_BLOCK_MAX], tb[VKD_EXIT_BLOCK_MAX];
    uint32_t n = vkd_exit_block_tensors(a, ta);
    bool same = n == vkd_exit_block_tensors(b, tb);
    vkd_error err = {0};
    for (uint32_t i = 0; i < n && same; i++) {
        size_t k = (ta[i].rows ? ta[i].rows : 1) * ta[i].cols * 4;
        char *x = malloc(k), *y = malloc(k);
        REQUIRE(x && y && !vkd_tensor_download(ta[i].w, 0, x, k, &err) && !vkd_tensor_download(tb[i].w, 0, y, k, &err),
                "%s", err.msg);
        same = !memcmp(x, y, k);
        free(x);
        free(y);
    }
    return same;
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 10 && argc <= 12,
            "usage: test_exit_train TARGET EXPECTED LAYER T CE STEPS LR CLIP SEQS [BLOCK [DEVICE_LAYOUT]]");
    bool block = argc >= 11 && atoi(argv[10]) != 0;
    bool device_layout = argc >= 12 && atoi(argv[11]) != 0; /* the target's weights as the profile prefers */
    const char *tdir = argv[1];
    uint32_t layer = (uint32_t)atoi(argv[3]), steps = (uint32_t)atoi(argv[6]);
    float T = (float)atof(argv[4]);
    bool ce = atoi(argv[5]) != 0;
    double lr = atof(argv[7]), clip = atof(argv[8]);
    int32_t seqs[8][64];
    uint32_t lens[8] = {0}, nseq = 0;
    for (const char *p = argv[9]; *p && nseq < 8;) {
        char *end;
        long v = strtol(p, &end, 10);
        REQUIRE(end != p && lens[nseq] < 64, "bad SEQS at '%s'", p);
        seqs[nseq][lens[nseq]++] = (int32_t)v;
        p = end;
        if (*p == ';') nseq++;
        if (*p) p++;
    }
    nseq++;
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_exit *e;
    vkd_exit_trainer *tr;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = !device_layout}, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    REQUIRE(!vkd_target_load(ctx, tdir, &(vkd_target_options){.ctx_len = 128}, &t, &err), "%s", err.msg);
    REQUIRE(!vkd_exit_create(t, tdir, layer, &e, &err), "%s", err.msg);
    if (block) REQUIRE(!vkd_exit_add_block(e, tdir, &err), "%s", err.msg);
    vkd_exit_train_options o = {.temperature = T, .ce = ce, .max_rows = 64};
    REQUIRE(!vkd_exit_trainer_create(e, &o, &tr, &err), "%s", err.msg);
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(argv[2], &f, &err), "%s", err.msg);
    uint32_t H = e->hidden, V = e->vocab, scored = 0;
    for (uint32_t s = 0; s < nseq; s++) scored += vkd_exit_train_rows(tr, lens[s]);
    float *rows = malloc(64 * 4), *gn = malloc(H * 4), *gh = malloc((size_t)V * H * 4);
    double first = 0, last = 0;
    for (uint32_t k = 0; k <= steps; k++) {
        double loss = 0;
        vkd_rec_begin(rec);
        vkd_exit_train_zero(rec, tr);
        for (uint32_t s = 0; s < nseq; s++) {
            REQUIRE(!vkd_exit_train_seq(rec, tr, seqs[s], lens[s], 1.0f / scored, rows, &err), "%s", err.msg);
            REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
            for (uint32_t i = 0; i < lens[s]; i++) loss += rows[i];
            vkd_rec_begin(rec);
        }
        char name[32];
        snprintf(name, sizeof name, "loss.%u", k);
        const vkd_st_tensor *want = fixture_get(f, name);
        double w = ((const float *)want->data)[0];
        fprintf(stderr, "  step %u: loss %.7f, reference %.7f\n", k, loss, w);
        CHECK(fabs(loss - w) < 1e-4 * (1 + fabs(w)), "loss at step %u: %.7f vs reference %.7f", k, loss, w);
        if (k == 0) first = loss;
        last = loss;
        if (k == 0) {
            vkd_rec_submit(rec);
            REQUIRE(!vkd_exit_train_grads(tr, gn, gh, &err), "%s", err.msg);
            rel_report("gradient of the norm", gn, fixture_get(f, "grad_norm.weight")->data, H, 1e-4);
            rel_report("gradient of the LM head", gh, fixture_get(f, "grad_lm_head.weight")->data, (size_t)V * H, 1e-4);
            check_block(e, f, "grad_block.", true);
            /* the held-out path: the same loss from the forward alone, gradients untouched */
            double fwd = 0;
            for (uint32_t s = 0; s < nseq; s++) {
                vkd_rec_begin(rec);
                REQUIRE(!vkd_exit_train_loss(rec, tr, seqs[s], lens[s], 1.0f / scored, rows, &err), "%s", err.msg);
                REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
                for (uint32_t i = 0; i < lens[s]; i++) fwd += rows[i];
            }
            CHECK(fabs(fwd - loss) <= 1e-6 * (1 + fabs(loss)), "forward-only loss %.9f vs the training pass's %.9f", fwd,
                  loss);
            float *gn2 = malloc(H * 4), *gh2 = malloc((size_t)V * H * 4);
            REQUIRE(gn2 && gh2 && !vkd_exit_train_grads(tr, gn2, gh2, &err), "%s", err.msg);
            CHECK(!memcmp(gn, gn2, H * 4) && !memcmp(gh, gh2, (size_t)V * H * 4),
                  "vkd_exit_train_loss changed the gradients");
            free(gn2);
            free(gh2);
            vkd_rec_begin(rec);
        }
        if (k == steps) {
            vkd_rec_submit(rec);
            break;
        }
        float norm = 0;
        vkd_optim_params p = {.kind = VKD_OPTIM_ADAMW, .lr = lr, .step = k + 1, .max_grad_norm = clip};
        REQUIRE(!vkd_exit_train_update(rec, tr, &p, &norm, &err), "%s", err.msg);
        REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
        snprintf(name, sizeof name, "grad_global_norm.%u", k);
        double wn = ((const float *)fixture_get(f, name)->data)[0];
        if (clip > 0) CHECK(fabs(norm - wn) < 1e-4 * (1 + wn), "gradient norm at step %u: %g vs %g", k, norm, wn);
    }
    REQUIRE(!vkd_tensor_download(e->norm, 0, gn, H * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_download(e->head, 0, gh, (size_t)V * H * 4, &err), "%s", err.msg);
    rel_report("norm after the updates", gn, fixture_get(f, "norm.weight")->data, H, 1e-4);
    rel_report("LM head after the updates", gh, fixture_get(f, "lm_head.weight")->data, (size_t)V * H, 1e-4);
    check_block(e, f, "block.", false);
    /* resume: one step with a fresh trainer, its head and AdamW state moved into a new head
     * and trainer, the remaining steps there: the same parameters, bit for bit */
    if (steps >= 2) {
        size_t np = (size_t)vkd_exit_train_params(tr);
        float *m = malloc(np * 4), *v = malloc(np * 4), *rn = malloc(H * 4), *rh = malloc((size_t)V * H * 4);
        vkd_exit *e1 = NULL;
        vkd_exit_trainer *t1 = NULL;
        for (uint32_t k = 0; k < steps; k++) {
            if (k == 0 || k == 1) {
                vkd_exit *e2;
                vkd_exit_trainer *t2;
                REQUIRE(!vkd_exit_create(t, tdir, layer, &e2, &err), "%s", err.msg);
                if (block) REQUIRE(!vkd_exit_add_block(e2, tdir, &err), "%s", err.msg);
                REQUIRE(!vkd_exit_trainer_create(e2, &o, &t2, &err), "%s", err.msg);
                if (k == 1) {
                    REQUIRE(!vkd_exit_train_state_get(t1, m, v, &err) && !vkd_tensor_download(e1->norm, 0, rn, H * 4, &err) &&
                                !vkd_tensor_download(e1->head, 0, rh, (size_t)V * H * 4, &err) &&
                                !vkd_exit_train_state_set(t2, m, v, &err) && !vkd_tensor_upload(e2->norm, 0, rn, H * 4, &err) &&
                                !vkd_tensor_upload(e2->head, 0, rh, (size_t)V * H * 4, &err),
                            "%s", err.msg);
                    REQUIRE(!copy_block(e1, e2, &err), "%s", err.msg);
                    vkd_exit_trainer_free(t1);
                    vkd_exit_free(e1);
                }
                e1 = e2;
                t1 = t2;
            }
            vkd_rec_begin(rec);
            vkd_exit_train_zero(rec, t1);
            for (uint32_t s = 0; s < nseq; s++) {
                REQUIRE(!vkd_exit_train_seq(rec, t1, seqs[s], lens[s], 1.0f / scored, rows, &err), "%s", err.msg);
                REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
                vkd_rec_begin(rec);
            }
            vkd_optim_params p = {.kind = VKD_OPTIM_ADAMW, .lr = lr, .step = k + 1, .max_grad_norm = clip};
            float norm = 0;
            REQUIRE(!vkd_exit_train_update(rec, t1, &p, &norm, &err), "%s", err.msg);
            REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
        }
        REQUIRE(!vkd_tensor_download(e1->norm, 0, rn, H * 4, &err), "%s", err.msg);
        REQUIRE(!vkd_tensor_download(e1->head, 0, rh, (size_t)V * H * 4, &err), "%s", err.msg);
        bool same = !memcmp(rn, gn, H * 4) && !memcmp(rh, gh, (size_t)V * H * 4) && blocks_equal(e, e1);
        double d = fixture_rel_err(rh, gh, (size_t)V * H);
        fprintf(stderr, "  resumed after step 1: parameters %s the uninterrupted run's (head max err %.3g)\n",
                same ? "equal" : "differ from", d);
        CHECK(same, "resumed training differs from the uninterrupted run (head max err %g)", d);
        vkd_exit_trainer_free(t1);
        vkd_exit_free(e1);
        free(m);
        free(v);
        free(rn);
        free(rh);
    }
    if (steps) CHECK(last < first, "loss did not decrease: %g -> %g", first, last);
    free(rows);
    free(gn);
    free(gh);
    vkd_st_close(f);
    vkd_exit_trainer_free(tr);
    vkd_exit_free(e);
    vkd_target_free(t);
    REQUIRE(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_exit_train");
}
