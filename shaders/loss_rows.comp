#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* Row pieces of the fused LM-head loss (see ops_loss.c for the algorithm).
 * LOSS_STATS: workgroup r folds chunk logits S[r, :ncols] (and teacher logits) into the
 *   running state of row r: online log-sum-exp of z, of z/T, of a = t/T, D = sum exp(a -
 *   max a)(a - z/T), and the label's logit. Lanes reduce in a fixed order.
 *   Bindings: 0 S (read), 1 teacher (read: T scratch, or the teacher logits tensor when
 *   t_stride > 0), 2 labels i32 (read), 3 state (read-write).
 * LOSS_FINAL: invocation r turns its state into loss[r] = w_r (ce_w CE + T^2 kl_w KL) and
 *   stores the three log-sum-exps in the state for the gradient pass.
 *   Bindings: 0 state (read-write), 1 labels, 2 row weights, 3 loss (write).
 * LOSS_STATS_ONLINE (STATS with ONLINE, CE only, for the one-pass loss and dH): as
 *   STATS, then S[r, c] = exp(z - m) in place with m the row's running max after this chunk,
 *   and the max before it kept in ST_MPREV, so loss_dh (LOSS_ONLINE) can rescale its sum.
 *   Bindings as STATS, S read-write.
 * LOSS_DH_FINAL (one-pass mode, after FINAL): dH[r, k] = w_r ce_w (dH[r, k] / s_r - G[r, k])
 *   with s_r the running sum of exp(z - m), G the label's head row; 0 for rows without a
 *   label. Invocation (k, r). Bindings: 0 state, 1 labels, 2 row weights, 3 G, 4 dH (rw).
 * LOSS_DLOGITS: S[r, c] = w_r (ce_w (softmax(z)_c - [j0 + c == label]) + T kl_w (softmax(z/T)_c
 *   - softmax(a)_c)), the gradient of loss[r] with respect to the logits, in place.
 *   Bindings: 0 S (read-write), 1 teacher, 2 labels, 3 state (read), 4 row weights.
 *   L1 mode: the teacher term is instead l1_w q_c (sign(q_c - p_c) - GS) (q, p the softmaxes).
 * LOSS_L1 (L1 mode, second pass after FINAL): workgroup r adds sum_c |q_c - p_c| and
 *   sum_c q_c sign(q_c - p_c) over the chunk into the state's ST_L1 / ST_GS. Lanes reduce in
 *   a fixed order. Bindings as STATS.
 * LOSS_L1_FINAL: invocation r adds w_r l1_w L1 to loss[r] and stores L1 in l1[r] (when bound).
 *   Bindings: 0 state (read), 1 row weights, 2 loss (read-write), 3 l1 (write). */
//! variant LOSS_STATS STATS
//! variant LOSS_FINAL FINAL
//! variant LOSS_DLOGITS DLOGITS
//! variant LOSS_STATS_ONLINE STATS ONLINE
//! variant LOSS_DH_FINAL DH_FINAL
//! variant LOSS_L1 L1STATS
//! variant LOSS_L1_FINAL L1FINAL
#define PC_LOSS
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "rowreduce.glsl"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;

#ifdef FINAL
layout(std430, binding = 0) buffer State { float st[]; };
layout(std430, binding = 1) readonly buffer Labels { int labels[]; };
layout(std430, binding = 2) readonly buffer RowW { float roww[]; };
layout(std430, binding = 3) writeonly buffer Loss { float loss[]; };
void main() {
    uint r = gl_GlobalInvocationID.x;
    if (r >= pc.rows) return;
    uint b = r * 8u;
    float lse1 = st[b + ST_M1] + log(st[b + ST_S1]);
    float lseb = st[b + ST_MB] + log(st[b + ST_SB]);
    float lsea = st[b + ST_MA] + log(st[b + ST_SA]);
    float l = 0.0;
    int y = (pc.mode & LOSS_CE) != 0u ? labels[r] : -1;
    if (y >= 0 && uint(y) < pc.vocab) l += pc.ce_w * (lse1 - st[b + ST_ZY]);
    if ((pc.mode & (LOSS_KL | LOSS_L1)) == LOSS_KL)
        l += pc.kl_loss_w * (st[b + ST_D] / st[b + ST_SA] - lsea + lseb);
    float w = (pc.mode & LOSS_ROWW) != 0u ? roww[r] : 1.0;
    loss[r] = w * l;
    st[b + ST_M1] = lse1;
    st[b + ST_MB] = lseb;
    st[b + ST_MA] = lsea;
}
#elif defined(DH_FINAL)
layout(std430, binding = 0) readonly buffer State { float st[]; };
layout(std430, binding = 1) readonly buffer Labels { int labels[]; };
layout(std430, binding = 2) readonly buffer RowW { float roww[]; };
layout(std430, binding = 3) readonly buffer G { float gy[]; };
layout(std430, binding = 4) buffer DH { float dh[]; };
void main() {
    uint k = gl_GlobalInvocationID.x, r = gl_WorkGroupID.y;
    if (k >= pc.hidden) return;
    uint o = r * pc.hidden + k;
    int y = labels[r];
    float w = pc.ce_w * ((pc.mode & LOSS_ROWW) != 0u ? roww[r] : 1.0);
    dh[o] = y >= 0 && uint(y) < pc.vocab ? w * (dh[o] / st[r * 8u + ST_S1] - gy[o]) : 0.0;
}
#elif defined(L1FINAL)
layout(std430, binding = 0) readonly buffer State { float st[]; };
layout(std430, binding = 1) readonly buffer RowW { float roww[]; };
layout(std430, binding = 2) buffer Loss { float loss[]; };
layout(std430, binding = 3) writeonly buffer L1 { float l1out[]; };
void main() {
    uint r = gl_GlobalInvocationID.x;
    if (r >= pc.rows) return;
    float l1 = st[r * 8u + ST_L1];
    loss[r] += ((pc.mode & LOSS_ROWW) != 0u ? roww[r] : 1.0) * pc.kl_loss_w * l1;
    if ((pc.mode & LOSS_L1OUT) != 0u) l1out[r] = l1;
}
#else
layout(std430, binding = 1) readonly buffer Teacher { float tch[]; };
layout(std430, binding = 2) readonly buffer Labels { int labels[]; };

