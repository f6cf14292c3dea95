/* dflash.c: DFlash draft forward on Vulkan (context append and block call). */
#include "vkd_dflash.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vkd_result vkd_dflash_load(vkd_ctx *ctx, vkd_target *target, const char *dir,
                           const vkd_dflash_options *opt, vkd_dflash **out, vkd_error *err) {
    *out = NULL;
    vkd_dflash *d = calloc(1, sizeof *d);
    if (!d) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    d->ctx = ctx;
    d->target = target;
    vkd_st_model *m = NULL;
    vkd_result r = vkd_cfg_load(dir, &d->cfg, err);
    if (r) goto fail;
    if (d->cfg.arch != VKD_ARCH_DFLASH) {
        r = vkd_fail(err, VKD_ERR_INVALID, "config.json: architecture %s is not a DFlash draft "
                     "(expected DFlashDraftModel with dflash_config)", vkd_arch_name(d->cfg.arch));
        goto fail;
    }
    r = vkd_cfg_dflash_resolve(&d->cfg, &target->cfg, err);
    if (r) goto fail;
    const vkd_cfg *c = &d->cfg;
    d->hidden = (uint32_t)c->hidden_size;
    d->n_layers = (uint32_t)c->num_hidden_layers;
    d->n_q = (uint32_t)c->num_attention_heads;
    d->n_kv = (uint32_t)c->num_key_value_heads;
    d->head_dim = (uint32_t)c->head_dim;
    d->ffn = (uint32_t)c->intermediate_size;
    d->vocab = target->vocab;
    d->ntaps = (uint32_t)c->n_target_layer_ids;
    for (uint32_t i = 0; i < d->ntaps; i++) d->tap_layers[i] = (uint32_t)c->target_layer_ids[i];
    d->mask_id = (int32_t)c->mask_token_id;
    d->block = opt && opt->block_size ? opt->block_size : (uint32_t)c->block_size;
    if (d->block < 2 || d->block > 256) {
        r = vkd_fail(err, VKD_ERR_INVALID, "block size %u: expected 2..256", d->block);
        goto fail;
    }
    if (d->mask_id < 0 || (uint32_t)d->mask_id >= d->vocab) {
        r = vkd_fail(err, VKD_ERR_INVALID, "config.json: dflash_config.mask_token_id %d is outside "
                     "the target's vocabulary (0..%u)", d->mask_id, d->vocab - 1);
        goto fail;
    }
    d->ctx_len = opt && opt->ctx_len ? opt->ctx_len : target->ctx_len;
    vkd_dtype kv = opt && opt->kv_dtype ? opt->kv_dtype : VKD_DTYPE_F32;

    r = vkd_st_model_open(dir, &m, err);
    if (!r) r = vkd_cfg_check_tensors(c, m, NULL, NULL, err);
    if (r) goto fail;
    int64_t fc[2] = {d->hidden, (int64_t)d->ntaps * d->hidden}, hv[1] = {d->hidden};
    if ((r = vkd_weight_load(ctx, m, "fc.weight", 2, fc, &d->fc.w, err)) ||
        (r = vkd_weight_load(ctx, m, "hidden_norm.weight", 1, hv, &d->hidden_norm, err)) ||
        (r = vkd_weight_load(ctx, m, "norm.weight", 1, hv, &d->norm, err)))
        goto fail;
    d->weight_bytes = d->fc.w->bytes + d->hidden_norm->bytes + d->norm->bytes;
    d->layers = calloc(d->n_layers, sizeof *d->layers);
    if (!d->layers) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); goto fail; }
    vkd_layer_dims dims = {d->hidden, d->n_q, d->n_kv, d->head_dim, d->ffn, true};
    uint32_t KV = d->n_kv * d->head_dim;
    int64_t cache[2] = {(int64_t)d->ctx_len + d->block, KV};
    for (uint32_t i = 0; i < d->n_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%u.", i);
        r = vkd_layer_load(ctx, m, prefix, &dims, &d->layers[i], &d->weight_bytes, err);
        if (!r) r = vkd_tensor_create_kv(ctx, kv, cache[0], cache[1], "draft_k_cache", &d->layers[i].kc, err);
        if (!r) r = vkd_tensor_create_kv(ctx, kv, cache[0], cache[1], "draft_v_cache", &d->layers[i].vc, err);
        if (r) goto fail;
        if (d->layers[i].kc->nchunks != 1) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "draft KV cache of %u tokens exceeds the "
                         "device's storage binding limit", d->ctx_len);
            goto fail;
        }
    }
    vkd_st_model_close(m);
    m = NULL;

    /* the draft's RoPE: its own config (rope_theta, scaling), as z-lab builds it */
    float *inv = malloc(d->head_dim / 2 * sizeof *inv);
    if (!inv) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); goto fail; }
    vkd_rope_inv_freq(c, d->head_dim, inv);
    r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, d->head_dim / 2, "draft_inv_freq", &d->inv_freq, err);
    if (!r) r = vkd_tensor_upload(d->inv_freq, 0, inv, d->head_dim / 2 * sizeof *inv, err);
    free(inv);
    if (r) goto fail;

    uint32_t R = target->max_rows, B = d->block, H = d->hidden, Q = d->n_q * d->head_dim;
    d->max_ctx_rows = R;
    /* the context's k/v and the block's q/k/v, each set in one buffer (vkd_op_matmul_group) */
    vkd_tensor *kvx[2], *qkv[3];
    if ((r = vkd_scratch_group(ctx, 2, R, (const uint64_t[]){KV, KV}, (const char *const[]){"draft_kx", "draft_vx"},
                               &d->kvx, kvx, err)))
        goto fail;
    d->kx = kvx[0], d->vx = kvx[1];
    if ((r = vkd_scratch_group(ctx, 3, B, (const uint64_t[]){Q, KV, KV},
                               (const char *const[]){"draft_q", "draft_k", "draft_v"}, &d->qkv, qkv, err)))
        goto fail;
    d->q = qkv[0], d->k = qkv[1], d->v = qkv[2];
    if ((r = vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, B, "draft_ids", &d->ids, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, R, H, "draft_ctx", &d->c, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, H, "draft_h", &d->h, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, H, "draft_a", &d->a, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, Q, "draft_o", &d->o, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, d->ffn, "draft_gate", &d->g, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, d->ffn, "draft_up", &d->u, err)) ||
        (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B - 1, d->vocab, "draft_logits", &d->logits, err)))
        goto fail;
    if (d->logits->nchunks != 1) {
        r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "draft logits of %u x %u exceed the binding limit",
                     B - 1, d->vocab);
        goto fail;
    }
    uint64_t pf = vkd_op_attention_part_floats(ctx, B, cache[0], d->n_q, d->n_kv, d->head_dim);
    if (pf && (r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, pf, "draft_attn_part", &d->attn_part, err)))
        goto fail;
    *out = d;
    return VKD_OK;
