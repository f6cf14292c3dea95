#version 450
/* The last step of split-K attention (attention.glsl, SPLIT): split s left, for query row r
 * and head h, its accumulator a_s = sum_j exp2(x_j - m_s) v_j over its keys (hd / 4 words)
 * and (m_s, l_s), l_s = sum_j exp2(x_j - m_s) (log2 units; an empty split m_s = -3e38,
 * l_s = 0, a_s = 0). With M = max_s m_s:
 *   o[r, h] = sum_s exp2(m_s - M) a_s / sum_s exp2(m_s - M) l_s,
 * the softmax over all the row's keys. One invocation per 16-byte word of o: workgroup y is
 * the row, x the words of its n_q heads.
 * Bindings: 0 partials (f32, splits x q_rows x n_q records of hd4 + 1 vec4), 1 o (f32). */
#define PC_ATTN_MERGE
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer P { vec4 part[]; };
layout(std430, binding = 1) writeonly buffer O { vec4 o4[]; };

void main() {
    uint row = gl_WorkGroupID.y, i = gl_GlobalInvocationID.x;
    if (i >= pc.n_q * pc.hd4) return;
    uint h = i / pc.hd4, c = i - h * pc.hd4;
    uint rec = row * pc.n_q + h, per = pc.q_rows * pc.n_q; /* records per split */
    float mx = -3.0e38;
    for (uint s = 0u; s < pc.splits; s++) mx = max(mx, part[(s * per + rec) * (pc.hd4 + 1u) + pc.hd4].x);
    float ls = 0.0;
    vec4 a = vec4(0.0);
    for (uint s = 0u; s < pc.splits; s++) {
        uint b = (s * per + rec) * (pc.hd4 + 1u);
        vec4 st = part[b + pc.hd4];
        float f = exp2(st.x - mx);
        ls += st.y * f;
        a += part[b + c] * f;
    }
    o4[row * pc.n_q * pc.hd4 + i] = a * (1.0 / ls);
}
