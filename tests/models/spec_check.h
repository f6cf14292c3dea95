/* spec_check.h: checks of speculative decoding the model tests share (tests only). */
#ifndef VKD_SPEC_CHECK_H
#define VKD_SPEC_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "vkd_spec.h"
#include "vkd_test.h"

/* Speculative sampling keeps the target's distribution: the first two generated tokens
 * (t1 from the prefill, t2 decided by acceptance or residual resampling) over many seeds
 * against p(t1) p(t2 | t1) computed from the target's own logits (a chi-square test over the
 * top-4 x top-4 cells of temperature 0.8, top-k 4); seeds seed0 .. seed0 + 1199. */
static void spec_check_sampling(vkd_target *t, vkd_rec *rec, vkd_draft *p, uint64_t seed0,
                                const char *what) {
    vkd_error err = {0};
    const int32_t prompt[6] = {3, 17, 101, 42, 7, 250};
    vkd_sample_params sp = {.temperature = 0.8f, .top_k = 4};
    uint32_t V = t->vocab;
    /* exact distribution from the target (its logits are checked against the reference in
     * test_target) */
    float *logits = malloc(V * 4), *p1 = malloc(V * 4), *p2 = malloc((size_t)4 * V * 4);
    REQUIRE(!vkd_target_crop(t, 0, &err), "%s", err.msg);
    REQUIRE(!vkd_target_prefill(t, rec, prompt, 6, logits, &err), "%s", err.msg);
    REQUIRE(!vkd_sample_probs(logits, V, &sp, p1, &err), "%s", err.msg);
    int32_t cand[4];
    uint32_t nc = 0;
    for (uint32_t i = 0; i < V && nc < 4; i++)
        if (p1[i] > 0) cand[nc++] = (int32_t)i;
    REQUIRE(nc == 4, "top-4 support has %u tokens", nc);
    for (uint32_t c = 0; c < nc; c++) {
        int32_t seq[7];
        memcpy(seq, prompt, sizeof prompt);
        seq[6] = cand[c];
        REQUIRE(!vkd_target_crop(t, 0, &err), "%s", err.msg);
        REQUIRE(!vkd_target_prefill(t, rec, seq, 7, logits, &err), "%s", err.msg);
        REQUIRE(!vkd_sample_probs(logits, V, &sp, p2 + (size_t)c * V, &err), "%s", err.msg);
    }
    const int N = 1200;
    uint32_t counts[4][4] = {{0}};
    int outside = 0;
    for (int s = 0; s < N; s++) {
        vkd_generate_options o = {.max_new_tokens = 2, .sample = sp};
        o.sample.seed = seed0 + (uint64_t)s;
        vkd_spec_result res;
        REQUIRE(!vkd_spec_generate(t, p, rec, prompt, 6, &o, &res, &err), "%s", err.msg);
        int a = -1, b = -1;
        for (uint32_t c = 0; c < nc; c++)
            if (res.ids[0] == cand[c]) a = (int)c;
        if (a >= 0)
            for (uint32_t i = 0, k = 0; i < V; i++)
                if (p2[(size_t)a * V + i] > 0) {
                    if (res.ids[1] == (int32_t)i) b = (int)k;
                    k++;
                }
        if (a < 0 || b < 0) outside++;
        else counts[a][b]++;
        vkd_spec_result_free(&res);
    }
    double chi = 0;
    int cells = 0;
    for (uint32_t a = 0; a < nc; a++)
        for (uint32_t i = 0, k = 0; i < V; i++) {
            double q = p2[(size_t)a * V + i];
            if (q <= 0) continue;
            double expct = N * p1[cand[a]] * q;
            double d = counts[a][k] - expct;
            chi += d * d / expct;
            cells++;
            k++;
        }
    /* 15 degrees of freedom: the 0.999 quantile is 37.7 */
    CHECK(outside == 0, "%s: %d samples outside the top-k support", what, outside);
    CHECK(chi < 37.7, "%s: chi-square %.1f over %d cells (p < 0.001)", what, chi, cells);
    fprintf(stderr, "  sampling (%s): chi-square %.1f over %d cells, N = %d\n", what, chi, cells, N);
    free(logits);
    free(p1);
    free(p2);
}

#endif
