#version 450
/* y = a*x0 + b*x1 over n f32 elements (residual adds use a = b = 1). Grid-stride loop, so
 * any workgroup count covers any n. Bindings: 0 x0 (read), 1 x1 (read), 2 y (write). */
#define PC_AXPBY
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X0 { float x0[]; };
layout(std430, binding = 1) readonly buffer X1 { float x1[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride)
        y[i] = pc.a * x0[i] + pc.b * x1[i];
}
