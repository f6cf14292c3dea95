/* vkd_runtime.h: the Vulkan compute runtime.
 *
 *   vkd_ctx     instance + one logical device + its queue, limits, device profile,
 *               pipeline cache, memory sub-allocator, validation message counter
 *   vkd_tensor  a device tensor (dtype, shape) stored as one or more chunks, each a VkBuffer
 *               no larger than the binding limit; large tensors are split along rows. A view
 *               is a tensor over a byte range of another's memory (one chunk, no copy)
 *   vkd_arena   one buffer from which per-step temporaries are taken as views and given
 *               back all at once (no allocation, no zero-fill per step)
 *   vkd_rec     a command recorder: dispatches with declared reads/writes (barriers follow
 *               from them), small host->device updates and device->host reads, one
 *               submission per forward pass, optional GPU timestamp profiling
 *
 * Everything returns vkd_result and fills a vkd_error; nothing prints or aborts. */
#ifndef VKD_RUNTIME_H
#define VKD_RUNTIME_H

#include <vulkan/vulkan.h>

#include "vkd_base.h"
#include "vkd_shaders.h"

#define VKD_MAX_BINDINGS 9
#define VKD_MAX_PUSH_BYTES 128
#define VKD_MAX_SPEC 4
#define VKD_MAX_DIMS 4

typedef struct vkd_ctx vkd_ctx;
typedef struct vkd_rec vkd_rec;
typedef struct vkd_tensor vkd_tensor;

typedef struct vkd_ctx_options {
    bool pick_device;          /* false: automatic (VKDRAFT_DEVICE env, else best type) */
    int device_index;          /* with pick_device: index in enumeration order */
    bool validation;           /* also on when VKDRAFT_VALIDATION=1 */
    bool profile;              /* also on when VKDRAFT_PROFILE=1 */
    uint64_t max_binding_bytes;/* 0: the device's maxStorageBufferRange; tests force less */
    bool force_staging;        /* never map device memory (exercise the staging path) */
    uint64_t max_texel_elements; /* 0: the device's maxTexelBufferElements; tests force less
                                  * to exercise weights split across texel buffer views */
    bool row_major_weights;    /* weights stay row-major whatever the profile prefers: training
                                * reads them in backward products (dX = dY W), which have no
                                * texel-block kernels (frozen weights read only forward may
                                * still take vkd_ctx_frozen_weight_layout) */
} vkd_ctx_options;

typedef struct vkd_device_info {
    uint32_t index;
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    char driver[VK_MAX_DRIVER_NAME_SIZE + VK_MAX_DRIVER_INFO_SIZE + 2];
    VkPhysicalDeviceType type;
    uint32_t vendor_id, device_id, api_version;
    VkDriverId driver_id;
    uint8_t uuid[VK_UUID_SIZE];
    uint32_t subgroup_size;
    VkSubgroupFeatureFlags subgroup_ops;
    bool subgroup_in_compute;
    uint32_t min_subgroup_size, max_subgroup_size; /* subgroup size control, 0 if absent */
    uint32_t shared_memory_bytes;
    uint64_t max_storage_buffer_range;
    uint64_t max_memory_allocation;
    uint32_t max_workgroup_size[3], max_workgroup_invocations, max_workgroup_count[3];
    uint32_t max_push_constants;
    uint64_t min_storage_buffer_offset_alignment;
    uint64_t max_texel_elements;          /* maxTexelBufferElements */
    uint64_t min_texel_offset_alignment;  /* minTexelBufferOffsetAlignment */
    bool storage_16bit, shader_float16, shader_int8, shader_int16, shader_int64;
    bool timestamps;
    float timestamp_period_ns;
    bool uma;                  /* a device-local, host-visible, coherent memory type exists */
    uint64_t device_local_bytes, host_visible_bytes;
} vkd_device_info;

/* How a tensor's elements are arranged in device memory. Weights get their layout once, at
 * upload (the device profile chooses it for matrices read by matmul); every op that reads a
 * tensor checks its layout and fails with VKD_ERR_UNSUPPORTED on one it cannot read. */
