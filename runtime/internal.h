/* internal.h: definitions shared by the runtime's own files (not part of the API). */
#ifndef VKD_RUNTIME_INTERNAL_H
#define VKD_RUNTIME_INTERNAL_H

#include "vkd_runtime.h"

/* Bindings 0 .. VKD_TEXEL_BINDINGS - 1 may be uniform texel buffers (tools/gen_shaders.py
 * checks the shaders' `//! texel` lines against it): one descriptor layout per mask. */
#define VKD_TEXEL_BINDINGS 3

#define VKD_CHECK_VK(err, call, what)                                                    \
    do {                                                                                 \
        VkResult vr_ = (call);                                                           \
        if (vr_ != VK_SUCCESS) return vkd_vk_fail((err), vr_, (what));                  \
    } while (0)

typedef struct vkd_mem_block {
    VkDeviceMemory memory;
    uint64_t size;
    uint8_t *map;
    /* free list of [offset, size) ranges, sorted by offset */
    uint64_t *free_off, *free_size;
    uint32_t nfree, cap;
    uint32_t live;             /* allocations in this block */
    bool dedicated;
} vkd_mem_block;

typedef struct vkd_pipeline_entry {
    vkd_shader_id shader;
    uint32_t spec[VKD_MAX_SPEC];
    uint32_t nspec;
    VkPipeline pipeline;
} vkd_pipeline_entry;

struct vkd_ctx {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    vkd_device_info info;
    vkd_profile profile;
    uint64_t max_binding;
    bool force_staging, profiling;

    /* memory */
    uint32_t mem_type;          /* device-local type for tensors */
    bool mapped;                /* tensors' memory is host-visible and coherent */
    uint32_t staging_type;      /* host-visible coherent type for staging */
    vkd_mem_block *blocks;
    uint32_t nblocks, cap_blocks;
    uint64_t block_size;

    /* pipelines */
    VkPipelineCache pcache;
    VkDescriptorSetLayout dsl[1u << VKD_TEXEL_BINDINGS]; /* [texel_mask]: bit b, binding b a uniform */
    VkPipelineLayout layout[1u << VKD_TEXEL_BINDINGS];   /* texel buffer (`//! texel b`), else storage */
    VkShaderModule modules[VKD_SHADER_COUNT];
    vkd_pipeline_entry *pipes;
    uint32_t npipes, cap_pipes;
    char pcache_path[1024];

    /* synchronous transfers */
    VkCommandPool xfer_pool;

    /* validation */
    uint32_t validation_count;
    char validation_first[1024];

    /* profiling */
    vkd_profile_entry prof[VKD_SHADER_COUNT];
    vkd_profile_entry prof_out[VKD_SHADER_COUNT];
};

/* Hazard tracking (recorder.c): a byte range [lo, hi) of one buffer. */
typedef struct vkd_range {
    VkBuffer buffer;
    uint64_t lo, hi;
} vkd_range;
/* The recorder's barrier decision: does a command reading `reads` and writing `writes`
 * need a barrier after earlier commands (since the last barrier) that wrote `written` and
 * read `read`? True on read-after-write, write-after-write and write-after-read of
 * overlapping bytes of the same buffer; ranges of different buffers never conflict. */
bool vkd_hazard(const vkd_range *written, uint32_t nwritten, const vkd_range *read,
                uint32_t nread, const vkd_range *reads, uint32_t nreads,
                const vkd_range *writes, uint32_t nwrites);
/* Barriers the recorder placed since vkd_rec_begin. */
uint32_t vkd_rec_barriers(const vkd_rec *rec);
/* The range a bound chunk covers in its buffer (what its descriptor binds). */
static inline vkd_range vkd_chunk_range(const vkd_chunk *ch) {
    return (vkd_range){ch->buffer, ch->base, ch->base + (ch->bind_bytes ? ch->bind_bytes : ch->bytes)};
}

vkd_result vkd_vk_fail(vkd_error *err, VkResult vr, const char *what);
const char *vkd_vk_result_name(VkResult vr);

void vkd_profile_choose(vkd_ctx *ctx);       /* quirks.c */

/* A chunk's uniform texel view (RGBA32UI) over its bytes from ch->base, rounded up to whole
 * texels (every buffer's size is a multiple of 16): sets ch->view. */
vkd_result vkd_chunk_texel_view(vkd_ctx *ctx, vkd_chunk *ch, vkd_error *err);
/* Whether such a view can cover the chunk: it starts on a texel (and on the device's texel
 * offset alignment) and its texels are within the profile's max_texel_elements. */
bool vkd_chunk_texel_fits(const vkd_ctx *ctx, const vkd_chunk *ch);
vkd_result vkd_mem_alloc(vkd_ctx *ctx, VkBuffer buf, uint32_t *block, uint64_t *offset,
                         uint8_t **map, vkd_error *err);
void vkd_mem_free(vkd_ctx *ctx, uint32_t block, uint64_t offset, uint64_t size);
void vkd_mem_destroy_all(vkd_ctx *ctx);

vkd_result vkd_pipelines_init(vkd_ctx *ctx, vkd_error *err);
vkd_result vkd_pipeline_get(vkd_ctx *ctx, vkd_shader_id shader, const uint32_t *spec,
                            uint32_t nspec, VkPipeline *out, vkd_error *err);
void vkd_pipelines_destroy(vkd_ctx *ctx);

/* One-shot command buffer for synchronous transfers. */
vkd_result vkd_oneshot_begin(vkd_ctx *ctx, VkCommandBuffer *cb, vkd_error *err);
vkd_result vkd_oneshot_submit(vkd_ctx *ctx, VkCommandBuffer cb, vkd_error *err);

/* A temporary host-visible buffer (staging). */
typedef struct vkd_staging {
    VkBuffer buffer;
    VkDeviceMemory memory;
    uint8_t *map;
    uint64_t size;
} vkd_staging;
vkd_result vkd_staging_create(vkd_ctx *ctx, uint64_t size, vkd_staging *s, vkd_error *err);
void vkd_staging_destroy(vkd_ctx *ctx, vkd_staging *s);

#endif
