/* st_write.c: safetensors writer (header JSON, 8-byte aligned, data in order). */
#include "st_write.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

vkd_result vkd_st_write(const char *path, const vkd_st_out *t, size_t n, const char *const *metadata,
                        vkd_error *err) {
    cJSON *h = cJSON_CreateObject();
    if (!h) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (metadata) {
        cJSON *md = cJSON_AddObjectToObject(h, "__metadata__");
        for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2)
            cJSON_AddStringToObject(md, metadata[i], metadata[i + 1]);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        if (cJSON_GetObjectItemCaseSensitive(h, t[i].name)) { /* the loader rejects a repeated name */
            cJSON_Delete(h);
            return vkd_fail(err, VKD_ERR_INVALID, "%s: tensor name '%s' appears twice", path, t[i].name);
        }
        cJSON *o = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(o, "dtype", vkd_dtype_name(t[i].dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t[i].rank; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        uint64_t bytes = numel * vkd_dtype_size(t[i].dtype);
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!json) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    vkd_atomic_file a;
    vkd_result r = vkd_atomic_open(&a, path, err);
    if (r != VKD_OK) {
        free(json);
        return r;
    }
    FILE *f = a.f;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].rank; d++) numel *= (uint64_t)t[i].shape[d];
        size_t bytes = numel * vkd_dtype_size(t[i].dtype);
        ok = fwrite(t[i].data, 1, bytes, f) == bytes;
    }
    free(json);
    return vkd_atomic_commit(&a, path, ok, err);
}
