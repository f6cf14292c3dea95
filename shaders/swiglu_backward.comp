#version 450
/* SwiGLU backward. Forward (vkd_op_swiglu): h = silu(g) * u, silu(g) = g * s, s = sigmoid(g).
 *   dg = dh * u * s * (1 + g * (1 - s)),  du = dh * silu(g)   (written, not accumulated)
 * Grid-stride over n elements; dg and du are distinct from the inputs.
 * Bindings: 0 g, 1 u, 2 dh, 3 dg, 4 du. */
#define PC_SWIGLU_BWD
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer G { float g[]; };
layout(std430, binding = 1) buffer U { float u[]; };
layout(std430, binding = 2) buffer DH { float dh[]; };
layout(std430, binding = 3) buffer DG { float dg[]; };
layout(std430, binding = 4) buffer DU { float du[]; };

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        float a = g[i], b = u[i], d = dh[i];
        float s = 1.0 / (1.0 + exp(-a));
        dg[i] = d * b * s * (1.0 + a * (1.0 - s));
        du[i] = d * a * s;
    }
}
