/* bench_ops_matmul.c: vkd_op_matmul (m = 1, 4, 16; GEMM m = 512 on row-major weights), the
 * fused group (q/k/v) and GLU (gate/up/SwiGLU) matmuls on texel-block weights, and
 * vkd_op_embed at the layer shapes of Qwen3-0.6B, Qwen3-4B and Llama-3.2-1B, bf16 weights in
 * the device profile's layout (VKDRAFT_WEIGHT_LAYOUT=rows|blocks overrides it).
 * Each timed GEMV submission cycles through copies of W (512 MiB of weights for m = 1,
 * 128 MiB for m = 16), so the figures are memory figures, not cache figures (a decode
 * step reads every layer's weights once). GEMV rows report weight bytes read per second
 * against the copy bandwidth (read + write) measured at the top of `bench ops`. */
#include <stdlib.h>

#include "bench.h"
#include "cli.h"

#define ROTATE_BYTES (512ull << 20)

typedef struct mm_args {
    vkd_tensor **w;
    uint32_t nw, next;
    vkd_tensor *x, *y;
    uint32_t m;
} mm_args;

static vkd_result rec_matmul(vkd_rec *rec, void *u) {
    mm_args *a = u;
    vkd_tensor *w = a->w[a->next];
    a->next = (a->next + 1) % a->nw;
    return vkd_op_matmul(rec, a->y, 0, a->x, 0, w, a->m, false);
}

typedef struct emb_args {
    vkd_tensor *y, *ids, *table;
    uint32_t m;
} emb_args;

static vkd_result rec_embed(vkd_rec *rec, void *u) {
    emb_args *a = u;
    return vkd_op_embed(rec, a->y, a->ids, a->table, a->m);
}

/* Times y = x W^T for W: N x K bf16 at each m in ms (GEMV rows carry the roofline). */
static void bench_linear(bench_env *env, const char *model, const char *layer, uint64_t N,
                         uint64_t K, const uint32_t *ms, int nm) {
    mm_args a = {0};
    uint64_t wbytes = N * K * 2;
    a.nw = (uint32_t)((ROTATE_BYTES + wbytes - 1) / wbytes);
    a.w = calloc(a.nw, sizeof *a.w);
    if (!a.w) cli_fatal("bench ops: out of memory");
    /* weights in the device profile's layout, as a model loads them */
    vkd_layout layout = vkd_ctx_weight_layout(env->ctx, VKD_DTYPE_BF16);
    int64_t wshape[2] = {(int64_t)N, (int64_t)K};
    vkd_error err = {0};
    for (uint32_t i = 0; i < a.nw; i++)
        cli_check(vkd_tensor_create_layout(env->ctx, VKD_DTYPE_BF16, 2, wshape, layout, layer,
                                           &a.w[i], &err), &err);
    uint32_t mmax = 0;
    for (int i = 0; i < nm; i++) mmax = ms[i] > mmax ? ms[i] : mmax;
    a.x = bench_tensor(env, VKD_DTYPE_F32, mmax, K, "x");
    a.y = bench_tensor(env, VKD_DTYPE_F32, mmax, N, "y");
    for (int i = 0; i < nm; i++) {
        a.m = ms[i];
        a.next = 0;
        double flops = 2.0 * a.m * N * K;
        /* m = 1 cycles through all copies (512 MiB); m = 16 is compute-heavy on CPU drivers:
         * a quarter of them; a GEMM instance is long and compute-bound: one */
        int inner = a.m == 1 ? (int)a.nw : a.m <= 16 ? (int)(a.nw + 3) / 4 : 1;
        double t = bench_time(env, rec_matmul, &a, inner);
        char shape[80];
        snprintf(shape, sizeof shape, "%s %s m=%u %llux%llu", model, layer, a.m,
                 (unsigned long long)N, (unsigned long long)K);
        bool blocks = layout == VKD_LAYOUT_BLOCKS;
        bool gemv = blocks || a.m < vkd_ctx_profile(env->ctx)->gemm_min_m;
        double bytes = (double)wbytes + 4.0 * a.m * (K + N);
        bench_row(env, blocks ? "matmul_blocks" : gemv ? "matmul_gemv" : "matmul_gemm", shape,
                  "bf16", t, bytes, flops, gemv);
    }
    for (uint32_t i = 0; i < a.nw; i++) vkd_tensor_destroy(a.w[i]);
    free(a.w);
    vkd_tensor_destroy(a.x);
    vkd_tensor_destroy(a.y);
}

