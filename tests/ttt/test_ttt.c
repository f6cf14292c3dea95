/* test_ttt: host side of test-time training (methods/ttt.c, vkd_ttt.h).
 *  - anchors: distinct, inside 1..T-2, deterministic in (seed, example, step), different across
 *    steps/examples/seeds, uniform (chi-square over many draws, odd T), K > T-2 refused;
 *  - step rows: block ids, labels and weights against the objective written out here in
 *    double (w_k = exp(-(k-1)/gamma) / sum), rows past the context get weight 0;
 *  - the loss reference against a hand-computed two-row case;
 *  - sweep grid order and its bad input; LoRA target lists;
 *  - bootstrap CI: deterministic, brackets the mean, width close to the normal theory;
 *  - vkd_ttt_measure on the committed DFlash fixture pair: tau and ids equal a direct
 *    vkd_spec_generate, the ids equal the target's greedy output (lossless), and the
 *    teacher-forced p / rank equal the same walk's draft logits read back and scored on the
 *    host in double;
 *  - adapters on the draft: a fresh one (B = 0) leaves tau, ids and p bit-identical, freeing it
 *    restores the draft; a non-zero one (written with models/vkd_lora.h, f32) changes p, and
 *    saving it back from the device gives the same A and B bit for bit; misfits (another
 *    draft's shapes, an o_proj module) are refused naming the module. */
#include <string.h>

#include "methods/vkd_generate.h"
#include "methods/vkd_spec.h"
#include "methods/vkd_teacher.h"
#include "methods/vkd_ttt.h"
#include "models/vkd_lora.h"
#include "vkd_test.h"
#include "../models/fixture_util.h"

static void check_anchors(void) {
    vkd_error err = {0};
    enum { T = 41, K = 7, N = T - 2 };
    uint32_t a[K], b[K];
    CHECK(!vkd_ttt_draw_anchors(5, 3, 0, T, K, a, &err), "%s", err.msg);
    for (int i = 0; i < K; i++) {
        CHECK(a[i] >= 1 && a[i] <= T - 2, "anchor %u outside 1..%d", a[i], T - 2);
        for (int j = 0; j < i; j++) CHECK(a[i] != a[j], "anchor %u repeated", a[i]);
    }
    CHECK(!vkd_ttt_draw_anchors(5, 3, 0, T, K, b, &err) && !memcmp(a, b, sizeof a), "anchors deterministic");
    int same;
    vkd_ttt_draw_anchors(5, 3, 1, T, K, b, &err);
    same = !memcmp(a, b, sizeof a);
    vkd_ttt_draw_anchors(5, 4, 0, T, K, b, &err);
    same += !memcmp(a, b, sizeof a);
    vkd_ttt_draw_anchors(6, 3, 0, T, K, b, &err);
    same += !memcmp(a, b, sizeof a);
    CHECK(same == 0, "anchors differ across step / example / seed");
    /* every allowed position is drawn T-2 times out of ... : chi-square over 3000 steps */
    static double cnt[N];
    enum { S = 3000 };
    for (uint32_t s = 0; s < S; s++) {
        vkd_ttt_draw_anchors(11, 0, s, T, K, a, &err);
        for (int i = 0; i < K; i++) cnt[a[i] - 1] += 1;
    }
    double e = (double)S * K / N, chi = 0;
    for (int i = 0; i < N; i++) chi += (cnt[i] - e) * (cnt[i] - e) / e;
    /* 38 degrees of freedom: mean 38, sd ~8.7 (without replacement the variance is smaller) */
    CHECK(chi < 80, "anchor frequencies not uniform: chi-square %.1f over %d cells", chi, N);
    fprintf(stderr, "anchors: chi-square %.1f (38 dof)\n", chi);
    /* K = T-2: a permutation of every position */
    uint32_t all[N];
    CHECK(!vkd_ttt_draw_anchors(1, 0, 0, T, N, all, &err), "%s", err.msg);
    uint32_t seen = 0;
    for (int i = 0; i < N; i++) seen += all[i] >= 1 && all[i] <= T - 2;
    CHECK(seen == N, "K = T-2 covers every position");
    CHECK(vkd_ttt_draw_anchors(1, 0, 0, T, N + 1, all, &err) == VKD_ERR_RANGE && strstr(err.msg, "41 tokens"),
          "K > T-2 refused: '%s'", err.msg);
    CHECK(vkd_ttt_draw_anchors(1, 0, 0, 2, 1, all, &err) == VKD_ERR_RANGE, "T = 2 has no anchor");
    CHECK(vkd_ttt_anchor_count(2) == 0 && vkd_ttt_anchor_count(3) == 1, "anchor count");
    uint32_t fx[3] = {1, 39, 5};
    CHECK(!vkd_ttt_check_anchors(fx, 3, T, &err), "%s", err.msg);
    fx[1] = 40;
    CHECK(vkd_ttt_check_anchors(fx, 3, T, &err) == VKD_ERR_RANGE && strstr(err.msg, "1..39"), "'%s'", err.msg);
    fx[1] = 0;
    CHECK(vkd_ttt_check_anchors(fx, 3, T, &err) == VKD_ERR_RANGE, "anchor 0 refused");
    fx[1] = 5;
    CHECK(vkd_ttt_check_anchors(fx, 3, T, &err) == VKD_ERR_INVALID && strstr(err.msg, "twice"), "'%s'", err.msg);
}

