/* quirks.c: every device-specific choice lives here, under a name.
 *
 * Dispatch geometry is the main one. On lavapipe (Mesa's CPU driver) cost grows with the
 * number of workgroups: the fastest streaming pattern is as many workgroups as CPU threads,
 * workgroup size = subgroup size (8), each workgroup owning one contiguous range
 * (../shared/lavapipe-notes.md: 5-30x between geometries). GPUs want the opposite: many
 * workgroups of 64-256 lanes. Shaders take their workgroup size from specialization
 * constant 0 and their ranges from push constants, so the same SPIR-V serves both. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t env_u32(const char *name, uint32_t dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    long x = strtol(v, NULL, 10);
    return x > 0 && x < 65536 ? (uint32_t)x : dflt;
}

/* A 0/1 switch: "0" off, any other number on, unset or empty: dflt. */
static bool env_bool(const char *name, bool dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    return strtol(v, NULL, 10) != 0;
}

void vkd_profile_choose(vkd_ctx *ctx) {
    vkd_profile *p = &ctx->profile;
    const vkd_device_info *d = &ctx->info;
    uint32_t sg = d->subgroup_size ? d->subgroup_size : 32;
    if (d->type == VK_PHYSICAL_DEVICE_TYPE_CPU) {
        /* lavapipe runs one workgroup per thread (LP_NUM_THREADS, default: CPU count). */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        uint32_t threads = env_u32("LP_NUM_THREADS", cpus > 0 ? (uint32_t)cpus : 1);
        p->name = "lavapipe";
        p->wg_stream = sg;
        p->stream_groups = threads;
        p->wg_elementwise = sg;
        p->elementwise_max_groups = threads;
        p->gemm_tile = 16;
        p->wg_row = sg;
        p->bug_slow_many_workgroups = true;
        p->gemm_min_m = 32;
        /* gallivm's LP_MAX_TGSI_LOOP_ITERATIONS: one counter shared by every loop of an
         * invocation; past it loops exit early and results are silently incomplete. */
        p->bug_loop_limit = 65535;
        /* texel fetches are vectorised where storage-buffer loads go lane by lane with a
         * bounds check per component: weights in row-interleaved texel blocks stream 5-10x
         * faster (../shared/lavapipe-notes.md) */
        p->weight_layout = VKD_LAYOUT_BLOCKS;
        /* a key's dot product over 4 lanes, not 8: fewer shuffle steps per key, two keys at
         * once per workgroup; decode over 4096 keys 1.2-1.9x faster (docs/benchmarks.md) */
        p->attn_lanes = 4;
        /* the caches too: attention's key and value loads are most of its time */
        p->kv_texel = true;
        /* decoding over long caches: split-K up to 32 workgroups, >= 1024 keys a split
         * (Qwen3-0.6B decode over 4096 keys 1.6-2.4x faster with 4 splits; at 512 keys, and
         * for 16- and 64-row blocks, splits gained nothing: docs/benchmarks.md) */
        p->attn_split_groups = 32;
        p->attn_split_keys = 1024;
        /* and the activations the texel-block matmuls read: every lane fetches the same texel
         * of x, vectorised, where a storage load and a subgroup broadcast each go lane by lane
         * (m = 16 over 3072 x 1024 bf16 1.45x faster, m = 1 1.1x; docs/benchmarks.md) */
        p->x_texel = true;
    } else {
        p->name = "gpu";
        p->wg_stream = sg >= 64 ? sg : 64;
        p->stream_groups = 0; /* 0: one workgroup per block of rows, as many as needed */
        p->wg_elementwise = 256;
        p->elementwise_max_groups = 65535;
        p->gemm_tile = 64;
        p->wg_row = 256; /* vocabulary rows are long: wide groups, few of them */
        p->bug_slow_many_workgroups = false;
        p->gemm_min_m = 32;
        p->bug_loop_limit = 0;
        p->weight_layout = VKD_LAYOUT_ROWS; /* the storage path: coalesced, many workgroups */
        p->attn_lanes = 0;
        /* a decode step's rows x kv heads are a handful of workgroups: split the keys until
         * the attention fills a GPU */
        p->attn_split_groups = 256;
        p->attn_split_keys = 64;
    }
    p->max_texel_elements = d->max_texel_elements;
    p->reduce_subgroup = d->subgroup_in_compute && (d->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    if (p->wg_stream > d->max_workgroup_size[0]) p->wg_stream = d->max_workgroup_size[0];
    if (p->wg_elementwise > d->max_workgroup_size[0]) p->wg_elementwise = d->max_workgroup_size[0];
    if (p->wg_row > d->max_workgroup_size[0]) p->wg_row = d->max_workgroup_size[0];
    /* Overrides for tuning experiments (docs/architecture.md, "Device profile"). */
    p->wg_stream = env_u32("VKDRAFT_WG_STREAM", p->wg_stream);
    p->stream_groups = env_u32("VKDRAFT_STREAM_GROUPS", p->stream_groups);
    p->attn_lanes = env_u32("VKDRAFT_ATTN_LANES", p->attn_lanes);
    p->attn_splits = env_u32("VKDRAFT_ATTN_SPLITS", 0);
    p->kv_texel = env_bool("VKDRAFT_KV_TEXEL", p->kv_texel);
    p->x_texel = env_bool("VKDRAFT_X_TEXEL", p->x_texel);
    p->wg_row = env_u32("VKDRAFT_WG_ROW", p->wg_row);
    p->matmul_fuse = env_bool("VKDRAFT_MATMUL_FUSE", true);
    const char *wl = getenv("VKDRAFT_WEIGHT_LAYOUT");
    if (wl && !strcmp(wl, "rows")) p->weight_layout = VKD_LAYOUT_ROWS;
    if (wl && !strcmp(wl, "blocks")) p->weight_layout = VKD_LAYOUT_BLOCKS;
    /* one 8-lane workgroup must be whole subgroups that broadcast */
    p->matmul_bcast = d->type == VK_PHYSICAL_DEVICE_TYPE_CPU && d->subgroup_in_compute &&
                      (d->subgroup_ops & VK_SUBGROUP_FEATURE_BALLOT_BIT) && sg == 8;
    const char *mm = getenv("VKDRAFT_MATMUL"); /* "tiled": never the broadcast kernels */
    if (mm && !strcmp(mm, "tiled")) p->matmul_bcast = false;
    const char *rd = getenv("VKDRAFT_REDUCE"); /* "shared": never the subgroup reductions */
    if (rd && !strcmp(rd, "shared")) p->reduce_subgroup = false;
}

uint64_t vkd_profile_loop_budget(const vkd_profile *p) {
    /* slack for the setup loops and loop exits a kernel's own count leaves out */
    return p->bug_loop_limit ? p->bug_loop_limit - 64 : UINT64_MAX;
}

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

uint32_t vkd_profile_stream_split(const vkd_ctx *ctx, uint64_t rows, uint64_t iters_per_row,
                                  uint32_t gpu_rows, uint32_t *groups_out) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t max_groups = vkd_ctx_info(ctx)->max_workgroup_count[0];
    uint64_t groups = p->stream_groups ? p->stream_groups : div_up(rows, gpu_rows);
    if (p->bug_loop_limit) {
        uint64_t per_group = vkd_profile_loop_budget(p) / (iters_per_row ? iters_per_row : 1);
        if (!per_group) per_group = 1;
        uint64_t need = div_up(rows, per_group);
        uint64_t unit = p->stream_groups ? p->stream_groups : 1;
        if (need > groups) groups = div_up(need, unit) * unit;
    }
    if (groups > rows) groups = rows;
    if (groups > max_groups) groups = max_groups;
    if (!groups) groups = 1;
    uint64_t rpg = div_up(rows, groups);
    *groups_out = (uint32_t)div_up(rows, rpg);
    return (uint32_t)rpg;
}

bool vkd_ctx_one_subgroup(const vkd_ctx *ctx, uint32_t lanes) {
    const vkd_device_info *d = vkd_ctx_info(ctx);
    return d->subgroup_size && lanes == d->subgroup_size &&
           (!d->min_subgroup_size || (d->min_subgroup_size == d->subgroup_size &&
                                      d->max_subgroup_size == d->subgroup_size));
}

vkd_layout vkd_ctx_weight_layout(const vkd_ctx *ctx, vkd_dtype dtype) {
    bool matrix_dtype = dtype == VKD_DTYPE_F32 || dtype == VKD_DTYPE_F16 || dtype == VKD_DTYPE_BF16;
    return matrix_dtype ? vkd_ctx_profile(ctx)->weight_layout : VKD_LAYOUT_ROWS;
}

vkd_layout vkd_ctx_frozen_weight_layout(const vkd_ctx *ctx, vkd_dtype dtype) {
    bool matrix_dtype = dtype == VKD_DTYPE_F32 || dtype == VKD_DTYPE_F16 || dtype == VKD_DTYPE_BF16;
    return matrix_dtype ? vkd_ctx_profile(ctx)->frozen_layout : VKD_LAYOUT_ROWS;
}
