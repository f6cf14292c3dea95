#version 450
/* Multi-row matmul against weights in the texel block layout (VKD_LAYOUT_BLOCKS,
 * runtime/vkd_runtime.h), for many rows of x on CPU drivers:
 * y[y_row0 + i, col0 + n] (=|+=) x[x_row0 + i, :K] . W[n, :K] for i < m, n < rows (one chunk).
 * Geometry, the transpose of matmul_blocks: the ROWS of x lie across the lanes (lane l owns
 * rows i0 + l + j * LANES, j < RPX) and a workgroup owns one block of 256 rows of W, taken
 * COLS consecutive rows at a time. At step k every lane fetches
 * the same COLS texels (the address depends on the workgroup and the loop only: llvmpipe,
 * which runs the lanes as one SIMD vector, loads each texel once), widens each once and does
 * 8 (16-bit) or 4 (f32) multiply-adds per row it owns. Accumulators: RPX x COLS per lane, in
 * registers (AVX2 has 16). Workgroups: x over the blocks of W, y over groups of LANES * RPX rows
 * of x (each group reads W once). 256 / COLS times one loop pass per 16-byte step of a row
 * (host-checked against the loop limit).
 * Bindings: 0 W chunk (uniform texel buffer, RGBA32UI), 1 x f32 (read), 2 y f32 (write, or
 * read-write when accumulating). */
//! texel 0
//! family matmul
//! axes trans=n layout=blocks shape=gemm dtype=f32,f16,bf16
#define PC_MATMUL
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;                  /* LANES */
layout(constant_id = 1) const uint COLS = 8;     /* rows of W per workgroup: 1, 2, 4, 8, 16 */
layout(constant_id = 2) const uint RPX = 1;      /* rows of x per lane: 1, 2 or 4 */

layout(binding = 0) uniform usamplerBuffer w;
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };

#if DT_F32
#define E 4u                                     /* weights per texel */
#else
#define E 8u
#endif

#define FOR_J(F) F(0) F(1) F(2) F(3)
#define FOR_C(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) \
                 F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)

float acc[4][16];
uint xb[4];
vec4 xl[4], xh[4];

float xat(uint j, uint e, bool guard) {
    return !guard || e < pc.K ? x[xb[j] + e] : 0.0;
}

#define XOFF(j) if (j < RPX) xb[j] = (pc.x_row0 + min(i0 + lane + uint(j) * gl_WorkGroupSize.x, \
                                                      pc.m - 1u)) * pc.K;
#define ZERO_C(c) if (c < COLS) { const uint cc = c; FOR_J(ZERO_J) }
#define ZERO_J(j) if (j < RPX) acc[j][cc] = 0.0;
#if DT_F32
#define LOADX(j) if (j < RPX) { uint e = k * E; \
        xl[j] = vec4(xat(j, e, g), xat(j, e + 1u, g), xat(j, e + 2u, g), xat(j, e + 3u, g)); }
#define FMA(j) if (j < RPX) acc[j][cc] += dot(lo, xl[j]);
#define WIDEN(q) vec4 lo = uintBitsToFloat(q);
#else
#define LOADX(j) if (j < RPX) { uint e = k * E; \
        xl[j] = vec4(xat(j, e, g), xat(j, e + 1u, g), xat(j, e + 2u, g), xat(j, e + 3u, g)); \
        xh[j] = vec4(xat(j, e + 4u, g), xat(j, e + 5u, g), xat(j, e + 6u, g), xat(j, e + 7u, g)); }
#define FMA(j) if (j < RPX) acc[j][cc] += dot(lo, xl[j]) + dot(hi, xh[j]);
#if DT_BF16
#define WIDEN(q) vec4 lo = vec4(bf16x2(q.x), bf16x2(q.y)), hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
#define WIDEN(q) vec4 lo = vec4(f16x2(q.x), f16x2(q.y)), hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif
/* one step k: the lane's rows of x, then each of the workgroup's rows of W */
#define COL_C(c) if (c < COLS) { const uint cc = c; \
        uvec4 q = texelFetch(w, int(tb + cc)); WIDEN(q) FOR_J(FMA) }
#define STEP(kk, guard) { uint k = (kk); bool g = (guard); FOR_J(LOADX) \
        uint tb = t0 + k * 256u; FOR_C(COL_C) }
#define STORE_C(c) if (c < COLS) { const uint cc = c; uint n = n0 + cc; \
        if (n < pc.rows) { FOR_J(STORE_J) } }
#define STORE_J(j) if (j < RPX) { uint i = i0 + lane + uint(j) * gl_WorkGroupSize.x; \
        if (i < pc.m) { uint o = (pc.y_row0 + i) * pc.N + pc.col0 + n; \
        y[o] = pc.accumulate != 0u ? y[o] + acc[j][cc] : acc[j][cc]; } }

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint i0 = gl_WorkGroupID.y * gl_WorkGroupSize.x * RPX; /* first row of x of the group */
    uint b = gl_WorkGroupID.x;                             /* block of W (in the chunk) */
    uint kt = (pc.K + E - 1u) / E, kf = pc.K / E;          /* steps per row: all, full */
    FOR_J(XOFF)
    /* the block's rows COLS at a time (one workgroup per column group costs lavapipe tens
     * of microseconds per group: bug_slow_many_workgroups) */
    for (uint c0 = 0u; c0 < 256u; c0 += COLS) {
        uint n0 = b * 256u + c0;                           /* first row of W of the group */
        if (n0 >= pc.rows) break;
        uint t0 = b * kt * 256u + c0;                      /* texel of row n0 at step 0 */
        { FOR_C(ZERO_C) }
        for (uint ks = 0u; ks < kf; ks++) STEP(ks, false)
        if (kf < kt) STEP(kf, true)
        FOR_C(STORE_C)
    }
}
