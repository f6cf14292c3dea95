/* test_dflash_blocks: DFlash training's one-pass block-sparse forward and backward
 * (vkd_dflash_train_forward_blocks, models/dflash_train.h) against the per-block path
 * (vkd_dflash_train_forward once per anchor, which test_dflash_grad checks against finite
 * differences of a double forward), on a tiny generated pair with odd sizes.
 * usage: test_dflash_blocks TARGET_DIR DRAFT_DIR (see test_dflash_blocks.py).
 * K anchors (repeated ones, the shortest context 1, the longest max_ctx) with blocks
 * [id, MASK...]; random features; a random dout R with every block's row 0 zero (as
 * train-draft's loss leaves it). Full-weight gradients of the whole draft. Checked:
 *   - out rows of the one pass against the K per-block forwards (worst error relative to
 *     the largest |out|) and L = sum(R * out) (relative);
 *   - every gradient (fc and each layer's seven linears, every norm weight, hidden_norm,
 *     norm): one pass against the sum of the K per-block backwards, worst error relative
 *     to the tensor's largest |gradient| (which must not vanish);
 *   - bad input: a context of 0 rows, one beyond max_ctx, more blocks than the pass holds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dflash_train.h"
#include "vkd_test.h"

static unsigned long long seed = 1234;

static float *dlf(const vkd_tensor *t) {
    vkd_error err = {0};
    float *x = malloc(t->bytes);
    REQUIRE(!vkd_tensor_download(t, 0, x, t->bytes, &err), "%s", err.msg);
    return x;
}

/* every gradient tensor of the draft (T's own: hidden_norm, norm) */
static uint32_t grads_of(vkd_dflash *d, vkd_dflash_train *T, const vkd_tensor **g, uint32_t cap) {
    uint32_t n = 0;
    g[n++] = d->fc.grad_w;
    g[n++] = T->grad_hidden_norm;
    g[n++] = T->grad_norm;
    for (uint32_t l = 0; l < d->n_layers && n + 11 <= cap; l++) {
        vkd_layer *L = &d->layers[l];
        vkd_linear *x[7];
        vkd_layer_linears(L, x);
        for (int j = 0; j < 7; j++) g[n++] = x[j]->grad_w;
        g[n++] = L->grad_ln1, g[n++] = L->grad_ln2, g[n++] = L->grad_q_norm, g[n++] = L->grad_k_norm;
    }
    return n;
}

static double worst_rel(const float *a, const float *ref, size_t n, double *scale) {
    double w = 0, s = 0;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - ref[i]);
        if (!(e <= w)) w = isnan(e) ? INFINITY : e;
    }
    *scale = s;
    return s > 0 ? w / s : w;
}

