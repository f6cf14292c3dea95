/* bench_ops_layer.c: the layer ops of `vkdraft bench ops` at Qwen3-0.6B, Qwen3-4B and
 * Llama-3.2-1B shapes: RMSNorm (rows x hidden, per-head q norm), RoPE, attention (decode
 * against 512 and 4096 cached keys, a 16-row non-causal DFlash block, a 64-row causal
 * block), SwiGLU and the KV-append / tap copies. Bytes are the minimum each op must move;
 * the memory-bound rows also print their bandwidth as a fraction of the copy bandwidth. */
#include <math.h>
#include <stdlib.h>

#include "bench.h"
#include "cli.h"

typedef struct layer_model {
    const char *name;
    uint32_t hidden, n_q, n_kv, hd, ffn;
} layer_model;

typedef struct layer_args {
    vkd_tensor *a, *b, *c, *d, *e;
    uint32_t rows, n, dim, n_q, n_kv, hd, kv_len, q_pos0, col0;
    bool causal;
} layer_args;

static void fill(bench_env *env, vkd_tensor *t, float sd) {
    vkd_error err = {0};
    size_t n = t->bytes / 4;
    float *x = malloc(n * 4);
    unsigned s = 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = sd * ((float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f);
    }
    if (t->dtype == VKD_DTYPE_F16 || t->dtype == VKD_DTYPE_BF16) /* small values in both halves */
        for (size_t i = 0; i < n; i++) ((uint32_t *)x)[i] = 0x2c002c00u;
    cli_check(vkd_tensor_upload(t, 0, x, n * 4, &err), &err);
    free(x);
}

static vkd_result rec_rmsnorm(vkd_rec *rec, void *u) {
    layer_args *a = u;
    return vkd_op_rmsnorm(rec, a->a, a->a, a->b, a->rows, a->dim, 1e-6f);
}
static vkd_result rec_rope(vkd_rec *rec, void *u) {
    layer_args *a = u;
    return vkd_op_rope(rec, a->a, 0, a->rows, a->n_q, a->hd, 1000, NULL, a->b);
}
static vkd_result rec_attention(vkd_rec *rec, void *u) {
    layer_args *a = u;
    return vkd_op_attention_split(rec, a->b, a->e, a->a, a->c, a->d, a->rows, a->kv_len, a->n_q,
                                  a->n_kv, a->hd, a->q_pos0, a->causal, 1.0f / sqrtf((float)a->hd));
}
static vkd_result rec_swiglu(vkd_rec *rec, void *u) {
    layer_args *a = u;
    return vkd_op_swiglu(rec, a->a, a->a, a->b, a->n);
}
static vkd_result rec_copy2d(vkd_rec *rec, void *u) {
    layer_args *a = u;
    return vkd_op_copy2d(rec, a->b, a->q_pos0, a->col0, a->a, 0, 0, a->rows, a->n);
}

static void bench_attention(bench_env *env, const layer_model *m, uint32_t rows, uint32_t kv_len,
                            bool causal, vkd_dtype cache) {
    layer_args a = {.rows = rows, .n_q = m->n_q, .n_kv = m->n_kv, .hd = m->hd, .kv_len = kv_len,
                    .q_pos0 = kv_len - rows, .causal = causal};
    a.a = bench_tensor(env, VKD_DTYPE_F32, rows, m->n_q * m->hd, "q");
    a.b = bench_tensor(env, VKD_DTYPE_F32, rows, m->n_q * m->hd, "o");
    a.c = bench_tensor(env, cache, kv_len, m->n_kv * m->hd, "k");
    a.d = bench_tensor(env, cache, kv_len, m->n_kv * m->hd, "v");
    fill(env, a.a, 1.0f);
    fill(env, a.c, 1.0f);
    fill(env, a.d, 1.0f);
    /* split-K partials where the profile splits (VKDRAFT_ATTN_SPLITS forces a count) */
    uint64_t pf = vkd_op_attention_part_floats(env->ctx, rows, kv_len, m->n_q, m->n_kv, m->hd);
    a.e = pf ? bench_tensor(env, VKD_DTYPE_F32, 1, pf, "part") : NULL;
    uint32_t splits = pf ? vkd_op_attention_splits(env->ctx, rows, kv_len, m->n_q, m->n_kv, m->hd) : 1;
    double keys = 0; /* keys attended, summed over rows */
    for (uint32_t i = 0; i < rows; i++) keys += causal ? (kv_len - rows + i + 1) : kv_len;
    double t = bench_time(env, rec_attention, &a, rows == 1 ? 8 : 2);
    double bytes = 2.0 * kv_len * m->n_kv * m->hd * vkd_dtype_size(cache) + 8.0 * rows * m->n_q * m->hd;
    char shape[96];
    int w = snprintf(shape, sizeof shape, "%s %ux%u kv%u %s", m->name, rows, m->n_q, kv_len,
                     causal ? "causal" : "full");
    if (splits > 1) snprintf(shape + w, sizeof shape - w, " split%u", splits);
    bench_row(env, "attention", shape, cache == VKD_DTYPE_F16 ? "f16" : "f32", t, bytes,
              4.0 * keys * m->n_q * m->hd, rows == 1);
    vkd_tensor_destroy(a.a); vkd_tensor_destroy(a.b); vkd_tensor_destroy(a.c); vkd_tensor_destroy(a.d);
    vkd_tensor_destroy(a.e);
}

