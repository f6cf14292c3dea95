/* exit_draft.c: the early-exit draft (vkd_exit.h) behind vkd_draft, in two variants:
 *   plain  the truncated target (layers 0..l + the exit head) as a separate causal draft with
 *          its own KV cache for layers 0..l (as seed 003 runs it);
 *   reuse  self-speculative (LayerSkip style): drafting writes layers 0..l's K/V of the
 *          proposals into the target's own cache and keeps their layer-l hidden states; the
 *          verification (the `verify` op, called by vkd_spec_generate) embeds and runs
 *          layers 0..l only for rows it has not drafted (the last proposal) and layers
 *          l+1.. for all rows. Its context is the target's: context() only checks that the
 *          target holds those positions. Refused for a head with its own block l
 *          (--ft-last-block): that block's K/V are not the target's.
 * A head with its own block runs it in place of the target's block l (plain variant). */
#include "vkd_draft.h"
#include "vkd_exit.h"
#include "vkd_sample.h"

#include <stdlib.h>
#include <string.h>

typedef struct exit_draft {
    vkd_draft base;
    vkd_exit *e;
    vkd_target *t;
    bool reuse;
    uint32_t committed;         /* context positions */
    uint32_t len;               /* plain: positions in the own cache (proposals may lie past committed) */
    int32_t *fed;               /* plain: ids the own cache holds, by position */
    vkd_tensor **kc, **vc;      /* plain: own caches for layers 0..l (NULL entries past l) */
    vkd_tensor *ids, *x, *xn, *logits, *tok, *hsave;
    uint32_t rows;              /* rows of ids and x */
    /* reuse: hsave rows [0, hcount) hold layer-l states of hids at positions hpos.. */
    int32_t *hids;
    uint32_t hpos, hcount;
    float *host_logits;
} exit_draft;

/* Records the trunk (embed + layers 0..l) on ids[0..m) at pos into x rows 0..m. */
static vkd_result trunk(exit_draft *s, vkd_rec *rec, const int32_t *ids, uint32_t m, uint32_t pos, vkd_error *err) {
    for (uint32_t i = 0; i < m; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= s->base.vocab)
            return vkd_fail(err, VKD_ERR_RANGE, "token id %d outside the vocabulary (0..%u)", ids[i], s->base.vocab - 1);
    if ((uint64_t)pos + m > s->base.ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "exit draft context of %u tokens exceeds its capacity %u", pos + m,
                        s->base.ctx_len);
    vkd_rec_update(rec, s->ids, 0, ids, (uint64_t)m * 4);
    vkd_result r = vkd_exit_trunk_record(rec, s->e, s->x, s->ids, m, pos, s->reuse ? NULL : s->kc,
                                         s->reuse ? NULL : s->vc);
    if (r) *err = *vkd_rec_error(rec);
    return r;
}

static vkd_result ex_crop(vkd_draft *g, uint32_t len, vkd_error *err) {
    exit_draft *s = g->self;
    (void)err;
    if (len < s->committed) s->committed = len;
    if (len < s->len) s->len = len;
    return VKD_OK;
}

static vkd_result ex_reset(vkd_draft *g, vkd_error *err) {
    exit_draft *s = g->self;
    s->hcount = 0;
    return ex_crop(g, 0, err);
}

static uint32_t ex_len(const vkd_draft *g) { return ((const exit_draft *)g->self)->committed; }

static vkd_result ex_context(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, uint32_t n,
                             const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    exit_draft *s = g->self;
    (void)features;
    (void)row0;
    if (pos == 0) s->len = 0;
    if (pos > s->committed)
        return vkd_fail(err, VKD_ERR_INVALID, "exit draft behind the target (%u < %u)", s->committed, pos);
    if (s->reuse) {
        if ((uint64_t)pos + n > s->t->len)
            return vkd_fail(err, VKD_ERR_INVALID,
                            "self-speculative exit draft: context up to %u, the target holds %u positions", pos + n,
                            s->t->len);
        s->committed = pos + n;
        return VKD_OK;
    }
    if ((uint64_t)pos + n > g->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "exit draft context of %u tokens exceeds its capacity %u", pos + n, g->ctx_len);
    /* keep what the cache already holds of ids (accepted proposals) */
    uint32_t keep = pos;
    while (keep < s->len && keep < pos + n && s->fed[keep] == ids[keep - pos]) keep++;
    s->len = keep;
    while (s->len < pos + n) {
        uint32_t k = pos + n - s->len < s->rows ? pos + n - s->len : s->rows;
        vkd_result r = trunk(s, rec, ids + (s->len - pos), k, s->len, err);
        if (r) return r;
        memcpy(s->fed + s->len, ids + (s->len - pos), k * sizeof *ids);
        s->len += k;
    }
    s->committed = pos + n;
    return VKD_OK;
}

