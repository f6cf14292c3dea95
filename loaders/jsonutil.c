/* jsonutil.c: file reading, strict JSON parsing and value checks shared by the loaders. */
#include "jsonutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

vkd_result vkd_json_read_file(const char *path, size_t max_bytes, char **buf, size_t *n,
                              bool *missing, vkd_error *err) {
    /* path: file to read; on success *buf (malloc'd, NUL-terminated) holds *n bytes. */
    *buf = NULL;
    *n = 0;
    if (missing) *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing && errno == ENOENT) *missing = true;
        return vkd_fail(err, VKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vkd_fail(err, VKD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: file is %lld bytes, more than the %zu allowed",
                        path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *b = malloc(size + 1);
    if (!b) {
        fclose(f);
        return vkd_fail(err, VKD_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size + 1);
    }
    size_t got = size ? fread(b, 1, size, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (got != size || rerr) {
        free(b);
        return vkd_fail(err, VKD_ERR_IO, "%s: read failed", path);
    }
    b[size] = 0;
    *buf = b;
    *n = size;
    return VKD_OK;
}

/* 1-based line and column of byte offset off in buf. */
static void line_col(const char *buf, size_t off, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') { l++; c = 1; } else c++;
    }
    *line = l;
    *col = c;
}

vkd_result vkd_json_parse(const char *buf, size_t n, const char *name, cJSON **out,
                          vkd_error *err) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        size_t off = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
        size_t line, col;
        line_col(buf, off, &line, &col);
        if (n == 0)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: empty, expected JSON", name);
        return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu:%zu: invalid JSON", name, line, col);
    }
    size_t off = (size_t)(end - buf);
    while (off < n && (buf[off] == ' ' || buf[off] == '\t' || buf[off] == '\n' ||
                       buf[off] == '\r'))
        off++;
    if (off < n) {
        size_t line, col;
        line_col(buf, off, &line, &col);
        cJSON_Delete(root);
        return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu:%zu: unexpected data after the JSON value",
                        name, line, col);
    }
    *out = root;
    return VKD_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *vkd_json_duplicate_key(const cJSON *obj) {
    /* Sort the keys (O(n log n): a hostile header may hold millions of them). */
    size_t n = 0;
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next) n++;
    if (n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) return NULL;
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    const char *dup = NULL;
    for (i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    free(keys);
    return dup;
}

bool vkd_json_int(const cJSON *item, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > VKD_JSON_MAX_EXACT_INT) return false;
    if (d < (double)lo || d > (double)hi) return false;
    *out = (int64_t)d;
    return true;
}

const char *vkd_json_type_name(const cJSON *item) {
    if (!item) return "nothing";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsBool(item)) return cJSON_IsTrue(item) ? "true" : "false";
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (isfinite(d) && d == floor(d)) return d < 0 ? "a negative integer" : "an integer";
        return "a non-integer number";
    }
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "an invalid value";
}

bool vkd_json_utf8_valid(const char *s, size_t len, size_t *bad_offset) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 0x07; min = 0x10000; }
        else goto bad;
        if (len - i <= need) goto bad;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80) goto bad;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
        i += need + 1;
    }
    return true;
bad:
    if (bad_offset) *bad_offset = i;
    return false;
}

bool vkd_json_plain_filename(const char *s) {
    return s && s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}
