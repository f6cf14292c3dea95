/* recorder.c: command recording with barriers derived from each command's declared reads
 * and writes, small updates and read-backs inside the submission, GPU timestamps. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define SETS_PER_POOL 512
#define MAX_TIMESTAMPS 8192
#define READBACK_MIN (1u << 20)

typedef struct pending_read {
    void *dst;
    uint64_t staging_off, bytes;
} pending_read;

struct vkd_rec {
    vkd_ctx *ctx;
    VkCommandPool pool;
    VkCommandBuffer cb;
    VkFence fence;
    bool recording;
    vkd_error err;             /* err.code is the sticky status */

    VkDescriptorPool *dpools;
    uint32_t ndpools, cur_dpool, sets_in_cur;

    /* hazard tracking: byte ranges written / read since the last barrier */
    vkd_range *written, *read;
    uint32_t nwritten, nread, cap_written, cap_read;
    uint32_t barriers;         /* placed since vkd_rec_begin (tests read it) */
    uint32_t dispatches;       /* recorded since vkd_rec_begin (benchmarks print it) */

    /* read-backs */
    vkd_staging readback;
    uint64_t readback_used;
    pending_read *reads;
    uint32_t nreads, cap_reads;

    /* profiling */
    VkQueryPool qpool;
    uint32_t nstamps;
    vkd_shader_id stamp_shader[MAX_TIMESTAMPS];
};

static vkd_result rec_fail_vk(vkd_rec *rec, VkResult vr, const char *what) {
    if (rec->err.code == VKD_OK) vkd_vk_fail(&rec->err, vr, what);
    return rec->err.code;
}

static vkd_result rec_fail(vkd_rec *rec, vkd_result code, const char *msg) {
    if (rec->err.code == VKD_OK) vkd_fail(&rec->err, code, "%s", msg);
    return rec->err.code;
}

vkd_error *vkd_rec_error(vkd_rec *rec) { return &rec->err; }
vkd_ctx *vkd_rec_ctx(vkd_rec *rec) { return rec->ctx; }
uint32_t vkd_rec_barriers(const vkd_rec *rec) { return rec->barriers; }
uint32_t vkd_rec_dispatches(const vkd_rec *rec) { return rec->dispatches; }

vkd_result vkd_rec_create(vkd_ctx *ctx, vkd_rec **out, vkd_error *err) {
    *out = NULL;
    vkd_rec *rec = calloc(1, sizeof *rec);
    if (!rec) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    rec->ctx = ctx;
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = ctx->queue_family,
    };
    VkResult vr = vkCreateCommandPool(ctx->device, &pci, NULL, &rec->pool);
    if (vr == VK_SUCCESS) {
        VkCommandBufferAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            .commandPool = rec->pool,
            .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
            .commandBufferCount = 1,
        };
        vr = vkAllocateCommandBuffers(ctx->device, &ai, &rec->cb);
    }
    if (vr == VK_SUCCESS) {
        VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        vr = vkCreateFence(ctx->device, &fci, NULL, &rec->fence);
    }
    if (vr == VK_SUCCESS && ctx->profiling && ctx->info.timestamps) {
        VkQueryPoolCreateInfo qci = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = MAX_TIMESTAMPS,
        };
        vr = vkCreateQueryPool(ctx->device, &qci, NULL, &rec->qpool);
    }
    if (vr != VK_SUCCESS) {
        vkd_rec_destroy(rec);
        return vkd_vk_fail(err, vr, "creating a command recorder");
    }
    *out = rec;
    return VKD_OK;
}

void vkd_rec_destroy(vkd_rec *rec) {
    if (!rec) return;
    VkDevice dev = rec->ctx->device;
    if (rec->recording) {
        vkEndCommandBuffer(rec->cb);
    }
    for (uint32_t i = 0; i < rec->ndpools; i++) vkDestroyDescriptorPool(dev, rec->dpools[i], NULL);
    free(rec->dpools);
    if (rec->qpool) vkDestroyQueryPool(dev, rec->qpool, NULL);
    if (rec->fence) vkDestroyFence(dev, rec->fence, NULL);
    if (rec->pool) vkDestroyCommandPool(dev, rec->pool, NULL);
    vkd_staging_destroy(rec->ctx, &rec->readback);
    free(rec->written);
    free(rec->read);
    free(rec->reads);
    free(rec);
}

