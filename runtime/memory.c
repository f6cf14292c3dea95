/* memory.c: device memory sub-allocator, tensors split into binding-sized chunks, and
 * synchronous uploads/downloads (mapped on UMA devices, staged otherwise). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t staging_bytes = 64ull << 20;

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static vkd_result block_add(vkd_ctx *ctx, uint64_t size, bool dedicated, uint32_t *out,
                            vkd_error *err) {
    uint32_t slot = ctx->nblocks;
    for (uint32_t i = 0; i < ctx->nblocks; i++)
        if (!ctx->blocks[i].memory) { slot = i; break; }
    if (slot == ctx->nblocks) {
        if (ctx->nblocks == ctx->cap_blocks) {
            uint32_t cap = ctx->cap_blocks ? ctx->cap_blocks * 2 : 16;
            vkd_mem_block *b = realloc(ctx->blocks, cap * sizeof *b);
            if (!b) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
            ctx->blocks = b;
            ctx->cap_blocks = cap;
        }
        ctx->nblocks++;
    }
    vkd_mem_block *b = &ctx->blocks[slot];
    memset(b, 0, sizeof *b);
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = size,
        .memoryTypeIndex = ctx->mem_type,
    };
    VkResult vr = vkAllocateMemory(ctx->device, &ai, NULL, &b->memory);
    if (vr != VK_SUCCESS) {
        b->memory = VK_NULL_HANDLE;
        if (slot == ctx->nblocks - 1) ctx->nblocks--;
        if (vr == VK_ERROR_OUT_OF_DEVICE_MEMORY || vr == VK_ERROR_OUT_OF_HOST_MEMORY)
            return vkd_fail(err, VKD_ERR_DEVICE_MEMORY,
                            "device memory exhausted allocating %.1f MiB on %s",
                            size / 1048576.0, ctx->info.name);
        return vkd_vk_fail(err, vr, "vkAllocateMemory");
    }
    if (ctx->mapped) {
        void *p;
        vr = vkMapMemory(ctx->device, b->memory, 0, VK_WHOLE_SIZE, 0, &p);
        if (vr != VK_SUCCESS) {
            vkFreeMemory(ctx->device, b->memory, NULL);
            b->memory = VK_NULL_HANDLE;
            return vkd_vk_fail(err, vr, "vkMapMemory");
        }
        b->map = p;
    }
    b->size = size;
    b->dedicated = dedicated;
    b->cap = 8;
    b->free_off = malloc(b->cap * sizeof(uint64_t));
    b->free_size = malloc(b->cap * sizeof(uint64_t));
    if (!b->free_off || !b->free_size) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    b->free_off[0] = 0;
    b->free_size[0] = size;
    b->nfree = 1;
    *out = slot;
    return VKD_OK;
}

static void block_release(vkd_ctx *ctx, vkd_mem_block *b) {
    if (!b->memory) return;
    if (b->map) vkUnmapMemory(ctx->device, b->memory);
    vkFreeMemory(ctx->device, b->memory, NULL);
    free(b->free_off);
    free(b->free_size);
    memset(b, 0, sizeof *b);
}

/* First fit inside one block; returns false when no range fits. */
static bool block_take(vkd_mem_block *b, uint64_t size, uint64_t align, uint64_t *off) {
    for (uint32_t i = 0; i < b->nfree; i++) {
        uint64_t start = align_up(b->free_off[i], align);
        uint64_t end = b->free_off[i] + b->free_size[i];
        if (start + size > end) continue;
        /* split [free_off, start) [start, start+size) [start+size, end) */
        uint64_t head = start - b->free_off[i], tail = end - (start + size);
        if (head && tail) {
            if (b->nfree == b->cap) {
                uint32_t cap = b->cap * 2;
                uint64_t *o = realloc(b->free_off, cap * sizeof *o);
                if (!o) return false;
                b->free_off = o;
                uint64_t *s = realloc(b->free_size, cap * sizeof *s);
                if (!s) return false;
                b->free_size = s;
                b->cap = cap;
            }
            memmove(b->free_off + i + 2, b->free_off + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
            memmove(b->free_size + i + 2, b->free_size + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
            b->free_size[i] = head;
            b->free_off[i + 1] = start + size;
            b->free_size[i + 1] = tail;
            b->nfree++;
        } else if (head) {
            b->free_size[i] = head;
        } else if (tail) {
            b->free_off[i] = start + size;
            b->free_size[i] = tail;
        } else {
            memmove(b->free_off + i, b->free_off + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
            memmove(b->free_size + i, b->free_size + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
            b->nfree--;
        }
        b->live++;
        *off = start;
        return true;
    }
    return false;
}

vkd_result vkd_mem_alloc(vkd_ctx *ctx, VkBuffer buf, uint32_t *block, uint64_t *offset,
                         uint8_t **map, vkd_error *err) {
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->device, buf, &req);
    if (!(req.memoryTypeBits & (1u << ctx->mem_type)))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "vulkan: buffer cannot use memory type %u",
                        ctx->mem_type);
    if (ctx->info.max_memory_allocation && req.size > ctx->info.max_memory_allocation)
        return vkd_fail(err, VKD_ERR_DEVICE_MEMORY,
                        "allocation of %.1f MiB exceeds the device's maxMemoryAllocationSize "
                        "(%.1f MiB)", req.size / 1048576.0,
                        ctx->info.max_memory_allocation / 1048576.0);
    uint32_t b = UINT32_MAX;
    uint64_t off = 0;
    if (req.size > ctx->block_size / 2) {
        vkd_result r = block_add(ctx, req.size, true, &b, err);
        if (r) return r;
        block_take(&ctx->blocks[b], req.size, req.alignment, &off);
    } else {
        for (uint32_t i = 0; i < ctx->nblocks && b == UINT32_MAX; i++)
            if (ctx->blocks[i].memory && !ctx->blocks[i].dedicated &&
                block_take(&ctx->blocks[i], req.size, req.alignment, &off))
                b = i;
        if (b == UINT32_MAX) {
            vkd_result r = block_add(ctx, ctx->block_size, false, &b, err);
            if (r) return r;
            if (!block_take(&ctx->blocks[b], req.size, req.alignment, &off))
                return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        }
    }
    VkResult vr = vkBindBufferMemory(ctx->device, buf, ctx->blocks[b].memory, off);
    if (vr != VK_SUCCESS) {
        vkd_mem_free(ctx, b, off, req.size);
        return vkd_vk_fail(err, vr, "vkBindBufferMemory");
    }
    *block = b;
    *offset = off;
    *map = ctx->blocks[b].map ? ctx->blocks[b].map + off : NULL;
    return VKD_OK;
}

void vkd_mem_free(vkd_ctx *ctx, uint32_t block, uint64_t offset, uint64_t size) {
    if (block >= ctx->nblocks) return;
    vkd_mem_block *b = &ctx->blocks[block];
    if (!b->memory) return;
    if (--b->live == 0) {
        if (b->dedicated) {
            block_release(ctx, b);
            return;
        }
        b->free_off[0] = 0;
        b->free_size[0] = b->size;
        b->nfree = 1;
        return;
    }
    /* insert [offset, offset+size) and merge neighbours */
    uint32_t i = 0;
    while (i < b->nfree && b->free_off[i] < offset) i++;
    bool merge_prev = i > 0 && b->free_off[i - 1] + b->free_size[i - 1] == offset;
    bool merge_next = i < b->nfree && offset + size == b->free_off[i];
    if (merge_prev && merge_next) {
        b->free_size[i - 1] += size + b->free_size[i];
        memmove(b->free_off + i, b->free_off + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
        memmove(b->free_size + i, b->free_size + i + 1, (b->nfree - i - 1) * sizeof(uint64_t));
        b->nfree--;
    } else if (merge_prev) {
        b->free_size[i - 1] += size;
    } else if (merge_next) {
        b->free_off[i] = offset;
        b->free_size[i] += size;
    } else {
        if (b->nfree == b->cap) {
            uint32_t cap = b->cap * 2;
            uint64_t *o = realloc(b->free_off, cap * sizeof *o);
            uint64_t *s = o ? realloc(b->free_size, cap * sizeof *s) : NULL;
            if (o) b->free_off = o;
            if (!o || !s) return; /* leak the range rather than corrupt the list */
            b->free_size = s;
            b->cap = cap;
        }
        memmove(b->free_off + i + 1, b->free_off + i, (b->nfree - i) * sizeof(uint64_t));
        memmove(b->free_size + i + 1, b->free_size + i, (b->nfree - i) * sizeof(uint64_t));
        b->free_off[i] = offset;
        b->free_size[i] = size;
        b->nfree++;
    }
}

void vkd_mem_destroy_all(vkd_ctx *ctx) {
    for (uint32_t i = 0; i < ctx->nblocks; i++) block_release(ctx, &ctx->blocks[i]);
    free(ctx->blocks);
    ctx->blocks = NULL;
    ctx->nblocks = ctx->cap_blocks = 0;
}

vkd_result vkd_staging_create(vkd_ctx *ctx, uint64_t size, vkd_staging *s, vkd_error *err) {
    memset(s, 0, sizeof *s);
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
    };
    VKD_CHECK_VK(err, vkCreateBuffer(ctx->device, &bci, NULL, &s->buffer), "vkCreateBuffer(staging)");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->device, s->buffer, &req);
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = ctx->staging_type,
    };
    VkResult vr = vkAllocateMemory(ctx->device, &ai, NULL, &s->memory);
    void *p = NULL;
    if (vr == VK_SUCCESS) vr = vkBindBufferMemory(ctx->device, s->buffer, s->memory, 0);
    if (vr == VK_SUCCESS) vr = vkMapMemory(ctx->device, s->memory, 0, VK_WHOLE_SIZE, 0, &p);
    if (vr != VK_SUCCESS) {
        vkd_staging_destroy(ctx, s);
        return vkd_vk_fail(err, vr, "staging buffer");
    }
    s->map = p;
    s->size = size;
    return VKD_OK;
}

