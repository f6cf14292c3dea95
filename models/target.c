/* target.c: Qwen3 / Llama 3.x forward on Vulkan, one submission per step.
 *
 * Per layer, with x the residual stream (m rows x hidden):
 *   a = rmsnorm(x) * ln1;  q, k, v = a Wq^T, a Wk^T, a Wv^T
 *   (Qwen3) q, k = rmsnorm per head * q_norm, k_norm
 *   q, k = rope(positions len..len+m-1);  K/V cache rows [len, len+m) = k, v
 *   o = causal attention(q, cache[0, len+m));  x += o Wo^T
 *   a = rmsnorm(x) * ln2;  x += (silu(a Wg^T) * (a Wu^T)) Wd^T
 * logits = (rmsnorm(x) * norm) W_lm^T for the requested rows. */
#include "vkd_target.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

/* inv_freq_j = theta^(-2j/d), then llama3 wavelength rescaling, in float32 as transformers
 * computes it (_compute_default_rope_parameters, _compute_llama3_parameters). */
void vkd_rope_inv_freq(const vkd_cfg *c, uint32_t d, float *out) {
    for (uint32_t j = 0; j < d / 2; j++) {
        float e = (float)(2 * j) / (float)d;
        out[j] = 1.0f / powf((float)c->rope_theta, e);
    }
    const vkd_rope_scaling *rs = &c->rope_scaling;
    if (!rs->llama3) return;
    float factor = (float)rs->factor, lo = (float)rs->low_freq_factor;
    float hi = (float)rs->high_freq_factor, old = (float)rs->original_max_position_embeddings;
    float lo_wavelen = old / lo, hi_wavelen = old / hi;
    for (uint32_t j = 0; j < d / 2; j++) {
        float inv = out[j];
        float wavelen = 2.0f * (float)M_PI / inv;
        float llama = wavelen > lo_wavelen ? inv / factor : inv;
        float smooth = (old / wavelen - lo) / (hi - lo);
        float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
        bool medium = !(wavelen < hi_wavelen) && !(wavelen > lo_wavelen);
        out[j] = medium ? smoothed : llama;
    }
}

static vkd_result scratch(vkd_target *t, vkd_dtype dt, uint64_t rows, uint64_t cols,
                          const char *name, vkd_tensor **out, vkd_error *err) {
    return vkd_tensor_create_2d(t->ctx, dt, rows, cols, name, out, err);
}

