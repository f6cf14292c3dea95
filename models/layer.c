/* layer.c: checkpoint tensors to device tensors, the linear layer with its optional LoRA
 * adapter, and the one decoder layer of the target and the DFlash draft (layer.h).
 * Weights are copied straight from the mmapped file into mapped device memory, or through
 * a bounded staging buffer (vkd_tensor_upload): never a second full copy in host memory. */
#include "layer.h"
#include "safetensors.h"

#include "vkd_ops_grad.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The checkpoint tensor `name`, checked: a weight dtype and the shape config.json implies. */
static vkd_result weight_source(vkd_st_model *m, const char *name, int rank, const int64_t *shape,
                                const vkd_st_tensor **out, vkd_error *err) {
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
    *out = st;
    return VKD_OK;
}

/* Uploads st into t and checks it for NaN/Inf. */
static vkd_result weight_fill(vkd_tensor *t, const vkd_st_tensor *st, const char *name, vkd_error *err) {
    vkd_result r = vkd_tensor_upload(t, 0, st->data, st->nbytes, err);
    if (r) return vkd_error_prefix(err, "uploading '%s'", name);
    return vkd_weight_check_finite(t, st->data, st->nbytes, err);
}

vkd_result vkd_weight_load_as(vkd_ctx *ctx, vkd_st_model *m, const char *name, int rank,
                              const int64_t *shape, vkd_layout layout, vkd_tensor **out,
                              vkd_error *err) {
    *out = NULL;
    const vkd_st_tensor *st = NULL;
    vkd_result r = weight_source(m, name, rank, shape, &st, err);
    if (r) return r;
    vkd_tensor *t;
    r = vkd_tensor_create_layout(ctx, st->dtype, rank, shape, layout, name, &t, err);
    if (r) return r;
    if ((r = weight_fill(t, st, name, err))) {
        vkd_tensor_destroy(t);
        return r;
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

/* A NaN or Inf in a weight would not stop a forward pass: it turns every logit into NaN and
 * argmax, ranks and KL into plausible numbers (token 0, rank 1, KL 0). So every weight is
 * checked once, right after its upload: on the device (vkd_op_count_nonfinite: one read of
 * the tensor, a few ms per GB on a GPU), or on the host for the texel-block layout (below). */
/* The host pass over the checkpoint's bytes, for tensors in the texel-block layout: that
 * layout exists only on CPU drivers (lavapipe), where the device's memory is the host's and a
 * submission per tensor would cost more than the read; the count op reads row-major storage. */
static uint64_t count_nonfinite_host(vkd_dtype dtype, const void *host, uint64_t nbytes) {
    uint64_t bad = 0;
    if (dtype == VKD_DTYPE_F32) {
        const uint32_t *w = host;
        for (uint64_t i = 0; i < nbytes / 4; i++) bad += (w[i] & 0x7f800000u) == 0x7f800000u;
    } else {
        const uint16_t *h = host;
        uint16_t m = dtype == VKD_DTYPE_BF16 ? 0x7f80 : 0x7c00;
        for (uint64_t i = 0; i < nbytes / 2; i++) bad += (h[i] & m) == m;
    }
    return bad;
}

vkd_result vkd_weight_check_finite(vkd_tensor *t, const void *host, uint64_t nbytes, vkd_error *err) {
    if (t->layout == VKD_LAYOUT_BLOCKS) {
        uint64_t bad = count_nonfinite_host(t->dtype, host, nbytes);
        if (bad)
            return vkd_fail(err, VKD_ERR_FORMAT, "tensor '%s': %llu non-finite value%s (NaN or Inf) in the checkpoint",
                            t->name, (unsigned long long)bad, bad == 1 ? "" : "s");
        return VKD_OK;
    }
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

/* ---- linear ------------------------------------------------------------------------- */

/* y: rows x out, x: rows x in (f32); w: out x in; lora_a: r x in, lora_b: out x r */
vkd_result vkd_linear_forward(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                              uint32_t x_row0, const vkd_linear *lin, uint32_t m, bool accumulate) {
    vkd_result r = vkd_op_matmul(rec, y, y_row0, x, x_row0, lin->w, m, accumulate);
    if (r || !lin->lora_a) return r;
    if (m > lin->lora_t->rows)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "LoRA on '%s': %u rows, the adapter "
                        "was attached for at most %llu", lin->w->name, m,
                        (unsigned long long)lin->lora_t->rows);
    uint64_t n = (uint64_t)m * lin->rank;
    if ((r = vkd_op_matmul(rec, lin->lora_t, 0, x, x_row0, lin->lora_a, m, false)) ||
        (r = vkd_op_axpby(rec, lin->lora_t, lin->lora_t, lin->lora_t, lin->scale, 0.0f, n)))
        return r;
    return vkd_op_matmul(rec, y, y_row0, lin->lora_t, 0, lin->lora_b, m, true);
}

/* The weights of lins for one vkd_op_matmul_group dispatch: where they are members of one
 * stack without adapters (load_qkv) and the outputs ys share a buffer (vkd_scratch_group). */
static bool group_ws(vkd_tensor *const *ys, const vkd_linear *const *lins, uint32_t n, const vkd_tensor **ws) {
    for (uint32_t j = 0; j < n; j++) {
        if (lins[j]->lora_a) return false;
        ws[j] = lins[j]->w;
    }
    return n <= 3 && vkd_matmul_group_ok(ys, ws, n);
}

/* ys[j] = lin(x; lins[j]) for j < n (2 or 3), m rows: one dispatch where group_ws allows,
 * else linear by linear. */
static vkd_result linears_forward(vkd_rec *rec, vkd_tensor *const *ys, const vkd_tensor *x,
                                  uint32_t x_row0, const vkd_linear *const *lins, uint32_t n, uint32_t m) {
    const vkd_tensor *ws[3];
    if (group_ws(ys, lins, n, ws)) return vkd_op_matmul_group(rec, ys, 0, x, x_row0, ws, n, m, NULL, 0.0f);
    vkd_result r = VKD_OK;
    for (uint32_t j = 0; j < n && !r; j++) r = vkd_linear_forward(rec, ys[j], 0, x, x_row0, lins[j], m, false);
    return r;
}

void vkd_linear_lora_detach(vkd_linear *lin) {
    vkd_tensor_destroy(lin->lora_a);
    vkd_tensor_destroy(lin->lora_b);
    vkd_tensor_destroy(lin->lora_t);
    vkd_tensor_destroy(lin->grad_a);
    vkd_tensor_destroy(lin->grad_b);
    vkd_tensor_destroy(lin->lora_dt);
    lin->lora_a = lin->lora_b = lin->lora_t = lin->grad_a = lin->grad_b = lin->lora_dt = NULL;
    lin->rank = 0;
    lin->scale = 0;
}

vkd_result vkd_linear_lora_attach(vkd_ctx *ctx, vkd_linear *lin, uint32_t rank, float alpha,
                                  uint32_t max_rows, vkd_error *err) {
    if (!lin->w) return vkd_fail(err, VKD_ERR_INVALID, "LoRA: linear layer without a weight");
    if (rank == 0 || rank > vkd_linear_in(lin) || rank > vkd_linear_out(lin) || max_rows == 0)
        return vkd_fail(err, VKD_ERR_INVALID, "LoRA on '%s' (%u x %u): rank %u must be in 1..%u",
                        lin->w->name, vkd_linear_out(lin), vkd_linear_in(lin), rank,
                        vkd_linear_in(lin) < vkd_linear_out(lin) ? vkd_linear_in(lin)
                                                                 : vkd_linear_out(lin));
    vkd_linear_lora_detach(lin);
    char name[64];
    snprintf(name, sizeof name, "%.50s.lora", lin->w->name);
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, rank, vkd_linear_in(lin), name,
                                        &lin->lora_a, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, vkd_linear_out(lin), rank, name,
                                     &lin->lora_b, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, max_rows, rank, name, &lin->lora_t, err);
    if (r) {
        vkd_linear_lora_detach(lin);
        return r;
    }
    lin->rank = rank;
    lin->scale = alpha / (float)rank;
    return VKD_OK;
}

vkd_result vkd_linear_lora_grads(vkd_ctx *ctx, vkd_linear *lin, vkd_error *err) {
    if (!lin->lora_a) return vkd_fail(err, VKD_ERR_INVALID, "LoRA gradients: '%s' has no adapter",
                                      lin->w->name);
    if (lin->grad_a) return VKD_OK;
    char name[64];
    snprintf(name, sizeof name, "%.45s.lora_grad", lin->w->name);
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, lin->rank, vkd_linear_in(lin), name,
                                        &lin->grad_a, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, vkd_linear_out(lin), lin->rank, name,
                                     &lin->grad_b, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, lin->lora_t->rows, lin->rank, name,
                                     &lin->lora_dt, err);
    return r;
}

