/* wgsync.glsl: workgroups that are one subgroup. Include after the
 * GL_KHR_shader_subgroup_basic extension.
 * ONE_SG (specialization constant 3; the host sets it where a workgroup is always exactly
 * one subgroup, vkd_ctx_one_subgroup): lanes meet at subgroup barriers and reductions end at
 * the subgroup's result (rowreduce.glsl), with no workgroup barrier in the shader. llvmpipe
 * splits a shader at every workgroup barrier it holds and pays for each one passed; a
 * specialization constant removes them from the shader it compiles (docs/benchmarks.md,
 * 2026-12-05: qk_rope_kv over 16 rows 2x faster). */
#ifndef VKD_WGSYNC_GLSL
#define VKD_WGSYNC_GLSL

layout(constant_id = 3) const bool ONE_SG = false;

/* publishes shared memory to the workgroup (to the subgroup under ONE_SG) */
void wg_barrier_shared() {
    if (ONE_SG) {
        subgroupMemoryBarrierShared();
        subgroupBarrier();
    } else {
        barrier();
    }
}

/* publishes storage buffers to the workgroup (to the subgroup under ONE_SG) */
void wg_barrier_buffer() {
    if (ONE_SG) {
        subgroupMemoryBarrierBuffer();
        subgroupBarrier();
    } else {
        memoryBarrierBuffer();
        barrier();
    }
}

#endif