typedef enum vkd_layout {
    VKD_LAYOUT_ROWS = 0,       /* row-major, bound as storage buffers (every op reads it) */
    VKD_LAYOUT_BLOCKS = 1,     /* row-interleaved blocks of VKD_BLOCK_ROWS rows, bound as
                                * uniform texel buffers of 16-byte texels: block b holds
                                * ceil(row bytes / 16) steps of VKD_BLOCK_ROWS texels, texel j of
                                * step k = the 16 bytes k of row b * VKD_BLOCK_ROWS + j (rows and
                                * the last step zero-padded). Read by matmul and embed. */
} vkd_layout;
#define VKD_BLOCK_ROWS 256u

/* Dispatch geometry chosen per device in one place (runtime/quirks.c). */
typedef struct vkd_profile {
    const char *name;          /* "lavapipe", "gpu" */
    uint32_t wg_stream;        /* workgroup size of memory-streaming kernels (GEMV, reductions) */
    uint32_t stream_groups;    /* workgroups a streaming kernel splits its rows across */
    uint32_t wg_elementwise;   /* workgroup size of element-wise kernels */
    uint32_t elementwise_max_groups; /* cap on element-wise workgroups (grid-stride beyond) */
    uint32_t gemm_tile;        /* tile edge of the tiled GEMM (spec constant) */
    uint32_t wg_row;           /* workgroup size of one-workgroup-per-row reductions (logits) */
    bool bug_slow_many_workgroups; /* cost grows with workgroup count (lavapipe) */
    uint32_t gemm_min_m;       /* matmul: tiled GEMM from this many rows of x, GEMV below */
    uint32_t bug_loop_limit;   /* loop iterations one invocation may run in total before the
                                * driver silently exits the loop (lavapipe: 65535); 0: none */
    vkd_layout weight_layout;  /* layout of weight matrices uploaded for matmul */
    vkd_layout frozen_layout;  /* the profile's weight_layout whatever vkd_ctx_options says:
                                * for frozen weights that only forward ops and the fused loss
                                * read (vkd_ctx_frozen_weight_layout) */
    uint64_t max_texel_elements; /* texels one VKD_LAYOUT_BLOCKS view may hold */
    bool reduce_subgroup;      /* workgroup reductions by subgroupAdd (the device has subgroup
                                * arithmetic in compute), else through shared memory */
    bool matmul_bcast;         /* matmuls of row-major weights with >= gemm_min_m rows and their
                                * gradients by register tiles fed by subgroup broadcasts
                                * (matmul_bcast.comp: CPU drivers, where every non-constant
                                * load goes lane by lane), else the shared-memory GEMM and the
                                * column kernels of matmul_grad.comp */
    uint32_t attn_lanes;       /* attention: at most this many lanes share one key's dot product
                                * (a cross-lane reduction per key); 0: the subgroup size */
    uint32_t attn_split_groups; /* split-K attention (vkd_op_attention_split): split a row's
                                * keys across workgroups until the dispatch has this many;
                                * 0: never */
    uint32_t attn_split_keys;  /* ... with at least this many keys per split */
    uint32_t attn_splits;      /* a forced split count (VKDRAFT_ATTN_SPLITS); 0: the rule above */
    bool kv_texel;             /* KV caches (vkd_tensor_create_kv) carry a texel view and
                                * attention reads them through it */
    bool matmul_fuse;          /* texel-block weights: q/k/v as one dispatch (a stack) and
                                * gate/up/SwiGLU as one (vkd_op_matmul_group, _glu) */
    bool x_texel;              /* row-major tensors carry a uniform texel view (RGBA32UI) of each
                                * chunk that fits one, and views of them one where they start on
                                * a texel; the broadcast texel-block matmuls read x through it */
} vkd_profile;

/* Loop iterations one invocation may run (the profile's bug_loop_limit less slack);
 * UINT64_MAX where the driver has no limit. Every kernel sizes its per-invocation work by it. */
uint64_t vkd_profile_loop_budget(const vkd_profile *p);
/* Workgroups for a streaming kernel over `rows` rows costing `iters_per_row` loop iterations
 * per invocation each: the profile's count (or one group per `gpu_rows` rows), raised until
 * no invocation exceeds the loop budget, at most the device's group limit. Sets *groups_out
 * and returns the rows per group. */
uint32_t vkd_profile_stream_split(const vkd_ctx *ctx, uint64_t rows, uint64_t iters_per_row,
                                  uint32_t gpu_rows, uint32_t *groups_out);

