/* ops_loss.c: fused LM head + loss (cross-entropy, and temperature-scaled KL or DSpark's L1
 * distance to a teacher) with its gradient, without ever holding rows x vocab logits.
 *
 * Forward, per vocabulary chunk [j0, j0 + n) (n <= ws->chunk, never crossing a binding of
 * W, of the teacher head or of dW):
 *   S = H W[j0:j0+n]^T                  loss_logits    (teacher head: T = H_t W_t[..]^T)
 *   state[r] <- online fold of S[r]     loss_rows STATS (max/sum of exp(z), exp(z/T), exp(t/T),
 *                                                        D = sum exp(a - max a)(a - z/T), z[label])
 * then loss_rows FINAL: CE = lse(z) - z[label], KL = D / sum_a - lse(a) + lse(z/T),
 * loss[r] = w_r (ce_w CE + kl_w T^2 KL); the state keeps the three log-sum-exps.
 * Backward, per chunk again: S = H W^T (recomputed, as flash attention does), then
 * loss_rows DLOGITS turns S into dL/dz = w_r (ce_w (softmax(z) - onehot) + kl_w T (softmax(z/T)
 * - softmax(t/T))), loss_dh adds S W[chunk] into dH, loss_dw writes S^T H into dW[chunk].
 * L1 teacher term (teacher_l1): the first walk and FINAL as for KL at temperature 1 (the
 * KL term left out), then a second walk: loss_rows L1 sums |q - p| and GS = sum q sign(q - p)
 * per row into the state, loss_rows L1_FINAL adds w_r l1_w L1 to the loss; the backward's
 * DLOGITS gives w_r l1_w q (sign(q - p) - GS) for the teacher term.
 * Every sum runs in a fixed order: reruns are bit-identical.
 *
 * On row-major heads where the device profile's matmul_bcast holds (CPU drivers), the three
 * products (S = H W^T, dH += S W, dW = S^T H) run as the matmul family's broadcast tiles
 * (shaders/matmul_bcast.comp; the one-pass mode keeps loss_dh for its running rescale).
 * With hidden % 4 == 0 the product kernels read four elements per load (MODE_VEC4).
 * Loop limit (lavapipe: 65535 passes per invocation): loss_logits loops `hidden` times,
 * loss_dh `n` times, loss_dw `rows` times, loss_rows n / (16 * lanes) times: checked. */
#include "ops_internal.h"
#include "vkd_push_train.h"
#include "vkd_train_ops.h"

#include <stdlib.h>

#define DEFAULT_CHUNK 4096u
#define MAX_CHUNK 8192u
#define RT 8u /* rows per invocation of the product kernels (shaders/loss_common.glsl) */
#define MODE_CE 1u
#define MODE_KL 2u
#define MODE_FIRST 4u
#define MODE_ACC 8u
#define MODE_ROWW 16u
#define MODE_VEC4 32u
#define MODE_ONLINE 64u
#define MODE_L1 128u
#define MODE_L1OUT 256u
#define BLOCKS_MB 4u /* rows of H per workgroup of loss_logits_blocks (as matmul_blocks) */

vkd_result vkd_lm_loss_ws_create(vkd_ctx *ctx, uint32_t max_rows, uint32_t chunk, bool teacher_head,
                                 vkd_lm_loss_ws **out, vkd_error *err) {
    *out = NULL;
    if (chunk == 0) chunk = DEFAULT_CHUNK;
    if (max_rows == 0 || max_rows > 65535 || chunk > MAX_CHUNK)
        return vkd_fail(err, VKD_ERR_RANGE, "lm_loss: rows %u (1..65535) or chunk %u (<= %u) out of range",
                        max_rows, chunk, MAX_CHUNK);
    vkd_lm_loss_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return vkd_fail(err, VKD_ERR_NOMEM, "lm_loss: out of memory");
    ws->max_rows = max_rows;
    ws->chunk = chunk;
    vkd_result r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, max_rows, chunk, "lm_loss.s", &ws->s, err);
    if (!r && teacher_head)
        r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, max_rows, chunk, "lm_loss.t", &ws->t, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, max_rows, 8, "lm_loss.state", &ws->state, err);
    if (!r && (ws->s->nchunks > 1 || (ws->t && ws->t->nchunks > 1)))
        r = vkd_fail(err, VKD_ERR_RANGE, "lm_loss: scratch of %u rows x %u exceeds one binding; use a "
                     "smaller chunk", max_rows, chunk);
    if (r) {
        vkd_lm_loss_ws_destroy(ws);
        return r;
    }
    *out = ws;
    return VKD_OK;
}

