/* weights.c: checkpoint tensors to device tensors, in their file dtype. The data is
 * copied straight from the mmapped file into mapped device memory, or through a bounded
 * staging buffer (vkd_tensor_upload): never a second full copy in host memory. */
#include "weights.h"

#include "vkd_ops.h"

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
    r = vkd_weight_check_finite(t, st->data, st->nbytes, err);
    if (r) {
        vkd_tensor_destroy(t);
        return r;
    }
    *out = t;
    return VKD_OK;
}

/* A NaN or Inf in a weight would not stop a forward pass: it turns every logit into NaN and
 * argmax, ranks and KL into plausible numbers (token 0, rank 1, KL 0). So every weight is
 * checked once, on the device, right after its upload (vkd_op_count_nonfinite: one read of
 * the tensor, a few ms per GB on a GPU). */
vkd_result vkd_weight_check_finite(vkd_tensor *t, const void *host, uint64_t nbytes, vkd_error *err) {
    vkd_rec *rec = NULL;
    vkd_tensor *count = NULL;
    uint32_t bad = 0;
    bool tail = false;
    vkd_result r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_U32, 1, 1, "nonfinite_count", &count, err);
    if (!r) r = vkd_rec_create(t->ctx, &rec, err);
    if (!r) {
        vkd_rec_begin(rec);
        vkd_op_count_nonfinite(rec, count, t, &tail);
        vkd_rec_read(rec, count, 0, &bad, sizeof bad);
        r = vkd_rec_submit(rec);
        if (r) vkd_fail(err, r, "checking '%s' for NaN/Inf: %s", t->name, vkd_rec_error(rec)->msg);
    }
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(count);
    if (r) return r;
    for (uint32_t c = 0; tail && c < t->nchunks; c++) { /* a chunk's odd last 16-bit value: from the file */
        uint64_t end = (t->chunks[c].row0 + t->chunks[c].rows) * t->row_bytes;
        if (t->chunks[c].bytes % 4 == 0 || end < 2 || end > nbytes) continue;
        uint16_t h;
        memcpy(&h, (const uint8_t *)host + end - 2, 2);
        uint16_t m = t->dtype == VKD_DTYPE_BF16 ? 0x7f80 : 0x7c00;
        bad += (h & m) == m;
    }
    if (bad)
        return vkd_fail(err, VKD_ERR_FORMAT, "tensor '%s': %u non-finite value%s (NaN or Inf) in the checkpoint",
                        t->name, bad, bad == 1 ? "" : "s");
    return VKD_OK;
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
