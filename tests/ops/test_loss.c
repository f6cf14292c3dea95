/* test_loss: the fused LM head + loss (CE and T^2-scaled KL to a teacher, chunked over the
 * vocabulary) against the double reference of ref_train.c, whose gradients are themselves
 * checked by central finite differences. Shapes are odd: vocabularies not a multiple of
 * the chunk, rows not a multiple of the 8-row tile, heads split across bindings (chunk ends
 * follow them), f32/f16/bf16 heads, teacher as logits or as hidden state + head, labels
 * outside the vocabulary (no CE for that row), per-row weights, the real 151936-entry
 * vocabulary. forward_backward (one pass for CE with a frozen head, else both) against the same
 * reference. Also: the scratch must fit one binding; reruns bit-identical, accumulate adds, a few device finite differences.
 * L1 teacher term (DSpark's, teacher_l1) with CE: against ref_lm_loss_l1 the same way, the per-row
 * L1 output too, and a case with p == q (teacher head = student head: L1 exactly 0, no teacher
 * gradient, sign(0) = 0 as in the reference).
 * Bounds (f32 against double): loss |d| <= 2e-5 (1 + |ref|); dH, dW |d| <= 2e-5 (max |ref| + 1e-3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_train.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long rng = 77031;

typedef struct tcase {
    const char *name;
    uint32_t rows, hidden, hidden_t, vocab, chunk;
    vkd_dtype wdt, twdt;
    int teacher;      /* 0 none, 1 logits, 2 head */
    bool labels, roww, dw;
    float T, ce_w, kl_w;
    uint64_t max_binding;
    vkd_layout layout; /* of the head and the teacher head (blocks: compared to row-major too) */
    bool l1;           /* teacher term L1 instead of KL (kl_w is its weight) */
    bool same;         /* teacher head and hidden states = the student's: p == q */
} tcase;

/* The double reference of the case's loss (KL or L1 teacher term). */
static void ref_case(const tcase *c, double *loss, double *l1out, double *dH, double *dW, const double *H,
                     const double *W, const int32_t *lab, const double *rw, const double *tl) {
    if (c->l1)
        ref_lm_loss_l1(loss, l1out, dH, dW, H, W, lab, rw, tl, c->rows, c->hidden, c->vocab, c->ce_w, c->kl_w);
    else
        ref_lm_loss(loss, dH, dW, H, W, lab, rw, tl, c->rows, c->hidden, c->vocab, c->ce_w, c->kl_w, c->T);
}

static vkd_tensor *mk_layout(vkd_ctx *ctx, vkd_dtype dt, uint64_t rows, uint64_t cols, vkd_layout l,
                             const char *name) {
    vkd_tensor *t = op_tensor_layout(ctx, dt, rows, cols, l, name);
    REQUIRE(t->layout == l, "%s: layout %d, asked %d", name, (int)t->layout, (int)l);
    return t;
}

/* Uploads n doubles into a tensor of dtype dt; returns the values as stored (rounded). */
static void up_as(vkd_tensor *t, double *x, size_t n) {
    vkd_error err = {0};
    size_t es = t->dtype == VKD_DTYPE_F32 ? 4 : 2;
    void *buf = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == VKD_DTYPE_F32) {
            ((float *)buf)[i] = (float)x[i];
            x[i] = (float)x[i];
        } else if (t->dtype == VKD_DTYPE_BF16) {
            uint16_t h = vkd_f32_to_bf16((float)x[i]);
            ((uint16_t *)buf)[i] = h;
            x[i] = vkd_bf16_to_f32(h);
        } else {
            uint16_t h = vkd_f32_to_f16((float)x[i]);
            ((uint16_t *)buf)[i] = h;
            x[i] = vkd_f16_to_f32(h);
        }
    }
    REQUIRE(!vkd_tensor_upload(t, 0, buf, n * es, &err), "%s", err.msg);
    free(buf);
}

static float *down(const vkd_tensor *t, size_t n) {
    vkd_error err = {0};
    float *f = malloc(n * 4);
    REQUIRE(!vkd_tensor_download(t, 0, f, n * 4, &err), "%s", err.msg);
    return f;
}