vkd_result vkd_linear_lora_zero_grads(vkd_rec *rec, vkd_linear *lin) {
    if (!lin->grad_a) return vkd_rec_error(rec)->code;
    uint64_t na = (uint64_t)lin->rank * vkd_linear_in(lin), nb = (uint64_t)lin->rank * vkd_linear_out(lin);
    vkd_op_axpby(rec, lin->grad_a, lin->grad_a, lin->grad_a, 0.0f, 0.0f, na);
    return vkd_op_axpby(rec, lin->grad_b, lin->grad_b, lin->grad_b, 0.0f, 0.0f, nb);
}

vkd_result vkd_linear_weight_grad(vkd_ctx *ctx, vkd_linear *lin, vkd_error *err) {
    if (!lin->w) return vkd_fail(err, VKD_ERR_INVALID, "weight gradient: linear layer without a weight");
    if (lin->grad_w) return VKD_OK;
    char name[64];
    snprintf(name, sizeof name, "%.50s.grad", lin->w->name);
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, vkd_linear_out(lin), vkd_linear_in(lin),
                                        name, &lin->grad_w, err);
    if (!r && lin->grad_w->nchunks != 1) {
        vkd_tensor_destroy(lin->grad_w);
        lin->grad_w = NULL;
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "weight gradient of '%s' (%u x %u f32) exceeds one "
                        "device binding", lin->w->name, vkd_linear_out(lin), vkd_linear_in(lin));
    }
    return r;
}

