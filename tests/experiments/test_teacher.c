/* test_teacher: host-side pieces of the teacher-forced walks (vkd_teacher.h).
 *  - random mode's noise keeps each feature row's L2 norm (double, relative 1e-6: the
 *    result is rounded to f32), is a different direction, is deterministic in (seed, key,
 *    row) and independent of how rows are chunked, keeps a zero row zero, and looks
 *    standard normal before scaling (moments over many rows);
 *  - block ids per mode, padding of a partial last block. */
#include <string.h>

#include "methods/vkd_teacher.h"
#include "vkd_test.h"

static double norm(const float *x, uint32_t n) {
    double s = 0;
    for (uint32_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

int main(void) {
    enum { R = 37, C = 203 }; /* odd sizes: the 4-wide Philox blocks straddle rows */
    static float f[R * C], n1[R * C], n2[R * C];
    unsigned long long s = 42;
    for (int i = 0; i < R * C; i++) f[i] = (float)(vkd_test_rand_normal(&s) * (1 + i / C));
    memset(f + 5 * C, 0, C * sizeof *f); /* a zero row */
    vkd_tf_noise_rows(f, n1, R, C, 7, 3, 100);
    double worst = 0, cosmax = 0;
    for (int r = 0; r < R; r++) {
        double a = norm(f + r * C, C), b = norm(n1 + r * C, C);
        if (r == 5) {
            CHECK(b == 0, "zero row stays zero (norm %g)", b);
            continue;
        }
        double e = fabs(a - b) / a;
        if (e > worst) worst = e;
        double dot = 0;
        for (int j = 0; j < C; j++) dot += (double)f[r * C + j] * n1[r * C + j];
        if (fabs(dot / (a * b)) > cosmax) cosmax = fabs(dot / (a * b));
    }
    CHECK(worst < 1e-6, "noise rows keep the feature norms: worst relative error %.3g", worst);
    CHECK(cosmax < 0.5, "noise is not aligned with the features (max |cos| %.3f)", cosmax);
    fprintf(stderr, "noise: worst norm error %.3g, max |cos| with the features %.3f\n", worst, cosmax);
    /* chunking: rows 10.. computed alone equal the same rows computed in one call */
    vkd_tf_noise_rows(f + 10 * C, n2, R - 10, C, 7, 3, 110);
    CHECK(!memcmp(n1 + 10 * C, n2, (size_t)(R - 10) * C * sizeof *n2), "noise independent of chunking");
    vkd_tf_noise_rows(f, n2, R, C, 8, 3, 100);
    CHECK(memcmp(n1, n2, sizeof n1) != 0, "another seed gives other noise");
    vkd_tf_noise_rows(f, n2, R, C, 7, 4, 100);
    CHECK(memcmp(n1, n2, sizeof n1) != 0, "another key (example) gives other noise");
    /* in place, and the moments of unit-norm-scaled noise: rows of norm sqrt(C) -> N(0,1) */
    for (int i = 0; i < R * C; i++) n2[i] = 1.0f;
    vkd_tf_noise_rows(n2, n2, R, C, 9, 0, 0);
    double m1 = 0, m2 = 0, m4 = 0;
    for (int i = 0; i < R * C; i++) {
        m1 += n2[i];
        m2 += (double)n2[i] * n2[i];
        m4 += pow(n2[i], 4);
    }
    m1 /= R * C; m2 /= R * C; m4 /= R * C;
    CHECK(fabs(m1) < 0.05 && fabs(m2 - 1) < 1e-6 && fabs(m4 / (m2 * m2) - 3) < 0.3,
          "noise moments: mean %.4f, var %.6f, kurtosis %.3f", m1, m2, m4 / (m2 * m2));

    int32_t seq[12] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}, out[4];
    vkd_tf_block_ids(VKD_TF_GOLD, seq, 4, 4, 4, -7, out);
    CHECK(out[0] == 14 && out[1] == 15 && out[2] == 16 && out[3] == 17, "gold block");
    vkd_tf_block_ids(VKD_TF_MASK, seq, 4, 4, 4, -7, out);
    CHECK(out[0] == 14 && out[1] == -7 && out[2] == -7 && out[3] == -7, "mask block");
    vkd_tf_block_ids(VKD_TF_RANDOM, seq, 10, 2, 4, -7, out);
    CHECK(out[0] == 20 && out[1] == 21 && out[2] == -7 && out[3] == -7, "partial block padded with MASK");
    return vkd_test_result("test_teacher");
}
