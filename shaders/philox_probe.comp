#version 450
/* Test probe of philox.glsl: out[4i .. 4i+3] = Philox4x32-10(key = seed, counter row i) for
 * i < n, with the counters the sampler uses. Binding: 0 out u32 (write). */
#define PC_SAMPLE
#include "vkd_push.h"
#include "philox.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer O { uvec4 o[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) o[i] = philox4x32_10(philox_counter(pc.ctr_lo, pc.ctr_hi, i), uvec2(pc.seed_lo, pc.seed_hi));
}
