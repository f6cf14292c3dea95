/* test_attention: vkd_op_attention against the double reference of ref_layer.c: decode
 * (one query row vs long caches), DFlash-style non-causal blocks, causal prefill, GQA group
 * sizes 1..8, head_dim 16..256, f32 and f16 caches (the reference reads the same f16-rounded
 * values), sentinels after the output; every case with caches from vkd_tensor_create_2d
 * (storage buffers) and from vkd_tensor_create_kv (read through texel views on lavapipe).
 * Error bound: |o - ref| <= 2e-5 * max|v| (absolute, per element): o is a convex
 * combination of value rows, and the f32 dot products, exp2 and sums give about 1e-6 of
 * relative weight error. Exact checks: a single key returns its value row bit for bit, and
 * causal row 0 with q_pos0 = 0 sees only key 0.
 * Split-K (vkd_op_attention_split): every case again on contexts whose profile forces 2, 3 and
 * 7 splits (VKDRAFT_ATTN_SPLITS; rows that see fewer keys than splits leave empty splits),
 * the merge dispatch seen in the op profile, the count vkd_op_attention_splits reports, and a
 * part too small for the forced count (fewer splits, the same bound). */
#include <stdlib.h>
#include <string.h>

#include "ref_layer.h"
#include "vkd_ops.h"
#include "op_util.h"
#include "vkd_test.h"

static unsigned long long seed = 0xa77e;
static const float SENTINEL = -4242.5f;
#define NSENT 8

static void upload(vkd_tensor *t, uint64_t off, const void *src, uint64_t bytes) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_upload(t, off, src, bytes, &err), "%s", err.msg);
}

/* caches made by vkd_tensor_create_kv: read through texel views where the profile has
 * kv_texel (lavapipe), else the same storage buffers as vkd_tensor_create_2d's */
static bool kv_caches;
/* > 0: through vkd_op_attention_split with partials for this many splits (the context's
 * profile forces its own count; part_splits below it: a smaller part) */
static uint32_t part_splits;

typedef struct attn_case {
    uint32_t q_rows, kv_len, n_q, n_kv, hd, q_pos0;
    bool causal;
    vkd_dtype cache;
    double q_sd;               /* query spread: larger makes the softmax peakier */
    uint32_t cap_extra;        /* cache rows beyond kv_len (garbage that must be ignored) */
} attn_case;

