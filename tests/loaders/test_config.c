/* test_config.c: config.json / generation_config.json of the real checkpoints (copies in
 * tests/loaders/data/configs), the DFlash layer-id fallback (z-lab's build_target_layer_ids,
 * values computed by hand with Python's round-half-to-even), malformed configs (one error line
 * naming the field), and vkd_cfg_check_tensors on small model folders. */
#include <cjson/cJSON.h>

#include "config.h"
#include "ld_util.h"

static void load_cfg(const char *model, vkd_cfg *cfg) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/loaders/data/configs/%s", model);
    char *dir = ld_source_path(rel);
    vkd_error err = {0};
    REQUIRE(vkd_cfg_load(dir, cfg, &err) == VKD_OK, "%s: %s", model, err.msg);
    free(dir);
}

static void load_gen(const char *model, vkd_gen_cfg *g) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/loaders/data/configs/%s", model);
    char *dir = ld_source_path(rel);
    vkd_error err = {0};
    REQUIRE(vkd_gen_cfg_load(dir, g, &err) == VKD_OK, "%s: %s", model, err.msg);
    free(dir);
}

static void test_real_configs(void) {
    vkd_cfg c;
    load_cfg("qwen3-4b", &c);
    CHECK(c.arch == VKD_ARCH_QWEN3 && c.hidden_size == 2560 && c.num_hidden_layers == 36 &&
          c.num_attention_heads == 32 && c.num_key_value_heads == 8 && c.head_dim == 128 &&
          c.intermediate_size == 9728 && c.vocab_size == 151936 && c.tie_word_embeddings &&
          c.qk_norm && c.max_position_embeddings == 40960, "qwen3-4b sizes");
    CHECK(c.rms_norm_eps == 1e-6 && c.rope_theta == 1e6 && !c.rope_scaling.llama3, "qwen3-4b rope");
    CHECK(c.has_dtype && c.dtype == VKD_DTYPE_BF16, "qwen3-4b dtype");
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_token_ids[0] == 151645, "qwen3-4b ids");

    load_cfg("qwen3-8b", &c);
    CHECK(c.hidden_size == 4096 && c.intermediate_size == 12288 && !c.tie_word_embeddings &&
          c.head_dim == 128, "qwen3-8b");

    load_cfg("llama-3.2-1b-instruct", &c);
    CHECK(c.arch == VKD_ARCH_LLAMA && !c.qk_norm && c.hidden_size == 2048 &&
          c.num_hidden_layers == 16 && c.head_dim == 64 && c.num_key_value_heads == 8 &&
          c.intermediate_size == 8192 && c.vocab_size == 128256 && c.tie_word_embeddings,
          "llama-3.2-1b sizes");
    CHECK(c.rope_theta == 500000.0 && c.rope_scaling.llama3 && c.rope_scaling.factor == 32.0 &&
          c.rope_scaling.low_freq_factor == 1.0 && c.rope_scaling.high_freq_factor == 4.0 &&
          c.rope_scaling.original_max_position_embeddings == 8192 && c.rms_norm_eps == 1e-5,
          "llama-3.2-1b rope");
    CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 128001 && c.eos_token_ids[2] == 128009 &&
          c.bos_token_id == 128000, "llama-3.2-1b ids");

    load_cfg("llama-3.1-8b-instruct", &c);
    CHECK(c.hidden_size == 4096 && c.num_hidden_layers == 32 && c.head_dim == 128 /* derived */ &&
          c.intermediate_size == 14336 && !c.tie_word_embeddings && c.rope_scaling.factor == 8.0,
          "llama-3.1-8b");

    load_cfg("qwen3-4b-dflash-b16", &c);
    CHECK(c.arch == VKD_ARCH_DFLASH && c.num_hidden_layers == 5 && c.hidden_size == 2560 &&
          c.block_size == 16 && c.mask_token_id == 151669 && c.num_target_layers == 36 &&
          c.n_target_layer_ids == 5 && c.qk_norm && !c.target_layer_ids_pending, "dflash");
    int64_t want[5] = {1, 9, 17, 25, 33};
    for (int i = 0; i < 5; i++) CHECK(c.target_layer_ids[i] == want[i], "dflash id %d", i);
    vkd_cfg t;
    load_cfg("qwen3-4b", &t);
    vkd_error err = {0};
    CHECK(vkd_cfg_dflash_resolve(&c, &t, &err) == VKD_OK, "resolve: %s", err.msg);
    vkd_cfg l;
    load_cfg("llama-3.2-1b-instruct", &l);
    CHECK(vkd_cfg_dflash_resolve(&c, &l, &err) != VKD_OK && strstr(err.msg, "num_target_layers is 36"),
          "draft against a 16-layer target: %s", err.msg);

    vkd_gen_cfg g;
    load_gen("qwen3-4b", &g);
    CHECK(g.present && g.do_sample && g.temperature == 0.6 && g.top_k == 20 && g.top_p == 0.95 &&
          g.n_eos == 2 && g.eos_token_ids[0] == 151645 && g.eos_token_ids[1] == 151643 &&
          g.pad_token_id == 151643 && g.bos_token_id == 151643, "qwen3 generation config");
    load_gen("llama-3.2-1b-instruct", &g);
    CHECK(g.present && g.temperature == 0.6 && g.top_p == 0.9 && g.top_k == 50 /* default */ &&
          g.n_eos == 3 && g.pad_token_id == -1, "llama generation config");
    load_gen("qwen3-4b-dflash-b16", &g); /* no file: defaults */
    CHECK(!g.present && !g.do_sample && g.temperature == 1.0 && g.top_p == 1.0 && g.top_k == 50 &&
          g.n_eos == 0 && g.bos_token_id == -1, "missing generation config gives defaults");
    fprintf(stderr, "  real configs: Qwen3-4B, Qwen3-8B, Llama-3.2-1B, Llama-3.1-8B, DFlash-b16\n");
}

