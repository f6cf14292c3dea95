#version 450
/* Hidden-state gradient of one vocabulary chunk: dH[r*hidden + k] (=|+=) sum_c
 * S[r*s_stride + c] * W[w_off + c*hidden + k] for r < rows, k < hidden (S holds the logit
 * gradient). Invocation (k, row tile) owns RT rows of one column (of four consecutive
 * columns with LOSS_VEC4); its loop runs ncols passes, in increasing c (deterministic). First chunk without LOSS_ACC assigns.
 * Bindings: 0 S f32 (read), 1 W chunk (read), 2 dH f32 (read-write). */
//! axes dtype=f32,f16,bf16
#define PC_LOSS
#define W_BINDING 1
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "common.glsl"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { float s[]; };
layout(std430, binding = 2) buffer DH { float dh[]; };
layout(std430, binding = 2) buffer DH4 { vec4 dh4[]; };
void main() {
    uint r0 = gl_WorkGroupID.y * RT, last = pc.rows - 1u;
    bool add = (pc.mode & LOSS_ACC) != 0u || (pc.mode & LOSS_FIRST) == 0u;
    if ((pc.mode & LOSS_VEC4) != 0u) {
        /* lane owns columns 4q..4q+3: one W load per chunk entry */
        uint q = gl_GlobalInvocationID.x, n4 = pc.hidden >> 2;
        if (q >= n4) return;
#define SB4(i) uint sb##i = min(r0 + i, last) * pc.s_stride; vec4 acc##i = vec4(0.0);
        UNROLL_RT(SB4)
        for (uint c = 0u; c < pc.ncols; c++) {
            vec4 wv = wload4(((pc.w_off + c * pc.hidden) >> 2) + q);
#define ACC4(i) acc##i += s[sb##i + c] * wv;
            UNROLL_RT(ACC4)
        }
#define ST4(i) if (r0 + i < pc.rows) { uint o = (r0 + i) * n4 + q; \
        dh4[o] = add ? dh4[o] + acc##i : acc##i; }
        UNROLL_RT(ST4)
        return;
    }
    uint k = gl_GlobalInvocationID.x;
    if (k >= pc.hidden) return;
#define SB(i) uint sb##i = min(r0 + i, last) * pc.s_stride; float acc##i = 0.0;
    UNROLL_RT(SB)
    for (uint c = 0u; c < pc.ncols; c++) {
        float wv = wload(pc.w_off + c * pc.hidden + k);
#define ACC(i) acc##i += s[sb##i + c] * wv;
        UNROLL_RT(ACC)
    }
#define ST(i) if (r0 + i < pc.rows) { uint o = (r0 + i) * pc.hidden + k; \
        dh[o] = add ? dh[o] + acc##i : acc##i; }
    UNROLL_RT(ST)
}
