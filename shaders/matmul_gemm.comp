#version 450
/* Tiled GEMM for large m (prefill, training): y[y_row0 + i, col0 + n] (=|+=)
 * x[x_row0 + i, :K] . W[n, :K] for i < m, n < rows (one chunk of W).
 * A workgroup computes a T x T tile of y (T = spec constant 1, a multiple of 4, <= 64:
 * rows of x along gl_WorkGroupID.y, rows of W along gl_WorkGroupID.x) with (T/4)^2 lanes,
 * each owning a 4 x 4 block of outputs. K advances in slices of TK columns staged in shared
 * memory (transposed, zero-padded past m, rows and K), so any shape works.
 * Bindings: 0 W chunk (read), 1 x f32 (read), 2 y f32 (write, or read-write when
 * accumulating). */
//! family matmul
//! axes trans=n layout=rows shape=gemm dtype=f32,f16,bf16
#extension GL_EXT_control_flow_attributes : enable
#define PC_MATMUL
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;                  /* (T/4)^2 lanes */
layout(constant_id = 1) const uint T = 16;

#define TK 16u
#define MAX_T 64u

#include "weight_load.glsl"                /* binding 0: W, load1 */
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };

shared float xs[TK * MAX_T];                     /* [k][row of x] */
shared float ws[TK * MAX_T];                     /* [k][row of W] */

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint wg = gl_WorkGroupSize.x;
    uint lt = T / 4u;
    uint tn = lane % lt, ti = lane / lt;          /* this lane's 4 x 4 block in the tile */
    uint n0 = gl_WorkGroupID.x * T, i0 = gl_WorkGroupID.y * T;
    vec4 acc[4] = vec4[4](vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
    for (uint k0 = 0u; k0 < pc.K; k0 += TK) {
        /* consecutive lanes read consecutive k of one row */
        for (uint e = lane; e < T * TK; e += wg) {
            uint r = e / TK, kk = e % TK, k = k0 + kk;
            uint i = i0 + r, n = n0 + r;
            xs[kk * T + r] = (i < pc.m && k < pc.K) ? x[(pc.x_row0 + i) * pc.K + k] : 0.0;
            ws[kk * T + r] = (n < pc.rows && k < pc.K) ? load1(n * pc.K + k) : 0.0;
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < TK; kk++) {
            uint o = kk * T;
            vec4 a = vec4(xs[o + ti * 4u], xs[o + ti * 4u + 1u], xs[o + ti * 4u + 2u], xs[o + ti * 4u + 3u]);
            vec4 b = vec4(ws[o + tn * 4u], ws[o + tn * 4u + 1u], ws[o + tn * 4u + 2u], ws[o + tn * 4u + 3u]);
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        barrier();
    }
    [[unroll]] for (uint a = 0u; a < 4u; a++) {
        uint i = i0 + ti * 4u + a;
        if (i >= pc.m) break;
        [[unroll]] for (uint b = 0u; b < 4u; b++) {
            uint n = n0 + tn * 4u + b;
            if (n >= pc.rows) break;
            uint o = (pc.y_row0 + i) * pc.N + pc.col0 + n;
            y[o] = pc.accumulate != 0u ? y[o] + acc[a][b] : acc[a][b];
        }
    }
}
