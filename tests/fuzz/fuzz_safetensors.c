/* fuzz_safetensors: the in-memory safetensors parser on arbitrary bytes. Every tensor it
 * accepts must lie inside the buffer and agree with its shape; reading its first and last
 * byte lets ASan catch an out-of-range pointer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, exactly size bytes, so any over-read hits the redzone */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    vkd_st_file *f = NULL;
    vkd_error err = {0};
    if (vkd_st_parse(buf, size, "fuzz.safetensors", &f, &err) == VKD_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < vkd_st_count(f); i++) {
            const vkd_st_tensor *t = vkd_st_tensor_at(f, i);
            const uint8_t *p = t->data;
            if (p < buf || p + t->nbytes > buf + size || t->numel * vkd_dtype_size(t->dtype) != t->nbytes)
                abort();
            if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
            if (vkd_st_find(f, t->name) != t) abort();
            char shp[256];
            vkd_st_shape_str(t, shp, sizeof shp);
        }
        for (size_t i = 0; i < vkd_st_metadata_count(f); i++) {
            const char *k, *v;
            vkd_st_metadata_at(f, i, &k, &v);
            if (vkd_st_metadata_get(f, k) == NULL) abort();
        }
        (void)sink;
        vkd_st_close(f);
    } else if (err.msg[0] == 0) {
        abort(); /* every failure must say why */
    }
    free(buf);
    return 0;
}
