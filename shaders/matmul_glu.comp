#version 450
/* Gate and up projections with SwiGLU, on texel-block weights (VKD_LAYOUT_BLOCKS): y[y_row0 + i,
 * col0 + n] = silu(x[x_row0 + i] . G[n]) * (x[x_row0 + i] . U[n]) for i < m, n < rows (one
 * chunk of G and the same chunk of U, which have the same shape and so the same chunks).
 * The geometry and loop of matmul_blocks.comp; each lane fetches the same texel of G and U
 * and keeps two sets of accumulators. One dispatch instead of gate, up and swiglu.
 * Bindings: 0 G chunk, 1 U chunk (uniform texel buffers, RGBA32UI), 2 x f32, 3 y f32 (write). */
//! texel 0 1
//! family matmul_glu
//! axes layout=blocks shape=gemv dtype=f32,f16,bf16
#define MODE 1
#define PC_MATMUL
#include "vkd_push.h"
#include "common.glsl"
#include "matmul_blocks.glsl"
