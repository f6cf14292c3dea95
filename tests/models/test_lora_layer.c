/* test_lora_layer: the linear layer with a LoRA adapter and the decoder layer's
 * keep-activations mode (models/layer.h).
 *   - a linear with a rank-3 adapter (non-zero A and B) against a plain-C double
 *     reference y = x W^T + (alpha/r) (x A^T) B^T, odd shapes, with and without accumulate;
 *   - zero B: every adapted projection of the DFlash draft (fc and all seven linears of
 *     every layer, A non-zero) leaves the draft logits bit-identical to no adapter;
 *   - one decoder layer in keep-activations mode gives the same output as inference mode
 *     (bit for bit), and its saved log-sum-exp matches a double reference computed from the
 *     saved q and keys. */
#include <string.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "vkd_dflash.h"
#include "vkd_test.h"

static char fx[4096];
static unsigned long long rng = 0x1234567ULL;

static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * vkd_test_rand_normal(&rng));
}

static vkd_tensor *upload(vkd_ctx *ctx, uint64_t r, uint64_t c, const float *x, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, r, c, name, &t, &err), "%s", err.msg);
    if (x) REQUIRE(!vkd_tensor_upload(t, 0, x, r * c * 4, &err), "%s", err.msg);
    return t;
}

static void check_linear(vkd_ctx *ctx, vkd_rec *rec, uint32_t M, uint32_t K, uint32_t N,
                         uint32_t R, bool acc) {
    vkd_error err = {0};
    float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4), *a = malloc((size_t)R * K * 4),
          *b = malloc((size_t)N * R * 4), *y0 = malloc((size_t)M * N * 4), *y = malloc((size_t)M * N * 4);
    fill(x, (size_t)M * K, 1), fill(w, (size_t)N * K, 0.3), fill(a, (size_t)R * K, 0.3);
    fill(b, (size_t)N * R, 0.3), fill(y0, (size_t)M * N, 1);
    vkd_linear lin = {.w = upload(ctx, N, K, w, "w")};
    const float alpha = 5.0f;
    REQUIRE(!vkd_linear_lora_attach(ctx, &lin, R, alpha, M + 2, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(lin.lora_a, 0, a, (size_t)R * K * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(lin.lora_b, 0, b, (size_t)N * R * 4, &err), "%s", err.msg);
    /* room for 3 more rows than the adapter takes (the bad-input check below) */
    vkd_tensor *tx = upload(ctx, M + 3, K, NULL, "x"), *ty = upload(ctx, M + 3, N, NULL, "y");
    REQUIRE(!vkd_tensor_upload(tx, 0, x, (size_t)M * K * 4, &err), "%s", err.msg);
    REQUIRE(!vkd_tensor_upload(ty, 0, y0, (size_t)M * N * 4, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    vkd_linear_forward(rec, ty, 0, tx, 0, &lin, M, acc);
    vkd_rec_read(rec, ty, 0, y, (uint64_t)M * N * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    double worst = 0, s = alpha / (double)R;
    for (uint32_t i = 0; i < M; i++)
        for (uint32_t n = 0; n < N; n++) {
            double ref = acc ? y0[(size_t)i * N + n] : 0;
            for (uint32_t k = 0; k < K; k++) ref += (double)x[(size_t)i * K + k] * w[(size_t)n * K + k];
            for (uint32_t r = 0; r < R; r++) {
                double t = 0;
                for (uint32_t k = 0; k < K; k++) t += (double)x[(size_t)i * K + k] * a[(size_t)r * K + k];
                ref += s * t * b[(size_t)n * R + r];
            }
            double e = fabs(y[(size_t)i * N + n] - ref) / (1 + fabs(ref));
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    fprintf(stderr, "linear+lora %ux%u <- %u rows, rank %u%s: worst rel err %.3g\n", N, K, M, R,
            acc ? " (accumulate)" : "", worst);
    CHECK(worst < 2e-5, "linear with LoRA: error %.3g", worst);
    /* more rows than the adapter was attached for: a clear error */
    vkd_rec_begin(rec);
    CHECK(vkd_linear_forward(rec, ty, 0, tx, 0, &lin, M + 3, false) != VKD_OK &&
              strstr(vkd_rec_error(rec)->msg, "LoRA"), "rows beyond the adapter accepted");
    vkd_rec_submit(rec);
    vkd_linear_lora_detach(&lin);
    vkd_tensor_destroy(lin.w), vkd_tensor_destroy(tx), vkd_tensor_destroy(ty);
    free(x), free(w), free(a), free(b), free(y0), free(y);
}

/* draft logits of call1 of the fixture */
static void draft_logits(vkd_rec *rec, vkd_dflash *d, vkd_st_file *f, float *out) {
    vkd_error err = {0};
    const vkd_st_tensor *F = fixture_get(f, "call1.features");
    uint32_t n = (uint32_t)F->shape[0];
    vkd_tensor *ft = upload(d->ctx, n, (uint64_t)F->shape[1], F->data, "features");
    REQUIRE(!vkd_dflash_crop(d, 0, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    REQUIRE(!vkd_dflash_context_record(d, rec, ft, 0, n, &err), "%s", err.msg);
    REQUIRE(!vkd_dflash_block_record(d, rec, fixture_get(f, "call1.block")->data, &err), "%s", err.msg);
    vkd_rec_read(rec, d->logits, 0, out, (uint64_t)(d->block - 1) * d->vocab * 4);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    vkd_tensor_destroy(ft);
}

static void attach(vkd_ctx *ctx, vkd_linear *lin, uint32_t rows) {
    vkd_error err = {0};
    REQUIRE(!vkd_linear_lora_attach(ctx, lin, 3, 6.0f, rows, &err), "%s", err.msg);
    size_t n = lin->lora_a->rows * lin->lora_a->cols;
    float *a = malloc(n * 4);
    fill(a, n, 0.5);
    REQUIRE(!vkd_tensor_upload(lin->lora_a, 0, a, n * 4, &err), "%s", err.msg);
    free(a);
}

static void check_zero_b(vkd_ctx *ctx, vkd_rec *rec, vkd_target *t) {
    vkd_error err = {0};
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/dflash/draft-b4/model", fx);
    vkd_dflash *d;
    REQUIRE(!vkd_dflash_load(ctx, t, dir, NULL, &d, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/dflash/draft-b4/expected.safetensors", fx);
    vkd_st_file *f;
    REQUIRE(!vkd_st_open(dir, &f, &err), "%s", err.msg);
    size_t n = (size_t)(d->block - 1) * d->vocab;
    float *l0 = malloc(n * 4), *l1 = malloc(n * 4);
    draft_logits(rec, d, f, l0);
    uint32_t rows = d->max_ctx_rows > d->block ? d->max_ctx_rows : d->block;
    attach(ctx, &d->fc, rows);
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_linear *lin[7];
        vkd_layer_linears(&d->layers[l], lin);
        for (int j = 0; j < 7; j++) attach(ctx, lin[j], rows);
    }
    draft_logits(rec, d, f, l1);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&l0[i], &l1[i], 4) != 0;
    fprintf(stderr, "draft with zero-B rank-3 adapters on all %u linears: %zu of %zu logits differ\n",
            1 + 7 * d->n_layers, diff, n);
    CHECK(diff == 0, "a zero-B adapter changed %zu logits", diff);
    /* and a non-zero B does change them (the adapter is really in the path) */
    float one = 0.25f;
    REQUIRE(!vkd_tensor_upload(d->layers[0].wv.lora_b, 0, &one, 4, &err), "%s", err.msg);
    draft_logits(rec, d, f, l1);
    diff = 0;
    for (size_t i = 0; i < n; i++) diff += l0[i] != l1[i];
    CHECK(diff > n / 2, "a non-zero B changed only %zu of %zu logits", diff, n);
    vkd_st_close(f);
    vkd_dflash_free(d);
    free(l0), free(l1);
}

/* one target layer in inference and in keep-activations mode */
static void check_keep(vkd_ctx *ctx, vkd_rec *rec, vkd_target *t) {
    vkd_error err = {0};
    const uint32_t m = 7, H = t->hidden, D = t->head_dim, KV = t->n_kv * D, nq = t->n_q;
    const vkd_layer_dims dims = {H, t->n_q, t->n_kv, D, t->ffn, t->qk_norm};
    vkd_layer *L = &t->layers[1];
    float *x = malloc((size_t)m * H * 4), *y0 = malloc((size_t)m * H * 4), *y1 = malloc((size_t)m * H * 4);
    fill(x, (size_t)m * H, 1);
    vkd_tensor *tx = upload(ctx, m, H, x, "x");
    vkd_layer_acts keep;
    REQUIRE(!vkd_layer_acts_create(ctx, &dims, m, &keep, &err), "%s", err.msg);
    const vkd_layer_acts inf = {.a1 = t->a, .q_raw = t->q, .k_raw = t->k, .q = t->q, .k = t->k,
                                .v = t->v, .o = t->o, .a2 = t->a, .g = t->g, .u = t->u, .h = t->g};
    const uint32_t pos = 3; /* three earlier cache rows (whatever they hold) are attended too */
    for (int mode = 0; mode < 2; mode++) {
        REQUIRE(!vkd_tensor_upload(tx, 0, x, (size_t)m * H * 4, &err), "%s", err.msg);
        vkd_layer_step s = {.m = m, .pos = pos, .causal = mode == 0, .kc = L->kc, .vc = L->vc,
                            .inv_freq = t->inv_freq, .eps = (float)t->cfg.rms_norm_eps};
        for (int keepmode = 0; keepmode < 2; keepmode++) {
            REQUIRE(!vkd_tensor_upload(tx, 0, x, (size_t)m * H * 4, &err), "%s", err.msg);
            vkd_rec_begin(rec);
            vkd_layer_forward(rec, L, &dims, tx, keepmode ? &keep : &inf, &s);
            vkd_rec_read(rec, tx, 0, keepmode ? y1 : y0, (uint64_t)m * H * 4);
            REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
        }
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)m * H; i++) diff += memcmp(&y0[i], &y1[i], 4) != 0;
        CHECK(diff == 0, "keep-activations mode changed %zu outputs", diff);
        /* lse from the saved q and the cache's keys, double */
        uint32_t n = pos + m;
        float *q = malloc((size_t)m * nq * D * 4), *k = malloc((size_t)n * KV * 4), *lse = malloc((size_t)m * nq * 4);
        REQUIRE(!vkd_tensor_download(keep.q, 0, q, (size_t)m * nq * D * 4, &err), "%s", err.msg);
        REQUIRE(!vkd_tensor_download(L->kc, 0, k, (size_t)n * KV * 4, &err), "%s", err.msg);
        REQUIRE(!vkd_tensor_download(keep.lse, 0, lse, (size_t)m * nq * 4, &err), "%s", err.msg);
        double worst = 0;
        for (uint32_t i = 0; i < m; i++)
            for (uint32_t h = 0; h < nq; h++) {
                uint32_t g = h / (nq / t->n_kv), nk = mode == 0 ? pos + i + 1 : n;
                double mx = -1e300, sum = 0, sc[512];
                for (uint32_t j = 0; j < nk; j++) {
                    double dot = 0;
                    for (uint32_t c = 0; c < D; c++)
                        dot += (double)q[((size_t)i * nq + h) * D + c] * k[(size_t)j * KV + g * D + c];
                    sc[j] = dot / sqrt((double)D);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (uint32_t j = 0; j < nk; j++) sum += exp(sc[j] - mx);
                double e = fabs(lse[(size_t)i * nq + h] - (mx + log(sum)));
                if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
            }
        fprintf(stderr, "keep-activations layer (%s): outputs identical, lse worst abs err %.3g\n",
                mode == 0 ? "causal" : "non-causal", worst);
        CHECK(worst < 1e-5, "lse error %.3g", worst);
        free(q), free(k), free(lse);
    }
    vkd_layer_acts_free(&keep);
    vkd_tensor_destroy(tx);
    free(x), free(y0), free(y1);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    snprintf(fx, sizeof fx, "%s/tests/models/fixtures", root);
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    REQUIRE(!vkd_ctx_create(NULL, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    check_linear(ctx, rec, 5, 29, 37, 3, false);
    check_linear(ctx, rec, 1, 67, 13, 3, true);
    check_linear(ctx, rec, 40, 33, 21, 5, true);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/dflash/target/model", fx);
    vkd_target *t;
    vkd_target_options to = {.ctx_len = 64, .max_rows = 32};
    REQUIRE(!vkd_target_load(ctx, dir, &to, &t, &err), "%s", err.msg);
    check_zero_b(ctx, rec, t);
    check_keep(ctx, rec, t);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_lora_layer");
}