/* The fused forms a layer runs where the weights are texel blocks (vkd_layer_forward in
 * inference): q, k and v as one group and gate, up and SwiGLU as one GLU, each with the
 * layer's RMSNorm inside where the device takes it (vkd_matmul_norm_ok; else without). */
typedef struct fused_args {
    vkd_tensor **stack, **w;       /* group: per copy the stack and its 3 members; GLU: g, u */
    uint32_t nw, next, m;
    bool glu;
    vkd_tensor *x, *y[3], *ln;
} fused_args;

static vkd_result rec_fused(vkd_rec *rec, void *u) {
    fused_args *a = u;
    vkd_tensor **w = a->w + (size_t)a->next * 3;
    a->next = (a->next + 1) % a->nw;
    if (a->glu) return vkd_op_matmul_glu(rec, a->y[0], 0, a->x, 0, w[0], w[1], a->m, a->ln, 1e-6f);
    const vkd_tensor *ws[3] = {w[0], w[1], w[2]};
    return vkd_op_matmul_group(rec, a->y, 0, a->x, 0, ws, 3, a->m, a->ln, 1e-6f);
}

static void bench_fused(bench_env *env, const char *model, bool glu, uint64_t H, uint64_t q,
                        uint64_t kv, uint64_t ffn, const uint32_t *ms, int nm) {
    if (vkd_ctx_weight_layout(env->ctx, VKD_DTYPE_BF16) != VKD_LAYOUT_BLOCKS) return;
    fused_args a = {.glu = glu};
    uint64_t rows[3] = {glu ? ffn : q, glu ? ffn : kv, kv}, N = rows[0] + rows[1] + (glu ? 0 : rows[2]);
    uint64_t wbytes = N * H * 2;
    a.nw = (uint32_t)((ROTATE_BYTES + wbytes - 1) / wbytes);
    a.w = calloc((size_t)a.nw * 3, sizeof *a.w);
    a.stack = calloc(a.nw, sizeof *a.stack);
    if (!a.w || !a.stack) cli_fatal("bench ops: out of memory");
    vkd_error err = {0};
    int64_t gshape[2] = {(int64_t)ffn, (int64_t)H};
    static const char *const names[3] = {"q_proj", "k_proj", "v_proj"};
    for (uint32_t i = 0; i < a.nw; i++) {
        vkd_tensor **w = a.w + (size_t)i * 3;
        if (glu) {
            cli_check(vkd_tensor_create_layout(env->ctx, VKD_DTYPE_BF16, 2, gshape, VKD_LAYOUT_BLOCKS, "gate_proj",
                                               &w[0], &err), &err);
            cli_check(vkd_tensor_create_layout(env->ctx, VKD_DTYPE_BF16, 2, gshape, VKD_LAYOUT_BLOCKS, "up_proj",
                                               &w[1], &err), &err);
        } else {
            cli_check(vkd_tensor_create_stack(env->ctx, VKD_DTYPE_BF16, 3, rows, H, names, &a.stack[i], w, &err),
                      &err);
        }
    }
    uint32_t mmax = 0;
    for (int i = 0; i < nm; i++) mmax = ms[i] > mmax ? ms[i] : mmax;
    a.x = bench_tensor(env, VKD_DTYPE_F32, mmax, H, "x");
    /* the group's outputs: views of one buffer, as vkd_scratch_group makes them */
    uint64_t off = 0, align = 256;
    vkd_tensor *yall = bench_tensor(env, VKD_DTYPE_F32, 1, (uint64_t)mmax * N + 3 * align / 4, "y");
    for (uint32_t j = 0; j < (glu ? 1u : 3u); j++) {
        int64_t shape[2] = {(int64_t)mmax, (int64_t)rows[j]};
        cli_check(vkd_tensor_view(yall, off, VKD_DTYPE_F32, 2, shape, "y", &a.y[j], &err), &err);
        off = (off + (uint64_t)mmax * rows[j] * 4 + align - 1) / align * align;
    }
    a.ln = bench_tensor(env, VKD_DTYPE_BF16, 1, H, "norm");
    bool norm = vkd_matmul_norm_ok(a.w[0], a.ln, a.x);
    if (!norm) {
        vkd_tensor_destroy(a.ln);
        a.ln = NULL;
    }
    for (int i = 0; i < nm; i++) {
        a.m = ms[i];
        a.next = 0;
        int inner = a.m == 1 ? (int)a.nw : (int)(a.nw + 3) / 4;
        double t = bench_time(env, rec_fused, &a, inner);
        char shape[96];
        if (glu)
            snprintf(shape, sizeof shape, "%s gate_up%s m=%u 2x%llux%llu", model, norm ? "+norm" : "", a.m,
                     (unsigned long long)ffn, (unsigned long long)H);
        else
            snprintf(shape, sizeof shape, "%s qkv%s m=%u %llux%llu", model, norm ? "+norm" : "", a.m,
                     (unsigned long long)N, (unsigned long long)H);
        double bytes = (double)wbytes + 4.0 * a.m * (H + (glu ? ffn : N));
        bench_row(env, glu ? "matmul_glu" : "matmul_group", shape, "bf16", t, bytes, 2.0 * a.m * N * H, true);
    }
    for (uint32_t i = 0; i < a.nw; i++) {
        for (uint32_t j = 0; j < 3; j++) vkd_tensor_destroy(a.w[(size_t)i * 3 + j]);
        vkd_tensor_destroy(a.stack[i]);
    }
    for (uint32_t j = 0; j < 3; j++) vkd_tensor_destroy(a.y[j]);
    free(a.w);
    free(a.stack);
    vkd_tensor_destroy(yall);
    vkd_tensor_destroy(a.x);
    vkd_tensor_destroy(a.ln);
}

