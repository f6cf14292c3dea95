#version 450
/* RMSNorm backward. Forward (vkd_op_rmsnorm): y = x * r * w per group of dim values,
 * r = 1/sqrt(mean(x^2) + eps). With S = sum_j w_j dy_j x_j:
 *   DX variants (trans=dx): dx_j (=|+=) r * (w_j dy_j - x_j r^2 S / dim), one invocation per group
 *                (groups [r0, r1) of this dispatch); r recomputed from x and, with
 *                write_rstd, stored for the weight gradient;
 *   DW variant (trans=dw):  dw_j (=|+=) sum_{g in [r0, r1)} dy_gj x_gj r_g, one invocation per j.
 * Bindings: DX 0 x, 1 w (dtype by variant), 2 dy, 3 dx, 4 rstd (f32 groups);
 *           DW 0 x, 1 rstd, 2 dy, 3 dw (f32). */
//! axes trans=dx dtype=f32,f16,bf16
//! axes trans=dw dtype=f32
#define PC_RMSNORM_BWD
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
#define WEIGHT_BINDING 1
#include "weight_load.glsl"                /* binding 1: w (DW: rstd), load1 */
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) buffer OUT { float outv[]; };
#ifdef DX
layout(std430, binding = 4) buffer RS { float rstd[]; };
#endif

void main() {
    uint id = gl_GlobalInvocationID.x;
#ifdef DX
    uint g = pc.r0 + id;
    if (g >= pc.r1) return;
    uint b = g * pc.dim;
    float ss = 0.0, s = 0.0;
    for (uint j = 0u; j < pc.dim; j++) {
        float xv = x[b + j];
        ss += xv * xv;
        s += load1(j) * dy[b + j] * xv;
    }
    float r = inversesqrt(ss / float(pc.dim) + pc.eps);
    if (pc.write_rstd != 0u) rstd[g] = r;
    float c = r * r * s / float(pc.dim);
    for (uint j = 0u; j < pc.dim; j++) {
        float v = r * (load1(j) * dy[b + j] - x[b + j] * c);
        outv[b + j] = pc.accumulate != 0u ? outv[b + j] + v : v;
    }
#else
    uint j = id;
    if (j >= pc.dim) return;
    float acc = 0.0;
    for (uint g = pc.r0; g < pc.r1; g++) acc += dy[g * pc.dim + j] * x[g * pc.dim + j] * w[g];
    outv[j] = pc.accumulate != 0u ? outv[j] + acc : acc;
#endif
}
