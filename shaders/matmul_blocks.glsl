/* matmul_blocks.glsl: the body of the texel-block matmuls (see matmul_blocks.comp).
 * XBCAST: x through its uniform texel view, every lane fetching the same texels (8-lane
 * workgroups that are one subgroup; K % 4 == 0). The variant's name is older than this
 * (x was once shared by subgroup broadcasts, which lavapipe runs lane by lane); a fused
 * norm's weight still is.
 * Each accumulator takes its products one by one, in element order (a chain of fma(), which
 * lavapipe runs as a multiply and an add): not a dot() per texel, whose sum tree the driver
 * schedules worse (m = 16 over 3072 x 1024 bf16: 1.3x faster).
 * MODE 0: one W (matmul_blocks*.comp). MODE 1, GLU: W = gate (binding 0) and up (binding 1)
 * of the same shape, y = silu(x . gate) * (x . up) (matmul_glu*.comp). MODE 2, a group:
 * two or three W of the same K stacked in one texel buffer, each with its own y in one
 * buffer, the workgroups along x taken by W0, then W1, then W2 (matmul_group*.comp).
 * MODE 1 and 2 with XBCAST may take x through an RMSNorm first (pc.norm: the weight ln, of
 * W's dtype): each row's sum of squares as rmsnorm.comp forms it on the same 8 lanes (the
 * lane-strided vec4 dots, subgroupAdd), and each element as (x * r) * ln, so the products
 * are those of rmsnorm.comp's output to the bit (K % 4 == 0; the host checks both). */
#ifndef XBCAST
#define XBCAST 0
#endif
#ifndef MODE
#define MODE 0
#endif
layout(local_size_x_id = 0) in;                  /* LANES */
layout(constant_id = 1) const uint RPL = 32;     /* rows per lane: 1, 2, 4, ..., 32 */
layout(constant_id = 2) const uint MB = 1;       /* rows of x per pass: 1, 2, 4, 8 or 16 */

/* x: with XBCAST through its uniform texel view (RGBA32UI: texel t holds elements 4t .. 4t + 3),
 * else a storage buffer */
#if XBCAST
#define X_BINDING(b) layout(binding = b) uniform usamplerBuffer xt;
#else
#define X_BINDING(b) layout(std430, binding = b) readonly buffer X { float x[]; };
#endif
#if MODE == 0
layout(binding = 0) uniform usamplerBuffer wt;
X_BINDING(1)
layout(std430, binding = 2) buffer Y { float y[]; };
#elif MODE == 1
layout(binding = 0) uniform usamplerBuffer wt;
layout(binding = 1) uniform usamplerBuffer wu;
X_BINDING(2)
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
#define WEIGHT_BINDING 4                         /* the norm weight (pc.norm) */
#else
layout(binding = 0) uniform usamplerBuffer wt;   /* the stack holding every W_j */
X_BINDING(1)
layout(std430, binding = 2) writeonly buffer Y { float y[]; };  /* every y_j, at yoff_j */
#define WEIGHT_BINDING 3                         /* the norm weight (pc.norm) */
#endif

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

#if MODE != 0 && XBCAST
#include "weight_load.glsl"
#define NORM (pc.norm != 0u)
#else
#define NORM false
#endif
float acc[16][32];
float rs[16];                                    /* per row of x: 1 / rms, or 1 */
#if MODE == 1
float accu[16][32];                              /* up */
#endif
uint xb[16];
vec4 xl[16], xh[16];
uint lane, row0, xr0;                            /* set by mm_acc */

#if MODE == 0 || !XBCAST
#define XN(v, i, ln) (v)
#else
#define XN(v, i, ln) (((v) * rs[i]) * (ln))   /* the fused norm: (x * r) * ln as rmsnorm.comp */
#endif
#define XTEX XBCAST
#include "blocks_x.glsl"
#define ZERO_R(r) if (r < RPL) { const uint rr = r; FOR_ROWS(ZERO_I) }
#if MODE == 1
#define ZERO_I(i) if (i < MB) { acc[i][rr] = 0.0; accu[i][rr] = 0.0; }
#else
#define ZERO_I(i) if (i < MB) acc[i][rr] = 0.0;
#endif
#if DT_F32
#define WIDEN(q, lo, hi) vec4 lo = uintBitsToFloat(q);
#else
#if DT_BF16
#define WIDEN(q, lo, hi) vec4 lo = vec4(bf16x2(q.x), bf16x2(q.y)), hi = vec4(bf16x2(q.z), bf16x2(q.w));
#else
#define WIDEN(q, lo, hi) vec4 lo = vec4(f16x2(q.x), f16x2(q.y)), hi = vec4(f16x2(q.z), f16x2(q.w));
#endif
#endif
/* the products of one W texel (lo, hi) with row i of x, added to a one by one */
#if DT_F32
#define CHAIN(a, i, lo, hi) FMA_TEXEL(a, lo, xl[i])
#else
#define CHAIN(a, i, lo, hi) FMA_TEXEL(a, lo, xl[i]) FMA_TEXEL(a, hi, xh[i])
#endif
#if MODE == 1
/* gate and up: the same texel of both */
#define FMA(i) if (i < MB) { CHAIN(acc[i][rr], i, lo, hi) CHAIN(accu[i][rr], i, ulo, uhi) }
#define ROW_R(r) if (r < RPL) { const uint rr = r; int t = int(tb + rr * gl_WorkGroupSize.x); \
        uvec4 q = texelFetch(wt, t); WIDEN(q, lo, hi) uvec4 qu = texelFetch(wu, t); \
        WIDEN(qu, ulo, uhi) FOR_ROWS(FMA) }