vkd_result vkd_linear_zero_grads(vkd_rec *rec, vkd_linear *lin) {
    if (lin->grad_w)
        vkd_op_axpby(rec, lin->grad_w, lin->grad_w, lin->grad_w, 0.0f, 0.0f,
                     (uint64_t)vkd_linear_out(lin) * vkd_linear_in(lin));
    return vkd_linear_lora_zero_grads(rec, lin);
}

/* dy: rows x out, x: rows x in, dx: rows x in (f32) */
vkd_result vkd_linear_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t dx_row0, const vkd_tensor *dy,
                               uint32_t dy_row0, const vkd_tensor *x, uint32_t x_row0,
                               const vkd_linear *lin, uint32_t m, bool accumulate) {
    vkd_result r = VKD_OK;
    if (dx) r = vkd_op_matmul_backward(rec, dx, dx_row0, NULL, dy, dy_row0, NULL, 0, lin->w, m, accumulate);
    if (!r && lin->grad_w)
        r = vkd_op_matmul_backward(rec, NULL, 0, lin->grad_w, dy, dy_row0, x, x_row0, lin->w, m, true);
    if (r || !lin->lora_a || (!lin->grad_a && !dx)) return r;
    if (m > lin->lora_t->rows)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "LoRA on '%s': %u rows, the adapter "
                        "was attached for at most %llu", lin->w->name, m,
                        (unsigned long long)lin->lora_t->rows);
    if (!lin->lora_dt)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "LoRA backward on '%s': no gradient "
                        "buffers (vkd_linear_lora_grads)", lin->w->name);
    uint64_t n = (uint64_t)m * lin->rank;
    /* t = scale x A^T (as the forward), grad_b += dy^T t */
    if ((r = vkd_op_matmul(rec, lin->lora_t, 0, x, x_row0, lin->lora_a, m, false)) ||
        (r = vkd_op_axpby(rec, lin->lora_t, lin->lora_t, lin->lora_t, lin->scale, 0.0f, n)) ||
        (r = vkd_op_matmul_backward(rec, NULL, 0, lin->grad_b, dy, dy_row0, lin->lora_t, 0,
                                    lin->lora_b, m, true)))
        return r;
    /* dt = scale dy B;  grad_a += dt^T x;  dx += dt A */
    if ((r = vkd_op_matmul_backward(rec, lin->lora_dt, 0, NULL, dy, dy_row0, NULL, 0, lin->lora_b,
                                    m, false)) ||
        (r = vkd_op_axpby(rec, lin->lora_dt, lin->lora_dt, lin->lora_dt, lin->scale, 0.0f, n)) ||
        (r = vkd_op_matmul_backward(rec, NULL, 0, lin->grad_a, lin->lora_dt, 0, x, x_row0,
                                    lin->lora_a, m, true)))
        return r;
    if (dx) r = vkd_op_matmul_backward(rec, dx, dx_row0, NULL, lin->lora_dt, 0, NULL, 0, lin->lora_a, m, true);
    return r;
}

/* ---- decoder layer ---------------------------------------------------------------- */

/* Where the profile reads weights in the texel block layout, q, k and v go into one stack
 * (vkd_tensor_create_stack), so that vkd_op_matmul_group multiplies them in one dispatch;
 * otherwise (other layouts, mixed dtypes, a stack larger than one texel view) this leaves
 * them to vkd_layer_load's separate tensors. */
static vkd_result load_qkv(vkd_ctx *ctx, vkd_st_model *m, const char *prefix, const vkd_layer_dims *d,
                           vkd_layer *L, vkd_error *err) {
    static const char *const sfx[3] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                       "self_attn.v_proj.weight"};
    vkd_linear *lin[3] = {&L->wq, &L->wk, &L->wv};
    uint64_t rows[3] = {(uint64_t)d->n_q * d->head_dim, (uint64_t)d->n_kv * d->head_dim,
                        (uint64_t)d->n_kv * d->head_dim};
    char names[3][160];
    const char *np[3];
    const vkd_st_tensor *st[3] = {NULL};
    for (int j = 0; j < 3; j++) {
        snprintf(names[j], sizeof names[j], "%s%s", prefix, sfx[j]);
        np[j] = names[j];
        int64_t shape[2] = {(int64_t)rows[j], d->hidden};
        vkd_result r = weight_source(m, names[j], 2, shape, &st[j], err);
        if (r) return r;
        if (st[j]->dtype != st[0]->dtype) return VKD_OK;
    }
    if (vkd_ctx_weight_layout(ctx, st[0]->dtype) != VKD_LAYOUT_BLOCKS) return VKD_OK;
    vkd_tensor *mem[3];
    vkd_error serr = {0};
    vkd_result r = vkd_tensor_create_stack(ctx, st[0]->dtype, 3, rows, d->hidden, np, &L->qkv_stack,
                                           mem, &serr);
    if (r == VKD_ERR_UNSUPPORTED) return VKD_OK;
    if (r) {
        *err = serr;
        return r;
    }
    for (int j = 0; j < 3; j++) lin[j]->w = mem[j];
    for (int j = 0; j < 3 && !r; j++) r = weight_fill(mem[j], st[j], names[j], err);
    return r;
}