static void test_default_ids(void) {
    struct { int64_t L; int n; int64_t ids[6]; } cases[] = {
        {36, 5, {1, 9, 17, 25, 33}},
        {36, 1, {18}},
        {28, 5, {1, 7, 13, 19, 25}},
        {32, 3, {1, 15, 29}},
        {36, 4, {1, 12, 22, 33}},
        {10, 5, {1, 2, 4, 6, 7}},  /* 2.5 -> 2 and 5.5 -> 6: Python rounds half to even */
        {16, 2, {1, 13}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t got[6];
        vkd_cfg_dflash_default_ids(cases[k].L, cases[k].n, got);
        for (int i = 0; i < cases[k].n; i++)
            CHECK(got[i] == cases[k].ids[i], "L=%lld n=%d: id %d = %lld, expected %lld",
                  (long long)cases[k].L, cases[k].n, i, (long long)got[i],
                  (long long)cases[k].ids[i]);
    }
    /* a draft config without target_layer_ids: from num_target_layers, or from the target */
    const char *base =
        "{\"architectures\":[\"DFlashDraftModel\"],\"hidden_size\":2560,\"num_hidden_layers\":5,"
        "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"head_dim\":128,"
        "\"intermediate_size\":9728,\"vocab_size\":151936,%s\"dflash_config\":{\"mask_token_id\":"
        "151669,\"block_size\":10}}";
    char js[1024];
    vkd_cfg c, t;
    vkd_error err = {0};
    snprintf(js, sizeof js, base, "\"num_target_layers\":36,");
    CHECK(vkd_cfg_parse(js, strlen(js), "config.json", &c, &err) == VKD_OK, "%s", err.msg);
    CHECK(!c.target_layer_ids_pending && c.n_target_layer_ids == 5 && c.target_layer_ids[1] == 9 &&
          c.target_layer_ids[4] == 33 && c.block_size == 10, "ids from num_target_layers");
    snprintf(js, sizeof js, base, "");
    CHECK(vkd_cfg_parse(js, strlen(js), "config.json", &c, &err) == VKD_OK, "%s", err.msg);
    CHECK(c.target_layer_ids_pending && c.n_target_layer_ids == 5, "ids pending");
    load_cfg("qwen3-4b", &t);
    CHECK(vkd_cfg_dflash_resolve(&c, &t, &err) == VKD_OK, "%s", err.msg);
    CHECK(!c.target_layer_ids_pending && c.target_layer_ids[0] == 1 && c.target_layer_ids[2] == 17 &&
          c.target_layer_ids[4] == 33, "ids from the target config");
    /* no block_size anywhere: z-lab's default 16 */
    const char *nobs = "{\"model_type\":\"qwen3\",\"hidden_size\":64,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100,"
        "\"dflash_config\":{\"mask_token_id\":99,\"target_layer_ids\":[3]}}";
    CHECK(vkd_cfg_parse(nobs, strlen(nobs), "config.json", &c, &err) == VKD_OK, "%s", err.msg);
    CHECK(c.arch == VKD_ARCH_DFLASH && c.block_size == 16 && c.head_dim == 16 &&
          c.num_key_value_heads == 4 && c.n_target_layer_ids == 1, "model_type + dflash_config");
    fprintf(stderr, "  DFlash layer-id fallback checked\n");
}

/* A minimal valid Qwen3 config with one field replaced/added: "%s" is spliced in front. */
static const char *MINI =
    "{%s\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":128,"
    "\"vocab_size\":1000}";

/* MINI with the fields of the object text "{over}" replacing or adding to its own. */
static void mini_with(const char *over, char *out, size_t cap) {
    char base[1024], ov[1024];
    snprintf(base, sizeof base, MINI, "");
    snprintf(ov, sizeof ov, "{%.*s}", (int)strlen(over) - 1, over); /* drop the trailing comma */
    cJSON *b = cJSON_Parse(base), *o = cJSON_Parse(ov);
    REQUIRE(b && o, "bad test snippet %s", over);
    for (cJSON *e = o->child; e; e = e->next) {
        cJSON *dup = cJSON_Duplicate(e, 1);
        if (cJSON_GetObjectItemCaseSensitive(b, e->string))
            cJSON_ReplaceItemInObjectCaseSensitive(b, e->string, dup);
        else
            cJSON_AddItemToObject(b, e->string, dup);
    }
    char *txt = cJSON_PrintUnformatted(b);
    snprintf(out, cap, "%s", txt);
    free(txt);
    cJSON_Delete(b);
    cJSON_Delete(o);
}

static void test_malformed(void) {
    struct { const char *json; const char *expect; vkd_result code; } cases[] = {
        {"", "empty, expected JSON", VKD_ERR_FORMAT},
        {"{\"hidden_size\": 4", "config.json:1:17: invalid JSON", VKD_ERR_FORMAT},
        {"[1]", "expected a JSON object, got an array", VKD_ERR_FORMAT},
        {"{}", "fields 'architectures' and 'model_type' are both missing", VKD_ERR_FORMAT},
        {"{\"architectures\":[\"MistralForCausalLM\"]}", "unsupported architecture 'MistralForCausalLM'",
         VKD_ERR_UNSUPPORTED},
        {"{\"architectures\":\"Qwen3ForCausalLM\"}", "field 'architectures': expected a list of strings",
         VKD_ERR_FORMAT},
        {"{\"model_type\":\"gemma\"}", "unsupported model type 'gemma'", VKD_ERR_UNSUPPORTED},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"qwen3\"}",
         "field 'model_type': expected \"llama\"", VKD_ERR_FORMAT},
        {"{\"architectures\":[\"Qwen3ForCausalLM\"],\"num_hidden_layers\":2}",
         "field 'hidden_size' is missing", VKD_ERR_FORMAT},
    };
    vkd_cfg c;
    vkd_error err;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        err.msg[0] = 0;
        vkd_result r = vkd_cfg_parse(cases[k].json, strlen(cases[k].json), "config.json", &c, &err);
        CHECK(r == cases[k].code && strstr(err.msg, cases[k].expect), "'%s': got %s '%s'",
              cases[k].json, vkd_result_name(r), err.msg);
    }
    struct { const char *field; const char *expect; } bad[] = {
        {"\"num_key_value_heads\":3,", "config.json: field 'num_key_value_heads': expected a positive integer dividing num_attention_heads (4), got 3"},
        {"\"hidden_size\":0,", "field 'hidden_size': expected a positive integer <= 1048576, got 0"},
        {"\"hidden_size\":\"64\",", "field 'hidden_size': expected a positive integer <= 1048576, got '64'"},
        {"\"hidden_size\":64.5,", "field 'hidden_size': expected a positive integer <= 1048576, got 64.5"},
        {"\"vocab_size\":-5,", "field 'vocab_size': expected a positive integer"},
        {"\"num_hidden_layers\":1e300,", "field 'num_hidden_layers': expected a positive integer <= 1024"},
        {"\"head_dim\":15,", "field 'head_dim': expected an even number"},
        {"\"attention_bias\":true,", "field 'attention_bias': true is not supported (expected false)"},
        {"\"attention_bias\":1,", "field 'attention_bias': expected false, got 1"},
        {"\"use_sliding_window\":true,", "field 'use_sliding_window': true is not supported"},
        {"\"hidden_act\":\"gelu\",", "field 'hidden_act': expected \"silu\", got 'gelu'"},
        {"\"rms_norm_eps\":0,", "field 'rms_norm_eps': expected a positive number, got 0"},
        {"\"rope_theta\":\"big\",", "field 'rope_theta': expected a positive number, got 'big'"},
        {"\"tie_word_embeddings\":\"yes\",", "field 'tie_word_embeddings': expected true or false"},
        {"\"torch_dtype\":\"float8\",", "field 'torch_dtype': expected \"bfloat16\", \"float16\" or \"float32\", got 'float8'"},
        {"\"eos_token_id\":[1,\"x\"],", "field 'eos_token_id': expected a token id"},
        {"\"eos_token_id\":5000,", "field 'eos_token_id': token id 5000 is not below vocab_size (1000)"},
        {"\"bos_token_id\":-1,", "field 'bos_token_id': expected an integer in [0, 999], got -1"},
        {"\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4},", "field 'rope_scaling': rope type 'yarn' is not supported"},
        {"\"rope_scaling\":{\"type\":\"linear\",\"factor\":4},", "rope type 'linear' is not supported"},
        {"\"rope_scaling\":5,", "field 'rope_scaling': expected null or an object, got 5"},
        {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4},",
         "field 'rope_scaling.original_max_position_embeddings' is missing"},
        {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":1,\"original_max_position_embeddings\":8192},",
         "field 'rope_scaling.high_freq_factor': expected more than low_freq_factor"},
        {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192},",
         "field 'rope_scaling.factor': expected a positive number, got nothing"},
        {"\"layer_types\":[\"sliding_attention\"],", "field 'layer_types': expected only \"full_attention\" entries"},
        {"\"hidden_size\":64,", "field 'hidden_size' appears twice"},
    };
    char js[2048];
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (strstr(bad[k].expect, "appears twice"))
            snprintf(js, sizeof js, MINI, bad[k].field);
        else
            mini_with(bad[k].field, js, sizeof js);
        err.msg[0] = 0;
        vkd_result r = vkd_cfg_parse(js, strlen(js), "config.json", &c, &err);
        CHECK(r != VKD_OK && strstr(err.msg, bad[k].expect), "%s: got '%s'", bad[k].field, err.msg);
    }
    snprintf(js, sizeof js, MINI, "");
    CHECK(vkd_cfg_parse(js, strlen(js), "config.json", &c, &err) == VKD_OK, "mini: %s", err.msg);
    CHECK(c.head_dim == 16 && c.max_position_embeddings == 32768 && c.rope_theta == 10000.0 &&
          !c.tie_word_embeddings && c.rms_norm_eps == 1e-6 && !c.has_dtype && c.bos_token_id == -1,
          "Qwen3Config defaults");
    /* transformers 5 spelling: rope_parameters carries rope_theta and the scaling */
    snprintf(js, sizeof js, MINI, "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":"
             "500000.0,\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
             "\"original_max_position_embeddings\":8192},\"max_position_embeddings\":131072,");
    CHECK(vkd_cfg_parse(js, strlen(js), "config.json", &c, &err) == VKD_OK, "rope_parameters: %s", err.msg);
    CHECK(c.rope_theta == 500000.0 && c.rope_scaling.llama3 && c.rope_scaling.factor == 32.0,
          "rope_parameters read");

    const char *draft_bad[][2] = {
        {"\"dflash_config\":{\"target_layer_ids\":[1,2]},", "field 'dflash_config.mask_token_id' is missing"},
        {"\"dflash_config\":{\"mask_token_id\":1000,\"target_layer_ids\":[1]},", "field 'dflash_config.mask_token_id': expected an integer in [0, 999], got 1000"},
        {"\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[]},", "field 'dflash_config.target_layer_ids': expected a list of 1 to 64 layer indices"},
        {"\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[1,-2]},", "expected layer indices in [0, 1023], got -2"},
        {"\"num_target_layers\":8,\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[1,8]},", "expected layer indices in [0, 7] (below num_target_layers), got 8"},
        {"\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[1],\"block_size\":0},", "field 'dflash_config.block_size': expected a positive integer <= 4096, got 0"},
        {"\"block_size\":\"16\",\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[1]},", "field 'block_size': expected a positive integer <= 4096, got '16'"},
        {"\"dflash_config\":[1],", "field 'dflash_config': expected an object, got an array"},
        {"\"dflash_config\":{\"mask_token_id\":5,\"target_layer_ids\":[1],\"output_multiplier\":2},", "field 'dflash_config.output_multiplier': expected 1"},
    };
    const char *DMINI = "{%s\"architectures\":[\"DFlashDraftModel\"],\"hidden_size\":64,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":1000}";
    for (size_t k = 0; k < sizeof draft_bad / sizeof draft_bad[0]; k++) {
        snprintf(js, sizeof js, DMINI, draft_bad[k][0]);
        err.msg[0] = 0;
        vkd_result r = vkd_cfg_parse(js, strlen(js), "config.json", &c, &err);
        CHECK(r != VKD_OK && strstr(err.msg, draft_bad[k][1]), "%s: got '%s'", draft_bad[k][0], err.msg);
    }

    const char *gen_bad[][2] = {
        {"{\"temperature\":-1}", "field 'temperature': expected a non-negative number, got -1"},
        {"{\"top_p\":1.5}", "field 'top_p': expected a number in (0, 1], got 1.5"},
        {"{\"top_p\":0}", "field 'top_p': expected a positive number, got 0"},
        {"{\"top_k\":2.5}", "field 'top_k': expected an integer in [0, 16777216], got 2.5"},
        {"{\"do_sample\":\"true\"}", "field 'do_sample': expected true or false"},
        {"{\"eos_token_id\":{}}", "field 'eos_token_id': expected a token id"},
        {"[]", "expected a JSON object, got an array"},
        {"{\"top_k\":5,\"top_k\":6}", "field 'top_k' appears twice"},
    };
    vkd_gen_cfg g;
    for (size_t k = 0; k < sizeof gen_bad / sizeof gen_bad[0]; k++) {
        err.msg[0] = 0;
        vkd_result r = vkd_gen_cfg_parse(gen_bad[k][0], strlen(gen_bad[k][0]),
                                         "generation_config.json", &g, &err);
        CHECK(r != VKD_OK && strstr(err.msg, gen_bad[k][1]) &&
              strstr(err.msg, "generation_config.json"), "%s: got '%s'", gen_bad[k][0], err.msg);
    }
    const char *nulls = "{\"temperature\":null,\"top_k\":null,\"eos_token_id\":null,\"pad_token_id\":null}";
    CHECK(vkd_gen_cfg_parse(nulls, strlen(nulls), "g", &g, &err) == VKD_OK && g.temperature == 1.0 &&
          g.top_k == 50 && g.n_eos == 0 && g.pad_token_id == -1, "nulls are defaults: %s", err.msg);
    fprintf(stderr, "  malformed configs rejected with named fields\n");
}

