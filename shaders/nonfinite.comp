#version 450
/* count[0] += the number of non-finite values (NaN, +Inf, -Inf) among the values held by
 * pc.n 32-bit words of x: one f32 per word (pc.kind 0), or two 16-bit values per word, bf16
 * (kind 1) or f16 (kind 2). A value is non-finite when its exponent bits are all ones. Grid
 * stride over words; the host sizes the grid so each lane runs few iterations (lavapipe's
 * loop budget). Bindings: 0 x (read, as words), 1 count u32 (atomic add). */
#define PC_NONFINITE
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { uint x[]; };
layout(std430, binding = 1) buffer C { uint count[]; };
void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x, bad = 0u;
    uint m = pc.kind == 1u ? 0x7f80u : 0x7c00u;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        uint w = x[i];
        if (pc.kind == 0u) bad += uint((w & 0x7f800000u) == 0x7f800000u);
        else bad += uint((w & m) == m) + uint(((w >> 16u) & m) == m);
    }
    if (bad != 0u) atomicAdd(count[0], bad);
}
