#version 450
/* matmul_group.comp with x through its texel view at binding 1 (as matmul_blocks_bcast.comp). */
//! texel 0 1
//! family matmul_group
//! axes layout=blocks shape=bcast dtype=f32,f16,bf16
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define XBCAST 1
#define MODE 2
#define PC_MATMUL_GROUP
#include "vkd_push.h"
#include "common.glsl"
#include "matmul_blocks.glsl"