/* Whether a workgroup of `lanes` invocations is always exactly one subgroup: the device's
 * subgroup size, which it cannot vary (no size control, or a single size). Kernels that
 * synchronise lanes take specialization constant 3 (shaders/wgsync.glsl's ONE_SG) from it. */
bool vkd_ctx_one_subgroup(const vkd_ctx *ctx, uint32_t lanes);

/* Lists every physical device (info[i].index == i). *out is malloc'd; caller frees. */
vkd_result vkd_list_devices(vkd_device_info **out, uint32_t *count, vkd_error *err);

vkd_result vkd_ctx_create(const vkd_ctx_options *opt, vkd_ctx **out, vkd_error *err);
void vkd_ctx_destroy(vkd_ctx *ctx);
const vkd_device_info *vkd_ctx_info(const vkd_ctx *ctx);
const vkd_profile *vkd_ctx_profile(const vkd_ctx *ctx);
uint64_t vkd_ctx_max_binding(const vkd_ctx *ctx);
/* Validation messages seen so far (warnings and errors), and the first one's text. */
uint32_t vkd_ctx_validation_count(const vkd_ctx *ctx);
const char *vkd_ctx_validation_first(const vkd_ctx *ctx);

/* ---- tensors ---------------------------------------------------------------------- */

typedef struct vkd_chunk {
    VkBuffer buffer;
    uint64_t bytes;            /* bytes bound (whole rows) */
    uint64_t row0, rows;       /* rows of the tensor this chunk holds */
    uint8_t *map;              /* host pointer when memory is mapped, else NULL */
    uint32_t block;            /* sub-allocator block and offset (internal) */
    uint64_t offset;
    uint64_t base;             /* views: byte offset of this chunk's data in `buffer` (where
                                * descriptors and copies start); 0 otherwise */
    uint64_t bind_bytes;       /* views: descriptor range (bytes rounded up to 16 within the
                                * buffer); 0: the whole buffer */
    VkBufferView view;         /* the uniform texel buffer view (RGBA32UI): VKD_LAYOUT_BLOCKS, and
                                * row-major tensors made by vkd_tensor_create_kv on a profile
                                * with kv_texel */
    bool texel_only;           /* VKD_LAYOUT_BLOCKS: binds only as a texel buffer */
} vkd_chunk;

typedef struct vkd_tensor {
    vkd_ctx *ctx;
    vkd_dtype dtype;
    int ndim;
    int64_t shape[VKD_MAX_DIMS];
    uint64_t rows, cols;       /* rows = product of all dims but the last; cols = last dim */
    uint64_t row_bytes, bytes; /* of the row-major tensor (VKD_LAYOUT_BLOCKS: before padding) */
    vkd_layout layout;
    uint64_t row_texels;       /* VKD_LAYOUT_BLOCKS: 16-byte texels per row, ceil(row_bytes / 16) */
    uint32_t nchunks;
    vkd_chunk *chunks;
    char name[64];             /* for error messages and profiling */
    const vkd_tensor *parent;  /* a view: the tensor whose memory it uses; NULL otherwise */
} vkd_tensor;

/* Creates a zero-filled tensor. Rows are split across chunks so that no chunk exceeds the
 * binding limit; a single row larger than the limit is VKD_ERR_UNSUPPORTED. */
vkd_result vkd_tensor_create(vkd_ctx *ctx, vkd_dtype dtype, int ndim, const int64_t *shape,
                             const char *name, vkd_tensor **out, vkd_error *err);
/* The same in a given layout. VKD_LAYOUT_BLOCKS chunks hold whole blocks of VKD_BLOCK_ROWS
 * rows, each chunk one texel buffer view of at most profile.max_texel_elements texels.
 * A weight tensor normally takes vkd_ctx_weight_layout(); callers that read it with a
 * row-major op (backward products, host read-back) ask for VKD_LAYOUT_ROWS. */
vkd_result vkd_tensor_create_layout(vkd_ctx *ctx, vkd_dtype dtype, int ndim, const int64_t *shape,
                                    vkd_layout layout, const char *name, vkd_tensor **out,
                                    vkd_error *err);
/* A KV cache: a row-major rows x cols tensor (f32 or f16) that, where the profile has
 * kv_texel, also carries a uniform texel buffer view (RGBA32UI) of each chunk, through which
 * vkd_op_attention reads it; other ops bind it as a storage buffer as usual. */
