/* vkd_optim_state.h: the optimizer state of a trainer (the AdamW moments of every slot, f32)
 * to and from one safetensors file, names "m.<tensor>" and "v.<tensor>" (train-draft and
 * train-target checkpoints). Loading checks every name, dtype and shape. */
#ifndef VKD_OPTIM_STATE_H
#define VKD_OPTIM_STATE_H

#include "vkd_train_ops.h"

/* names[i]: the tensor name of slots[i]; the file is written atomically */
vkd_result vkd_optim_state_save(const vkd_optim_slot *slots, const char *const *names, uint32_t n,
                                const char *path, vkd_error *err);
vkd_result vkd_optim_state_load(const vkd_optim_slot *slots, const char *const *names, uint32_t n,
                                const char *path, vkd_error *err);

/* The AdamW moments of a slot whose param, grad and n are set: two f32 tensors of n zeros. */
vkd_result vkd_optim_slot_moments(vkd_ctx *ctx, vkd_optim_slot *s, vkd_error *err);
/* vkd_optim_step's global-norm scratch for these slots (*nparts partial sums + 1). */
vkd_result vkd_optim_parts_create(vkd_ctx *ctx, const vkd_optim_slot *slots, uint32_t n, uint32_t *nparts,
                                  vkd_tensor **parts, vkd_error *err);

#endif