#else
#define FMA(i) if (i < MB) { CHAIN(acc[i][rr], i, lo, hi) }
#define ROW_R(r) if (r < RPL) { const uint rr = r; \
        uvec4 q = texelFetch(wt, int(tb + rr * gl_WorkGroupSize.x)); WIDEN(q, lo, hi) FOR_ROWS(FMA) }
#endif
#if XBCAST && MODE != 0
/* the norm weight of the step's elements (0 past K; 1 without a norm): lane l loads element
 * l (f32: lanes past 3 repeat element 3), the others come by broadcast */
float lnat(uint e, bool guard) {
    if (NORM) return !guard || e < pc.K ? load1(e) : 0.0;
    return 1.0;
}
#define LB(j) subgroupBroadcast(lnv, j)
#if DT_F32
#define LNLOAD float lnv = lnat(k * E + min(lane, E - 1u), g); vec4 lnl = vec4(LB(0u), LB(1u), LB(2u), LB(3u));
#else
#define LNLOAD float lnv = lnat(k * E + lane, g); vec4 lnl = vec4(LB(0u), LB(1u), LB(2u), LB(3u)), \
        lnh = vec4(LB(4u), LB(5u), LB(6u), LB(7u));
#endif
#else
#define LNLOAD
#endif
/* one step k: the x values of every row of x, then each of the lane's rows r */
#define STEP(kk, guard) { uint k = (kk); bool g = (guard); LNLOAD FOR_ROWS(LOADX) \
        uint tb = t0 + k * 256u; FOR_R(ROW_R) }
/* the RMSNorm's 1 / rms of row i of x, formed as rmsnorm.comp forms it (8 lanes, one subgroup) */
#if MODE != 0 && XBCAST
#define RS_I(i) if (i < MB) { float s = 0.0; uint d4 = pc.K >> 2; \
        for (uint j = lane; j < d4; j += gl_WorkGroupSize.x) { vec4 a = xtex(i, j); s += dot(a, a); } \
        s = subgroupAdd(s); rs[i] = inversesqrt(s / float(pc.K) + pc.eps); }
#else
#define RS_I(i)
#endif
#define RS1_I(i) rs[i] = 1.0;

/* The accumulators of workgroup `gid` of the W starting at texel `base` of w, over the
 * workgroup's rows of x; sets lane, row0 (the W row of the lane's r = 0) and xr0 (the first
 * row of x). */
void mm_acc(uint base, uint gid) {
    lane = gl_LocalInvocationID.x;
    uint subs = 256u / (gl_WorkGroupSize.x * RPL);   /* workgroups per block */
    uint b = gid / subs, s = gid % subs;
    uint kt = (pc.K + E - 1u) / E, kf = pc.K / E;    /* steps per row: all, full */
    uint sub0 = s * gl_WorkGroupSize.x * RPL + lane; /* row of the block of the lane's r = 0 */
    uint t0 = base + b * kt * 256u + sub0;           /* its texel at step 0 */
    row0 = b * 256u + sub0;
    xr0 = gl_WorkGroupID.y * MB;                     /* the workgroup's first row of x */
    FOR_ROWS(XOFF)
    FOR_ROWS(RS1_I)
    if (NORM) { FOR_ROWS(RS_I) }
    { FOR_R(ZERO_R) }
    for (uint ks = 0u; ks < kf; ks++) STEP(ks, false)
    if (kf < kt) STEP(kf, true)
}

/* stores: rows n < NROWS of y (row stride NCOLS, first column COL0) from VALUE(i) */
#define STORE_R(r) if (r < RPL) { const uint rr = r; uint n = row0 + rr * gl_WorkGroupSize.x; \
        if (n < NROWS) { FOR_ROWS(STORE_I) } }
#define STORE_I(i) if (i < MB && xr0 + uint(i) < pc.m) { \
        uint o = (pc.y_row0 + xr0 + uint(i)) * NCOLS + COL0 + n; YOUT[o] = VALUE(i); }

#if MODE == 0
#define NROWS pc.rows
#define NCOLS pc.N
#define COL0 pc.col0
#define YOUT y
#define VALUE(i) (pc.accumulate != 0u ? y[o] + acc[i][rr] : acc[i][rr])
void main() {
    mm_acc(0u, gl_WorkGroupID.x);
    FOR_R(STORE_R)
}
#elif MODE == 1
#define NROWS pc.rows
#define NCOLS pc.N
#define COL0 pc.col0
#define YOUT y
/* silu as swiglu.comp */
#define VALUE(i) (acc[i][rr] / (1.0 + exp(-acc[i][rr])) * accu[i][rr])
void main() {
    mm_acc(0u, gl_WorkGroupID.x);
    FOR_R(STORE_R)
}
#else
/* the W of the workgroup: its rows, first texel, first workgroup and first element of y */
uint nrows, yoff;
#define NROWS nrows
#define NCOLS nrows
#define COL0 yoff
#define YOUT y
#define VALUE(i) acc[i][rr]
void main() {
    uint gid = gl_WorkGroupID.x;
    uint j = gid < pc.start1 ? 0u : gid < pc.start2 ? 1u : 2u;
    nrows = j == 0u ? pc.rows0 : j == 1u ? pc.rows1 : pc.rows2;
    yoff = j == 0u ? pc.yoff0 : j == 1u ? pc.yoff1 : pc.yoff2;
    mm_acc(j == 0u ? pc.base0 : j == 1u ? pc.base1 : pc.base2,
           gid - (j == 0u ? 0u : j == 1u ? pc.start1 : pc.start2));
    FOR_R(STORE_R)
}
#endif
