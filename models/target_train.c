/* target_train.c: the whole tied model's training forward and backward (target_train.h). */
#include "target_train.h"

#include "vkd_ops_grad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vkd_layer_dims target_dims(const vkd_target *t) {
    return (vkd_layer_dims){t->hidden, t->n_q, t->n_kv, t->head_dim, t->ffn, t->qk_norm};
}

static bool trainable(const vkd_tensor *w) {
    return w && w->dtype == VKD_DTYPE_F32 && w->layout == VKD_LAYOUT_ROWS && w->nchunks == 1;
}

vkd_result vkd_target_train_create(vkd_target *t, uint32_t max_rows, vkd_target_train **out,
                                   vkd_error *err) {
    *out = NULL;
    if (t->lm_head != t->embed)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "target training: the model must tie its LM head "
                        "to the embedding (tie_word_embeddings true)");
    if (max_rows < 2 || max_rows > t->ctx_len)
        return vkd_fail(err, VKD_ERR_INVALID, "target training: %u rows per sequence (2..%u allowed)",
                        max_rows, t->ctx_len);
    vkd_target_train *T = calloc(1, sizeof *T);
    if (!T) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    T->t = t;
    T->max_rows = max_rows;
    vkd_ctx *ctx = t->ctx;
    const vkd_layer_dims d = target_dims(t);
    const uint32_t R = max_rows, H = t->hidden, V = t->vocab;
    vkd_result r;
    T->acts = calloc(t->n_layers, sizeof *T->acts);
    T->h_labels = malloc(R * sizeof *T->h_labels);
    T->h_order = malloc(R * sizeof *T->h_order);
    T->h_offsets = malloc(((size_t)V + 1) * sizeof *T->h_offsets);
    T->h_row_w = malloc(R * sizeof *T->h_row_w);
    if (!T->acts || !T->h_labels || !T->h_order || !T->h_offsets || !T->h_row_w) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    vkd_target_param p[3 + 11 * 256];
    uint32_t np = vkd_target_train_params(T, p, sizeof p / sizeof p[0]);
    if (np > sizeof p / sizeof p[0]) {
        r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "target training: more than 256 layers");
        goto fail;
    }
    for (uint32_t i = 0; i < np; i++)
        if (!trainable(p[i].param)) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "target training: weight '%s' must be F32 and "
                         "row-major in one chunk (load the model into a row_major_weights context)",
                         p[i].name);
            goto fail;
        }
    for (uint32_t l = 0; l < t->n_layers; l++) {
        if (t->layers[l].kc->dtype != VKD_DTYPE_F32) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "target training: the KV cache must be F32");
            goto fail;
        }
        if ((r = vkd_layer_acts_create(ctx, &d, R, &T->acts[l], err)) ||
            (r = vkd_layer_weight_grads(ctx, &t->layers[l], &d, err)))
            goto fail;
    }
    struct { vkd_tensor **t; vkd_dtype dt; uint64_t rows, cols; const char *name; } s[] = {
        {&T->ids, VKD_DTYPE_I32, 1, R, "train_ids"}, {&T->labels, VKD_DTYPE_I32, 1, R, "train_labels"},
        {&T->row_w, VKD_DTYPE_F32, 1, R, "train_row_w"}, {&T->x, VKD_DTYPE_F32, R, H, "train_x"},
        {&T->out, VKD_DTYPE_F32, R, H, "train_out"}, {&T->dh, VKD_DTYPE_F32, R, H, "grad_out"},
        {&T->dx, VKD_DTYPE_F32, R, H, "grad_x"}, {&T->loss, VKD_DTYPE_F32, 1, R, "train_loss"},
        {&T->order, VKD_DTYPE_I32, 1, R, "embed_order"},
        {&T->offsets, VKD_DTYPE_I32, 1, (uint64_t)V + 1, "embed_offsets"},
        {&T->grad_embed, VKD_DTYPE_F32, V, H, "grad_embed"}, {&T->grad_norm, VKD_DTYPE_F32, 1, H, "grad_norm"},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++)
        if ((r = vkd_tensor_create_2d(ctx, s[j].dt, s[j].rows, s[j].cols, s[j].name, s[j].t, err)))
            goto fail;
    if ((r = vkd_layer_grad_ws_create(ctx, &d, R, R, &T->ws, err)) ||
        (r = vkd_lm_loss_ws_create(ctx, R, 0, false, &T->lws, err)))
        goto fail;
    *out = T;
    return VKD_OK;
fail:
    vkd_target_train_free(T);
    return r;
}

void vkd_target_train_free(vkd_target_train *T) {
    if (!T) return;
    for (uint32_t l = 0; T->acts && l < T->t->n_layers; l++) vkd_layer_acts_free(&T->acts[l]);
    free(T->acts);
    vkd_layer_grad_ws_free(&T->ws);
    vkd_lm_loss_ws_destroy(T->lws);
    vkd_tensor *all[] = {T->ids, T->labels, T->row_w, T->x, T->out, T->dh, T->dx, T->loss, T->order,
                         T->offsets, T->grad_embed, T->grad_norm};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    free(T->h_labels), free(T->h_order), free(T->h_offsets), free(T->h_row_w);
    free(T);
}

vkd_result vkd_target_train_zero_grads(vkd_target_train *T, vkd_rec *rec) {
    const vkd_layer_dims d = target_dims(T->t);
    for (uint32_t l = 0; l < T->t->n_layers; l++) vkd_layer_zero_grads(rec, &T->t->layers[l], &d);
    uint64_t ne = (uint64_t)T->t->vocab * T->t->hidden;
    vkd_op_axpby(rec, T->grad_embed, T->grad_embed, T->grad_embed, 0.0f, 0.0f, ne);
    return vkd_op_axpby(rec, T->grad_norm, T->grad_norm, T->grad_norm, 0.0f, 0.0f, T->t->hidden);
}

