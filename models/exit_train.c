/* exit_train.c: distillation of an early-exit head (vkd_exit.h, training section).
 *
 * One sequence, n rows (all f32):
 *   x   = embed(ids); layers 0..l          -> hl (copy, n x H)
 *   x   = layers l+1..L-1 on x             (the teacher's last state)
 *   ht  = rmsnorm(x) * norm_t;  hs = rmsnorm(hl) * norm
 *   loss, dhs, dhead += fused LM-head loss(hs, head; teacher ht, W_t; labels; w)
 *   dnorm += rmsnorm backward(dhs, hl, norm)
 * Parameters, gradients and AdamW moments are f32 with the head's chunking; the optimizer
 * slots are per-chunk views (each slot one binding).
 * With the head's own block (Option B, e->block) the student's state is that block on the
 * target's state after layer l-1, with kept activations and its own K/V rows:
 *   x   = embed(ids); layers 0..l-1      -> hl (copy);  hl = block(hl)   (student, kept)
 *   x   = layers l..L-1 on x             (the teacher: the target's own block l)
 *   ... loss as above; dhl = rmsnorm backward; block backward(dhl) -> block gradients
 * and the block's tensors join the optimizer (one slot each). */
#include "vkd_exit.h"
#include "vkd_ops_grad.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 64

struct vkd_exit_trainer {
    vkd_exit *e;
    vkd_target *t;
    vkd_exit_train_options opt;
    uint32_t rows;
    vkd_tensor *ids, *labels, *row_w, *loss, *x, *hl, *hs, *ht, *dh, *dx, *rstd, *parts;
    vkd_tensor *g_norm, *m_norm, *v_norm, *g_head, *m_head, *v_head;
    vkd_lm_loss_ws *ws;
    vkd_tensor *views[4 * MAX_SLOTS]; /* per head chunk: param, grad, m, v */
    vkd_optim_slot slots[MAX_SLOTS + 1 + VKD_EXIT_BLOCK_MAX];
    uint32_t nslots;
    int32_t *host_ids;
    float *host_w;
    bool batch_start;           /* the next sequence writes the gradients instead of adding */
    /* Option B: the block's kept activations, backward scratch, own K/V rows, moments */
    vkd_layer_acts acts;
    vkd_layer_grad_ws gws;
    vkd_tensor *bk, *bv;
    vkd_tensor *bm[VKD_EXIT_BLOCK_MAX], *bvv[VKD_EXIT_BLOCK_MAX];
    vkd_exit_block_tensor bt[VKD_EXIT_BLOCK_MAX];
    uint32_t nb;
    uint64_t nparams;           /* norm + head + block values */
};

static vkd_layer_dims dims_of(const vkd_target *t) {
    return (vkd_layer_dims){t->hidden, t->n_q, t->n_kv, t->head_dim, t->ffn, t->qk_norm};
}

static vkd_result tensor(vkd_exit_trainer *tr, vkd_dtype dt, uint64_t rows, uint64_t cols, const char *name,
                         vkd_tensor **out, vkd_error *err) {
    return vkd_tensor_create_2d(tr->t->ctx, dt, rows, cols, name, out, err);
}

/* Views of chunk c of each of the four head-shaped tensors. */
static vkd_result head_views(vkd_exit_trainer *tr, vkd_error *err) {
    vkd_tensor *base[4] = {tr->e->head, tr->g_head, tr->m_head, tr->v_head};
    const vkd_tensor *h = tr->e->head;
    if (h->nchunks == 1) {
        tr->slots[tr->nslots++] = (vkd_optim_slot){tr->e->head, tr->g_head, tr->m_head, tr->v_head, h->rows * h->cols};
        return VKD_OK;
    }
    if (h->nchunks > MAX_SLOTS) return vkd_fail(err, VKD_ERR_UNSUPPORTED, "exit head split into %u chunks (at most %d)",
                                                h->nchunks, MAX_SLOTS);
    for (uint32_t c = 0; c < h->nchunks; c++) {
        const vkd_chunk *ch = &h->chunks[c];
        for (int k = 0; k < 4; k++) {
            if (base[k]->nchunks != h->nchunks || base[k]->chunks[c].rows != ch->rows)
                return vkd_fail(err, VKD_ERR_INVALID, "exit trainer: %s is chunked unlike the head", base[k]->name);
            int64_t shape[2] = {(int64_t)ch->rows, (int64_t)h->cols};
            vkd_result r = vkd_tensor_view(base[k], ch->row0 * h->row_bytes, VKD_DTYPE_F32, 2, shape, "exit_head_view",
                                           &tr->views[4 * c + k], err);
            if (r) return r;
        }
        vkd_tensor **v = &tr->views[4 * c];
        tr->slots[tr->nslots++] = (vkd_optim_slot){v[0], v[1], v[2], v[3], ch->rows * h->cols};
    }
    return VKD_OK;
}