void vkd_lm_loss_ws_destroy(vkd_lm_loss_ws *ws) {
    if (!ws) return;
    vkd_tensor_destroy(ws->s);
    vkd_tensor_destroy(ws->t);
    vkd_tensor_destroy(ws->state);
    vkd_tensor_destroy(ws->gy);
    free(ws);
}

/* A head tensor: vocab x hidden, any chunks, a weight dtype; row-major, or texel blocks where
 * it is only read (not the head gradient). */
static vkd_result need_head(vkd_rec *rec, const vkd_lm_loss_ws *ws, const char *what, const vkd_tensor *w, uint64_t vocab,
                            uint64_t hidden, bool f32_only) {
    vkd_error *err = vkd_rec_error(rec);
    if (w->dtype != VKD_DTYPE_F32 && (f32_only || (w->dtype != VKD_DTYPE_F16 && w->dtype != VKD_DTYPE_BF16)))
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: %s '%s' is %s, expected %s", what, w->name,
                        vkd_dtype_name(w->dtype), f32_only ? "f32" : "f32, f16 or bf16");
    if (w->rows != vocab || w->cols != hidden)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: %s '%s' is %llu x %llu, expected %llu x %llu", what,
                        w->name, (unsigned long long)w->rows, (unsigned long long)w->cols,
                        (unsigned long long)vocab, (unsigned long long)hidden);
    if (w->layout != VKD_LAYOUT_ROWS && (f32_only || w->layout != VKD_LAYOUT_BLOCKS))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "lm_loss: %s '%s' is in the texel block layout, expected %s", what,
                        w->name, f32_only ? "row-major" : "row-major or texel blocks");
    if (w->layout == VKD_LAYOUT_BLOCKS) {
        /* the texel kernels start every vocabulary chunk on a block and loop over a row's texels */
        if (ws->chunk % VKD_BLOCK_ROWS)
            return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: %s '%s' is in the texel block layout: the "
                            "workspace chunk %u must be a multiple of %u", what, w->name, ws->chunk,
                            VKD_BLOCK_ROWS);
        if (w->row_texels + 8 > vkd_profile_loop_budget(vkd_ctx_profile(vkd_rec_ctx(rec))))
            return vkd_fail(err, VKD_ERR_UNSUPPORTED, "lm_loss: %s '%s': hidden %llu exceeds the driver's "
                            "loop limit for the texel kernels", what, w->name, (unsigned long long)hidden);
    }
    return VKD_OK;
}

typedef struct plan {
    uint32_t rows, hidden, hidden_t, vocab, mode;
    float inv_t, ce_w, kl_loss_w, kl_grad_w;
} plan;