vkd_result vkd_layer_load(vkd_ctx *ctx, vkd_st_model *m, const char *prefix,
                          const vkd_layer_dims *d, vkd_layer *L, uint64_t *bytes, vkd_error *err) {
    const int64_t H = d->hidden, Q = (int64_t)d->n_q * d->head_dim,
                  KV = (int64_t)d->n_kv * d->head_dim, F = d->ffn, D = d->head_dim;
    struct { const char *suffix; vkd_tensor **dst; int rank; int64_t s0, s1; } w[] = {
        {"input_layernorm.weight", &L->ln1, 1, H, 0},
        {"self_attn.q_proj.weight", &L->wq.w, 2, Q, H},
        {"self_attn.k_proj.weight", &L->wk.w, 2, KV, H},
        {"self_attn.v_proj.weight", &L->wv.w, 2, KV, H},
        {"self_attn.o_proj.weight", &L->wo.w, 2, H, Q},
        {"post_attention_layernorm.weight", &L->ln2, 1, H, 0},
        {"mlp.gate_proj.weight", &L->wg.w, 2, F, H},
        {"mlp.up_proj.weight", &L->wu.w, 2, F, H},
        {"mlp.down_proj.weight", &L->wd.w, 2, H, F},
        {"self_attn.q_norm.weight", &L->q_norm, 1, D, 0},
        {"self_attn.k_norm.weight", &L->k_norm, 1, D, 0},
    };
    size_t n = d->qk_norm ? 11 : 9;
    vkd_result r = load_qkv(ctx, m, prefix, d, L, err);
    if (r) return r;
    for (size_t j = 0; j < n; j++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, w[j].suffix);
        int64_t shape[2] = {w[j].s0, w[j].s1};
        if (!*w[j].dst && (r = vkd_weight_load(ctx, m, name, w[j].rank, shape, w[j].dst, err))) return r;
        *bytes += (*w[j].dst)->bytes;
    }
    return VKD_OK;
}

void vkd_layer_linears(vkd_layer *L, vkd_linear *out[7]) {
    vkd_linear *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
    memcpy(out, all, sizeof all);
}

void vkd_layer_free(vkd_layer *L) {
    vkd_linear *lin[7];
    vkd_layer_linears(L, lin);
    for (int j = 0; j < 7; j++) {
        vkd_linear_lora_detach(lin[j]);
        vkd_tensor_destroy(lin[j]->w);
        vkd_tensor_destroy(lin[j]->grad_w);
    }
    vkd_tensor *all[] = {L->ln1, L->q_norm, L->k_norm, L->ln2, L->kc, L->vc, L->grad_ln1,
                         L->grad_q_norm, L->grad_k_norm, L->grad_ln2, L->qkv_stack};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    memset(L, 0, sizeof *L);
}

vkd_result vkd_scratch_group(vkd_ctx *ctx, uint32_t n, uint64_t rows, const uint64_t *cols,
                             const char *const *names, vkd_tensor **whole, vkd_tensor **out,
                             vkd_error *err) {
    *whole = NULL;
    for (uint32_t j = 0; j < n; j++) out[j] = NULL;
    uint64_t align = vkd_ctx_info(ctx)->min_storage_buffer_offset_alignment, off[3], total = 0;
    if (align < 16) align = 16;
    if (n > 3) return vkd_fail(err, VKD_ERR_INVALID, "scratch group of %u tensors (at most 3)", n);
    for (uint32_t j = 0; j < n; j++) {
        off[j] = total;
        total = (total + rows * cols[j] * 4 + align - 1) / align * align;
    }
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, total / 4, names[0], whole, err);
    if (r) return r;
    bool one = (*whole)->nchunks == 1;
    for (uint32_t j = 0; j < n && !r; j++) {
        int64_t shape[2] = {(int64_t)rows, (int64_t)cols[j]};
        r = one ? vkd_tensor_view(*whole, off[j], VKD_DTYPE_F32, 2, shape, names[j], &out[j], err)
                : vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, rows, cols[j], names[j], &out[j], err);
    }
    if (!one) {
        vkd_tensor_destroy(*whole);
        *whole = NULL;
    }
    if (r) vkd_scratch_group_free(n, *whole, out);
    return r;
}

