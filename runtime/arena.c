/* arena.c: tensor views (a dtype and shape over a byte range of another tensor's memory)
 * and the arena that hands out per-step temporaries as views of one buffer. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows and bytes of a shape; fails on a bad rank, dimension, dtype or overflow. */
static vkd_result shape_bytes(vkd_dtype dtype, int ndim, const int64_t *shape, const char *name,
                              uint64_t *rows, uint64_t *cols, uint64_t *bytes, vkd_error *err) {
    if (ndim < 1 || ndim > VKD_MAX_DIMS)
        return vkd_fail(err, VKD_ERR_INVALID, "view '%s': rank %d not in 1..%d", name, ndim,
                        VKD_MAX_DIMS);
    size_t esize = vkd_dtype_size(dtype);
    if (!esize) return vkd_fail(err, VKD_ERR_INVALID, "view '%s': bad dtype", name);
    uint64_t r = 1, b;
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0 || (i < ndim - 1 && __builtin_mul_overflow(r, (uint64_t)shape[i], &r)))
            return vkd_fail(err, VKD_ERR_INVALID, "view '%s': dimension %d is %lld, not positive",
                            name, i, (long long)shape[i]);
    uint64_t c = (uint64_t)shape[ndim - 1];
    if (__builtin_mul_overflow(c, (uint64_t)esize, &b) || __builtin_mul_overflow(r, b, &b))
        return vkd_fail(err, VKD_ERR_INVALID, "view '%s': size overflows", name);
    *rows = r;
    *cols = c;
    *bytes = b;
    return VKD_OK;
}

vkd_result vkd_tensor_view(const vkd_tensor *base, uint64_t offset, vkd_dtype dtype, int ndim,
                           const int64_t *shape, const char *name, vkd_tensor **out,
                           vkd_error *err) {
    *out = NULL;
    if (!name) name = "view";
    uint64_t rows, cols, bytes;
    vkd_result r = shape_bytes(dtype, ndim, shape, name, &rows, &cols, &bytes, err);
    if (r) return r;
    if (offset > base->bytes || bytes > base->bytes - offset)
        return vkd_fail(err, VKD_ERR_RANGE,
                        "view '%s': bytes [%llu, +%llu) outside tensor '%s' (%llu bytes)", name,
                        (unsigned long long)offset, (unsigned long long)bytes, base->name,
                        (unsigned long long)base->bytes);
    const vkd_chunk *pc = vkd_tensor_chunk_of_row(base, offset / base->row_bytes);
    uint64_t choff = offset - pc->row0 * base->row_bytes;
    if (choff + bytes > pc->bytes)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "view '%s': bytes [%llu, +%llu) cross a chunk boundary of tensor '%s' "
                        "(a view lies inside one buffer)", name, (unsigned long long)offset,
                        (unsigned long long)bytes, base->name);
    uint64_t at = pc->base + choff;
    uint64_t align = base->ctx->info.min_storage_buffer_offset_alignment;
    if (align < 4) align = 4;
    if (at % align)
        return vkd_fail(err, VKD_ERR_INVALID,
                        "view '%s': starts at byte %llu of its buffer, not a multiple of the "
                        "device's storage-buffer offset alignment (%llu)", name,
                        (unsigned long long)at, (unsigned long long)align);
    vkd_tensor *t = calloc(1, sizeof *t);
    vkd_chunk *ch = calloc(1, sizeof *ch);
    if (!t || !ch) {
        free(t);
        free(ch);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    }
    t->ctx = base->ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = bytes / rows;
    t->bytes = bytes;
    t->nchunks = 1;
    t->chunks = ch;
    t->parent = base;
    snprintf(t->name, sizeof t->name, "%s", name);
    ch->buffer = pc->buffer;
    ch->bytes = bytes;
    ch->row0 = 0;
    ch->rows = rows;
    ch->map = pc->map ? pc->map + choff : NULL;
    ch->block = pc->block;
    ch->offset = pc->offset;
    ch->base = at;
    /* Bind whole 16-byte words where the buffer has them (shaders read vec4s; every
     * buffer's size is a multiple of 16, see vkd_tensor_create), else up to its end. */
    uint64_t buf_end = pc->bind_bytes ? pc->base + pc->bind_bytes : (pc->bytes + 15) / 16 * 16;
    uint64_t want = (bytes + 15) / 16 * 16;
    ch->bind_bytes = at + want <= buf_end ? want : buf_end - at;
    /* a row-major base with a texel view, under the profile's x_texel: the view gets its own
     * where it starts on a texel (freed with it) */
    if (pc->view && base->layout == VKD_LAYOUT_ROWS && vkd_ctx_profile(base->ctx)->x_texel &&
        vkd_chunk_texel_fits(base->ctx, ch) && (r = vkd_chunk_texel_view(base->ctx, ch, err))) {
        free(ch);
        free(t);
        return vkd_error_prefix(err, "view '%s'", name);
    }
    *out = t;
    return VKD_OK;
}