static vkd_result check_args(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a, bool backward,
                             plan *p) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!ws || !a || !a->h || !a->w)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: missing workspace, hidden states or head");
    vkd_result r;
    uint32_t rows = a->rows;
    if (rows == 0 || rows > ws->max_rows)
        return vkd_fail(err, VKD_ERR_RANGE, "lm_loss: %u rows, the workspace holds 1..%u", rows, ws->max_rows);
    if (a->w->rows > UINT32_MAX || a->w->cols > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "lm_loss: head '%s' too large", a->w->name);
    *p = (plan){.rows = rows, .hidden = (uint32_t)a->w->cols, .vocab = (uint32_t)a->w->rows};
    if ((r = need_head(rec, ws, "head", a->w, p->vocab, p->hidden, false)) ||
        (r = vkd_ops_need(rec, "lm_loss", a->h, VKD_DTYPE_F32, (uint64_t)rows * p->hidden)))
        return r;
    if (a->h->cols != p->hidden)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: hidden states '%s' have %llu columns, the head %u",
                        a->h->name, (unsigned long long)a->h->cols, p->hidden);
    if (a->labels && (r = vkd_ops_need(rec, "lm_loss", a->labels, VKD_DTYPE_I32, rows))) return r;
    if (a->row_w && (r = vkd_ops_need(rec, "lm_loss", a->row_w, VKD_DTYPE_F32, rows))) return r;
    if (a->t_logits && a->t_h)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: give teacher logits or a teacher head, not both");
    if (a->t_logits) {
        if ((r = vkd_ops_need(rec, "lm_loss", a->t_logits, VKD_DTYPE_F32, 0))) return r;
        if (a->t_logits->cols < p->vocab || (uint64_t)a->t_row0 + rows > a->t_logits->rows ||
            a->t_logits->rows * a->t_logits->cols > UINT32_MAX)
            return vkd_fail(err, VKD_ERR_RANGE,
                            "lm_loss: teacher logits '%s' (%llu x %llu) lack rows %u..%u x %u columns",
                            a->t_logits->name, (unsigned long long)a->t_logits->rows,
                            (unsigned long long)a->t_logits->cols, a->t_row0, a->t_row0 + rows, p->vocab);
    }
    if (a->t_h) {
        if (!a->t_w || !ws->t)
            return vkd_fail(err, VKD_ERR_INVALID,
                            "lm_loss: a teacher hidden state needs a teacher head and a workspace made for it");
        if (a->t_w->cols > UINT32_MAX)
            return vkd_fail(err, VKD_ERR_RANGE, "lm_loss: teacher head too wide");
        p->hidden_t = (uint32_t)a->t_w->cols;
        if ((r = need_head(rec, ws, "teacher head", a->t_w, p->vocab, p->hidden_t, false)) ||
            (r = vkd_ops_need(rec, "lm_loss", a->t_h, VKD_DTYPE_F32, (uint64_t)rows * p->hidden_t)))
            return r;
    }
    bool teacher = a->t_logits || a->t_h;
    if (!a->labels && !teacher)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: neither labels (CE) nor a teacher (KL) given");
    float T = a->temperature != 0.0f ? a->temperature : 1.0f;
    if (!(T > 0.0f) || !(a->ce_weight >= 0.0f) || !(a->kl_weight >= 0.0f) || !(a->l1_weight >= 0.0f))
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: temperature must be > 0, weights >= 0");
    if (a->teacher_l1 && (!teacher || T != 1.0f))
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: the L1 teacher term needs a teacher and "
                        "temperature 1 (got %s, %g)", teacher ? "a teacher" : "no teacher", T);
    if (a->l1 && !a->teacher_l1)
        return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: an L1 output '%s' without the L1 teacher term",
                        a->l1->name);
    if (!backward && a->l1 && (r = vkd_ops_need(rec, "lm_loss", a->l1, VKD_DTYPE_F32, rows))) return r;
    p->mode = (a->labels ? MODE_CE : 0) | (teacher ? MODE_KL : 0) | (a->row_w ? MODE_ROWW : 0) |
              (a->teacher_l1 ? MODE_L1 : 0) | (a->l1 ? MODE_L1OUT : 0);
    p->inv_t = 1.0f / T;
    p->ce_w = a->ce_weight != 0.0f ? a->ce_weight : 1.0f;
    float klw = a->kl_weight != 0.0f ? a->kl_weight : 1.0f;
    p->kl_loss_w = klw * T * T;
    p->kl_grad_w = klw * T;
    if (a->teacher_l1) p->kl_loss_w = p->kl_grad_w = a->l1_weight != 0.0f ? a->l1_weight : 1.0f;
    if (!backward && (r = vkd_ops_need(rec, "lm_loss", a->loss, VKD_DTYPE_F32, rows))) return r;
    if (backward) {
        if (!a->dh) return vkd_fail(err, VKD_ERR_INVALID, "lm_loss: backward needs dh");
        if ((r = vkd_ops_need(rec, "lm_loss", a->dh, VKD_DTYPE_F32, (uint64_t)rows * p->hidden))) return r;
        if (a->dw && (r = need_head(rec, ws, "head gradient", a->dw, p->vocab, p->hidden, true))) return r;
    }
    uint32_t lim = vkd_ctx_profile(vkd_rec_ctx(rec))->bug_loop_limit;
    if (lim && (p->hidden + 8 > lim || p->hidden_t + 8 > lim || rows + 8 > lim))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "lm_loss: hidden %u / %u or rows %u exceed the device's %u loop iterations",
                        p->hidden, p->hidden_t, rows, lim);
    return VKD_OK;
}

