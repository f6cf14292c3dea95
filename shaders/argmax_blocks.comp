#version 450
/* Greedy LM head, first half: the argmax over n of x[x_row0 + i, :K] . W[n, :K] for i < m,
 * without writing the logits; workgroup row y takes rows [y * MB, y * MB + MB) of x. W is
 * one chunk in the texel block layout (VKD_LAYOUT_BLOCKS, runtime/vkd_runtime.h), read
 * exactly as matmul_blocks.comp reads it, each product added as there (one fma() after another):
 * a block of 256 rows split into sub-blocks of LANES * RPL rows, one per workgroup, lane l
 * owning rows r * LANES + l. Each workgroup writes, per row i of x, its best logit (bits)
 * and index: the lowest index among equal maxima; a NaN or +Inf logit makes the value the
 * NaN marker VKD_NAN (argmax_merge.comp turns it into -1).
 * Bindings: 0 W chunk (uniform texel buffer, RGBA32UI), 1 x f32 (read), 2 part u32 (write). */
//! texel 0
//! family argmax_blocks
//! axes layout=blocks shape=gemv dtype=f32,f16,bf16
#extension GL_KHR_shader_subgroup_basic : require
#define PC_ARGMAX_BLOCKS
#include "vkd_push.h"
#include "common.glsl"
#include "wgsync.glsl"

#include "argmax_blocks.glsl"
