/* draft.c: the DFlash draft and an autoregressive draft model behind vkd_draft (vkd_draft.h). */
#include "vkd_draft.h"
#include "vkd_sample.h"

#include <stdlib.h>
#include <string.h>

vkd_result vkd_draft_submit(vkd_rec *rec, vkd_result r, vkd_error *err) {
    vkd_result s = vkd_rec_submit(rec);
    if (r) return r;
    if (s) *err = *vkd_rec_error(rec);
    return s;
}

void vkd_draft_free(vkd_draft *g) {
    if (g) g->ops->free(g);
}

void vkd_draft_proposal_ids(const vkd_draft *g, int32_t last, const int32_t *tokens, uint32_t n,
                            int32_t *out) {
    out[0] = last;
    for (uint32_t i = 1; i < g->block; i++)
        out[i] = g->mask_id >= 0 ? g->mask_id : i - 1 < n ? tokens[i - 1] : -1;
}

/* ---- DFlash ------------------------------------------------------------------------------ */

typedef struct dflash_draft {
    vkd_draft base;
    vkd_dflash *d;
    vkd_tensor *argmax;
    int32_t *ids;               /* block ids */
    float *logits;              /* (B-1) x V host copy when sampling */
} dflash_draft;

static vkd_result df_crop(vkd_draft *g, uint32_t len, vkd_error *err) {
    vkd_dflash *d = ((dflash_draft *)g->self)->d;
    return len < d->len ? vkd_dflash_crop(d, len, err) : VKD_OK;
}

static vkd_result df_reset(vkd_draft *g, vkd_error *err) { return df_crop(g, 0, err); }

static uint32_t df_len(const vkd_draft *g) { return ((const dflash_draft *)g->self)->d->len; }

static vkd_result df_context(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, uint32_t n,
                             const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    vkd_dflash *d = ((dflash_draft *)g->self)->d;
    (void)ids;
    vkd_result r = df_crop(g, pos, err);
    if (r) return r;
    if (pos != d->len)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, new rows start at %u", d->len, pos);
    if (n && !features) return vkd_fail(err, VKD_ERR_INVALID, "the DFlash draft's context needs features");
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < d->max_ctx_rows ? n - done : d->max_ctx_rows;
        if ((r = vkd_dflash_context_record(d, rec, features, row0 + done, k, err))) return r;
        done += k;
    }
    return VKD_OK;
}

static vkd_result df_block(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, vkd_error *err) {
    vkd_dflash *d = ((dflash_draft *)g->self)->d;
    if (d->len != pos)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, the block starts at %u", d->len, pos);
    return vkd_dflash_block_record(d, rec, ids, err);
}

static vkd_result df_propose(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos, uint32_t n,
                             vkd_draft_draw_fn draw, void *user, int32_t *tokens, uint32_t *count,
                             vkd_error *err) {
    dflash_draft *s = g->self;
    vkd_dflash *d = s->d;
    uint32_t B = d->block, V = d->vocab;
    *count = 0;
    vkd_result r = n > B - 1 ? vkd_fail(err, VKD_ERR_INVALID, "draft: %u proposals asked, block gives %u", n, B - 1)
                             : VKD_OK;
    vkd_draft_proposal_ids(g, last, NULL, 0, s->ids);
    if (!r && d->len != pos)
        r = vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, the block starts at %u", d->len, pos);
    if (!r) {
        /* sampling reads the logits; greedy needs only their argmax: the fused LM head + argmax
         * (no logits written on a texel-block head) */
        if (draw) {
            if (!(r = vkd_dflash_block_record(d, rec, s->ids, err)))
                r = vkd_rec_read(rec, d->logits, 0, s->logits, (uint64_t)(B - 1) * V * 4);
        } else {
            if (!(r = vkd_dflash_block_argmax_record(d, rec, s->ids, s->argmax, err)))
                r = vkd_rec_read(rec, s->argmax, 0, s->ids, (uint64_t)(B - 1) * 4);
        }
        if (r && vkd_rec_error(rec)->code) *err = *vkd_rec_error(rec);
    }
    if ((r = vkd_draft_submit(rec, r, err))) return r;
    if (!draw && (r = vkd_check_tokens(s->ids, n, 0, "draft", err))) return r;
    for (uint32_t i = 0; i < n; i++) {
        bool stop = false;
        tokens[i] = s->ids[i];
        if (draw && ((r = vkd_check_logits(s->logits + (size_t)i * V, V, i, "draft", err)) ||
                     (r = draw(user, i, s->logits + (size_t)i * V, &tokens[i], &stop, err))))
            return r;
        *count = i + 1;
        if (stop) break;
    }
    return VKD_OK;
}

