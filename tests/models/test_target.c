/* test_target: the Vulkan Qwen3 / Llama 3 forward against the golden fixtures written by
 * tools/reference/make_fixtures.py (an independent PyTorch implementation computing in
 * float64 on the stored weights).
 *
 * Bounds: vkdraft computes in f32 on the same bf16/f16/f32 weight values, so the only
 * difference from the reference is f32 rounding through a few layers: we require
 * max |vk - ref| <= 2e-4 * (1 + max |ref|) for logits and hidden states (observed errors
 * are printed; they are around 1e-6 relative). Greedy continuations must be identical
 * (the fixture generator keeps every top-1/top-2 logit gap >= 0.05). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture_util.h"
#include "safetensors.h"
#include "vkd_generate.h"
#include "vkd_target.h"
#include "vkd_test.h"

static const double bound = 2e-4;
static char fixtures[4096];

typedef struct expected {
    vkd_st_file *f;
} expected;


static vkd_ctx *make_ctx(uint64_t max_binding, bool row_major) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_ctx_options o = {.max_binding_bytes = max_binding, .row_major_weights = row_major};
    REQUIRE(!vkd_ctx_create(&o, &ctx, &err), "%s", err.msg);
    return ctx;
}

/* Runs ids (n) through t in steps of at most `step` rows with logits for every row and
 * taps of every layer; fills logits [n x V] and hidden [L][n x H]. */
static void run_all(vkd_target *t, vkd_rec *rec, const int32_t *ids, uint32_t n, uint32_t step,
                    float *logits, float *hidden) {
    vkd_error err = {0};
    uint32_t L = t->n_layers, H = t->hidden, V = t->vocab;
    uint32_t *taps = malloc(L * sizeof *taps);
    for (uint32_t i = 0; i < L; i++) taps[i] = i;
    vkd_tensor *feat;
    REQUIRE(!vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, step, (uint64_t)L * H, "features", &feat, &err), "%s", err.msg);
    float *rows = malloc((size_t)step * L * H * 4);
    for (uint32_t done = 0; done < n;) {
        uint32_t m = n - done < step ? n - done : step;
        vkd_target_step s = {.ids = ids + done, .m = m, .logits_rows = logits ? m : 0,
                             .tap_layers = taps, .ntaps = hidden ? L : 0, .features = feat};
        vkd_rec_begin(rec);
        REQUIRE(!vkd_target_step_record(t, rec, &s, &err), "%s", err.msg);
        if (logits) vkd_rec_read(rec, t->logits, 0, logits + (size_t)done * V, (uint64_t)m * V * 4);
        if (hidden) vkd_rec_read(rec, feat, 0, rows, (uint64_t)m * L * H * 4);
        REQUIRE(!vkd_rec_submit(rec), "%s", vkd_rec_error(rec)->msg);
        if (hidden)
            for (uint32_t l = 0; l < L; l++)
                for (uint32_t r = 0; r < m; r++)
                    memcpy(hidden + ((size_t)l * n + done + r) * H, rows + ((size_t)r * L + l) * H, H * 4);
        done += m;
    }
    vkd_tensor_destroy(feat);
    free(rows);
    free(taps);
}

