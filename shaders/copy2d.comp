#version 450
/* 2-D strided copy: dst[dst_off + r*dst_stride + c] = src[src_off + r*src_stride + c] for
 * r < rows, c < cols (offsets and strides in elements). Workgroup (x, y) owns rows
 * y*rows_per_wg.. and, within each, items x*cols_per_wg..; lanes walk consecutive items.
 * f32 destination: an item is one element. f16 destination (packed halves): an item is one
 * 32-bit word of the row's span, so no two invocations write the same word; a word whose
 * other half lies outside the block is read, merged and written back. When rows are full
 * width (cols == dst_stride) with an odd span start, two rows share a word: the upper row
 * owns it and the lower one skips it. Bindings: 0 src (f32), 1 dst. */
//! variant COPY2D_F32 DST_F32=1
//! variant COPY2D_F16 DST_F16=1
#define PC_COPY2D
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { float src[]; };
#if defined(DST_F32)
layout(std430, binding = 1) writeonly buffer D { float dst[]; };
#else
layout(std430, binding = 1) buffer D { uint dst[]; };

/* Whether dst half h is inside the block, and its source value. */
bool member(uint h, out float val) {
    val = 0.0;
    if (h < pc.dst_off) return false;
    uint t = h - pc.dst_off;
    uint rr = t / pc.dst_stride, c = t - rr * pc.dst_stride;
    if (rr >= pc.rows || c >= pc.cols) return false;
    val = src[pc.src_off + rr * pc.src_stride + c];
    return true;
}
#endif

void main() {
    uint lane = gl_LocalInvocationID.x, nl = gl_WorkGroupSize.x;
    uint r0 = gl_WorkGroupID.y * pc.rows_per_wg;
    uint r1 = min(r0 + pc.rows_per_wg, pc.rows);
    uint k0 = gl_WorkGroupID.x * pc.cols_per_wg;
    for (uint r = r0; r < r1; r++) {
        uint so = pc.src_off + r * pc.src_stride;
        uint s = pc.dst_off + r * pc.dst_stride;
#if defined(DST_F32)
        uint k1 = min(k0 + pc.cols_per_wg, pc.cols);
        for (uint c = k0 + lane; c < k1; c += nl) dst[s + c] = src[so + c];
#else
        uint e = s + pc.cols;
        uint wa = s >> 1, wb = (e - 1u) >> 1;
        uint first = wa;
        if (r > 0u && (s & 1u) != 0u && pc.dst_stride == pc.cols) first = wa + 1u;
        uint k1 = min(k0 + pc.cols_per_wg, wb - wa + 1u);
        for (uint k = k0 + lane; k < k1; k += nl) {
            uint w = wa + k;
            if (w < first) continue;
            uint h = 2u * w;
            if (h >= s && h + 1u < e) {
                dst[w] = packHalf2x16(vec2(src[so + (h - s)], src[so + (h + 1u - s)]));
            } else {
                float lo, hi;
                bool in_lo = member(h, lo), in_hi = member(h + 1u, hi);
                uint oldw = dst[w];
                uint nw = packHalf2x16(vec2(lo, hi));
                uint mask = (in_lo ? 0x0000ffffu : 0u) | (in_hi ? 0xffff0000u : 0u);
                dst[w] = (nw & mask) | (oldw & ~mask);
            }
        }
#endif
    }
}
