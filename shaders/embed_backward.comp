#version 450
/* Embedding backward (vkd_op_embed_backward), deterministic without float atomics:
 *   dtable[v, c] (=|+=) sum over positions p in [offsets[v], offsets[v+1]) within [r0, r1) of
 *                       dy[order[p], c]
 * where order lists the rows of dy grouped by token id (vkd_embed_grad_index: a counting
 * sort on the host, rows ascending inside an id), so every sum runs in one fixed order.
 * Invocation (c, v): gl_GlobalInvocationID.x = column c, rows v = gl_WorkGroupID.y,
 * + gl_NumWorkGroups.y, ... Consecutive lanes read consecutive columns of one dy row.
 * The C side splits [0, m) into dispatches under the driver's loop budget, later ones
 * accumulating. Bindings: 0 dy f32 (read), 1 order i32, 2 offsets i32 (V+1), 3 dtable f32. */
#define PC_EMBED_BWD
#include "vkd_push.h"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer O { int order[]; };
layout(std430, binding = 2) readonly buffer F { int offsets[]; };
layout(std430, binding = 3) buffer DT { float dt[]; };

void main() {
    uint c = gl_GlobalInvocationID.x;
    if (c >= pc.H) return;
    for (uint v = gl_WorkGroupID.y; v < pc.V; v += gl_NumWorkGroups.y) {
        uint p0 = max(uint(offsets[v]), pc.r0), p1 = min(uint(offsets[v + 1u]), pc.r1);
        float acc = 0.0;
        for (uint p = p0; p < p1; p++) acc += dy[uint(order[p]) * pc.H + c];
        uint o = v * pc.H + c;
        if (pc.accumulate == 0u) dt[o] = acc;
        else if (p1 > p0) dt[o] += acc;
    }
}
