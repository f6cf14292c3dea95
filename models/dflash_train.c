/* dflash_train.c: DFlash draft training forward (activations kept) and backward for LoRA
 * and full-weight gradients (dflash_train.h). The backward walks the forward in reverse:
 *   out = rmsnorm(h) norm                 -> dh
 *   per layer, last first: the block rows through vkd_layer_backward (dh in place; the
 *   K/V gradients of the context rows left in the scratch), then the context rows'
 *   k = rope(k_norm(lin(c; k))), v = lin(c; v) through vkd_layer_kv_append_backward -> dc
 *   c = rmsnorm(lin(F; fc)) hidden_norm   -> fc's gradients (F itself is frozen input)
 * The block embedding is the target's (frozen): dh stops at the first layer. */
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
    return vkd_dflash_train_create_blocks(d, max_ctx, 1, out, err);
}

vkd_result vkd_dflash_train_create_blocks(vkd_dflash *d, uint32_t max_ctx, uint32_t max_blocks,
                                          vkd_dflash_train **out, vkd_error *err) {
    *out = NULL;
    if (max_ctx == 0 || max_ctx > d->ctx_len)
        return vkd_fail(err, VKD_ERR_INVALID, "draft training context of %u rows (1..%u allowed)",
                        max_ctx, d->ctx_len);
    if (max_blocks == 0 || (uint64_t)max_blocks * d->block > 65535)
        return vkd_fail(err, VKD_ERR_INVALID, "draft training: %u blocks of %u rows per pass (1..%u allowed)",
                        max_blocks, d->block, 65535 / d->block);
    vkd_dflash_train *T = calloc(1, sizeof *T);
    if (!T) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    T->d = d;
    T->max_ctx = max_ctx;
    T->max_blocks = max_blocks;
    vkd_ctx *ctx = d->ctx;
    /* B: the rows of one pass (every block of it) */
    const uint32_t B = d->block * max_blocks, H = d->hidden, KV = d->n_kv * d->head_dim, F = d->ffn,
                   C = max_ctx, L = d->n_layers;
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
        {&T->dh, B, H, "grad_h"}, {&T->dc, C, H, "grad_c"}, {&T->dcr, C, H, "grad_c_raw"},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++)
        if ((r = mk(ctx, VKD_DTYPE_F32, s[j].rows, s[j].cols, s[j].name, s[j].t, err))) goto fail;
    if ((r = vkd_layer_grad_ws_create(ctx, &dims, B, C + B, &T->ws, err))) goto fail;
    if ((r = mk(ctx, VKD_DTYPE_I32, 1, B, "train_ids", &T->ids, err)) ||
        (r = mk(ctx, VKD_DTYPE_I32, 1, max_blocks, "train_anchors", &T->anchors, err)) ||
        (r = mk(ctx, VKD_DTYPE_I32, 1, B, "train_positions", &T->positions, err)))
        goto fail;
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
    vkd_layer_grad_ws_free(&T->ws);
    vkd_tensor *all[] = {T->ids, T->c_raw, T->c, T->h, T->out, T->ck, T->cv, T->dh, T->dc, T->dcr,
                         T->grad_hidden_norm, T->grad_norm, T->anchors, T->positions};
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

static vkd_layer_dims draft_dims(const vkd_dflash *d) {
    return (vkd_layer_dims){d->hidden, d->n_q, d->n_kv, d->head_dim, d->ffn, true};
}

vkd_result vkd_dflash_train_weight_grads(vkd_dflash_train *T, vkd_error *err) {
    vkd_dflash *d = T->d;
    const vkd_layer_dims dims = draft_dims(d);
    vkd_result r = vkd_linear_weight_grad(d->ctx, &d->fc, err);
    for (uint32_t l = 0; l < d->n_layers && !r; l++) r = vkd_layer_weight_grads(d->ctx, &d->layers[l], &dims, err);
    if (!r && !T->grad_hidden_norm)
        r = mk(d->ctx, VKD_DTYPE_F32, 1, d->hidden, "hidden_norm.grad", &T->grad_hidden_norm, err);
    if (!r && !T->grad_norm) r = mk(d->ctx, VKD_DTYPE_F32, 1, d->hidden, "norm.grad", &T->grad_norm, err);
    return r;
}