vkd_result vkd_tensor_create_kv(vkd_ctx *ctx, vkd_dtype dtype, uint64_t rows, uint64_t cols,
                                const char *name, vkd_tensor **out, vkd_error *err);
/* n zero-filled VKD_LAYOUT_BLOCKS matrices of one dtype and column count in one buffer, one
 * after another (each padded to whole blocks), so that one texel buffer view reads them all
 * (vkd_op_matmul_group: q, k and v in one dispatch). *stack: the whole, one chunk;
 * members[i]: rows[i] x cols, views of it (t->parent == *stack) with their own texel view,
 * usable wherever a VKD_LAYOUT_BLOCKS tensor is, uploaded one by one. Destroy the members
 * before the stack. VKD_ERR_UNSUPPORTED when the whole does not fit one texel buffer view
 * (keep separate tensors then). */
vkd_result vkd_tensor_create_stack(vkd_ctx *ctx, vkd_dtype dtype, uint32_t n, const uint64_t *rows,
                                   uint64_t cols, const char *const *names, vkd_tensor **stack,
                                   vkd_tensor **members, vkd_error *err);
/* The device profile's layout for a weight matrix of this dtype read by matmul/embed. */
vkd_layout vkd_ctx_weight_layout(const vkd_ctx *ctx, vkd_dtype dtype);
/* The same ignoring vkd_ctx_options.row_major_weights: for a frozen weight matrix read only by
 * forward ops (matmul, embed, argmax) and the fused LM-head loss, never by a backward product
 * or a host read-back (the TTT target's lm_head/embedding). */
vkd_layout vkd_ctx_frozen_weight_layout(const vkd_ctx *ctx, vkd_dtype dtype);
/* 2-D convenience: rows x cols. */
vkd_result vkd_tensor_create_2d(vkd_ctx *ctx, vkd_dtype dtype, uint64_t rows, uint64_t cols,
                                const char *name, vkd_tensor **out, vkd_error *err);
void vkd_tensor_destroy(vkd_tensor *t);
/* Synchronous host<->device copies of a byte range (waits for the queue to be idle first;
 * use the recorder's vkd_rec_update / vkd_rec_read inside a forward pass). The range is of
 * the row-major tensor. A VKD_LAYOUT_BLOCKS tensor is uploaded whole (offset 0, all bytes,
 * repacked on the way) and cannot be downloaded (VKD_ERR_UNSUPPORTED). */
vkd_result vkd_tensor_upload(vkd_tensor *t, uint64_t offset, const void *src, uint64_t bytes,
                             vkd_error *err);
vkd_result vkd_tensor_download(const vkd_tensor *t, uint64_t offset, void *dst, uint64_t bytes,
                               vkd_error *err);
/* Chunk holding row r (r < t->rows). */
const vkd_chunk *vkd_tensor_chunk_of_row(const vkd_tensor *t, uint64_t r);

/* A view: a tensor of dtype and shape over bytes [offset, offset + its size) of `base`'s
 * memory; reads and writes through it reach base's bytes, and the recorder orders them by
 * byte range. The range must lie inside one chunk of base, and its start in the buffer must
 * be a multiple of the device's minStorageBufferOffsetAlignment (VKD_ERR_INVALID naming
 * it otherwise). base (itself possibly a view) must outlive the view; vkd_tensor_destroy
 * of a view frees only the view. Nothing is zero-filled. */
vkd_result vkd_tensor_view(const vkd_tensor *base, uint64_t offset, vkd_dtype dtype, int ndim,
                           const int64_t *shape, const char *name, vkd_tensor **out,
                           vkd_error *err);

/* ---- arena: per-step temporaries ----------------------------------------------------- */

typedef struct vkd_arena vkd_arena;

/* One buffer of `bytes` (at most the binding limit), zero-filled once at creation. */
vkd_result vkd_arena_create(vkd_ctx *ctx, uint64_t bytes, const char *name, vkd_arena **out,
                            vkd_error *err);
void vkd_arena_destroy(vkd_arena *a);
/* Takes the next free range (aligned for binding) as a view of dtype/shape. The tensor
 * belongs to the arena: do not destroy it; it is valid until vkd_arena_reset. Its contents
 * are whatever the range last held. VKD_ERR_DEVICE_MEMORY when the arena is full. */
