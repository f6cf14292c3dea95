#version 450
/* Embedding lookup for one chunk of the table: y[i, :H] = table[ids[i] - row0, :H] for the
 * ids in [row0, row0 + rows); the dispatch of the chunk with row0 == 0 also writes zero rows
 * for ids outside [0, V). Workgroup g handles rows i = g, g + groups, ... of y; its lanes
 * walk the H columns. Bindings: 0 table chunk (read), 1 ids i32 (read), 2 y f32 (write). */
//! family embed
//! axes layout=rows dtype=f32,f16,bf16
#define PC_EMBED
#include "vkd_push.h"
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "weight_load.glsl"                /* binding 0: the table, load1 */
layout(std430, binding = 1) readonly buffer I { int ids[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

void main() {
    uint lane = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
    for (uint i = gl_WorkGroupID.x; i < pc.m; i += gl_NumWorkGroups.x) {
        int id = ids[i];
        bool valid = id >= 0 && uint(id) < pc.V;
        if (valid && (uint(id) < pc.row0 || uint(id) - pc.row0 >= pc.rows)) continue;
        if (!valid && pc.row0 != 0u) continue;
        uint src = valid ? (uint(id) - pc.row0) * pc.H : 0u;
        for (uint c = lane; c < pc.H; c += wg)
            y[i * pc.H + c] = valid ? load1(src + c) : 0.0;
    }
}