void vkd_scratch_group_free(uint32_t n, vkd_tensor *whole, vkd_tensor **ts) {
    for (uint32_t j = 0; j < n; j++) {
        vkd_tensor_destroy(ts[j]);
        ts[j] = NULL;
    }
    vkd_tensor_destroy(whole);
}

vkd_result vkd_layer_acts_create(vkd_ctx *ctx, const vkd_layer_dims *d, uint32_t rows,
                                 vkd_layer_acts *A, vkd_error *err) {
    memset(A, 0, sizeof *A);
    uint32_t H = d->hidden, Q = d->n_q * d->head_dim, KV = d->n_kv * d->head_dim, F = d->ffn;
    struct { vkd_tensor **t; uint32_t cols; const char *name; } s[] = {
        {&A->x_in, H, "act_x_in"}, {&A->a1, H, "act_a1"}, {&A->q_raw, Q, "act_q_raw"},
        {&A->k_raw, KV, "act_k_raw"}, {&A->q, Q, "act_q"}, {&A->k, KV, "act_k"},
        {&A->v, KV, "act_v"}, {&A->o, Q, "act_o"}, {&A->lse, d->n_q, "act_lse"},
        {&A->x_mid, H, "act_x_mid"}, {&A->a2, H, "act_a2"}, {&A->g, F, "act_g"},
        {&A->u, F, "act_u"}, {&A->h, F, "act_h"},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++) {
        vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, rows, s[j].cols, s[j].name, s[j].t, err);
        if (r) {
            vkd_layer_acts_free(A);
            return r;
        }
    }
    return VKD_OK;
}

void vkd_layer_acts_free(vkd_layer_acts *A) {
    vkd_tensor *all[] = {A->x_in, A->a1, A->q_raw, A->k_raw, A->q, A->k, A->v, A->o, A->lse,
                         A->x_mid, A->a2, A->g, A->u, A->h};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    memset(A, 0, sizeof *A);
}

vkd_result vkd_layer_kv_append(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                               const vkd_tensor *c, uint32_t c_row0, uint32_t n, uint32_t pos,
                               vkd_tensor *k_raw, vkd_tensor *k, vkd_tensor *v, vkd_tensor *kc,
                               vkd_tensor *vc, const vkd_tensor *inv_freq, float eps) {
    const uint32_t D = d->head_dim, KV = d->n_kv * D;
    const vkd_linear *kv[2] = {&L->wk, &L->wv};
    vkd_tensor *kvy[2] = {k_raw, v};
    linears_forward(rec, kvy, c, c_row0, kv, 2, n);
    if (k_raw == k) /* in place: one dispatch (inference) */
        return vkd_op_qk_rope_kv(rec, NULL, k, v, NULL, d->qk_norm ? L->k_norm : NULL, n, 0, d->n_kv,
                                 D, pos, inv_freq, eps, kc, vc);
    vkd_op_rmsnorm(rec, k, k_raw, L->k_norm, n * d->n_kv, D, eps);
    vkd_op_rope(rec, k, 0, n, d->n_kv, D, pos, NULL, inv_freq);
    vkd_op_copy2d(rec, kc, pos, 0, k, 0, 0, n, KV);
    return vkd_op_copy2d(rec, vc, pos, 0, v, 0, 0, n, KV);
}

