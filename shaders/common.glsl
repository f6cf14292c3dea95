/* common.glsl: helpers shared by the compute shaders. */
#ifndef VKD_COMMON_GLSL
#define VKD_COMMON_GLSL

/* bf16 is read as raw 16-bit halves of 32-bit words and widened here (no extension). */
float bf16_lo(uint w) { return uintBitsToFloat(w << 16); }
float bf16_hi(uint w) { return uintBitsToFloat(w & 0xffff0000u); }
vec2 bf16x2(uint w) { return vec2(bf16_lo(w), bf16_hi(w)); }
vec2 f16x2(uint w) { return unpackHalf2x16(w); }

#endif
