/* vkd_push.h: push-constant structs, declared once for C and GLSL.
 * A shader selects its struct with #define PC_<NAME> before including this file and reads
 * it as `pc`. All members are 32-bit scalars (no vectors) so C and std430 layouts agree. */
#ifndef VKD_PUSH_H
#define VKD_PUSH_H

#ifdef VULKAN
#define PUSH_BEGIN(name) layout(push_constant) uniform name {
#define PUSH_END(name) } pc;
#else
#include <stdint.h>
typedef unsigned int uint;
#define PUSH_BEGIN(name) typedef struct name {
#define PUSH_END(name) } name;
#endif

/* count += non-finite values among n words (kind 0 f32, 1 bf16 pairs, 2 f16 pairs) */
#if !defined(VULKAN) || defined(PC_NONFINITE)
PUSH_BEGIN(vkd_pc_nonfinite)
    uint n;
    uint kind;
PUSH_END(vkd_pc_nonfinite)
#endif

/* y[i] = a*x0[i] + b*x1[i], n elements, f32 */
#if !defined(VULKAN) || defined(PC_AXPBY)
PUSH_BEGIN(vkd_pc_axpby)
    uint n;
    float a;
    float b;
PUSH_END(vkd_pc_axpby)
#endif

/* copy n 16-byte words (bandwidth probe) */
#if !defined(VULKAN) || defined(PC_COPY)
PUSH_BEGIN(vkd_pc_copy)
    uint n_vec4;
    uint per_group;
PUSH_END(vkd_pc_copy)
#endif

/* ---- matmul ops (ops/ops_matmul.c) ---- */
/* matmul (GEMV and tiled GEMM): y[y_row0 + i, col0 + n] (=|+=) x[x_row0 + i, :K] . W[n, :K]
 * for i < m, n < rows (the rows of one chunk of W); y row stride N */
#if !defined(VULKAN) || defined(PC_MATMUL)
PUSH_BEGIN(vkd_pc_matmul)
    uint m;
    uint K;
    uint N;
    uint col0;
    uint rows;
    uint rows_per_group;
    uint x_row0;
    uint y_row0;
    uint accumulate;
    uint norm;       /* matmul_glu: x through an RMSNorm with the weight at binding 4 */
    float eps;       /* its epsilon */
PUSH_END(vkd_pc_matmul)
#endif
/* a group of matmuls of one x (matmul_group): y[yoff_j + (y_row0 + i) rows_j + n] =
 * x[x_row0 + i, :K] . W_j[n, :K] for i < m, n < rows_j; W_j starts at texel base_j of the
 * stack; workgroups [start_j, start_j+1) take W_j (start2 = the total with two matrices) */
#if !defined(VULKAN) || defined(PC_MATMUL_GROUP)
PUSH_BEGIN(vkd_pc_matmul_group)
    uint m;
    uint K;
    uint x_row0;
    uint y_row0;
    uint rows0;
    uint rows1;
    uint rows2;
    uint start1;
    uint start2;
    uint base0;
    uint base1;
    uint base2;
    uint yoff0;
    uint yoff1;
    uint yoff2;
    uint norm;       /* x through an RMSNorm with the weight at binding 3 */
    float eps;       /* its epsilon */
PUSH_END(vkd_pc_matmul_group)
#endif
/* embedding: y[i, :H] = table[ids[i] - row0, :] for ids in [row0, row0 + rows) of one chunk;
 * ids outside [0, V) give zeros (written by the dispatch of the chunk with row0 == 0) */
#if !defined(VULKAN) || defined(PC_EMBED)
PUSH_BEGIN(vkd_pc_embed)
    uint m;
    uint H;
    uint row0;
    uint rows;
    uint V;
PUSH_END(vkd_pc_embed)
#endif

/* ---- layer ops (ops/ops_layer.c) ---- */
/* rmsnorm: `groups` groups of `dim` f32, groups_per_wg consecutive groups per workgroup */
#if !defined(VULKAN) || defined(PC_RMSNORM)
PUSH_BEGIN(vkd_pc_rmsnorm)
    uint groups;
    uint dim;
    uint groups_per_wg;
    float eps;