vkd_result vkd_target_train_sequence(vkd_target_train *T, vkd_rec *rec, const int32_t *ids,
                                     uint32_t m, float row_weight, vkd_error *err) {
    vkd_target *t = T->t;
    const uint32_t H = t->hidden, V = t->vocab;
    if (m < 2 || m > T->max_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "target training: sequence of %u tokens (2..%u allowed)",
                        m, T->max_rows);
    for (uint32_t i = 0; i < m; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= V)
            return vkd_fail(err, VKD_ERR_INVALID, "target training: token id %d at %u outside the "
                            "vocabulary of %u", ids[i], i, V);
    for (uint32_t i = 0; i < m; i++) {
        T->h_labels[i] = i + 1 < m ? ids[i + 1] : -1;
        T->h_row_w[i] = i + 1 < m ? row_weight : 0.0f;
    }
    vkd_embed_grad_index(ids, m, V, T->h_offsets, T->h_order);
    vkd_result r;
    if ((r = vkd_tensor_upload(T->ids, 0, ids, (size_t)m * 4, err)) ||
        (r = vkd_tensor_upload(T->labels, 0, T->h_labels, (size_t)m * 4, err)) ||
        (r = vkd_tensor_upload(T->row_w, 0, T->h_row_w, (size_t)m * 4, err)) ||
        (r = vkd_tensor_upload(T->order, 0, T->h_order, (size_t)m * 4, err)) ||
        (r = vkd_tensor_upload(T->offsets, 0, T->h_offsets, ((size_t)V + 1) * 4, err)))
        return r;
    const vkd_layer_dims d = target_dims(t);
    const float eps = (float)t->cfg.rms_norm_eps;
    t->len = 0;
    vkd_op_embed(rec, T->x, T->ids, t->embed, m);
    for (uint32_t l = 0; l < t->n_layers; l++) {
        vkd_layer_step s = {.m = m, .pos = 0, .causal = true, .kc = t->layers[l].kc,
                            .vc = t->layers[l].vc, .inv_freq = t->inv_freq, .eps = eps};
        vkd_layer_forward(rec, &t->layers[l], &d, T->x, &T->acts[l], &s);
    }
    vkd_op_rmsnorm(rec, T->out, T->x, t->norm, m, H, eps);
    /* the head's dW goes straight into grad_embed (accumulate), dh is written fresh */
    vkd_op_axpby(rec, T->dh, T->dh, T->dh, 0.0f, 0.0f, (uint64_t)m * H);
    vkd_lm_loss_args la = {.rows = m, .h = T->out, .w = t->embed, .labels = T->labels,
                           .row_w = T->row_w, .loss = T->loss, .dh = T->dh, .dw = T->grad_embed,
                           .accumulate = true};
    vkd_op_lm_loss_forward(rec, T->lws, &la);
    vkd_op_lm_loss_backward(rec, T->lws, &la);
    vkd_norm_backward(rec, T->dx, T->grad_norm, T->ws.dwn, T->ws.rstd, T->dh, T->x, t->norm, m, H,
                      eps, false);
    for (uint32_t l = t->n_layers; l-- > 0;) {
        vkd_layer_step s = {.m = m, .pos = 0, .causal = true, .kc = t->layers[l].kc,
                            .vc = t->layers[l].vc, .inv_freq = t->inv_freq, .eps = eps};
        vkd_layer_backward(rec, &t->layers[l], &d, T->dx, &T->acts[l], &s, &T->ws);
    }
    vkd_op_embed_backward(rec, T->grad_embed, T->dx, T->order, T->offsets, m, V, H, true);
    if (vkd_rec_error(rec)->code) { /* the recorder's errors are sticky: report the first */
        *err = *vkd_rec_error(rec);
        return vkd_error_prefix(err, "target training");
    }
    return VKD_OK;
}

uint32_t vkd_target_train_params(vkd_target_train *T, vkd_target_param *out, uint32_t cap) {
    vkd_target *t = T->t;
    uint32_t n = 0;
#define ADD(P, G, ...) do { if (out && n < cap) { snprintf(out[n].name, sizeof out[n].name, __VA_ARGS__); \
        out[n].param = (P), out[n].grad = (G); } n++; } while (0)
    ADD(t->embed, T->grad_embed, "model.embed_tokens.weight");
    static const char *const lin_names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (uint32_t l = 0; l < t->n_layers; l++) {
        vkd_layer *L = &t->layers[l];
        ADD(L->ln1, L->grad_ln1, "model.layers.%u.input_layernorm.weight", l);
        if (t->qk_norm) {
            ADD(L->q_norm, L->grad_q_norm, "model.layers.%u.self_attn.q_norm.weight", l);
            ADD(L->k_norm, L->grad_k_norm, "model.layers.%u.self_attn.k_norm.weight", l);
        }
        ADD(L->ln2, L->grad_ln2, "model.layers.%u.post_attention_layernorm.weight", l);
        vkd_linear *lin[7];
        vkd_layer_linears(L, lin);
        for (int j = 0; j < 7; j++) ADD(lin[j]->w, lin[j]->grad_w, "model.layers.%u.%s.weight", l, lin_names[j]);
    }
    ADD(t->norm, T->grad_norm, "model.norm.weight");
#undef ADD
    return n;
}
