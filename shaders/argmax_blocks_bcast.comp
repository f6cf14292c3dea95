#version 450
/* argmax_blocks.comp with x read through its uniform texel view (XTEX; binding 1, RGBA32UI,
 * K % 4 == 0): every lane fetches the same texel of x, which lavapipe vectorises, where it
 * loads storage memory lane by lane; so a workgroup carries up to 16 rows of x, each W texel
 * fetched once for all of them (the draft's block of proposals). */
//! texel 0 1
//! family argmax_blocks
//! axes layout=blocks shape=bcast dtype=f32,f16,bf16
#extension GL_KHR_shader_subgroup_basic : require
#define XTEX 1
#define PC_ARGMAX_BLOCKS
#include "vkd_push.h"
#include "common.glsl"
#include "wgsync.glsl"
#include "argmax_blocks.glsl"