float teacher(uint r, uint c) {
    return pc.t_stride != 0u ? tch[pc.t_off + r * pc.t_stride + c] : tch[r * pc.s_stride + c];
}

#ifdef STATS
#ifdef ONLINE
layout(std430, binding = 0) buffer S { float s[]; };
#else
layout(std430, binding = 0) readonly buffer S { float s[]; };
#endif
layout(std430, binding = 3) buffer State { float st[]; };

/* a = teacher logit / T, b = student logit / T: online sum of exp(a - ma) and D. */
void kl_add(inout float ma, inout float sa, inout float d, float a, float bv) {
    if (a > ma) {
        float f = exp(ma - a);
        sa = sa * f + 1.0;
        d = d * f + (a - bv);
        ma = a;
    } else if (a > NEG_INF) {
        float e = exp(a - ma);
        sa += e;
        d += e * (a - bv);
    }
}

/* (m, s) and (m2, s2) stand for s*exp(m) and s2*exp(m2): their sum as (max, scaled sum). */
void merge(inout float m, inout float s, float m2, float s2) {
    float mm = max(m, m2);
    if (mm == NEG_INF) return;
    s = (m > NEG_INF ? s * exp(m - mm) : 0.0) + (m2 > NEG_INF ? s2 * exp(m2 - mm) : 0.0);
    m = mm;
}

void main() {
    uint r = gl_WorkGroupID.x, sb = r * pc.s_stride;
    bool ce = (pc.mode & LOSS_CE) != 0u, kl = (pc.mode & LOSS_KL) != 0u;
    float m1 = NEG_INF, s1 = 0.0, c1 = 0.0, mb = NEG_INF, s2 = 0.0, c2 = 0.0;
    float ma = NEG_INF, sa = 0.0, d = 0.0;
    uint b = r * 8u;
    bool first = (pc.mode & LOSS_FIRST) != 0u;
#ifdef ONLINE
    /* read before the barriers of the reductions: lanes overwrite S and lane 0 the state after them */
    int yo = labels[r];
    bool here = yo >= int(pc.j0) && yo < int(pc.j0 + pc.ncols);
    float zy = here ? s[sb + uint(yo) - pc.j0] : 0.0;
    float mprev = first ? NEG_INF : st[b + ST_M1];
#endif
    /* L1 mode needs no D: the teacher's log-sum-exp then takes the student's exact path, so
     * equal logits give bit-equal softmaxes (|q - p| = 0 where p == q) */
    bool l1 = (pc.mode & LOSS_L1) != 0u;
    float ca = 0.0;
#define ELEM(i) { float z = s[sb + i]; \
        if (ce) lse_add(m1, s1, c1, z); \
        if (kl) { float bv = z * pc.inv_t, av = teacher(r, i) * pc.inv_t; lse_add(mb, s2, c2, bv); \
                  if (l1) lse_add(ma, sa, ca, av); else kl_add(ma, sa, d, av, bv); } }
    ROW_FOR(pc.ncols, ELEM)
#undef ELEM
    if (ce) wg_lse(m1, s1, c1);
    if (kl && l1) {
        wg_lse(mb, s2, c2);
        wg_lse(ma, sa, ca);
    } else if (kl) {
        wg_lse(mb, s2, c2);
        float mm = wg_max(ma);
        float f = ma > NEG_INF ? exp(ma - mm) : 0.0;
        sa = wg_sum(sa * f);
        d = wg_sum(d * f);
        ma = mm;
    }
