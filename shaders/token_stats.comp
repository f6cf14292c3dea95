#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* Per row r with t = ids[aux_off + r]: out[(y_off + r)*3 + 0..2] = x[t], logsumexp(x),
 * 1 + #{j : x[j] > x[t]}. An id outside [0, n) reads as -inf (p = 0, rank 1 + #finite).
 * A row holding a NaN or +Inf (bad_logit) gives out = (NaN, NaN, NaN).
 * One pass, one workgroup per row. Bindings: 0 x, 1 ids i32 (read), 2 out (write). */
#define PC_LOGITS
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };
void main() {
    uint l = gl_LocalInvocationID.x;
    uint xb = pc.x_off + gl_WorkGroupID.x * pc.x_stride;
    int t = ids[pc.aux_off + gl_WorkGroupID.x];
    float gold = t >= 0 && uint(t) < pc.n ? x[xb + uint(t)] : NEG_INF;
    float m = NEG_INF, s = 0.0, c = 0.0;
    uint above = 0u, bad = 0u;
#define ELEM(i) { float v = x[xb + i]; bad |= bad_logit(v) ? 1u : 0u; lse_add(m, s, c, v); above += v > gold ? 1u : 0u; }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    wg_lse(m, s, c);
    above = wg_sum_u(above);
    bad = wg_max_u(bad);
    if (l == 0u) {
        uint ob = (pc.y_off + gl_WorkGroupID.x) * 3u;
        o[ob] = bad != 0u ? VKD_NAN : gold;
        o[ob + 1u] = bad != 0u ? VKD_NAN : m + log(s);
        o[ob + 2u] = bad != 0u ? VKD_NAN : float(above + 1u);
    }
}
