/* rowreduce.glsl: workgroup reductions for the logits kernels (one row per workgroup).
 * Subgroup reductions first, then one shared slot per subgroup summed by every lane in the
 * same fixed order, so all lanes hold the identical result and reruns are bit-identical.
 * The C side guarantees: workgroup size <= 64 subgroups. Needs the subgroup arithmetic
 * feature (checked at dispatch); include after the two GL_KHR_shader_subgroup extensions. */
#ifndef VKD_ROWREDUCE_GLSL
#define VKD_ROWREDUCE_GLSL

#include "wgsync.glsl" /* ONE_SG, wg_barrier_shared */

#define RR_SLOTS 64
#define NEG_INF uintBitsToFloat(0xff800000u)
shared float rr_f[RR_SLOTS];
shared uint rr_u[RR_SLOTS];

#define VKD_NAN uintBitsToFloat(0x7fc00000u)

/* A logit no reduction can give a meaningful answer for: NaN or +Inf (-Inf is a masked
 * token, probability 0). Bit tests, so no fast-math folding can drop the check. */
bool bad_logit(float v) {
    uint u = floatBitsToUint(v);
    return (u & 0x7fffffffu) > 0x7f800000u || u == 0x7f800000u;
}

/* Order-preserving map of floats to uints (a < b <=> key(a) < key(b)); -0 maps as +0. */
uint fkey(float f) {
    uint u = floatBitsToUint(f == 0.0 ? 0.0 : f);
    return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

float wg_sum(float v) {
    v = subgroupAdd(v);
    if (ONE_SG) return 0.0 + v;
    barrier();
    if (subgroupElect()) rr_f[gl_SubgroupID] = v;
    barrier();
    float s = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++) s += rr_f[i];
    return s;
}

float wg_max(float v) {
    v = subgroupMax(v);
    if (ONE_SG) return v;
    barrier();
    if (subgroupElect()) rr_f[gl_SubgroupID] = v;
    barrier();
    float s = rr_f[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) s = max(s, rr_f[i]);
    return s;
}

uint wg_sum_u(uint v) {
    v = subgroupAdd(v);
    if (ONE_SG) return 0u + v;
    barrier();
    if (subgroupElect()) rr_u[gl_SubgroupID] = v;
    barrier();
    uint s = 0u;
    for (uint i = 0u; i < gl_NumSubgroups; i++) s += rr_u[i];
    return s;
}

uint wg_min_u(uint v) {
    v = subgroupMin(v);
    if (ONE_SG) return v;
    barrier();
    if (subgroupElect()) rr_u[gl_SubgroupID] = v;
    barrier();
    uint s = rr_u[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) s = min(s, rr_u[i]);
    return s;
}

uint wg_max_u(uint v) {
    v = subgroupMax(v);
    if (ONE_SG) return v;
    barrier();
    if (subgroupElect()) rr_u[gl_SubgroupID] = v;
    barrier();
    uint s = rr_u[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) s = max(s, rr_u[i]);
    return s;
}

/* Compensated (Kahan) addition: vocabulary rows put ~19k terms in one lane on lavapipe. */
void kahan_add(inout float s, inout float c, float v) {
    precise float y = v - c;
    precise float t = s + y;
    c = (t - s) - y;
    s = t;
}

/* Online log-sum-exp: (m, s + c) stands for (s + c) * exp(m) = sum exp(v), c the Kahan
 * compensation. -inf entries add nothing. */
void lse_add(inout float m, inout float s, inout float c, float v) {
    if (v > m) {
        float f = exp(m - v);
        s *= f;
        c *= f;
        kahan_add(s, c, 1.0);
        m = v;
    } else if (v > NEG_INF) {
        kahan_add(s, c, exp(v - m));
    }
}

/* Combines the lanes' (m, s) into the row's; every lane gets the result. */
void wg_lse(inout float m, inout float s, float c) {
    float mm = wg_max(m);
    float t = s > 0.0 ? (s - c) * exp(m - mm) : 0.0;
    s = wg_sum(t);
    m = mm;
}

/* 16-bin histograms (radix-16 selection): lanes' private bins summed over the workgroup. */
shared uint rr_hc[16 * RR_SLOTS];
shared float rr_hm[16 * RR_SLOTS];

void wg_bins(inout uint c[16], inout float w[16], bool with_mass) {
    if (ONE_SG) {
        for (int b = 0; b < 16; b++) {
            c[b] = 0u + subgroupAdd(c[b]);
            w[b] = 0.0 + (with_mass ? subgroupAdd(w[b]) : 0.0);
        }
        return;
    }
    barrier();
    for (int b = 0; b < 16; b++) {
        uint cs = subgroupAdd(c[b]);
        float ws = with_mass ? subgroupAdd(w[b]) : 0.0;
        if (subgroupElect()) {
            rr_hc[b * RR_SLOTS + gl_SubgroupID] = cs;
            rr_hm[b * RR_SLOTS + gl_SubgroupID] = ws;
        }
    }
    barrier();
    for (int b = 0; b < 16; b++) {
        uint cs = 0u;
        float ws = 0.0;
        for (uint i = 0u; i < gl_NumSubgroups; i++) {
            cs += rr_hc[b * RR_SLOTS + i];
            ws += rr_hm[b * RR_SLOTS + i];
        }
        c[b] = cs;
        w[b] = ws;
    }
}

/* Element loops. lavapipe (Mesa 22.x gallivm) caps the loop iterations of one shader
 * invocation at 65535 in total (its "loop limiter"): past that every loop exits at once.
 * So each iteration visits 16 elements: ROW_FOR visits i < n with lanes on consecutive
 * groups of 4 (16-byte words), 4 groups per iteration, in increasing i per lane;
 * ROW_RANGE visits begin <= i < end in order, 16 per iteration. ELEM is a macro of i. */
#define ROW_STEP4_(b, e, ELEM) { uint i4_ = (b); \
    if (i4_ < (e)) { ELEM(i4_) } if (i4_ + 1u < (e)) { ELEM(i4_ + 1u) } \
    if (i4_ + 2u < (e)) { ELEM(i4_ + 2u) } if (i4_ + 3u < (e)) { ELEM(i4_ + 3u) } }
#define ROW_FOR(n, ELEM) { uint n_ = (n), s_ = gl_WorkGroupSize.x * 4u; \
    for (uint b_ = gl_LocalInvocationID.x * 4u; b_ < n_; b_ += 4u * s_) { \
        ROW_STEP4_(b_, n_, ELEM) ROW_STEP4_(b_ + s_, n_, ELEM) \
        ROW_STEP4_(b_ + 2u * s_, n_, ELEM) ROW_STEP4_(b_ + 3u * s_, n_, ELEM) } }
#define ROW_RANGE(begin, end, ELEM) { uint e_ = (end); \
    for (uint b_ = (begin); b_ < e_; b_ += 16u) { \
        ROW_STEP4_(b_, e_, ELEM) ROW_STEP4_(b_ + 4u, e_, ELEM) \
        ROW_STEP4_(b_ + 8u, e_, ELEM) ROW_STEP4_(b_ + 12u, e_, ELEM) } }

/* The mask of the key bits above `shift` (the part a radix level has already fixed). */
uint radix_hi_mask(uint shift) { return shift >= 28u ? 0u : (0xffffffffu << (shift + 4u)); }

#endif