/* Option B: activations, scratch, gradients and moments of the block, and its slots. */
static vkd_result block_setup(vkd_exit_trainer *tr, vkd_error *err) {
    vkd_target *t = tr->t;
    vkd_exit *e = tr->e;
    const vkd_layer_dims d = dims_of(t);
    uint32_t R = tr->rows, KV = t->n_kv * t->head_dim;
    vkd_result r = vkd_layer_acts_create(t->ctx, &d, R, &tr->acts, err);
    if (!r) r = vkd_layer_grad_ws_create(t->ctx, &d, R, R, &tr->gws, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, R, KV, "exit_block_k", &tr->bk, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, R, KV, "exit_block_v", &tr->bv, err);
    if (!r && !e->block->grad_ln1) r = vkd_layer_weight_grads(t->ctx, e->block, &d, err);
    if (r) return r;
    tr->nb = vkd_exit_block_tensors(e, tr->bt);
    for (uint32_t i = 0; i < tr->nb && !r; i++) {
        uint64_t rows = tr->bt[i].rows ? tr->bt[i].rows : 1, n = rows * tr->bt[i].cols;
        r = tensor(tr, VKD_DTYPE_F32, rows, tr->bt[i].cols, "exit_block_m", &tr->bm[i], err);
        if (!r) r = tensor(tr, VKD_DTYPE_F32, rows, tr->bt[i].cols, "exit_block_v", &tr->bvv[i], err);
        if (!r) tr->slots[tr->nslots++] = (vkd_optim_slot){tr->bt[i].w, tr->bt[i].grad, tr->bm[i], tr->bvv[i], n};
        tr->nparams += n;
    }
    return r;
}