/* x: m x H f32 in place; A: see vkd_layer_acts (aliases in inference) */
vkd_result vkd_layer_forward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                             vkd_tensor *x, const vkd_layer_acts *A, const vkd_layer_step *s) {
    const uint32_t m = s->m, H = d->hidden, D = d->head_dim, KV = d->n_kv * D, pos = s->pos;
    const float eps = s->eps, scale = 1.0f / sqrtf((float)D);
    /* inference (one set of aliased scratch: a1, a2, g and u need not be kept) takes the
     * norms into the fused matmuls where that is exact (vkd_matmul_norm_ok) */
    const bool infer = A->h == A->g;
    if (A->x_in) vkd_op_copy2d(rec, A->x_in, 0, 0, x, 0, 0, m, H);
    vkd_tensor *qr = d->qk_norm ? A->q_raw : A->q, *kr = d->qk_norm ? A->k_raw : A->k;
    const vkd_linear *qkv[3] = {&L->wq, &L->wk, &L->wv};
    vkd_tensor *qkvy[3] = {qr, kr, A->v};
    const vkd_tensor *ws[3];
    if (infer && group_ws(qkvy, qkv, 3, ws) && vkd_matmul_norm_ok(ws[0], L->ln1, x)) {
        vkd_op_matmul_group(rec, qkvy, 0, x, 0, ws, 3, m, L->ln1, eps);
    } else {
        vkd_op_rmsnorm(rec, A->a1, x, L->ln1, m, H, eps);
        linears_forward(rec, qkvy, A->a1, 0, qkv, 3, m);
    }
    if (qr == A->q && kr == A->k && !s->block) {
        /* in place (inference): norms, RoPE and the K/V append in one dispatch */
        vkd_op_qk_rope_kv(rec, A->q, A->k, A->v, d->qk_norm ? L->q_norm : NULL,
                          d->qk_norm ? L->k_norm : NULL, m, d->n_q, d->n_kv, D, pos, s->inv_freq,
                          eps, s->kc, s->vc);
    } else {
        if (d->qk_norm) {
            vkd_op_rmsnorm(rec, A->q, qr, L->q_norm, m * d->n_q, D, eps);
            vkd_op_rmsnorm(rec, A->k, kr, L->k_norm, m * d->n_kv, D, eps);
        }
        const vkd_tensor *rpos = s->block ? s->positions : NULL;
        vkd_op_rope(rec, A->q, 0, m, d->n_q, D, pos, rpos, s->inv_freq);
        vkd_op_rope(rec, A->k, 0, m, d->n_kv, D, pos, rpos, s->inv_freq);
        vkd_op_copy2d(rec, s->kc, pos, 0, A->k, 0, 0, m, KV);
        vkd_op_copy2d(rec, s->vc, pos, 0, A->v, 0, 0, m, KV);
    }
    if (s->block) {
        if (!A->lse) return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "layer: the block-sparse pass "
                                     "is a training forward (keep activations)");
        vkd_op_attention_blocks_lse(rec, A->o, A->lse, A->q, s->kc, s->vc, s->anchors, m, s->block, pos,
                                    d->n_q, d->n_kv, D, scale);
    } else if (A->lse)
        vkd_op_attention_lse(rec, A->o, A->lse, A->q, s->kc, s->vc, m, pos + m, d->n_q, d->n_kv,
                             D, pos, s->causal, scale);
    else
        vkd_op_attention_split(rec, A->o, s->attn_part, A->q, s->kc, s->vc, m, pos + m, d->n_q,
                               d->n_kv, D, pos, s->causal, scale);
    vkd_linear_forward(rec, x, 0, A->o, 0, &L->wo, m, true);
    if (A->x_mid) vkd_op_copy2d(rec, A->x_mid, 0, 0, x, 0, 0, m, H);
    if (infer && !L->wg.lora_a && !L->wu.lora_a && vkd_matmul_glu_ok(L->wg.w, L->wu.w)) {
        /* (norm,) gate, up and SwiGLU in one dispatch */
        bool fuse_norm = vkd_matmul_norm_ok(L->wg.w, L->ln2, x);
        if (!fuse_norm) vkd_op_rmsnorm(rec, A->a2, x, L->ln2, m, H, eps);
        vkd_op_matmul_glu(rec, A->h, 0, fuse_norm ? x : A->a2, 0, L->wg.w, L->wu.w, m,
                          fuse_norm ? L->ln2 : NULL, eps);
    } else {
        vkd_op_rmsnorm(rec, A->a2, x, L->ln2, m, H, eps);
        vkd_linear_forward(rec, A->g, 0, A->a2, 0, &L->wg, m, false);
        vkd_linear_forward(rec, A->u, 0, A->a2, 0, &L->wu, m, false);
        vkd_op_swiglu(rec, A->h, A->g, A->u, (uint64_t)m * d->ffn);
    }
    return vkd_linear_forward(rec, x, 0, A->h, 0, &L->wd, m, true);
}

/* ---- backward ------------------------------------------------------------------------ */

vkd_result vkd_layer_grad_ws_create(vkd_ctx *ctx, const vkd_layer_dims *d, uint32_t rows,
                                    uint32_t kv_rows, vkd_layer_grad_ws *ws, vkd_error *err) {
    memset(ws, 0, sizeof *ws);
    if (rows == 0 || kv_rows < rows)
        return vkd_fail(err, VKD_ERR_INVALID, "layer backward scratch: %u rows, %u K/V rows "
                        "(expected 1 <= rows <= K/V rows)", rows, kv_rows);
    const uint32_t H = d->hidden, Q = d->n_q * d->head_dim, KV = d->n_kv * d->head_dim, F = d->ffn;
    uint64_t groups = (uint64_t)rows * d->n_q, kvg = (uint64_t)kv_rows * d->n_kv;
    struct { vkd_tensor **t; uint64_t rows, cols; const char *name; } s[] = {
        {&ws->da, rows, H, "grad_a"}, {&ws->dq, rows, Q, "grad_q"}, {&ws->dqr, rows, Q, "grad_q_raw"},
        {&ws->dk, kv_rows, KV, "grad_k"}, {&ws->dv, kv_rows, KV, "grad_v"},
        {&ws->dkb, kv_rows, KV, "grad_k_rows"}, {&ws->dkr, kv_rows, KV, "grad_k_raw"},
        {&ws->dhm, rows, F, "grad_hm"}, {&ws->dg, rows, F, "grad_g"}, {&ws->du, rows, F, "grad_u"},
        {&ws->rstd, 1, groups > kvg ? groups : kvg, "grad_rstd"},
        {&ws->dwn, 1, H > d->head_dim ? H : d->head_dim, "grad_norm_w"},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++) {
        vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, s[j].rows, s[j].cols, s[j].name, s[j].t, err);
        if (r) {
            vkd_layer_grad_ws_free(ws);
            return r;
        }
    }
    ws->rows = rows;
    ws->kv_rows = kv_rows;
    return VKD_OK;
}