void vkd_staging_destroy(vkd_ctx *ctx, vkd_staging *s) {
    if (s->buffer) vkDestroyBuffer(ctx->device, s->buffer, NULL);
    if (s->memory) vkFreeMemory(ctx->device, s->memory, NULL);
    memset(s, 0, sizeof *s);
}

/* Rows per chunk: whole rows within the binding limit (VKD_LAYOUT_ROWS), whole blocks of
 * VKD_BLOCK_ROWS rows within one texel view (VKD_LAYOUT_BLOCKS). 0: a row (block) is too big. */
static uint64_t chunk_rows(const vkd_ctx *ctx, vkd_layout layout, uint64_t row_bytes,
                           uint64_t row_texels) {
    if (layout == VKD_LAYOUT_ROWS) return ctx->max_binding / row_bytes;
    uint64_t texels = ctx->profile.max_texel_elements;
    uint64_t bytes_cap = ctx->info.max_memory_allocation ? ctx->info.max_memory_allocation : UINT64_MAX;
    if (texels > bytes_cap / 16) texels = bytes_cap / 16;
    return texels / (row_texels * VKD_BLOCK_ROWS) * VKD_BLOCK_ROWS;
}

/* Device bytes of a chunk of `rows` rows. */
static uint64_t chunk_bytes(const vkd_tensor *t, uint64_t rows) {
    if (t->layout == VKD_LAYOUT_ROWS) return rows * t->row_bytes;
    return (rows + VKD_BLOCK_ROWS - 1) / VKD_BLOCK_ROWS * VKD_BLOCK_ROWS * t->row_texels * 16;
}

