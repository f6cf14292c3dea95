/* loss_common.glsl: shared pieces of the fused LM-head loss kernels (shaders/loss_*.comp). */
#ifndef VKD_LOSS_COMMON_GLSL
#define VKD_LOSS_COMMON_GLSL

#define LOSS_CE 1u
#define LOSS_KL 2u
#define LOSS_FIRST 4u
#define LOSS_ACC 8u
#define LOSS_ROWW 16u /* per-row weights bound */
#define LOSS_VEC4 32u /* hidden % 4 == 0: the product kernels read 4 elements per load */
/* one-pass loss and dH (vkd_op_lm_loss_forward_backward, CE only): loss_dh rescales its
 * running sum by the row's max change and gathers the label's head row */
#define LOSS_ONLINE 64u
/* teacher term L1 instead of KL (LOSS_KL is set too: the first pass gathers the same
 * log-sum-exps of z and of the teacher logits, temperature 1) */
#define LOSS_L1 128u
#define LOSS_L1OUT 256u /* L1 mode: the per-row L1 output is bound */
/* rows of H handled by one invocation of the product kernels (explicitly unrolled, so the
 * loop-iteration count of an invocation is the length of its one loop) */
#define RT 8u
#define UNROLL_RT(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

/* Per-row state (8 f32): running (max, sum) pairs of exp(z), exp(z/T), exp(a) (a the
 * teacher logits / T), D = sum exp(a - max_a) (a - z/T) and the label's logit. After the
 * last chunk the FINAL kernel replaces the pairs by log-sum-exps (slots 0, 2, 4). */
#define ST_M1 0u
#define ST_S1 1u
#define ST_MB 2u
#define ST_SB 3u
#define ST_MA 4u
#define ST_SA 5u
#define ST_D 6u
#define ST_ZY 7u
/* one-pass mode (CE only, so the KL slots are free): the row's running max before this chunk */
#define ST_MPREV ST_MB
/* L1 mode, after FINAL (the sums of the pairs are no longer needed): the row's L1 distance
 * and GS = sum_i q_i sign(q_i - p_i), accumulated by the L1 pass */
#define ST_L1 ST_SB
#define ST_GS ST_SA

/* With W_BINDING defined: the weight binding, wload(e) = its element e in the storage dtype
 * (DT_F32, DT_F16 or DT_BF16: the dtype axis) widened to f32, and wload4(q) = elements 4q..4q+3 in one load
 * (lavapipe checks bounds per load and lane, so fewer, wider loads are much faster). */
#ifdef W_BINDING
#ifdef DT_F32
layout(std430, binding = W_BINDING) readonly buffer Wb { float wbuf[]; };
layout(std430, binding = W_BINDING) readonly buffer Wb4 { vec4 wbuf4[]; };
float wload(uint e) { return wbuf[e]; }
vec4 wload4(uint q) { return wbuf4[q]; }
#else
layout(std430, binding = W_BINDING) readonly buffer Wb { uint wbuf[]; };
layout(std430, binding = W_BINDING) readonly buffer Wb2 { uvec2 wbuf2[]; };
vec4 wload4(uint q) {
    uvec2 u = wbuf2[q];
#ifdef DT_BF16
    return vec4(bf16_lo(u.x), bf16_hi(u.x), bf16_lo(u.y), bf16_hi(u.y));
#else
    return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
#endif
}
float wload(uint e) {
    uint q = wbuf[e >> 1];
#ifdef DT_BF16
    return (e & 1u) != 0u ? bf16_hi(q) : bf16_lo(q);
#else
    vec2 h = unpackHalf2x16(q);
    return (e & 1u) != 0u ? h.y : h.x;
#endif
}
#endif
#endif

#endif