vkd_result vkd_rec_begin(vkd_rec *rec) {
    vkd_ctx *ctx = rec->ctx;
    rec->err.code = VKD_OK;
    rec->err.msg[0] = 0;
    rec->nwritten = rec->nread = rec->nreads = 0;
    rec->barriers = 0;
    rec->dispatches = 0;
    rec->readback_used = 0;
    rec->nstamps = 0;
    for (uint32_t i = 0; i < rec->ndpools; i++) vkResetDescriptorPool(ctx->device, rec->dpools[i], 0);
    rec->cur_dpool = 0;
    rec->sets_in_cur = 0;
    if (rec->recording) vkEndCommandBuffer(rec->cb);
    rec->recording = false;
    VkResult vr = vkResetCommandBuffer(rec->cb, 0);
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    vr = vkBeginCommandBuffer(rec->cb, &bi);
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkBeginCommandBuffer");
    rec->recording = true;
    if (rec->qpool) {
        vkCmdResetQueryPool(rec->cb, rec->qpool, 0, MAX_TIMESTAMPS);
        vkCmdWriteTimestamp(rec->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, rec->qpool, 0);
        rec->nstamps = 1;
    }
    return VKD_OK;
}

static bool overlaps(const vkd_range *set, uint32_t n, vkd_range r) {
    for (uint32_t i = 0; i < n; i++)
        if (set[i].buffer == r.buffer && set[i].lo < r.hi && r.lo < set[i].hi) return true;
    return false;
}

bool vkd_hazard(const vkd_range *written, uint32_t nwritten, const vkd_range *read,
                uint32_t nread, const vkd_range *reads, uint32_t nreads,
                const vkd_range *writes, uint32_t nwrites) {
    for (uint32_t i = 0; i < nreads; i++)
        if (overlaps(written, nwritten, reads[i])) return true;             /* RAW */
    for (uint32_t i = 0; i < nwrites; i++)
        if (overlaps(written, nwritten, writes[i]) || overlaps(read, nread, writes[i]))
            return true;                                                   /* WAW, WAR */
    return false;
}

/* Adds r to the set, growing a range of the same buffer that it overlaps or touches
 * instead of adding a second entry (the set is a cover, not a log). */
static bool push_range(vkd_range **set, uint32_t *n, uint32_t *cap, vkd_range r) {
    for (uint32_t i = 0; i < *n; i++) {
        vkd_range *e = &(*set)[i];
        if (e->buffer == r.buffer && e->lo <= r.hi && r.lo <= e->hi) {
            if (r.lo < e->lo) e->lo = r.lo;
            if (r.hi > e->hi) e->hi = r.hi;
            return true;
        }
    }
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 64;
        vkd_range *s = realloc(*set, c * sizeof *s);
        if (!s) return false;
        *set = s;
        *cap = c;
    }
    (*set)[(*n)++] = r;
    return true;
}

static void barrier(vkd_rec *rec) {
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    const VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(rec->cb, st, st, 0, 1, &mb, 0, NULL, 0, NULL);
    rec->nwritten = rec->nread = 0;
    rec->barriers++;
}

/* Declares the byte ranges a command reads and writes; inserts a barrier on any hazard
 * (read-after-write, write-after-write, write-after-read) with earlier commands. */
static vkd_result track(vkd_rec *rec, const vkd_range *reads, uint32_t nr, const vkd_range *writes,
                        uint32_t nw) {
    if (vkd_hazard(rec->written, rec->nwritten, rec->read, rec->nread, reads, nr, writes, nw))
        barrier(rec);
    for (uint32_t i = 0; i < nr; i++)
        if (!push_range(&rec->read, &rec->nread, &rec->cap_read, reads[i]))
            return rec_fail(rec, VKD_ERR_NOMEM, "out of host memory");
    for (uint32_t i = 0; i < nw; i++)
        if (!push_range(&rec->written, &rec->nwritten, &rec->cap_written, writes[i]))
            return rec_fail(rec, VKD_ERR_NOMEM, "out of host memory");
    return VKD_OK;
}