bool vkd_chunk_texel_fits(const vkd_ctx *ctx, const vkd_chunk *ch) {
    uint64_t talign = ctx->info.min_texel_offset_alignment;
    return ch->base % 16 == 0 && (!talign || ch->base % talign == 0) &&
           align_up(ch->bytes, 16) / 16 <= ctx->profile.max_texel_elements;
}

vkd_result vkd_chunk_texel_view(vkd_ctx *ctx, vkd_chunk *ch, vkd_error *err) {
    VkBufferViewCreateInfo vci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = ch->buffer,
        .format = VK_FORMAT_R32G32B32A32_UINT,
        .offset = ch->base,
        .range = align_up(ch->bytes, 16), /* whole texels (the buffer is rounded up to them) */
    };
    VKD_CHECK_VK(err, vkCreateBufferView(ctx->device, &vci, NULL, &ch->view), "vkCreateBufferView");
    return VKD_OK;
}

/* views: row-major chunks also get a texel view (vkd_tensor_create_kv), chunked so that each
 * fits one; otherwise, with the profile's x_texel, each chunk that fits one gets one */
static vkd_result tensor_create(vkd_ctx *ctx, vkd_dtype dtype, int ndim, const int64_t *shape,
                                vkd_layout layout, bool views, const char *name, vkd_tensor **out,
                                vkd_error *err) {
    *out = NULL;
    if (ndim < 1 || ndim > VKD_MAX_DIMS)
        return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': rank %d not in 1..%d", name, ndim,
                        VKD_MAX_DIMS);
    size_t esize = vkd_dtype_size(dtype);
    if (!esize) return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': bad dtype", name);
    if (layout != VKD_LAYOUT_ROWS && layout != VKD_LAYOUT_BLOCKS)
        return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': bad layout %d", name, (int)layout);
    uint64_t rows = 1;
    for (int i = 0; i < ndim - 1; i++) {
        if (shape[i] <= 0 || __builtin_mul_overflow(rows, (uint64_t)shape[i], &rows))
            return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': bad shape", name);
    }
    if (shape[ndim - 1] <= 0) return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': bad shape", name);
    uint64_t cols = (uint64_t)shape[ndim - 1], row_bytes, bytes;
    if (__builtin_mul_overflow(cols, (uint64_t)esize, &row_bytes) ||
        __builtin_mul_overflow(rows, row_bytes, &bytes) || bytes > UINT64_MAX / 2)
        return vkd_fail(err, VKD_ERR_INVALID, "tensor '%s': size overflows", name);
    if (ctx->info.device_local_bytes && bytes > ctx->info.device_local_bytes)
        return vkd_fail(err, VKD_ERR_DEVICE_MEMORY,
                        "tensor '%s' needs %.2f GiB but the device has %.2f GiB of device memory",
                        name, bytes / 1073741824.0, ctx->info.device_local_bytes / 1073741824.0);
    uint64_t row_texels = (row_bytes + 15) / 16;
    uint64_t per_chunk = chunk_rows(ctx, layout, row_bytes, row_texels);
    if (views && layout == VKD_LAYOUT_ROWS &&
        per_chunk * row_bytes > ctx->profile.max_texel_elements * 16)  /* one view a chunk */
        per_chunk = ctx->profile.max_texel_elements * 16 / row_bytes;
    if (!per_chunk) {
        if (layout == VKD_LAYOUT_ROWS)
            return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                            "tensor '%s': one row is %llu bytes, more than the device's storage "
                            "binding limit (%llu bytes)", name, (unsigned long long)row_bytes,
                            (unsigned long long)ctx->max_binding);
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "tensor '%s': a block of %u rows is %llu texels, more than one texel "
                        "buffer view holds (%llu)", name, VKD_BLOCK_ROWS,
                        (unsigned long long)(row_texels * VKD_BLOCK_ROWS),
                        (unsigned long long)ctx->profile.max_texel_elements);
    }
    uint64_t nchunks = (rows + per_chunk - 1) / per_chunk;
    /* Keep chunks equal-sized: ops index chunk c's rows as c * rows_per_chunk. */
    vkd_tensor *t = calloc(1, sizeof *t);
    vkd_chunk *chunks = calloc(nchunks, sizeof *chunks);
    if (!t || !chunks) {
        free(t);
        free(chunks);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    }
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = row_bytes;
    t->bytes = bytes;
    t->layout = layout;
    t->row_texels = layout == VKD_LAYOUT_BLOCKS ? row_texels : 0;
    t->chunks = chunks;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "tensor");
    VkBufferUsageFlags usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                               (layout == VKD_LAYOUT_ROWS ? VK_BUFFER_USAGE_STORAGE_BUFFER_BIT : 0) |
                               (layout == VKD_LAYOUT_BLOCKS || views || ctx->profile.x_texel
                                    ? VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT : 0);
    for (uint64_t c = 0; c < nchunks; c++) {
        vkd_chunk *ch = &chunks[c];
        ch->row0 = c * per_chunk;
        ch->rows = rows - ch->row0 < per_chunk ? rows - ch->row0 : per_chunk;
        ch->bytes = chunk_bytes(t, ch->rows);
        VkBufferCreateInfo bci = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
            .size = align_up(ch->bytes, 16),
            .usage = usage,
        };
        VkResult vr = vkCreateBuffer(ctx->device, &bci, NULL, &ch->buffer);
        vkd_result r = VKD_OK;
        if (vr != VK_SUCCESS) r = vkd_vk_fail(err, vr, "vkCreateBuffer");
        if (!r) r = vkd_mem_alloc(ctx, ch->buffer, &ch->block, &ch->offset, &ch->map, err);
        if (r) {
            if (vr == VK_SUCCESS) {
                vkDestroyBuffer(ctx->device, ch->buffer, NULL);
                ch->buffer = VK_NULL_HANDLE;
            }
            t->nchunks = (uint32_t)c;
            vkd_tensor_destroy(t);
            return vkd_error_prefix(err, "tensor '%s' (%.1f MiB)", name, bytes / 1048576.0);
        }
        t->nchunks = (uint32_t)c + 1; /* bound: vkd_tensor_destroy frees it from here on */
        ch->texel_only = layout == VKD_LAYOUT_BLOCKS;
        bool view = layout == VKD_LAYOUT_BLOCKS || views ||
                    (ctx->profile.x_texel && vkd_chunk_texel_fits(ctx, ch));
        if (view && (r = vkd_chunk_texel_view(ctx, ch, err))) {
            vkd_tensor_destroy(t);
            return vkd_error_prefix(err, "tensor '%s'", name);
        }
    }
    /* zero fill */
    if (ctx->mapped) {
        for (uint32_t c = 0; c < t->nchunks; c++) memset(chunks[c].map, 0, align_up(chunks[c].bytes, 16));
    } else {
        VkCommandBuffer cb;
        vkd_result r = vkd_oneshot_begin(ctx, &cb, err);
        if (!r) {
            for (uint32_t c = 0; c < t->nchunks; c++)
                vkCmdFillBuffer(cb, chunks[c].buffer, 0, VK_WHOLE_SIZE, 0);
            r = vkd_oneshot_submit(ctx, cb, err);
        }
        if (r) {
            vkd_tensor_destroy(t);
            return r;
        }
    }
    *out = t;
    return VKD_OK;
}