fail:
    vkd_st_model_close(m);
    vkd_dflash_free(d);
    return strstr(err->msg, dir) ? err->code : vkd_error_prefix(err, "%s", dir);
}

void vkd_dflash_free(vkd_dflash *d) {
    if (!d) return;
    if (d->layers)
        for (uint32_t i = 0; i < d->n_layers; i++) vkd_layer_free(&d->layers[i]);
    free(d->layers);
    vkd_linear_lora_detach(&d->fc);
    vkd_tensor *kvx[2] = {d->kx, d->vx}, *qkv[3] = {d->q, d->k, d->v};
    vkd_scratch_group_free(2, d->kvx, kvx);
    vkd_scratch_group_free(3, d->qkv, qkv);
    vkd_tensor *all[] = {d->fc.w, d->hidden_norm, d->norm, d->inv_freq, d->ids, d->c,
                         d->h, d->a, d->o, d->g, d->u, d->logits, d->attn_part};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    free(d);
}

static vkd_result rec_status(vkd_rec *rec, vkd_error *err) {
    vkd_result r = vkd_rec_error(rec)->code;
    if (r) *err = *vkd_rec_error(rec);
    return r;
}

vkd_result vkd_dflash_context_record(vkd_dflash *d, vkd_rec *rec, const vkd_tensor *features,
                                     uint32_t row0, uint32_t n, vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    if (n == 0) return VKD_OK;
    if (n > d->max_ctx_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context step of %u rows (at most %u)", n, d->max_ctx_rows);
    if ((uint64_t)d->len + n > d->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "draft context of %u tokens exceeds its capacity %u",
                        d->len + n, d->ctx_len);
    if (features->cols < (uint64_t)d->ntaps * d->hidden || row0 + n > features->rows)
        return vkd_fail(err, VKD_ERR_INVALID, "features tensor too small for the draft's %u taps", d->ntaps);
    const uint32_t H = d->hidden, D = d->head_dim, pos = d->len;
    const float eps = (float)d->cfg.rms_norm_eps;
    const vkd_layer_dims dims = {H, d->n_q, d->n_kv, D, d->ffn, true};
    vkd_linear_forward(rec, d->c, 0, features, row0, &d->fc, n, false);
    vkd_op_rmsnorm(rec, d->c, d->c, d->hidden_norm, n, H, eps);
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_layer *L = &d->layers[l];
        vkd_layer_kv_append(rec, L, &dims, d->c, 0, n, pos, d->kx, d->kx, d->vx, L->kc, L->vc,
                            d->inv_freq, eps);
    }
    if (rec_status(rec, err)) return err->code;
    d->len += n;
    return VKD_OK;
}

