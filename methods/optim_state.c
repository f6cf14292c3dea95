/* optim_state.c: optimizer moments to / from safetensors (vkd_optim_state.h). */
#include "vkd_optim_state.h"

#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"
#include "st_write.h"

vkd_result vkd_optim_state_save(const vkd_optim_slot *slots, const char *const *names, uint32_t nslots,
                                const char *path, vkd_error *err) {
    uint32_t n = nslots * 2;
    vkd_st_out *outs = calloc(n, sizeof *outs);
    char (*nm)[112] = calloc(n, sizeof *nm);
    float **data = calloc(n, sizeof *data);
    vkd_result r = outs && nm && data ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (uint32_t i = 0; !r && i < n; i++) {
        const vkd_optim_slot *s = &slots[i / 2];
        snprintf(nm[i], sizeof nm[i], "%c.%s", i % 2 ? 'v' : 'm', names[i / 2]);
        if (!(data[i] = malloc(s->n * 4))) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); break; }
        r = vkd_tensor_download(i % 2 ? s->v : s->m, 0, data[i], s->n * 4, err);
        outs[i] = (vkd_st_out){nm[i], VKD_DTYPE_F32, 1, {(int64_t)s->n}, data[i]};
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if (!r) r = vkd_st_write(path, outs, n, meta, err);
    for (uint32_t i = 0; data && i < n; i++) free(data[i]);
    free(data), free(nm), free(outs);
    return r;
}

vkd_result vkd_optim_state_load(const vkd_optim_slot *slots, const char *const *names, uint32_t nslots,
                                const char *path, vkd_error *err) {
    vkd_st_file *f;
    vkd_result r = vkd_st_open(path, &f, err);
    if (r) return r;
    if (vkd_st_count(f) != (size_t)nslots * 2)
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: %zu tensors, expected %u (m and v of every trained tensor)", path,
                     vkd_st_count(f), nslots * 2);
    for (uint32_t i = 0; !r && i < nslots * 2; i++) {
        const vkd_optim_slot *s = &slots[i / 2];
        char name[112];
        snprintf(name, sizeof name, "%c.%s", i % 2 ? 'v' : 'm', names[i / 2]);
        const vkd_st_tensor *t = vkd_st_find(f, name);
        if (!t || t->dtype != VKD_DTYPE_F32 || t->rank != 1 || (uint64_t)t->shape[0] != s->n)
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' missing or not F32 [%llu]", path, name,
                         (unsigned long long)s->n);
        else r = vkd_tensor_upload(i % 2 ? s->v : s->m, 0, t->data, s->n * 4, err);
    }
    vkd_st_close(f);
    return r;
}

vkd_result vkd_optim_slot_moments(vkd_ctx *ctx, vkd_optim_slot *s, vkd_error *err) {
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, s->n, "adam_m", &s->m, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, s->n, "adam_v", &s->v, err);
    return r;
}

vkd_result vkd_optim_parts_create(vkd_ctx *ctx, const vkd_optim_slot *slots, uint32_t n, uint32_t *nparts,
                                  vkd_tensor **parts, vkd_error *err) {
    *nparts = vkd_optim_parts_needed(ctx, slots, n);
    return vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, *nparts + 1, "train_norm_parts", parts, err);
}
