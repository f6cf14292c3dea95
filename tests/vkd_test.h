/* vkd_test.h: the tiny harness every test program uses.
 * A test program runs its cases, prints the worst error it saw per case, and returns
 * vkd_test_result(): 0 when every CHECK held, 1 otherwise (77 = skipped, meson's code). */
#ifndef VKD_TEST_H
#define VKD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int vkd_test_failures;
static int vkd_test_checks;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        vkd_test_checks++;                                                     \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            vkd_test_failures++;                                               \
        }                                                                      \
    } while (0)

/* Aborts the test program at once (setup failures that make later checks meaningless). */
#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FATAL %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static inline int vkd_test_result(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failed\n", name, vkd_test_checks, vkd_test_failures);
    return vkd_test_failures ? 1 : 0;
}

/* VKDRAFT_TEST_SWEEP=short (the sanitizer build's run, tools/run-tests.sh): the long op sweeps
 * take every other case and leave out their vocabulary-sized ones; the release run keeps all. */
static inline int vkd_test_short(void) {
    const char *s = getenv("VKDRAFT_TEST_SWEEP");
    return s && s[0] == 's';
}

/* Deterministic test RNG (xorshift64*), independent of the runtime's Philox. */
static inline unsigned long long vkd_test_rand_u64(unsigned long long *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static inline double vkd_test_rand_uniform(unsigned long long *s) { /* [0,1) */
    return (double)(vkd_test_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double vkd_test_rand_normal(unsigned long long *s) {
    double u1 = vkd_test_rand_uniform(s), u2 = vkd_test_rand_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
