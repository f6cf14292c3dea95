#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* Exact top-k of each row (k = pc.k <= 256), sorted descending, ties lower index first.
 * One workgroup per row:
 *   1. radix-16 selection (8 counting passes over the order-preserving keys) finds the key
 *      T of the k-th largest entry and how many entries equal to T are needed;
 *   2. if more entries equal T than are needed, a second selection over the indices of
 *      those ties finds the largest index to take (lowest indices win);
 *   3. two passes gather exactly k candidates into shared memory (count per lane, then
 *      write after the lower lanes' candidates), which are then ranked by counting
 *      (k^2 comparisons) and written in order.
 * A row holding a NaN or +Inf (bad_logit) gives idx = -1 and val = NaN for all k.
 * Bindings: 0 x (read), 1 idx i32, 2 val f32 (write, row r at y_off + r*k). */
#define PC_LOGITS
#include "vkd_push.h"
#include "rowreduce.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer I { int idx[]; };
layout(std430, binding = 2) writeonly buffer V { float val[]; };

shared uint cand_key[256];
shared uint cand_idx[256];
shared uint lane_count[256];

/* Key of element i: its value's key, or (tie mode) the complement of its index among the
 * elements whose value key equals `tie` (others are excluded). */
bool elem_key(uint xb, uint i, bool tie_mode, uint tie, out uint key) {
    uint kv = fkey(x[xb + i]);
    if (!tie_mode) {
        key = kv;
        return true;
    }
    key = ~i;
    return kv == tie;
}

/* The key of the `need`-th largest among the included elements; `need` becomes how many
 * elements with exactly that key are needed, `eq` how many there are. */
uint select_key(uint xb, uint need_in, bool tie_mode, uint tie, out uint need, out uint eq) {
    uint prefix = 0u;
    need = need_in;
    eq = 0u;
    for (uint shift = 28u;; shift -= 4u) {
        uint hi = radix_hi_mask(shift);
        uint c[16];
        float w[16];
        for (int b = 0; b < 16; b++) {
            c[b] = 0u;
            w[b] = 0.0;
        }
#define ELEM(i) { uint key; if (elem_key(xb, i, tie_mode, tie, key) && (key & hi) == prefix) c[(key >> shift) & 15u]++; }
        ROW_FOR(pc.n, ELEM)
#undef ELEM
        wg_bins(c, w, false);
        uint b = 15u;
        for (;; b--) {
            if (need <= c[b] || b == 0u) break;
            need -= c[b];
        }
        eq = c[b];
        prefix |= b << shift;
        if (shift == 0u) break;
    }
    return prefix;
}

void main() {
    uint l = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
    uint xb = pc.x_off + gl_WorkGroupID.x * pc.x_stride;
    uint k = pc.k;
    uint bad = 0u;
#define ELEM(i) bad |= bad_logit(x[xb + i]) ? 1u : 0u;
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    bad = wg_max_u(bad);
    if (bad != 0u) {
        for (uint c = l; c < k; c += wg) {
            idx[pc.y_off + gl_WorkGroupID.x * k + c] = -1;
            val[pc.y_off + gl_WorkGroupID.x * k + c] = VKD_NAN;
        }
        return;
    }
    uint need, eq;
    uint t = select_key(xb, k, false, 0u, need, eq);
    uint last = 0xffffffffu;
    if (need < eq) {
        uint n2, e2;
        last = ~select_key(xb, need, true, t, n2, e2);
    }
    /* compaction without atomics: each lane's candidates go after those of lower lanes */
    uint mine = 0u;
#define ELEM(i) { uint key = fkey(x[xb + i]); mine += (key > t || (key == t && i <= last)) ? 1u : 0u; }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    lane_count[l] = mine;
    wg_barrier_shared();
    uint slot = 0u;
    for (uint j = 0u; j < l; j++) slot += lane_count[j];
#define ELEM(i) { uint key = fkey(x[xb + i]); \
        if ((key > t || (key == t && i <= last)) && slot < 256u) { cand_key[slot] = key; cand_idx[slot] = i; slot++; } }
    ROW_FOR(pc.n, ELEM)
#undef ELEM
    wg_barrier_shared();
    uint ob = pc.y_off + gl_WorkGroupID.x * k;
    for (uint c = l; c < k; c += wg) {
        uint kc = cand_key[c], ic = cand_idx[c], rank = 0u;
        for (uint d = 0u; d < k; d++) {
            uint kd = cand_key[d];
            rank += (kd > kc || (kd == kc && cand_idx[d] < ic)) ? 1u : 0u;
        }
        idx[ob + rank] = int(ic);
        val[ob + rank] = x[xb + ic];
    }
}
