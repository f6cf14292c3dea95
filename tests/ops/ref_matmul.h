/* ref_matmul.h: plain-C double-accumulation references of the matmul ops (tests only). */
#ifndef VKD_REF_MATMUL_H
#define VKD_REF_MATMUL_H

#include <stdint.h>

#include "vkd_base.h"

/* Element i of a weight array stored as dtype (f32, f16 or bf16), widened to double. */
double ref_weight(vkd_dtype dt, const void *w, uint64_t i);

/* y[i, n] = sum_k x[i, k] * W[n, k] for i < m, n < N (x: m x K, W: N x K as dtype, y: m x N);
 * mag[i, n] = sum_k |x[i, k] * W[n, k]|, the scale of the rounding error (may be NULL). */
void ref_matmul(double *y, double *mag, const float *x, const void *w, vkd_dtype dt,
                uint32_t m, uint32_t N, uint32_t K);

/* y[i, :H] = table[ids[i], :H], or zeros for an id outside [0, V). */
void ref_embed(double *y, const int32_t *ids, const void *table, vkd_dtype dt, uint32_t m,
               uint32_t V, uint32_t H);

#endif
