#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* Greedy LM head, second half: idx[y_off + r] = the index of the best of the n (value bits,
 * index) pairs of row r written by argmax_blocks.comp, the lowest index among equal maxima
 * (pairs with index 0xffffffff hold no row and are skipped); -1 when any pair carries the
 * NaN marker (a NaN or +Inf logit), as argmax.comp.
 * One workgroup per row. Bindings: 0 part u32 (read, row r at (x_off + r * x_stride) * 2),
 * 1 idx i32 (write). */
#define PC_LOGITS
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer P { uint part[]; };
layout(std430, binding = 1) writeonly buffer I { int idx[]; };
void main() {
    uint l = gl_LocalInvocationID.x;
    uint pb = (pc.x_off + gl_WorkGroupID.x * pc.x_stride) * 2u;
    float best = NEG_INF;
    uint bi = 0xffffffffu, bad = 0u;
#define ELEM(j) { uint n = part[pb + 2u * (j) + 1u]; float v = uintBitsToFloat(part[pb + 2u * (j)]); \
        bad |= bad_logit(v) ? 1u : 0u; \
        if (n != 0xffffffffu && !bad_logit(v) && (bi == 0xffffffffu || v > best || (v == best && n < bi))) { best = v; bi = n; } }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    float m = wg_max(bi == 0xffffffffu ? NEG_INF : best);
    uint r = wg_min_u(bi != 0xffffffffu && best == m ? bi : 0xffffffffu);
    bad = wg_max_u(bad);
    if (l == 0u) idx[pc.y_off + gl_WorkGroupID.x] = bad != 0u ? -1 : r == 0xffffffffu ? 0 : int(r);
}