vkd_result vkd_dflash_block_record(vkd_dflash *d, vkd_rec *rec, const int32_t *block,
                                   vkd_error *err) {
    return vkd_dflash_block_argmax_record(d, rec, block, NULL, err);
}

vkd_result vkd_dflash_block_argmax_record(vkd_dflash *d, vkd_rec *rec, const int32_t *block,
                                          vkd_tensor *argmax, vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    const uint32_t B = d->block, H = d->hidden, D = d->head_dim, start = d->len;
    for (uint32_t i = 0; i < B; i++)
        if (block[i] < 0 || (uint32_t)block[i] >= d->vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "draft block token %d outside the vocabulary", block[i]);
    const float eps = (float)d->cfg.rms_norm_eps;
    vkd_rec_update(rec, d->ids, 0, block, (uint64_t)B * 4);
    vkd_op_embed(rec, d->h, d->ids, d->target->embed, B);
    /* the target's layer with the block's K/V appended past the context, non-causal */
    const vkd_layer_acts A = {.a1 = d->a, .q_raw = d->q, .k_raw = d->k, .q = d->q, .k = d->k,
                              .v = d->v, .o = d->o, .a2 = d->a, .g = d->g, .u = d->u, .h = d->g};
    const vkd_layer_dims dims = {H, d->n_q, d->n_kv, D, d->ffn, true};
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_layer *L = &d->layers[l];
        /* block rows' K/V go just past the context; d->len does not move (crop) */
        vkd_layer_step ls = {.m = B, .pos = start, .causal = false, .kc = L->kc, .vc = L->vc,
                             .inv_freq = d->inv_freq, .eps = eps, .attn_part = d->attn_part};
        vkd_layer_forward(rec, L, &dims, d->h, &A, &ls);
    }
    vkd_op_rmsnorm(rec, d->a, d->h, d->norm, B, H, eps);
    const vkd_target *t = d->target;
    if (argmax && t->lm_part && B - 1 <= t->logit_rows)
        vkd_op_matmul_argmax(rec, argmax, t->lm_part, d->a, 1, t->lm_head, B - 1);
    else {
        vkd_op_matmul(rec, d->logits, 0, d->a, 1, t->lm_head, B - 1, false);
        if (argmax) vkd_op_argmax(rec, argmax, d->logits, 0, B - 1, d->vocab);
    }
    return rec_status(rec, err);
}

vkd_result vkd_dflash_crop(vkd_dflash *d, uint32_t len, vkd_error *err) {
    if (len > d->len)
        return vkd_fail(err, VKD_ERR_RANGE, "draft crop to %u: the context holds %u", len, d->len);
    d->len = len;
    return VKD_OK;
}

vkd_result vkd_dflash_target_features(vkd_dflash *d, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                      vkd_tensor *feats, vkd_error *err) {
    return vkd_dflash_target_features_final(d, rec, seq, T, feats, NULL, err);
}

vkd_result vkd_dflash_target_features_final(vkd_dflash *d, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                            vkd_tensor *feats, vkd_tensor *final_h, vkd_error *err) {
    vkd_target *t = d->target;
    vkd_result r = vkd_target_crop(t, 0, err);
    for (uint32_t done = 0; !r && done < T;) {
        uint32_t m = T - done < t->max_rows ? T - done : t->max_rows;
        vkd_target_step st = {.ids = seq + done, .m = m, .tap_layers = d->tap_layers, .ntaps = d->ntaps,
                              .features = feats, .feat_row0 = done, .final_h = final_h, .final_row0 = done};
        vkd_rec_begin(rec);
        r = vkd_target_step_record(t, rec, &st, err);
        vkd_result s = vkd_rec_submit(rec);
        if (!r) r = s;
        if (r && vkd_rec_error(rec)->code) *err = *vkd_rec_error(rec);
        done += m;
    }
    vkd_result c = vkd_target_crop(t, 0, err);
    return r ? r : c;
}