static double worst_rel(const float *got, const double *ref, size_t n, double *scale_out) {
    double scale = 1e-3, worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        double e = isfinite(got[i]) ? fabs(got[i] - ref[i]) / scale : INFINITY;
        if (e > worst) worst = e;
    }
    if (scale_out) *scale_out = scale;
    return worst;
}

/* Central finite differences of the reference's summed loss against its analytic dH/dW. */
static double ref_fd(const tcase *c, double *H, double *W, const int32_t *lab, const double *rw,
                     const double *tl, const double *dH, const double *dW) {
    double *loss = malloc(sizeof(double) * c->rows), worst = 0, eps = 1e-5;
    for (int probe = 0; probe < 12; probe++) {
        bool onw = probe % 2 && dW;
        double *x = onw ? W : H;
        size_t n = onw ? (size_t)c->vocab * c->hidden : (size_t)c->rows * c->hidden;
        size_t i = vkd_test_rand_u64(&rng) % n;
        double x0 = x[i], lp = 0, lm = 0;
        x[i] = x0 + eps;
        ref_case(c, loss, NULL, NULL, NULL, H, W, lab, rw, tl);
        for (uint32_t r = 0; r < c->rows; r++) lp += loss[r];
        x[i] = x0 - eps;
        ref_case(c, loss, NULL, NULL, NULL, H, W, lab, rw, tl);
        for (uint32_t r = 0; r < c->rows; r++) lm += loss[r];
        x[i] = x0;
        double fd = (lp - lm) / (2 * eps), an = onw ? dW[i] : dH[i];
        double e = fabs(fd - an) / (1e-3 + fabs(an));
        if (e > worst) worst = e;
    }
    free(loss);
    return worst;
}

