/* st_write.h: writing result tensors as a .safetensors file (f32 / i32), atomically. */
#ifndef VKD_ST_WRITE_H
#define VKD_ST_WRITE_H

#include "vkd_base.h"

typedef struct vkd_st_out {
    const char *name;
    vkd_dtype dtype;           /* F32 or I32 (any fixed-size dtype is written as given) */
    int rank;
    int64_t shape[4];
    const void *data;          /* product(shape) elements, little-endian */
} vkd_st_out;

/* Writes the tensors in order to path via a temporary file and rename, so a reader never
 * sees a partial file. metadata: NULL or pairs key, value, ..., NULL. */
vkd_result vkd_st_write(const char *path, const vkd_st_out *t, size_t n, const char *const *metadata,
                        vkd_error *err);

#endif
