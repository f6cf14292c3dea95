/* dflash_train.c: DFlash draft training forward (activations kept) and backward for LoRA
 * gradients (dflash_train.h). The backward walks the forward in reverse, op by op:
 *   out = rmsnorm(h) norm                 -> dh
 *   per layer, last first (dh: gradient of the layer's output, the residual stream):
 *     h += lin(swiglu(lin(a2; gate), lin(a2; up)); down)    -> dh += rmsnorm'(ln2) of
 *                                                              (gate' dg + up' du)
 *     h += lin(attn(q, [kc; kb], [vc; vb]); o)               -> dq, dK, dV (flash backward)
 *     q = rope(qnorm(lin(a1; q))), kb = rope(knorm(lin(a1; k))), vb = lin(a1; v)
 *                                                            -> dh += rmsnorm'(ln1) of da1
 *     kc = rope(knorm(lin(c; k))), vc = lin(c; v)            -> dc += ...
 *   c = rmsnorm(lin(F; fc)) hidden_norm   -> fc's adapter gradients (F itself is frozen input) */
#include "dflash_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_ops_grad.h"

static vkd_result mk(vkd_ctx *ctx, vkd_dtype dt, uint64_t rows, uint64_t cols, const char *name,
                     vkd_tensor **t, vkd_error *err) {
    return vkd_tensor_create_2d(ctx, dt, rows, cols, name, t, err);
}

vkd_result vkd_dflash_train_create(vkd_dflash *d, uint32_t max_ctx, vkd_dflash_train **out,
                                   vkd_error *err) {
    *out = NULL;
    if (max_ctx == 0 || max_ctx > d->ctx_len)
        return vkd_fail(err, VKD_ERR_INVALID, "draft training context of %u rows (1..%u allowed)",
                        max_ctx, d->ctx_len);
    vkd_dflash_train *T = calloc(1, sizeof *T);
    if (!T) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    T->d = d;
    T->max_ctx = max_ctx;
    vkd_ctx *ctx = d->ctx;
    const uint32_t B = d->block, H = d->hidden, Q = d->n_q * d->head_dim, KV = d->n_kv * d->head_dim,
                   F = d->ffn, C = max_ctx, L = d->n_layers;
    const vkd_layer_dims dims = {H, d->n_q, d->n_kv, d->head_dim, F, true};
    vkd_result r;
    T->acts = calloc(L, sizeof *T->acts);
    T->kall = calloc(L, sizeof *T->kall);
    T->vall = calloc(L, sizeof *T->vall);
    T->ck_raw = calloc(L, sizeof *T->ck_raw);
    if (!T->acts || !T->kall || !T->vall || !T->ck_raw) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    for (uint32_t l = 0; l < L; l++)
        if ((r = vkd_layer_acts_create(ctx, &dims, B, &T->acts[l], err)) ||
            (r = mk(ctx, VKD_DTYPE_F32, C + B, KV, "train_k", &T->kall[l], err)) ||
            (r = mk(ctx, VKD_DTYPE_F32, C + B, KV, "train_v", &T->vall[l], err)) ||
            (r = mk(ctx, VKD_DTYPE_F32, C, KV, "train_ck_raw", &T->ck_raw[l], err)))
            goto fail;
    struct { vkd_tensor **t; uint64_t rows, cols; const char *name; } s[] = {
        {&T->c_raw, C, H, "train_c_raw"}, {&T->c, C, H, "train_c"}, {&T->h, B, H, "train_h"},
        {&T->out, B, H, "train_out"}, {&T->ck, C, KV, "train_ck"}, {&T->cv, C, KV, "train_cv"},
        {&T->dh, B, H, "grad_h"}, {&T->da, B, H, "grad_a"}, {&T->dq, B, Q, "grad_q"},
        {&T->dqr, B, Q, "grad_q_raw"}, {&T->dkall, C + B, KV, "grad_k"},
        {&T->dvall, C + B, KV, "grad_v"}, {&T->dkb, B, KV, "grad_kb"}, {&T->dkr, B, KV, "grad_k_raw"},
        {&T->dhm, B, F, "grad_hm"}, {&T->dg, B, F, "grad_g"}, {&T->du, B, F, "grad_u"},
        {&T->dc, C, H, "grad_c"}, {&T->dcr, C, H, "grad_c_raw"}, {&T->dck, C, KV, "grad_ck"},
        {&T->dckr, C, KV, "grad_ck_raw"},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++)
        if ((r = mk(ctx, VKD_DTYPE_F32, s[j].rows, s[j].cols, s[j].name, s[j].t, err))) goto fail;
    if ((r = mk(ctx, VKD_DTYPE_I32, 1, B, "train_ids", &T->ids, err))) goto fail;
    *out = T;
    return VKD_OK;
fail:
    vkd_dflash_train_free(T);
    return r;
}

