/* weights.c: checkpoint tensors to device tensors, in their file dtype. The data is
 * copied straight from the mmapped file into mapped device memory, or through a bounded
 * staging buffer (vkd_tensor_upload): never a second full copy in host memory. */
#include "weights.h"

#include <stdio.h>
#include <string.h>

vkd_result vkd_weight_load(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                           const int64_t *shape, vkd_tensor **out, vkd_error *err) {
    *out = NULL;
    const vkd_st_tensor *st;
    vkd_result r = vkd_st_model_get(m, name, &st, err);
    if (r) return r;
    if (st->dtype != VKD_DTYPE_BF16 && st->dtype != VKD_DTYPE_F16 && st->dtype != VKD_DTYPE_F32)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "tensor '%s': dtype %s not supported for weights (expected BF16, F16 or F32)",
                        name, vkd_dtype_name(st->dtype));
    bool same = st->rank == rank;
    for (int i = 0; same && i < rank; i++) same = st->shape[i] == shape[i];
    if (!same) {
        char got[96], want[96] = "[";
        vkd_st_shape_str(st, got, sizeof got);
        for (int i = 0; i < rank; i++) {
            size_t n = strlen(want);
            snprintf(want + n, sizeof want - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
        }
        strncat(want, "]", sizeof want - strlen(want) - 1);
        return vkd_fail(err, VKD_ERR_FORMAT, "tensor '%s': shape %s, but config.json implies %s",
                        name, got, want);
    }
    vkd_tensor *t;
    r = vkd_tensor_create(ctx, st->dtype, rank, shape, name, &t, err);
    if (r) return r;
    r = vkd_tensor_upload(t, 0, st->data, st->nbytes, err);
    if (r) {
        vkd_tensor_destroy(t);
        return vkd_error_prefix(err, "uploading '%s'", name);
    }
    *out = t;
    return VKD_OK;
}
