#version 450
/* Attention backward, flash style: the probabilities are recomputed from q, k and the
 * log-sum-exp the forward saved (vkd_op_attention_lse), never stored. For query row i,
 * head h (kv head g = h / group), visible keys j (causal: j <= q_pos0 + i):
 *   p_ij = exp(scale q_i.k_j - lse_ih),  D_i = do_i . o_i,
 *   ds_ij = p_ij (do_i . v_j - D_i)
 *   DQ:  dq_i (=|+=) scale sum_j ds_ij k_j          one invocation per (i, h), keys [r0, r1)
 *   DKV: dk_j (=|+=) scale sum_{i,h in g} ds_ij q_i  one invocation per (j, g), query rows
 *        dv_j (=|+=) sum_{i,h in g} p_ij do_i        [r0, r1)
 * The C side splits the reduction range into dispatches under the driver's loop budget,
 * the later ones accumulating. Head dimension hd = 4 * HD4 (spec constant 1): each
 * invocation keeps its head vectors and accumulators in registers. All tensors f32; q, o,
 * do, dq rows of n_q*hd; k, v, dk, dv rows of k_stride (kv head g at column g*hd); lse
 * q_rows x n_q.
 * Bindings: 0 q, 1 k, 2 v, 3 o, 4 lse, 5 do, 6 dq or dk, 7 dv (DKV).
 * BLOCKS: the block-sparse mask of attention.comp's BLOCKS (query row i in block
 * b = i / block sees context keys j < anchors[b] and block b's keys q_pos0 + b*block ..);
 * anchors (i32) at binding 7 (DQ) or 8 (DKV). DQ walks a row's visible keys in order
 * (context, then its block) over [r0, r1) of them; DKV, for a context key, the rows of the
 * blocks whose anchor is past it, for a block key the rows of its own block. */
//! variant ATTENTION_BWD_DQ DQ=1
//! variant ATTENTION_BWD_DKV DKV=1
//! variant ATTENTION_BWD_BLOCKS_DQ DQ=1 BLOCKS=1
//! variant ATTENTION_BWD_BLOCKS_DKV DKV=1 BLOCKS=1
#define PC_ATTENTION_BWD
#include "vkd_push.h"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint HD4 = 8;

layout(std430, binding = 0) readonly buffer Q { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer K { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { vec4 v4[]; };
layout(std430, binding = 3) readonly buffer O { vec4 o4[]; };
layout(std430, binding = 4) readonly buffer L { float lse[]; };
layout(std430, binding = 5) readonly buffer DO { vec4 do4[]; };
layout(std430, binding = 6) buffer G1 { vec4 g1[]; };
#ifdef DKV
layout(std430, binding = 7) buffer G2 { vec4 g2[]; };
#endif
#if defined(BLOCKS) && defined(DQ)
layout(std430, binding = 7) readonly buffer AN { int anchors[]; };
#elif defined(BLOCKS)
layout(std430, binding = 8) readonly buffer AN { int anchors[]; };
#endif

void main() {
    uint id = gl_GlobalInvocationID.x;
    uint group = pc.n_q / pc.n_kv;
    uint ks = pc.k_stride >> 2;
#ifdef DQ
    if (id >= pc.q_rows * pc.n_q) return;
    uint i = id / pc.n_q, h = id - i * pc.n_q, g = h / group;
    uint qb = id * HD4, kb = g * HD4;
    vec4 qv[HD4], dov[HD4], acc[HD4];
    float D = 0.0;
    for (uint c = 0u; c < HD4; c++) {
        qv[c] = q4[qb + c];
        dov[c] = do4[qb + c];
        D += dot(dov[c], o4[qb + c]);
        acc[c] = pc.accumulate != 0u ? g1[qb + c] : vec4(0.0);
    }
    float l = lse[id];
#ifdef BLOCKS
    uint blk = i / pc.block;
    uint n_ctx = min(uint(max(anchors[blk], 0)), pc.q_pos0);
    uint own = pc.q_pos0 + blk * pc.block - n_ctx;
    uint n = n_ctx + pc.block;
#else
    uint n = pc.causal != 0u ? min(pc.kv_len, pc.q_pos0 + i + 1u) : pc.kv_len;
#endif
    uint r1 = min(pc.r1, n);
    for (uint jv = pc.r0; jv < r1; jv++) {
#ifdef BLOCKS
        uint j = jv < n_ctx ? jv : own + jv;
#else
        uint j = jv;
#endif
        float s = 0.0, dp = 0.0;
        for (uint c = 0u; c < HD4; c++) {
            s += dot(qv[c], k4[j * ks + kb + c]);
            dp += dot(dov[c], v4[j * ks + kb + c]);
        }
        float ds = exp(s * pc.scale - l) * (dp - D) * pc.scale;
        for (uint c = 0u; c < HD4; c++) acc[c] += ds * k4[j * ks + kb + c];
    }
    for (uint c = 0u; c < HD4; c++) g1[qb + c] = acc[c];
#else
    if (id >= pc.kv_len * pc.n_kv) return;
    uint j = id / pc.n_kv, g = id - j * pc.n_kv;
    uint kb = j * ks + g * HD4;
    vec4 kv[HD4], vv[HD4], dk[HD4], dv[HD4];
    for (uint c = 0u; c < HD4; c++) {
        kv[c] = k4[kb + c];
        vv[c] = v4[kb + c];
        dk[c] = pc.accumulate != 0u ? g1[kb + c] : vec4(0.0);
        dv[c] = pc.accumulate != 0u ? g2[kb + c] : vec4(0.0);
    }
    uint i0 = pc.r0, i1 = pc.r1;
#ifdef BLOCKS
    bool ctx_key = j < pc.q_pos0;
    if (!ctx_key) { /* block key: its own block's rows only */
        uint b0 = (j - pc.q_pos0) / pc.block * pc.block;
        i0 = max(i0, b0);
        i1 = min(i1, b0 + pc.block);
    }
#else
    /* causal: rows i with q_pos0 + i >= j see key j */
    if (pc.causal != 0u && j > pc.q_pos0) i0 = max(i0, j - pc.q_pos0);
#endif
    for (uint i = i0; i < i1; i++) {
#ifdef BLOCKS
        if (ctx_key && uint(max(anchors[i / pc.block], 0)) <= j) { /* the block starts before key j */
            i = i / pc.block * pc.block + pc.block - 1u;
            continue;
        }
#endif
        for (uint hh = 0u; hh < group; hh++) {
            uint row = i * pc.n_q + g * group + hh, qb = row * HD4;
            float s = 0.0, dp = 0.0, D = 0.0;
            for (uint c = 0u; c < HD4; c++) {
                vec4 dov = do4[qb + c];
                s += dot(q4[qb + c], kv[c]);
                dp += dot(dov, vv[c]);
                D += dot(dov, o4[qb + c]);
            }
            float p = exp(s * pc.scale - lse[row]);
            float ds = p * (dp - D) * pc.scale;
            for (uint c = 0u; c < HD4; c++) {
                dk[c] += ds * q4[qb + c];
                dv[c] += p * do4[qb + c];
            }
        }
    }
    for (uint c = 0u; c < HD4; c++) {
        g1[kb + c] = dk[c];
        g2[kb + c] = dv[c];
    }
#endif
}