void bench_ops_layer(bench_env *env) {
    static const layer_model models[] = {
        {"qwen3-0.6b", 1024, 16, 8, 128, 3072},
        {"qwen3-4b", 2560, 32, 8, 128, 9728},
        {"llama-3.2-1b", 2048, 32, 8, 64, 8192},
    };
    char shape[96];
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        const layer_model *m = &models[mi];
        for (uint32_t rows = 1; rows <= 16; rows += 15) {
            layer_args a = {.rows = rows, .dim = m->hidden};
            a.a = bench_tensor(env, VKD_DTYPE_F32, rows, m->hidden, "x");
            a.b = bench_tensor(env, VKD_DTYPE_BF16, 1, m->hidden, "w");
            fill(env, a.a, 1.0f);
            fill(env, a.b, 1.0f);
            double t = bench_time(env, rec_rmsnorm, &a, 20);
            snprintf(shape, sizeof shape, "%s %ux%u", m->name, rows, m->hidden);
            bench_row(env, "rmsnorm", shape, "bf16", t, 8.0 * rows * m->hidden + 2.0 * m->hidden,
                      4.0 * rows * m->hidden, true);
            vkd_tensor_destroy(a.a);
            vkd_tensor_destroy(a.b);

            /* per-head q norm, then rope of the q heads */
            a = (layer_args){.rows = rows * m->n_q, .dim = m->hd};
            a.a = bench_tensor(env, VKD_DTYPE_F32, rows, m->n_q * m->hd, "q");
            a.b = bench_tensor(env, VKD_DTYPE_BF16, 1, m->hd, "q_norm");
            fill(env, a.a, 1.0f);
            fill(env, a.b, 1.0f);
            t = bench_time(env, rec_rmsnorm, &a, 20);
            snprintf(shape, sizeof shape, "%s %ux%ux%u", m->name, rows, m->n_q, m->hd);
            bench_row(env, "qk-norm", shape, "bf16", t, 8.0 * rows * m->n_q * m->hd,
                      4.0 * rows * m->n_q * m->hd, true);
            vkd_tensor_destroy(a.b);
            a.rows = rows;
            a.n_q = m->n_q;
            a.hd = m->hd;
            a.b = bench_tensor(env, VKD_DTYPE_F32, 1, m->hd / 2, "inv_freq");
            fill(env, a.b, 0.01f);
            t = bench_time(env, rec_rope, &a, 20);
            bench_row(env, "rope", shape, "f32", t, 8.0 * rows * m->n_q * m->hd,
                      3.0 * rows * m->n_q * m->hd, true);
            vkd_tensor_destroy(a.a);
            vkd_tensor_destroy(a.b);

            a = (layer_args){.n = rows * m->ffn};
            a.a = bench_tensor(env, VKD_DTYPE_F32, rows, m->ffn, "gate");
            a.b = bench_tensor(env, VKD_DTYPE_F32, rows, m->ffn, "up");
            fill(env, a.a, 4.0f);
            fill(env, a.b, 1.0f);
            t = bench_time(env, rec_swiglu, &a, 20);
            snprintf(shape, sizeof shape, "%s %ux%u", m->name, rows, m->ffn);
            bench_row(env, "swiglu", shape, "f32", t, 12.0 * a.n, 5.0 * a.n, true);
            vkd_tensor_destroy(a.a);
            vkd_tensor_destroy(a.b);
        }
        /* KV append of one decode row into an f16 cache; 16-row hidden-state tap into a
         * 5-layer features buffer */
        layer_args a = {.rows = 1, .n = m->n_kv * m->hd, .q_pos0 = 700};
        a.a = bench_tensor(env, VKD_DTYPE_F32, 1, a.n, "k_new");
        a.b = bench_tensor(env, VKD_DTYPE_F16, 4096, a.n, "k_cache");
        double t = bench_time(env, rec_copy2d, &a, 20);
        snprintf(shape, sizeof shape, "%s kv-append 1x%u", m->name, a.n);
        bench_row(env, "copy2d", shape, "f16", t, 6.0 * a.n, 0, true);
        vkd_tensor_destroy(a.a);
        vkd_tensor_destroy(a.b);
        a = (layer_args){.rows = 16, .n = m->hidden, .col0 = 2 * m->hidden};
        a.a = bench_tensor(env, VKD_DTYPE_F32, 16, m->hidden, "hidden");
        a.b = bench_tensor(env, VKD_DTYPE_F32, 16, 5 * m->hidden, "features");
        t = bench_time(env, rec_copy2d, &a, 20);
        snprintf(shape, sizeof shape, "%s tap 16x%u", m->name, m->hidden);
        bench_row(env, "copy2d", shape, "f32", t, 8.0 * 16 * m->hidden, 0, true);
        vkd_tensor_destroy(a.a);
        vkd_tensor_destroy(a.b);

        bench_attention(env, m, 1, 512, true, VKD_DTYPE_F32);
        bench_attention(env, m, 1, 4096, true, VKD_DTYPE_F32);
        bench_attention(env, m, 1, 4096, true, VKD_DTYPE_F16);
        bench_attention(env, m, 16, 512 + 16, false, VKD_DTYPE_F32);
        bench_attention(env, m, 64, 512, true, VKD_DTYPE_F16);
    }
}
