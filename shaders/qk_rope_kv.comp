#version 450
/* The attention inputs of a decoder layer in one dispatch: for each row r and head,
 *   (qk_norm) q, k = RMSNorm per head * q_norm, k_norm      as rmsnorm.comp
 *   q, k = RoPE at position pos0 + r                       as rope.comp
 *   kc/vc row pos0 + r = k, v (f32, or f16 packed in pairs) as copy2d.comp
 * q and k in place. Every step is the arithmetic of the shader named, in the same order
 * over the same lanes, so the results equal those of the six dispatches it replaces bit
 * for bit. Work: rows x (n_q + n_kv) head vectors (a row's query heads, then its key
 * heads); each workgroup owns vecs_per_wg consecutive vectors and its lanes walk one
 * vector's elements, with a workgroup barrier between the steps (another lane's results
 * are read). Needs head_dim % 4 == 0 and even cache rows (kv_stride), so a cache row's
 * head starts on a whole f16 word. n_q = 0: keys and values only (a DFlash draft's
 * context rows).
 * Bindings: 0 q (rows x n_q*D, read-write), 1 k (rows x n_kv*D, read-write), 2 v (rows x
 * n_kv*D), 3 q_norm, 4 k_norm (D, dtype by variant), 5 inv_freq (D/2 f32), 6 kc, 7 vc. */
//! variant QK_ROPE_KV_F32 DT_F32=1 KV_F32=1
//! variant QK_ROPE_KV_F16 DT_F16=1 KV_F32=1
//! variant QK_ROPE_KV_BF16 DT_BF16=1 KV_F32=1
//! variant QK_ROPE_KV_F32_CACHE_F16 DT_F32=1 KV_F16=1
//! variant QK_ROPE_KV_F16_CACHE_F16 DT_F16=1 KV_F16=1
//! variant QK_ROPE_KV_BF16_CACHE_F16 DT_BF16=1 KV_F16=1
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define PC_QK_ROPE_KV
#include "vkd_push.h"
#include "common.glsl"
#include "rope.glsl"
#include "rowreduce.glsl" /* wg_sum: subgroupAdd, then the subgroups' sums in order, as rmsnorm.comp */
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Q { float q[]; };
layout(std430, binding = 0) buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) buffer K { float k[]; };
layout(std430, binding = 1) buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 5) readonly buffer F { float inv_freq[]; };
#if DT_F32
layout(std430, binding = 3) readonly buffer QW4 { vec4 qw4[]; };
layout(std430, binding = 4) readonly buffer KW4 { vec4 kw4[]; };
vec4 qw_vec4(uint i) { return qw4[i]; }
vec4 kw_vec4(uint i) { return kw4[i]; }
#else
layout(std430, binding = 3) readonly buffer QW4 { uvec2 qw4[]; };
layout(std430, binding = 4) readonly buffer KW4 { uvec2 kw4[]; };
#if DT_F16
vec2 w_pair(uint word) { return f16x2(word); }
#else
vec2 w_pair(uint word) { return bf16x2(word); }
#endif
vec4 qw_vec4(uint i) { uvec2 p = qw4[i]; return vec4(w_pair(p.x), w_pair(p.y)); }
vec4 kw_vec4(uint i) { uvec2 p = kw4[i]; return vec4(w_pair(p.x), w_pair(p.y)); }
#endif
#if KV_F32
layout(std430, binding = 6) writeonly buffer KC { float kc[]; };
layout(std430, binding = 7) writeonly buffer VC { float vc[]; };
#else
layout(std430, binding = 6) writeonly buffer KC { uint kc[]; };
layout(std430, binding = 7) writeonly buffer VC { uint vc[]; };
#endif

/* RMSNorm then RoPE of the vector at element base of buffer X (q or k), norm weight NW */
#define NORM_ROPE(X, X4, NW)                                                                   \
    if (pc.qk_norm != 0u) {                                                                    \
        float s = 0.0;                                                                         \
        for (uint i = lane; i < d4; i += nl) { vec4 a = X4[b4 + i]; s += dot(a, a); }          \
        float rs = inversesqrt(wg_sum(s) / float(2u * pc.half_dim) + pc.eps);                  \
        for (uint i = lane; i < d4; i += nl) X4[b4 + i] = (X4[b4 + i] * rs) * NW(i);           \
        wg_barrier_buffer();                                                                   \
    }                                                                                          \
    for (uint j = lane; j < pc.half_dim; j += nl) {                                            \
        precise float a = pos * inv_freq[j];                                                   \
        vec2 sc = sincos_f32(a);                                                               \
        float x1 = X[base + j], x2 = X[base + j + pc.half_dim];                                \
        X[base + j] = x1 * sc.y - x2 * sc.x;                                                   \
        X[base + j + pc.half_dim] = x2 * sc.y + x1 * sc.x;                                     \
    }

void main() {
    uint lane = gl_LocalInvocationID.x, nl = gl_WorkGroupSize.x;
    uint heads = pc.n_q + pc.n_kv, D = 2u * pc.half_dim, d4 = D / 4u;
    uint nvec = pc.rows * heads;
    uint v0 = gl_WorkGroupID.x * pc.vecs_per_wg;
    uint v1 = min(v0 + pc.vecs_per_wg, nvec);
    for (uint vi = v0; vi < v1; vi++) {
        uint r = vi / heads, hh = vi - r * heads;
        float pos = float(pc.pos0 + r);
        if (hh < pc.n_q) {
            uint base = (r * pc.n_q + hh) * D, b4 = base / 4u;
            NORM_ROPE(q, q4, qw_vec4)
        } else {
            uint kh = hh - pc.n_q;
            uint base = (r * pc.n_kv + kh) * D, b4 = base / 4u;
            NORM_ROPE(k, k4, kw_vec4)
            wg_barrier_buffer();
            uint s = (pc.pos0 + r) * pc.kv_stride + kh * D;
#if KV_F32
            for (uint c = lane; c < D; c += nl) {
                kc[s + c] = k[base + c];
                vc[s + c] = v[base + c];
            }
#else
            for (uint c = lane; c < D / 2u; c += nl) {
                uint e = base + 2u * c;
                kc[s / 2u + c] = packHalf2x16(vec2(k[e], k[e + 1u]));
                vc[s / 2u + c] = packHalf2x16(vec2(v[e], v[e + 1u]));
            }
#endif
        }
    }
}