void bench_ops_matmul(bench_env *env) {
    static const struct {
        const char *model;
        uint64_t hidden, q, kv, ffn, vocab;
    } models[] = {
        {"qwen3-0.6b", 1024, 2048, 1024, 3072, 151936},
        {"qwen3-4b", 2560, 4096, 1024, 9728, 151936},
        {"llama-3.2-1b", 2048, 2048, 512, 8192, 128256},
    };
    static const uint32_t gemv_ms[] = {1, 4, 16}, all_ms[] = {1, 4, 16, 512};
    for (size_t s = 0; s < sizeof models / sizeof models[0]; s++) {
        const char *mo = models[s].model;
        uint64_t h = models[s].hidden;
        /* GEMM m = 512 (prefill) on the smallest model only: it is compute-bound and slow on
         * CPU drivers */
        const uint32_t *ms = s == 0 ? all_ms : gemv_ms;
        int nm = s == 0 ? 4 : 3;
        bench_linear(env, mo, "q_proj", models[s].q, h, ms, nm);
        bench_linear(env, mo, "o_proj", h, models[s].q, ms, nm);
        bench_linear(env, mo, "gate_up", models[s].ffn, h, ms, nm);
        bench_linear(env, mo, "down", h, models[s].ffn, ms, nm);
        bench_linear(env, mo, "lm_head", models[s].vocab, h, gemv_ms, 3);
        bench_fused(env, mo, false, h, models[s].q, models[s].kv, models[s].ffn, gemv_ms, 3);
        bench_fused(env, mo, true, h, models[s].q, models[s].kv, models[s].ffn, gemv_ms, 3);
    }

    /* embedding rows from a Qwen3-4B-sized table (split across bindings) */
    emb_args e = {0};
    int64_t eshape[2] = {151936, 2560};
    vkd_error eerr = {0};
    cli_check(vkd_tensor_create_layout(env->ctx, VKD_DTYPE_BF16, 2, eshape,
                                       vkd_ctx_weight_layout(env->ctx, VKD_DTYPE_BF16),
                                       "embed_tokens", &e.table, &eerr), &eerr);
    static const uint32_t em[] = {16, 512};
    e.ids = bench_tensor(env, VKD_DTYPE_I32, 1, 512, "ids");
    e.y = bench_tensor(env, VKD_DTYPE_F32, 512, 2560, "y");
    int32_t ids[512];
    for (int i = 0; i < 512; i++) ids[i] = (int32_t)((i * 2654435761u) % 151936u);
    vkd_error err = {0};
    cli_check(vkd_tensor_upload(e.ids, 0, ids, sizeof ids, &err), &err);
    for (int i = 0; i < 2; i++) {
        e.m = em[i];
        double t = bench_time(env, rec_embed, &e, 20);
        char shape[64];
        snprintf(shape, sizeof shape, "qwen3-4b m=%u 151936x2560", e.m);
        bench_row(env, "embed", shape, "bf16", t, e.m * 2560.0 * (2 + 4), 0, false);
    }
    vkd_tensor_destroy(e.table);
    vkd_tensor_destroy(e.ids);
    vkd_tensor_destroy(e.y);
}