vkd_result vkd_tensor_create_layout(vkd_ctx *ctx, vkd_dtype dtype, int ndim, const int64_t *shape,
                                    vkd_layout layout, const char *name, vkd_tensor **out,
                                    vkd_error *err) {
    return tensor_create(ctx, dtype, ndim, shape, layout, false, name, out, err);
}

vkd_result vkd_tensor_create_kv(vkd_ctx *ctx, vkd_dtype dtype, uint64_t rows, uint64_t cols,
                                const char *name, vkd_tensor **out, vkd_error *err) {
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    return tensor_create(ctx, dtype, 2, shape, VKD_LAYOUT_ROWS, ctx->profile.kv_texel, name, out, err);
}

vkd_result vkd_tensor_create_stack(vkd_ctx *ctx, vkd_dtype dtype, uint32_t n, const uint64_t *rows,
                                   uint64_t cols, const char *const *names, vkd_tensor **stack,
                                   vkd_tensor **members, vkd_error *err) {
    *stack = NULL;
    for (uint32_t i = 0; i < n; i++) members[i] = NULL;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!rows[i] || rows[i] > UINT32_MAX)
            return vkd_fail(err, VKD_ERR_INVALID, "stack: matrix '%s' has %llu rows", names[i],
                            (unsigned long long)rows[i]);
        total += (rows[i] + VKD_BLOCK_ROWS - 1) / VKD_BLOCK_ROWS * VKD_BLOCK_ROWS;
    }
    if (!n || !cols) return vkd_fail(err, VKD_ERR_INVALID, "stack: %u matrices of %llu columns", n,
                                     (unsigned long long)cols);
    int64_t shape[2] = {(int64_t)total, (int64_t)cols};
    char sname[64];
    snprintf(sname, sizeof sname, "%s (stack)", names[0]);
    vkd_tensor *s;
    vkd_result r = tensor_create(ctx, dtype, 2, shape, VKD_LAYOUT_BLOCKS, false, sname, &s, err);
    if (r) return r;
    uint64_t align = ctx->info.min_texel_offset_alignment ? ctx->info.min_texel_offset_alignment : 16;
    const vkd_chunk *sc = &s->chunks[0];
    uint64_t off = 0;
    for (uint32_t i = 0; i < n && !r; i++) {
        if (s->nchunks != 1 || off % align) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "stack of '%s': %s", names[0], s->nchunks != 1 ?
                         "more rows than one texel buffer view holds" :
                         "a matrix would start off the device's texel offset alignment");
            break;
        }
        vkd_tensor *t = calloc(1, sizeof *t);
        vkd_chunk *ch = calloc(1, sizeof *ch);
        if (!t || !ch) {
            free(t);
            free(ch);
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
            break;
        }
        t->ctx = ctx;
        t->dtype = dtype;
        t->ndim = 2;
        t->shape[0] = (int64_t)rows[i];
        t->shape[1] = (int64_t)cols;
        t->rows = rows[i];
        t->cols = cols;
        t->row_bytes = s->row_bytes;
        t->bytes = rows[i] * s->row_bytes;
        t->layout = VKD_LAYOUT_BLOCKS;
        t->row_texels = s->row_texels;
        t->nchunks = 1;
        t->chunks = ch;
        t->parent = s;
        snprintf(t->name, sizeof t->name, "%s", names[i]);
        *ch = (vkd_chunk){.buffer = sc->buffer, .rows = rows[i], .map = sc->map ? sc->map + off : NULL,
                          .block = sc->block, .offset = sc->offset, .base = off, .texel_only = true};
        ch->bytes = chunk_bytes(t, rows[i]);
        ch->bind_bytes = ch->bytes;
        members[i] = t;
        if ((r = vkd_chunk_texel_view(ctx, ch, err))) vkd_error_prefix(err, "tensor '%s'", names[i]);
        off += ch->bytes;
    }
    if (r) {
        for (uint32_t i = 0; i < n; i++) {
            vkd_tensor_destroy(members[i]);
            members[i] = NULL;
        }
        vkd_tensor_destroy(s);
        return r;
    }
    *stack = s;
    return VKD_OK;
}

