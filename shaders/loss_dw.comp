#version 450
/* Head gradient of one vocabulary chunk: dW[w_off + c*hidden + k] (=|+=) sum_r
 * S[r*s_stride + c] * H[r*hidden + k] (rows in increasing order) for c < ncols,
 * k < hidden. Each dW row belongs to one chunk: LOSS_ACC decides = or +=.
 * Bindings: 0 S f32 (read), 1 H f32 (read), 2 dW f32 chunk (read-write). */
#define PC_LOSS
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { float s[]; };
layout(std430, binding = 1) readonly buffer H { float h[]; };
layout(std430, binding = 2) buffer DW { float dw[]; };
void main() {
    uint k = gl_GlobalInvocationID.x, c = gl_WorkGroupID.y;
    if (k >= pc.hidden || c >= pc.ncols) return;
    float acc = 0.0;
    for (uint r = 0u; r < pc.rows; r++) acc += s[r * pc.s_stride + c] * h[r * pc.hidden + k];
    uint o = pc.w_off + c * pc.hidden + k;
    dw[o] = (pc.mode & LOSS_ACC) != 0u ? dw[o] + acc : acc;
}
