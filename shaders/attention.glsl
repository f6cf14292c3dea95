/* attention.glsl: the body of attention.comp and attention_texel.comp (see attention.comp).
 * KV_TEXEL: the K/V caches are read through uniform texel buffer views.
 * SPLIT (split-K): workgroup z of gl_NumWorkGroups.z = S takes keys [j0, j1) of the row's n
 * visible keys (S contiguous ranges of ceil(n / S)) and writes, in place of o, its
 * unnormalised accumulator and its (max, sum) to the partials (binding 3: per split, row and
 * query head, hd / 4 words then vec4(max, sum, 0, 0); attention_merge.comp combines them).
 * The same arithmetic as one workgroup over keys [j0, j1). */
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define PC_ATTENTION
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint L = 8;
layout(constant_id = 2) const uint NV = 4;
layout(constant_id = 3) const uint HPW = 1;
const uint T = gl_WorkGroupSize.x / L;

layout(std430, binding = 0) readonly buffer Q { vec4 q4[]; };
layout(std430, binding = 3) writeonly buffer O { vec4 o4[]; };
#ifdef LSE
layout(std430, binding = 4) writeonly buffer LS { float lse_out[]; };
const float LN2 = 0.6931471805599453;
#endif
#ifdef BLOCKS
layout(std430, binding = 5) readonly buffer AN { int anchors[]; };
#endif
#if defined(KV_TEXEL)
/* the caches' texel views (RGBA32UI): word i of an f32 cache is texel i, of an f16 cache
 * half of texel i / 2 */
layout(binding = 1) uniform usamplerBuffer kt;
layout(binding = 2) uniform usamplerBuffer vt;
#if defined(KV_F32)
vec4 load_k(uint i) { return uintBitsToFloat(texelFetch(kt, int(i))); }
vec4 load_v(uint i) { return uintBitsToFloat(texelFetch(vt, int(i))); }
#else
vec4 half4(uvec4 t, uint i) { uvec2 w = (i & 1u) != 0u ? t.zw : t.xy; return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)); }
vec4 load_k(uint i) { return half4(texelFetch(kt, int(i >> 1u)), i); }
vec4 load_v(uint i) { return half4(texelFetch(vt, int(i >> 1u)), i); }
#endif
#elif defined(KV_F32)
layout(std430, binding = 1) readonly buffer K { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { vec4 v4[]; };
vec4 load_k(uint i) { return k4[i]; }
vec4 load_v(uint i) { return v4[i]; }
#else
layout(std430, binding = 1) readonly buffer K { uvec2 k4[]; };
layout(std430, binding = 2) readonly buffer V { uvec2 v4[]; };
vec4 load_k(uint i) { uvec2 w = k4[i]; return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)); }
vec4 load_v(uint i) { uvec2 w = v4[i]; return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)); }
#endif

const float NEG = -3.0e38; /* finite "minus infinity": exp2(NEG - m) is 0, never NaN */

shared float sh_m[gl_WorkGroupSize.x * HPW];
shared float sh_l[gl_WorkGroupSize.x * HPW];
shared vec4 sh_acc[gl_WorkGroupSize.x * HPW * NV];

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint team = lane / L, tl = lane - team * L;
    uint h0 = gl_WorkGroupID.x * HPW;
    uint row = gl_WorkGroupID.y;
    uint g = h0 / pc.group;
    uint hd4 = pc.hd >> 2;
#ifdef BLOCKS
    uint blk = row / pc.block;
    uint n_ctx = min(uint(max(anchors[blk], 0)), pc.q_pos0);
    uint own = pc.q_pos0 + blk * pc.block - n_ctx; /* visible key i >= n_ctx is row own + i */
    uint n = n_ctx + pc.block;
#else
    uint n = pc.causal != 0u ? min(pc.kv_len, pc.q_pos0 + row + 1u) : pc.kv_len;
#endif
#ifdef SPLIT
    uint per = (n + gl_NumWorkGroups.z - 1u) / gl_NumWorkGroups.z;
    uint j0 = min(n, gl_WorkGroupID.z * per), j1 = min(n, j0 + per);
    /* word c of query head h0 + h in the partials */
#define PART(h, c) ((((gl_WorkGroupID.z * pc.q_rows + row) * pc.n_q + h0 + (h)) * (hd4 + 1u)) + (c))
#else
    uint j0 = 0u, j1 = n;
