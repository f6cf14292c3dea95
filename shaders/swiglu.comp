#version 450
/* h = silu(g) * u over n f32 elements. Each workgroup owns per_wg consecutive elements
 * (a multiple of 4) and its lanes walk consecutive 16-byte words; a range's last partial
 * word is done element by element. h may alias g or u (same index read then written).
 * Bindings: 0 g, 1 u, 2 h. */
#define PC_SWIGLU
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer G { float g[]; };
layout(std430, binding = 0) buffer G4 { vec4 g4[]; };
layout(std430, binding = 1) buffer U { float u[]; };
layout(std430, binding = 1) buffer U4 { vec4 u4[]; };
layout(std430, binding = 2) buffer H { float h[]; };
layout(std430, binding = 2) buffer H4 { vec4 h4[]; };

vec4 silu(vec4 a) { return a / (1.0 + exp(-a)); }

void main() {
    uint lane = gl_LocalInvocationID.x, nl = gl_WorkGroupSize.x;
    uint begin = gl_WorkGroupID.x * pc.per_wg;
    uint end = min(begin + pc.per_wg, pc.n);
    if (begin >= end) return;
    uint w0 = begin >> 2, w1 = end >> 2; /* whole words; begin is a multiple of 4 */
    for (uint i = w0 + lane; i < w1; i += nl) h4[i] = silu(g4[i]) * u4[i];
    for (uint i = (w1 << 2) + lane; i < end; i += nl) {
        float a = g[i];
        h[i] = a / (1.0 + exp(-a)) * u[i];
    }
}
