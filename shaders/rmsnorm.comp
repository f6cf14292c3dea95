#version 450
/* RMSNorm over groups: y = x * inversesqrt(mean(x^2) + eps) * w, for `groups` contiguous
 * groups of `dim` f32 values (rows of hidden, or rows*heads of head_dim for q/k norm).
 * Each workgroup owns groups_per_wg consecutive groups; its lanes walk consecutive 16-byte
 * words of a group (the fast streaming pattern on lavapipe), the sum of squares is reduced
 * with subgroupAdd and, across subgroups, in shared memory. y may alias x: every element is
 * read before the same lane writes it. Bindings: 0 x, 1 w (dim, dtype by variant), 2 y. */
//! axes dtype=f32,f16,bf16
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define PC_RMSNORM
#include "vkd_push.h"
#include "common.glsl"
#include "wgsync.glsl" /* ONE_SG: no workgroup barrier in the shader */
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 0) buffer X4 { vec4 x4[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 2) buffer Y4 { vec4 y4[]; };
#if DT_F32
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 1) readonly buffer W4 { vec4 w4[]; };
float w_one(uint j) { return w[j]; }
vec4 w_vec4(uint i) { return w4[i]; }
#else
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer W4 { uvec2 w4[]; };
#if DT_F16
vec2 w_pair(uint word) { return f16x2(word); }
#else
vec2 w_pair(uint word) { return bf16x2(word); }
#endif
float w_one(uint j) { vec2 p = w_pair(w[j >> 1]); return (j & 1u) != 0u ? p.y : p.x; }
vec4 w_vec4(uint i) { uvec2 p = w4[i]; return vec4(w_pair(p.x), w_pair(p.y)); }
#endif

shared float partial[64];

void main() {
    uint lane = gl_LocalInvocationID.x, nl = gl_WorkGroupSize.x;
    uint g0 = gl_WorkGroupID.x * pc.groups_per_wg;
    uint g1 = min(g0 + pc.groups_per_wg, pc.groups);
    bool vec = (pc.dim & 3u) == 0u;
    uint d4 = pc.dim >> 2;
    for (uint g = g0; g < g1; g++) {
        float s = 0.0;
        if (vec) {
            for (uint i = lane; i < d4; i += nl) { vec4 a = x4[g * d4 + i]; s += dot(a, a); }
        } else {
            for (uint i = lane; i < pc.dim; i += nl) { float a = x[g * pc.dim + i]; s += a * a; }
        }
        s = subgroupAdd(s);
        if (!ONE_SG && gl_NumSubgroups > 1u) {
            if (subgroupElect()) partial[gl_SubgroupID] = s;
            barrier();
            s = 0.0;
            for (uint k = 0u; k < gl_NumSubgroups; k++) s += partial[k];
            barrier();
        }
        float r = inversesqrt(s / float(pc.dim) + pc.eps);
        if (vec) {
            for (uint i = lane; i < d4; i += nl) y4[g * d4 + i] = (x4[g * d4 + i] * r) * w_vec4(i);
        } else {
            for (uint i = lane; i < pc.dim; i += nl) y[g * pc.dim + i] = (x[g * pc.dim + i] * r) * w_one(i);
        }
    }
}
