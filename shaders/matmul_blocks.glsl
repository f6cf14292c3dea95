/* matmul_blocks.glsl: the body of matmul_blocks.comp and matmul_blocks_bcast.comp (see
 * matmul_blocks.comp). XBCAST: x is loaded one element per lane and shared by subgroup
 * broadcasts (8-lane workgroups that are one subgroup). */
#ifndef XBCAST
#define XBCAST 0
#endif
layout(local_size_x_id = 0) in;                  /* LANES */
layout(constant_id = 1) const uint RPL = 32;     /* rows per lane: 1, 2, 4, ..., 32 */
layout(constant_id = 2) const uint MB = 1;       /* rows of x per pass: 1, 2, 4, 8 or 16 */

layout(binding = 0) uniform usamplerBuffer w;
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };

#if DT_F32
#define E 4u                                     /* weights per texel */
#else
#define E 8u
#endif

#define FOR_ROWS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) \
                    F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#define FOR_R(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) \
                 F(14) F(15) F(16) F(17) F(18) F(19) F(20) F(21) F(22) F(23) F(24) F(25) \
                 F(26) F(27) F(28) F(29) F(30) F(31)

float acc[16][32];
uint xb[16];
vec4 xl[16], xh[16];

float xat(uint i, uint e, bool guard) {
    return !guard || e < pc.K ? x[xb[i] + e] : 0.0;
}

#define XOFF(i) if (i < MB) xb[i] = (pc.x_row0 + min(xr0 + uint(i), pc.m - 1u)) * pc.K;
#define ZERO_R(r) if (r < RPL) { const uint rr = r; FOR_ROWS(ZERO_I) }
#define ZERO_I(i) if (i < MB) acc[i][rr] = 0.0;
#if XBCAST
/* lane l loads element l of the step (f32: lanes past 3 repeat element 3), the others come
 * from the lane holding them: one load per lane and row instead of E */
#define XB(i, j) subgroupBroadcast(xv, j)
#if DT_F32
#define LOADX(i) if (i < MB) { float xv = xat(i, k * E + min(lane, E - 1u), g); \
        xl[i] = vec4(XB(i, 0u), XB(i, 1u), XB(i, 2u), XB(i, 3u)); }
#else
#define LOADX(i) if (i < MB) { float xv = xat(i, k * E + lane, g); \
        xl[i] = vec4(XB(i, 0u), XB(i, 1u), XB(i, 2u), XB(i, 3u)); \
        xh[i] = vec4(XB(i, 4u), XB(i, 5u), XB(i, 6u), XB(i, 7u)); }
#endif
#endif
#if DT_F32
#if !XBCAST
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(xat(i, e, g), xat(i, e + 1u, g), xat(i, e + 2u, g), xat(i, e + 3u, g)); }
#endif
#define FMA(i) if (i < MB) acc[i][rr] += dot(lo, xl[i]);
#define WIDEN(q) vec4 lo = uintBitsToFloat(q);
#else
#if !XBCAST
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(xat(i, e, g), xat(i, e + 1u, g), xat(i, e + 2u, g), xat(i, e + 3u, g)); \
        xh[i] = vec4(xat(i, e + 4u, g), xat(i, e + 5u, g), xat(i, e + 6u, g), xat(i, e + 7u, g)); }
#endif
#define FMA(i) if (i < MB) acc[i][rr] += dot(lo, xl[i]) + dot(hi, xh[i]);
#if DT_BF16
#define WIDEN(q) vec4 lo = vec4(bf16x2(q.x), bf16x2(q.y)), hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
#define WIDEN(q) vec4 lo = vec4(f16x2(q.x), f16x2(q.y)), hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif
/* one step k: the x values of every row of x, then each of the lane's rows r */
#define ROW_R(r) if (r < RPL) { const uint rr = r; \
        uvec4 q = texelFetch(w, int(tb + rr * gl_WorkGroupSize.x)); WIDEN(q) FOR_ROWS(FMA) }
#define STEP(kk, guard) { uint k = (kk); bool g = (guard); FOR_ROWS(LOADX) \
        uint tb = t0 + k * 256u; FOR_R(ROW_R) }
#define STORE_R(r) if (r < RPL) { const uint rr = r; uint n = row0 + rr * gl_WorkGroupSize.x; \
        if (n < pc.rows) { FOR_ROWS(STORE_I) } }
#define STORE_I(i) if (i < MB && xr0 + uint(i) < pc.m) { uint o = (pc.y_row0 + xr0 + uint(i)) * pc.N + pc.col0 + n; \
        y[o] = pc.accumulate != 0u ? y[o] + acc[i][rr] : acc[i][rr]; }

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
    FOR_R(STORE_R)
}