vkd_result vkd_tensor_create(vkd_ctx *ctx, vkd_dtype dtype, int ndim, const int64_t *shape,
                             const char *name, vkd_tensor **out, vkd_error *err) {
    return vkd_tensor_create_layout(ctx, dtype, ndim, shape, VKD_LAYOUT_ROWS, name, out, err);
}

vkd_result vkd_tensor_create_2d(vkd_ctx *ctx, vkd_dtype dtype, uint64_t rows, uint64_t cols,
                                const char *name, vkd_tensor **out, vkd_error *err) {
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    return vkd_tensor_create(ctx, dtype, 2, shape, name, out, err);
}

void vkd_tensor_destroy(vkd_tensor *t) {
    if (!t) return;
    vkd_ctx *ctx = t->ctx;
    if (t->parent) {           /* a view owns no memory, only its texel view if any */
        if (t->chunks[0].view) vkDestroyBufferView(ctx->device, t->chunks[0].view, NULL);
        free(t->chunks);
        free(t);
        return;
    }
    for (uint32_t c = 0; c < t->nchunks; c++) {
        vkd_chunk *ch = &t->chunks[c];
        if (!ch->buffer) continue;
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(ctx->device, ch->buffer, &req);
        if (ch->view) vkDestroyBufferView(ctx->device, ch->view, NULL);
        vkDestroyBuffer(ctx->device, ch->buffer, NULL);
        vkd_mem_free(ctx, ch->block, ch->offset, req.size);
    }
    free(t->chunks);
    free(t);
}