/* ---- check_tensors on tiny folders written here (zeros; only names/shapes matter) ---- */

typedef struct wtensor { char name[96]; const char *dtype; int rank; long long shape[2]; } wtensor;

static void write_model(const char *dir, const wtensor *ts, size_t n) {
    char *hdr = malloc(1 << 20);
    REQUIRE(hdr, "malloc");
    size_t o = 0, off = 0;
    o += (size_t)sprintf(hdr + o, "{");
    for (size_t i = 0; i < n; i++) {
        size_t es = !strcmp(ts[i].dtype, "F32") ? 4 : !strcmp(ts[i].dtype, "I8") ? 1 : 2;
        size_t bytes = es * (size_t)ts[i].shape[0] * (size_t)(ts[i].rank == 2 ? ts[i].shape[1] : 1);
        o += (size_t)sprintf(hdr + o, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", i ? "," : "",
                             ts[i].name, ts[i].dtype, ts[i].shape[0]);
        if (ts[i].rank == 2) o += (size_t)sprintf(hdr + o, ",%lld", ts[i].shape[1]);
        o += (size_t)sprintf(hdr + o, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    o += (size_t)sprintf(hdr + o, "}");
    char *path = ld_join(dir, "model.safetensors");
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "write %s", path);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)o >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, o, f);
    for (size_t i = 0; i < off; i++) fputc(0, f);
    fclose(f);
    free(path);
    free(hdr);
}

