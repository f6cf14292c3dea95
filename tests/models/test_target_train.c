/* test_target_train: one training step of a whole tied model (models/target_train.h) on a
 * batch of two sequences of different lengths; writes the summed loss and the gradient of
 * every trainable tensor (HF names) to OUT.safetensors for test_target_train.py, which
 * compares them with float64 PyTorch autograd. Here: the step repeated gives the same
 * gradients bit for bit (deterministic: no float atomics anywhere), NaN-free.
 * usage: test_target_train MODEL_DIR OUT.safetensors */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "st_write.h"
#include "target_train.h"
#include "vkd_test.h"

static const int32_t seq0[] = {5, 17, 88, 3, 3, 41, 96, 0, 17, 62, 7, 29, 54};
static const int32_t seq1[] = {12, 5, 5, 70, 33, 91, 8};
enum { N0 = sizeof seq0 / 4, N1 = sizeof seq1 / 4 };

static float step(vkd_target_train *T, vkd_rec *rec) {
    vkd_error err = {0};
    float w = 1.0f / (N0 - 1 + N1 - 1), sum = 0, loss[N0];
    const int32_t *seqs[2] = {seq0, seq1};
    const uint32_t lens[2] = {N0, N1};
    vkd_rec_begin(rec);
    vkd_target_train_zero_grads(T, rec);
    REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
    for (int s = 0; s < 2; s++) {
        vkd_rec_begin(rec);
        REQUIRE(!vkd_target_train_sequence(T, rec, seqs[s], lens[s], w, &err), "%s", err.msg);
        REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
        REQUIRE(!vkd_tensor_download(T->loss, 0, loss, (lens[s] - 1) * 4, &err), "%s", err.msg);
        for (uint32_t i = 0; i + 1 < lens[s]; i++) sum += loss[i];
    }
    return sum;
}

static float **grads(vkd_target_train *T, vkd_target_param *p, uint32_t n) {
    vkd_error err = {0};
    float **g = calloc(n, sizeof *g);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t ne = p[i].param->rows * p[i].param->cols;
        g[i] = malloc(ne * 4);
        REQUIRE(!vkd_tensor_download(p[i].grad, 0, g[i], ne * 4, &err), "%s", err.msg);
        for (uint64_t j = 0; j < ne; j++)
            if (!isfinite(g[i][j])) {
                CHECK(0, "gradient of %s: non-finite at %llu", p[i].name, (unsigned long long)j);
                break;
            }
    }
    return g;
}

int main(int argc, char **argv) {
    REQUIRE(argc == 3, "usage: test_target_train MODEL_DIR OUT.safetensors");
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_target_train *T;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    REQUIRE(!vkd_target_load(ctx, argv[1], &(vkd_target_options){.ctx_len = 64}, &t, &err), "%s", err.msg);
    REQUIRE(!vkd_target_train_create(t, 16, &T, &err), "%s", err.msg);
    /* refused: a token outside the vocabulary, a one-token sequence */
    int32_t bad[2] = {1, (int32_t)t->vocab};
    CHECK(vkd_target_train_sequence(T, rec, bad, 2, 1, &err) == VKD_ERR_INVALID, "out-of-vocabulary id accepted");
    CHECK(vkd_target_train_sequence(T, rec, bad, 1, 1, &err) == VKD_ERR_INVALID, "1-token sequence accepted");
    uint32_t n = vkd_target_train_params(T, NULL, 0);
    vkd_target_param *p = calloc(n, sizeof *p);
    vkd_target_train_params(T, p, n);
    float loss = step(T, rec);
    float **g1 = grads(T, p, n);
    float loss2 = step(T, rec);
    float **g2 = grads(T, p, n);
    CHECK(loss == loss2, "loss differs between identical steps: %.9g %.9g", loss, loss2);
    for (uint32_t i = 0; i < n; i++)
        CHECK(!memcmp(g1[i], g2[i], p[i].param->rows * p[i].param->cols * 4), "gradient of %s not bit-identical on a repeat", p[i].name);
    vkd_st_out *o = calloc(n + 1, sizeof *o);
    for (uint32_t i = 0; i < n; i++) {
        o[i] = (vkd_st_out){.name = p[i].name, .dtype = VKD_DTYPE_F32, .rank = p[i].param->ndim, .data = g1[i]};
        memcpy(o[i].shape, p[i].param->shape, (size_t)p[i].param->ndim * sizeof o[i].shape[0]);
    }
    o[n] = (vkd_st_out){.name = "loss", .dtype = VKD_DTYPE_F32, .rank = 1, .shape = {1}, .data = &loss};
    REQUIRE(!vkd_st_write(argv[2], o, n + 1, NULL, &err), "%s", err.msg);
    fprintf(stderr, "test_target_train: %u tensors, loss %.7f, repeat bit-identical\n", n, loss);
    for (uint32_t i = 0; i < n; i++) free(g1[i]), free(g2[i]);
    free(g1), free(g2), free(p), free(o);
    vkd_target_train_free(T);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_target_train");
}
