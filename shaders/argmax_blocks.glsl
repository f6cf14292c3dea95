/* argmax_blocks.glsl: the body of the greedy LM head's first half (argmax_blocks.comp: x as a
 * storage buffer; argmax_blocks_bcast.comp, XTEX: x through its texel view). */
#ifndef XTEX
#define XTEX 0
#endif
layout(local_size_x_id = 0) in;                  /* LANES <= 256 */
layout(constant_id = 1) const uint RPL = 32;     /* rows per lane: 1, 2, 4, ..., 32 */
layout(constant_id = 2) const uint MB = 1;       /* rows of x per workgroup: 1, 2, 4 (XTEX: .., 16) */

layout(binding = 0) uniform usamplerBuffer w;
#if XTEX
layout(binding = 1) uniform usamplerBuffer xt;   /* x's texel view: texel t = elements 4t .. 4t + 3 */
#else
layout(std430, binding = 1) readonly buffer X { float x[]; };
#endif
layout(std430, binding = 2) writeonly buffer P { uint part[]; };

#if DT_F32
#define E 4u
#else
#define E 8u
#endif
#define NONE 0xffffffffu
#define NAN_BITS 0x7fc00000u

#if XTEX
#define FOR_ROWS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) \
                    F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#define MB_MAX 16u
#else
#define FOR_ROWS(F) F(0) F(1) F(2) F(3)
#define MB_MAX 4u
#endif
#define FOR_R(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) \
                 F(14) F(15) F(16) F(17) F(18) F(19) F(20) F(21) F(22) F(23) F(24) F(25) \
                 F(26) F(27) F(28) F(29) F(30) F(31)

float acc[MB_MAX][32];
uint xb[MB_MAX];
vec4 xl[MB_MAX], xh[MB_MAX];
/* per row i of x and lane l: entry i * LANES + l (the host keeps MB * LANES <= 1024) */
shared float s_best[1024];
shared uint s_idx[1024], s_bad[1024];

#define XN(v, i, ln) (v)
#include "blocks_x.glsl"

/* A logit no argmax can answer for: NaN or +Inf (bit tests, as rowreduce.glsl's bad_logit) */
bool bad_logit(float v) {
    uint u = floatBitsToUint(v);
    return (u & 0x7fffffffu) > 0x7f800000u || u == 0x7f800000u;
}

#define ZERO_R(r) if (r < RPL) { const uint rr = r; FOR_ROWS(ZERO_I) }
#define ZERO_I(i) if (i < MB) acc[i][rr] = 0.0;
#if DT_F32
#define FMA(i) if (i < MB) { FMA_TEXEL(acc[i][rr], lo, xl[i]) }
#define WIDEN(q) vec4 lo = uintBitsToFloat(q);
#else
#define FMA(i) if (i < MB) { FMA_TEXEL(acc[i][rr], lo, xl[i]) FMA_TEXEL(acc[i][rr], hi, xh[i]) }
#if DT_BF16
#define WIDEN(q) vec4 lo = vec4(bf16x2(q.x), bf16x2(q.y)), hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
#define WIDEN(q) vec4 lo = vec4(f16x2(q.x), f16x2(q.y)), hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif
#define ROW_R(r) if (r < RPL) { const uint rr = r; \
        uvec4 q = texelFetch(w, int(tb + rr * gl_WorkGroupSize.x)); WIDEN(q) FOR_ROWS(FMA) }
#define STEP(kk, guard) { uint k = (kk); bool g = (guard); FOR_ROWS(LOADX) \
        uint tb = t0 + k * 256u; FOR_R(ROW_R) }
/* the lane's best of row i over its rows r, in increasing index order */
#define BEST_R(r) if (r < RPL) { const uint rr = r; uint n = row0 + rr * gl_WorkGroupSize.x; \
        if (n < pc.rows) { float v = acc[ii][rr]; bad |= bad_logit(v) ? 1u : 0u; \
            if (bi == NONE || v > best) { best = v; bi = pc.col0 + n; } } }
#define BEST_I(i) if (i < MB) { const uint ii = i; float best = 0.0; uint bi = NONE, bad = 0u; \
        FOR_R(BEST_R) uint si = ii * gl_WorkGroupSize.x + lane; s_best[si] = best; s_idx[si] = bi; \
        s_bad[si] = bad; }

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint subs = 256u / (gl_WorkGroupSize.x * RPL);   /* workgroups per block */
    uint b = gl_WorkGroupID.x / subs, s = gl_WorkGroupID.x % subs;
    uint kt = (pc.K + E - 1u) / E, kf = pc.K / E;    /* steps per row: all, full */
    uint sub0 = s * gl_WorkGroupSize.x * RPL + lane; /* row of the block of the lane's r = 0 */
    uint t0 = b * kt * 256u + sub0;                  /* its texel at step 0 */
    uint row0 = b * 256u + sub0;
    uint xr0 = gl_WorkGroupID.y * MB;                /* the workgroup's first row of x */
    FOR_ROWS(XOFF)
    { FOR_R(ZERO_R) }
    for (uint ks = 0u; ks < kf; ks++) STEP(ks, false)
    if (kf < kt) STEP(kf, true)
    FOR_ROWS(BEST_I)
    wg_barrier_shared();
    /* lane l combines rows i = l, l + LANES, .. (< m) over the lanes, in lane order with the
     * same tie rule */
    for (uint i = lane; i < MB; i += gl_WorkGroupSize.x) {
        if (xr0 + i >= pc.m) break;
        float best = 0.0;
        uint bi = NONE, bad = 0u;
        for (uint l = 0u; l < gl_WorkGroupSize.x; l++) {
            float v = s_best[i * gl_WorkGroupSize.x + l];
            uint n = s_idx[i * gl_WorkGroupSize.x + l];
            bad |= s_bad[i * gl_WorkGroupSize.x + l];
            if (n != NONE && (bi == NONE || v > best || (v == best && n < bi))) { best = v; bi = n; }
        }
        uint o = ((xr0 + i) * pc.parts + pc.part0 + gl_WorkGroupID.x) * 2u;
        part[o] = bad != 0u ? NAN_BITS : floatBitsToUint(best);
        part[o + 1u] = bad != 0u ? 0u : bi;
    }
}