/* Returns the output (caller frees) so callers can run exact checks too. */
static float *run_case(vkd_ctx *ctx, vkd_rec *rec, const attn_case *c, float **v_out) {
    uint32_t qc = c->n_q * c->hd, kc = c->n_kv * c->hd, cap = c->kv_len + c->cap_extra;
    uint64_t nq = (uint64_t)c->q_rows * qc, nk = (uint64_t)cap * kc;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *want = malloc(nq * 4), *got = malloc((nq + NSENT) * 4);
    for (uint64_t i = 0; i < nq; i++) q[i] = (float)(c->q_sd * vkd_test_rand_normal(&seed));
    for (uint64_t i = 0; i < nk; i++) {
        k[i] = (float)vkd_test_rand_normal(&seed);
        v[i] = (float)vkd_test_rand_normal(&seed);
    }
    for (uint64_t i = (uint64_t)c->kv_len * kc; i < nk; i++) k[i] = v[i] = 1e30f; /* beyond kv_len */
    vkd_tensor *tq = op_tensor(ctx, VKD_DTYPE_F32, c->q_rows, qc, "q");
    vkd_tensor *to = op_tensor(ctx, VKD_DTYPE_F32, 1, nq + NSENT, "o");
    vkd_tensor *tk, *tv;
    if (kv_caches) {
        vkd_error err = {0};
        REQUIRE(!vkd_tensor_create_kv(ctx, c->cache, cap, kc, "k_cache", &tk, &err) &&
                !vkd_tensor_create_kv(ctx, c->cache, cap, kc, "v_cache", &tv, &err), "%s", err.msg);
        CHECK(!vkd_ctx_profile(ctx)->kv_texel || (tk->chunks[0].view && tv->chunks[0].view),
              "a KV cache on a kv_texel profile without its texel view");
    } else {
        tk = op_tensor(ctx, c->cache, cap, kc, "k_cache");
        tv = op_tensor(ctx, c->cache, cap, kc, "v_cache");
    }
    upload(tq, 0, q, nq * 4);
    if (c->cache == VKD_DTYPE_F16) {
        uint16_t *h = malloc(nk * 2);
        for (int t = 0; t < 2; t++) {
            float *x = t ? v : k;
            for (uint64_t i = 0; i < nk; i++) {
                h[i] = vkd_f32_to_f16(x[i]);
                x[i] = vkd_f16_to_f32(h[i]);
            }
            upload(t ? tv : tk, 0, h, nk * 2);
        }
        free(h);
    } else {
        upload(tk, 0, k, nk * 4);
        upload(tv, 0, v, nk * 4);
    }
    float sent[NSENT];
    for (int i = 0; i < NSENT; i++) sent[i] = SENTINEL;
    upload(to, nq * 4, sent, sizeof sent);
    float scale = 1.0f / sqrtf((float)c->hd);
    ref_attention(want, q, k, v, kc, c->q_rows, c->kv_len, c->n_q, c->n_kv, c->hd, c->q_pos0,
                  c->causal, scale);
    vkd_tensor *part = NULL;
    if (part_splits) {
        uint64_t want_floats = vkd_op_attention_part_floats(ctx, c->q_rows, c->kv_len, c->n_q, c->n_kv, c->hd);
        uint64_t one = (uint64_t)c->q_rows * c->n_q * (c->hd + 4);
        CHECK(c->kv_len < vkd_ctx_profile(ctx)->attn_splits ||
                  want_floats == vkd_ctx_profile(ctx)->attn_splits * one,
              "part floats %llu for %u forced splits of %llu", (unsigned long long)want_floats,
              vkd_ctx_profile(ctx)->attn_splits, (unsigned long long)one);
        uint32_t forced = vkd_ctx_profile(ctx)->attn_splits, s = vkd_op_attention_splits(ctx, c->q_rows, c->kv_len,
                                                                                        c->n_q, c->n_kv, c->hd);
        CHECK(s == (forced < c->kv_len ? forced : c->kv_len), "%u splits reported for %u forced over %u keys", s,
              forced, c->kv_len);
        part = op_tensor(ctx, VKD_DTYPE_F32, part_splits, one, "part");
    }
    vkd_rec_begin(rec);
    if (part)
        vkd_op_attention_split(rec, to, part, tq, tk, tv, c->q_rows, c->kv_len, c->n_q, c->n_kv,
                               c->hd, c->q_pos0, c->causal, scale);
    else
        vkd_op_attention(rec, to, tq, tk, tv, c->q_rows, c->kv_len, c->n_q, c->n_kv, c->hd,
                         c->q_pos0, c->causal, scale);
    vkd_rec_read(rec, to, 0, got, (nq + NSENT) * 4);
    vkd_result r = vkd_rec_submit(rec);
    REQUIRE(r == VKD_OK, "submit: %s", vkd_rec_error(rec)->msg);

    double vmax = 0, worst = 0;
    for (uint64_t i = 0; i < (uint64_t)c->kv_len * kc; i++) vmax = fmax(vmax, fabs(v[i]));
    int nonfinite = 0, sent_bad = 0;
    for (uint64_t i = 0; i < nq; i++) {
        if (!isfinite(got[i])) { nonfinite++; continue; }
        double e = fabs(got[i] - want[i]) / vmax;
        if (e > worst) worst = e;
    }
    for (int i = 0; i < NSENT; i++) sent_bad += got[nq + i] != SENTINEL;
    char what[160];
    char split[32] = "";
    if (part) snprintf(split, sizeof split, "split %u ", part_splits);
    snprintf(what, sizeof what, "attention %s%s%s rows %u kv %u heads %u/%u hd %u pos0 %u %s", split,
             kv_caches && tk->chunks[0].view ? "texel " : "", vkd_dtype_name(c->cache), c->q_rows, c->kv_len, c->n_q, c->n_kv, c->hd, c->q_pos0,
             c->causal ? "causal" : "full");
    CHECK(!nonfinite, "%s: %d non-finite outputs", what, nonfinite);
    CHECK(!sent_bad, "%s: %d sentinels overwritten", what, sent_bad);
    CHECK(worst <= 2e-5, "%s: worst error %.3g > 2e-5 (relative to max|v|)", what, worst);
    fprintf(stderr, "  %-70s worst err %.3g\n", what, worst);
    vkd_tensor_destroy(tq); vkd_tensor_destroy(to); vkd_tensor_destroy(tk); vkd_tensor_destroy(tv);
    vkd_tensor_destroy(part);
    free(q); free(k); free(want);
    if (v_out) *v_out = v;
    else free(v);
    return got;
}

