#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* y = softmax(scale * x) per row, or log_softmax when pc.mode == 1. One workgroup per row:
 * an online max/sum pass, then the write pass. Lanes on consecutive 16-byte words (ROW_FOR).
 * A row holding a NaN or +Inf (bad_logit, before scaling) becomes all NaN.
 * Bindings: 0 x (read), 1 y (write). */
#define PC_LOGITS
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
void main() {
    uint xb = pc.x_off + gl_WorkGroupID.x * pc.x_stride;
    uint yb = pc.y_off + gl_WorkGroupID.x * pc.y_stride;
    float m = NEG_INF, s = 0.0, c = 0.0;
    uint bad = 0u;
#define ELEM(i) { float v = x[xb + i]; bad |= bad_logit(v) ? 1u : 0u; lse_add(m, s, c, pc.scale * v); }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    wg_lse(m, s, c);
    bad = wg_max_u(bad);
    if (bad != 0u) {
#define ELEM(i) y[yb + i] = VKD_NAN;
        ROW_FOR(pc.n, ELEM)
#undef ELEM
    } else if (pc.mode == 1u) {
        float lz = m + log(s);
#define ELEM(i) y[yb + i] = pc.scale * x[xb + i] - lz;
        ROW_FOR(pc.n, ELEM)
#undef ELEM
    } else {
        float inv = 1.0 / s;
#define ELEM(i) y[yb + i] = exp(pc.scale * x[xb + i] - m) * inv;
        ROW_FOR(pc.n, ELEM)
#undef ELEM
    }
}