vkd_result vkd_target_load(vkd_ctx *ctx, const char *dir, const vkd_target_options *opt,
                           vkd_target **out, vkd_error *err) {
    *out = NULL;
    vkd_target *t = calloc(1, sizeof *t);
    if (!t) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    t->ctx = ctx;
    vkd_st_model *m = NULL;
    vkd_result r = vkd_cfg_load(dir, &t->cfg, err);
    if (r) goto fail;
    if (t->cfg.arch != VKD_ARCH_QWEN3 && t->cfg.arch != VKD_ARCH_LLAMA) {
        r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "config.json: architecture %s is not a target model "
                     "(expected Qwen3ForCausalLM or LlamaForCausalLM)", vkd_arch_name(t->cfg.arch));
        goto fail;
    }
    r = vkd_gen_cfg_load(dir, &t->gen, err);
    if (r) goto fail;
    const vkd_cfg *c = &t->cfg;
    t->hidden = (uint32_t)c->hidden_size;
    t->n_layers = (uint32_t)c->num_hidden_layers;
    t->n_q = (uint32_t)c->num_attention_heads;
    t->n_kv = (uint32_t)c->num_key_value_heads;
    t->head_dim = (uint32_t)c->head_dim;
    t->ffn = (uint32_t)c->intermediate_size;
    t->vocab = (uint32_t)c->vocab_size;
    t->qk_norm = c->qk_norm;
    vkd_dtype kv_dtype = opt && opt->kv_dtype ? opt->kv_dtype : VKD_DTYPE_F32;
    if (kv_dtype != VKD_DTYPE_F32 && kv_dtype != VKD_DTYPE_F16) {
        r = vkd_fail(err, VKD_ERR_INVALID, "KV cache dtype must be f32 or f16");
        goto fail;
    }
    uint32_t maxpos = c->max_position_embeddings > 0 ? (uint32_t)c->max_position_embeddings : 4096;
    t->ctx_len = opt && opt->ctx_len ? opt->ctx_len : (maxpos < 4096 ? maxpos : 4096);
    if (t->ctx_len > maxpos) {
        r = vkd_fail(err, VKD_ERR_RANGE, "context length %u exceeds the model's max_position_embeddings (%u)",
                     t->ctx_len, maxpos);
        goto fail;
    }
    t->max_rows = opt && opt->max_rows ? opt->max_rows : 256;
    if (t->max_rows > t->ctx_len) t->max_rows = t->ctx_len;
    if (t->max_rows > 16384) t->max_rows = 16384; /* ids go through vkd_rec_update (64 KiB) */

    r = vkd_st_model_open(dir, &m, err);
    if (!r) r = vkd_cfg_check_tensors(c, m, NULL, NULL, err);
    if (r) goto fail;
    int64_t emb[2] = {t->vocab, t->hidden};
    bool frozen = opt && opt->frozen_head;
    const vkd_st_tensor *est;
    r = vkd_st_model_get(m, "model.embed_tokens.weight", &est, err);
    if (r) goto fail;
    /* frozen_head: both take the device's layout (the dtype of the embedding decides, as the
     * loader does for each) */
    vkd_layout hl = frozen ? vkd_ctx_frozen_weight_layout(ctx, est->dtype) : vkd_ctx_weight_layout(ctx, est->dtype);
    r = vkd_weight_load_as(ctx, m, "model.embed_tokens.weight", 2, emb, hl, &t->embed, err);
    if (r) goto fail;
    if (c->tie_word_embeddings) {
        t->lm_head = t->embed;
    } else {
        const vkd_st_tensor *hst;
        r = vkd_st_model_get(m, "lm_head.weight", &hst, err);
        if (r) goto fail;
        hl = frozen ? vkd_ctx_frozen_weight_layout(ctx, hst->dtype) : vkd_ctx_weight_layout(ctx, hst->dtype);
        r = vkd_weight_load_as(ctx, m, "lm_head.weight", 2, emb, hl, &t->lm_head, err);
        if (r) goto fail;
    }
    t->weight_bytes += t->lm_head->bytes;
    int64_t hshape[1] = {t->hidden};
    r = vkd_weight_load(ctx, m, "model.norm.weight", 1, hshape, &t->norm, err);
    if (r) goto fail;
    t->layers = calloc(t->n_layers, sizeof *t->layers);
    if (!t->layers) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); goto fail; }
    int64_t cache[2] = {t->ctx_len, (int64_t)t->n_kv * t->head_dim};
    vkd_layer_dims dims = {t->hidden, t->n_q, t->n_kv, t->head_dim, t->ffn, t->qk_norm};
    for (uint32_t i = 0; i < t->n_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "model.layers.%u.", i);
        r = vkd_layer_load(ctx, m, prefix, &dims, &t->layers[i], &t->weight_bytes, err);
        if (r) goto fail;
        r = vkd_tensor_create_kv(ctx, kv_dtype, cache[0], cache[1], "k_cache", &t->layers[i].kc, err);
        if (!r) r = vkd_tensor_create_kv(ctx, kv_dtype, cache[0], cache[1], "v_cache", &t->layers[i].vc, err);
        if (r) {
            vkd_error_prefix(err, "KV cache for %u tokens", t->ctx_len);
            goto fail;
        }
        if (t->layers[i].kc->nchunks != 1) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED,
                         "KV cache of %u tokens (%.0f MiB per layer) exceeds the device's storage "
                         "binding limit; use a shorter context or --kv-dtype f16", t->ctx_len,
                         t->layers[i].kc->bytes / 1048576.0);
            goto fail;
        }
    }
    vkd_st_model_close(m);
    m = NULL;

    float *inv = malloc(t->head_dim / 2 * sizeof *inv);
    if (!inv) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); goto fail; }
    vkd_rope_inv_freq(c, t->head_dim, inv);
    r = scratch(t, VKD_DTYPE_F32, 1, t->head_dim / 2, "inv_freq", &t->inv_freq, err);
    if (!r) r = vkd_tensor_upload(t->inv_freq, 0, inv, t->head_dim / 2 * sizeof *inv, err);
    free(inv);
    if (r) goto fail;

    uint32_t R = t->max_rows, Q = t->n_q * t->head_dim, KV = t->n_kv * t->head_dim;
    uint64_t lrows = vkd_ctx_max_binding(ctx) / ((uint64_t)t->vocab * 4);
    t->logit_rows = lrows < R ? (uint32_t)lrows : R;
    if (t->logit_rows > 64) t->logit_rows = 64;
    /* q, k, v in one buffer: one vkd_op_matmul_group dispatch writes them */
    const uint64_t qkv_cols[3] = {Q, KV, KV};
    const char *const qkv_names[3] = {"q", "k", "v"};
    vkd_tensor *qkv[3];
    if ((r = vkd_scratch_group(ctx, 3, R, qkv_cols, qkv_names, &t->qkv, qkv, err))) goto fail;
    t->q = qkv[0], t->k = qkv[1], t->v = qkv[2];
    if ((r = scratch(t, VKD_DTYPE_I32, 1, R, "ids", &t->ids, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, R, t->hidden, "x", &t->x, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, R, Q > t->hidden ? Q : t->hidden, "a", &t->a, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, R, Q, "o", &t->o, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, R, t->ffn, "gate", &t->g, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, R, t->ffn, "up", &t->u, err)) ||
        (r = scratch(t, VKD_DTYPE_F32, t->logit_rows, t->vocab, "logits", &t->logits, err)))
        goto fail;
    if (t->lm_head->layout == VKD_LAYOUT_BLOCKS &&
        (r = scratch(t, VKD_DTYPE_I32, 1, 2 * t->logit_rows * vkd_op_matmul_argmax_parts(ctx, t->lm_head),
                     "lm_part", &t->lm_part, err)))
        goto fail;
    uint64_t pf = vkd_op_attention_part_floats(ctx, R, t->ctx_len, t->n_q, t->n_kv, t->head_dim);
    if (pf && (r = scratch(t, VKD_DTYPE_F32, 1, pf, "attn_part", &t->attn_part, err))) goto fail;
    *out = t;
    return VKD_OK;
