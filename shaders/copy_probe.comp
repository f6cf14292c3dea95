#version 450
/* Bandwidth probe: copies n_vec4 16-byte words. Each workgroup owns one contiguous range of
 * per_group words and its lanes walk consecutive words, four per lane per iteration (the
 * fast pattern on lavapipe, fine on GPUs given enough workgroups). The caller keeps each
 * lane under the driver's loop-iteration limit (vkd_profile.bug_loop_limit).
 * Bindings: 0 src (read), 1 dst (write). */
#define PC_COPY
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { uvec4 src[]; };
layout(std430, binding = 1) writeonly buffer D { uvec4 dst[]; };
void main() {
    uint wg = gl_WorkGroupSize.x;
    uint begin = gl_WorkGroupID.x * pc.per_group;
    uint end = min(begin + pc.per_group, pc.n_vec4);
    uint i = begin + gl_LocalInvocationID.x;
    for (; i + 3 * wg < end; i += 4 * wg) {
        uvec4 a = src[i], b = src[i + wg], c = src[i + 2 * wg], d = src[i + 3 * wg];
        dst[i] = a;
        dst[i + wg] = b;
        dst[i + 2 * wg] = c;
        dst[i + 3 * wg] = d;
    }
    for (; i < end; i += wg) dst[i] = src[i];
}
