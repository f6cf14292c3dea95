#version 450
/* Rotary embedding in place, transformers' rotate-half convention: for j < half,
 *   x[j]        = x[j] * cos(a) - x[j + half] * sin(a)
 *   x[j + half] = x[j + half] * cos(a) + x[j] * sin(a),   a = float(position) * inv_freq[j]
 * with the angle rounded to f32 exactly as transformers computes it. cos/sin are evaluated
 * here rather than with the built-ins, whose accuracy Vulkan leaves loose (2^-11 absolute
 * on [-pi, pi], nothing outside): Cody-Waite reduction by pi/2 with three 7-bit pieces (the
 * products k*P are exact for k < 2^17, i.e. angles below ~2e5) and cephes' minimax
 * polynomials; absolute error about 1e-7 for every angle in that range, on every device.
 * Work: rows x heads vectors; each workgroup owns vecs_per_wg consecutive vectors, lanes
 * walk j. Bindings: 0 x (read-write), 1 inv_freq (half f32), 2 positions (i32, rows).
 * ROPE_BACKWARD: the gradient, i.e. the inverse rotation (angle -a) of dy in place. */
//! variant ROPE
//! variant ROPE_BACKWARD INVERSE=1
#define PC_ROPE
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer F { float inv_freq[]; };
layout(std430, binding = 2) readonly buffer P { int positions[]; };

#include "rope.glsl"

void main() {
    uint lane = gl_LocalInvocationID.x, nl = gl_WorkGroupSize.x;
    uint nvec = pc.rows * pc.heads;
    uint v0 = gl_WorkGroupID.x * pc.vecs_per_wg;
    uint v1 = min(v0 + pc.vecs_per_wg, nvec);
    for (uint v = v0; v < v1; v++) {
        uint r = v / pc.heads, hh = v - r * pc.heads;
        float pos = pc.use_positions != 0u ? float(positions[r]) : float(pc.pos0 + r);
        uint base = pc.x_off + r * pc.x_stride + hh * 2u * pc.half_dim;
        for (uint j = lane; j < pc.half_dim; j += nl) {
            precise float a = pos * inv_freq[j];
            vec2 sc = sincos_f32(a);
#ifdef INVERSE
            sc.x = -sc.x;
#endif
            float x1 = x[base + j], x2 = x[base + j + pc.half_dim];
            x[base + j] = x1 * sc.y - x2 * sc.x;
            x[base + j + pc.half_dim] = x2 * sc.y + x1 * sc.x;
        }
    }
}