static void run_case(const tcase *c) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_ctx_options o = {.max_binding_bytes = c->max_binding};
    REQUIRE(!vkd_ctx_create(&o, &ctx, &err), "%s", err.msg);
    uint32_t R = c->rows, K = c->hidden, V = c->vocab, KT = c->hidden_t;
    double *H = malloc(sizeof(double) * R * K), *W = malloc(sizeof(double) * V * K);
    double *HT = c->teacher == 2 ? malloc(sizeof(double) * R * KT) : NULL;
    double *WT = c->teacher == 2 ? malloc(sizeof(double) * V * KT) : NULL;
    double *TL = c->teacher ? malloc(sizeof(double) * R * V) : NULL, *rw = malloc(sizeof(double) * R);
    int32_t *lab = malloc(4 * R);
    for (size_t i = 0; i < (size_t)R * K; i++) H[i] = vkd_test_rand_normal(&rng);
    for (size_t i = 0; i < (size_t)V * K; i++) W[i] = vkd_test_rand_normal(&rng) * 0.6;
    for (uint32_t r = 0; r < R; r++) {
        lab[r] = (int32_t)(vkd_test_rand_u64(&rng) % V);
        if (r == 1) lab[r] = -1;
        if (r == 3) lab[r] = (int32_t)V; /* outside: no CE */
        if (r == 4) lab[r] = (int32_t)V - 1;
        rw[r] = 0.25 + vkd_test_rand_uniform(&rng);
    }
    vkd_tensor *th = op_tensor(ctx, VKD_DTYPE_F32, R, K, "h"), *tw = mk_layout(ctx, c->wdt, V, K, c->layout, "w");
    up_as(th, H, (size_t)R * K);
    up_as(tw, W, (size_t)V * K);
    vkd_tensor *ttl = NULL, *tth = NULL, *ttw = NULL;
    if (c->teacher == 2) {
        for (size_t i = 0; i < (size_t)R * KT; i++) HT[i] = vkd_test_rand_normal(&rng);
        for (size_t i = 0; i < (size_t)V * KT; i++) WT[i] = vkd_test_rand_normal(&rng) * 0.5;
        if (c->same) { /* (hidden_t = hidden, same dtype: W is already rounded to it) */
            memcpy(HT, H, sizeof(double) * R * K);
            memcpy(WT, W, sizeof(double) * V * K);
        }
        tth = op_tensor(ctx, VKD_DTYPE_F32, R, KT, "t_h"), ttw = mk_layout(ctx, c->twdt, V, KT, c->layout, "t_w");
        up_as(tth, HT, (size_t)R * KT);
        up_as(ttw, WT, (size_t)V * KT);
        for (uint32_t r = 0; r < R; r++)
            for (uint32_t j = 0; j < V; j++) {
                double s = 0;
                for (uint32_t k = 0; k < KT; k++) s += HT[(size_t)r * KT + k] * WT[(size_t)j * KT + k];
                TL[(size_t)r * V + j] = s;
            }
    } else if (c->teacher == 1) {
        /* teacher logits at rows 2.. of a wider tensor (offset and stride) */
        for (size_t i = 0; i < (size_t)R * V; i++) TL[i] = vkd_test_rand_normal(&rng) * 2.0;
        ttl = op_tensor(ctx, VKD_DTYPE_F32, R + 3, V + 5, "t_logits");
        double *full = calloc((size_t)(R + 3) * (V + 5), sizeof(double));
        for (uint32_t r = 0; r < R; r++)
            for (uint32_t j = 0; j < V; j++) full[(size_t)(r + 2) * (V + 5) + j] = TL[(size_t)r * V + j];
        up_as(ttl, full, (size_t)(R + 3) * (V + 5));
        for (uint32_t r = 0; r < R; r++)
            for (uint32_t j = 0; j < V; j++) TL[(size_t)r * V + j] = full[(size_t)(r + 2) * (V + 5) + j];
        free(full);
    }
    vkd_tensor *tlab = op_tensor(ctx, VKD_DTYPE_I32, 1, R, "labels"), *trw = op_tensor(ctx, VKD_DTYPE_F32, 1, R, "row_w");
    REQUIRE(!vkd_tensor_upload(tlab, 0, lab, 4 * R, &err), "%s", err.msg);
    up_as(trw, rw, R);
    vkd_tensor *tloss = op_tensor(ctx, VKD_DTYPE_F32, 1, R, "loss"), *tdh = op_tensor(ctx, VKD_DTYPE_F32, R, K, "dh");
    vkd_tensor *tdw = c->dw ? op_tensor(ctx, VKD_DTYPE_F32, V, K, "dw") : NULL;
    vkd_tensor *tl1 = c->l1 ? op_tensor(ctx, VKD_DTYPE_F32, 1, R, "l1") : NULL;
    vkd_lm_loss_ws *ws;
    REQUIRE(!vkd_lm_loss_ws_create(ctx, R + 2, c->chunk, c->teacher == 2, &ws, &err), "%s", err.msg);
    vkd_lm_loss_args a = {.rows = R, .h = th, .w = tw, .labels = c->labels ? tlab : NULL,
                          .row_w = c->roww ? trw : NULL, .ce_weight = c->ce_w,
                          .t_logits = ttl, .t_row0 = 2, .t_h = tth, .t_w = ttw, .temperature = c->T,
                          .kl_weight = c->l1 ? 0 : c->kl_w, .teacher_l1 = c->l1, .l1_weight = c->l1 ? c->kl_w : 0,
                          .l1 = tl1, .loss = tloss, .dh = tdh, .dw = tdw};
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_op_lm_loss_forward(rec, ws, &a);
    vkd_op_lm_loss_backward(rec, ws, &a);
    CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: %s", c->name, vkd_rec_error(rec)->msg);
    float *loss = down(tloss, R), *dh = down(tdh, (size_t)R * K);
    float *dw = tdw ? down(tdw, (size_t)V * K) : NULL;

    double ce_w = c->labels ? (c->ce_w ? c->ce_w : 1) : 0, kl_w = c->teacher ? (c->kl_w ? c->kl_w : 1) : 0;
    double T = c->T ? c->T : 1;
    tcase rc = *c;
    rc.ce_w = (float)ce_w, rc.kl_w = (float)kl_w, rc.T = (float)T;
    double *rl = malloc(sizeof(double) * R), *rdh = malloc(sizeof(double) * R * K);
    double *rdw = c->dw ? malloc(sizeof(double) * V * K) : NULL;
    double *rl1 = malloc(sizeof(double) * R);
    ref_case(&rc, rl, rl1, rdh, rdw, H, W, c->labels ? lab : NULL, c->roww ? rw : NULL, TL);
    if (c->l1) {
        float *l1 = down(tl1, R);
        double w1 = 0;
        for (uint32_t r = 0; r < R; r++) w1 = fmax(w1, isfinite(l1[r]) ? fabs(l1[r] - rl1[r]) : INFINITY);
        CHECK(w1 <= 2e-5, "%s: L1 output error %.3g", c->name, w1);
        for (uint32_t r = 0; r < R && c->same; r++)
            CHECK(l1[r] == 0 && rl1[r] == 0, "%s: p == q row %u: L1 %g (reference %g), expected 0", c->name, r,
                  l1[r], rl1[r]);
        fprintf(stderr, "%-22s L1 output error %.2g (row 0: %.4f)\n", c->name, w1, l1[0]);
        free(l1);
    }
    free(rl1);
    double wl = 0;
    for (uint32_t r = 0; r < R; r++) {
        double e = isfinite(loss[r]) ? fabs(loss[r] - rl[r]) / (1 + fabs(rl[r])) : INFINITY;
        if (e > wl) wl = e;
    }
    double sh, sw = 0, wh = worst_rel(dh, rdh, (size_t)R * K, &sh), ww = dw ? worst_rel(dw, rdw, (size_t)V * K, &sw) : 0;
    double fd = ref_fd(&rc, H, W, c->labels ? lab : NULL, c->roww ? rw : NULL, TL, rdh, rdw);
    CHECK(wl <= 2e-5, "%s: loss error %.3g", c->name, wl);
    CHECK(wh <= 2e-5, "%s: dH error %.3g (of max %.3g)", c->name, wh, sh);
    CHECK(ww <= 2e-5, "%s: dW error %.3g (of max %.3g)", c->name, ww, sw);
    /* p == q: every |q_j - p_j| sits at its kink; central differences match the reference's
     * sign(0) = 0 only up to O(eps) (second-order terms of the perturbed q) */
    CHECK(fd <= (c->same ? 1e-3 : 1e-5), "%s: reference gradient vs finite differences %.3g", c->name, fd);

    /* forward_backward: one pass where the case allows it (CE, frozen head: the workspace then
     * holds its label-row scratch), forward + backward otherwise; same bounds, reruns
     * bit-identical */
    bool one = c->labels && !c->teacher && !c->dw;
    float *ol[2], *odh[2];
    for (int run = 0; run < 2; run++) {
        vkd_rec_begin(rec);
        vkd_op_lm_loss_forward_backward(rec, ws, &a);
        CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: forward_backward: %s", c->name, vkd_rec_error(rec)->msg);
        ol[run] = down(tloss, R), odh[run] = down(tdh, (size_t)R * K);
    }
    CHECK((ws->gy != NULL) == one, "%s: one-pass path %s", c->name, one ? "not taken" : "taken");
    double owl = 0, osh, owh = worst_rel(odh[0], rdh, (size_t)R * K, &osh);
    for (uint32_t r = 0; r < R; r++) {
        double e = isfinite(ol[0][r]) ? fabs(ol[0][r] - rl[r]) / (1 + fabs(rl[r])) : INFINITY;
        if (e > owl) owl = e;
    }
    CHECK(owl <= 2e-5, "%s: forward_backward loss error %.3g", c->name, owl);
    CHECK(owh <= 2e-5, "%s: forward_backward dH error %.3g (of max %.3g)", c->name, owh, osh);
    CHECK(!memcmp(ol[0], ol[1], 4 * R) && !memcmp(odh[0], odh[1], 4 * (size_t)R * K),
          "%s: forward_backward rerun not bit-identical", c->name);
    fprintf(stderr, "%-22s forward_backward (%s): loss %.2g, dH %.2g\n", c->name,
            one ? "one pass" : "two passes", owl, owh);
    if (c->layout == VKD_LAYOUT_BLOCKS) {
        /* the same call on row-major copies of the heads: same loss and dH up to f32 summation order */
        vkd_tensor *rw_ = op_tensor(ctx, c->wdt, V, K, "w_rows"), *rtw = ttw ? op_tensor(ctx, c->twdt, V, KT, "t_w_rows") : NULL;
        double *Wc = malloc(sizeof(double) * V * K);
        memcpy(Wc, W, sizeof(double) * V * K);
        up_as(rw_, Wc, (size_t)V * K);
        if (rtw) {
            double *WTc = malloc(sizeof(double) * V * KT);
            memcpy(WTc, WT, sizeof(double) * V * KT);
            up_as(rtw, WTc, (size_t)V * KT);
            free(WTc);
        }
        vkd_lm_loss_args ar = a;
        ar.w = rw_, ar.t_w = rtw;
        vkd_rec_begin(rec);
        vkd_op_lm_loss_forward_backward(rec, ws, &ar);
        CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: row-major: %s", c->name, vkd_rec_error(rec)->msg);
        float *bl = down(tloss, R), *bdh = down(tdh, (size_t)R * K);
        double dl = 0, dd = 0, md = 1e-3;
        for (size_t i = 0; i < (size_t)R * K; i++) md = fmax(md, fabs(bdh[i]));
        for (uint32_t r = 0; r < R; r++) dl = fmax(dl, fabs(bl[r] - ol[0][r]) / (1 + fabs(bl[r])));
        for (size_t i = 0; i < (size_t)R * K; i++) dd = fmax(dd, fabs(bdh[i] - odh[0][i]) / md);
        CHECK(dl <= 1e-5 && dd <= 1e-5, "%s: blocks vs row-major head: loss %.3g, dH %.3g", c->name, dl, dd);
        fprintf(stderr, "%-22s blocks vs row-major: loss %.2g, dH %.2g\n", c->name, dl, dd);
        free(bl), free(bdh), free(Wc);
        vkd_tensor_destroy(rw_), vkd_tensor_destroy(rtw);
    }
    for (int run = 0; run < 2; run++) free(ol[run]), free(odh[run]);

    /* rerun bit-identical; accumulate doubles the gradients */
    vkd_rec_begin(rec);
    vkd_op_lm_loss_forward(rec, ws, &a);
    vkd_op_lm_loss_backward(rec, ws, &a);
    vkd_lm_loss_args acc = a;
    acc.accumulate = true;
    vkd_op_lm_loss_backward(rec, ws, &acc);
    CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: %s", c->name, vkd_rec_error(rec)->msg);
    float *loss2 = down(tloss, R), *dh2 = down(tdh, (size_t)R * K);
    CHECK(!memcmp(loss, loss2, 4 * R), "%s: rerun loss not bit-identical", c->name);
    /* the second backward adds chunk by chunk onto the first: equal up to f32 rounding */
    bool dbl = true;
    for (size_t i = 0; i < (size_t)R * K; i++) dbl &= fabs(dh2[i] - 2 * dh[i]) <= 1e-6 * sh;
    CHECK(dbl, "%s: accumulate did not add the same gradient", c->name);
    if (dw) {
        float *dw2 = down(tdw, (size_t)V * K);
        bool d2 = true;
        for (size_t i = 0; i < (size_t)V * K; i++) d2 &= dw2[i] == 2 * dw[i]; /* one add per element */
        CHECK(d2, "%s: accumulate did not add the same head gradient", c->name);
        free(dw2);
    }
    /* device finite differences on two hidden coordinates (f32: loose) */
    double wdev = 0;
    for (int probe = 0; probe < 2 && R * K < 20000; probe++) {
        size_t i = vkd_test_rand_u64(&rng) % ((size_t)R * K);
        double hstep = 1e-2, sum[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double *H2 = malloc(sizeof(double) * R * K);
            memcpy(H2, H, sizeof(double) * R * K);
            H2[i] += sgn ? -hstep : hstep;
            up_as(th, H2, (size_t)R * K);
            vkd_rec_begin(rec);
            vkd_op_lm_loss_forward(rec, ws, &a);
            CHECK(vkd_rec_submit(rec) == VKD_OK, "%s: %s", c->name, vkd_rec_error(rec)->msg);
            float *l = down(tloss, R);
            sum[sgn] = 0;
            for (uint32_t r = 0; r < R; r++) sum[sgn] += l[r];
            free(l);
            free(H2);
        }
        double fdv = (sum[0] - sum[1]) / (2 * hstep), e = fabs(fdv - dh[i]) / (1e-2 + fabs(dh[i]));
        if (e > wdev) wdev = e;
    }
    CHECK(wdev <= 2e-2, "%s: device finite differences off by %.3g", c->name, wdev);
    fprintf(stderr, "%-22s rows %u hidden %u vocab %u chunk %u: loss %.2g, dH %.2g, dW %.2g, ref FD %.2g, "
            "device FD %.2g\n", c->name, R, K, V, c->chunk, wl, wh, ww, fd, wdev);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    free(loss), free(dh), free(dw), free(loss2), free(dh2), free(rl), free(rdh), free(rdw);
    free(H), free(W), free(HT), free(WT), free(TL), free(rw), free(lab);
    vkd_rec_destroy(rec);
    vkd_lm_loss_ws_destroy(ws);
    vkd_tensor *ts[] = {th, tw, ttl, tth, ttw, tlab, trw, tloss, tdh, tdw, tl1};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vkd_tensor_destroy(ts[i]);
    vkd_ctx_destroy(ctx);
}

