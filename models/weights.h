/* weights.h: loading checkpoint tensors onto the device. */
#ifndef VKD_WEIGHTS_H
#define VKD_WEIGHTS_H

#include "safetensors.h"
#include "vkd_runtime.h"

/* Creates a device tensor of the checkpoint dtype (BF16/F16/F32) for tensor `name` of m,
 * checking that its shape equals `shape` (rank dims), and uploads it. */
vkd_result vkd_weight_load(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                           const int64_t *shape, vkd_tensor **out, vkd_error *err);

#endif