#endif

    vec4 qv[HPW * NV];
    vec4 acc[HPW * NV];
    float m[HPW], l[HPW];
    for (uint h = 0u; h < HPW; h++) {
        m[h] = NEG;
        l[h] = 0.0;
        for (uint u = 0u; u < NV; u++) {
            uint c = tl + L * u;
            qv[h * NV + u] = c < hd4 ? q4[(row * pc.n_q + h0 + h) * hd4 + c] * pc.scale_log2e : vec4(0.0);
            acc[h * NV + u] = vec4(0.0);
        }
    }
    uint kb = (g * pc.hd) >> 2, ks = pc.k_stride >> 2, vs = pc.v_stride >> 2;
    /* uniform trip count across the workgroup keeps the shuffles in uniform control flow */
    uint steps = (j1 - j0 + T - 1u) / T;
    for (uint it = 0u; it < steps; it++) {
        uint j = j0 + it * T + team;
        bool valid = j < j1;
        uint jj = valid ? j : j1 - 1u;
#ifdef BLOCKS
        jj = jj < n_ctx ? jj : own + jj;
#endif
        vec4 kv[NV];
        for (uint u = 0u; u < NV; u++) {
            uint c = tl + L * u;
            kv[u] = c < hd4 ? load_k(jj * ks + kb + c) : vec4(0.0);
        }
        float s[HPW];
        for (uint h = 0u; h < HPW; h++) {
            float d = 0.0;
            for (uint u = 0u; u < NV; u++) d += dot(qv[h * NV + u], kv[u]);
            s[h] = d;
        }
        if (L == gl_SubgroupSize) {
            for (uint h = 0u; h < HPW; h++) s[h] = subgroupAdd(s[h]);
        } else {
            for (uint off = L >> 1; off > 0u; off >>= 1)
                for (uint h = 0u; h < HPW; h++) s[h] += subgroupShuffleXor(s[h], off);
        }
        vec4 vv[NV];
        for (uint u = 0u; u < NV; u++) {
            uint c = tl + L * u;
            vv[u] = c < hd4 ? load_v(jj * vs + kb + c) : vec4(0.0);
        }
        for (uint h = 0u; h < HPW; h++) {
            float mn = valid ? max(m[h], s[h]) : m[h];
            float corr = exp2(m[h] - mn);
            float p = valid ? exp2(s[h] - mn) : 0.0;
            l[h] = l[h] * corr + p;
            m[h] = mn;
            for (uint u = 0u; u < NV; u++) acc[h * NV + u] = acc[h * NV + u] * corr + p * vv[u];
        }
    }

    if (T == 1u) {
        for (uint h = 0u; h < HPW; h++) {
#ifdef SPLIT
            for (uint u = 0u; u < NV; u++) {
                uint c = tl + L * u;
                if (c < hd4) o4[PART(h, c)] = acc[h * NV + u];
            }
            if (tl == 0u) o4[PART(h, hd4)] = vec4(m[h], l[h], 0.0, 0.0);
            continue;
#endif
            float inv = 1.0 / l[h];
            for (uint u = 0u; u < NV; u++) {
                uint c = tl + L * u;
                if (c < hd4) o4[(row * pc.n_q + h0 + h) * hd4 + c] = acc[h * NV + u] * inv;
            }
#ifdef LSE
            if (tl == 0u) lse_out[row * pc.n_q + h0 + h] = (m[h] + log2(l[h])) * LN2;
#endif
        }
        return;
    }
    if (tl == 0u)
        for (uint h = 0u; h < HPW; h++) { sh_m[team * HPW + h] = m[h]; sh_l[team * HPW + h] = l[h]; }
    barrier();
    float lsum[HPW];
#if defined(LSE) || defined(SPLIT)
    float mxs[HPW];
#endif
    for (uint h = 0u; h < HPW; h++) {
        float mx = NEG;
        for (uint t = 0u; t < T; t++) mx = max(mx, sh_m[t * HPW + h]);
        float ls = 0.0;
        for (uint t = 0u; t < T; t++) ls += sh_l[t * HPW + h] * exp2(sh_m[t * HPW + h] - mx);
        lsum[h] = ls;
#if defined(LSE) || defined(SPLIT)
        mxs[h] = mx;
#endif
        float f = exp2(m[h] - mx);
        for (uint u = 0u; u < NV; u++) sh_acc[(lane * HPW + h) * NV + u] = acc[h * NV + u] * f;
    }
    barrier();
    if (team != 0u) return;
    for (uint h = 0u; h < HPW; h++) {
        float inv = 1.0 / lsum[h];
        for (uint u = 0u; u < NV; u++) {
            uint c = tl + L * u;
            if (c >= hd4) continue;
            vec4 a = vec4(0.0);
            for (uint t = 0u; t < T; t++) a += sh_acc[((t * L + tl) * HPW + h) * NV + u];
#ifdef SPLIT
            o4[PART(h, c)] = a;
#else
            o4[(row * pc.n_q + h0 + h) * hd4 + c] = a * inv;
#endif
        }
#ifdef SPLIT
        if (tl == 0u) o4[PART(h, hd4)] = vec4(mxs[h], lsum[h], 0.0, 0.0);
#endif
#ifdef LSE
        if (tl == 0u) lse_out[row * pc.n_q + h0 + h] = (mxs[h] + log2(lsum[h])) * LN2;
#endif
    }
}
