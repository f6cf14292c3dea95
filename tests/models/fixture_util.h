/* fixture_util.h: reading the golden fixtures of tools/reference/make_fixtures.py. */
#ifndef VKD_FIXTURE_UTIL_H
#define VKD_FIXTURE_UTIL_H

#include "safetensors.h"
#include "vkd_test.h"

/* Tensor `name` of an expected.safetensors file; a missing one aborts the test. */
static inline const vkd_st_tensor *fixture_get(vkd_st_file *f, const char *name) {
    const vkd_st_tensor *t = vkd_st_find(f, name);
    REQUIRE(t, "fixture tensor %s missing", name);
    return t;
}

/* max |a - b| / (1 + max |b|) over n values; NaN counts as an infinite error. */
static inline double fixture_rel_err(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst / (1.0 + scale);
}

#endif
