/* ld_util.h: helpers shared by the loader tests: temp folders, files, the Python generator. */
#ifndef VKD_LD_UTIL_H
#define VKD_LD_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkd_test.h"

static int ld_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* Removes a folder tree (test temp folders only). */
static inline void ld_rm_rf(const char *dir) {
    nftw(dir, ld_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates a fresh temp folder; the returned string is static per call site copy. */
static inline char *ld_mkdtemp(const char *tag) {
    char *p = malloc(256);
    REQUIRE(p, "malloc");
    const char *base = getenv("TMPDIR");
    snprintf(p, 256, "%s/vkd-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    REQUIRE(mkdtemp(p), "mkdtemp %s failed", p);
    return p;
}

static inline char *ld_source_path(const char *rel) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    char *p = malloc(4096);
    REQUIRE(p, "malloc");
    snprintf(p, 4096, "%s/%s", root && root[0] ? root : ".", rel);
    return p;
}

static inline char *ld_join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    REQUIRE(p, "malloc");
    sprintf(p, "%s/%s", a, b);
    return p;
}

static inline void ld_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "cannot write %s", path);
    REQUIRE(fwrite(data, 1, n, f) == n, "short write %s", path);
    fclose(f);
}

static inline void ld_write_str(const char *dir, const char *name, const char *text) {
    char *p = ld_join(dir, name);
    ld_write_file(p, text, strlen(text));
    free(p);
}

static inline char *ld_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    REQUIRE(b, "malloc");
    REQUIRE(fread(b, 1, (size_t)sz, f) == (size_t)sz, "short read %s", path);
    b[sz] = 0;
    fclose(f);
    if (n) *n = (size_t)sz;
    return b;
}

/* Runs /usr/bin/python3 tools/<script> <out>; aborts the test on failure. */
static inline void ld_run_generator(const char *script, const char *out) {
    char *py = ld_source_path(script);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", py, out);
    int rc = system(cmd);
    REQUIRE(rc == 0, "generator failed: %s (rc %d)", cmd, rc);
    free(py);
}

#endif