void vkd_dflash_train_free(vkd_dflash_train *T) {
    if (!T) return;
    for (uint32_t l = 0; l < T->d->n_layers; l++) {
        if (T->acts) vkd_layer_acts_free(&T->acts[l]);
        if (T->kall) vkd_tensor_destroy(T->kall[l]);
        if (T->vall) vkd_tensor_destroy(T->vall[l]);
        if (T->ck_raw) vkd_tensor_destroy(T->ck_raw[l]);
    }
    free(T->acts), free(T->kall), free(T->vall), free(T->ck_raw);
    vkd_tensor *all[] = {T->ids, T->c_raw, T->c, T->h, T->out, T->ck, T->cv, T->dh, T->da, T->dq,
                         T->dqr, T->dkall, T->dvall, T->dkb, T->dkr, T->dhm, T->dg, T->du, T->dc,
                         T->dcr, T->dck, T->dckr};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    free(T);
}

/* every linear of the draft: fc, then each layer's seven */
static uint32_t draft_linears(vkd_dflash *d, vkd_linear **out, uint32_t cap) {
    uint32_t n = 0;
    if (n < cap) out[n++] = &d->fc;
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_linear *lin[7];
        vkd_layer_linears(&d->layers[l], lin);
        for (int j = 0; j < 7 && n < cap; j++) out[n++] = lin[j];
    }
    return n;
}

vkd_result vkd_dflash_train_grads(vkd_dflash_train *T, vkd_error *err) {
    vkd_linear *lin[1 + 7 * 64];
    uint32_t n = draft_linears(T->d, lin, sizeof lin / sizeof lin[0]);
    if (n < 1 + 7 * T->d->n_layers)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "draft training: more than 64 layers");
    for (uint32_t i = 0; i < n; i++)
        if (lin[i]->lora_a) {
            vkd_result r = vkd_linear_lora_grads(T->d->ctx, lin[i], err);
            if (r) return r;
        }
    return VKD_OK;
}

static vkd_result rec_status(vkd_rec *rec, vkd_error *err) {
    vkd_result r = vkd_rec_error(rec)->code;
    if (r) *err = *vkd_rec_error(rec);
    return r;
}

vkd_result vkd_dflash_train_zero_grads(vkd_dflash_train *T, vkd_rec *rec, vkd_error *err) {
    vkd_linear *lin[1 + 7 * 64];
    uint32_t n = draft_linears(T->d, lin, sizeof lin / sizeof lin[0]);
    for (uint32_t i = 0; i < n; i++) vkd_linear_lora_zero_grads(rec, lin[i]);
    return rec_status(rec, err);
}

vkd_result vkd_dflash_train_forward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *features,
                                    uint32_t row0, uint32_t n, const int32_t *block, vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    vkd_dflash *d = T->d;
    const uint32_t B = d->block, H = d->hidden, D = d->head_dim;
    if (n == 0 || n > T->max_ctx)
        return vkd_fail(err, VKD_ERR_INVALID, "draft training context of %u rows (1..%u)", n, T->max_ctx);
    if (!features || features->cols < (uint64_t)d->ntaps * H || (uint64_t)row0 + n > features->rows)
        return vkd_fail(err, VKD_ERR_INVALID, "features tensor too small for %u rows of the draft's "
                        "%u taps", n, d->ntaps);
    for (uint32_t i = 0; i < B; i++)
        if (block[i] < 0 || (uint32_t)block[i] >= d->vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "draft block token %d outside the vocabulary", block[i]);
    vkd_linear *lin[1 + 7 * 64];
    uint32_t nl = draft_linears(d, lin, sizeof lin / sizeof lin[0]), rows = n > B ? n : B;
    for (uint32_t j = 0; j < nl; j++)
        if (lin[j]->lora_a && lin[j]->lora_t->rows < rows)
            return vkd_fail(err, VKD_ERR_INVALID, "adapter on '%s' attached for %llu rows, training "
                            "needs %u", lin[j]->w->name, (unsigned long long)lin[j]->lora_t->rows, rows);
    T->features = features;
    T->feat_row0 = row0;
    T->n = n;
    const float eps = (float)d->cfg.rms_norm_eps;
    const vkd_layer_dims dims = {H, d->n_q, d->n_kv, D, d->ffn, true};
    vkd_linear_forward(rec, T->c_raw, 0, features, row0, &d->fc, n, false);
    vkd_op_rmsnorm(rec, T->c, T->c_raw, d->hidden_norm, n, H, eps);
    vkd_rec_update(rec, T->ids, 0, block, (uint64_t)B * 4);
    vkd_op_embed(rec, T->h, T->ids, d->target->embed, B);
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_layer *L = &d->layers[l];
        vkd_layer_kv_append(rec, L, &dims, T->c, 0, n, 0, T->ck_raw[l], T->ck, T->cv, T->kall[l],
                            T->vall[l], d->inv_freq, eps);
        vkd_layer_step ls = {.m = B, .pos = n, .causal = false, .kc = T->kall[l], .vc = T->vall[l],
                             .inv_freq = d->inv_freq, .eps = eps};
        vkd_layer_forward(rec, L, &dims, T->h, &T->acts[l], &ls);
    }
    vkd_op_rmsnorm(rec, T->out, T->h, d->norm, B, H, eps);
    return rec_status(rec, err);
}

