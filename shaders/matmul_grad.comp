#version 450
/* Gradients of the matmul y[i, n] = x[i, :] . W[n, :] (vkd_op_matmul), for training:
 *   DX variants (trans=dx): dx[dx_row0 + i, k] (=|+=) sum_{n in [r0, r1)} dy[dy_row0 + i, col0 + n] W[n, k]
 *                (W one chunk of a frozen weight, its dtype by variant; rows n of the chunk
 *                are output features col0 + n);
 *   DW variant (trans=dw):  dw[n, k] (=|+=) sum_{i in [r0, r1)} dy[dy_row0 + i, n] x[x_row0 + i, k]
 *                (f32: LoRA matrices, trainable heads).
 * One invocation per output element: gl_GlobalInvocationID.x = k, gl_WorkGroupID.y = the
 * output row (i for DX, n for DW); consecutive lanes read consecutive k. The loop runs over
 * [r0, r1): the C side splits the reduction into dispatches that each stay under the
 * driver's loop budget (runtime/quirks.c), the later ones accumulating.
 * Bindings: DX 0 W chunk, 1 dy, 2 dx;  DW 0 x, 1 dy, 2 dw. */
//! family matmul
//! axes trans=dx layout=rows dtype=f32,f16,bf16
//! axes trans=dw dtype=f32
#define PC_MATMUL_GRAD
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;

#include "weight_load.glsl"                /* binding 0: W (DW: x), load1 */
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) buffer OUT { float outv[]; };

void main() {
    uint k = gl_GlobalInvocationID.x;
    uint row = gl_WorkGroupID.y;
    if (k >= pc.K) return;
    float acc = 0.0;
#ifdef DX
    uint dyb = (pc.dy_row0 + row) * pc.N + pc.col0;
    for (uint n = pc.r0; n < pc.r1; n++) acc += dy[dyb + n] * load1(n * pc.K + k);
    uint o = (pc.x_row0 + row) * pc.K + k;
#else
    for (uint i = pc.r0; i < pc.r1; i++)
        acc += dy[(pc.dy_row0 + i) * pc.N + row] * w[(pc.x_row0 + i) * pc.K + k];
    uint o = row * pc.K + k;
#endif
    outv[o] = pc.accumulate != 0u ? outv[o] + acc : acc;
}