vkd_result vkd_exit_trainer_create(vkd_exit *e, const vkd_exit_train_options *opt, vkd_exit_trainer **out,
                                   vkd_error *err) {
    *out = NULL;
    vkd_target *t = e->t;
    if (!e->head) return vkd_fail(err, VKD_ERR_INVALID, "a frozen exit head cannot be trained");
    vkd_exit_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    tr->e = e;
    tr->t = t;
    tr->opt = opt ? *opt : (vkd_exit_train_options){0};
    if (!(tr->opt.temperature > 0)) tr->opt.temperature = 1;
    tr->rows = tr->opt.max_rows ? tr->opt.max_rows : t->max_rows;
    vkd_result r = VKD_OK;
    if (tr->rows > t->max_rows || tr->rows < 2)
        r = vkd_fail(err, VKD_ERR_INVALID, "exit training: %u rows per sequence (2..%u)", tr->rows, t->max_rows);
    uint32_t R = tr->rows, H = e->hidden, V = e->vocab;
    tr->host_ids = malloc(R * sizeof *tr->host_ids);
    tr->host_w = malloc(R * sizeof *tr->host_w);
    if (!r && (!tr->host_ids || !tr->host_w)) r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    int64_t ws[2] = {V, H};
    if (!r) r = tensor(tr, VKD_DTYPE_I32, 1, R, "exit_train_ids", &tr->ids, err);
    if (!r) r = tensor(tr, VKD_DTYPE_I32, 1, R, "exit_train_labels", &tr->labels, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, R, "exit_train_row_w", &tr->row_w, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, R, "exit_train_loss", &tr->loss, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, R, "exit_train_rstd", &tr->rstd, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_x", &tr->x, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_hl", &tr->hl, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_hs", &tr->hs, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_ht", &tr->ht, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_dh", &tr->dh, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, R, H, "exit_train_dx", &tr->dx, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, H, "exit_grad_norm", &tr->g_norm, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, H, "exit_m_norm", &tr->m_norm, err);
    if (!r) r = tensor(tr, VKD_DTYPE_F32, 1, H, "exit_v_norm", &tr->v_norm, err);
    if (!r) r = vkd_tensor_create_layout(t->ctx, VKD_DTYPE_F32, 2, ws, VKD_LAYOUT_ROWS, "exit_grad_head", &tr->g_head, err);
    if (!r) r = vkd_tensor_create_layout(t->ctx, VKD_DTYPE_F32, 2, ws, VKD_LAYOUT_ROWS, "exit_m_head", &tr->m_head, err);
    if (!r) r = vkd_tensor_create_layout(t->ctx, VKD_DTYPE_F32, 2, ws, VKD_LAYOUT_ROWS, "exit_v_head", &tr->v_head, err);
    if (!r) r = vkd_lm_loss_ws_create(t->ctx, R, 0, true, &tr->ws, err);
    if (!r) {
        tr->slots[tr->nslots++] = (vkd_optim_slot){e->norm, tr->g_norm, tr->m_norm, tr->v_norm, H};
        r = head_views(tr, err);
        tr->nparams = H + (uint64_t)V * H;
    }
    if (!r && e->block) r = block_setup(tr, err);
    if (!r) {
        uint32_t np = vkd_optim_parts_needed(t->ctx, tr->slots, tr->nslots) + 1;
        r = tensor(tr, VKD_DTYPE_F32, 1, np, "exit_train_parts", &tr->parts, err);
    }
    if (r) {
        vkd_exit_trainer_free(tr);
        return r;
    }
    *out = tr;
    return VKD_OK;
}

void vkd_exit_trainer_free(vkd_exit_trainer *tr) {
    if (!tr) return;
    for (size_t i = 0; i < sizeof tr->views / sizeof tr->views[0]; i++) vkd_tensor_destroy(tr->views[i]);
    vkd_tensor *ts[] = {tr->ids, tr->labels, tr->row_w, tr->loss, tr->x, tr->hl, tr->hs, tr->ht, tr->dh, tr->dx,
                        tr->rstd, tr->parts, tr->g_norm, tr->m_norm, tr->v_norm, tr->g_head, tr->m_head, tr->v_head};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vkd_tensor_destroy(ts[i]);
    vkd_lm_loss_ws_destroy(tr->ws);
    if (tr->acts.x_in) vkd_layer_acts_free(&tr->acts);
    if (tr->gws.da) vkd_layer_grad_ws_free(&tr->gws);
    vkd_tensor_destroy(tr->bk);
    vkd_tensor_destroy(tr->bv);
    for (uint32_t i = 0; i < VKD_EXIT_BLOCK_MAX; i++) {
        vkd_tensor_destroy(tr->bm[i]);
        vkd_tensor_destroy(tr->bvv[i]);
    }
    free(tr->host_ids);
    free(tr->host_w);
    free(tr);
}

uint32_t vkd_exit_train_rows(const vkd_exit_trainer *tr, uint32_t n) {
    uint32_t drop = tr->opt.ce ? 2 : 1;
    return n > drop ? n - drop : 0;
}

/* The batch's first sequence writes the head's gradient (the loss backward without
 * accumulate): no separate zeroing pass over the vocab x hidden gradient. The block's
 * gradients (and the norm's, accumulated by vkd_norm_backward then) are zeroed here. */
vkd_result vkd_exit_train_zero(vkd_rec *rec, vkd_exit_trainer *tr) {
    tr->batch_start = true;
    if (tr->e->block) {
        const vkd_layer_dims d = dims_of(tr->t);
        vkd_layer_zero_grads(rec, tr->e->block, &d);
        vkd_op_axpby(rec, tr->g_norm, tr->g_norm, tr->g_norm, 0.0f, 0.0f, tr->e->hidden);
    }
    return vkd_rec_error(rec)->code;
}

uint64_t vkd_exit_train_params(const vkd_exit_trainer *tr) { return tr->nparams; }

static vkd_result seq(vkd_rec *rec, vkd_exit_trainer *tr, const int32_t *ids, uint32_t n, float weight,
                      float *loss_rows, bool backward, vkd_error *err) {
    vkd_exit *e = tr->e;
    vkd_target *t = tr->t;
    const uint32_t H = e->hidden;
    if (n < 2 || n > tr->rows)
        return vkd_fail(err, VKD_ERR_INVALID, "exit training sequence of %u tokens (2..%u)", n, tr->rows);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= e->vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "token id %d outside the vocabulary (0..%u)", ids[i], e->vocab - 1);
    uint32_t last = tr->opt.ce ? n - 2 : n - 1;
    for (uint32_t i = 0; i < n; i++) {
        tr->host_w[i] = i >= 1 && i <= last ? weight : 0.0f;
        tr->host_ids[i] = tr->opt.ce && i + 1 < n ? ids[i + 1] : -1;
    }
    const float eps = (float)t->cfg.rms_norm_eps;
    vkd_rec_update(rec, tr->ids, 0, ids, (uint64_t)n * 4);
    vkd_rec_update(rec, tr->row_w, 0, tr->host_w, (uint64_t)n * 4);
    if (tr->opt.ce) vkd_rec_update(rec, tr->labels, 0, tr->host_ids, (uint64_t)n * 4);
    vkd_op_embed(rec, tr->x, tr->ids, t->embed, n);
    const vkd_layer_dims d = dims_of(t);
    vkd_layer_step bs = {.m = n, .pos = 0, .causal = true, .kc = tr->bk, .vc = tr->bv, .inv_freq = t->inv_freq,
                         .eps = eps};
    uint32_t split = e->block ? e->layer : e->layer + 1; /* the student's state branches off here */
    vkd_exit_layers_record(rec, t, tr->x, n, 0, 0, split, NULL, NULL);
    vkd_op_copy2d(rec, tr->hl, 0, 0, tr->x, 0, 0, n, H);
    if (e->block) vkd_layer_forward(rec, e->block, &d, tr->hl, &tr->acts, &bs);
    vkd_exit_layers_record(rec, t, tr->x, n, 0, split, t->n_layers, NULL, NULL);
    vkd_op_rmsnorm(rec, tr->ht, tr->x, t->norm, n, H, eps);
    vkd_op_rmsnorm(rec, tr->hs, tr->hl, e->norm, n, H, eps);
    bool acc = !tr->batch_start;
    if (acc && backward) vkd_op_axpby(rec, tr->dh, tr->dh, tr->dh, 0.0f, 0.0f, (uint64_t)n * H);
    vkd_lm_loss_args a = {.rows = n, .h = tr->hs, .w = e->head, .labels = tr->opt.ce ? tr->labels : NULL,
                          .row_w = tr->row_w, .t_h = tr->ht, .t_w = t->lm_head, .temperature = tr->opt.temperature,
                          .loss = tr->loss, .dh = tr->dh, .dw = tr->g_head, .accumulate = acc};
    vkd_op_lm_loss_forward(rec, tr->ws, &a);
    if (backward) {
        vkd_op_lm_loss_backward(rec, tr->ws, &a);
        if (!e->block) {
            vkd_op_rmsnorm_backward(rec, tr->dx, tr->g_norm, tr->rstd, tr->dh, tr->hl, e->norm, n, H, eps, acc);
        } else {
            vkd_norm_backward(rec, tr->dx, tr->g_norm, tr->gws.dwn, tr->gws.rstd, tr->dh, tr->hl, e->norm, n, H, eps,
                              false);
            vkd_layer_backward(rec, e->block, &d, tr->dx, &tr->acts, &bs, &tr->gws);
        }
        tr->batch_start = false;
    }
    if (loss_rows) vkd_rec_read(rec, tr->loss, 0, loss_rows, (uint64_t)n * 4);
    vkd_result r = vkd_rec_error(rec)->code;
    if (r) *err = *vkd_rec_error(rec);
    return r;
}

