/* test_report.c: apps/report.c. rep_num keeps precision (the expected strings are written
 * from the rule in report.h), rep_ci_of's value and the coverage of its 95% bootstrap CI
 * (300 samples of 40 normal values: the interval holds the true mean 0 in about 95% of
 * them), the determinism of the resamples.
 *
 * `test_report boot REPS SEED` reads lines "num den" (den "-" for none in every line: a
 * mean) from stdin and prints "value lo hi" with 17 digits: check_bootstrap.py compares them
 * with numpy on the same Philox resamples, computed in Python. */
#include "report.h"
#include "vkd_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_num(void) {
    struct {
        double v;
        const char *want;
    } cases[] = {
        {2.2e-6, "2.2e-06"}, {0, "0"},         {0.5, "0.5000"},     {123.456, "123.5"}, {-0.012345, "-0.01235"},
        {1234567, "1.23e+06"}, {0.001, "0.001000"}, {9.99e-4, "0.000999"}, {NAN, "nan"}, {-INFINITY, "-inf"},
        {42, "42.00"},        {999999, "999999"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        rep_num(buf, sizeof buf, cases[i].v);
        CHECK(!strcmp(buf, cases[i].want), "rep_num(%.17g) = '%s', expected '%s'", cases[i].v, buf, cases[i].want);
    }
    char buf[112];
    rep_ci_text(buf, sizeof buf, (rep_ci){.value = 0.25, .lo = 2.2e-6, .hi = 0.5});
    CHECK(!strcmp(buf, "0.2500 [2.2e-06, 0.5000]"), "rep_ci_text: '%s'", buf);
}

static void test_ci(void) {
    rep_boot b = {.reps = 500, .seed = 11};
    unsigned long long rs = 0xc1c1ULL;
    int hold = 0, trials = 300;
    double x[40];
    for (int t = 0; t < trials; t++) {
        for (int i = 0; i < 40; i++) x[i] = vkd_test_rand_normal(&rs);
        b.seed = (uint64_t)t;
        rep_ci ci = rep_ci_of(&b, x, NULL, 40);
        double m = 0;
        for (int i = 0; i < 40; i++) m += x[i] / 40;
        CHECK(fabs(ci.value - m) < 1e-12 && ci.lo <= m && m <= ci.hi && ci.n == 40, "trial %d: %g [%g, %g], mean %g", t,
              ci.value, ci.lo, ci.hi, m);
        hold += ci.lo <= 0 && 0 <= ci.hi;
    }
    double cover = (double)hold / trials;
    fprintf(stderr, "bootstrap coverage of the true mean: %.3f (nominal 0.95, %d trials)\n", cover, trials);
    CHECK(cover > 0.89 && cover < 0.99, "coverage %.3f outside 0.89..0.99", cover);
    b.seed = 3;
    rep_ci a1 = rep_ci_of(&b, x, NULL, 40), a2 = rep_ci_of(&b, x, NULL, 40);
    CHECK(a1.lo == a2.lo && a1.hi == a2.hi, "same seed, different CI");
    rep_ci e = rep_ci_of(&b, x, NULL, 0);
    CHECK(isnan(e.value) && isnan(e.lo) && isnan(e.hi), "no examples: %g [%g, %g]", e.value, e.lo, e.hi);
}

static int boot(uint32_t reps, uint64_t seed) {
    size_t n = 0, cap = 1024;
    double *num = malloc(cap * sizeof *num), *den = malloc(cap * sizeof *den);
    char a[64], d[64];
    bool has_den = false;
    while (scanf("%63s %63s", a, d) == 2) {
        if (n == cap) {
            cap *= 2;
            num = realloc(num, cap * sizeof *num);
            den = realloc(den, cap * sizeof *den);
        }
        num[n] = strtod(a, NULL);
        has_den = strcmp(d, "-") != 0;
        den[n++] = has_den ? strtod(d, NULL) : 1;
    }
    rep_boot b = {.reps = reps, .seed = seed};
    rep_ci ci = rep_ci_of(&b, num, has_den ? den : NULL, n);
    printf("%.17g %.17g %.17g\n", ci.value, ci.lo, ci.hi);
    free(num);
    free(den);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "boot")) return boot((uint32_t)atol(argv[2]), strtoull(argv[3], NULL, 10));
    test_num();
    test_ci();
    return vkd_test_result("test_report");
}
