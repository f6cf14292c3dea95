/* blocks_x.glsl: x as the texel-block kernels read it (matmul_blocks.glsl, argmax_blocks.glsl),
 * row i of the workgroup's pass starting at element xb[i] (XOFF): through its uniform texel
 * view `xt` (XTEX: RGBA32UI, texel t holds elements 4t .. 4t + 3, K % 4 == 0) or from a
 * storage buffer `x`. LOADX(i) sets xl[i] (and xh[i], 16-bit W: elements 4 .. 7 of the
 * step) for step k (tail step: g), each texel value v passed through XN(v, i, ln) (the
 * includer's; matmul_blocks' fused norm), ln the step's norm weights lnl / lnh.
 * Texel path: every lane fetches the same texel(s), which lavapipe vectorises, where storage
 * loads and subgroup broadcasts go lane by lane; 16-bit W: the second texel is past K in the
 * tail step (K % 8 == 4), whose W texel is zero padding. Needs xb, xl, xh, xr0, E, MB, pc. */
#if XTEX
vec4 xtex(uint i, uint t) { return uintBitsToFloat(texelFetch(xt, int((xb[i] >> 2) + t))); }
#else
float xat(uint i, uint e, bool guard) {
    return !guard || e < pc.K ? x[xb[i] + e] : 0.0;
}
#endif

#define XOFF(i) if (i < MB) xb[i] = (pc.x_row0 + min(xr0 + uint(i), pc.m - 1u)) * pc.K;
#if XTEX && DT_F32
#define LOADX(i) if (i < MB) xl[i] = XN(xtex(i, k), i, lnl);
#elif XTEX
#define LOADX(i) if (i < MB) { xl[i] = XN(xtex(i, 2u * k), i, lnl); \
        xh[i] = g && k * E + 4u >= pc.K ? vec4(0.0) : XN(xtex(i, 2u * k + 1u), i, lnh); }
#elif DT_F32
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(xat(i, e, g), xat(i, e + 1u, g), xat(i, e + 2u, g), xat(i, e + 3u, g)); }
#else
#define LOADX(i) if (i < MB) { uint e = k * E; \
        xl[i] = vec4(xat(i, e, g), xat(i, e + 1u, g), xat(i, e + 2u, g), xat(i, e + 3u, g)); \
        xh[i] = vec4(xat(i, e + 4u, g), xat(i, e + 5u, g), xat(i, e + 6u, g), xat(i, e + 7u, g)); }
#endif
