/* weight_load.glsl: a row-major weight W as a storage buffer of the dtype axis (DT_F32,
 * DT_F16 or DT_BF16; tools/gen_shaders.py) at binding WEIGHT_BINDING (default 0), and
 * load1(e) = its element e widened to f32 (16-bit weights: two to a 32-bit word). */
#ifndef VKD_WEIGHT_LOAD_GLSL
#define VKD_WEIGHT_LOAD_GLSL
#ifndef WEIGHT_BINDING
#define WEIGHT_BINDING 0
#endif

#if DT_F32
layout(std430, binding = WEIGHT_BINDING) readonly buffer W { float w[]; };
#else
layout(std430, binding = WEIGHT_BINDING) readonly buffer W { uint w[]; };
#endif

float load1(uint e) {
#if DT_F32
    return w[e];
#elif DT_BF16
    uint q = w[e >> 1];
    return (e & 1u) != 0u ? bf16_hi(q) : bf16_lo(q);
#else
    return f16x2(w[e >> 1])[e & 1u];
#endif
}
#endif