static void bad_input(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){0}, &ctx, &err), "%s", err.msg);
    vkd_tensor *h = op_tensor(ctx, VKD_DTYPE_F32, 3, 8, "h"), *w = op_tensor(ctx, VKD_DTYPE_BF16, 20, 8, "w");
    vkd_tensor *w9 = op_tensor(ctx, VKD_DTYPE_F32, 20, 9, "w9"), *loss = op_tensor(ctx, VKD_DTYPE_F32, 1, 3, "loss");
    vkd_tensor *lab = op_tensor(ctx, VKD_DTYPE_I32, 1, 3, "labels"), *dwb = op_tensor(ctx, VKD_DTYPE_BF16, 20, 8, "dw");
    vkd_lm_loss_ws *ws;
    REQUIRE(!vkd_lm_loss_ws_create(ctx, 3, 7, false, &ws, &err), "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_lm_loss_args ok = {.rows = 3, .h = h, .w = w, .labels = lab, .loss = loss, .dh = h};
    vkd_tensor *wblk = mk_layout(ctx, VKD_DTYPE_BF16, 20, 8, VKD_LAYOUT_BLOCKS, "w_blocks");
    vkd_tensor *dwblk = mk_layout(ctx, VKD_DTYPE_F32, 20, 8, VKD_LAYOUT_BLOCKS, "dw_blocks");
    vkd_tensor *tlg = op_tensor(ctx, VKD_DTYPE_F32, 3, 20, "t_logits");
    vkd_lm_loss_args bad[10];
    for (int i = 0; i < 10; i++) bad[i] = ok;
    bad[0].labels = NULL;          /* no CE, no teacher */
    bad[1].rows = 4;               /* more rows than the workspace */
    bad[2].w = w9;                 /* head width != hidden */
    bad[3].temperature = -1;
    bad[4].dw = dwb;               /* head gradient must be f32 */
    bad[5].t_h = h;                /* teacher head without workspace room */
    bad[6].w = wblk;               /* texel-block head, workspace chunk 7 not a multiple of 256 */
    bad[7].dw = dwblk;             /* head gradient must be row-major */
    bad[8].teacher_l1 = true;      /* L1 teacher term without a teacher */
    bad[9].teacher_l1 = true, bad[9].t_logits = tlg, bad[9].temperature = 2; /* L1 needs T = 1 */
    for (int i = 0; i < 10; i++) {
        vkd_rec_begin(rec);
        if (i == 4 || i == 7) vkd_op_lm_loss_backward(rec, ws, &bad[i]);
        else vkd_op_lm_loss_forward(rec, ws, &bad[i]);
        CHECK(vkd_rec_submit(rec) != VKD_OK, "bad lm_loss input %d accepted", i);
        fprintf(stderr, "  rejected: %s\n", vkd_rec_error(rec)->msg);
        vkd_rec_error(rec)->code = VKD_OK;
    }
    vkd_rec_destroy(rec);
    vkd_lm_loss_ws_destroy(ws);
    vkd_ctx *small;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.max_binding_bytes = 4096}, &small, &err), "%s", err.msg);
    CHECK(vkd_lm_loss_ws_create(small, 16, 128, false, &ws, &err) == VKD_ERR_RANGE, "split scratch accepted");
    fprintf(stderr, "  rejected: %s\n", err.msg);
    vkd_ctx_destroy(small);
    vkd_tensor *ts[] = {h, w, w9, loss, lab, dwb, wblk, dwblk, tlg};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vkd_tensor_destroy(ts[i]);
    vkd_ctx_destroy(ctx);
}

