#version 450
/* loss_dh on a head in the texel block layout (VKD_LAYOUT_BLOCKS): dH[r*hidden + k] (=|+=)
 * sum_c S[r*s_stride + c] * W[j0 + c, k], with loss_dh's modes (LOSS_ACC, LOSS_ONLINE:
 * rescale by exp(m_prev - m) and gather the label's head row into G). Invocation (q, row
 * tile) owns the E columns of texel step q (8 for 16-bit heads, 4 for f32) of RT rows; its
 * loop runs ncols passes in increasing c (deterministic), fetching texel (block c / 256, step
 * q, row c % 256): one sequential stream per block.
 * pc.w_off: texel offset of the chunk's first block inside the bound view.
 * Bindings: 0 W chunk (uniform texel buffer, RGBA32UI), 1 S f32 (read), 2 dH f32 (read-write),
 * 3 state (read), 4 labels i32 (read), 5 G f32 rows x hidden (write); 3..5 only with LOSS_ONLINE. */
//! texel 0
//! family loss_dh
//! axes layout=blocks dtype=f32,f16,bf16
#define PC_LOSS
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "common.glsl"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;
layout(binding = 0) uniform usamplerBuffer w;
layout(std430, binding = 1) readonly buffer S { float s[]; };
layout(std430, binding = 2) buffer DH { float dh[]; };
layout(std430, binding = 3) readonly buffer State { float st[]; };
layout(std430, binding = 4) readonly buffer Labels { int labels[]; };
layout(std430, binding = 5) writeonly buffer G { float gy[]; };

#if DT_F32
#define E 4u
#define WIDEN(q) vec4 lo = uintBitsToFloat(q), hi = vec4(0.0);
#else
#define E 8u
#if DT_BF16
#define WIDEN(q) vec4 lo = vec4(bf16x2(q.x), bf16x2(q.y)), hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
#define WIDEN(q) vec4 lo = vec4(f16x2(q.x), f16x2(q.y)), hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif

/* The factor of the old sum: 1 (plain), exp(m_prev - m) (LOSS_ONLINE); 0: assign. */
float old_factor(uint r) {
    bool first = (pc.mode & LOSS_FIRST) != 0u;
    if ((pc.mode & LOSS_ONLINE) != 0u) return first ? 0.0 : exp(st[r * 8u + ST_MPREV] - st[r * 8u + ST_M1]);
    return (pc.mode & LOSS_ACC) != 0u || !first ? 1.0 : 0.0;
}

/* LOSS_ONLINE: the chunk row of row r's label (or ncols when it lies outside the chunk) */
uint label_col(uint r) {
    if ((pc.mode & LOSS_ONLINE) == 0u) return pc.ncols;
    int y = labels[r];
    return y >= int(pc.j0) && y < int(pc.j0 + pc.ncols) ? uint(y) - pc.j0 : pc.ncols;
}

void put(uint r, uint k, float v, float f) {
    if (k >= pc.hidden) return;
    uint o = r * pc.hidden + k;
    dh[o] = f != 0.0 ? dh[o] * f + v : v;
}

void put_g(uint r, uint k, float v) {
    if (k < pc.hidden) gy[r * pc.hidden + k] = v;
}

void main() {
    uint kt = (pc.hidden + E - 1u) / E, q = gl_GlobalInvocationID.x;
    if (q >= kt) return;
    uint r0 = gl_WorkGroupID.y * RT, last = pc.rows - 1u, bstride = kt * 256u;
    uint tq = pc.w_off + q * 256u;                   /* texel of step q, block 0, row 0 */
#define SB(i) uint sb##i = min(r0 + i, last) * pc.s_stride; vec4 al##i = vec4(0.0), ah##i = vec4(0.0);
    UNROLL_RT(SB)
    for (uint c = 0u; c < pc.ncols; c++) {
        uvec4 t = texelFetch(w, int(tq + (c >> 8) * bstride + (c & 255u)));
        WIDEN(t)
#define ACC(i) { float sv = s[sb##i + c]; al##i += sv * lo; ah##i += sv * hi; }
        UNROLL_RT(ACC)
    }
    uint k0 = q * E;
#define ST(i) if (r0 + i < pc.rows) { uint r = r0 + i; float f = old_factor(r); \
        put(r, k0, al##i.x, f); put(r, k0 + 1u, al##i.y, f); put(r, k0 + 2u, al##i.z, f); \
        put(r, k0 + 3u, al##i.w, f); \
        if (E == 8u) { put(r, k0 + 4u, ah##i.x, f); put(r, k0 + 5u, ah##i.y, f); \
                       put(r, k0 + 6u, ah##i.z, f); put(r, k0 + 7u, ah##i.w, f); } \
        uint yc = label_col(r); \
        if (yc < pc.ncols) { uvec4 t = texelFetch(w, int(tq + (yc >> 8) * bstride + (yc & 255u))); \
            WIDEN(t) put_g(r, k0, lo.x); put_g(r, k0 + 1u, lo.y); put_g(r, k0 + 2u, lo.z); \
            put_g(r, k0 + 3u, lo.w); \
            if (E == 8u) { put_g(r, k0 + 4u, hi.x); put_g(r, k0 + 5u, hi.y); \
                           put_g(r, k0 + 6u, hi.z); put_g(r, k0 + 7u, hi.w); } } }
    UNROLL_RT(ST)
}