static void df_free(vkd_draft *g) {
    dflash_draft *s = g->self;
    vkd_tensor_destroy(s->argmax);
    free(s->ids);
    free(s->logits);
    free(s);
}

static const vkd_draft_ops dflash_ops = {.reset = df_reset, .crop = df_crop, .len = df_len,
                                         .context = df_context, .block = df_block,
                                         .propose = df_propose, .free = df_free};

vkd_result vkd_draft_dflash(vkd_dflash *d, vkd_draft **out, vkd_error *err) {
    *out = NULL;
    dflash_draft *s = calloc(1, sizeof *s);
    if (!s) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    s->d = d;
    s->ids = malloc(d->block * sizeof *s->ids);
    s->logits = malloc((size_t)(d->block - 1) * d->vocab * sizeof(float));
    vkd_result r = s->ids && s->logits
                       ? vkd_tensor_create_2d(d->ctx, VKD_DTYPE_I32, 1, d->block, "draft_argmax", &s->argmax, err)
                       : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (r) {
        df_free(&s->base);
        return r;
    }
    s->base = (vkd_draft){.name = "dflash", .gamma = d->block - 1, .block = d->block, .vocab = d->vocab,
                          .mask_id = d->mask_id, .target = d->target, .tap_layers = d->tap_layers,
                          .ntaps = d->ntaps, .ctx_len = d->ctx_len, .logits = d->logits,
                          .ops = &dflash_ops, .self = s};
    *out = &s->base;
    return VKD_OK;
}

/* ---- autoregressive draft model ------------------------------------------------------------ */

typedef struct ar_draft {
    vkd_draft base;
    vkd_target *m;
    uint32_t committed;         /* context positions (m->len may hold proposals past it) */
    int32_t *fed;               /* ids the model's KV cache holds, by position */
    vkd_tensor *tok;
    float *logits;              /* one row, host */
} ar_draft;

static vkd_result ar_crop(vkd_draft *g, uint32_t len, vkd_error *err) {
    ar_draft *s = g->self;
    if (len < s->committed) s->committed = len;
    return len < s->m->len ? vkd_target_crop(s->m, len, err) : VKD_OK;
}

static vkd_result ar_reset(vkd_draft *g, vkd_error *err) { return ar_crop(g, 0, err); }

static uint32_t ar_len(const vkd_draft *g) { return ((const ar_draft *)g->self)->committed; }

/* Records steps feeding ids at positions m->len.. (no logits). */
static vkd_result ar_feed(ar_draft *s, vkd_rec *rec, const int32_t *ids, uint32_t n, vkd_error *err) {
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < s->m->max_rows ? n - done : s->m->max_rows;
        memcpy(s->fed + s->m->len, ids + done, k * sizeof *ids);
        vkd_target_step st = {.ids = ids + done, .m = k};
        vkd_result r = vkd_target_step_record(s->m, rec, &st, err);
        if (r) return r;
        done += k;
    }
    return VKD_OK;
}

static vkd_result ar_context(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, uint32_t n,
                             const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    ar_draft *s = g->self;
    (void)features;
    (void)row0;
    if (pos == 0) s->m->len = 0; /* a new sequence: nothing of the previous one is kept */
    if (pos > s->committed) return vkd_fail(err, VKD_ERR_INVALID, "draft model behind the target (%u < %u)", s->committed, pos);
    if ((uint64_t)pos + n > s->m->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "draft context of %u tokens exceeds its capacity %u", pos + n, s->m->ctx_len);
    /* keep what the model already holds of ids (its own accepted proposals) */
    uint32_t keep = pos;
    while (keep < s->m->len && keep < pos + n && s->fed[keep] == ids[keep - pos]) keep++;
    vkd_result r = vkd_target_crop(s->m, keep < s->m->len ? keep : s->m->len, err);
    if (!r) r = ar_feed(s, rec, ids + (keep - pos), pos + n - keep, err);
    if (!r) s->committed = pos + n;
    return r;
}