static vkd_result alloc_set(vkd_rec *rec, uint32_t mask, VkDescriptorSet *out) {
    vkd_ctx *ctx = rec->ctx;
    if (rec->cur_dpool >= rec->ndpools || rec->sets_in_cur == SETS_PER_POOL) {
        if (rec->cur_dpool < rec->ndpools && rec->sets_in_cur == SETS_PER_POOL) {
            rec->cur_dpool++;
            rec->sets_in_cur = 0;
        }
        if (rec->cur_dpool >= rec->ndpools) {
            VkDescriptorPoolSize ps[2] = {
                {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * VKD_MAX_BINDINGS},
                {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, SETS_PER_POOL * VKD_TEXEL_BINDINGS},
            };
            VkDescriptorPoolCreateInfo dci = {
                .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                .maxSets = SETS_PER_POOL,
                .poolSizeCount = 2,
                .pPoolSizes = ps,
            };
            VkDescriptorPool *p = realloc(rec->dpools, (rec->ndpools + 1) * sizeof *p);
            if (!p) return rec_fail(rec, VKD_ERR_NOMEM, "out of host memory");
            rec->dpools = p;
            VkResult vr = vkCreateDescriptorPool(ctx->device, &dci, NULL, &rec->dpools[rec->ndpools]);
            if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkCreateDescriptorPool");
            rec->ndpools++;
            rec->cur_dpool = rec->ndpools - 1;
            rec->sets_in_cur = 0;
        }
    }
    VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = rec->dpools[rec->cur_dpool],
        .descriptorSetCount = 1,
        .pSetLayouts = &ctx->dsl[mask],
    };
    VkResult vr = vkAllocateDescriptorSets(ctx->device, &ai, out);
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkAllocateDescriptorSets");
    rec->sets_in_cur++;
    return VKD_OK;
}

vkd_result vkd_rec_dispatch(vkd_rec *rec, const vkd_dispatch *d) {
    if (rec->err.code) return rec->err.code;
    if (!rec->recording) return rec_fail(rec, VKD_ERR_INVALID, "dispatch outside vkd_rec_begin");
    vkd_ctx *ctx = rec->ctx;
    if (d->nbinds > VKD_MAX_BINDINGS || d->push_bytes > VKD_MAX_PUSH_BYTES || d->nspec > VKD_MAX_SPEC)
        return rec_fail(rec, VKD_ERR_INVALID, "dispatch: too many bindings, spec constants or push bytes");
    uint32_t g[3];
    for (int i = 0; i < 3; i++) {
        g[i] = d->groups[i] ? d->groups[i] : 1;
        if (g[i] > ctx->info.max_workgroup_count[i]) {
            if (rec->err.code == VKD_OK)
                vkd_fail(&rec->err, VKD_ERR_UNSUPPORTED,
                                       "shader %s: %u workgroups in dimension %d exceed the device "
                                       "limit %u", vkd_shader_table[d->shader].name, g[i], i,
                                       ctx->info.max_workgroup_count[i]);
            return rec->err.code;
        }
    }
    VkPipeline pipe;
    vkd_result r = vkd_pipeline_get(ctx, d->shader, d->spec, d->nspec, &pipe, &rec->err);
    if (r) return r;
    VkDescriptorSet set;
    uint32_t mask = vkd_shader_table[d->shader].texel_mask;
    r = alloc_set(rec, mask, &set);
    if (r) return r;
    VkDescriptorBufferInfo bi[VKD_MAX_BINDINGS];
    VkWriteDescriptorSet w[VKD_MAX_BINDINGS];
    vkd_range reads[VKD_MAX_BINDINGS], writes[VKD_MAX_BINDINGS];
    uint32_t nr = 0, nw = 0;
    for (uint32_t i = 0; i < d->nbinds; i++) {
        const vkd_chunk *ch = d->binds[i].chunk;
        if (!ch || !ch->buffer)
            return rec_fail(rec, VKD_ERR_INVALID, "dispatch: missing buffer binding");
        /* a texel binding needs the chunk's view; a texel-block chunk binds only there (a
         * row-major chunk with a view binds either way) */
        bool texel = mask >> i & 1u;
        if (texel ? !ch->view : ch->texel_only) {
            if (rec->err.code == VKD_OK)
                vkd_fail(&rec->err, VKD_ERR_UNSUPPORTED, "shader %s: binding %u expects a %s tensor",
                         vkd_shader_table[d->shader].name, i,
                         texel ? "texel-block layout or texel-viewed" : "row-major");
            return rec->err.code;
        }
        /* a view binds its own bytes, a tensor its whole buffer */
        bi[i] = (VkDescriptorBufferInfo){.buffer = ch->buffer, .offset = ch->base,
                                         .range = ch->bind_bytes ? ch->bind_bytes : VK_WHOLE_SIZE};
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = texel ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                    : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = texel ? NULL : &bi[i],
            .pTexelBufferView = texel ? &d->binds[i].chunk->view : NULL,
        };
        if (d->binds[i].access & VKD_READ) reads[nr++] = vkd_chunk_range(ch);
        if (d->binds[i].access & VKD_WRITE) writes[nw++] = vkd_chunk_range(ch);
    }
    vkUpdateDescriptorSets(ctx->device, d->nbinds, w, 0, NULL);
    r = track(rec, reads, nr, writes, nw);
    if (r) return r;
    vkCmdBindPipeline(rec->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(rec->cb, VK_PIPELINE_BIND_POINT_COMPUTE, ctx->layout[mask], 0, 1, &set,
                            0, NULL);
    if (d->push_bytes)
        vkCmdPushConstants(rec->cb, ctx->layout[mask], VK_SHADER_STAGE_COMPUTE_BIT, 0, d->push_bytes,
                           d->push);
    vkCmdDispatch(rec->cb, g[0], g[1], g[2]);
    rec->dispatches++;
    if (rec->qpool && rec->nstamps < MAX_TIMESTAMPS) {
        rec->stamp_shader[rec->nstamps] = d->shader;
        vkCmdWriteTimestamp(rec->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, rec->qpool, rec->nstamps++);
    }
    return VKD_OK;
}