/* End of the chunk starting at j: at most ws->chunk entries, inside one binding of every
 * vocabulary-addressed tensor. */
static uint32_t chunk_end(const vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a, bool backward,
                          uint32_t j, uint32_t vocab) {
    uint64_t e = (uint64_t)j + ws->chunk;
    if (e > vocab) e = vocab;
    const vkd_tensor *ts[3] = {a->w, a->t_h ? a->t_w : NULL, backward ? a->dw : NULL};
    for (int i = 0; i < 3; i++) {
        if (!ts[i]) continue;
        const vkd_chunk *c = vkd_tensor_chunk_of_row(ts[i], j);
        if (c->row0 + c->rows < e) e = c->row0 + c->rows;
    }
    return (uint32_t)e;
}

/* Geometry of the texel-block product kernels (loss_logits_blocks, as matmul_blocks): lanes
 * (the profile's wg_stream), head rows per lane, rows of H per workgroup. */
static void blocks_geometry(vkd_rec *rec, uint32_t *lanes, uint32_t *rpl) {
    const vkd_profile *pr = vkd_ctx_profile(vkd_rec_ctx(rec));
    uint32_t l = pr->wg_stream ? pr->wg_stream : 8;
    while (l > 256 || (VKD_BLOCK_ROWS % l)) l /= 2;
    *lanes = l;
    *rpl = VKD_BLOCK_ROWS / l > 32 ? 32 : VKD_BLOCK_ROWS / l;
}

/* Texel offset, inside its chunk's view, of the block holding head row j of a
 * VKD_LAYOUT_BLOCKS head (j - chunk row0 is a multiple of VKD_BLOCK_ROWS: check_args). */
static uint32_t block_texel_off(const vkd_tensor *w, const vkd_chunk *wc, uint32_t j) {
    return (uint32_t)((j - wc->row0) / VKD_BLOCK_ROWS * w->row_texels * VKD_BLOCK_ROWS);
}

static vkd_result logits(vkd_rec *rec, vkd_tensor *out, const vkd_tensor *h, const vkd_tensor *w,
                         uint32_t hidden, const vkd_pc_loss *base, uint32_t wg) {
    const vkd_chunk *wc = vkd_tensor_chunk_of_row(w, base->j0);
    vkd_pc_loss pc = *base;
    pc.hidden = hidden;
    if (w->layout == VKD_LAYOUT_BLOCKS) {
        uint32_t lanes, rpl;
        blocks_geometry(rec, &lanes, &rpl);
        pc.mode &= ~MODE_VEC4;
        pc.w_off = block_texel_off(w, wc, base->j0);
        uint32_t subs = VKD_BLOCK_ROWS / (lanes * rpl);
        vkd_dispatch d = {
            .shader = vkd_select_loss_logits(&(vkd_variant){.dtype = w->dtype, .layout = VKD_LAYOUT_BLOCKS}),
            .spec = {lanes, rpl, BLOCKS_MB},
            .nspec = 3,
            .binds = {{wc, VKD_READ}, vkd_r(h), vkd_w(out)},
            .nbinds = 3,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {(pc.ncols + VKD_BLOCK_ROWS - 1) / VKD_BLOCK_ROWS * subs,
                       (pc.rows + BLOCKS_MB - 1) / BLOCKS_MB},
        };
        return vkd_rec_dispatch(rec, &d);
    }
    if (vkd_ctx_profile(vkd_rec_ctx(rec))->matmul_bcast) {
        vkd_variant key = {.dtype = w->dtype, .trans = VKD_TRANS_N, .shape = VKD_SHAPE_BCAST};
        vkd_pc_matmul_bcast pb = {.K = hidden, .N = pc.s_stride, .rows_a = pc.rows, .cols_b = pc.ncols,
                                  .w_row0 = (uint32_t)(base->j0 - wc->row0)};
        return vkd_ops_matmul_bcast(rec, vkd_select_matmul(&key), (vkd_bind){wc, VKD_READ}, vkd_r(h),
                                    vkd_w(out), pb, 0, hidden, false);
    }
    pc.mode = (pc.mode & ~MODE_VEC4) | (hidden % 4 == 0 ? MODE_VEC4 : 0);
    pc.w_off = (uint32_t)((base->j0 - wc->row0) * hidden);
    vkd_dispatch d = {
        .shader = vkd_select_loss_logits(&(vkd_variant){.dtype = w->dtype}),
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(h), {wc, VKD_READ}, vkd_w(out)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(pc.ncols + wg - 1) / wg, (pc.rows + RT - 1) / RT},
    };
    return vkd_rec_dispatch(rec, &d);
}