static void check_rows(void) {
    enum { T = 13, B = 5, NA = 3 };
    int32_t seq[T];
    for (int i = 0; i < T; i++) seq[i] = 100 + i;
    uint32_t an[NA] = {2, 10, 11}; /* 10: rows k = 1, 2 in range; 11: k = 1 only */
    int32_t blocks[NA * B], labels[NA * (B - 1)];
    float w[NA * (B - 1)];
    double gamma = 3.0;
    uint32_t rows = vkd_ttt_step_rows(seq, T, an, NA, B, 7, gamma, blocks, labels, w);
    CHECK(rows == 4 + 2 + 1, "trained rows %u, expected 7", rows);
    double sum = 0;
    for (int k = 1; k < B; k++) sum += exp(-(k - 1) / gamma);          /* anchor 2 */
    sum += exp(0) + exp(-1 / gamma);                                   /* anchor 10 */
    sum += exp(0);                                                     /* anchor 11 */
    double worst = 0;
    for (int i = 0; i < NA; i++) {
        CHECK(blocks[i * B] == seq[an[i]], "block %d row 0", i);
        for (int k = 1; k < B; k++) {
            CHECK(blocks[i * B + k] == 7, "block %d row %d is the mask", i, k);
            int r = i * (B - 1) + k - 1;
            bool in = an[i] + k <= T - 1;
            CHECK(labels[r] == (in ? seq[an[i] + k] : -1), "label of anchor %u row %d: %d", an[i], k, labels[r]);
            double want = in ? exp(-(k - 1) / gamma) / sum : 0;
            double e = fabs(w[r] - want);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst < 1e-7, "weights: worst error %.3g", worst);
    fprintf(stderr, "step rows: worst weight error %.3g\n", worst);
    /* loss reference: two rows of V = 3 */
    float lg[6] = {1, 2, 3, 0, 0, 0};
    int32_t lb[2] = {0, 2};
    float ww[2] = {0.25f, 0.75f};
    double want = 0.25 * (log(exp(1) + exp(2) + exp(3)) - 1) + 0.75 * log(3.0);
    CHECK(fabs(vkd_ttt_loss_ref(lg, 2, 3, lb, ww) - want) < 1e-12, "loss reference");
}

static void check_grid_targets(void) {
    vkd_error err = {0};
    uint32_t st[3] = {30, 10, 100}, rk[2] = {4, 16};
    double lr[2] = {1e-4, 1e-3};
    vkd_ttt_setting *g;
    size_t n;
    CHECK(!vkd_ttt_grid(st, 3, lr, 2, rk, 2, &g, &n, &err), "%s", err.msg);
    CHECK(n == 12, "grid size %zu", n);
    CHECK(g[0].steps == 10 && g[1].steps == 30 && g[2].steps == 100 && g[0].lr == 1e-4 && g[3].lr == 1e-3 &&
          g[0].rank == 4 && g[6].rank == 16, "grid order rank > lr > steps ascending");
    free(g);
    double bad[1] = {0};
    CHECK(vkd_ttt_grid(st, 3, bad, 1, rk, 2, &g, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "--lr"),
          "lr 0 refused: '%s'", err.msg);
    bad[0] = -1e-3;
    CHECK(vkd_ttt_grid(st, 3, bad, 1, rk, 2, &g, &n, &err) == VKD_ERR_INVALID, "lr < 0 refused");
    bad[0] = NAN;
    CHECK(vkd_ttt_grid(st, 3, bad, 1, rk, 2, &g, &n, &err) == VKD_ERR_INVALID, "lr NaN refused");
    uint32_t dup[2] = {10, 10};
    CHECK(vkd_ttt_grid(dup, 2, lr, 2, rk, 2, &g, &n, &err) == VKD_ERR_INVALID && strstr(err.msg, "twice"),
          "duplicate steps refused");
    uint32_t m;
    CHECK(!vkd_ttt_parse_targets("v_proj,fc,k_proj", &m, &err) && m == VKD_TTT_DEFAULT_TARGETS, "targets parse");
    char buf[64];
    vkd_ttt_targets_str(m | VKD_TTT_Q, buf, sizeof buf);
    CHECK(!strcmp(buf, "fc,q_proj,k_proj,v_proj"), "targets string '%s'", buf);
    CHECK(vkd_ttt_parse_targets("fc,o_proj", &m, &err) == VKD_ERR_INVALID && strstr(err.msg, "'o_proj'"),
          "bad target: '%s'", err.msg);
    CHECK(vkd_ttt_parse_targets("fc,fc", &m, &err) == VKD_ERR_INVALID, "repeated target refused");
    CHECK(vkd_ttt_parse_targets("", &m, &err) == VKD_ERR_INVALID, "empty targets refused");
}

static void check_bootstrap(void) {
    enum { N = 401 };
    static double x[N];
    unsigned long long s = 9;
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += (x[i] = 2 + vkd_test_rand_normal(&s));
    mean /= N;
    for (int i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean);
    double se = sqrt(var / N / N);
    double lo, hi, lo2, hi2;
    vkd_ttt_bootstrap_ci(x, N, 4000, 0.95, 3, &lo, &hi);
    vkd_ttt_bootstrap_ci(x, N, 4000, 0.95, 3, &lo2, &hi2);
    CHECK(lo == lo2 && hi == hi2, "bootstrap deterministic");
    CHECK(lo < mean && mean < hi, "CI [%g, %g] brackets the mean %g", lo, hi, mean);
    double rel = (hi - lo) / (2 * 1.959964 * se);
    CHECK(fabs(rel - 1) < 0.1, "CI width %.4f vs normal theory %.4f (ratio %.3f)", hi - lo, 2 * 1.959964 * se, rel);
    fprintf(stderr, "bootstrap: width / normal-theory width = %.3f\n", rel);
    vkd_ttt_bootstrap_ci(x, 1, 100, 0.95, 3, &lo, &hi);
    CHECK(lo == x[0] && hi == x[0], "one value: CI is the value");
    vkd_ttt_bootstrap_ci(x, 0, 100, 0.95, 3, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi), "no value: NaN");
}

