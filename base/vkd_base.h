/* vkd_base.h: result codes, error messages and dtypes shared by every layer.
 * Library code never prints or exits: it returns a vkd_result and fills a vkd_error
 * with one line naming what failed (file, field, expected value). Only apps/ prints. */
#ifndef VKD_BASE_H
#define VKD_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum vkd_result {
    VKD_OK = 0,
    VKD_ERR_IO,            /* file missing, unreadable, mmap or write failed */
    VKD_ERR_FORMAT,        /* file content malformed (JSON, header, offsets) */
    VKD_ERR_INVALID,       /* bad argument, flag, or inconsistent input */
    VKD_ERR_UNSUPPORTED,   /* feature, dtype or architecture not supported */
    VKD_ERR_NOMEM,         /* host allocation failed */
    VKD_ERR_DEVICE,        /* Vulkan call failed, device lost, no device */
    VKD_ERR_DEVICE_MEMORY, /* device memory exhausted or allocation over the limit */
    VKD_ERR_RANGE,         /* index or length out of range (context too long, bad id) */
} vkd_result;

typedef struct vkd_error {
    vkd_result code;
    char msg[512];
} vkd_error;

/* Records code and a printf-style message into err (which may be NULL); returns code. */
vkd_result vkd_fail(vkd_error *err, vkd_result code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "<prefix>: <old message>". Returns err->code. */
vkd_result vkd_error_prefix(vkd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *vkd_result_name(vkd_result r);

/* Element types of tensors and safetensors entries. */
typedef enum vkd_dtype {
    VKD_DTYPE_F32 = 0,
    VKD_DTYPE_F16,
    VKD_DTYPE_BF16,
    VKD_DTYPE_I32,
    VKD_DTYPE_F64,
    VKD_DTYPE_I8,
    VKD_DTYPE_U8,
    VKD_DTYPE_I16,
    VKD_DTYPE_U16,
    VKD_DTYPE_U32,
    VKD_DTYPE_I64,
    VKD_DTYPE_U64,
    VKD_DTYPE_BOOL,
    VKD_DTYPE_COUNT
} vkd_dtype;

size_t vkd_dtype_size(vkd_dtype t);
const char *vkd_dtype_name(vkd_dtype t);          /* safetensors spelling: "BF16" */
bool vkd_dtype_parse(const char *s, vkd_dtype *out); /* inverse of vkd_dtype_name */

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool vkd_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool vkd_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* Atomic file writes: a temporary file beside path (unique, mode 0644), written, fsynced,
 * then renamed over path, so a reader sees the old file or the new one, never a torn one.
 * vkd_atomic_open creates the temporary file; the caller writes through a->f; vkd_atomic_commit
 * flushes, fsyncs, closes and renames it when ok (and every step succeeds), else removes it
 * and fails naming path. Every open is followed by exactly one commit. */
typedef struct vkd_atomic_file {
    FILE *f;
    char *tmp;
} vkd_atomic_file;
vkd_result vkd_atomic_open(vkd_atomic_file *a, const char *path, vkd_error *err);
vkd_result vkd_atomic_commit(vkd_atomic_file *a, const char *path, bool ok, vkd_error *err);
/* The whole of data (n bytes) or of text, written atomically as above. */
vkd_result vkd_write_atomic(const char *path, const void *data, size_t n, vkd_error *err);
vkd_result vkd_write_text_atomic(const char *path, const char *text, vkd_error *err);

/* bf16 / f16 conversions (round to nearest even), used by uploads and CPU references. */
float vkd_bf16_to_f32(uint16_t h);
uint16_t vkd_f32_to_bf16(float f);
float vkd_f16_to_f32(uint16_t h);
uint16_t vkd_f32_to_f16(float f);

#endif
