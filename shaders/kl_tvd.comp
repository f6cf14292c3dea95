#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* p = softmax(p_scale * xp[r]), q = softmax(q_scale * xq[r]);
 * out[(out_off + r)*2 + 0] = KL(p||q) = sum p (log p - log q) from log-softmax values
 * (terms with p == 0 add nothing), [.. + 1] = TVD = 0.5 sum |p - q|.
 * Either row holding a NaN or +Inf (bad_logit, before scaling) gives out = (NaN, NaN).
 * Pass 1: both rows' online logsumexp; pass 2: the sums. Bindings: 0 xp, 1 xq, 2 out. */
#define PC_KL
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer XP { float xp[]; };
layout(std430, binding = 1) readonly buffer XQ { float xq[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };
void main() {
    uint l = gl_LocalInvocationID.x;
    uint pb = pc.p_off + gl_WorkGroupID.x * pc.p_stride;
    uint qb = pc.q_off + gl_WorkGroupID.x * pc.q_stride;
    float mp = NEG_INF, sp = 0.0, cp = 0.0, mq = NEG_INF, sq = 0.0, cq = 0.0;
    uint bad = 0u;
#define ELEM(i) { float a = xp[pb + i], b = xq[qb + i]; bad |= bad_logit(a) || bad_logit(b) ? 1u : 0u; \
        lse_add(mp, sp, cp, pc.p_scale * a); lse_add(mq, sq, cq, pc.q_scale * b); }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    wg_lse(mp, sp, cp);
    wg_lse(mq, sq, cq);
    float lzp = mp + log(sp), lzq = mq + log(sq);
    float kl = 0.0, ckl = 0.0, tv = 0.0, ctv = 0.0;
#define ELEM(i) { float lp = pc.p_scale * xp[pb + i] - lzp, lq = pc.q_scale * xq[qb + i] - lzq; \
        float p = exp(lp), q = exp(lq); \
        if (p > 0.0) kahan_add(kl, ckl, p * (lp - lq)); \
        kahan_add(tv, ctv, abs(p - q)); }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    kl = wg_sum(kl - ckl);
    tv = wg_sum(tv - ctv);
    bad = wg_max_u(bad);
    if (l == 0u) {
        o[(pc.out_off + gl_WorkGroupID.x) * 2u] = bad != 0u ? VKD_NAN : kl;
        o[(pc.out_off + gl_WorkGroupID.x) * 2u + 1u] = bad != 0u ? VKD_NAN : 0.5 * tv;
    }
}