vkd_result vkd_dflash_train_zero_grads(vkd_dflash_train *T, vkd_rec *rec, vkd_error *err) {
    vkd_dflash *d = T->d;
    const vkd_layer_dims dims = draft_dims(d);
    vkd_linear_zero_grads(rec, &d->fc);
    for (uint32_t l = 0; l < d->n_layers; l++) vkd_layer_zero_grads(rec, &d->layers[l], &dims);
    vkd_tensor *g[2] = {T->grad_hidden_norm, T->grad_norm};
    for (int i = 0; i < 2; i++)
        if (g[i]) vkd_op_axpby(rec, g[i], g[i], g[i], 0.0f, 0.0f, d->hidden);
    return rec_status(rec, err);
}

/* Every adapter of the draft must have room for a training pass of rows rows. */
static vkd_result check_adapter_rows(vkd_dflash *d, uint32_t rows, vkd_error *err) {
    vkd_linear *lin[1 + 7 * 64];
    uint32_t nl = draft_linears(d, lin, sizeof lin / sizeof lin[0]);
    for (uint32_t j = 0; j < nl; j++)
        if (lin[j]->lora_a && lin[j]->lora_t->rows < rows)
            return vkd_fail(err, VKD_ERR_INVALID, "adapter on '%s' attached for %llu rows, training "
                            "needs %u", lin[j]->w->name, (unsigned long long)lin[j]->lora_t->rows, rows);
    return VKD_OK;
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
    if (check_adapter_rows(d, n > B ? n : B, err)) return err->code;
    T->features = features;
    T->feat_row0 = row0;
    T->n = n;
    T->nblk = 0;
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

/* layer li's step over m block rows after context row n (T->nblk: the block-sparse pass) */
static vkd_layer_step layer_step(const vkd_dflash_train *T, uint32_t li, uint32_t m, float eps) {
    vkd_layer_step ls = {.m = m, .pos = T->n, .causal = false, .kc = T->kall[li], .vc = T->vall[li],
                         .inv_freq = T->d->inv_freq, .eps = eps};
    if (T->nblk) ls.block = T->d->block, ls.anchors = T->anchors, ls.positions = T->positions;
    return ls;
}

vkd_result vkd_dflash_train_forward_blocks(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *features,
                                           uint32_t row0, uint32_t nblk, const uint32_t *anchors,
                                           const int32_t *blocks, vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    vkd_dflash *d = T->d;
    const uint32_t B = d->block, H = d->hidden, D = d->head_dim, R = nblk * B;
    if (nblk == 0 || nblk > T->max_blocks)
        return vkd_fail(err, VKD_ERR_INVALID, "draft training: %u blocks in one pass (1..%u)", nblk, T->max_blocks);
    uint32_t n = 0;
    for (uint32_t b = 0; b < nblk; b++) {
        if (anchors[b] == 0 || anchors[b] > T->max_ctx)
            return vkd_fail(err, VKD_ERR_INVALID, "draft training: block %u's context of %u rows (1..%u)", b,
                            anchors[b], T->max_ctx);
        if (anchors[b] > n) n = anchors[b];
    }
    if (!features || features->cols < (uint64_t)d->ntaps * H || (uint64_t)row0 + n > features->rows)
        return vkd_fail(err, VKD_ERR_INVALID, "features tensor too small for %u rows of the draft's "
                        "%u taps", n, d->ntaps);
    for (uint32_t i = 0; i < R; i++)
        if (blocks[i] < 0 || (uint32_t)blocks[i] >= d->vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "draft block token %d outside the vocabulary", blocks[i]);
    if (check_adapter_rows(d, n > R ? n : R, err)) return err->code;
    int32_t *pos = malloc((size_t)R * 4);
    if (!pos) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (uint32_t i = 0; i < R; i++) pos[i] = (int32_t)(anchors[i / B] + i % B);
    vkd_rec_update(rec, T->positions, 0, pos, (uint64_t)R * 4);
    for (uint32_t b = 0; b < nblk; b++) pos[b] = (int32_t)anchors[b];
    vkd_rec_update(rec, T->anchors, 0, pos, (uint64_t)nblk * 4);
    free(pos);
    T->features = features;
    T->feat_row0 = row0;
    T->n = n;
    T->nblk = nblk;
    const float eps = (float)d->cfg.rms_norm_eps;
    const vkd_layer_dims dims = {H, d->n_q, d->n_kv, D, d->ffn, true};
    vkd_linear_forward(rec, T->c_raw, 0, features, row0, &d->fc, n, false);
    vkd_op_rmsnorm(rec, T->c, T->c_raw, d->hidden_norm, n, H, eps);
    vkd_rec_update(rec, T->ids, 0, blocks, (uint64_t)R * 4);
    vkd_op_embed(rec, T->h, T->ids, d->target->embed, R);
    for (uint32_t l = 0; l < d->n_layers; l++) {
        vkd_layer *L = &d->layers[l];
        vkd_layer_kv_append(rec, L, &dims, T->c, 0, n, 0, T->ck_raw[l], T->ck, T->cv, T->kall[l],
                            T->vall[l], d->inv_freq, eps);
        vkd_layer_step ls = layer_step(T, l, R, eps);
        vkd_layer_forward(rec, L, &dims, T->h, &T->acts[l], &ls);
    }
    vkd_op_rmsnorm(rec, T->out, T->h, d->norm, R, H, eps);
    return rec_status(rec, err);
}

vkd_result vkd_dflash_train_backward(vkd_dflash_train *T, vkd_rec *rec, const vkd_tensor *dout,
                                     vkd_error *err) {
    if (rec_status(rec, err)) return err->code;
    vkd_dflash *d = T->d;
    if (!T->n) return vkd_fail(err, VKD_ERR_INVALID, "draft backward before a training forward");
    const uint32_t B = d->block * (T->nblk ? T->nblk : 1), H = d->hidden, n = T->n;
    if (!dout || dout->dtype != VKD_DTYPE_F32 || dout->rows * dout->cols < (uint64_t)B * H)
        return vkd_fail(err, VKD_ERR_INVALID, "draft backward: dout must be f32 %u x %u", B, H);
    const float eps = (float)d->cfg.rms_norm_eps;
    const vkd_layer_dims dims = draft_dims(d);
    const vkd_layer_grad_ws *ws = &T->ws;
    vkd_norm_backward(rec, T->dh, T->grad_norm, ws->dwn, ws->rstd, dout, T->h, d->norm, B, H, eps, false);
    for (uint32_t li = d->n_layers; li-- > 0;) {
        vkd_layer *L = &d->layers[li];
        vkd_layer_step ls = layer_step(T, li, B, eps);
        vkd_layer_backward(rec, L, &dims, T->dh, &T->acts[li], &ls, ws);
        vkd_layer_kv_append_backward(rec, L, &dims, T->dc, T->c, 0, n, 0, T->ck_raw[li], ws, d->inv_freq,
                                     eps, li != d->n_layers - 1);
    }
    vkd_norm_backward(rec, T->dcr, T->grad_hidden_norm, ws->dwn, ws->rstd, T->dc, T->c_raw, d->hidden_norm,
                      n, H, eps, false);
    vkd_linear_backward(rec, NULL, 0, T->dcr, 0, T->features, T->feat_row0, &d->fc, n, true);
    return rec_status(rec, err);
}