static bool same_metrics(const vkd_ttt_metrics *a, const vkd_ttt_metrics *b) {
    return a->tau == b->tau && a->generated == b->generated && !memcmp(a->ids, b->ids, a->generated * 4) &&
           a->p_mean == b->p_mean && a->rank_mean == b->rank_mean;
}

static void check_adapters(vkd_dflash *d, vkd_rec *rec, const int32_t *prompt, uint32_t P, const int32_t *seq,
                           uint32_t n, uint32_t G) {
    vkd_error err = {0};
    vkd_ttt_measure_options mo = {.max_new_tokens = G};
    vkd_ttt_metrics base, m;
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &base, &err), "%s", err.msg);
    vkd_ttt_adapter *a;
    REQUIRE(!vkd_ttt_adapter_new(d, 4, 8.0, VKD_TTT_DEFAULT_TARGETS | VKD_TTT_Q, 3, &a, &err), "%s", err.msg);
    CHECK(vkd_ttt_adapter_rank(a) == 4 && vkd_ttt_adapter_targets(a) == (VKD_TTT_DEFAULT_TARGETS | VKD_TTT_Q),
          "fresh adapter rank %u targets %u", vkd_ttt_adapter_rank(a), vkd_ttt_adapter_targets(a));
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &m, &err), "%s", err.msg);
    CHECK(same_metrics(&base, &m), "a fresh adapter (B = 0) changed the draft: tau %g vs %g, p %.9g vs %.9g", m.tau,
          base.tau, m.p_mean, base.p_mean);
    vkd_ttt_metrics_free(&m);
    vkd_ttt_adapter_free(a);

    /* a non-zero adapter, written as PEFT files */
    vkd_lora_dims dims = {.hidden = d->hidden, .n_layers = d->n_layers, .n_q = d->n_q, .n_kv = d->n_kv,
                          .head_dim = d->head_dim, .ffn = d->ffn, .ntaps = d->ntaps};
    const char *tg[4] = {"fc", "q_proj", "k_proj", "v_proj"};
    vkd_lora *h;
    REQUIRE(!vkd_lora_create(&dims, tg, 4, 3, 5.0f, 42, NULL, &h, &err), "%s", err.msg);
    unsigned long long rs = 5;
    for (uint32_t i = 0; i < h->nmodules; i++)
        for (uint32_t j = 0; j < h->modules[i].out * h->rank; j++)
            h->modules[i].b[j] = (float)(0.3 * vkd_test_rand_normal(&rs));
    char d1[] = "/tmp/vkd_ttt_adXXXXXX", d2[64];
    REQUIRE(mkdtemp(d1), "mkdtemp");
    snprintf(d2, sizeof d2, "%s/back", d1);
    REQUIRE(!vkd_lora_save(h, d1, &err), "%s", err.msg);
    REQUIRE(!vkd_ttt_adapter_load(d, d1, &a, &err), "%s", err.msg);
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &m, &err), "%s", err.msg);
    CHECK(m.p_mean != base.p_mean, "a non-zero adapter left p unchanged (%.9g)", m.p_mean);
    fprintf(stderr, "adapter: p %.4f -> %.4f, tau %.3f -> %.3f\n", base.p_mean, m.p_mean, base.tau, m.tau);
    vkd_ttt_metrics_free(&m);
    REQUIRE(!vkd_ttt_adapter_save(a, d2, &err), "%s", err.msg);
    vkd_ttt_adapter_free(a);
    vkd_lora *back;
    REQUIRE(!vkd_lora_load(d2, &dims, &back, &err), "%s", err.msg);
    bool same = back->nmodules == h->nmodules && back->rank == h->rank && back->alpha == h->alpha;
    for (uint32_t i = 0; same && i < h->nmodules; i++) {
        const vkd_lora_module *x = &h->modules[i], *y = &back->modules[i];
        same = !strcmp(x->path, y->path) && !memcmp(x->a, y->a, (size_t)h->rank * x->in * 4) &&
               !memcmp(x->b, y->b, (size_t)x->out * h->rank * 4);
    }
    CHECK(same, "adapter saved from the device differs from the one loaded");
    vkd_lora_free(back);
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &m, &err), "%s", err.msg);
    CHECK(same_metrics(&base, &m), "freeing the adapter did not restore the draft");
    vkd_ttt_metrics_free(&m);
    vkd_lora_free(h);

    /* misfits */
    vkd_lora_dims other = dims;
    other.ntaps += 1; /* fc of another draft */
    REQUIRE(!vkd_lora_create(&other, tg, 1, 3, 5.0f, 42, NULL, &h, &err), "%s", err.msg);
    snprintf(d2, sizeof d2, "%s/other", d1);
    REQUIRE(!vkd_lora_save(h, d2, &err), "%s", err.msg);
    vkd_lora_free(h);
    a = NULL;
    vkd_result r = vkd_ttt_adapter_load(d, d2, &a, &err);
    CHECK(r != VKD_OK && !a && strstr(err.msg, "fc"), "another draft's fc adapter: %d '%s'", r, err.msg);
    const char *o_proj[1] = {"o_proj"};
    REQUIRE(!vkd_lora_create(&dims, o_proj, 1, 3, 5.0f, 42, NULL, &h, &err), "%s", err.msg);
    snprintf(d2, sizeof d2, "%s/oproj", d1);
    REQUIRE(!vkd_lora_save(h, d2, &err), "%s", err.msg);
    vkd_lora_free(h);
    r = vkd_ttt_adapter_load(d, d2, &a, &err);
    CHECK(r == VKD_ERR_UNSUPPORTED && strstr(err.msg, "o_proj"), "o_proj adapter: %d '%s'", r, err.msg);
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &m, &err), "%s", err.msg);
    CHECK(same_metrics(&base, &m), "a refused adapter left something attached");
    vkd_ttt_metrics_free(&m);
    vkd_ttt_metrics_free(&base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d1);
    CHECK(system(cmd) == 0, "cleanup");
}