/* Expected list of cfg as wtensors (dtype dt); returns the count. */
static size_t expected_as_w(const vkd_cfg *cfg, const char *dt, wtensor *w) {
    vkd_cfg_tensor *list;
    size_t n;
    vkd_error err;
    REQUIRE(vkd_cfg_expected_tensors(cfg, &list, &n, &err) == VKD_OK, "%s", err.msg);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (list[i].optional) continue;
        snprintf(w[k].name, sizeof w[k].name, "%s", list[i].name);
        w[k].dtype = dt;
        w[k].rank = list[i].rank;
        w[k].shape[0] = list[i].shape[0];
        w[k].shape[1] = list[i].shape[1];
        k++;
    }
    free(list);
    return k;
}

typedef struct collected { int n; char lines[16][400]; } collected;
static void collect(void *user, const char *line) {
    collected *c = user;
    if (c->n < 16) snprintf(c->lines[c->n], sizeof c->lines[0], "%s", line);
    c->n++;
}
static bool has_line(const collected *c, const char *s) {
    for (int i = 0; i < c->n && i < 16; i++)
        if (strstr(c->lines[i], s)) return true;
    return false;
}

/* Writes ts to a fresh folder and runs the checker; returns its result and fills col. */
static vkd_result check_folder(const vkd_cfg *cfg, const wtensor *ts, size_t n, collected *col) {
    char *dir = ld_mkdtemp("cfgchk");
    write_model(dir, ts, n);
    vkd_st_model *m = NULL;
    vkd_error err = {0};
    REQUIRE(vkd_st_model_open(dir, &m, &err) == VKD_OK, "%s", err.msg);
    memset(col, 0, sizeof *col);
    vkd_result r = vkd_cfg_check_tensors(cfg, m, collect, col, &err);
    if (r != VKD_OK) CHECK(strstr(err.msg, "tensor problem") != NULL, "summary: %s", err.msg);
    vkd_st_model_close(m);
    ld_rm_rf(dir);
    free(dir);
    return r;
}