/* Maps a byte range of a tensor to one chunk; the range must not cross chunks. */
static const vkd_chunk *range_chunk(vkd_rec *rec, const vkd_tensor *t, uint64_t offset,
                                    uint64_t bytes, uint64_t *choff) {
    if (offset > t->bytes || bytes > t->bytes - offset || bytes == 0) {
        rec_fail(rec, VKD_ERR_RANGE, "recorder: byte range outside the tensor");
        return NULL;
    }
    if (t->layout != VKD_LAYOUT_ROWS) {
        rec_fail(rec, VKD_ERR_UNSUPPORTED, "recorder: byte ranges of a texel-block tensor");
        return NULL;
    }
    const vkd_chunk *ch = vkd_tensor_chunk_of_row(t, offset / t->row_bytes);
    uint64_t off = offset - ch->row0 * t->row_bytes;
    if (off + bytes > ch->bytes) {
        rec_fail(rec, VKD_ERR_RANGE, "recorder: byte range crosses a chunk boundary");
        return NULL;
    }
    *choff = ch->base + off;   /* offset in the chunk's buffer */
    return ch;
}

vkd_result vkd_rec_update(vkd_rec *rec, vkd_tensor *t, uint64_t offset, const void *src,
                          uint64_t bytes) {
    if (rec->err.code) return rec->err.code;
    if (bytes > 65536 || bytes % 4 || offset % 4)
        return rec_fail(rec, VKD_ERR_INVALID, "vkd_rec_update: size must be a multiple of 4, <= 65536");
    uint64_t off;
    const vkd_chunk *ch = range_chunk(rec, t, offset, bytes, &off);
    if (!ch) return rec->err.code;
    vkd_range w = {ch->buffer, off, off + bytes};
    vkd_result r = track(rec, NULL, 0, &w, 1);
    if (r) return r;
    vkCmdUpdateBuffer(rec->cb, ch->buffer, off, bytes, src);
    return VKD_OK;
}

vkd_result vkd_rec_copy(vkd_rec *rec, vkd_tensor *dst, uint64_t dst_off, const vkd_tensor *src,
                        uint64_t src_off, uint64_t bytes) {
    if (rec->err.code) return rec->err.code;
    uint64_t so, dof;
    const vkd_chunk *sc = range_chunk(rec, src, src_off, bytes, &so);
    const vkd_chunk *dc = sc ? range_chunk(rec, dst, dst_off, bytes, &dof) : NULL;
    if (!dc) return rec->err.code;
    vkd_range rr = {sc->buffer, so, so + bytes}, wr = {dc->buffer, dof, dof + bytes};
    vkd_result r = track(rec, &rr, 1, &wr, 1);
    if (r) return r;
    VkBufferCopy region = {.srcOffset = so, .dstOffset = dof, .size = bytes};
    vkCmdCopyBuffer(rec->cb, sc->buffer, dc->buffer, 1, &region);
    return VKD_OK;
}

