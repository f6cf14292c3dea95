#version 450
/* GEMV for small m (decode, speculative blocks): y[y_row0 + i, col0 + n] (=|+=)
 * x[x_row0 + i, :K] . W[n, :K] for i < m <= MB, n < rows (one chunk of W).
 * Memory-bound: every weight is read once and feeds MB dot products (MB = spec constant 1,
 * the next power of two >= m, so speculative verification with m = 16 streams W once).
 * Each workgroup owns rows_per_group consecutive rows of W; its lanes walk one row at a
 * time, VEC: 8 weights per lane per step (one uvec4 of bf16/f16, two of f32), UNROLL steps
 * per iteration (requires K % 8 == 0); scalar: one weight per lane per step (any K).
 * Partial sums are reduced across the workgroup with subgroupAdd (SG) or shared memory.
 * Bindings: 0 W chunk (read), 1 x f32 (read), 2 y f32 (write, or read-write when
 * accumulating).
 * Variants (tools/gen_shaders.py): dtype x {vec, scalar} x {subgroup, shared-memory}
 * reduction, selected by vkd_select_matmul. */
//! family matmul
//! axes trans=n layout=rows shape=gemv dtype=f32,f16,bf16 vec=vec,scalar reduce=sg,shm
#ifndef VEC
#define VEC 0
#endif
#if SG
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
#define PC_MATMUL
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint MB = 1;     /* rows of x per pass: 1, 2, 4, 8 or 16 */

#define UNROLL 2
#define MAX_WG 256                               /* the host caps the workgroup size */

#if VEC
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
#else
#include "weight_load.glsl"                      /* binding 0: W, load1 */
layout(std430, binding = 1) readonly buffer X { float x[]; };
#endif
layout(std430, binding = 2) buffer Y { float y[]; };

#if SG
shared float red[16 * 32];                       /* [row][subgroup] */
#else
shared float red[16 * MAX_WG];                   /* [row][lane] */
#endif

/* Expands F(i) for every possible row of x; F guards itself with i < MB, a specialization
 * constant, so the unused rows compile away and no loop (or loop counter) is left. */
#define FOR_ROWS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) \
                    F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)

float acc[16];
uint xb[16];                                     /* x row offsets: vec4 (VEC) or float units */

#if VEC
/* 8 consecutive weights of W (g counts groups of 8 from the chunk's start) */
void load8(uint g, out vec4 lo, out vec4 hi) {
#if DT_F32
    lo = uintBitsToFloat(w[2 * g]);
    hi = uintBitsToFloat(w[2 * g + 1]);
#else
    uvec4 q = w[g];
#if DT_BF16
    lo = vec4(bf16x2(q.x), bf16x2(q.y));
    hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
    lo = vec4(f16x2(q.x), f16x2(q.y));
    hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif
}
#define FMA8(i) if (i < MB) acc[i] += dot(lo, x[xb[i] + 2u * kk]) + dot(hi, x[xb[i] + 2u * kk + 1u]);
/* kk: index of a group of 8 weights within row n (FMA8 reads it by name) */
#define STEP(k) { uint kk = (k); vec4 lo, hi; load8(base + kk, lo, hi); FOR_ROWS(FMA8) }
#else
#define FMA1(i) if (i < MB) acc[i] += wk * x[xb[i] + k];
#endif

#if VEC
#define X_ROW (pc.K / 4u)
#else
#define X_ROW pc.K
#endif
#define ZERO(i) if (i < MB) acc[i] = 0.0;
#define XOFF(i) if (i < MB) xb[i] = (pc.x_row0 + min(uint(i), pc.m - 1u)) * X_ROW;
#define STORE(i) if (i < MB && i < pc.m) { \
        uint o = (pc.y_row0 + uint(i)) * pc.N + pc.col0 + n; \
        y[o] = pc.accumulate != 0u ? y[o] + acc[i] : acc[i]; }

#if SG
#define SGADD(i) if (i < MB) acc[i] = subgroupAdd(acc[i]);
#define SGPUT(i) if (i < MB) red[i * 32 + gl_SubgroupID] = acc[i];
#define SGSUM(i) if (i < MB) { float s = 0.0; for (uint j = 0; j < gl_NumSubgroups; j++) s += red[i * 32 + j]; acc[i] = s; }
#else
#define SHPUT(i) if (i < MB) red[i * MAX_WG + lane] = acc[i];
#define SHADD(i) if (i < MB) red[i * MAX_WG + lane] += red[i * MAX_WG + lane + s];
#define SHGET(i) if (i < MB) acc[i] = red[i * MAX_WG];
#endif

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint wg = gl_WorkGroupSize.x;
    uint r0 = gl_WorkGroupID.x * pc.rows_per_group;
    uint r1 = min(r0 + pc.rows_per_group, pc.rows);
    FOR_ROWS(XOFF)
    for (uint n = r0; n < r1; n++) {
        FOR_ROWS(ZERO)
#if VEC
        uint K8 = pc.K / 8u;
        uint base = n * K8;
        uint k8 = lane;
        for (; k8 + (UNROLL - 1) * wg < K8; k8 += UNROLL * wg) {
            STEP(k8)
            STEP(k8 + wg)
        }
        for (; k8 < K8; k8 += wg) STEP(k8)
#else
        uint base = n * pc.K;
        for (uint k = lane; k < pc.K; k += wg) {
            float wk = load1(base + k);
            FOR_ROWS(FMA1)
        }
#endif
#if SG
        FOR_ROWS(SGADD)
        if (gl_NumSubgroups > 1u) {
            if (subgroupElect()) { FOR_ROWS(SGPUT) }
            barrier();
            if (lane == 0u) { FOR_ROWS(SGSUM) }
            barrier();
        }
#else
        FOR_ROWS(SHPUT)
        barrier();
        for (uint s = wg / 2u; s > 0u; s >>= 1) {
            if (lane < s) { FOR_ROWS(SHADD) }
            barrier();
        }
        if (lane == 0u) { FOR_ROWS(SHGET) }
        barrier();
#endif
        if (lane == 0u) { FOR_ROWS(STORE) }
    }
}
