/* test_lora: LoRA adapters in PEFT's layout. Creation (modules matched by target suffix,
 * shapes from the draft dims, A in [-1/sqrt(in), 1/sqrt(in)) and seeded per module path,
 * B = 0), save + load round trip (bit-identical, f32), bf16 load, device upload/download,
 * and bad adapters (rank, targets, shapes, missing/extra tensors, non-LORA config) that
 * must fail with one clear message naming the file and field or tensor.
 * With an argument DIR it saves its reference adapter there (A from seed 1234, B[k] =
 * sin(0.37 k + 0.5 i) / 8 for module i) for test_lora_peft.py to read with Python. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_write.h"
#include "vkd_lora.h"
#include "vkd_test.h"

static const vkd_lora_dims dims = {.hidden = 24, .n_layers = 2, .n_q = 4, .n_kv = 2, .head_dim = 8,
                                   .ffn = 40, .ntaps = 3};

static void fill_b(vkd_lora *l) {
    for (uint32_t i = 0; i < l->nmodules; i++)
        for (uint64_t k = 0; k < (uint64_t)l->modules[i].out * l->rank; k++)
            l->modules[i].b[k] = (float)(sin(0.37 * (double)k + 0.5 * i) / 8.0);
}

static bool same(const vkd_lora *x, const vkd_lora *y) {
    if (x->nmodules != y->nmodules || x->rank != y->rank || x->alpha != y->alpha || x->scale != y->scale)
        return false;
    for (uint32_t i = 0; i < x->nmodules; i++) {
        const vkd_lora_module *a = &x->modules[i], *b = &y->modules[i];
        if (strcmp(a->path, b->path) || a->in != b->in || a->out != b->out ||
            memcmp(a->a, b->a, (size_t)x->rank * a->in * 4) || memcmp(a->b, b->b, (size_t)a->out * x->rank * 4))
            return false;
    }
    return true;
}

static char tmpdir[256];

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

/* An adapter folder with the given config text and tensors; expects load to fail with a
 * message containing `want`. */
static void expect_bad(const char *what, const char *config, const vkd_st_out *t, size_t n, const char *want) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    mkdir(dir, 0777);
    vkd_error err = {0};
    write_file(dir, "adapter_config.json", config);
    char p[600];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    REQUIRE(!vkd_st_write(p, t, n, NULL, &err), "%s", err.msg);
    vkd_lora *l = NULL;
    vkd_result r = vkd_lora_load(dir, &dims, &l, &err);
    CHECK(r != VKD_OK && !l, "%s: bad adapter accepted", what);
    CHECK(r == VKD_OK || strstr(err.msg, want), "%s: message '%s' lacks '%s'", what, err.msg, want);
    CHECK(!strchr(err.msg, '\n'), "%s: message spans lines", what);
    fprintf(stderr, "  rejected (%s): %s\n", what, err.msg);
    vkd_lora_free(l);
}

