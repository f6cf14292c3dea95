/* ref_matmul.c: CPU references of vkd_op_matmul and vkd_op_embed (double accumulation on
 * the very f32/f16/bf16 values the device reads). */
#include "ref_matmul.h"

#include <math.h>
#include <string.h>

double ref_weight(vkd_dtype dt, const void *w, uint64_t i) {
    switch (dt) {
    case VKD_DTYPE_F16: return vkd_f16_to_f32(((const uint16_t *)w)[i]);
    case VKD_DTYPE_BF16: return vkd_bf16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

void ref_matmul(double *y, double *mag, const float *x, const void *w, vkd_dtype dt,
                uint32_t m, uint32_t N, uint32_t K) {
    for (uint32_t n = 0; n < N; n++)
        for (uint32_t i = 0; i < m; i++) {
            double s = 0, a = 0;
            for (uint32_t k = 0; k < K; k++) {
                double p = (double)x[(uint64_t)i * K + k] * ref_weight(dt, w, (uint64_t)n * K + k);
                s += p;
                a += fabs(p);
            }
            y[(uint64_t)i * N + n] = s;
            if (mag) mag[(uint64_t)i * N + n] = a;
        }
}

void ref_embed(double *y, const int32_t *ids, const void *table, vkd_dtype dt, uint32_t m,
               uint32_t V, uint32_t H) {
    for (uint32_t i = 0; i < m; i++) {
        bool valid = ids[i] >= 0 && (uint32_t)ids[i] < V;
        for (uint32_t c = 0; c < H; c++)
            y[(uint64_t)i * H + c] = valid ? ref_weight(dt, table, (uint64_t)ids[i] * H + c) : 0.0;
    }
}