/* dH += S W[chunk] (loss_dh or loss_dh_blocks by the head's layout); pc has the chunk's
 * j0, ncols and mode; g: the label-row scratch (one-pass mode) or dh. */
static vkd_result chunk_dh(vkd_rec *rec, const vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a,
                           const plan *p, const vkd_pc_loss *pc, vkd_bind labels, vkd_bind g,
                           uint32_t wg) {
    const vkd_chunk *wc = vkd_tensor_chunk_of_row(a->w, pc->j0);
    vkd_pc_loss ph = *pc;
    bool blocks = a->w->layout == VKD_LAYOUT_BLOCKS;
    if (!blocks && !(pc->mode & MODE_ONLINE) && vkd_ctx_profile(vkd_rec_ctx(rec))->matmul_bcast) {
        vkd_variant key = {.dtype = a->w->dtype, .trans = VKD_TRANS_DX, .shape = VKD_SHAPE_BCAST};
        vkd_pc_matmul_bcast pb = {.K = p->hidden, .N = pc->s_stride, .rows_a = p->rows,
                                  .cols_b = p->hidden, .w_row0 = (uint32_t)(pc->j0 - wc->row0)};
        bool acc = (pc->mode & MODE_ACC) || !(pc->mode & MODE_FIRST);
        return vkd_ops_matmul_bcast(rec, vkd_select_matmul(&key), (vkd_bind){wc, VKD_READ}, vkd_r(ws->s),
                                    g, pb, 0, pc->ncols, acc);
    }
    uint32_t cols = p->hidden;
    if (blocks) {
        ph.w_off = block_texel_off(a->w, wc, pc->j0);
        cols = (uint32_t)a->w->row_texels;
    } else {
        ph.w_off = (uint32_t)((pc->j0 - wc->row0) * p->hidden);
        if (p->hidden % 4 == 0) ph.mode |= MODE_VEC4, cols = p->hidden / 4;
    }
    vkd_dispatch dh = {
        .shader = vkd_select_loss_dh(&(vkd_variant){.dtype = a->w->dtype, .layout = a->w->layout}),
        .spec = {wg},
        .nspec = 1,
        /* 3..5 are read or written only in the one-pass mode */
        .binds = {vkd_r(ws->s), {wc, VKD_READ}, vkd_rw(a->dh), vkd_r(ws->state), labels, g},
        .nbinds = 6,
        .push = &ph,
        .push_bytes = sizeof ph,
        .groups = {(cols + wg - 1) / wg, (p->rows + RT - 1) / RT},
    };
    if (blocks) dh.binds[0] = (vkd_bind){wc, VKD_READ}, dh.binds[1] = vkd_r(ws->s);
    return vkd_rec_dispatch(rec, &dh);
}

