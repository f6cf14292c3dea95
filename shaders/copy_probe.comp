#version 450
/* Bandwidth probe: copies n_vec4 16-byte words. Each workgroup owns one contiguous range of
 * per_group words and its lanes walk consecutive words (the fast pattern on lavapipe, fine
 * on GPUs given enough workgroups). Bindings: 0 src (read), 1 dst (write). */
#define PC_COPY
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { uvec4 src[]; };
layout(std430, binding = 1) writeonly buffer D { uvec4 dst[]; };
void main() {
    uint begin = gl_WorkGroupID.x * pc.per_group;
    uint end = min(begin + pc.per_group, pc.n_vec4);
    for (uint i = begin + gl_LocalInvocationID.x; i < end; i += gl_WorkGroupSize.x)
        dst[i] = src[i];
}
