#version 450
/* Register-tiled matmul for a CPU driver (lavapipe), in the three products of training:
 *   trans=n   y[y_row0 + i, col0 + n] (=|+=) sum_k x[x_row0 + i, k] W[w_row0 + n, k]  (forward)
 *   trans=dx  dx[x_row0 + i, k] (=|+=) sum_n dy[y_row0 + i, col0 + n] W[w_row0 + n, k] (dx = dy W)
 *   trans=dw  dw[o_row0 + n, k] (=|+=) sum_i dy[y_row0 + i, n] x[x_row0 + i, k]      (dw = dy^T x)
 * all written C[a, b] = sum_{r in [r0, r1)} A(a, r) B(r, b) (W one chunk of rows; dw: f32;
 * y and dy have rows of N, x and dx of K). The fused loss uses it for its three products
 * (logits S = H W^T, dH = S W, dW = S^T H) on row-major heads.
 * Why: lavapipe loads storage and shared memory lane by lane unless the address is built from
 * constants and push constants only (../shared/lavapipe-notes.md), so a kernel's speed is
 * set by how many FMAs each loaded element feeds; broadcasts from a lane with a constant
 * index are one register shuffle. One 8-lane workgroup computes 8 rows a of C x 32 columns
 * b: each lane owns 4 columns (trans=n: b0 + l + 8c; dx, dw: b0 + 4l + c) and all 8 rows,
 * 32 accumulators. Per 4 reduction steps a lane loads 4 elements of A (8 rows x 4 steps
 * across the lanes) and 16 of B, and does 128 FMAs with A broadcast from the lane holding it.
 * Loads past the last row or column are clamped (their results are not stored); steps past
 * r1 contribute zero. Needs subgroups of >= 8 lanes with broadcast (the profile says).
 * Bindings: 0 W chunk (dw: x), 1 x (trans=n) or dy, 2 out. */
//! family matmul
//! axes trans=n layout=rows shape=bcast dtype=f32,f16,bf16
//! axes trans=dx layout=rows shape=bcast dtype=f32,f16,bf16
//! axes trans=dw shape=bcast dtype=f32
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#define PC_MATMUL_BCAST
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x = 8) in;

#include "weight_load.glsl"                /* binding 0: W (dw: x), load1 */
layout(std430, binding = 1) readonly buffer IN { float inb[]; };
layout(std430, binding = 2) buffer OUT { float outv[]; };

#define ROWS8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

#if !defined(DX) && !defined(DW)
/* A = x, r-contiguous; B(r, b) = W[b, r], r-contiguous */
#define A_AT(a, r) inb[(pc.x_row0 + (a)) * pc.K + (r)]
#define B_AT(r, b) load1((pc.w_row0 + (b)) * pc.K + (r))
#define B_RCONTIG 1
#elif defined(DX)
/* A = dy (chunk columns), r-contiguous; B(r, b) = W[r, b], b-contiguous */
#define A_AT(a, r) inb[(pc.y_row0 + (a)) * pc.N + pc.col0 + (r)]
#define B_AT(r, b) load1((pc.w_row0 + (r)) * pc.K + (b))
#else
/* A(a, r) = dy[r, a], a-contiguous; B(r, b) = x[r, b], b-contiguous */
#define A_AT(a, r) inb[(pc.y_row0 + (r)) * pc.N + (a)]
#define B_AT(r, b) load1((pc.x_row0 + (r)) * pc.K + (b))
#define A_ACONTIG 1
#endif