PUSH_END(vkd_pc_rmsnorm)
#endif
/* rope: rows x heads vectors of head_dim (= 2*half) at x_off, row stride x_stride */
#if !defined(VULKAN) || defined(PC_ROPE)
PUSH_BEGIN(vkd_pc_rope)
    uint rows;
    uint heads;
    uint half_dim;
    uint x_off;
    uint x_stride;
    uint pos0;
    uint use_positions;
    uint vecs_per_wg;
PUSH_END(vkd_pc_rope)
#endif
/* qk_rope_kv: rows x (n_q + n_kv) head vectors of 2*half_dim; K/V rows pos0.. of the caches,
 * kv_stride elements per cache row */
#if !defined(VULKAN) || defined(PC_QK_ROPE_KV)
PUSH_BEGIN(vkd_pc_qk_rope_kv)
    uint rows;
    uint n_q;
    uint n_kv;
    uint half_dim;
    uint pos0;
    uint vecs_per_wg;
    uint qk_norm;
    uint kv_stride;
    float eps;
PUSH_END(vkd_pc_qk_rope_kv)
#endif
/* attention: strides in elements; heads_per_wg query heads share one kv head */
#if !defined(VULKAN) || defined(PC_ATTENTION)
PUSH_BEGIN(vkd_pc_attention)
    uint q_rows;
    uint kv_len;
    uint n_q;
    uint hd;
    uint q_pos0;
    uint causal;
    uint k_stride;
    uint v_stride;
    uint group;
    float scale_log2e;
    uint block;          /* 0, or the block-sparse training mask's block rows (ATTENTION_BLOCKS) */
PUSH_END(vkd_pc_attention)
#endif
/* swiglu: n f32 elements, per_wg contiguous elements per workgroup (multiple of 4) */
#if !defined(VULKAN) || defined(PC_SWIGLU)
PUSH_BEGIN(vkd_pc_swiglu)
    uint n;
    uint per_wg;
PUSH_END(vkd_pc_swiglu)
#endif
/* copy2d: element offsets/strides; dst in elements (f32) or halves (f16) */
#if !defined(VULKAN) || defined(PC_COPY2D)
PUSH_BEGIN(vkd_pc_copy2d)
    uint rows;
    uint cols;
    uint src_off;
    uint src_stride;
    uint dst_off;
    uint dst_stride;
    uint rows_per_wg;
    uint cols_per_wg;
PUSH_END(vkd_pc_copy2d)
#endif

/* ---- logits ops (ops/ops_logits.c) ---- */
/* row ops (softmax, argmax, topk, token_stats): workgroup r reads row r of n f32 at
 * x_off + r*x_stride (elements); writes row r at y_off + r*y_stride; aux_off: first id */
#if !defined(VULKAN) || defined(PC_LOGITS)
PUSH_BEGIN(vkd_pc_logits)
    uint n;
    uint x_off;
    uint x_stride;
    uint y_off;
    uint y_stride;
    uint aux_off;
    uint k;
    uint mode;
    float scale;
PUSH_END(vkd_pc_logits)
#endif
/* kl_tvd: rows of p and q logits, out row r at (out_off + r)*2 */
#if !defined(VULKAN) || defined(PC_KL)
PUSH_BEGIN(vkd_pc_kl)
    uint n;
    uint p_off;
    uint p_stride;
    uint q_off;
    uint q_stride;
    uint out_off;
    float p_scale;
    float q_scale;
PUSH_END(vkd_pc_kl)
#endif
/* sample: row r uses Philox counter (ctr_hi:ctr_lo) + r, key (seed_hi:seed_lo);
 * top_p >= 1 means off, top_k 0 or >= n means off; philox probe uses n, seed, ctr only */
#if !defined(VULKAN) || defined(PC_SAMPLE)
PUSH_BEGIN(vkd_pc_sample)
    uint n;
    uint x_off;
    uint x_stride;
    uint out_off;
    float inv_t;
    uint top_k;
    float top_p;
    uint seed_lo;
    uint seed_hi;
    uint ctr_lo;
    uint ctr_hi;
PUSH_END(vkd_pc_sample)
#endif