int main(int argc, char **argv) {
    REQUIRE(argc == 3, "usage: test_dflash_blocks TARGET_DIR DRAFT_DIR");
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_target *t;
    vkd_target_options to = {.ctx_len = 64, .max_rows = 32};
    REQUIRE(!vkd_target_load(ctx, argv[1], &to, &t, &err), "%s", err.msg);
    vkd_dflash *d;
    REQUIRE(!vkd_dflash_load(ctx, t, argv[2], NULL, &d, &err), "%s", err.msg);
    enum { K = 7, MAXC = 13 };
    static const uint32_t anchors[K] = {7, 1, 13, 7, 3, 12, 5};
    const uint32_t B = d->block, H = d->hidden, W = d->ntaps * H, R = K * B;
    fprintf(stderr, "draft: hidden %u, %u layers, heads %u/%u of %u, ffn %u, block %u; %u blocks, contexts "
            "up to %u rows\n", H, d->n_layers, d->n_q, d->n_kv, d->head_dim, d->ffn, B, K, MAXC);

    vkd_dflash_train *T1, *TK;
    REQUIRE(!vkd_dflash_train_create(d, MAXC, &T1, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_create_blocks(d, MAXC, K, &TK, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_weight_grads(T1, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_weight_grads(TK, &err), "%s", err.msg);

    float *Ff = malloc((size_t)MAXC * W * 4);
    for (size_t i = 0; i < (size_t)MAXC * W; i++) Ff[i] = (float)vkd_test_rand_normal(&seed);
    vkd_tensor *tf;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, MAXC + 1, W, "features", &tf, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tf, (uint64_t)W * 4, Ff, (size_t)MAXC * W * 4, &err), "%s", err.msg);
    int32_t *blocks = malloc((size_t)R * 4);
    for (uint32_t i = 0; i < R; i++)
        blocks[i] = i % B ? (int32_t)d->mask_id : (int32_t)(vkd_test_rand_u64(&seed) % d->vocab);
    float *Rf = calloc((size_t)R * H, 4);
    for (size_t i = 0; i < (size_t)R * H; i++)
        if (i / H % B) Rf[i] = (float)vkd_test_rand_normal(&seed);
    vkd_tensor *tr, *tr1;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, R, H, "dout", &tr, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, H, "dout1", &tr1, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(tr, 0, Rf, (size_t)R * H * 4, &err), "%s", err.msg);

    /* the reference: one forward / backward per anchor, gradients accumulating */
    float *out1 = malloc((size_t)R * H * 4), *outK = malloc((size_t)R * H * 4);
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_train_zero_grads(T1, rec, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    for (uint32_t b = 0; b < K; b++) {
        REQUIRE(!vkd_tensor_upload(tr1, 0, Rf + (size_t)b * B * H, (size_t)B * H * 4, &err), "%s", err.msg);
        vkd_rec_begin(rec);
        REQUIRE(!vkd_dflash_train_forward(T1, rec, tf, 1, anchors[b], blocks + (size_t)b * B, &err), "%s", err.msg);
        REQUIRE(!vkd_dflash_train_backward(T1, rec, tr1, &err), "%s", err.msg);
        vkd_rec_read(rec, T1->out, 0, out1 + (size_t)b * B * H, (uint64_t)B * H * 4);
        REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    }
    const vkd_tensor *g1[3 + 11 * 16], *gK[3 + 11 * 16];
    uint32_t ng = grads_of(d, T1, g1, 3 + 11 * 16);
    grads_of(d, TK, gK, 3 + 11 * 16);
    float **ref = calloc(ng, sizeof *ref);
    for (uint32_t i = 0; i < ng; i++) {
        REQUIRE(g1[i], "gradient %u missing", i);
        ref[i] = dlf(g1[i]);
    }
    /* the one pass (the draft's shared gradients zeroed again, T1's own norms untouched) */
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_train_zero_grads(TK, rec, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_forward_blocks(TK, rec, tf, 1, K, anchors, blocks, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_train_backward(TK, rec, tr, &err), "%s", err.msg);
    vkd_rec_read(rec, TK->out, 0, outK, (uint64_t)R * H * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);

    double s_out, e_out = worst_rel(outK, out1, (size_t)R * H, &s_out), l1 = 0, lK = 0;
    for (size_t i = 0; i < (size_t)R * H; i++) l1 += (double)Rf[i] * out1[i], lK += (double)Rf[i] * outK[i];
    double e_loss = fabs(lK - l1) / fmax(fabs(l1), 1e-30);
    fprintf(stderr, "one pass vs per block: out worst rel err %.3g (|out| up to %.3g); L = sum(R out) %.9g vs "
            "%.9g, rel err %.3g\n", e_out, s_out, lK, l1, e_loss);
    CHECK(e_out < 1e-5, "one-pass out differs from the per-block path: %.3g", e_out);
    CHECK(e_loss < 1e-5, "one-pass L differs from the per-block path: %.3g", e_loss);
    double g_worst = 0;
    for (uint32_t i = 0; i < ng; i++) {
        float *gk = dlf(gK[i]);
        double sc, e = worst_rel(gk, ref[i], gK[i]->rows * gK[i]->cols, &sc);
        CHECK(e < 1e-5, "%s: one-pass gradient differs from the per-block sum: %.3g", gK[i]->name, e);
        CHECK(sc > 1e-6, "%s: gradients vanish (%.3g): the check would be empty", gK[i]->name, sc);
        g_worst = fmax(g_worst, e);
        free(gk);
    }
    fprintf(stderr, "one pass vs per block: gradients worst rel err %.3g over %u tensors\n", g_worst, ng);

    /* bad input */
    static const uint32_t bad0[2] = {3, 0}, bad1[2] = {3, MAXC + 1};
    vkd_rec_begin(rec);
    CHECK(vkd_dflash_train_forward_blocks(TK, rec, tf, 1, 2, bad0, blocks, &err) == VKD_ERR_INVALID,
          "an empty context accepted");
    CHECK(vkd_dflash_train_forward_blocks(TK, rec, tf, 1, 2, bad1, blocks, &err) == VKD_ERR_INVALID,
          "a context beyond max_ctx accepted");
    CHECK(vkd_dflash_train_forward_blocks(T1, rec, tf, 1, 2, anchors, blocks, &err) == VKD_ERR_INVALID,
          "two blocks in a one-block pass accepted");
    vkd_rec_submit(rec);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));

    for (uint32_t i = 0; i < ng; i++) free(ref[i]);
    free(ref), free(out1), free(outK), free(Rf), free(Ff), free(blocks);
    vkd_dflash_train_free(T1);
    vkd_dflash_train_free(TK);
    vkd_tensor_destroy(tf), vkd_tensor_destroy(tr), vkd_tensor_destroy(tr1);
    vkd_dflash_free(d);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_dflash_blocks");
}