static vkd_result ar_block(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, vkd_error *err) {
    ar_draft *s = g->self;
    vkd_target *m = s->m;
    if (s->committed != pos)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, the block starts at %u", s->committed, pos);
    uint32_t k = 0;
    while (k < g->block && ids[k] >= 0) k++;
    if (k == 0) return vkd_fail(err, VKD_ERR_INVALID, "draft block: the first id is unknown");
    vkd_result r = vkd_target_crop(m, pos < m->len ? pos : m->len, err);
    if (r) return r;
    if (m->len != pos) return vkd_fail(err, VKD_ERR_INVALID, "draft model at %u, expected %u", m->len, pos);
    vkd_target_step st = {.ids = ids, .m = k, .logits_rows = k};
    memcpy(s->fed + pos, ids, k * sizeof *ids);
    return vkd_target_step_record(m, rec, &st, err);
}

static vkd_result ar_propose(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos, uint32_t n,
                             vkd_draft_draw_fn draw, void *user, int32_t *tokens, uint32_t *count,
                             vkd_error *err) {
    ar_draft *s = g->self;
    vkd_target *m = s->m;
    *count = 0;
    vkd_result r = s->committed != pos
                       ? vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, expected %u", s->committed, pos)
                       : n > g->gamma ? vkd_fail(err, VKD_ERR_INVALID, "draft: %u proposals asked, gamma is %u", n, g->gamma)
                                      : VKD_OK;
    if (!r) r = vkd_target_crop(m, pos < m->len ? pos : m->len, err);
    if (!r && m->len != pos) r = vkd_fail(err, VKD_ERR_INVALID, "draft model at %u, expected %u", m->len, pos);
    if (n == 0) return vkd_draft_submit(rec, r, err);
    int32_t cur = last;
    vkd_sample_params greedy = {0};
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0) vkd_rec_begin(rec);
        s->fed[m->len] = cur;
        vkd_target_step st = {.ids = &cur, .m = 1, .logits_rows = 1};
        if (!r) r = vkd_target_step_record(m, rec, &st, err);
        if (!r) {
            vkd_result ro = draw ? vkd_rec_read(rec, m->logits, 0, s->logits, (uint64_t)m->vocab * 4)
                                 : vkd_sample_record(rec, s->tok, m->logits, 0, 1, m->vocab, &greedy, 0);
            if (!ro && !draw) ro = vkd_rec_read(rec, s->tok, 0, &tokens[i], 4);
            if (ro) r = ro, *err = *vkd_rec_error(rec);
        }
        if ((r = vkd_draft_submit(rec, r, err))) return r;
        if (!draw && (r = vkd_check_tokens(&tokens[i], 1, i, "draft", err))) return r;
        bool stop = false;
        if (draw && ((r = vkd_check_logits(s->logits, m->vocab, i, "draft", err)) ||
                     (r = draw(user, i, s->logits, &tokens[i], &stop, err))))
            return r;
        cur = tokens[i];
        *count = i + 1;
        if (stop) break;
    }
    return VKD_OK;
}

static void ar_free(vkd_draft *g) {
    ar_draft *s = g->self;
    vkd_tensor_destroy(s->tok);
    free(s->fed);
    free(s->logits);
    free(s);
}

static const vkd_draft_ops ar_ops = {.reset = ar_reset, .crop = ar_crop, .len = ar_len, .context = ar_context,
                                     .block = ar_block, .propose = ar_propose, .free = ar_free};

vkd_result vkd_draft_ar(vkd_target *m, uint32_t gamma, vkd_draft **out, vkd_error *err) {
    *out = NULL;
    if (gamma < 1 || gamma > 63) return vkd_fail(err, VKD_ERR_INVALID, "gamma %u: expected 1..63", gamma);
    if (gamma + 1 > m->logit_rows || gamma + 1 > m->max_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "gamma %u: the draft model computes at most %u logit rows", gamma,
                        m->logit_rows < m->max_rows ? m->logit_rows : m->max_rows);
    ar_draft *s = calloc(1, sizeof *s);
    if (!s) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    s->m = m;
    s->fed = calloc(m->ctx_len + 1, sizeof *s->fed);
    s->logits = malloc(m->vocab * sizeof(float));
    vkd_result r = s->fed && s->logits ? vkd_tensor_create_2d(m->ctx, VKD_DTYPE_I32, 1, 4, "ar_token", &s->tok, err)
                                       : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (r) {
        ar_free(&s->base);
        return r;
    }
    s->base = (vkd_draft){.name = "autoregressive", .gamma = gamma, .block = gamma + 1, .vocab = m->vocab,
                          .mask_id = -1, .ctx_len = m->ctx_len, .logits = m->logits, .ops = &ar_ops, .self = s};
    *out = &s->base;
    return VKD_OK;
}