fail:
    vkd_st_model_close(m);
    vkd_target_free(t);
    return strstr(err->msg, dir) ? err->code : vkd_error_prefix(err, "%s", dir);
}

void vkd_target_free(vkd_target *t) {
    if (!t) return;
    if (t->layers) {
        for (uint32_t i = 0; i < t->n_layers; i++) vkd_layer_free(&t->layers[i]);
        free(t->layers);
    }
    if (t->lm_head != t->embed) vkd_tensor_destroy(t->lm_head);
    vkd_tensor *qkv[3] = {t->q, t->k, t->v};
    vkd_scratch_group_free(3, t->qkv, qkv);
    vkd_tensor *rest[] = {t->embed, t->norm, t->inv_freq, t->ids, t->x, t->a, t->o, t->g, t->u,
                          t->logits, t->lm_part, t->attn_part};
    for (size_t j = 0; j < sizeof rest / sizeof rest[0]; j++) vkd_tensor_destroy(rest[j]);
    free(t);
}

vkd_result vkd_target_step_record(vkd_target *t, vkd_rec *rec, const vkd_target_step *s,
                                  vkd_error *err) {
    if (vkd_rec_error(rec)->code) {
        *err = *vkd_rec_error(rec);
        return err->code;
    }
    const uint32_t m = s->m, H = t->hidden, D = t->head_dim, pos = t->len;
    if (m == 0 || m > t->max_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "forward step of %u rows (1..%u allowed)", m, t->max_rows);
    if ((uint64_t)pos + m > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE,
                        "sequence of %u tokens exceeds the context length %u (KV cache capacity)",
                        pos + m, t->ctx_len);
    for (uint32_t i = 0; i < m; i++)
        if (s->ids[i] < 0 || (uint32_t)s->ids[i] >= t->vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "token id %d outside the vocabulary (0..%u)",
                            s->ids[i], t->vocab - 1);
    if (s->logits_rows && (s->logits_rows > t->logit_rows || s->logits_row0 + s->logits_rows > m))
        return vkd_fail(err, VKD_ERR_INVALID, "logits rows [%u, +%u) outside the step or buffer",
                        s->logits_row0, s->logits_rows);
    if (s->ntaps && (!s->features || s->features->cols < (uint64_t)s->ntaps * H ||
                     s->feat_row0 + m > s->features->rows))
        return vkd_fail(err, VKD_ERR_INVALID, "features tensor too small for %u taps x %u rows",
                        s->ntaps, m);
    if (s->final_h && (s->final_h->dtype != VKD_DTYPE_F32 || s->final_h->cols < H ||
                       (uint64_t)s->final_row0 + m > s->final_h->rows))
        return vkd_fail(err, VKD_ERR_INVALID, "final hidden tensor '%s' too small or not f32 for %u rows",
                        s->final_h->name, m);
    for (uint32_t i = 0; i < s->ntaps; i++)
        if (s->tap_layers[i] >= t->n_layers)
            return vkd_fail(err, VKD_ERR_RANGE, "tap layer %u: the model has %u layers",
                            s->tap_layers[i], t->n_layers);

    const float eps = (float)t->cfg.rms_norm_eps;
    vkd_rec_update(rec, t->ids, 0, s->ids, (uint64_t)m * 4);
    vkd_op_embed(rec, t->x, t->ids, t->embed, m);
    /* inference: one set of scratch for every layer, each op in place as far as it goes */
    const vkd_layer_acts A = {.a1 = t->a, .q_raw = t->q, .k_raw = t->k, .q = t->q, .k = t->k,
                              .v = t->v, .o = t->o, .a2 = t->a, .g = t->g, .u = t->u, .h = t->g};
    const vkd_layer_dims dims = {H, t->n_q, t->n_kv, D, t->ffn, t->qk_norm};
    for (uint32_t l = 0; l < t->n_layers; l++) {
        vkd_layer *L = &t->layers[l];
        vkd_layer_step ls = {.m = m, .pos = pos, .causal = true, .kc = L->kc, .vc = L->vc,
                             .inv_freq = t->inv_freq, .eps = eps, .attn_part = t->attn_part};
        vkd_layer_forward(rec, L, &dims, t->x, &A, &ls);
        for (uint32_t i = 0; i < s->ntaps; i++)
            if (s->tap_layers[i] == l)
                vkd_op_copy2d(rec, s->features, s->feat_row0, i * H, t->x, 0, 0, m, H);
    }
    if (s->logits_rows || s->final_h) vkd_op_rmsnorm(rec, t->a, t->x, t->norm, m, H, eps);
    if (s->final_h) vkd_op_copy2d(rec, s->final_h, s->final_row0, 0, t->a, 0, 0, m, H);
    if (s->logits_rows) {
        if (s->argmax && t->lm_part)
            vkd_op_matmul_argmax(rec, s->argmax, t->lm_part, t->a, s->logits_row0, t->lm_head, s->logits_rows);
        else {
            vkd_op_matmul(rec, t->logits, 0, t->a, s->logits_row0, t->lm_head, s->logits_rows, false);
            if (s->argmax) vkd_op_argmax(rec, s->argmax, t->logits, 0, s->logits_rows, t->vocab);
        }
    }
    vkd_result r = vkd_rec_error(rec)->code;
    if (r) {
        *err = *vkd_rec_error(rec);
        return r;
    }
    t->len += m;
    return VKD_OK;
}

