#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* Global-norm pieces for gradient clipping.
 * SUMSQ: workgroup g writes the sum of squares of x[g*per_wg, (g+1)*per_wg) to
 *        parts[part0 + g] (lanes on consecutive elements, fixed reduction order).
 * NORM:  one lane writes sqrt(sum of parts[0..nparts) in index order) to parts[part0].
 * Bindings: 0 x (read), 1 parts (write / read-write). */
//! variant OPTIM_SUMSQ
//! variant OPTIM_NORM NORM
#define PC_SUMSQ
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer P { float parts[]; };
void main() {
#ifdef NORM
    if (gl_LocalInvocationID.x == 0u && gl_WorkGroupID.x == 0u) {
        float s = 0.0;
        for (uint i = 0u; i < pc.nparts; i++) s += parts[i];
        parts[pc.part0] = sqrt(s);
    }
#else
    uint begin = gl_WorkGroupID.x * pc.per_wg;
    uint end = min(begin + pc.per_wg, pc.n);
    float s = 0.0;
    for (uint i = begin + gl_LocalInvocationID.x; i < end; i += gl_WorkGroupSize.x) {
        float v = x[i];
        s += v * v;
    }
    s = wg_sum(s);
    if (gl_LocalInvocationID.x == 0u) parts[pc.part0 + gl_WorkGroupID.x] = s;
#endif
}
