#version 450
/* Gradients of the matmul y[i, n] = x[i, :] . W[n, :] (vkd_op_matmul), for training:
 *   DX variants (trans=dx): dx[dx_row0 + i, k] (=|+=) sum_{n in [r0, r1)} dy[dy_row0 + i, col0 + n] W[n, k]
 *                (W one chunk of a frozen weight, its dtype by variant; rows n of the chunk
 *                are output features col0 + n);
 *   DW variant (trans=dw):  dw[n, k] (=|+=) sum_{i in [r0, r1)} dy[dy_row0 + i, n] x[x_row0 + i, k]
 *                (f32: LoRA matrices, trainable heads).
 * DX: invocation (k, row tile) owns RT = 8 rows i of one column k (with K % 4 == 0: of four
 * columns 4q..4q+3, one 4-element load of W per n), so each W element is read once per 8 rows
 * instead of once per row (the layout of loss_dh.comp; 8-16x faster on lavapipe than one
 * invocation per output element). DW: one invocation per output element,
 * gl_GlobalInvocationID.x = k, gl_WorkGroupID.y = n. Consecutive lanes read consecutive k. The loop runs over
 * [r0, r1): the C side splits the reduction into dispatches that each stay under the
 * driver's loop budget (runtime/quirks.c), the later ones accumulating.
 * Bindings: DX 0 W chunk, 1 dy, 2 dx;  DW 0 x, 1 dy, 2 dw. */
//! family matmul
//! axes trans=dx layout=rows shape=gemv dtype=f32,f16,bf16
//! axes trans=dw shape=gemv dtype=f32
#define PC_MATMUL_GRAD
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;

#include "weight_load.glsl"                /* binding 0: W (DW: x), load1 */
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) buffer OUT { float outv[]; };

#ifdef DX
#define RT 8u
#define UNROLL_RT(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#if DT_F32
layout(std430, binding = 0) readonly buffer W4 { vec4 w4[]; };
vec4 load4(uint q) { return w4[q]; }
#else
layout(std430, binding = 0) readonly buffer W2 { uvec2 w2[]; };
vec4 load4(uint q) {
    uvec2 u = w2[q];
#if DT_BF16
    return vec4(bf16x2(u.x), bf16x2(u.y));
#else
    return vec4(f16x2(u.x), f16x2(u.y));
#endif
}
#endif
layout(std430, binding = 2) buffer OUT4 { vec4 outv4[]; };

void main() {
    uint r0 = gl_WorkGroupID.y * RT, last = pc.m - 1u;
    bool add = pc.accumulate != 0u;
    if ((pc.K & 3u) == 0u) {
        uint q = gl_GlobalInvocationID.x, k4 = pc.K >> 2;
        if (q >= k4) return;
#define DB4(i) uint db##i = (pc.dy_row0 + min(r0 + i, last)) * pc.N + pc.col0; vec4 a##i = vec4(0.0);
        UNROLL_RT(DB4)
        for (uint n = pc.r0; n < pc.r1; n++) {
            vec4 wv = load4(n * k4 + q);
#define FMA4(i) a##i += dy[db##i + n] * wv;
            UNROLL_RT(FMA4)
        }
#define ST4(i) if (r0 + i < pc.m) { uint o = (pc.x_row0 + r0 + i) * k4 + q; \
        outv4[o] = add ? outv4[o] + a##i : a##i; }
        UNROLL_RT(ST4)
        return;
    }
    uint k = gl_GlobalInvocationID.x;
    if (k >= pc.K) return;
#define DB(i) uint db##i = (pc.dy_row0 + min(r0 + i, last)) * pc.N + pc.col0; float a##i = 0.0;
    UNROLL_RT(DB)
    for (uint n = pc.r0; n < pc.r1; n++) {
        float wv = load1(n * pc.K + k);
#define FMA1(i) a##i += dy[db##i + n] * wv;
        UNROLL_RT(FMA1)
    }
#define ST1(i) if (r0 + i < pc.m) { uint o = (pc.x_row0 + r0 + i) * pc.K + k; \
    outv[o] = add ? outv[o] + a##i : a##i; }
    UNROLL_RT(ST1)
}
#else
void main() {
    uint k = gl_GlobalInvocationID.x;
    uint row = gl_WorkGroupID.y;
    if (k >= pc.K) return;
    float acc = 0.0;
    for (uint i = pc.r0; i < pc.r1; i++)
        acc += dy[(pc.dy_row0 + i) * pc.N + row] * w[(pc.x_row0 + i) * pc.K + k];
    uint o = row * pc.K + k;
    outv[o] = pc.accumulate != 0u ? outv[o] + acc : acc;
}
#endif