static void bad_adapters(void) {
    float a[4 * 72] = {0}, b[40 * 4] = {0}, a2[4 * 24] = {0}, b2[8 * 16] = {0};
    /* a valid fc-only adapter of rank 4: fc is in 72 (3 taps x 24), out 24 */
    vkd_st_out ok[2] = {{"base_model.model.fc.lora_A.weight", VKD_DTYPE_F32, 2, {4, 72}, a},
                        {"base_model.model.fc.lora_B.weight", VKD_DTYPE_F32, 2, {24, 4}, b}};
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc\"], "
                      "\"bias\": \"none\", \"lora_dropout\": 0.0}";
    {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/good", tmpdir);
        mkdir(dir, 0777);
        write_file(dir, "adapter_config.json", cfg);
        char p[600];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
        vkd_error err = {0};
        REQUIRE(!vkd_st_write(p, ok, 2, NULL, &err), "%s", err.msg);
        vkd_lora *l = NULL;
        CHECK(!vkd_lora_load(dir, &dims, &l, &err), "hand-made fc adapter: %s", err.msg);
        CHECK(l && l->nmodules == 1 && l->scale == 2.0f, "hand-made fc adapter read wrong");
        vkd_lora_free(l);
    }
    expect_bad("rank mismatch", "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"target_modules\": [\"fc\"]}",
               ok, 2, "base_model.model.fc.lora_A.weight' has shape [4, 72], expected [8, 72]");
    expect_bad("unknown target", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc\", \"c_attn\"]}",
               ok, 2, "target_modules entry 'c_attn'");
    expect_bad("missing tensor", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc\", \"q_proj\"]}",
               ok, 2, "tensor 'base_model.model.layers.0.self_attn.q_proj.lora_A.weight' missing");
    vkd_st_out extra[4] = {ok[0], ok[1],
                           {"base_model.model.layers.2.self_attn.k_proj.lora_A.weight", VKD_DTYPE_F32, 2, {4, 24}, a2},
                           {"base_model.model.layers.2.self_attn.k_proj.lora_B.weight", VKD_DTYPE_F32, 2, {16, 4}, b2}};
    expect_bad("extra tensor (deeper draft)", cfg, extra, 4,
               "'base_model.model.layers.2.self_attn.k_proj.lora_A.weight' is not a LoRA weight");
    expect_bad("not LoRA", "{\"peft_type\": \"IA3\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc\"]}", ok, 2,
               "peft_type");
    expect_bad("lora bias", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc\"], \"bias\": \"all\"}",
               ok, 2, "bias");
    expect_bad("regex targets", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*fc\"}",
               ok, 2, "target_modules");
    expect_bad("rank 0", "{\"peft_type\": \"LORA\", \"r\": 0, \"lora_alpha\": 8, \"target_modules\": [\"fc\"]}", ok, 2,
               "adapter_config.json: r must be");
    expect_bad("broken json", "{\"peft_type\": \"LORA\", ", ok, 2, "adapter_config.json");
    float nan_a[4 * 72] = {0};
    nan_a[5] = NAN;
    vkd_st_out withnan[2] = {{"base_model.model.fc.lora_A.weight", VKD_DTYPE_F32, 2, {4, 72}, nan_a}, ok[1]};
    expect_bad("NaN weight", cfg, withnan, 2, "non-finite");
}