static void check_fixture_l(const char *name, uint64_t max_binding, vkd_dtype kv, bool row_major) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/%s/model", fixtures, name);
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", fixtures, name);
    vkd_error err = {0};
    expected e;
    REQUIRE(!vkd_st_open(path, &e.f, &err), "%s", err.msg);
    vkd_ctx *ctx = make_ctx(max_binding, row_major);
    vkd_target *t;
    vkd_target_options to = {.ctx_len = 64, .kv_dtype = kv};
    REQUIRE(!vkd_target_load(ctx, dir, &to, &t, &err), "%s: %s", name, err.msg);
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    const vkd_st_tensor *ids_t = fixture_get(e.f, "input_ids");
    uint32_t P = (uint32_t)ids_t->numel, V = t->vocab, H = t->hidden, L = t->n_layers;
    const int32_t *ids = ids_t->data;
    char what[160];
    snprintf(what, sizeof what, "%s%s%s%s", name, max_binding ? " (split bindings)" : "",
             kv == VKD_DTYPE_F16 ? " (f16 KV)" : "", row_major ? " (row-major)" : "");
    /* f16 KV rounds K and V to 11 bits: the bound loosens to 5e-3 there */
    double b = kv == VKD_DTYPE_F16 ? 5e-3 : bound;

    /* 1. whole prompt: logits and every layer's hidden state */
    float *logits = malloc((size_t)P * V * 4), *hidden = malloc((size_t)L * P * H * 4);
    uint32_t step = t->logit_rows < t->max_rows ? t->logit_rows : t->max_rows;
    run_all(t, rec, ids, P, step, logits, hidden);
    double el = fixture_rel_err(logits, fixture_get(e.f, "logits")->data, (size_t)P * V);
    CHECK(el <= b, "%s: logits error %.3g > %.3g", what, el, b);
    double eh = 0;
    for (uint32_t l = 0; l < L; l++) {
        char hn[32];
        snprintf(hn, sizeof hn, "hidden.%u", l);
        eh = fmax(eh, fixture_rel_err(hidden + (size_t)l * P * H, fixture_get(e.f, hn)->data, (size_t)P * H));
    }
    CHECK(eh <= b, "%s: hidden states error %.3g > %.3g", what, eh, b);

    /* 2. cached: first P-5 tokens, then the last 5 against the cache */
    const vkd_st_tensor *cl = fixture_get(e.f, "cached.logits");
    uint32_t nc = (uint32_t)cl->shape[0];
    REQUIRE(!vkd_target_crop(t, 0, &err), "%s", err.msg);
    run_all(t, rec, ids, P - nc, step, NULL, NULL);
    float *cached = malloc((size_t)nc * V * 4), *ch = malloc((size_t)L * nc * H * 4);
    run_all(t, rec, ids + P - nc, nc, step, cached, ch);
    double ec = fixture_rel_err(cached, cl->data, (size_t)nc * V);
    char hn[64];
    snprintf(hn, sizeof hn, "cached.hidden.%u", L - 1);
    double ech = fixture_rel_err(ch + (size_t)(L - 1) * nc * H, fixture_get(e.f, hn)->data, (size_t)nc * H);
    CHECK(ec <= b && ech <= b, "%s: cached forward differs: logits %.3g, hidden %.3g", what, ec, ech);
    /* cached logits equal the uncached ones for the same positions */
    double ecu = fixture_rel_err(cached, logits + (size_t)(P - nc) * V, (size_t)nc * V);
    CHECK(ecu <= b, "%s: cached vs uncached %.3g", what, ecu);

    /* 3. crop: whole prompt, crop to crop_to, then new tokens */
    const vkd_st_tensor *cids = fixture_get(e.f, "crop.input_ids"), *clog = fixture_get(e.f, "crop.logits");
    uint32_t crop_to = (uint32_t)(P - (uint32_t)0);
    const char *ct = vkd_st_metadata_get(e.f, "crop_to");
    REQUIRE(ct, "crop_to metadata missing");
    crop_to = (uint32_t)atoi(ct);
    uint32_t nn = (uint32_t)cids->numel;
    REQUIRE(!vkd_target_crop(t, 0, &err), "%s", err.msg);
    run_all(t, rec, ids, P, step, NULL, NULL);
    REQUIRE(!vkd_target_crop(t, crop_to, &err), "%s", err.msg);
    float *crop = malloc((size_t)nn * V * 4), *cropsh = malloc((size_t)L * nn * H * 4);
    run_all(t, rec, cids->data, nn, step, crop, cropsh);
    double ek = fixture_rel_err(crop, clog->data, (size_t)nn * V);
    snprintf(hn, sizeof hn, "crop.hidden.%u", L - 1);
    double ekh = fixture_rel_err(cropsh + (size_t)(L - 1) * nn * H, fixture_get(e.f, hn)->data, (size_t)nn * H);
    CHECK(ek <= b && ekh <= b, "%s: crop then recompute differs: logits %.3g, hidden %.3g", what, ek, ekh);
    CHECK(vkd_target_crop(t, t->len + 1, &err) == VKD_ERR_RANGE, "crop beyond the cache accepted");

    /* 4. greedy continuation, identical ids */
    const vkd_st_tensor *g = fixture_get(e.f, "greedy");
    vkd_generate_options go = {.max_new_tokens = (uint32_t)g->numel};
    vkd_generate_result res;
    REQUIRE(!vkd_generate(t, rec, ids, P, &go, &res, &err), "%s", err.msg);
    bool same = res.n == g->numel && memcmp(res.ids, g->data, g->numel * 4) == 0;
    CHECK(same, "%s: greedy continuation differs from the reference", what);
    if (!same) {
        fprintf(stderr, "  got: ");
        for (uint32_t i = 0; i < res.n; i++) fprintf(stderr, "%d ", res.ids[i]);
        fprintf(stderr, "\n  want: ");
        for (uint64_t i = 0; i < g->numel; i++) fprintf(stderr, "%d ", ((const int32_t *)g->data)[i]);
        fprintf(stderr, "\n");
    }
    free(res.ids);
    fprintf(stderr, "  %-44s logits %.2g hidden %.2g cached %.2g crop %.2g greedy %s\n", what, el, eh,
            fmax(ec, ech), fmax(ek, ekh), same ? "identical" : "DIFFERENT");

    /* 5. bad input: ids outside the vocabulary, a sequence longer than the context */
    int32_t bad[2] = {0, (int32_t)V};
    vkd_target_step s = {.ids = bad, .m = 2};
    REQUIRE(!vkd_target_crop(t, 0, &err), "%s", err.msg);
    vkd_rec_begin(rec);
    CHECK(vkd_target_step_record(t, rec, &s, &err) == VKD_ERR_RANGE && strstr(err.msg, "vocabulary"),
          "id %u accepted (%s)", V, err.msg);
    vkd_rec_submit(rec);
    int32_t *many = calloc(t->ctx_len + 1, 4);
    CHECK(vkd_target_prefill(t, rec, many, t->ctx_len + 1, NULL, &err) == VKD_ERR_RANGE &&
              strstr(err.msg, "context"), "over-long prompt accepted (%s)", err.msg);
    free(many);

    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    free(logits); free(hidden); free(cached); free(ch); free(crop); free(cropsh);
    vkd_rec_destroy(rec);
    vkd_target_free(t);
    vkd_ctx_destroy(ctx);
    vkd_st_close(e.f);
}

