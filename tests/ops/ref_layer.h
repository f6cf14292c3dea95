/* ref_layer.h: plain-C references of the layer ops (double accumulation), used only by the
 * tests. Shapes as in ops/vkd_ops.h; weights and caches are passed already widened to
 * f32 (the tests widen bf16/f16 with the runtime's converters), outputs are f32. */
#ifndef VKD_REF_LAYER_H
#define VKD_REF_LAYER_H

#include <stdbool.h>
#include <stdint.h>

/* y[g*dim + i] = x * 1/sqrt(mean(x^2) + eps) * w[i] over `groups` groups of dim. */
void ref_rmsnorm(float *y, const float *x, const float *w, uint32_t groups, uint32_t dim, float eps);

/* Rotate-half RoPE of rows x heads vectors of hd at x (row stride `stride`), in place.
 * Angle = (float)position * inv_freq[j] rounded to f32 (as transformers), cos/sin in double.
 * positions NULL: pos0 + r. */
void ref_rope(float *x, uint32_t rows, uint32_t stride, uint32_t heads, uint32_t hd,
              uint32_t pos0, const int32_t *positions, const float *inv_freq);

/* o: q_rows x (n_q*hd); q likewise; k, v: kv_len rows of stride kv_stride (kv head g at
 * column g*hd). Softmax over keys j < (causal ? min(kv_len, q_pos0 + i + 1) : kv_len). */
void ref_attention(float *o, const float *q, const float *k, const float *v, uint32_t kv_stride,
                   uint32_t q_rows, uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                   uint32_t q_pos0, bool causal, float scale);

/* h[i] = silu(g[i]) * u[i] in double. */
void ref_swiglu(float *h, const float *g, const float *u, uint64_t n);

/* Double results for error measurement without the f32 output rounding. */
double ref_swiglu_one(float g, float u);

#endif
