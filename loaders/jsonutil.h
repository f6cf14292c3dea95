/* jsonutil.h: small helpers the loaders share for reading JSON files safely (internal to
 * loaders/: safetensors, config and dataset parsers). cJSON keeps duplicate object keys and
 * stores numbers as doubles, so these helpers add the checks a hostile file needs. */
#ifndef VKD_JSONUTIL_H
#define VKD_JSONUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkd_base.h"

/* Largest integer a JSON number (a double) represents exactly: 2^53. */
#define VKD_JSON_MAX_EXACT_INT 9007199254740992.0

/* Reads a whole file into a malloc'd buffer (NUL-terminated, *n excludes the NUL).
 * Files larger than max_bytes are rejected. A missing file is VKD_ERR_IO with errno ENOENT
 * reported through *missing (may be NULL) so callers can treat it as "absent". */
vkd_result vkd_json_read_file(const char *path, size_t max_bytes, char **buf, size_t *n,
                              bool *missing, vkd_error *err);

/* Parses n bytes as one JSON value followed only by whitespace. On a syntax error the
 * message names `name`, the line and column. *out must be freed with cJSON_Delete. */
vkd_result vkd_json_parse(const char *buf, size_t n, const char *name, cJSON **out,
                          vkd_error *err);

/* First key that occurs twice among obj's direct children, or NULL. */
const char *vkd_json_duplicate_key(const cJSON *obj);

/* True when item is a number holding an integer in [lo, hi] (hi <= 2^53); stores it. */
bool vkd_json_int(const cJSON *item, int64_t lo, int64_t hi, int64_t *out);

/* Short description of an item's JSON type for "expected X, got Y" messages. */
const char *vkd_json_type_name(const cJSON *item);

/* Checks len bytes are valid UTF-8 (no overlongs, surrogates, values > U+10FFFF);
 * on failure stores the offset of the first bad byte. */
bool vkd_json_utf8_valid(const char *s, size_t len, size_t *bad_offset);

/* True when a path component is a plain file name: non-empty, no '/', not "." or "..". */
bool vkd_json_plain_filename(const char *s);

#endif
