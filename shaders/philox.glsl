/* philox.glsl: Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32 with R = 10),
 * bit-identical to the host's vkd_philox4x32 (runtime/ops_logits.c). Counter words c.x..c.w
 * are ctr[0..3] and key words k.x, k.y are key[0..1] in Random123's order; the key is
 * bumped before rounds 2..10. */
#ifndef VKD_PHILOX_GLSL
#define VKD_PHILOX_GLSL

uvec4 philox4x32_10(uvec4 c, uvec2 k) {
    for (int r = 0; r < 10; r++) {
        if (r > 0) k += uvec2(0x9E3779B9u, 0xBB67AE85u);
        uint hi0, lo0, hi1, lo1;
        umulExtended(0xD2511F53u, c.x, hi0, lo0);
        umulExtended(0xCD9E8D57u, c.z, hi1, lo1);
        c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

/* The counter of row r: the 64-bit (ctr_hi:ctr_lo) + r in the low two words. */
uvec4 philox_counter(uint ctr_lo, uint ctr_hi, uint r) {
    uint lo = ctr_lo + r;
    return uvec4(lo, ctr_hi + (lo < r ? 1u : 0u), 0u, 0u);
}

/* Uniform in [0, 1) from one word: (w >> 8) * 2^-24 (exact in f32). */
float philox_uniform(uint w) { return float(w >> 8) * (1.0 / 16777216.0); }

#endif
