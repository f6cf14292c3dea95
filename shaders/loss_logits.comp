#version 450
/* Logits of one vocabulary chunk: S[r*s_stride + c] = sum_k H[r*hidden + k] * W[w_off +
 * c*hidden + k] for r < rows, c < ncols. Invocation (c, row tile) computes RT rows of one
 * column: it reads its W row once; its loop runs `hidden` passes (hidden / 4 with LOSS_VEC4,
 * 4 elements per load).
 * Bindings: 0 H f32 (read), 1 W chunk (read), 2 S f32 (write). */
//! axes layout=rows dtype=f32,f16,bf16
#define PC_LOSS
#define W_BINDING 1
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "common.glsl"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer H { float h[]; };
layout(std430, binding = 0) readonly buffer H4 { vec4 h4[]; };
layout(std430, binding = 2) writeonly buffer S { float s[]; };
void main() {
    uint c = gl_GlobalInvocationID.x, r0 = gl_WorkGroupID.y * RT;
    if (c >= pc.ncols) return;
    uint last = pc.rows - 1u;
    uint wb = pc.w_off + c * pc.hidden;
#define HB(i) uint hb##i = min(r0 + i, last) * pc.hidden; float acc##i = 0.0;
    UNROLL_RT(HB)
    if ((pc.mode & LOSS_VEC4) != 0u) {
        uint wb4 = wb >> 2, n4 = pc.hidden >> 2;
        for (uint k = 0u; k < n4; k++) {
            vec4 wv = wload4(wb4 + k);
#define ACC4(i) acc##i += dot(h4[(hb##i >> 2) + k], wv);
            UNROLL_RT(ACC4)
        }
    } else {
        for (uint k = 0u; k < pc.hidden; k++) {
            float wv = wload(wb + k);
#define ACC(i) acc##i += h[hb##i + k] * wv;
            UNROLL_RT(ACC)
        }
    }
#define ST(i) if (r0 + i < pc.rows) s[(r0 + i) * pc.s_stride + c] = acc##i;
    UNROLL_RT(ST)
}
