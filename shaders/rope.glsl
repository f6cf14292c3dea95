/* rope.glsl: sin and cos of a RoPE angle, shared by rope.comp and qk_rope_kv.comp (see
 * rope.comp for the method and its accuracy). */
#ifndef VKD_ROPE_GLSL
#define VKD_ROPE_GLSL

const float P1 = 1.5625;
const float P2 = 0.0081787109375;
const float P3 = 0.00011730194091796875;
const float P4 = 3.1391647326017846e-07;

/* (sin a, cos a) */
vec2 sincos_f32(float a) {
    precise float k = roundEven(a * 0.63661977236758134);
    precise float r = a - k * P1;
    r = r - k * P2;
    r = r - k * P3;
    r = r - k * P4;
    float z = r * r;
    float s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    float c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
              - 0.5 * z + 1.0;
    int q = int(k) & 3;
    if (q == 0) return vec2(s, c);
    if (q == 1) return vec2(c, -s);
    if (q == 2) return vec2(-s, -c);
    return vec2(-c, s);
}

#endif
