/* proposers.c: the DFlash draft and an autoregressive draft model as proposers. */
#include "vkd_spec.h"

#include <stdlib.h>
#include <string.h>

/* ---- DFlash ------------------------------------------------------------------------- */

typedef struct dflash_prop {
    vkd_proposer base;
    vkd_dflash *d;
    vkd_tensor *argmax;
    const vkd_tensor *pending;  /* context rows observed but not yet sent to the draft */
    uint32_t pending_row0, pending_n, pending_pos;
    float *logits;              /* (B-1) x V host copy when sampling */
} dflash_prop;

static vkd_result dflash_flush(dflash_prop *s, vkd_rec *rec, bool submit, vkd_error *err) {
    if (!s->pending_n) return VKD_OK;
    if (s->d->len != s->pending_pos)
        return vkd_fail(err, VKD_ERR_INVALID, "draft context at %u, expected %u", s->d->len, s->pending_pos);
    if (submit) vkd_rec_begin(rec);
    vkd_result r = vkd_dflash_context_record(s->d, rec, s->pending, s->pending_row0, s->pending_n, err);
    if (submit) {
        vkd_result r2 = vkd_rec_submit(rec);
        if (!r && r2) {
            *err = *vkd_rec_error(rec);
            r = r2;
        }
    }
    s->pending_n = 0;
    return r;
}

static vkd_result dflash_observe(vkd_proposer *p, vkd_rec *rec, const int32_t *ids, uint32_t pos,
                                 uint32_t n, const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    dflash_prop *s = p->self;
    (void)ids;
    if (pos == 0) { /* a new sequence: forget the previous one's state */
        s->pending_n = 0;
        s->d->len = 0;
    }
    vkd_result r = dflash_flush(s, rec, true, err); /* its rows are about to be overwritten */
    if (r) return r;
    if (pos < s->d->len && (r = vkd_dflash_crop(s->d, pos, err))) return r;
    s->pending = features;
    s->pending_row0 = row0;
    s->pending_n = n;
    s->pending_pos = pos;
    return VKD_OK;
}

static vkd_result dflash_propose(vkd_proposer *p, vkd_rec *rec, int32_t last, uint32_t pos,
                                 const vkd_sample_params *sp, int32_t *tokens, float *q,
                                 vkd_error *err) {
    dflash_prop *s = p->self;
    vkd_dflash *d = s->d;
    uint32_t B = d->block, V = d->vocab;
    int32_t block[256];
    block[0] = last;
    for (uint32_t i = 1; i < B; i++) block[i] = d->mask_id;
    vkd_rec_begin(rec);
    vkd_result r = dflash_flush(s, rec, false, err);
    if (!r && d->len != pos)
        r = vkd_fail(err, VKD_ERR_INVALID, "draft context holds %u positions, the block starts at %u", d->len, pos);
    if (!r) r = vkd_dflash_block_record(d, rec, block, err);
    if (!r) {
        if (q) {
            vkd_rec_read(rec, d->logits, 0, s->logits, (uint64_t)(B - 1) * V * 4);
        } else {
            vkd_op_argmax(rec, s->argmax, d->logits, 0, B - 1, V);
            vkd_rec_read(rec, s->argmax, 0, tokens, (uint64_t)(B - 1) * 4);
        }
    }
    vkd_result r2 = vkd_rec_submit(rec);
    if (r) return r;
    if (r2) {
        *err = *vkd_rec_error(rec);
        return r2;
    }
    if (q)
        for (uint32_t i = 0; i < B - 1; i++) {
            float *qi = q + (size_t)i * V;
            vkd_warp_probs(s->logits + (size_t)i * V, V, sp, qi);
            tokens[i] = vkd_draw(qi, V, vkd_uniform(sp->seed, 0, pos + 1 + i));
        }
    return VKD_OK;
}

static void dflash_free(vkd_proposer *p) {
    dflash_prop *s = p->self;
    vkd_tensor_destroy(s->argmax);
    free(s->logits);
    free(s);
}

vkd_result vkd_proposer_dflash(vkd_dflash *d, vkd_proposer **out, vkd_error *err) {
    dflash_prop *s = calloc(1, sizeof *s);
    if (!s) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    s->d = d;
    s->logits = malloc((size_t)(d->block - 1) * d->vocab * sizeof(float));
    vkd_result r = s->logits ? vkd_tensor_create_2d(d->ctx, VKD_DTYPE_I32, 1, d->block, "draft_argmax", &s->argmax, err)
                             : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (r) {
        free(s->logits);
        free(s);
        return r;
    }
    s->base = (vkd_proposer){
        .name = "dflash", .gamma = d->block - 1, .observe = dflash_observe,
        .propose = dflash_propose, .free = dflash_free, .tap_layers = d->tap_layers,
        .ntaps = d->ntaps, .self = s,
    };
    *out = &s->base;
    return VKD_OK;
}

