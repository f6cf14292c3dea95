/* vkd_push.h: push-constant structs, declared once for C and GLSL.
 * A shader selects its struct with #define PC_<NAME> before including this file and reads
 * it as `pc`. All members are 32-bit scalars (no vectors) so C and std430 layouts agree. */
#ifndef VKD_PUSH_H
#define VKD_PUSH_H

#ifdef VULKAN
#define PUSH_BEGIN(name) layout(push_constant) uniform name {
#define PUSH_END(name) } pc;
#else
#include <stdint.h>
typedef unsigned int uint;
#define PUSH_BEGIN(name) typedef struct name {
#define PUSH_END(name) } name;
/* -- matmul ops (owner: ops_matmul) -- */

/* -- layer ops (owner: ops_layer) -- */

/* -- logits ops (owner: ops_logits) -- */

#endif

/* y[i] = a*x0[i] + b*x1[i], n elements, f32 */
#if !defined(VULKAN) || defined(PC_AXPBY)
PUSH_BEGIN(vkd_pc_axpby)
    uint n;
    float a;
    float b;
PUSH_END(vkd_pc_axpby)
/* -- matmul ops (owner: ops_matmul) -- */

/* -- layer ops (owner: ops_layer) -- */

/* -- logits ops (owner: ops_logits) -- */

#endif

/* copy n 16-byte words (bandwidth probe) */
#if !defined(VULKAN) || defined(PC_COPY)
PUSH_BEGIN(vkd_pc_copy)
    uint n_vec4;
    uint per_group;
PUSH_END(vkd_pc_copy)
/* -- matmul ops (owner: ops_matmul) -- */

/* -- layer ops (owner: ops_layer) -- */

/* -- logits ops (owner: ops_logits) -- */

#endif

/* -- matmul ops (owner: ops_matmul) -- */

/* -- layer ops (owner: ops_layer) -- */

/* -- logits ops (owner: ops_logits) -- */

#endif