vkd_result vkd_arena_tensor(vkd_arena *a, vkd_dtype dtype, int ndim, const int64_t *shape,
                            const char *name, vkd_tensor **out, vkd_error *err);
/* Gives every tensor taken since the last reset back (their handles become invalid); the
 * next step takes the same ranges again. Work already recorded on them stays ordered: the
 * recorder sees the same byte ranges and places barriers for the reuse. */
void vkd_arena_reset(vkd_arena *a);
/* Bytes taken since the last reset, and the most ever taken at once. */
uint64_t vkd_arena_used(const vkd_arena *a);
uint64_t vkd_arena_peak(const vkd_arena *a);

/* ---- recorder ------------------------------------------------------------------------ */

typedef enum vkd_access { VKD_READ = 1, VKD_WRITE = 2, VKD_RW = 3 } vkd_access;

typedef struct vkd_bind {
    const vkd_chunk *chunk;
    vkd_access access;
} vkd_bind;

typedef struct vkd_dispatch {
    vkd_shader_id shader;
    uint32_t spec[VKD_MAX_SPEC]; /* specialization constants 0..3 (0 = local_size_x) */
    uint32_t nspec;
    vkd_bind binds[VKD_MAX_BINDINGS];
    uint32_t nbinds;
    const void *push;
    uint32_t push_bytes;
    uint32_t groups[3];          /* 0 means 1 */
} vkd_dispatch;

vkd_result vkd_rec_create(vkd_ctx *ctx, vkd_rec **out, vkd_error *err);
void vkd_rec_destroy(vkd_rec *rec);
/* Starts recording (resets descriptor pools and pending reads). */
vkd_result vkd_rec_begin(vkd_rec *rec);
/* Records one dispatch; inserts a barrier first when it reads or writes bytes of a buffer
 * that an earlier command since the last barrier wrote, or writes bytes that one read
 * (byte ranges: a bound chunk counts as the bytes its descriptor binds, so disjoint
 * views of one buffer need no barrier between them). Errors are sticky: the first one is
 * returned by every later call and by vkd_rec_submit. */
vkd_result vkd_rec_dispatch(vkd_rec *rec, const vkd_dispatch *d);
/* Host data into a tensor inside the recording (bytes <= 65536, multiple of 4). */
vkd_result vkd_rec_update(vkd_rec *rec, vkd_tensor *t, uint64_t offset, const void *src,
                          uint64_t bytes);
/* Device data to host memory `dst`, valid after vkd_rec_submit returns. */
vkd_result vkd_rec_read(vkd_rec *rec, const vkd_tensor *t, uint64_t offset, void *dst,
                        uint64_t bytes);
/* Copies bytes between tensors (byte offsets, must not cross a chunk boundary). */
vkd_result vkd_rec_copy(vkd_rec *rec, vkd_tensor *dst, uint64_t dst_off, const vkd_tensor *src,
                        uint64_t src_off, uint64_t bytes);
/* Ends, submits, waits; then copies reads back to host. Returns the first error. */
vkd_result vkd_rec_submit(vkd_rec *rec);
/* vkd_rec_submit after a recording whose own result is r (VKD_OK, or a failure already
 * described in err): returns r, else the submission's result; when the recorder holds an
 * error (the ops' sticky one, the first failure) err receives it. */
vkd_result vkd_rec_submit_after(vkd_rec *rec, vkd_result r, vkd_error *err);
vkd_error *vkd_rec_error(vkd_rec *rec);
vkd_ctx *vkd_rec_ctx(vkd_rec *rec);
/* Dispatches recorded since the last vkd_rec_begin (benchmarks report it per step). */
uint32_t vkd_rec_dispatches(const vkd_rec *rec);

/* ---- profiling (VKDRAFT_PROFILE=1 or options.profile) -------------------------------- */

typedef struct vkd_profile_entry {
    const char *name;          /* shader name */
    uint64_t calls;
    double total_ms;
} vkd_profile_entry;
/* Per-shader GPU time accumulated over all submissions; count 0 when profiling is off. */
uint32_t vkd_ctx_profile_entries(const vkd_ctx *ctx, const vkd_profile_entry **out);
/* Forgets the profile so far (a benchmark's warm-up run). */
void vkd_ctx_profile_reset(vkd_ctx *ctx);

#endif
