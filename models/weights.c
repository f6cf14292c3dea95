/* weights.c: checkpoint tensors to device tensors, in their file dtype and the device's
 * layout for matrices (VKD_LAYOUT_BLOCKS on lavapipe: repacked on the way). The data is
 * copied straight from the mmapped file into mapped device memory, or through a bounded
 * staging buffer (vkd_tensor_upload): never a second full copy in host memory. */
#include "weights.h"

#include <stdio.h>
#include <string.h>

vkd_result vkd_weight_load_as(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                              const int64_t *shape, vkd_layout layout, vkd_tensor **out,
                              vkd_error *err) {
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
    r = vkd_tensor_create_layout(ctx, st->dtype, rank, shape, layout, name, &t, err);
    if (r) return r;
    r = vkd_tensor_upload(t, 0, st->data, st->nbytes, err);
    if (r) {
        vkd_tensor_destroy(t);
        return vkd_error_prefix(err, "uploading '%s'", name);
    }
    *out = t;
    return VKD_OK;
}

vkd_result vkd_weight_load(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                           const int64_t *shape, vkd_tensor **out, vkd_error *err) {
    const vkd_st_tensor *st;
    vkd_result r = vkd_st_model_get(m, name, &st, err);
    if (r) return r;
    vkd_layout layout = rank == 2 ? vkd_ctx_weight_layout(ctx, st->dtype) : VKD_LAYOUT_ROWS;
    return vkd_weight_load_as(ctx, m, name, rank, shape, layout, out, err);
}

vkd_result vkd_layer_load(vkd_ctx *ctx, vkd_st_model *m, const char *prefix,
                          const vkd_layer_dims *d, vkd_layer *L, uint64_t *bytes, vkd_error *err) {
    const int64_t H = d->hidden, Q = (int64_t)d->n_q * d->head_dim,
                  KV = (int64_t)d->n_kv * d->head_dim, F = d->ffn, D = d->head_dim;
    struct { const char *suffix; vkd_tensor **dst; int rank; int64_t s0, s1; } w[] = {
        {"input_layernorm.weight", &L->ln1, 1, H, 0},
        {"self_attn.q_proj.weight", &L->wq, 2, Q, H},
        {"self_attn.k_proj.weight", &L->wk, 2, KV, H},
        {"self_attn.v_proj.weight", &L->wv, 2, KV, H},
        {"self_attn.o_proj.weight", &L->wo, 2, H, Q},
        {"post_attention_layernorm.weight", &L->ln2, 1, H, 0},
        {"mlp.gate_proj.weight", &L->wg, 2, F, H},
        {"mlp.up_proj.weight", &L->wu, 2, F, H},
        {"mlp.down_proj.weight", &L->wd, 2, H, F},
        {"self_attn.q_norm.weight", &L->q_norm, 1, D, 0},
        {"self_attn.k_norm.weight", &L->k_norm, 1, D, 0},
    };
    size_t n = d->qk_norm ? 11 : 9;
    for (size_t j = 0; j < n; j++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, w[j].suffix);
        int64_t shape[2] = {w[j].s0, w[j].s1};
        vkd_result r = vkd_weight_load(ctx, m, name, w[j].rank, shape, w[j].dst, err);
        if (r) return r;
        *bytes += (*w[j].dst)->bytes;
    }
    return VKD_OK;
}

void vkd_layer_free(vkd_layer *L) {
    vkd_tensor *all[] = {L->ln1, L->wq, L->wk, L->wv, L->wo, L->q_norm, L->k_norm,
                         L->ln2, L->wg, L->wu, L->wd, L->kc, L->vc};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    memset(L, 0, sizeof *L);
}