struct vkd_arena {
    vkd_tensor *buf;           /* the backing tensor: 1 x bytes/4 f32, one chunk */
    uint64_t align, used, peak;
    vkd_tensor **taken;        /* views handed out since the last reset */
    uint32_t ntaken, cap;
};

vkd_result vkd_arena_create(vkd_ctx *ctx, uint64_t bytes, const char *name, vkd_arena **out,
                            vkd_error *err) {
    *out = NULL;
    if (!name) name = "arena";
    if (bytes == 0 || bytes > ctx->max_binding)
        return vkd_fail(err, VKD_ERR_INVALID,
                        "arena '%s': %llu bytes, expected 1 .. the binding limit (%llu)", name,
                        (unsigned long long)bytes, (unsigned long long)ctx->max_binding);
    vkd_arena *a = calloc(1, sizeof *a);
    if (!a) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    int64_t words = (int64_t)((bytes + 3) / 4);
    vkd_result r = vkd_tensor_create(ctx, VKD_DTYPE_F32, 1, &words, name, &a->buf, err);
    if (r) {
        free(a);
        return r;
    }
    a->align = ctx->info.min_storage_buffer_offset_alignment;
    if (a->align < 16) a->align = 16;
    *out = a;
    return VKD_OK;
}

void vkd_arena_reset(vkd_arena *a) {
    if (!a) return;
    for (uint32_t i = 0; i < a->ntaken; i++) vkd_tensor_destroy(a->taken[i]);
    a->ntaken = 0;
    a->used = 0;
}

void vkd_arena_destroy(vkd_arena *a) {
    if (!a) return;
    vkd_arena_reset(a);
    free(a->taken);
    vkd_tensor_destroy(a->buf);
    free(a);
}

vkd_result vkd_arena_tensor(vkd_arena *a, vkd_dtype dtype, int ndim, const int64_t *shape,
                            const char *name, vkd_tensor **out, vkd_error *err) {
    *out = NULL;
    if (!name) name = "temporary";
    uint64_t rows, cols, bytes;
    vkd_result r = shape_bytes(dtype, ndim, shape, name, &rows, &cols, &bytes, err);
    if (r) return r;
    uint64_t at = (a->used + a->align - 1) / a->align * a->align;
    if (at > a->buf->bytes || bytes > a->buf->bytes - at)
        return vkd_fail(err, VKD_ERR_DEVICE_MEMORY,
                        "arena '%s': no room for '%s' (%llu bytes at %llu of %llu)", a->buf->name,
                        name, (unsigned long long)bytes, (unsigned long long)at,
                        (unsigned long long)a->buf->bytes);
    if (a->ntaken == a->cap) {
        uint32_t c = a->cap ? a->cap * 2 : 16;
        vkd_tensor **p = realloc(a->taken, c * sizeof *p);
        if (!p) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        a->taken = p;
        a->cap = c;
    }
    r = vkd_tensor_view(a->buf, at, dtype, ndim, shape, name, out, err);
    if (r) return r;
    a->taken[a->ntaken++] = *out;
    a->used = at + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return VKD_OK;
}

uint64_t vkd_arena_used(const vkd_arena *a) { return a->used; }
uint64_t vkd_arena_peak(const vkd_arena *a) { return a->peak; }