static void check_fixture(const char *name, uint64_t max_binding, vkd_dtype kv) {
    check_fixture_l(name, max_binding, kv, false);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    REQUIRE(a && b, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

/* A broken model folder gives one clear error, never a crash. */
static void check_bad_folders(void) {
    char tmp[] = "/tmp/vkd-badmodel-XXXXXX";
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    char src[4200], dst[4200];
    vkd_ctx *ctx = make_ctx(0, false);
    vkd_error err = {0};
    vkd_target *t = NULL;
    vkd_target_options to = {.ctx_len = 32};
    /* missing weights */
    snprintf(src, sizeof src, "%s/qwen3-tied-f32/model/config.json", fixtures);
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    copy_file(src, dst);
    CHECK(vkd_target_load(ctx, tmp, &to, &t, &err) != VKD_OK && strstr(err.msg, "safetensors"),
          "folder without weights: '%s'", err.msg);
    fprintf(stderr, "  missing weights: %s\n", err.msg);
    /* weights whose shapes disagree with config.json: another model's weights */
    snprintf(src, sizeof src, "%s/llama3-f16/model/model.safetensors", fixtures);
    snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
    copy_file(src, dst);
    CHECK(vkd_target_load(ctx, tmp, &to, &t, &err) != VKD_OK, "mismatched weights accepted");
    fprintf(stderr, "  mismatched weights: %s\n", err.msg);
    /* missing config */
    unlink(dst);
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    unlink(dst);
    CHECK(vkd_target_load(ctx, tmp, &to, &t, &err) != VKD_OK && strstr(err.msg, "config.json"),
          "folder without config.json: '%s'", err.msg);
    rmdir(tmp);
    CHECK(t == NULL, "a target was returned on failure");
    vkd_ctx_destroy(ctx);
}

/* A NaN or Inf anywhere in any weight fails the load with the tensor's name: a copy of the
 * fixture `fx` with value `at` (-1: the last) of tensor `name` set to the bit pattern `bits`
 * (f32 bits; the top 16 for bf16; f16 bits for f16). max_binding > 0 splits large weights
 * across bindings, so values in the last chunk are covered. */
static void check_nonfinite(const char *fx, const char *name, long at, uint32_t bits, uint16_t f16_bits,
                            uint64_t max_binding) {
    char tmp[] = "/tmp/vkd-nanmodel-XXXXXX", src[8400], dst[8400];
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    snprintf(src, sizeof src, "%s/%s/model", fixtures, fx);
    DIR *dir = opendir(src);
    REQUIRE(dir, "%s", src);
    struct dirent *e;
    bool patched = false;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        snprintf(src, sizeof src, "%s/%s/model/%s", fixtures, fx, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", tmp, e->d_name);
        copy_file(src, dst);
        if (!strstr(e->d_name, ".safetensors") || strstr(e->d_name, ".json")) continue;
        vkd_st_file *f;
        vkd_error err = {0};
        REQUIRE(!vkd_st_open(dst, &f, &err), "%s", err.msg);
        const vkd_st_tensor *t = vkd_st_find(f, name);
        size_t off = 0, width = 0;
        if (t) {
            width = t->dtype == VKD_DTYPE_F32 ? 4 : 2;
            off = t->offset + (at < 0 ? t->numel - 1 : (size_t)at) * width;
        }
        uint8_t v[4];
        if (width == 4) memcpy(v, &bits, 4);
        else if (t && t->dtype == VKD_DTYPE_BF16) { uint16_t h = (uint16_t)(bits >> 16); memcpy(v, &h, 2); }
        else memcpy(v, &f16_bits, 2);
        vkd_st_close(f);
        if (!t) continue;
        FILE *w = fopen(dst, "r+b");
        REQUIRE(w && fseek(w, (long)off, SEEK_SET) == 0 && fwrite(v, 1, width, w) == width, "patch %s", dst);
        fclose(w);
        patched = true;
    }
    closedir(dir);
    REQUIRE(patched, "%s: tensor %s not found", fx, name);
    vkd_ctx *ctx = make_ctx(max_binding, false);
    vkd_error err = {0};
    vkd_target *t = NULL;
    vkd_target_options to = {.ctx_len = 32};
    vkd_result r = vkd_target_load(ctx, tmp, &to, &t, &err);
    CHECK(r == VKD_ERR_FORMAT && strstr(err.msg, name) && strstr(err.msg, "non-finite"),
          "%s: %s[%ld] = 0x%08x: want a load error naming the tensor, got %s '%s'", fx, name, at, bits,
          vkd_result_name(r), err.msg);
    CHECK(t == NULL, "a target was returned on failure");
    vkd_target_free(t);
    vkd_ctx_destroy(ctx);
    dir = opendir(tmp);
    while (dir && (e = readdir(dir)))
        if (e->d_name[0] != '.') {
            snprintf(dst, sizeof dst, "%s/%s", tmp, e->d_name);
            unlink(dst);
        }
    if (dir) closedir(dir);
    rmdir(tmp);
}

int main(void) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    REQUIRE(root, "VKDRAFT_SOURCE_ROOT is not set (run through meson test)");
    snprintf(fixtures, sizeof fixtures, "%s/tests/models/fixtures", root);
    const char *names[] = {"qwen3-tied-f32", "qwen3-untied-bf16-2shards", "llama3-f16", "dflash/target"};
    for (int i = 0; i < 4; i++) check_fixture(names[i], 0, VKD_DTYPE_F32);
    /* weights split across bindings (embedding and lm_head in several chunks) */
    check_fixture("qwen3-tied-f32", 32768, VKD_DTYPE_F32);
    check_fixture("qwen3-untied-bf16-2shards", 32768, VKD_DTYPE_F32);
    check_fixture("llama3-f16", 0, VKD_DTYPE_F16);
    /* row-major weights whatever the profile prefers: greedy steps take matmul + argmax
     * where texel-block LM heads take the fused vkd_op_matmul_argmax */
    check_fixture_l("qwen3-untied-bf16-2shards", 0, VKD_DTYPE_F32, true);
    check_fixture_l("qwen3-tied-f32", 32768, VKD_DTYPE_F32, true);
    check_bad_folders();
    /* non-finite weights (NaN 0x7fc00000, +Inf 0x7f800000, -Inf 0xff800000; f16 NaN 0x7e00,
     * Inf 0x7c00): f32, bf16 over two shards, f16; first and last values; chunked and not */
    check_nonfinite("qwen3-tied-f32", "model.embed_tokens.weight", -1, 0x7fc00000u, 0, 32768);
    check_nonfinite("qwen3-tied-f32", "model.layers.1.mlp.down_proj.weight", 0, 0xff800000u, 0, 0);
    check_nonfinite("qwen3-untied-bf16-2shards", "lm_head.weight", -1, 0x7f800000u, 0, 32768);
    check_nonfinite("qwen3-untied-bf16-2shards", "model.norm.weight", 0, 0x7fc00000u, 0, 0);
    check_nonfinite("llama3-f16", "model.layers.0.self_attn.q_proj.weight", 5, 0, 0x7c00, 0);
    check_nonfinite("llama3-f16", "model.embed_tokens.weight", -1, 0, 0x7e00, 32768);
    return vkd_test_result("test_target");
}