/* ---- autoregressive draft model -------------------------------------------------------- */

typedef struct ar_prop {
    vkd_proposer base;
    vkd_target *m;
    int32_t *fed;               /* ids the draft's KV cache holds, by position */
    vkd_tensor *tok;
    float *logits;
} ar_prop;

/* Feeds ids at positions m->len.. (no logits). */
static vkd_result ar_feed(ar_prop *s, vkd_rec *rec, const int32_t *ids, uint32_t n, vkd_error *err) {
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < s->m->max_rows ? n - done : s->m->max_rows;
        memcpy(s->fed + s->m->len, ids + done, k * sizeof *ids);
        vkd_target_step st = {.ids = ids + done, .m = k};
        vkd_rec_begin(rec);
        vkd_result r = vkd_target_step_record(s->m, rec, &st, err);
        vkd_result r2 = vkd_rec_submit(rec);
        if (r) return r;
        if (r2) {
            *err = *vkd_rec_error(rec);
            return r2;
        }
        done += k;
    }
    return VKD_OK;
}

static vkd_result ar_observe(vkd_proposer *p, vkd_rec *rec, const int32_t *ids, uint32_t pos,
                             uint32_t n, const vkd_tensor *features, uint32_t row0, vkd_error *err) {
    ar_prop *s = p->self;
    (void)features;
    (void)row0;
    if (pos == 0) s->m->len = 0;
    /* keep what the draft already holds of ids (its own accepted proposals) */
    uint32_t keep = pos;
    if (keep > s->m->len) return vkd_fail(err, VKD_ERR_INVALID, "draft model behind the target");
    while (keep < s->m->len && keep < pos + n && s->fed[keep] == ids[keep - pos]) keep++;
    vkd_result r = vkd_target_crop(s->m, keep, err);
    if (r) return r;
    return ar_feed(s, rec, ids + (keep - pos), pos + n - keep, err);
}

static vkd_result ar_propose(vkd_proposer *p, vkd_rec *rec, int32_t last, uint32_t pos,
                             const vkd_sample_params *sp, int32_t *tokens, float *q, vkd_error *err) {
    ar_prop *s = p->self;
    vkd_target *m = s->m;
    if (m->len != pos) return vkd_fail(err, VKD_ERR_INVALID, "draft model at %u, expected %u", m->len, pos);
    int32_t cur = last;
    vkd_sample_params greedy = {0};
    for (uint32_t i = 0; i < p->gamma; i++) {
        s->fed[m->len] = cur;
        vkd_target_step st = {.ids = &cur, .m = 1, .logits_rows = 1};
        vkd_rec_begin(rec);
        vkd_result r = vkd_target_step_record(m, rec, &st, err);
        if (!r) {
            if (q) {
                vkd_rec_read(rec, m->logits, 0, s->logits, (uint64_t)m->vocab * 4);
            } else {
                vkd_op_sample(rec, s->tok, m->logits, 0, 1, m->vocab, &greedy);
                vkd_rec_read(rec, s->tok, 0, &tokens[i], 4);
            }
        }
        vkd_result r2 = vkd_rec_submit(rec);
        if (r) return r;
        if (r2) {
            *err = *vkd_rec_error(rec);
            return r2;
        }
        if (q) {
            float *qi = q + (size_t)i * m->vocab;
            vkd_warp_probs(s->logits, m->vocab, sp, qi);
            tokens[i] = vkd_draw(qi, m->vocab, vkd_uniform(sp->seed, 0, pos + 1 + i));
        }
        cur = tokens[i];
    }
    return VKD_OK;
}

static void ar_free(vkd_proposer *p) {
    ar_prop *s = p->self;
    vkd_tensor_destroy(s->tok);
    free(s->fed);
    free(s->logits);
    free(s);
}

vkd_result vkd_proposer_ar(vkd_target *draft, uint32_t gamma, vkd_proposer **out, vkd_error *err) {
    if (gamma < 1 || gamma > 63) return vkd_fail(err, VKD_ERR_INVALID, "gamma %u: expected 1..63", gamma);
    ar_prop *s = calloc(1, sizeof *s);
    if (!s) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    s->m = draft;
    s->fed = calloc(draft->ctx_len + 1, sizeof *s->fed);
    s->logits = malloc(draft->vocab * sizeof(float));
    vkd_result r = s->fed && s->logits
                       ? vkd_tensor_create_2d(draft->ctx, VKD_DTYPE_I32, 1, 4, "ar_token", &s->tok, err)
                       : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (r) {
        free(s->fed);
        free(s->logits);
        free(s);
        return r;
    }
    s->base = (vkd_proposer){.name = "autoregressive", .gamma = gamma, .observe = ar_observe,
                             .propose = ar_propose, .free = ar_free, .self = s};
    *out = &s->base;
    return VKD_OK;
}