vkd_result vkd_rec_read(vkd_rec *rec, const vkd_tensor *t, uint64_t offset, void *dst,
                        uint64_t bytes) {
    if (rec->err.code) return rec->err.code;
    uint64_t off;
    const vkd_chunk *ch = range_chunk(rec, t, offset, bytes, &off);
    if (!ch) return rec->err.code;
    uint64_t at = (rec->readback_used + 15) & ~15ull;
    if (at + bytes > rec->readback.size) {
        /* The staging buffer is referenced by commands already recorded: it can only grow
         * before the first read of a submission. Size it generously then. */
        if (rec->nreads)
            return rec_fail(rec, VKD_ERR_INVALID,
                            "vkd_rec_read: read-back space exhausted within one submission");
        uint64_t size = bytes * 2 > READBACK_MIN ? bytes * 2 : READBACK_MIN;
        if (size < 16u << 20) size = 16u << 20;
        vkd_staging_destroy(rec->ctx, &rec->readback);
        vkd_result r = vkd_staging_create(rec->ctx, size, &rec->readback, &rec->err);
        if (r) return r;
        at = 0;
    }
    vkd_range rr = {ch->buffer, off, off + bytes}, wr = {rec->readback.buffer, at, at + bytes};
    vkd_result r = track(rec, &rr, 1, &wr, 1);
    if (r) return r;
    VkBufferCopy region = {.srcOffset = off, .dstOffset = at, .size = bytes};
    vkCmdCopyBuffer(rec->cb, ch->buffer, rec->readback.buffer, 1, &region);
    if (rec->nreads == rec->cap_reads) {
        uint32_t c = rec->cap_reads ? rec->cap_reads * 2 : 16;
        pending_read *p = realloc(rec->reads, c * sizeof *p);
        if (!p) return rec_fail(rec, VKD_ERR_NOMEM, "out of host memory");
        rec->reads = p;
        rec->cap_reads = c;
    }
    rec->reads[rec->nreads++] = (pending_read){dst, at, bytes};
    rec->readback_used = at + bytes;
    return VKD_OK;
}

static void collect_timestamps(vkd_rec *rec) {
    vkd_ctx *ctx = rec->ctx;
    if (!rec->qpool || rec->nstamps < 2) return;
    uint64_t *ts = malloc(rec->nstamps * sizeof *ts);
    if (!ts) return;
    if (vkGetQueryPoolResults(ctx->device, rec->qpool, 0, rec->nstamps, rec->nstamps * sizeof *ts,
                              ts, sizeof *ts, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) ==
        VK_SUCCESS) {
        for (uint32_t i = 1; i < rec->nstamps; i++) {
            vkd_shader_id s = rec->stamp_shader[i];
            double ms = (double)(ts[i] - ts[i - 1]) * ctx->info.timestamp_period_ns * 1e-6;
            ctx->prof[s].name = vkd_shader_table[s].name;
            ctx->prof[s].calls++;
            ctx->prof[s].total_ms += ms;
        }
    }
    free(ts);
}

vkd_result vkd_rec_submit(vkd_rec *rec) {
    vkd_ctx *ctx = rec->ctx;
    if (!rec->recording) return rec->err.code ? rec->err.code : rec_fail(rec, VKD_ERR_INVALID, "submit without begin");
    if (rec->nreads) {
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        vkCmdPipelineBarrier(rec->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0,
                             1, &mb, 0, NULL, 0, NULL);
    }
    VkResult vr = vkEndCommandBuffer(rec->cb);
    rec->recording = false;
    if (rec->err.code) return rec->err.code;
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkEndCommandBuffer");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &rec->cb,
    };
    vr = vkResetFences(ctx->device, 1, &rec->fence);
    if (vr == VK_SUCCESS) vr = vkQueueSubmit(ctx->queue, 1, &si, rec->fence);
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkQueueSubmit");
    vr = vkWaitForFences(ctx->device, 1, &rec->fence, VK_TRUE, UINT64_MAX);
    if (vr != VK_SUCCESS) return rec_fail_vk(rec, vr, "vkWaitForFences");
    for (uint32_t i = 0; i < rec->nreads; i++)
        memcpy(rec->reads[i].dst, rec->readback.map + rec->reads[i].staging_off, rec->reads[i].bytes);
    rec->nreads = 0;
    collect_timestamps(rec);
    return VKD_OK;
}

vkd_result vkd_rec_submit_after(vkd_rec *rec, vkd_result r, vkd_error *err) {
    vkd_result s = vkd_rec_submit(rec);
    if (!r) r = s;
    if (r && rec->err.code) *err = rec->err;
    return r;
}

void vkd_ctx_profile_reset(vkd_ctx *ctx) {
    memset(ctx->prof, 0, sizeof ctx->prof);
}

uint32_t vkd_ctx_profile_entries(const vkd_ctx *ctx, const vkd_profile_entry **out) {
    vkd_ctx *c = (vkd_ctx *)ctx;
    uint32_t n = 0;
    for (int i = 0; i < VKD_SHADER_COUNT; i++)
        if (ctx->prof[i].calls) c->prof_out[n++] = ctx->prof[i];
    *out = c->prof_out;
    return n;
}