void vkd_layer_grad_ws_free(vkd_layer_grad_ws *ws) {
    vkd_tensor *all[] = {ws->da, ws->dq, ws->dqr, ws->dk, ws->dv, ws->dkb, ws->dkr, ws->dhm,
                         ws->dg, ws->du, ws->rstd, ws->dwn};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) vkd_tensor_destroy(all[j]);
    memset(ws, 0, sizeof *ws);
}

static vkd_result norm_grad(vkd_ctx *ctx, const vkd_tensor *w, vkd_tensor **g, vkd_error *err) {
    if (*g) return VKD_OK;
    char name[64];
    snprintf(name, sizeof name, "%.50s.grad", w->name);
    return vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, w->rows * w->cols, name, g, err);
}

vkd_result vkd_layer_weight_grads(vkd_ctx *ctx, vkd_layer *L, const vkd_layer_dims *d,
                                  vkd_error *err) {
    vkd_linear *lin[7];
    vkd_layer_linears(L, lin);
    vkd_result r = VKD_OK;
    for (int j = 0; j < 7 && !r; j++) r = vkd_linear_weight_grad(ctx, lin[j], err);
    if (!r) r = norm_grad(ctx, L->ln1, &L->grad_ln1, err);
    if (!r) r = norm_grad(ctx, L->ln2, &L->grad_ln2, err);
    if (!r && d->qk_norm) r = norm_grad(ctx, L->q_norm, &L->grad_q_norm, err);
    if (!r && d->qk_norm) r = norm_grad(ctx, L->k_norm, &L->grad_k_norm, err);
    return r;
}

vkd_result vkd_layer_zero_grads(vkd_rec *rec, vkd_layer *L, const vkd_layer_dims *d) {
    vkd_linear *lin[7];
    vkd_layer_linears(L, lin);
    for (int j = 0; j < 7; j++) vkd_linear_zero_grads(rec, lin[j]);
    struct { vkd_tensor *g; uint32_t n; } n[] = {{L->grad_ln1, d->hidden}, {L->grad_ln2, d->hidden},
                                                 {L->grad_q_norm, d->head_dim}, {L->grad_k_norm, d->head_dim}};
    for (size_t j = 0; j < sizeof n / sizeof n[0]; j++)
        if (n[j].g) vkd_op_axpby(rec, n[j].g, n[j].g, n[j].g, 0.0f, 0.0f, n[j].n);
    return vkd_rec_error(rec)->code;
}

vkd_result vkd_norm_backward(vkd_rec *rec, vkd_tensor *dx, vkd_tensor *dw, vkd_tensor *dwn,
                             vkd_tensor *rstd, const vkd_tensor *dy, const vkd_tensor *x,
                             const vkd_tensor *w, uint32_t groups, uint32_t dim, float eps,
                             bool accumulate) {
    if (!dw || accumulate)
        return vkd_op_rmsnorm_backward(rec, dx, dw, rstd, dy, x, w, groups, dim, eps, accumulate);
    /* dx written: the weight gradient of this call goes to dwn, then adds up in dw */
    vkd_result r = vkd_op_rmsnorm_backward(rec, dx, dwn, rstd, dy, x, w, groups, dim, eps, false);
    return r ? r : vkd_op_axpby(rec, dw, dw, dwn, 1.0f, 1.0f, dim);
}

/* the key rows' backward shared by the block (vkd_layer_backward) and the context
 * (vkd_layer_kv_append_backward): ws->dk rows [pos, pos + n) through rope and k_norm;
 * returns the gradient of k_raw (ws->dkr, or ws->dkb without qk_norm) */
static const vkd_tensor *key_rows_backward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                                           uint32_t n, uint32_t pos, const vkd_tensor *positions,
                                           const vkd_tensor *k_raw, const vkd_layer_grad_ws *ws,
                                           const vkd_tensor *inv_freq, float eps) {
    const uint32_t D = d->head_dim, KV = d->n_kv * D;
    vkd_op_copy2d(rec, ws->dkb, 0, 0, ws->dk, pos, 0, n, KV);
    vkd_op_rope_backward(rec, ws->dkb, 0, n, d->n_kv, D, pos, positions, inv_freq);
    if (!d->qk_norm) return ws->dkb;
    vkd_norm_backward(rec, ws->dkr, L->grad_k_norm, ws->dwn, ws->rstd, ws->dkb, k_raw, L->k_norm,
                      n * d->n_kv, D, eps, false);
    return ws->dkr;
}

