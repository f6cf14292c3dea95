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
#include <unistd.h>

static uint32_t env_u32(const char *name, uint32_t dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    long x = strtol(v, NULL, 10);
    return x > 0 && x < 65536 ? (uint32_t)x : dflt;
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
    }
    if (p->wg_stream > d->max_workgroup_size[0]) p->wg_stream = d->max_workgroup_size[0];
    if (p->wg_elementwise > d->max_workgroup_size[0]) p->wg_elementwise = d->max_workgroup_size[0];
    if (p->wg_row > d->max_workgroup_size[0]) p->wg_row = d->max_workgroup_size[0];
    /* Overrides for tuning experiments (docs/architecture.md, "Device profile"). */
    p->wg_stream = env_u32("VKDRAFT_WG_STREAM", p->wg_stream);
    p->stream_groups = env_u32("VKDRAFT_STREAM_GROUPS", p->stream_groups);
}