int main(int argc, char **argv) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vkd_test_lora.XXXXXX");
    REQUIRE(mkdtemp(tmpdir), "mkdtemp");
    vkd_error err = {0};
    const char *targets[] = {"fc", "k_proj", "v_proj"};
    vkd_lora *l;
    REQUIRE(!vkd_lora_create(&dims, targets, 3, 4, 16.0f, 1234, "tiny-draft", &l, &err), "%s", err.msg);
    static const char *paths[] = {"fc", "layers.0.self_attn.k_proj", "layers.0.self_attn.v_proj",
                                  "layers.1.self_attn.k_proj", "layers.1.self_attn.v_proj"};
    static const uint32_t ins[] = {72, 24, 24, 24, 24}, outs[] = {24, 16, 16, 16, 16};
    CHECK(l->nmodules == 5, "%u modules, expected 5", l->nmodules);
    CHECK(l->scale == 4.0f, "scale %g, expected alpha/r = 4", l->scale);
    double worst_bound = 0, mean = 0;
    uint64_t cnt = 0;
    for (uint32_t i = 0; i < l->nmodules && i < 5; i++) {
        const vkd_lora_module *m = &l->modules[i];
        CHECK(!strcmp(m->path, paths[i]) && m->in == ins[i] && m->out == outs[i], "module %u: %s %u x %u", i,
              m->path, m->out, m->in);
        double bound = 1.0 / sqrt(m->in);
        for (uint64_t k = 0; k < 4ull * m->in; k++) {
            double v = fabs(m->a[k]) / bound;
            if (v > worst_bound) worst_bound = v;
            mean += m->a[k] / bound, cnt++;
        }
        for (uint64_t k = 0; k < 4ull * m->out; k++) CHECK(m->b[k] == 0.0f, "B not zero");
    }
    mean /= (double)cnt;
    CHECK(worst_bound <= 1.0 && worst_bound > 0.95, "max |A| sqrt(in) = %g", worst_bound);
    CHECK(fabs(mean) < 0.1, "mean of A sqrt(in) = %g (uniform: 0)", mean);
    /* per-module streams: adding q_proj keeps k_proj's A; another seed changes it */
    const char *targets2[] = {"q_proj", "k_proj"};
    vkd_lora *l2, *l3;
    REQUIRE(!vkd_lora_create(&dims, targets2, 2, 4, 16.0f, 1234, NULL, &l2, &err), "%s", err.msg);
    REQUIRE(!vkd_lora_create(&dims, targets2, 2, 4, 16.0f, 1235, NULL, &l3, &err), "%s", err.msg);
    const vkd_lora_module *k1 = vkd_lora_find(l, "layers.1.self_attn.k_proj"),
                          *k2 = vkd_lora_find(l2, "layers.1.self_attn.k_proj"),
                          *k3 = vkd_lora_find(l3, "layers.1.self_attn.k_proj");
    REQUIRE(k1 && k2 && k3, "k_proj missing");
    CHECK(!memcmp(k1->a, k2->a, 4 * 4 * 24), "k_proj's A depends on the other targets");
    CHECK(memcmp(k1->a, k3->a, 4 * 4 * 24), "k_proj's A ignores the seed");
    vkd_lora *dup = NULL;
    CHECK(vkd_lora_create(&dims, (const char *[]){"k_proj", "k_proj"}, 2, 4, 16, 1, NULL, &dup, &err) != VKD_OK && !dup,
          "duplicate target accepted");
    vkd_lora_free(l2);
    vkd_lora_free(l3);

    /* round trip with non-zero B */
    fill_b(l);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/adapter", tmpdir);
    REQUIRE(!vkd_lora_save(l, dir, &err), "%s", err.msg);
    vkd_lora *back;
    REQUIRE(!vkd_lora_load(dir, &dims, &back, &err), "%s", err.msg);
    CHECK(same(l, back), "save + load not bit-identical");
    CHECK(!strcmp(back->base_model, "tiny-draft") && back->ntargets == 3, "config fields lost");
    vkd_lora_free(back);
    if (argc > 1) REQUIRE(!vkd_lora_save(l, argv[1], &err), "%s", err.msg);

    /* bf16 on disk: loads as the bf16 values */
    {
        char bdir[512], p[600];
        snprintf(bdir, sizeof bdir, "%s/bf16", tmpdir);
        mkdir(bdir, 0777);
        const vkd_lora_module *fc = &l->modules[0];
        uint16_t *ab = malloc(4 * 72 * 2), *bb = malloc(24 * 4 * 2);
        for (int k = 0; k < 4 * 72; k++) ab[k] = vkd_f32_to_bf16(fc->a[k]);
        for (int k = 0; k < 24 * 4; k++) bb[k] = vkd_f32_to_bf16(fc->b[k]);
        vkd_st_out t[2] = {{"base_model.model.fc.lora_A.weight", VKD_DTYPE_BF16, 2, {4, 72}, ab},
                           {"base_model.model.fc.lora_B.weight", VKD_DTYPE_BF16, 2, {24, 4}, bb}};
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", bdir);
        REQUIRE(!vkd_st_write(p, t, 2, NULL, &err), "%s", err.msg);
        write_file(bdir, "adapter_config.json",
                   "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, \"target_modules\": [\"fc\"], "
                   "\"use_rslora\": true}");
        vkd_lora *lb;
        REQUIRE(!vkd_lora_load(bdir, &dims, &lb, &err), "%s", err.msg);
        bool eq = true;
        for (int k = 0; k < 4 * 72; k++) eq &= lb->modules[0].a[k] == vkd_bf16_to_f32(ab[k]);
        for (int k = 0; k < 24 * 4; k++) eq &= lb->modules[0].b[k] == vkd_bf16_to_f32(bb[k]);
        CHECK(eq, "bf16 adapter values differ");
        CHECK(lb->scale == 8.0f, "rslora scale %g, expected 16/sqrt(4) = 8", lb->scale);
        vkd_lora_free(lb);
        free(ab), free(bb);
    }

    /* device round trip */
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){0}, &ctx, &err), "%s", err.msg);
    vkd_lora_device *dev;
    REQUIRE(!vkd_lora_upload(l, ctx, &dev, &err), "%s", err.msg);
    CHECK(dev->n == 5 && dev->a[1]->rows == 4 && dev->a[1]->cols == 24 && dev->b[1]->rows == 16 &&
          dev->b[1]->cols == 4, "device shapes");
    vkd_lora *copy;
    REQUIRE(!vkd_lora_load(dir, &dims, &copy, &err), "%s", err.msg);
    for (uint32_t i = 0; i < copy->nmodules; i++) memset(copy->modules[i].a, 0, 4ull * 4 * copy->modules[i].in);
    REQUIRE(!vkd_lora_download(copy, dev, &err), "%s", err.msg);
    CHECK(same(l, copy), "device round trip changed values");
    vkd_lora_free(copy);
    vkd_lora_device_free(dev);
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);

    bad_adapters();
    vkd_lora_free(l);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return vkd_test_result("test_lora");
}
