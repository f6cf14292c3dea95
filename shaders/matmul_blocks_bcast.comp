#version 450
/* matmul_blocks.comp with x read through a uniform texel view (XBCAST): every lane fetches
 * the same texel of x, which lavapipe vectorises, where it loads storage memory lane by lane
 * (../shared/lavapipe-notes.md); so a pass can carry more rows of x. Binding 1 is then x's
 * texel view (RGBA32UI, K % 4 == 0). Needs 8-lane workgroups that are one subgroup with
 * broadcast (the profile's matmul_bcast; a fused norm's weight is broadcast). */
/* Matmul against weights in the texel block layout (VKD_LAYOUT_BLOCKS, runtime/vkd_runtime.h):
 * y[y_row0 + i, col0 + n] (=|+=) x[x_row0 + i, :K] . W[n, :K] for i < m, n < rows (one chunk
 * of W); workgroup row y takes rows [y * MB, y * MB + MB) of x. Every weight texel a
 * workgroup fetches feeds its MB rows of x.
 * Geometry: a block of 256 rows is split into 256 / (LANES * RPL) sub-blocks, one per
 * workgroup; lane l owns rows r * LANES + l (r < RPL) of its sub-block, so at step k the lanes
 * fetch LANES neighbouring texels for each r and every sub-block is one sequential stream.
 * The accumulators (MB x RPL per lane) are expanded by macros under specialization-constant
 * guards: no loop over rows, and no cross-lane reduction. Each invocation runs one loop pass
 * per 16-byte step of a row (K / 8 for 16-bit weights, K / 4 for f32), far under lavapipe's
 * loop limit (the host checks it).
 * Bindings: 0 W chunk (uniform texel buffer, RGBA32UI), 1 x f32 (read), 2 y f32 (write, or
 * read-write when accumulating). */
//! texel 0 1
//! family matmul
//! axes trans=n layout=blocks shape=bcast dtype=f32,f16,bf16
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#define XBCAST 1
#define PC_MATMUL
#include "vkd_push.h"
#include "common.glsl"
#include "matmul_blocks.glsl"