/* dx: m x H f32 in place; A: the forward's kept activations */
vkd_result vkd_layer_backward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                              vkd_tensor *dx, const vkd_layer_acts *A, const vkd_layer_step *s,
                              const vkd_layer_grad_ws *ws) {
    const uint32_t m = s->m, H = d->hidden, D = d->head_dim, pos = s->pos, nq = d->n_q;
    const float eps = s->eps, scale = 1.0f / sqrtf((float)D);
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!A->x_in || !A->x_mid || !A->lse || A->a2 == A->a1 || A->h == A->g)
        return vkd_fail(err, VKD_ERR_INVALID, "layer backward: the forward did not keep its "
                        "activations (vkd_layer_acts_create)");
    if (m > ws->rows || (uint64_t)pos + m > ws->kv_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "layer backward: %u rows at position %u, the scratch "
                        "holds %u rows and %u K/V rows", m, pos, ws->rows, ws->kv_rows);
    if (s->kc->dtype != VKD_DTYPE_F32 || s->vc->dtype != VKD_DTYPE_F32)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "layer backward: K/V rows must be f32");
    /* MLP: x = x_mid + lin(h; down), h = silu(g) * u, g/u = lin(a2), a2 = rmsnorm(x_mid) ln2 */
    vkd_linear_backward(rec, ws->dhm, 0, dx, 0, A->h, 0, &L->wd, m, false);
    vkd_op_swiglu_backward(rec, ws->dg, ws->du, ws->dhm, A->g, A->u, (uint64_t)m * d->ffn);
    vkd_linear_backward(rec, ws->da, 0, ws->dg, 0, A->a2, 0, &L->wg, m, false);
    vkd_linear_backward(rec, ws->da, 0, ws->du, 0, A->a2, 0, &L->wu, m, true);
    vkd_norm_backward(rec, dx, L->grad_ln2, ws->dwn, ws->rstd, ws->da, A->x_mid, L->ln2, m, H, eps, true);
    /* attention: x_mid = x_in + lin(o; o_proj); dq holds do until the flash backward */
    vkd_linear_backward(rec, ws->dq, 0, dx, 0, A->o, 0, &L->wo, m, false);
    const vkd_tensor *rpos = s->block ? s->positions : NULL;
    if (s->block)
        vkd_op_attention_blocks_backward(rec, ws->dqr, ws->dk, ws->dv, ws->dq, A->q, s->kc, s->vc, A->o, A->lse,
                                         s->anchors, m, s->block, pos, nq, d->n_kv, D, scale, false);
    else
        vkd_op_attention_backward(rec, ws->dqr, ws->dk, ws->dv, ws->dq, A->q, s->kc, s->vc, A->o, A->lse,
                                  m, pos + m, nq, d->n_kv, D, pos, s->causal, scale, false);
    vkd_op_rope_backward(rec, ws->dqr, 0, m, nq, D, pos, rpos, s->inv_freq);
    const vkd_tensor *dqn = ws->dqr;
    if (d->qk_norm) {
        vkd_norm_backward(rec, ws->dq, L->grad_q_norm, ws->dwn, ws->rstd, ws->dqr, A->q_raw,
                          L->q_norm, m * nq, D, eps, false);
        dqn = ws->dq;
    }
    const vkd_tensor *dkn = key_rows_backward(rec, L, d, m, pos, rpos, A->k_raw, ws, s->inv_freq, eps);
    vkd_linear_backward(rec, ws->da, 0, dqn, 0, A->a1, 0, &L->wq, m, false);
    vkd_linear_backward(rec, ws->da, 0, dkn, 0, A->a1, 0, &L->wk, m, true);
    vkd_linear_backward(rec, ws->da, 0, ws->dv, pos, A->a1, 0, &L->wv, m, true);
    return vkd_norm_backward(rec, dx, L->grad_ln1, ws->dwn, ws->rstd, ws->da, A->x_in, L->ln1, m, H,
                             eps, true);
}

vkd_result vkd_layer_kv_append_backward(vkd_rec *rec, const vkd_layer *L, const vkd_layer_dims *d,
                                        vkd_tensor *dc, const vkd_tensor *c, uint32_t c_row0,
                                        uint32_t n, uint32_t pos, const vkd_tensor *k_raw,
                                        const vkd_layer_grad_ws *ws, const vkd_tensor *inv_freq,
                                        float eps, bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (n > ws->kv_rows || (uint64_t)pos + n > ws->kv_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "K/V append backward: %u rows at %u, the scratch holds "
                        "%u K/V rows", n, pos, ws->kv_rows);
    const vkd_tensor *dkn = key_rows_backward(rec, L, d, n, pos, NULL, k_raw, ws, inv_freq, eps);
    vkd_linear_backward(rec, dc, c_row0, dkn, 0, c, c_row0, &L->wk, n, accumulate);
    return vkd_linear_backward(rec, dc, c_row0, ws->dv, pos, c, c_row0, &L->wv, n, true);
}