vkd_result vkd_exit_train_seq(vkd_rec *rec, vkd_exit_trainer *tr, const int32_t *ids, uint32_t n, float weight,
                              float *loss_rows, vkd_error *err) {
    return seq(rec, tr, ids, n, weight, loss_rows, true, err);
}

vkd_result vkd_exit_train_loss(vkd_rec *rec, vkd_exit_trainer *tr, const int32_t *ids, uint32_t n, float weight,
                               float *loss_rows, vkd_error *err) {
    return seq(rec, tr, ids, n, weight, loss_rows, false, err);
}

vkd_result vkd_exit_train_update(vkd_rec *rec, vkd_exit_trainer *tr, const vkd_optim_params *p, float *grad_norm,
                                 vkd_error *err) {
    uint32_t ni = 0;
    vkd_result r = vkd_optim_step(rec, tr->slots, tr->nslots, p, tr->parts, &ni);
    if (!r && grad_norm && p->max_grad_norm > 0) r = vkd_rec_read(rec, tr->parts, (uint64_t)ni * 4, grad_norm, 4);
    if (r) *err = *vkd_rec_error(rec);
    return r;
}

/* Downloads (get) or uploads (set) norm-shaped then head-shaped data of a, b. */
static vkd_result io2(vkd_tensor *norm, vkd_tensor *head, float *data, bool set, vkd_error *err) {
    uint64_t nn = norm->rows * norm->cols * 4, nh = head->rows * head->cols * 4;
    vkd_result r = set ? vkd_tensor_upload(norm, 0, data, nn, err) : vkd_tensor_download(norm, 0, data, nn, err);
    if (!r) r = set ? vkd_tensor_upload(head, 0, data + nn / 4, nh, err) : vkd_tensor_download(head, 0, data + nn / 4, nh, err);
    return r;
}