int main(void) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_result r = vkd_ctx_create(NULL, &ctx, &err);
    if (r == VKD_ERR_DEVICE) {
        fprintf(stderr, "no Vulkan device: %s\n", err.msg);
        return 77;
    }
    REQUIRE(r == VKD_OK, "%s", err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    uint32_t nval;

    static const attn_case cases[] = {
        /* decode: Qwen3-0.6B, Qwen3-4B (f16 cache, long), Llama-3.2-1B */
        {1, 512, 16, 8, 128, 511, true, VKD_DTYPE_F32, 1.0, 5},
        {1, 4099, 32, 8, 128, 4098, true, VKD_DTYPE_F16, 1.0, 0},
        {1, 1001, 32, 8, 64, 1000, true, VKD_DTYPE_F32, 3.0, 2},
        /* DFlash block: 16 rows, non-causal, sees context + block */
        {16, 316, 32, 8, 64, 300, false, VKD_DTYPE_F32, 1.0, 0},
        {16, 77, 16, 8, 128, 61, false, VKD_DTYPE_F16, 2.0, 3},
        /* causal prefill and verification blocks */
        {64, 64, 16, 8, 128, 0, true, VKD_DTYPE_F16, 1.0, 0},
        {37, 100, 8, 2, 64, 63, true, VKD_DTYPE_F32, 1.0, 1},
        /* head dims and group sizes */
        {5, 37, 4, 1, 16, 32, true, VKD_DTYPE_F32, 1.0, 0},
        {3, 29, 6, 3, 20, 10, true, VKD_DTYPE_F16, 1.0, 4},
        {2, 50, 8, 8, 256, 48, true, VKD_DTYPE_F32, 1.0, 0},
        {4, 33, 16, 2, 36, 0, false, VKD_DTYPE_F32, 1.0, 0},
        /* peaky softmax (large scores) */
        {3, 200, 4, 2, 64, 197, true, VKD_DTYPE_F32, 8.0, 0},
    };
    for (int kv = 0; kv < 2; kv++) {
        kv_caches = kv;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) free(run_case(ctx, rec, &cases[i], NULL));
    }
    kv_caches = false;

    /* split-K: the same cases on contexts that force 2, 3 and 7 splits, with partials for
     * that many and (7) for 4 */
    static const uint32_t forced[][2] = {{2, 2}, {3, 3}, {7, 7}, {7, 4}};
    for (size_t f = 0; f < sizeof forced / sizeof forced[0]; f++) {
        char val[8];
        snprintf(val, sizeof val, "%u", forced[f][0]);
        setenv("VKDRAFT_ATTN_SPLITS", val, 1);
        vkd_ctx_options o = {.profile = true};
        vkd_ctx *sc;
        vkd_rec *srec;
        REQUIRE(!vkd_ctx_create(&o, &sc, &err) && !vkd_rec_create(sc, &srec, &err), "%s", err.msg);
        CHECK(vkd_ctx_profile(sc)->attn_splits == forced[f][0], "VKDRAFT_ATTN_SPLITS=%s not read", val);
        part_splits = forced[f][1];
        for (int kv = 0; kv < 2; kv++) {
            kv_caches = kv;
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) free(run_case(sc, srec, &cases[i], NULL));
        }
        const vkd_profile_entry *pe;
        uint32_t np = vkd_ctx_profile_entries(sc, &pe), merges = 0;
        for (uint32_t i = 0; i < np; i++) merges += strcmp(pe[i].name, "attention_merge") == 0 ? pe[i].calls : 0;
        CHECK(!vkd_ctx_info(sc)->timestamps || merges == 2 * sizeof cases / sizeof cases[0],
              "%u merge dispatches for %zu split cases", merges, 2 * sizeof cases / sizeof cases[0]);
        nval = vkd_ctx_validation_count(sc);
        CHECK(nval == 0, "split %u: %u validation messages, first: %s", forced[f][0], nval,
              vkd_ctx_validation_first(sc));
        vkd_rec_destroy(srec);
        vkd_ctx_destroy(sc);
    }
    unsetenv("VKDRAFT_ATTN_SPLITS");
    part_splits = 0;
    kv_caches = false;

    /* a single key: the output is that key's value row, exactly */
    {
        attn_case c = {3, 1, 8, 2, 128, 0, false, VKD_DTYPE_F32, 2.0, 2};
        float *v, *o = run_case(ctx, rec, &c, &v);
        int bad = 0;
        for (uint32_t i = 0; i < c.q_rows; i++)
            for (uint32_t h = 0; h < c.n_q; h++)
                bad += memcmp(o + ((uint64_t)i * c.n_q + h) * c.hd, v + (h / 4) * c.hd, c.hd * 4) != 0;
        CHECK(!bad, "single key: %d (row, head) outputs differ from the value row", bad);
        free(o); free(v);
    }
    /* causal row 0 at q_pos0 = 0 sees only key 0 (later keys ignored) */
    {
        attn_case c = {4, 10, 4, 4, 64, 0, true, VKD_DTYPE_F16, 2.0, 0};
        float *v, *o = run_case(ctx, rec, &c, &v);
        int bad = 0;
        for (uint32_t h = 0; h < c.n_q; h++) bad += memcmp(o + h * c.hd, v + h * c.hd, c.hd * 4) != 0;
        CHECK(!bad, "causal row 0: %d heads differ from value row 0", bad);
        free(o); free(v);
    }
    /* invalid arguments are errors */
    {
        vkd_tensor *a = op_tensor(ctx, VKD_DTYPE_F32, 2, 64, "a"), *kk = op_tensor(ctx, VKD_DTYPE_F32, 4, 64, "k");
        vkd_rec_begin(rec);
        vkd_result rr = vkd_op_attention(rec, a, a, kk, kk, 2, 4, 1, 1, 64, 0, true, 0.125f);
        CHECK(rr == VKD_ERR_INVALID, "attention with o == q accepted (%d)", rr);
        vkd_rec_submit(rec);
        vkd_rec_begin(rec);
        vkd_tensor *b = op_tensor(ctx, VKD_DTYPE_F32, 2, 64, "b");
        rr = vkd_op_attention(rec, b, a, kk, kk, 2, 5, 1, 1, 64, 0, true, 0.125f);
        CHECK(rr == VKD_ERR_RANGE, "attention past the cache accepted (%d)", rr);
        vkd_rec_submit(rec);
        vkd_tensor_destroy(a); vkd_tensor_destroy(b); vkd_tensor_destroy(kk);
    }

    nval = vkd_ctx_validation_count(ctx);
    CHECK(nval == 0, "%u validation messages, first: %s", nval, vkd_ctx_validation_first(ctx));
    vkd_rec_destroy(rec);
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_attention");
}
