#version 450
/* Logits of one vocabulary chunk from a head in the texel block layout (VKD_LAYOUT_BLOCKS,
 * runtime/vkd_runtime.h): S[r*s_stride + c] = sum_k H[r*hidden + k] * W[j0 + c, k] for
 * r < rows, c < ncols. The geometry of matmul_blocks: a block of 256 head rows is split into
 * 256 / (LANES * RPL) sub-blocks, one per workgroup (x); lane l owns rows r * LANES + l
 * (r < RPL) of its sub-block, so the lanes fetch neighbouring texels and each sub-block is one
 * sequential stream; workgroup y takes MB rows of H, each fetched texel feeds all of them.
 * One loop pass per 16-byte step of a head row (hidden / 8 for 16-bit heads, hidden / 4 for
 * f32), far under lavapipe's loop limit (the host checks it).
 * pc.w_off: texel offset of the chunk's first block inside the bound view (j0 - row0 of the
 * binding is a multiple of 256).
 * Bindings: 0 W chunk (uniform texel buffer, RGBA32UI), 1 H f32 (read), 2 S f32 (write). */
//! texel 0
//! family loss_logits
//! axes layout=blocks dtype=f32,f16,bf16
#define PC_LOSS
#include "vkd_push.h"
#include "vkd_push_train.h"
#include "common.glsl"
#include "loss_common.glsl"

layout(local_size_x_id = 0) in;                  /* LANES */
layout(constant_id = 1) const uint RPL = 32;     /* head rows per lane: 1, 2, 4, ..., 32 */
layout(constant_id = 2) const uint MB = 4;       /* rows of H per workgroup: 1, 2, 4, 8 */

layout(binding = 0) uniform usamplerBuffer w;
layout(std430, binding = 1) readonly buffer H { float h[]; };
layout(std430, binding = 2) writeonly buffer S { float sout[]; };

#if DT_F32
#define E 4u                                     /* weights per texel */
#else
#define E 8u
#endif

#define FOR_ROWS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#define FOR_R(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) \
                 F(14) F(15) F(16) F(17) F(18) F(19) F(20) F(21) F(22) F(23) F(24) F(25) \
                 F(26) F(27) F(28) F(29) F(30) F(31)

float acc[8][32];
uint hb[8];
vec4 xl[8], xh[8];

float hat(uint i, uint e, bool guard) {
    return !guard || e < pc.hidden ? h[hb[i] + e] : 0.0;
}

#define HOFF(i) if (i < MB) hb[i] = min(r0 + uint(i), pc.rows - 1u) * pc.hidden;
#define ZERO_R(r) if (r < RPL) { const uint rr = r; FOR_ROWS(ZERO_I) }
#define ZERO_I(i) if (i < MB) acc[i][rr] = 0.0;
#if DT_F32
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(hat(i, e, g), hat(i, e + 1u, g), hat(i, e + 2u, g), hat(i, e + 3u, g)); }
#define FMA(i) if (i < MB) { FMA_TEXEL(acc[i][rr], lo, xl[i]) }
#define WIDEN(q) vec4 lo = uintBitsToFloat(q);
#else
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(hat(i, e, g), hat(i, e + 1u, g), hat(i, e + 2u, g), hat(i, e + 3u, g)); \
        xh[i] = vec4(hat(i, e + 4u, g), hat(i, e + 5u, g), hat(i, e + 6u, g), hat(i, e + 7u, g)); }
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
#define STORE_R(r) if (r < RPL) { const uint rr = r; uint c = c0 + rr * gl_WorkGroupSize.x; \
        if (c < pc.ncols) { FOR_ROWS(STORE_I) } }
#define STORE_I(i) if (i < MB && r0 + uint(i) < pc.rows) sout[(r0 + uint(i)) * pc.s_stride + c] = acc[i][rr];

void main() {
    uint lane = gl_LocalInvocationID.x;
    uint subs = 256u / (gl_WorkGroupSize.x * RPL);   /* workgroups per block */
    uint b = gl_WorkGroupID.x / subs, sb = gl_WorkGroupID.x % subs;
    uint kt = (pc.hidden + E - 1u) / E, kf = pc.hidden / E; /* steps per row: all, full */
    uint sub0 = sb * gl_WorkGroupSize.x * RPL + lane; /* row of the block of the lane's r = 0 */
    uint t0 = pc.w_off + b * kt * 256u + sub0;       /* its texel at step 0 */
    uint c0 = b * 256u + sub0;                       /* its chunk column */
    uint r0 = gl_WorkGroupID.y * MB;
    FOR_ROWS(HOFF)
    { FOR_R(ZERO_R) }
    for (uint ks = 0u; ks < kf; ks++) STEP(ks, false)
    if (kf < kt) STEP(kf, true)
    FOR_R(STORE_R)
}
