#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* idx[r] = argmax of row r, the lowest index among equal maxima; -1 when the row holds a
 * NaN or +Inf (bad_logit).
 * One workgroup per row. Bindings: 0 x (read), 1 idx i32 (write, at y_off + r). */
#define PC_LOGITS
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer I { int idx[]; };
void main() {
    uint l = gl_LocalInvocationID.x;
    uint xb = pc.x_off + gl_WorkGroupID.x * pc.x_stride;
    float best = NEG_INF;
    uint bi = 0xffffffffu, bad = 0u;
#define ELEM(i) { float v = x[xb + i]; bad |= bad_logit(v) ? 1u : 0u; if (v > best || (bi == 0xffffffffu && v == v)) { best = v; bi = i; } }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    float m = wg_max(bi == 0xffffffffu ? NEG_INF : best);
    uint r = wg_min_u(bi != 0xffffffffu && best == m ? bi : 0xffffffffu);
    bad = wg_max_u(bad);
    if (l == 0u) idx[pc.y_off + gl_WorkGroupID.x] = bad != 0u ? -1 : r == 0xffffffffu ? 0 : int(r);
}