/* The teacher operand of loss_rows: T scratch or the given logits. */
static vkd_bind teacher_bind(const vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a) {
    if (a->t_logits) return vkd_r(a->t_logits);
    if (a->t_h) return vkd_r(ws->t);
    return vkd_r(ws->s); /* unused (no KL) */
}

/* Recomputes the chunk's student (and teacher-head) logits into the scratch. */
static vkd_result chunk_logits(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a,
                               const plan *p, vkd_pc_loss *pc, uint32_t wg) {
    vkd_result r = logits(rec, ws->s, a->h, a->w, p->hidden, pc, wg);
    if (!r && a->t_h) r = logits(rec, ws->t, a->t_h, a->t_w, p->hidden_t, pc, wg);
    return r;
}

static vkd_pc_loss base_pc(const vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a, const plan *p,
                           uint32_t j, uint32_t e) {
    vkd_pc_loss pc = {.rows = p->rows, .hidden = p->hidden, .ncols = e - j, .s_stride = ws->chunk,
                      .j0 = j, .vocab = p->vocab, .mode = p->mode, .inv_t = p->inv_t,
                      .ce_w = p->ce_w, .kl_loss_w = p->kl_loss_w, .kl_grad_w = p->kl_grad_w};
    if (a->t_logits) {
        pc.t_stride = (uint32_t)a->t_logits->cols;
        pc.t_off = (uint32_t)((uint64_t)a->t_row0 * a->t_logits->cols + j);
    }
    return pc;
}

/* Workgroup size of the row kernels (loss_rows STATS: one row per workgroup, subgroup
 * reductions of at most 64 subgroups). */
static vkd_result row_wg(vkd_rec *rec, uint32_t *out) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg_row = vkd_ctx_profile(ctx)->wg_row;
    const vkd_device_info *d = vkd_ctx_info(ctx);
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    if (!d->subgroup_in_compute || (d->subgroup_ops & need) != need)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "lm_loss: the device lacks subgroup arithmetic in compute shaders");
    uint32_t min_sg = d->min_subgroup_size ? d->min_subgroup_size : d->subgroup_size;
    while (wg_row > 256 || (min_sg && wg_row > 64 * min_sg) || (wg_row & (wg_row - 1))) wg_row >>= 1;
    *out = wg_row ? wg_row : 1;
    return VKD_OK;
}

/* L1 mode, after FINAL: a second walk over the vocabulary for L1 and GS, then the loss. */
static vkd_result l1_pass(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a, const plan *p,
                          uint32_t wg, uint32_t wg_row) {
    vkd_result r;
    for (uint32_t j = 0; j < p->vocab;) {
        uint32_t e = chunk_end(ws, a, false, j, p->vocab);
        vkd_pc_loss pc = base_pc(ws, a, p, j, e);
        if (j == 0) pc.mode |= MODE_FIRST;
        if ((r = chunk_logits(rec, ws, a, p, &pc, wg))) return r;
        vkd_dispatch s = {
            .shader = VKD_SHADER_LOSS_L1,
            .spec = {wg_row},
            .nspec = 1,
            .binds = {vkd_r(ws->s), teacher_bind(ws, a), vkd_r(ws->s), vkd_rw(ws->state)},
            .nbinds = 4,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {p->rows},
        };
        if ((r = vkd_rec_dispatch(rec, &s))) return r;
        j = e;
    }
    vkd_pc_loss pc = base_pc(ws, a, p, 0, 0);
    vkd_dispatch f = {
        .shader = VKD_SHADER_LOSS_L1_FINAL,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(ws->state), a->row_w ? vkd_r(a->row_w) : vkd_r(ws->s), vkd_rw(a->loss),
                  a->l1 ? vkd_w(a->l1) : vkd_w(ws->s)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(p->rows + wg - 1) / wg},
    };
    return vkd_rec_dispatch(rec, &f);
}