const vkd_chunk *vkd_tensor_chunk_of_row(const vkd_tensor *t, uint64_t r) {
    uint64_t per = t->chunks[0].rows;
    uint64_t c = r / per;
    return c < t->nchunks ? &t->chunks[c] : NULL;
}

/* Walks [offset, offset+bytes) chunk by chunk: fn(chunk, offset in chunk, offset in range, n). */
typedef vkd_result (*span_fn)(vkd_ctx *ctx, const vkd_chunk *ch, uint64_t choff, uint64_t pos,
                              uint64_t n, void *user, vkd_error *err);

static vkd_result for_spans(const vkd_tensor *t, uint64_t offset, uint64_t bytes, span_fn fn,
                            void *user, vkd_error *err) {
    if (offset > t->bytes || bytes > t->bytes - offset)
        return vkd_fail(err, VKD_ERR_RANGE, "tensor '%s': byte range [%llu, +%llu) outside %llu bytes",
                        t->name, (unsigned long long)offset, (unsigned long long)bytes,
                        (unsigned long long)t->bytes);
    uint64_t pos = 0;
    while (pos < bytes) {
        uint64_t at = offset + pos;
        const vkd_chunk *ch = vkd_tensor_chunk_of_row(t, at / t->row_bytes);
        uint64_t choff = at - ch->row0 * t->row_bytes;
        uint64_t n = ch->bytes - choff;
        if (n > bytes - pos) n = bytes - pos;
        vkd_result r = fn(t->ctx, ch, choff, pos, n, user, err);
        if (r) return r;
        pos += n;
    }
    return VKD_OK;
}

