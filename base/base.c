/* base.c: error messages, dtype table, half-precision conversions. */
#include "vkd_base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

vkd_result vkd_fail(vkd_error *err, vkd_result code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

vkd_result vkd_error_prefix(vkd_error *err, const char *fmt, ...) {
    if (!err) return VKD_ERR_INVALID;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", prefix, old);
    return err->code;
}

const char *vkd_result_name(vkd_result r) {
    switch (r) {
    case VKD_OK: return "ok";
    case VKD_ERR_IO: return "I/O error";
    case VKD_ERR_FORMAT: return "format error";
    case VKD_ERR_INVALID: return "invalid input";
    case VKD_ERR_UNSUPPORTED: return "unsupported";
    case VKD_ERR_NOMEM: return "out of host memory";
    case VKD_ERR_DEVICE: return "device error";
    case VKD_ERR_DEVICE_MEMORY: return "out of device memory";
    case VKD_ERR_RANGE: return "out of range";
    }
    return "unknown error";
}

static const struct { const char *name; size_t size; } dtype_table[VKD_DTYPE_COUNT] = {
    [VKD_DTYPE_F32] = {"F32", 4},  [VKD_DTYPE_F16] = {"F16", 2}, [VKD_DTYPE_BF16] = {"BF16", 2},
    [VKD_DTYPE_I32] = {"I32", 4},  [VKD_DTYPE_F64] = {"F64", 8}, [VKD_DTYPE_I8] = {"I8", 1},
    [VKD_DTYPE_U8] = {"U8", 1},    [VKD_DTYPE_I16] = {"I16", 2}, [VKD_DTYPE_U16] = {"U16", 2},
    [VKD_DTYPE_U32] = {"U32", 4},  [VKD_DTYPE_I64] = {"I64", 8}, [VKD_DTYPE_U64] = {"U64", 8},
    [VKD_DTYPE_BOOL] = {"BOOL", 1},
};

size_t vkd_dtype_size(vkd_dtype t) {
    return (unsigned)t < VKD_DTYPE_COUNT ? dtype_table[t].size : 0;
}

const char *vkd_dtype_name(vkd_dtype t) {
    return (unsigned)t < VKD_DTYPE_COUNT ? dtype_table[t].name : "?";
}

bool vkd_dtype_parse(const char *s, vkd_dtype *out) {
    for (int i = 0; i < VKD_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = (vkd_dtype)i;
            return true;
        }
    }
    return false;
}

float vkd_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t vkd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float vkd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t vkd_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (a < 0x38800000u) { /* subnormal or zero in f16 */
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        /* value = m * 2^(e-150); f16 subnormal unit = 2^-24 => q = m * 2^(e-126) */
        uint32_t sh = 126 - e;
        uint32_t q = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((a >> 13) - ((127 - 15) << 10));
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

vkd_result vkd_atomic_open(vkd_atomic_file *a, const char *path, vkd_error *err) {
    a->f = NULL;
    size_t len = strlen(path);
    a->tmp = malloc(len + 16);
    if (!a->tmp) return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
    snprintf(a->tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd >= 0 && (fchmod(fd, 0644) != 0 || !(a->f = fdopen(fd, "wb")))) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        errno = e;
    }
    if (!a->f) {
        vkd_fail(err, VKD_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        return VKD_ERR_IO;
    }
    return VKD_OK;
}

vkd_result vkd_atomic_commit(vkd_atomic_file *a, const char *path, bool ok, vkd_error *err) {
    if (!a->f) return vkd_fail(err, VKD_ERR_IO, "%s: no open temporary file", path);
    ok = fflush(a->f) == 0 && fsync(fileno(a->f)) == 0 && ok;
    int e = errno;
    ok = fclose(a->f) == 0 && ok;
    a->f = NULL;
    if (ok && rename(a->tmp, path) != 0) ok = false, e = errno;
    if (!ok) unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
    if (!ok) return vkd_fail(err, VKD_ERR_IO, "%s: write failed: %s", path, e ? strerror(e) : "short write");
    return VKD_OK;
}

vkd_result vkd_write_atomic(const char *path, const void *data, size_t n, vkd_error *err) {
    vkd_atomic_file a;
    vkd_result r = vkd_atomic_open(&a, path, err);
    if (r != VKD_OK) return r;
    return vkd_atomic_commit(&a, path, fwrite(data, 1, n, a.f) == n, err);
}

vkd_result vkd_write_text_atomic(const char *path, const char *text, vkd_error *err) {
    return vkd_write_atomic(path, text, strlen(text), err);
}