vkd_result vkd_dflash_train_backward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *dout,
                                     vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    vkd_dflash *d = T->d;
    if (!T->n) return vkd_fail(err, VKD_ERR_INVALID, "draft backward before a training forward");
    if (!dout || dout->dtype != VKD_DTYPE_F32 || dout->rows * dout->cols < (uint64_t)d->block * d->hidden)
        return vkd_fail(err, VKD_ERR_INVALID, "draft backward: dout must be f32 %u x %u", d->block, d->hidden);
    const uint32_t B = d->block, H = d->hidden, D = d->head_dim, KV = d->n_kv * D, n = T->n;
    const uint32_t nq = d->n_q, nkv = d->n_kv, F = d->ffn;
    const float eps = (float)d->cfg.rms_norm_eps, scale = 1.0f / sqrtf((float)D);
    vkd_op_rmsnorm_backward(rec, T->dh, NULL, NULL, dout, T->h, d->norm, B, H, eps, false);
    for (uint32_t li = d->n_layers; li-- > 0;) {
        vkd_layer *L = &d->layers[li];
        const vkd_layer_acts *A = &T->acts[li];
        bool first = li == d->n_layers - 1;
        /* MLP */
        vkd_linear_backward(rec, T->dhm, 0, T->dh, 0, A->h, 0, &L->wd, B, false);
        vkd_op_swiglu_backward(rec, T->dg, T->du, T->dhm, A->g, A->u, (uint64_t)B * F);
        vkd_linear_backward(rec, T->da, 0, T->dg, 0, A->a2, 0, &L->wg, B, false);
        vkd_linear_backward(rec, T->da, 0, T->du, 0, A->a2, 0, &L->wu, B, true);
        vkd_op_rmsnorm_backward(rec, T->dh, NULL, NULL, T->da, A->x_mid, L->ln2, B, H, eps, true);
        /* attention: o_proj, then the flash backward over [context; block] keys */
        vkd_linear_backward(rec, T->dq, 0, T->dh, 0, A->o, 0, &L->wo, B, false); /* dq holds do */
        vkd_op_attention_backward(rec, T->dqr, T->dkall, T->dvall, T->dq, A->q, T->kall[li],
                                  T->vall[li], A->o, A->lse, B, n + B, nq, nkv, D, n, false, scale,
                                  false);
        /* block rows: q, k, v from a1 */
        vkd_op_rope_backward(rec, T->dqr, 0, B, nq, D, n, NULL, d->inv_freq);
        vkd_op_rmsnorm_backward(rec, T->dq, NULL, NULL, T->dqr, A->q_raw, L->q_norm, B * nq, D, eps, false);
        vkd_op_copy2d(rec, T->dkb, 0, 0, T->dkall, n, 0, B, KV);
        vkd_op_rope_backward(rec, T->dkb, 0, B, nkv, D, n, NULL, d->inv_freq);
        vkd_op_rmsnorm_backward(rec, T->dkr, NULL, NULL, T->dkb, A->k_raw, L->k_norm, B * nkv, D, eps, false);
        vkd_linear_backward(rec, T->da, 0, T->dq, 0, A->a1, 0, &L->wq, B, false);
        vkd_linear_backward(rec, T->da, 0, T->dkr, 0, A->a1, 0, &L->wk, B, true);
        vkd_linear_backward(rec, T->da, 0, T->dvall, n, A->a1, 0, &L->wv, B, true);
        vkd_op_rmsnorm_backward(rec, T->dh, NULL, NULL, T->da, A->x_in, L->ln1, B, H, eps, true);
        /* context rows: k, v from c */
        vkd_op_copy2d(rec, T->dck, 0, 0, T->dkall, 0, 0, n, KV);
        vkd_op_rope_backward(rec, T->dck, 0, n, nkv, D, 0, NULL, d->inv_freq);
        vkd_op_rmsnorm_backward(rec, T->dckr, NULL, NULL, T->dck, T->ck_raw[li], L->k_norm, n * nkv, D, eps, false);
        vkd_linear_backward(rec, T->dc, 0, T->dckr, 0, T->c, 0, &L->wk, n, !first);
        vkd_linear_backward(rec, T->dc, 0, T->dvall, 0, T->c, 0, &L->wv, n, true);
    }
    /* the block embedding is frozen: dh stops here. Context: hidden_norm, then fc's adapter. */
    vkd_op_rmsnorm_backward(rec, T->dcr, NULL, NULL, T->dc, T->c_raw, d->hidden_norm, n, H, eps, false);
    vkd_linear_backward(rec, NULL, 0, T->dcr, 0, T->features, T->feat_row0, &d->fc, n, true);
    return rec_status(rec, err);
}