static void test_check_tensors(void) {
    const char *qj = "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":8,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
        "\"head_dim\":4,\"intermediate_size\":12,\"vocab_size\":32,\"tie_word_embeddings\":true,"
        "\"torch_dtype\":\"bfloat16\"}";
    vkd_cfg q;
    vkd_error err;
    REQUIRE(vkd_cfg_parse(qj, strlen(qj), "config.json", &q, &err) == VKD_OK, "%s", err.msg);
    wtensor w[64];
    collected col;
    size_t n = expected_as_w(&q, "BF16", w);
    CHECK(n == 2 + 2 * 11, "qwen3 tied: %zu tensors expected", n);
    CHECK(check_folder(&q, w, n, &col) == VKD_OK && col.n == 0, "complete qwen3: %d problems (%s)",
          col.n, col.lines[0]);
    /* tied model that still ships lm_head: accepted */
    w[n] = (wtensor){"lm_head.weight", "BF16", 2, {32, 8}};
    CHECK(check_folder(&q, w, n + 1, &col) == VKD_OK, "tied + lm_head: %s", col.lines[0]);
    /* broken variants */
    wtensor b[64];
    memcpy(b, w, sizeof w);
    b[6] = b[n - 1];                                   /* drop one (q_norm of layer 0) */
    char dropped[96];
    snprintf(dropped, sizeof dropped, "%s", w[6].name);
    b[7].shape[0] = 5;                                 /* wrong shape (k_norm) */
    b[8].dtype = "F32";                                /* dtype differs from config */
    snprintf(b[n - 1].name, sizeof b[n - 1].name, "model.layers.0.self_attn.rotary_emb.inv_freq");
    b[n - 1].rank = 1; b[n - 1].shape[0] = 2; b[n - 1].dtype = "BF16";
    CHECK(check_folder(&q, b, n, &col) == VKD_ERR_FORMAT, "broken qwen3 accepted");
    char want[200];
    snprintf(want, sizeof want, "tensor '%s' is missing (expected shape [4])", dropped);
    CHECK(has_line(&col, want), "missing: %s", col.lines[0]);
    snprintf(want, sizeof want, "tensor '%s': shape [5], expected [4]", w[7].name);
    CHECK(has_line(&col, want), "shape: %s / %s", want, col.lines[1]);
    snprintf(want, sizeof want, "tensor '%s': dtype F32 differs from the config's torch_dtype (BF16)", w[8].name);
    CHECK(has_line(&col, want), "dtype: %s", want);
    CHECK(has_line(&col, "unexpected tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'"), "unexpected");
    CHECK(col.n == 4, "%d problems, expected 4", col.n);

    /* Llama, untied: no q_norm/k_norm, lm_head required; an integer dtype is reported */
    const char *lj = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,"
        "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":12,"
        "\"vocab_size\":32}";
    vkd_cfg l;
    REQUIRE(vkd_cfg_parse(lj, strlen(lj), "config.json", &l, &err) == VKD_OK, "%s", err.msg);
    n = expected_as_w(&l, "F16", w);
    CHECK(n == 3 + 9, "llama untied: %zu", n);
    CHECK(!strcmp(w[n - 1].name, "lm_head.weight") && w[n - 1].shape[0] == 32, "lm_head last");
    CHECK(check_folder(&l, w, n, &col) == VKD_OK, "complete llama: %s", col.lines[0]);
    w[1].dtype = "I8";
    CHECK(check_folder(&l, w, n - 1, &col) == VKD_ERR_FORMAT &&
          has_line(&col, "tensor 'lm_head.weight' is missing (expected shape [32, 8])") &&
          has_line(&col, "dtype I8, expected BF16, F16 or F32"), "llama problems: %s", col.lines[0]);

    /* DFlash draft: no 'model.' prefix, fc [H, taps*H], hidden_norm, no embeddings */
    const char *dj = "{\"architectures\":[\"DFlashDraftModel\"],\"hidden_size\":8,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":4,"
        "\"intermediate_size\":12,\"vocab_size\":32,\"dtype\":\"float32\",\"num_target_layers\":6,"
        "\"dflash_config\":{\"mask_token_id\":31,\"target_layer_ids\":[1,2,4]}}";
    vkd_cfg d;
    REQUIRE(vkd_cfg_parse(dj, strlen(dj), "config.json", &d, &err) == VKD_OK, "%s", err.msg);
    n = expected_as_w(&d, "F32", w);
    CHECK(n == 3 + 2 * 11, "dflash: %zu", n);
    CHECK(!strcmp(w[0].name, "fc.weight") && w[0].shape[0] == 8 && w[0].shape[1] == 24 &&
          !strcmp(w[1].name, "hidden_norm.weight") && !strcmp(w[2].name, "layers.0.input_layernorm.weight") &&
          !strcmp(w[n - 1].name, "norm.weight"), "dflash names: %s %s %s", w[0].name, w[2].name, w[n - 1].name);
    CHECK(check_folder(&d, w, n, &col) == VKD_OK, "complete dflash: %s", col.lines[0]);
    w[n] = (wtensor){"model.embed_tokens.weight", "F32", 2, {32, 8}};
    CHECK(check_folder(&d, w, n + 1, &col) == VKD_ERR_FORMAT &&
          has_line(&col, "unexpected tensor 'model.embed_tokens.weight' (not part of DFlashDraftModel)"),
          "dflash with embeddings: %s", col.lines[0]);
    fprintf(stderr, "  check_tensors: Qwen3, Llama and DFlash layouts\n");
}

int main(void) {
    test_real_configs();
    test_default_ids();
    test_malformed();
    test_check_tensors();
    return vkd_test_result("test_config");
}