static vkd_result ex_block(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, vkd_error *err) {
    exit_draft *s = g->self;
    if (s->committed != pos)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, the block starts at %u", s->committed, pos);
    if (s->reuse && pos != s->t->len)
        return vkd_fail(err, VKD_ERR_INVALID,
                        "self-speculative exit draft: a block at %u would overwrite the target's cache (it holds %u)", pos,
                        s->t->len);
    uint32_t k = 0;
    while (k < g->block && ids[k] >= 0) k++;
    if (k == 0) return vkd_fail(err, VKD_ERR_INVALID, "draft block: the first id is unknown");
    s->len = pos;
    s->hcount = 0;
    vkd_result r = trunk(s, rec, ids, k, pos, err);
    if (!r) r = vkd_exit_head_record(rec, s->e, s->logits, 0, s->x, s->xn, k);
    if (r) {
        if (!err->msg[0]) *err = *vkd_rec_error(rec);
        return r;
    }
    if (!s->reuse) {
        memcpy(s->fed + pos, ids, k * sizeof *ids);
        s->len = pos + k;
    }
    return VKD_OK;
}

static vkd_result ex_propose(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos, uint32_t n,
                             vkd_draft_draw_fn draw, void *user, int32_t *tokens, uint32_t *count,
                             vkd_error *err) {
    exit_draft *s = g->self;
    *count = 0;
    vkd_result r = s->committed != pos
                       ? vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, expected %u", s->committed, pos)
                   : n > g->gamma ? vkd_fail(err, VKD_ERR_INVALID, "draft: %u proposals asked, gamma is %u", n, g->gamma)
                   : s->reuse && pos != s->t->len
                       ? vkd_fail(err, VKD_ERR_INVALID, "self-speculative exit draft at %u, the target at %u", pos, s->t->len)
                       : VKD_OK;
    if (s->len > pos) s->len = pos;
    s->hcount = 0;
    s->hpos = pos;
    if (r || n == 0) return vkd_draft_submit(rec, r, err);
    int32_t cur = last;
    vkd_sample_params greedy = {0};
    const uint64_t V = g->vocab;
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0) vkd_rec_begin(rec);
        if (!r) r = trunk(s, rec, &cur, 1, pos + i, err);
        if (!r && !s->reuse) {
            s->fed[pos + i] = cur;
            s->len = pos + i + 1;
        }
        if (!r && s->reuse) vkd_op_copy2d(rec, s->hsave, i, 0, s->x, 0, 0, 1, s->e->hidden);
        if (!r) r = vkd_exit_head_record(rec, s->e, s->logits, i, s->x, s->xn, 1);
        if (!r) {
            r = draw ? vkd_rec_read(rec, s->logits, i * V * 4, s->host_logits, V * 4)
                     : vkd_sample_record(rec, s->tok, s->logits, i, 1, (uint32_t)V, &greedy, 0);
            if (!r && !draw) r = vkd_rec_read(rec, s->tok, 0, &tokens[i], 4);
            if (r) *err = *vkd_rec_error(rec);
        }
        if ((r = vkd_draft_submit(rec, r, err))) return r;
        if (s->reuse) {
            s->hids[i] = cur;
            s->hcount = i + 1;
        }
        if (!draw && (r = vkd_check_tokens(&tokens[i], 1, i, "exit draft", err))) return r;
        bool stop = false;
        if (draw && ((r = vkd_check_logits(s->host_logits, (uint32_t)V, i, "exit draft", err)) ||
                     (r = draw(user, i, s->host_logits, &tokens[i], &stop, err))))
            return r;
        cur = tokens[i];
        *count = i + 1;
        if (stop) break;
    }
    return VKD_OK;
}

/* The target's verification forward over ids[0..m) at t->len (as vkd_target_step_record with
 * logits rows [lrow0, lrow0 + lrows) into t->logits), reusing the drafted rows. */
static vkd_result ex_verify(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t m, uint32_t lrow0,
                            uint32_t lrows, vkd_error *err) {
    exit_draft *s = g->self;
    vkd_target *t = s->t;
    uint32_t pos = t->len, H = s->e->hidden;
    if (m == 0 || m > s->rows || m > t->max_rows || (uint64_t)pos + m > t->ctx_len ||
        (lrows && (lrows > t->logit_rows || lrow0 + lrows > m)))
        return vkd_fail(err, VKD_ERR_INVALID, "self-speculative verification of %u rows at %u (logits [%u, +%u))", m,
                        pos, lrow0, lrows);
    uint32_t k = 0;
    if (s->hpos == pos)
        while (k < s->hcount && k < m && s->hids[k] == ids[k]) k++;
    vkd_result r = VKD_OK;
    if (k < m) {
        r = trunk(s, rec, ids + k, m - k, pos + k, err);
        if (!r) r = vkd_op_copy2d(rec, s->hsave, k, 0, s->x, 0, 0, m - k, H);
    }
    if (!r) r = vkd_op_copy2d(rec, s->x, 0, 0, s->hsave, 0, 0, m, H);
    if (!r) r = vkd_exit_layers_record(rec, t, s->x, m, pos, s->e->layer + 1, t->n_layers, NULL, NULL);
    if (!r && lrows) {
        vkd_op_rmsnorm(rec, t->a, s->x, t->norm, m, t->hidden, (float)t->cfg.rms_norm_eps);
        r = vkd_op_matmul(rec, t->logits, 0, t->a, lrow0, t->lm_head, lrows, false);
    }
    if (r) {
        if (vkd_rec_error(rec)->code) *err = *vkd_rec_error(rec);
        return r;
    }
    s->hcount = 0;
    t->len += m;
    return VKD_OK;
}

