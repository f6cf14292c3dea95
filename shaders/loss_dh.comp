#version 450
/* Hidden-state gradient of one vocabulary chunk: dH[r*hidden + k] (=|+=) sum_c
 * S[r*s_stride + c] * W[w_off + c*hidden + k] for r < rows, k < hidden (S holds the logit
 * gradient). Invocation (k, row tile) owns RT rows of one column (of four consecutive
 * columns with LOSS_VEC4); its loop runs ncols passes, in increasing c (deterministic). First chunk without LOSS_ACC assigns.
 * LOSS_ONLINE (one-pass loss and dH; S holds exp(z - m), m the row's running max after this
 * chunk): dH = dH * exp(m_prev - m) + sum_c ..., so dH stays sum_c exp(z_c - m) W[c] over the
 * chunks so far; and G[r, :] = W[label_r] for a label inside the chunk (LOSS_DH_FINAL combines).
 * Bindings: 0 S f32 (read), 1 W chunk (read), 2 dH f32 (read-write), 3 state (read), 4 labels
 * i32 (read), 5 G f32 rows x hidden (write); 3..5 only read or written with LOSS_ONLINE. */
//! axes layout=rows dtype=f32,f16,bf16
#define PC_LOSS
#define W_BINDING 1
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "common.glsl"
#include "loss_common.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer S { float s[]; };
layout(std430, binding = 2) buffer DH { float dh[]; };
layout(std430, binding = 2) buffer DH4 { vec4 dh4[]; };
layout(std430, binding = 3) readonly buffer State { float st[]; };
layout(std430, binding = 4) readonly buffer Labels { int labels[]; };
layout(std430, binding = 5) writeonly buffer G { float gy[]; };
layout(std430, binding = 5) writeonly buffer G4 { vec4 gy4[]; };

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

void main() {
    uint r0 = gl_WorkGroupID.y * RT, last = pc.rows - 1u;
    if ((pc.mode & LOSS_VEC4) != 0u) {
        /* lane owns columns 4q..4q+3: one W load per chunk entry */
        uint q = gl_GlobalInvocationID.x, n4 = pc.hidden >> 2;
        if (q >= n4) return;
#define SB4(i) uint sb##i = min(r0 + i, last) * pc.s_stride; vec4 acc##i = vec4(0.0);
        UNROLL_RT(SB4)
        for (uint c = 0u; c < pc.ncols; c++) {
            vec4 wv = wload4(((pc.w_off + c * pc.hidden) >> 2) + q);
#define ACC4(i) acc##i += s[sb##i + c] * wv;
            UNROLL_RT(ACC4)
        }
#define ST4(i) if (r0 + i < pc.rows) { uint o = (r0 + i) * n4 + q; float f = old_factor(r0 + i); \
        dh4[o] = f != 0.0 ? dh4[o] * f + acc##i : acc##i; \
        uint yc = label_col(r0 + i); \
        if (yc < pc.ncols) gy4[o] = wload4(((pc.w_off + yc * pc.hidden) >> 2) + q); }
        UNROLL_RT(ST4)
        return;
    }
    uint k = gl_GlobalInvocationID.x;
    if (k >= pc.hidden) return;
#define SB(i) uint sb##i = min(r0 + i, last) * pc.s_stride; float acc##i = 0.0;
    UNROLL_RT(SB)
    for (uint c = 0u; c < pc.ncols; c++) {
        float wv = wload(pc.w_off + c * pc.hidden + k);
#define ACC(i) acc##i += s[sb##i + c] * wv;
        UNROLL_RT(ACC)
    }
#define ST(i) if (r0 + i < pc.rows) { uint o = (r0 + i) * pc.hidden + k; float f = old_factor(r0 + i); \
        dh[o] = f != 0.0 ? dh[o] * f + acc##i : acc##i; \
        uint yc = label_col(r0 + i); \
        if (yc < pc.ncols) gy[o] = wload(pc.w_off + yc * pc.hidden + k); }
    UNROLL_RT(ST)
}