/* -- backward ops (owner: ops_grad, ops_matmul_grad) -- */
/* matmul gradients (shaders/matmul_grad.comp): the reduction runs over [r0, r1) */
#if !defined(VULKAN) || defined(PC_MATMUL_GRAD)
PUSH_BEGIN(vkd_pc_matmul_grad)
    uint K;
    uint N;
    uint col0;
    uint x_row0;
    uint dy_row0;
    uint r0;
    uint r1;
    uint accumulate;
    uint m;          /* DX: rows of dy / dx (8 per workgroup row) */
PUSH_END(vkd_pc_matmul_grad)
#endif
/* register-tiled matmul with broadcasts (shaders/matmul_bcast.comp): C[a, b] over r in [r0, r1) */
#if !defined(VULKAN) || defined(PC_MATMUL_BCAST)
PUSH_BEGIN(vkd_pc_matmul_bcast)
    uint K;          /* columns of W (and of x, dx) */
    uint N;          /* row stride of y / dy: output features of the whole weight */
    uint col0;       /* first output feature of this chunk of W */
    uint x_row0;     /* first row of x (n, dw) or of dx (dx) */
    uint y_row0;     /* first row of y (n) or of dy (dx, dw) */
    uint rows_a;     /* rows of C: m (n, dx), N (dw) */
    uint cols_b;     /* columns of C: rows of the chunk (n), K (dx, dw) */
    uint w_row0;     /* first row of W used, inside the bound chunk (n, dx) */
    uint o_row0;     /* first row of dw written (dw) */
    uint r0;
    uint r1;
    uint accumulate;
PUSH_END(vkd_pc_matmul_bcast)
#endif
/* rmsnorm backward: groups of dim; rstd optional output (write_rstd) */
#if !defined(VULKAN) || defined(PC_RMSNORM_BWD)
PUSH_BEGIN(vkd_pc_rmsnorm_bwd)
    uint groups;
    uint dim;
    uint accumulate;
    uint write_rstd;
    uint r0;
    uint r1;
    float eps;
PUSH_END(vkd_pc_rmsnorm_bwd)
#endif
/* embedding backward (shaders/embed_backward.comp): V rows of H; the token list runs over
 * positions [r0, r1) of the by-id order */
#if !defined(VULKAN) || defined(PC_EMBED_BWD)
PUSH_BEGIN(vkd_pc_embed_bwd)
    uint V;
    uint H;
    uint r0;
    uint r1;
    uint accumulate;
PUSH_END(vkd_pc_embed_bwd)
#endif
/* swiglu backward: n elements, grid-stride */
#if !defined(VULKAN) || defined(PC_SWIGLU_BWD)
PUSH_BEGIN(vkd_pc_swiglu_bwd)
    uint n;
PUSH_END(vkd_pc_swiglu_bwd)
#endif
/* the split-K partials of attention (attention.glsl, SPLIT) into o: splits x rows x n_q
 * records of hd4 + 1 vec4 words */
#if !defined(VULKAN) || defined(PC_ATTN_MERGE)
PUSH_BEGIN(vkd_pc_attn_merge)
    uint q_rows;
    uint n_q;
    uint hd4;
    uint splits;
PUSH_END(vkd_pc_attn_merge)
#endif

/* attention backward: DQ over keys [r0, r1) (block-sparse: over a row's visible keys in
 * order, context first), DKV over query rows [r0, r1) */
#if !defined(VULKAN) || defined(PC_ATTENTION_BWD)
PUSH_BEGIN(vkd_pc_attention_bwd)
    uint q_rows;
    uint kv_len;
    uint n_q;
    uint n_kv;
    uint q_pos0;
    uint causal;
    uint k_stride;
    uint r0;
    uint r1;
    uint accumulate;
    float scale;
    uint block;          /* block-sparse variants: rows per block */
PUSH_END(vkd_pc_attention_bwd)
#endif
/* greedy LM head (argmax_blocks): rows x_row0.. of x against one chunk of W (its rows
 * [col0, col0 + rows) of N); each workgroup's best (value bits, index) of row i goes to
 * part[(i * parts + part0 + group) * 2 + {0, 1}] */
#if !defined(VULKAN) || defined(PC_ARGMAX_BLOCKS)
PUSH_BEGIN(vkd_pc_argmax_blocks)
    uint m;
    uint K;
    uint col0;
    uint rows;
    uint x_row0;
    uint part0;
    uint parts;
PUSH_END(vkd_pc_argmax_blocks)
#endif

#endif
