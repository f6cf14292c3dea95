/* base.c: error messages, dtype table, half-precision conversions. */
#include "vkd_base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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

vkd_result vkd_write_text_atomic(const char *path, const char *text, vkd_error *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return vkd_fail(err, VKD_ERR_IO, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return vkd_fail(err, VKD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vkd_fail(err, VKD_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return VKD_OK;
}