static void check_measure(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    char dir[4200];
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    vkd_target *t;
    vkd_dflash *d;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){.row_major_weights = true}, &ctx, &err), "%s", err.msg);
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/target/model", root);
    REQUIRE(!vkd_target_load(ctx, dir, &(vkd_target_options){.ctx_len = 128}, &t, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/draft-b4/model", root);
    REQUIRE(!vkd_dflash_load(ctx, t, dir, &(vkd_dflash_options){0}, &d, &err), "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/tests/models/fixtures/dflash/draft-b4/expected.safetensors", root);
    vkd_st_file *sf;
    REQUIRE(!vkd_st_open(dir, &sf, &err), "%s", err.msg);
    const vkd_st_tensor *pid = fixture_get(sf, "input_ids");
    uint32_t P = (uint32_t)pid->numel, G = 23, B = d->block, V = d->vocab;
    int32_t *prompt = malloc(P * 4);
    memcpy(prompt, pid->data, P * 4);
    vkd_generate_result gr;
    REQUIRE(!vkd_generate(t, rec, prompt, P, &(vkd_generate_options){.max_new_tokens = G}, &gr, &err), "%s", err.msg);
    /* the "answer": the greedy continuation with two tokens changed, so some ranks are > 1 */
    uint32_t n = P + gr.n;
    int32_t *seq = malloc(n * 4);
    memcpy(seq, prompt, P * 4);
    memcpy(seq + P, gr.ids, gr.n * 4);
    seq[P + 5] = (seq[P + 5] + 3) % (int32_t)V;
    seq[P + 14] = (seq[P + 14] + 7) % (int32_t)V;

    vkd_ttt_metrics m;
    vkd_ttt_measure_options mo = {.max_new_tokens = G};
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, seq, n, &mo, &m, &err), "%s", err.msg);
    vkd_draft *g;
    REQUIRE(!vkd_draft_dflash(d, &g, &err), "%s", err.msg);
    vkd_spec_result sr;
    REQUIRE(!vkd_spec_generate(t, g, rec, prompt, P, &(vkd_generate_options){.max_new_tokens = G}, &sr, &err), "%s", err.msg);
    CHECK(m.tau == sr.stats.tau && m.generated == sr.n && !memcmp(m.ids, sr.ids, sr.n * 4),
          "measure's spec decoding == vkd_spec_generate (tau %g vs %g)", m.tau, sr.stats.tau);
    CHECK(sr.n == gr.n && !memcmp(sr.ids, gr.ids, gr.n * 4), "spec decoding == greedy output");
    fprintf(stderr, "measure: tau %.3f over %u steps\n", m.tau, m.spec_steps);
    vkd_spec_result_free(&sr);

    /* host scoring of the same walk: read the draft logits of every mask-mode block */
    vkd_tensor *feats;
    REQUIRE(!vkd_tf_features_create(t, g, &feats, &err), "%s", err.msg);
    REQUIRE(!vkd_tf_prompt(t, g, rec, feats, seq, P, NULL, &err), "%s", err.msg);
    float *lg = malloc((size_t)(B - 1) * V * 4);
    int32_t blk[64];
    double sp = 0, srk = 0;
    uint32_t cnt = 0;
    for (uint32_t s0 = P; s0 < n; s0 += B) {
        uint32_t r = n - s0 < B ? n - s0 : B;
        vkd_rec_begin(rec);
        if (s0 > P) REQUIRE(!vkd_dflash_context_record(d, rec, feats, 0, B, &err), "%s", err.msg);
        vkd_tf_block_ids(VKD_TF_MASK, seq, s0, r, B, d->mask_id, blk);
        REQUIRE(!vkd_dflash_block_record(d, rec, blk, &err), "%s", err.msg);
        vkd_rec_read(rec, d->logits, 0, lg, (uint64_t)(B - 1) * V * 4);
        if (s0 + r < n) REQUIRE(!vkd_tf_target_record(t, g, rec, feats, seq, s0, r, &err), "%s", err.msg);
        REQUIRE(!vkd_rec_submit(rec), "submit");
        for (uint32_t i = 0; i + 1 < r; i++) {
            const float *l = lg + (size_t)i * V;
            int32_t gold = seq[s0 + i + 1];
            double mx = l[0], z = 0;
            uint32_t rank = 1;
            for (uint32_t j = 1; j < V; j++) if (l[j] > mx) mx = l[j];
            for (uint32_t j = 0; j < V; j++) {
                z += exp((double)l[j] - mx);
                rank += l[j] > l[gold];
            }
            sp += exp((double)l[gold] - mx) / z;
            srk += rank;
            cnt++;
        }
    }
    CHECK(m.tf_tokens == cnt, "compared tokens %u vs %u", m.tf_tokens, cnt);
    double ep = fabs(m.p_mean - sp / cnt) / (sp / cnt), er = fabs(m.rank_mean - srk / cnt);
    CHECK(ep < 1e-5 && er == 0, "teacher-forced p %.6g vs host %.6g (rel %.3g), rank %.4g vs %.4g", m.p_mean,
          sp / cnt, ep, m.rank_mean, srk / cnt);
    CHECK(srk / cnt > 1, "the changed tokens make some rank > 1 (mean %.3g)", srk / cnt);
    fprintf(stderr, "measure: %u compared tokens, mean p %.4f (rel err %.2g), mean rank %.3f\n", cnt, m.p_mean, ep,
            m.rank_mean);
    vkd_ttt_metrics_free(&m);
    /* without an answer: no teacher-forced metrics */
    REQUIRE(!vkd_ttt_measure(d, rec, prompt, P, NULL, 0, &mo, &m, &err), "%s", err.msg);
    CHECK(m.tf_tokens == 0 && isnan(m.p_mean), "no answer: no teacher forcing");
    vkd_ttt_metrics_free(&m);
    check_adapters(d, rec, prompt, P, seq, n, G);
    free(lg);
    free(seq);
    free(prompt);
    free(gr.ids);
    vkd_tensor_destroy(feats);
    vkd_st_close(sf);
    vkd_dflash_free(d);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
}

int main(void) {
    check_anchors();
    check_rows();
    check_grid_targets();
    check_bootstrap();
    check_measure();
    return vkd_test_result("test_ttt");
}
