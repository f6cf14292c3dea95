#version 450
/* Embedding lookup from a table in the texel block layout (VKD_LAYOUT_BLOCKS), one chunk:
 * y[i, :H] = table[ids[i] - row0, :H] for the ids in [row0, row0 + rows); the dispatch of the
 * chunk with row0 == 0 also writes zero rows for ids outside [0, V). Workgroup g handles rows
 * i = g, g + groups, ... of y; lane l reads texels l, l + lanes, ... of the row (E weights
 * each). Bindings: 0 table chunk (uniform texel buffer, RGBA32UI), 1 ids i32 (read),
 * 2 y f32 (write). */
//! texel 0
//! family embed
//! axes layout=blocks dtype=f32,f16,bf16
#define PC_EMBED
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(binding = 0) uniform usamplerBuffer w;
layout(std430, binding = 1) readonly buffer I { int ids[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

#if DT_F32
#define E 4u
#else
#define E 8u
#endif

float elem(uvec4 q, uint e) {
#if DT_F32
    return uintBitsToFloat(q[e]);
#elif DT_BF16
    uint u = q[e >> 1];
    return (e & 1u) != 0u ? bf16_hi(u) : bf16_lo(u);
#else
    return f16x2(q[e >> 1])[e & 1u];
#endif
}

void main() {
    uint lane = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
    uint kt = (pc.H + E - 1u) / E;
    for (uint i = gl_WorkGroupID.x; i < pc.m; i += gl_NumWorkGroups.x) {
        int id = ids[i];
        bool valid = id >= 0 && uint(id) < pc.V;
        if (valid && (uint(id) < pc.row0 || uint(id) - pc.row0 >= pc.rows)) continue;
        if (!valid && pc.row0 != 0u) continue;
        uint r = valid ? uint(id) - pc.row0 : 0u;
        uint t0 = (r / 256u) * kt * 256u + r % 256u;
        for (uint k = lane; k < kt; k += wg) {
            uvec4 q = valid ? texelFetch(w, int(t0 + k * 256u)) : uvec4(0u);
            for (uint e = 0u; e < E; e++)
                if (k * E + e < pc.H) y[i * pc.H + k * E + e] = elem(q, e);
        }
    }
}
