#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
/* tok[out_off + r] ~ row r after temperature, top-k and top-p (transformers' warpers, in that
 * order), drawn with Philox4x32-10 (key = seed, counter = ctr + r). One workgroup per row.
 *   v_i = x_i * inv_t (f32), w_i = exp(v_i - max v); keys are order-preserving uints of v.
 *   top-k: kept = {v >= the k-th largest v} (ties at the k-th value all kept, as
 *          transformers' `scores < topk[..., -1]` removes only strictly smaller ones), found
 *          exactly by a radix-16 counting selection (8 passes).
 *   top-p: among those, token i is kept iff the mass of kept tokens with v strictly greater
 *          than v_i is < top_p * (their total mass): transformers' "cumulative ascending
 *          probability <= 1 - top_p is removed", with tied values all kept. The cutoff key
 *          is found by a radix-16 selection on (count, mass) histograms (8 passes).
 *   draw:  u = (philox word 0 >> 8) * 2^-24; the token is the first index j (index order)
 *          whose cumulative kept mass exceeds u * total. Lanes own contiguous index ranges;
 *          their partial masses are scanned in a fixed order, so ranges tile [0, total)
 *          without gaps and the result is a deterministic function of (row, seed, counter).
 * A row holding a NaN or +Inf (bad_logit, before temperature) gives tok = -1.
 * Bindings: 0 x (read), 1 tok i32 (write). */
#define PC_SAMPLE
#include "vkd_push.h"
#include "rowreduce.glsl"
#include "philox.glsl"
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer T { int tok[]; };

shared float lane_part[256];
shared uint found;

#define val(i) (x[xb + (i)] * pc.inv_t)

void clear_bins(out uint c[16], out float w[16]) {
    for (int b = 0; b < 16; b++) {
        c[b] = 0u;
        w[b] = 0.0;
    }
}

void main() {
    uint l = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
    uint row = gl_WorkGroupID.x;
    uint xb = pc.x_off + row * pc.x_stride;
    uint n = pc.n;

    float m = NEG_INF;
    uint bad = 0u;
#define ELEM(i) { bad |= bad_logit(x[xb + (i)]) ? 1u : 0u; m = max(m, val(i)); }
    ROW_FOR(n, ELEM)
#undef ELEM
    m = wg_max(m);
    bad = wg_max_u(bad);
    if (bad != 0u) {
        if (l == 0u) tok[pc.out_off + row] = -1;
        return;
    }

    uint lo = 0u; /* kept: key >= lo */
    uint c[16];
    float w[16];
    if (pc.top_k != 0u && pc.top_k < n) {
        uint prefix = 0u, need = pc.top_k;
        for (uint shift = 28u;; shift -= 4u) {
            uint hi = radix_hi_mask(shift);
            clear_bins(c, w);
#define ELEM(i) { uint key = fkey(val(i)); if ((key & hi) == prefix) c[(key >> shift) & 15u]++; }
            ROW_FOR(n, ELEM)
#undef ELEM
            wg_bins(c, w, false);
            uint b = 15u;
            for (;; b--) {
                if (need <= c[b] || b == 0u) break;
                need -= c[b];
            }
            prefix |= b << shift;
            if (shift == 0u) break;
        }
        lo = prefix;
    }
    if (pc.top_p < 1.0) {
        uint prefix = 0u;
        float above = 0.0, lim = 0.0;
        for (uint shift = 28u;; shift -= 4u) {
            uint hi = radix_hi_mask(shift);
            clear_bins(c, w);
#define ELEM(i) { float v = val(i); uint key = fkey(v); \
                if (key >= lo && (key & hi) == prefix) { uint b = (key >> shift) & 15u; c[b]++; w[b] += exp(v - m); } }
            ROW_FOR(n, ELEM)
#undef ELEM
            wg_bins(c, w, true);
            if (shift == 28u) {
                float z = 0.0;
                for (int b = 15; b >= 0; b--) z += w[b];
                lim = pc.top_p * z;
            }
            /* the lowest non-empty bin whose strictly-greater mass is below the limit */
            float acc = above, chosen_above = above;
            uint chosen = 16u;
            for (int b = 15; b >= 0; b--) {
                if (c[b] != 0u) {
                    if (!(acc < lim)) break;
                    chosen = uint(b);
                    chosen_above = acc;
                }
                acc += w[b];
            }
            if (chosen == 16u) { /* only when top_p * z rounds to 0: keep the largest bin */
                for (chosen = 15u; chosen > 0u && c[chosen] == 0u; chosen--) {}
            }
            above = chosen_above;
            prefix |= chosen << shift;
            if (shift == 0u) break;
        }
        lo = max(lo, prefix);
    }

    /* draw: lane l owns [l*per, (l+1)*per) */
    uint per = (n + wg - 1u) / wg;
    uint begin = min(l * per, n), end = min(begin + per, n);
    float part = 0.0, comp = 0.0;
    uint last = 0u; /* 1 + index of the lane's last kept token, 0 if none */
#define ELEM(i) { float v = val(i); if (fkey(v) >= lo) { kahan_add(part, comp, exp(v - m)); last = i + 1u; } }
    ROW_RANGE(begin, end, ELEM)
#undef ELEM
    part -= comp;
    if (l == 0u) found = 0xffffffffu;
    lane_part[l] = part;
    wg_barrier_shared();
    float excl = 0.0, total = 0.0;
    for (uint j = 0u; j < wg; j++) {
        if (j == l) excl = total;
        total += lane_part[j];
    }
    float next = excl + part; /* == the next lane's excl, bit for bit */
    uvec4 r = philox4x32_10(philox_counter(pc.ctr_lo, pc.ctr_hi, row), uvec2(pc.seed_lo, pc.seed_hi));
    float target = philox_uniform(r.x) * total;
    if (part > 0.0 && excl <= target && target < next) {
        float run = 0.0, rc = 0.0;
        uint pick = last - 1u;
        bool done = false;
#define ELEM(i) if (!done) { float v = val(i); if (fkey(v) >= lo) { \
            kahan_add(run, rc, exp(v - m)); if (excl + (run - rc) > target) { pick = i; done = true; } } }
        ROW_RANGE(begin, end, ELEM)
#undef ELEM
        atomicMin(found, pick);
    }
    uint lastall = wg_max_u(last);
    wg_barrier_shared();
    if (l == 0u) tok[pc.out_off + row] = int(found != 0xffffffffu ? found : lastall - 1u);
}
