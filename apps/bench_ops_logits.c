/* bench_ops_logits: the logits ops on 1 and 16 rows of the Qwen3 (151936) and Llama 3
 * (128256) vocabularies. Bytes are the logits bytes each op must read at least once (plus
 * the softmax write), so GB/s is comparable with the device's copy bandwidth. */
#include <stdlib.h>

#include "bench.h"
#include "cli.h"

typedef struct logits_args {
    vkd_tensor *x, *q, *y, *idx, *val, *ids, *out;
    uint32_t rows, n;
    vkd_sample_params sp;
} logits_args;

static vkd_result rec_softmax(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_softmax(rec, a->y, a->x, 0, a->rows, a->n, 1.0f, false);
}
static vkd_result rec_argmax(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_argmax(rec, a->idx, a->x, 0, a->rows, a->n);
}
static vkd_result rec_topk(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_topk(rec, a->idx, a->val, a->x, 0, a->rows, a->n, 50);
}
static vkd_result rec_stats(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_token_stats(rec, a->out, a->x, 0, a->ids, a->rows, a->n);
}
static vkd_result rec_kl(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_kl_tvd(rec, a->out, a->x, 0, 4.0f, a->q, 0, 1.0f, a->rows, a->n);
}
static vkd_result rec_sample(vkd_rec *rec, void *u) {
    logits_args *a = u;
    return vkd_op_sample(rec, a->idx, a->x, 0, a->rows, a->n, &a->sp);
}

void bench_ops_logits(bench_env *env) {
    static const struct { const char *vocab; uint32_t n; } vocabs[] = {{"qwen3", 151936}, {"llama3", 128256}};
    static const uint32_t row_counts[] = {1, 16};
    unsigned long long s = 12345;
    for (size_t v = 0; v < 2; v++)
        for (size_t r = 0; r < 2; r++) {
            logits_args a = {.rows = row_counts[r], .n = vocabs[v].n};
            size_t elems = (size_t)a.rows * a.n;
            a.x = bench_tensor(env, VKD_DTYPE_F32, a.rows, a.n, "logits");
            a.q = bench_tensor(env, VKD_DTYPE_F32, a.rows, a.n, "draft_logits");
            a.y = bench_tensor(env, VKD_DTYPE_F32, a.rows, a.n, "probs");
            a.idx = bench_tensor(env, VKD_DTYPE_I32, a.rows, 50, "idx");
            a.val = bench_tensor(env, VKD_DTYPE_F32, a.rows, 50, "val");
            a.ids = bench_tensor(env, VKD_DTYPE_I32, 1, a.rows, "ids");
            a.out = bench_tensor(env, VKD_DTYPE_F32, a.rows, 3, "stats");
            float *h = malloc(elems * 4);
            for (int t = 0; t < 2; t++) {
                for (size_t i = 0; i < elems; i++) {
                    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
                    h[i] = (float)((double)((s * 2685821657736338717ULL) >> 11) / 9007199254740992.0 * 12.0 - 6.0);
                }
                vkd_error err = {0};
                cli_check(vkd_tensor_upload(t ? a.q : a.x, 0, h, elems * 4, &err), &err);
            }
            free(h);
            char shape[64];
            snprintf(shape, sizeof shape, "%s %ux%u", vocabs[v].vocab, a.rows, a.n);
            double b = 4.0 * elems, t;
            t = bench_time(env, rec_softmax, &a, 4);
            bench_row(env, "softmax", shape, "f32", t, 2 * b, 0, false);
            t = bench_time(env, rec_argmax, &a, 4);
            bench_row(env, "argmax", shape, "f32", t, b, 0, false);
            t = bench_time(env, rec_topk, &a, 4);
            bench_row(env, "topk k=50", shape, "f32", t, b, 0, false);
            t = bench_time(env, rec_stats, &a, 4);
            bench_row(env, "token_stats", shape, "f32", t, b, 0, false);
            t = bench_time(env, rec_kl, &a, 4);
            bench_row(env, "kl_tvd", shape, "f32", t, 2 * b, 0, false);
            a.sp = (vkd_sample_params){.temperature = 1.0f, .seed = 1};
            t = bench_time(env, rec_sample, &a, 4);
            bench_row(env, "sample T=1", shape, "f32", t, b, 0, false);
            a.sp = (vkd_sample_params){.temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .seed = 1};
            t = bench_time(env, rec_sample, &a, 4);
            bench_row(env, "sample k20 p.8", shape, "f32", t, b, 0, false);
            vkd_tensor *ts[] = {a.x, a.q, a.y, a.idx, a.val, a.ids, a.out};
            for (size_t i = 0; i < 7; i++) vkd_tensor_destroy(ts[i]);
        }
}