void main() {
    uint l = gl_LocalInvocationID.x;
    uint a0 = gl_WorkGroupID.y * 8u, b0 = gl_WorkGroupID.x * 32u;
    uint alast = pc.rows_a - 1u, blast = pc.cols_b - 1u;
#if B_RCONTIG
    uint bcol[4] = uint[4](min(b0 + l, blast), min(b0 + l + 8u, blast), min(b0 + l + 16u, blast),
                           min(b0 + l + 24u, blast));
#else
    uint bc = b0 + 4u * l;
    uint bcol[4] = uint[4](min(bc, blast), min(bc + 1u, blast), min(bc + 2u, blast), min(bc + 3u, blast));
#endif
#if A_ACONTIG
    /* lane l holds rows a0 + 4 (l & 1) + c of step l >> 1 */
    uint arow = a0 + 4u * (l & 1u), astep = l >> 1;
    uint ar[4] = uint[4](min(arow, alast), min(arow + 1u, alast), min(arow + 2u, alast), min(arow + 3u, alast));
#else
    /* lane l holds row a0 + l, steps 0..3 */
    uint ar0 = min(a0 + l, alast);
#endif
    vec4 acc0 = vec4(0.0), acc1 = vec4(0.0), acc2 = vec4(0.0), acc3 = vec4(0.0);
    vec4 acc4 = vec4(0.0), acc5 = vec4(0.0), acc6 = vec4(0.0), acc7 = vec4(0.0);
    for (uint r = pc.r0; r < pc.r1; r += 4u) {
        uint rl = pc.r1 - 1u;
        uint rs[4] = uint[4](r, min(r + 1u, rl), min(r + 2u, rl), min(r + 3u, rl));
        bool tail = r + 4u > pc.r1;
        vec4 av;
#if A_ACONTIG
        uint ra = rs[astep];
        av = vec4(A_AT(ar[0], ra), A_AT(ar[1], ra), A_AT(ar[2], ra), A_AT(ar[3], ra));
        if (tail && r + astep >= pc.r1) av = vec4(0.0);
#else
        av = vec4(A_AT(ar0, rs[0]), A_AT(ar0, rs[1]), A_AT(ar0, rs[2]), A_AT(ar0, rs[3]));
        if (tail) av = mix(vec4(0.0), av, lessThan(uvec4(r) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.r1)));
#endif
        /* bs[s]: B(r + s, this lane's 4 columns) */
        vec4 bs[4];
        for (uint s = 0u; s < 4u; s++)
            bs[s] = vec4(B_AT(rs[s], bcol[0]), B_AT(rs[s], bcol[1]), B_AT(rs[s], bcol[2]),
                         B_AT(rs[s], bcol[3]));
        /* A(a0 + j, r + s) from the lane and component holding it */
#if A_ACONTIG
#define AB(j, s) subgroupBroadcast(av[(j) & 3], 2u * (s) + ((j) >> 2))
#else
#define AB(j, s) subgroupBroadcast(av[s], j)
#endif
#define STEP(s) acc0 += AB(0, s) * bs[s]; acc1 += AB(1, s) * bs[s]; acc2 += AB(2, s) * bs[s]; \
        acc3 += AB(3, s) * bs[s]; acc4 += AB(4, s) * bs[s]; acc5 += AB(5, s) * bs[s]; \
        acc6 += AB(6, s) * bs[s]; acc7 += AB(7, s) * bs[s];
        STEP(0) STEP(1) STEP(2) STEP(3)
    }
    vec4 acc[8] = vec4[8](acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    bool add = pc.accumulate != 0u;
    for (uint j = 0u; j < 8u; j++) {
        uint a = a0 + j;
        if (a >= pc.rows_a) break;
        for (uint c = 0u; c < 4u; c++) {
#if B_RCONTIG
            uint b = b0 + l + 8u * c;
#else
            uint b = b0 + 4u * l + c;
#endif
            if (b >= pc.cols_b) continue;
#if !defined(DX) && !defined(DW)
            uint o = (pc.y_row0 + a) * pc.N + pc.col0 + b;
#elif defined(DX)
            uint o = (pc.x_row0 + a) * pc.K + b;
#else
            uint o = (pc.o_row0 + a) * pc.K + b;
#endif
            outv[o] = add ? outv[o] + acc[j][c] : acc[j][c];
        }
    }
}
