/* common.glsl: helpers shared by the compute shaders. */
#ifndef VKD_COMMON_GLSL
#define VKD_COMMON_GLSL

/* bf16 is read as raw 16-bit halves of 32-bit words and widened here (no extension). */
float bf16_lo(uint w) { return uintBitsToFloat(w << 16); }
float bf16_hi(uint w) { return uintBitsToFloat(w & 0xffff0000u); }
vec2 bf16x2(uint w) { return vec2(bf16_lo(w), bf16_hi(w)); }
vec2 f16x2(uint w) { return unpackHalf2x16(w); }
/* a += p . q over 4 elements, one fma() after another: the order of every texel-block
 * matmul kernel (matmul_blocks.glsl, argmax_blocks, loss_logits_blocks), so their logits
 * agree to the bit */
#define FMA_TEXEL(a, p, q) a = fma((p).x, (q).x, a); a = fma((p).y, (q).y, a); \
        a = fma((p).z, (q).z, a); a = fma((p).w, (q).w, a);

#endif