vkd_result vkd_op_lm_loss_forward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a) {
    plan p;
    vkd_result r;
    if ((r = check_args(rec, ws, a, false, &p))) return r;
    uint32_t wg = vkd_ctx_profile(vkd_rec_ctx(rec))->wg_elementwise, wg_row;
    if ((r = row_wg(rec, &wg_row))) return r;
    for (uint32_t j = 0; j < p.vocab;) {
        uint32_t e = chunk_end(ws, a, false, j, p.vocab);
        vkd_pc_loss pc = base_pc(ws, a, &p, j, e);
        if (j == 0) pc.mode |= MODE_FIRST;
        if ((r = chunk_logits(rec, ws, a, &p, &pc, wg))) return r;
        vkd_dispatch s = {
            .shader = VKD_SHADER_LOSS_STATS,
            .spec = {wg_row},
            .nspec = 1,
            .binds = {vkd_r(ws->s), teacher_bind(ws, a), a->labels ? vkd_r(a->labels) : vkd_r(ws->s),
                      vkd_rw(ws->state)},
            .nbinds = 4,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {p.rows},
        };
        if ((r = vkd_rec_dispatch(rec, &s))) return r;
        j = e;
    }
    vkd_pc_loss pc = base_pc(ws, a, &p, 0, 0);
    vkd_dispatch f = {
        .shader = VKD_SHADER_LOSS_FINAL,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_rw(ws->state), a->labels ? vkd_r(a->labels) : vkd_r(ws->s),
                  a->row_w ? vkd_r(a->row_w) : vkd_r(ws->s), vkd_w(a->loss)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(p.rows + wg - 1) / wg},
    };
    if ((r = vkd_rec_dispatch(rec, &f)) || !(p.mode & MODE_L1)) return r;
    return l1_pass(rec, ws, a, &p, wg, wg_row);
}

vkd_result vkd_op_lm_loss_backward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a) {
    plan p;
    vkd_result r;
    if ((r = check_args(rec, ws, a, true, &p))) return r;
    uint32_t wg = vkd_ctx_profile(vkd_rec_ctx(rec))->wg_elementwise;
    for (uint32_t j = 0; j < p.vocab;) {
        uint32_t e = chunk_end(ws, a, true, j, p.vocab);
        vkd_pc_loss pc = base_pc(ws, a, &p, j, e);
        if (j == 0) pc.mode |= MODE_FIRST;
        if (a->accumulate) pc.mode |= MODE_ACC;
        if ((r = chunk_logits(rec, ws, a, &p, &pc, wg))) return r;
        vkd_dispatch g = {
            .shader = VKD_SHADER_LOSS_DLOGITS,
            .spec = {wg},
            .nspec = 1,
            .binds = {vkd_rw(ws->s), teacher_bind(ws, a), a->labels ? vkd_r(a->labels) : vkd_r(ws->state),
                      vkd_r(ws->state), a->row_w ? vkd_r(a->row_w) : vkd_r(ws->state)},
            .nbinds = 5,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {(pc.ncols + wg - 1) / wg, p.rows},
        };
        if ((r = vkd_rec_dispatch(rec, &g))) return r;
        if ((r = chunk_dh(rec, ws, a, &p, &pc, vkd_r(ws->state), vkd_rw(a->dh), wg))) return r;
        if (a->dw) {
            const vkd_chunk *dc = vkd_tensor_chunk_of_row(a->dw, j);
            vkd_pc_loss pw = pc;
            pw.w_off = (uint32_t)((j - dc->row0) * p.hidden);
            if (vkd_ctx_profile(vkd_rec_ctx(rec))->matmul_bcast) {
                vkd_variant key = {.dtype = VKD_DTYPE_F32, .trans = VKD_TRANS_DW, .shape = VKD_SHAPE_BCAST};
                vkd_pc_matmul_bcast pb = {.K = p.hidden, .N = pc.s_stride, .rows_a = pc.ncols,
                                          .cols_b = p.hidden, .o_row0 = (uint32_t)(j - dc->row0)};
                if ((r = vkd_ops_matmul_bcast(rec, vkd_select_matmul(&key), vkd_r(a->h), vkd_r(ws->s),
                                              (vkd_bind){dc, VKD_RW}, pb, 0, p.rows,
                                              (pc.mode & MODE_ACC) != 0)))
                    return r;
                j = e;
                continue;
            }
            vkd_dispatch dw = {
                .shader = VKD_SHADER_LOSS_DW,
                .spec = {wg},
                .nspec = 1,
                .binds = {vkd_r(ws->s), vkd_r(a->h), {dc, VKD_RW}},
                .nbinds = 3,
                .push = &pw,
                .push_bytes = sizeof pw,
                .groups = {(p.hidden + wg - 1) / wg, pc.ncols},
            };
            if ((r = vkd_rec_dispatch(rec, &dw))) return r;
        }
        j = e;
    }
    return VKD_OK;
}