#ifdef ONLINE
    {
        /* the chunk's weights exp(z - m) in dH's running sum, m the new running max (merge's) */
        float mn = max(mprev, m1);
#define EXPZ(i) s[sb + i] = exp(s[sb + i] - mn);
        ROW_FOR(pc.ncols, EXPZ)
#undef EXPZ
    }
#endif
    if (gl_LocalInvocationID.x != 0u) return;
    if (first) {
        st[b + ST_M1] = NEG_INF; st[b + ST_S1] = 0.0; st[b + ST_MB] = NEG_INF; st[b + ST_SB] = 0.0;
        st[b + ST_MA] = NEG_INF; st[b + ST_SA] = 0.0; st[b + ST_D] = 0.0; st[b + ST_ZY] = 0.0;
    }
    if (ce) {
        float m = st[b + ST_M1], t = st[b + ST_S1];
        merge(m, t, m1, s1);
        st[b + ST_M1] = m; st[b + ST_S1] = t;
#ifdef ONLINE
        if (here) st[b + ST_ZY] = zy;
        st[b + ST_MPREV] = mprev;
#else
        int y = labels[r];
        if (y >= int(pc.j0) && y < int(pc.j0 + pc.ncols)) st[b + ST_ZY] = s[sb + uint(y) - pc.j0];
#endif
    }
    if (kl) {
        float m = st[b + ST_MB], t = st[b + ST_SB];
        merge(m, t, mb, s2);
        st[b + ST_MB] = m; st[b + ST_SB] = t;
        /* the teacher pair and D share one rescaling */
        float mo = st[b + ST_MA], so = st[b + ST_SA], dold = st[b + ST_D];
        float mm = max(mo, ma);
        if (mm > NEG_INF) {
            float fo = mo > NEG_INF ? exp(mo - mm) : 0.0, fn = ma > NEG_INF ? exp(ma - mm) : 0.0;
            st[b + ST_SA] = so * fo + sa * fn;
            st[b + ST_D] = dold * fo + d * fn;
            st[b + ST_MA] = mm;
        }
    }
}
#endif

#ifdef L1STATS
layout(std430, binding = 0) readonly buffer S { float s[]; };
layout(std430, binding = 3) buffer State { float st[]; };
void main() {
    uint r = gl_WorkGroupID.x, sb = r * pc.s_stride, b = r * 8u;
    /* the log-sum-exps of FINAL: student in ST_MB (temperature 1), teacher in ST_MA */
    float lz = st[b + ST_MB], la = st[b + ST_MA], l1 = 0.0, gs = 0.0;
#define ELEM(i) { float q = exp(s[sb + i] - lz), d = q - exp(teacher(r, i) - la); \
        l1 += abs(d); gs += q * sign(d); }
    ROW_FOR(pc.ncols, ELEM)
#undef ELEM
    l1 = wg_sum(l1);
    gs = wg_sum(gs);
    if (gl_LocalInvocationID.x != 0u) return;
    bool first = (pc.mode & LOSS_FIRST) != 0u;
    st[b + ST_L1] = first ? l1 : st[b + ST_L1] + l1;
    st[b + ST_GS] = first ? gs : st[b + ST_GS] + gs;
}
#endif

#ifdef DLOGITS
layout(std430, binding = 0) buffer S { float s[]; };
layout(std430, binding = 3) readonly buffer State { float st[]; };
layout(std430, binding = 4) readonly buffer RowW { float roww[]; };
void main() {
    uint c = gl_GlobalInvocationID.x, r = gl_WorkGroupID.y;
    if (c >= pc.ncols) return;
    uint o = r * pc.s_stride + c, b = r * 8u;
    float z = s[o], g = 0.0;
    int y = (pc.mode & LOSS_CE) != 0u ? labels[r] : -1;
    if (y >= 0 && uint(y) < pc.vocab) g += pc.ce_w * (exp(z - st[b + ST_M1]) - (uint(y) == pc.j0 + c ? 1.0 : 0.0));
    if ((pc.mode & LOSS_L1) != 0u) {
        float q = exp(z - st[b + ST_MB]), d = q - exp(teacher(r, c) - st[b + ST_MA]);
        g += pc.kl_grad_w * q * (sign(d) - st[b + ST_GS]);
    } else if ((pc.mode & LOSS_KL) != 0u) {
        float a = teacher(r, c) * pc.inv_t;
        g += pc.kl_grad_w * (exp(z * pc.inv_t - st[b + ST_MB]) - exp(a - st[b + ST_MA]));
    }
    s[o] = ((pc.mode & LOSS_ROWW) != 0u ? roww[r] : 1.0) * g;
}
#endif
#endif