int main(void) {
    static const tcase cases[] = {
        {"ce+kl_logits f32 dW", 5, 13, 0, 101, 16, VKD_DTYPE_F32, 0, 1, true, true, true, 2.0f, 0.7f, 0.5f, 0},
        {"kl_head bf16/f16", 3, 24, 10, 77, 8, VKD_DTYPE_BF16, VKD_DTYPE_F16, 2, false, true, false, 1.5f, 0, 0, 0},
        {"ce f16 split dW", 9, 16, 0, 200, 23, VKD_DTYPE_F16, 0, 0, true, false, true, 0, 0, 0, 1024},
        {"ce+kl_head split", 11, 20, 12, 131, 8, VKD_DTYPE_BF16, VKD_DTYPE_F32, 2, true, true, true, 0.8f, 1, 2, 1600},
        {"vocab 151936 bf16", 3, 64, 0, 151936, 0, VKD_DTYPE_BF16, 0, 1, true, true, false, 2.0f, 0, 0, 0},
        /* CE with a frozen head: forward_backward's one-pass path (vec4 and scalar hidden) */
        {"ce bf16 split 1pass", 11, 20, 0, 203, 16, VKD_DTYPE_BF16, 0, 0, true, true, false, 0, 0.7f, 0, 1600},
        {"ce f16 odd 1pass", 9, 13, 0, 101, 23, VKD_DTYPE_F16, 0, 0, true, false, false, 0, 0, 0, 0},
        {"ce vocab 151936 1pass", 9, 32, 0, 151936, 0, VKD_DTYPE_BF16, 0, 0, true, true, false, 0, 0, 0, 0},
        /* heads in the texel block layout (loss_logits_blocks, loss_dh_blocks): odd hidden (tail
         * texel), heads split across bindings, f32/f16/bf16, teacher head, the real vocabulary */
        {"blocks ce+kl bf16 odd dW", 5, 13, 0, 601, 256, VKD_DTYPE_BF16, 0, 1, true, true, true, 2.0f, 0.7f, 0.5f, 0,
         VKD_LAYOUT_BLOCKS},
        {"blocks kl_head bf16/f16", 3, 24, 10, 77, 256, VKD_DTYPE_BF16, VKD_DTYPE_F16, 2, false, true, false, 1.5f, 0,
         0, 0, VKD_LAYOUT_BLOCKS},
        {"blocks ce f16 split 1p", 11, 20, 0, 700, 256, VKD_DTYPE_F16, 0, 0, true, true, false, 0, 0.7f, 0, 30000,
         VKD_LAYOUT_BLOCKS},
        {"blocks ce f32 odd 1p", 9, 13, 0, 300, 512, VKD_DTYPE_F32, 0, 0, true, false, false, 0, 0, 0, 0,
         VKD_LAYOUT_BLOCKS},
        {"blocks vocab 151936 1p", 9, 32, 0, 151936, 0, VKD_DTYPE_BF16, 0, 0, true, true, false, 0, 0, 0, 0,
         VKD_LAYOUT_BLOCKS},
        /* the L1 teacher term (DSpark: ce_w 0.1, l1_w 0.9), teacher as head or logits */
        {"ce+l1_head bf16 split dW", 11, 20, 12, 131, 8, VKD_DTYPE_BF16, VKD_DTYPE_F32, 2, true, true, true, 0, 0.1f,
         0.9f, 1600, VKD_LAYOUT_ROWS, true, false},
        {"l1_logits f16 odd", 5, 13, 0, 101, 16, VKD_DTYPE_F16, 0, 1, false, true, false, 1.0f, 0, 0, 0,
         VKD_LAYOUT_ROWS, true, false},
        {"ce+l1 p==q f32 dW", 9, 16, 16, 77, 23, VKD_DTYPE_F32, VKD_DTYPE_F32, 2, true, true, true, 0, 0.1f, 0.9f, 0,
         VKD_LAYOUT_ROWS, true, true},
        {"blocks ce+l1_head bf16", 5, 13, 10, 601, 256, VKD_DTYPE_BF16, VKD_DTYPE_BF16, 2, true, true, false, 0, 0.1f,
         0.9f, 0, VKD_LAYOUT_BLOCKS, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    bad_input();
    return vkd_test_result("test_loss");
}