vkd_result vkd_target_crop(vkd_target *t, uint32_t len, vkd_error *err) {
    if (len > t->len)
        return vkd_fail(err, VKD_ERR_RANGE, "crop to %u tokens: the cache holds %u", len, t->len);
    t->len = len;
    return VKD_OK;
}

vkd_result vkd_target_prefill(vkd_target *t, vkd_rec *rec, const int32_t *ids, uint32_t n,
                              float *last_logits, vkd_error *err) {
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "empty prompt");
    for (uint32_t done = 0; done < n;) {
        uint32_t m = n - done < t->max_rows ? n - done : t->max_rows;
        bool last = done + m == n;
        vkd_target_step s = {.ids = ids + done, .m = m};
        if (last && last_logits) {
            s.logits_row0 = m - 1;
            s.logits_rows = 1;
        }
        vkd_rec_begin(rec);
        vkd_result r = vkd_target_step_record(t, rec, &s, err);
        if (!r && last && last_logits) r = vkd_rec_read(rec, t->logits, 0, last_logits, (uint64_t)t->vocab * 4);
        if (!r) r = vkd_rec_submit(rec);
        if (r) {
            if (!err->msg[0] || r == vkd_rec_error(rec)->code) *err = *vkd_rec_error(rec);
            return r;
        }
        done += m;
    }
    return VKD_OK;
}