/* The one-pass case: CE against labels, frozen head, dH written (not accumulated), and the
 * workspace's label-row scratch G (rows x hidden) in one binding. */
static bool one_pass(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a, uint32_t hidden,
                     vkd_result *r) {
    *r = VKD_OK;
    if (!a->labels || a->t_logits || a->t_h || a->dw || a->accumulate) return false;
    if (ws->gy && ws->gy->cols != hidden) {
        *r = vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "lm_loss: workspace serves hidden %llu, "
                      "called with %u", (unsigned long long)ws->gy->cols, hidden);
        return false;
    }
    if (!ws->gy && (*r = vkd_tensor_create_2d(vkd_rec_ctx(rec), VKD_DTYPE_F32, ws->max_rows, hidden,
                                              "lm_loss.g", &ws->gy, vkd_rec_error(rec))))
        return false;
    return ws->gy->nchunks == 1;
}

vkd_result vkd_op_lm_loss_forward_backward(vkd_rec *rec, vkd_lm_loss_ws *ws, const vkd_lm_loss_args *a) {
    plan p;
    vkd_result r;
    if ((r = check_args(rec, ws, a, false, &p)) || (r = check_args(rec, ws, a, true, &p))) return r;
    if (!one_pass(rec, ws, a, p.hidden, &r)) {
        if (!r) r = vkd_op_lm_loss_forward(rec, ws, a);
        if (!r) r = vkd_op_lm_loss_backward(rec, ws, a);
        return r;
    }
    uint32_t wg = vkd_ctx_profile(vkd_rec_ctx(rec))->wg_elementwise, wg_row;
    if ((r = row_wg(rec, &wg_row))) return r;
    for (uint32_t j = 0; j < p.vocab;) {
        uint32_t e = chunk_end(ws, a, false, j, p.vocab);
        vkd_pc_loss pc = base_pc(ws, a, &p, j, e);
        pc.mode |= MODE_ONLINE | (j == 0 ? MODE_FIRST : 0);
        if ((r = chunk_logits(rec, ws, a, &p, &pc, wg))) return r;
        vkd_dispatch s = {
            .shader = VKD_SHADER_LOSS_STATS_ONLINE,
            .spec = {wg_row},
            .nspec = 1,
            .binds = {vkd_rw(ws->s), vkd_r(ws->s), vkd_r(a->labels), vkd_rw(ws->state)},
            .nbinds = 4,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {p.rows},
        };
        if ((r = vkd_rec_dispatch(rec, &s))) return r;
        if ((r = chunk_dh(rec, ws, a, &p, &pc, vkd_r(a->labels), vkd_rw(ws->gy), wg))) return r;
        j = e;
    }
    vkd_pc_loss pc = base_pc(ws, a, &p, 0, 0);
    vkd_dispatch f = {
        .shader = VKD_SHADER_LOSS_FINAL,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_rw(ws->state), vkd_r(a->labels), a->row_w ? vkd_r(a->row_w) : vkd_r(ws->s),
                  vkd_w(a->loss)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(p.rows + wg - 1) / wg},
    };
    if ((r = vkd_rec_dispatch(rec, &f))) return r;
    vkd_dispatch g = {
        .shader = VKD_SHADER_LOSS_DH_FINAL,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(ws->state), vkd_r(a->labels), a->row_w ? vkd_r(a->row_w) : vkd_r(ws->s),
                  vkd_r(ws->gy), vkd_rw(a->dh)},
        .nbinds = 5,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(p.hidden + wg - 1) / wg, p.rows},
    };
    return vkd_rec_dispatch(rec, &g);
}
