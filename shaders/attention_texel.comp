#version 450
/* attention.comp (inference: no LSE, no blocks) with the K/V caches read through their
 * uniform texel buffer views (RGBA32UI; vkd_tensor_create_kv on a profile with kv_texel):
 * lavapipe fetches texels vectorised where it loads storage buffers lane by lane with a
 * bounds check per component (../shared/lavapipe-notes.md), and the key and value loads are
 * most of attention's time. Same arithmetic in the same order as attention.comp. */
//! texel 1 2
//! variant ATTENTION_TEXEL_F32 KV_F32=1 KV_TEXEL=1
//! variant ATTENTION_TEXEL_F16 KV_F16=1 KV_TEXEL=1
//! variant ATTENTION_TEXEL_SPLIT_F32 KV_F32=1 KV_TEXEL=1 SPLIT=1
//! variant ATTENTION_TEXEL_SPLIT_F16 KV_F16=1 KV_TEXEL=1 SPLIT=1
#include "attention.glsl"