typedef struct xfer {
    uint8_t *host;
    bool upload;
    vkd_staging staging;
} xfer;

static vkd_result span_xfer(vkd_ctx *ctx, const vkd_chunk *ch, uint64_t choff, uint64_t pos,
                            uint64_t n, void *user, vkd_error *err) {
    xfer *x = user;
    if (ch->map) {
        if (x->upload) memcpy(ch->map + choff, x->host + pos, n);
        else memcpy(x->host + pos, ch->map + choff, n);
        return VKD_OK;
    }
    if (!x->staging.buffer) {
        vkd_result r = vkd_staging_create(ctx, staging_bytes, &x->staging, err);
        if (r) return r;
    }
    for (uint64_t done = 0; done < n;) {
        uint64_t m = n - done < staging_bytes ? n - done : staging_bytes;
        if (x->upload) memcpy(x->staging.map, x->host + pos + done, m);
        VkCommandBuffer cb;
        vkd_result r = vkd_oneshot_begin(ctx, &cb, err);
        if (r) return r;
        VkBufferCopy region = {.size = m};
        if (x->upload) {
            region.dstOffset = ch->base + choff + done;
            vkCmdCopyBuffer(cb, x->staging.buffer, ch->buffer, 1, &region);
        } else {
            region.srcOffset = ch->base + choff + done;
            vkCmdCopyBuffer(cb, ch->buffer, x->staging.buffer, 1, &region);
        }
        r = vkd_oneshot_submit(ctx, cb, err);
        if (r) return r;
        if (!x->upload) memcpy(x->host + pos + done, x->staging.map, m);
        done += m;
    }
    return VKD_OK;
}

