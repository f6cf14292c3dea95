#version 450
/* Two or three matmuls of one x in one dispatch, on texel-block weights (VKD_LAYOUT_BLOCKS)
 * stacked in one buffer (vkd_tensor_create_stack): y_j[y_row0 + i, n] = x[x_row0 + i] . W_j[n]
 * for i < m, n < rows_j, W_j from texel base_j of the stack; every W_j has the same K. The
 * workgroups along x: [0, start1) W0, [start1, start2) W1, the rest W2, each with the
 * geometry of matmul_blocks.comp (q/k/v, or a draft's k/v of the context, in one dispatch
 * instead of three or two). One texel buffer for all of them, so one copy of the loop.
 * y_j are f32 ranges of one buffer (element yoff_j on: row-major, row stride rows_j), so one
 * store path serves all of them.
 * Bindings: 0 the stack (uniform texel buffer, RGBA32UI), 1 x f32, 2 y f32 (write: the span
 * of the buffer holding every y_j). */
//! texel 0
//! family matmul_group
//! axes layout=blocks shape=gemv dtype=f32,f16,bf16
#define MODE 2
#define PC_MATMUL_GROUP
#include "vkd_push.h"
#include "common.glsl"
#include "matmul_blocks.glsl"