static void ex_free(vkd_draft *g) {
    exit_draft *s = g->self;
    if (s->kc)
        for (uint32_t l = 0; l <= s->e->layer; l++) {
            vkd_tensor_destroy(s->kc[l]);
            vkd_tensor_destroy(s->vc[l]);
        }
    free(s->kc);
    free(s->vc);
    vkd_tensor *ts[] = {s->ids, s->x, s->xn, s->logits, s->tok, s->hsave};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vkd_tensor_destroy(ts[i]);
    free(s->fed);
    free(s->hids);
    free(s->host_logits);
    free(s);
}

static const vkd_draft_ops plain_ops = {.reset = ex_reset, .crop = ex_crop, .len = ex_len, .context = ex_context,
                                        .block = ex_block, .propose = ex_propose, .free = ex_free};
static const vkd_draft_ops reuse_ops = {.reset = ex_reset, .crop = ex_crop, .len = ex_len, .context = ex_context,
                                        .block = ex_block, .propose = ex_propose, .free = ex_free,
                                        .verify = ex_verify};

vkd_result vkd_draft_exit(vkd_exit *e, uint32_t gamma, bool reuse, vkd_draft **out, vkd_error *err) {
    *out = NULL;
    vkd_target *t = e->t;
    if (gamma < 1 || gamma > 63) return vkd_fail(err, VKD_ERR_INVALID, "gamma %u: expected 1..63", gamma);
    if (reuse && e->block)
        return vkd_fail(err, VKD_ERR_INVALID, "the exit head at layer %u was trained with its own block "
                        "(--ft-last-block): self-speculative reuse of the target's K/V needs the target's block; "
                        "use the plain variant", e->layer);
    uint64_t lrows = vkd_ctx_max_binding(t->ctx) / ((uint64_t)e->vocab * 4);
    if (gamma + 1 > t->max_rows || gamma + 1 > lrows)
        return vkd_fail(err, VKD_ERR_INVALID, "gamma %u: the exit draft computes at most %llu rows per call", gamma,
                        (unsigned long long)(t->max_rows < lrows ? t->max_rows : lrows) - 1);
    exit_draft *s = calloc(1, sizeof *s);
    if (!s) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    s->e = e;
    s->t = t;
    s->reuse = reuse;
    s->rows = t->max_rows;
    uint32_t B = gamma + 1, H = e->hidden, KV = t->n_kv * t->head_dim;
    s->fed = calloc(t->ctx_len + 1, sizeof *s->fed);
    s->hids = calloc(B, sizeof *s->hids);
    s->host_logits = malloc((size_t)e->vocab * sizeof(float));
    s->kc = calloc(t->n_layers, sizeof *s->kc);
    s->vc = calloc(t->n_layers, sizeof *s->vc);
    vkd_result r = s->fed && s->hids && s->host_logits && s->kc && s->vc
                       ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, s->rows, "exit_ids", &s->ids, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, s->rows, H, "exit_x", &s->x, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, B, H, "exit_xn", &s->xn, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, B, H, "exit_hsave", &s->hsave, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, B, e->vocab, "exit_logits", &s->logits, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, 4, "exit_token", &s->tok, err);
    for (uint32_t l = 0; !reuse && !r && l <= e->layer; l++) {
        r = vkd_tensor_create_kv(t->ctx, VKD_DTYPE_F32, t->ctx_len, KV, "exit_k_cache", &s->kc[l], err);
        if (!r) r = vkd_tensor_create_kv(t->ctx, VKD_DTYPE_F32, t->ctx_len, KV, "exit_v_cache", &s->vc[l], err);
        if (!r && s->kc[l]->nchunks != 1)
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "exit draft KV cache of %u tokens exceeds the storage binding limit",
                         t->ctx_len);
    }
    if (r) {
        ex_free(&s->base);
        return r;
    }
    s->base = (vkd_draft){.name = reuse ? "exit-reuse" : "exit", .gamma = gamma, .block = B, .vocab = e->vocab,
                          .mask_id = -1, .target = t, .ctx_len = t->ctx_len, .logits = s->logits,
                          .ops = reuse ? &reuse_ops : &plain_ops, .self = s};
    *out = &s->base;
    return VKD_OK;
}