/* Uploads a whole row-major matrix into a VKD_LAYOUT_BLOCKS tensor, one block at a time:
 * texel j of step k of block b = bytes [16k, 16k + 16) of row b * VKD_BLOCK_ROWS + j. */
static vkd_result upload_blocks(const vkd_tensor *t, const uint8_t *src, xfer *x, vkd_error *err) {
    uint64_t step_bytes = (uint64_t)VKD_BLOCK_ROWS * 16, block_bytes = t->row_texels * step_bytes;
    uint8_t *blk = malloc(block_bytes);
    if (!blk) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    vkd_result r = VKD_OK;
    for (uint32_t c = 0; c < t->nchunks && !r; c++) {
        const vkd_chunk *ch = &t->chunks[c];
        for (uint64_t b = 0; b * VKD_BLOCK_ROWS < ch->rows && !r; b++) {
            memset(blk, 0, block_bytes);
            for (uint64_t j = 0; j < VKD_BLOCK_ROWS && b * VKD_BLOCK_ROWS + j < ch->rows; j++) {
                const uint8_t *row = src + (ch->row0 + b * VKD_BLOCK_ROWS + j) * t->row_bytes;
                for (uint64_t k = 0; k < t->row_texels; k++) {
                    uint64_t n = t->row_bytes - k * 16 < 16 ? t->row_bytes - k * 16 : 16;
                    memcpy(blk + k * step_bytes + j * 16, row + k * 16, n);
                }
            }
            x->host = blk;
            r = span_xfer(t->ctx, ch, b * block_bytes, 0, block_bytes, x, err);
        }
    }
    free(blk);
    return r;
}

static vkd_result transfer(const vkd_tensor *t, uint64_t offset, void *host, uint64_t bytes,
                           bool upload, vkd_error *err) {
    if (t->layout != VKD_LAYOUT_ROWS && (!upload || offset != 0 || bytes != t->bytes))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "tensor '%s' is in the texel block layout: it is uploaded whole and "
                        "cannot be read back (create it with VKD_LAYOUT_ROWS for that)", t->name);
    VkResult vr = vkQueueWaitIdle(t->ctx->queue);
    if (vr != VK_SUCCESS) return vkd_vk_fail(err, vr, "vkQueueWaitIdle");
    xfer x = {.host = host, .upload = upload};
    vkd_result r = t->layout == VKD_LAYOUT_ROWS ? for_spans(t, offset, bytes, span_xfer, &x, err)
                                                : upload_blocks(t, host, &x, err);
    vkd_staging_destroy(t->ctx, &x.staging);
    return r;
}

vkd_result vkd_tensor_upload(vkd_tensor *t, uint64_t offset, const void *src, uint64_t bytes,
                             vkd_error *err) {
    return transfer(t, offset, (void *)src, bytes, true, err);
}

vkd_result vkd_tensor_download(const vkd_tensor *t, uint64_t offset, void *dst, uint64_t bytes,
                               vkd_error *err) {
    return transfer(t, offset, dst, bytes, false, err);
}