/* The same for the block's moments (mv: bm or bvv) after the head's values. */
static vkd_result io_block(vkd_exit_trainer *tr, vkd_tensor **mv, float *data, bool set, vkd_error *err) {
    uint64_t at = tr->e->hidden + (uint64_t)tr->e->vocab * tr->e->hidden;
    vkd_result r = VKD_OK;
    for (uint32_t i = 0; i < tr->nb && !r; i++) {
        uint64_t nb = mv[i]->rows * mv[i]->cols * 4;
        r = set ? vkd_tensor_upload(mv[i], 0, data + at, nb, err) : vkd_tensor_download(mv[i], 0, data + at, nb, err);
        at += nb / 4;
    }
    return r;
}

vkd_result vkd_exit_train_state_get(vkd_exit_trainer *tr, float *m, float *v, vkd_error *err) {
    vkd_result r = io2(tr->m_norm, tr->m_head, m, false, err);
    if (!r) r = io2(tr->v_norm, tr->v_head, v, false, err);
    if (!r) r = io_block(tr, tr->bm, m, false, err);
    return r ? r : io_block(tr, tr->bvv, v, false, err);
}

vkd_result vkd_exit_train_state_set(vkd_exit_trainer *tr, const float *m, const float *v, vkd_error *err) {
    vkd_result r = io2(tr->m_norm, tr->m_head, (float *)m, true, err);
    if (!r) r = io2(tr->v_norm, tr->v_head, (float *)v, true, err);
    if (!r) r = io_block(tr, tr->bm, (float *)m, true, err);
    return r ? r : io_block(tr, tr->bvv, (float *)v, true, err);
}

vkd_result vkd_exit_train_grads(vkd_exit_trainer *tr, float *g_norm, float *g_head, vkd_error *err) {
    vkd_result r = vkd_tensor_download(tr->g_norm, 0, g_norm, (uint64_t)tr->e->hidden * 4, err);
    if (!r) r = vkd_tensor_download(tr->g_head, 0, g_head, (uint64_t)tr->e->vocab * tr->e->hidden * 4, err);
    return r;
}
