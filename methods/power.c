/* power.c: power sampling by block-wise Metropolis-Hastings (vkd_power.h).
 *
 * Bookkeeping. cur[0 .. L) is the current sequence (prompt then answer), lp/lq its tokens'
 * alpha*log p and log q by absolute position. A proposal from idx copies cur[0 .. idx) to
 * prop and regenerates prop[idx .. s). The target's KV cache is right for the current
 * sequence below kv_ok (the last token of a sequence is never forwarded until something is
 * generated after it); a proposal crops it to idx - 1 and forwards from there, so after a
 * rejection the cache holds the proposal's rows and kv_ok drops to idx: the next forward
 * recomputes the rows it needs (lazily, in the same step as its own rows). The DFlash draft's
 * context cache follows the same rule (dr_ok). The target's tapped hidden states of the
 * current sequence live in fcur (row = position); a proposal writes its own into fprop and
 * an accepted one is copied over, so q(old) can be recomputed and the draft's context
 * rebuilt after a rejection without another target forward. */
#include "vkd_power.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_generate.h"
#include "vkd_sample.h"

typedef struct ps {
    vkd_target *t;
    vkd_draft *g;                /* draft proposal only */
    vkd_rec *rec;
    const vkd_power_options *o;
    vkd_power_result *res;
    uint32_t V, c, cap, B;
    double alpha;
    vkd_sample_params sq;        /* the proposal's warping (temperature, top-k, top-p) */
    vkd_sample_params sp1;       /* temperature 1, no filtering: log p */
    int32_t *cur, *prop;
    double *lp, *lq, *plp, *plq, *olq;
    uint32_t L;                  /* current length */
    uint32_t kv_ok, dr_ok;
    uint32_t move;
    vkd_tensor *fcur, *fprop;
    float *rows, *drows, *probs;
    double *logq;
    uint32_t p0;                 /* first position of the draft proposal being drawn */
    bool stopped;                /* the draft proposal drew a stop id */
    uint64_t *hashes;            /* the current block's MCMC proposals (distinct count) */
    uint32_t nhash;
} ps;

/* ---- host-side distributions --------------------------------------------------------------- */

/* alpha * log_softmax(row)[tok]: the same arithmetic as log q at temperature 1, so with
 * alpha = 1 and the naive proposal unfiltered, alpha*log p == log q bit for bit. */
static vkd_result alpha_logp(ps *S, const float *row, uint32_t pos, int32_t tok, double *out,
                             vkd_error *err) {
    vkd_result r = vkd_check_logits(row, S->V, pos, "target", err);
    if (!r) r = vkd_sample_logq(row, S->V, &S->sp1, S->logq, NULL, err);
    if (!r) *out = S->alpha * S->logq[tok];
    return r;
}

/* Draws the token at position pos from row (log q into *lq). */
static vkd_result draw(ps *S, const float *row, uint32_t pos, double *lq, int32_t *out, vkd_error *err) {
    vkd_result r = vkd_sample_logq(row, S->V, &S->sq, S->logq, NULL, err);
    if (r) return r;
    for (uint32_t i = 0; i < S->V; i++) S->probs[i] = (float)exp(S->logq[i]);
    double u = vkd_uniform(S->o->seed, VKD_POWER_STREAM_TOKEN, ((uint64_t)S->move << 32) | pos);
    int32_t tok = vkd_draw(S->probs, S->V, u);
    if (tok < 0) { /* every kept probability underflowed in float: the mode */
        tok = 0;
        for (uint32_t i = 1; i < S->V; i++)
            if (S->logq[i] > S->logq[tok]) tok = (int32_t)i;
    }
    *lq = S->logq[tok];
    *out = tok;
    return VKD_OK;
}

static bool is_stop(const ps *S, int32_t id) { return vkd_is_stop(S->o->stop_ids, S->o->nstop, id); }

/* ---- device steps -------------------------------------------------------------------------- */

static vkd_result submit(ps *S, vkd_error *err) {
    vkd_result r = vkd_rec_submit(S->rec);
    if (r) *err = *vkd_rec_error(S->rec);
    return r;
}

/* Forwards seq positions [kv_ok, upto) through the target (cache cropped to kv_ok first):
 * logits of the last lrows of them into S->rows, taps into feats rows at their positions. */
static vkd_result target_forward(ps *S, const int32_t *seq, uint32_t upto, uint32_t lrows,
                                 vkd_tensor *feats, vkd_error *err) {
    vkd_target *t = S->t;
    vkd_result r;
    if (t->len > S->kv_ok && (r = vkd_target_crop(t, S->kv_ok, err))) return r;
    if (t->len != S->kv_ok) return vkd_fail(err, VKD_ERR_INVALID, "power: target cache behind (%u < %u)", t->len, S->kv_ok);
    if (upto < S->kv_ok + lrows) return vkd_fail(err, VKD_ERR_INVALID, "power: %u logit rows of %u", lrows, upto - S->kv_ok);
    uint32_t from = S->kv_ok;
    while (from < upto) {
        uint32_t rest = upto - from, m = rest;
        if (m > t->max_rows) m = rest - lrows < t->max_rows ? rest - lrows : t->max_rows;
        bool last = from + m == upto;
        uint32_t lr = last ? lrows : 0;
        vkd_target_step s = {.ids = seq + from, .m = m, .logits_row0 = lr ? m - lr : 0, .logits_rows = lr};
        if (feats) {
            s.tap_layers = S->g->tap_layers;
            s.ntaps = S->g->ntaps;
            s.features = feats;
            s.feat_row0 = from;
        }
        vkd_rec_begin(S->rec);
        r = vkd_target_step_record(t, S->rec, &s, err);
        if (!r && lr) vkd_rec_read(S->rec, t->logits, 0, S->rows, (uint64_t)lr * S->V * 4);
        vkd_result r2 = submit(S, r ? &(vkd_error){0} : err);
        if (r || r2) return r ? r : r2;
        S->res->target_forwards++;
        S->res->target_rows += m;
        from += m;
    }
    S->kv_ok = upto;
    return VKD_OK;
}

/* Draft context: positions [len, A) of seq, features rows = positions. */
static vkd_result draft_append(ps *S, const int32_t *seq, vkd_tensor *feats, uint32_t A, vkd_error *err) {
    uint32_t len = vkd_draft_len(S->g);
    if (len >= A) return VKD_OK;
    vkd_rec_begin(S->rec);
    vkd_result r = vkd_draft_context(S->g, S->rec, seq + len, len, A - len, feats, len, err);
    return vkd_draft_submit(S->rec, r, err);
}

/* One teacher-forced draft block at start A (context = positions < A) over the ids the draft
 * saw when it proposed seq[A+1 ..]: logits of positions A+1 .. A+B-1 into S->drows. */
static vkd_result draft_block(ps *S, const int32_t *seq, uint32_t A, uint32_t known, vkd_error *err) {
    int32_t block[256];
    vkd_draft_proposal_ids(S->g, seq[A], seq + A + 1, known, block);
    vkd_rec_begin(S->rec);
    vkd_result r = vkd_draft_block(S->g, S->rec, block, A, err);
    if (!r && (r = vkd_rec_read(S->rec, S->g->logits, 0, S->drows, (uint64_t)(S->B - 1) * S->V * 4)))
        *err = *vkd_rec_error(S->rec);
    if ((r = vkd_draft_submit(S->rec, r, err))) return r;
    S->res->draft_calls++;
    return VKD_OK;
}

static vkd_result draft_crop(ps *S, uint32_t len, vkd_error *err) { return vkd_draft_crop(S->g, len, err); }

/* fcur rows [r0, r1) = fprop rows, chunk by chunk (both tensors have the same layout). */
static vkd_result keep_features(ps *S, uint32_t r0, uint32_t r1, vkd_error *err) {
    if (!S->fcur || r1 <= r0) return VKD_OK;
    vkd_rec_begin(S->rec);
    uint64_t rb = S->fcur->row_bytes;
    for (uint64_t r = r0; r < r1;) {
        const vkd_chunk *ch = vkd_tensor_chunk_of_row(S->fcur, r);
        uint64_t end = ch->row0 + ch->rows < r1 ? ch->row0 + ch->rows : r1;
        vkd_rec_copy(S->rec, S->fcur, r * rb, S->fprop, r * rb, (end - r) * rb);
        r = end;
    }
    return submit(S, err);
}

/* ---- proposals: prop[a .. e) (shorter at a stop id); returns its length s ---------------- */

static vkd_result naive_span(ps *S, uint32_t a, uint32_t e, uint32_t *s, vkd_error *err) {
    if (S->kv_ok > a - 1) S->kv_ok = a - 1;
    uint32_t p = a;
    while (p < e) {
        vkd_result r = target_forward(S, S->prop, p, 1, NULL, err);
        if (r) return r;
        int32_t tok;
        if ((r = draw(S, S->rows, p, &S->plq[p], &tok, err)) || (r = alpha_logp(S, S->rows, p, tok, &S->plp[p], err)))
            return r;
        S->prop[p] = tok;
        S->res->tokens_proposed++;
        p++;
        if (is_stop(S, tok)) break;
    }
    *s = p;
    return VKD_OK;
}

/* The draft's sampling hook: the token at S->p0 + i (log q into plq); a stop id ends it. */
static vkd_result draft_draw(void *user, uint32_t i, const float *logits, int32_t *token, bool *stop,
                             vkd_error *err) {
    ps *S = user;
    uint32_t p = S->p0 + i;
    vkd_result r = draw(S, logits, p, &S->plq[p], token, err);
    if (r) return r;
    S->prop[p] = *token;
    *stop = S->stopped = is_stop(S, *token);
    return VKD_OK;
}

/* The draft proposes positions [p0, p0 + B-1) ∩ [p0, e) after prop[p0 - 1] (ending early at
 * a stop id); returns the count. */
static vkd_result draft_propose(ps *S, uint32_t p0, uint32_t e, uint32_t *m, vkd_error *err) {
    uint32_t n = S->B - 1 < e - p0 ? S->B - 1 : e - p0;
    S->p0 = p0;
    S->stopped = false;
    vkd_rec_begin(S->rec);
    vkd_result r = vkd_draft_propose(S->g, S->rec, S->prop[p0 - 1], p0 - 1, n, draft_draw, S, S->prop + p0, m, err);
    if (r) return r;
    S->res->draft_calls++;
    S->res->tokens_proposed += *m;
    return VKD_OK;
}

/* log q of cur[a .. t) under the draft's blocking anchored at a - 1, into olq (the reverse
 * move's proposal probability). The first block's logits: a mask draft's proposal just made
 * the same block (its rows do not depend on the drawn tokens), so they are read back from the
 * draft's logits; a causal draft's rows do, so it runs the block over cur. Leaves the draft
 * context at positions < a - 1. */
static vkd_result draft_rescore(ps *S, uint32_t a, uint32_t t, vkd_error *err) {
    uint32_t A = a - 1, B1 = S->B - 1;
    vkd_result r = S->g->mask_id >= 0
                       ? vkd_tensor_download(S->g->logits, 0, S->drows, (uint64_t)B1 * S->V * 4, err)
                       : draft_block(S, S->cur, A, t - A - 1, err);
    if (r) return r;
    for (;;) {
        for (uint32_t i = 0; i < B1 && A + 1 + i < t; i++) {
            uint32_t p = A + 1 + i;
            if ((r = vkd_check_logits(S->drows + (size_t)i * S->V, S->V, p, "draft", err)) ||
                (r = vkd_sample_logq(S->drows + (size_t)i * S->V, S->V, &S->sq, S->logq, NULL, err)))
                return r;
            S->olq[p] = S->logq[S->cur[p]];
        }
        if (A + 1 + B1 >= t) break;
        A += B1;
        r = draft_append(S, S->cur, S->fcur, A, err);
        if (!r) r = draft_block(S, S->cur, A, t - A - 1, err);
        if (r) return r;
    }
    return draft_crop(S, a - 1, err);
}

static vkd_result draft_span(ps *S, uint32_t a, uint32_t e, uint32_t rescore_t, uint32_t *s,
                             vkd_error *err) {
    uint32_t A = a - 1, m;
    if (S->kv_ok > A) S->kv_ok = A;
    if (S->dr_ok > A) S->dr_ok = A;
    vkd_result r = draft_crop(S, S->dr_ok, err);
    if (!r) r = draft_append(S, S->prop, S->fcur, A, err);
    if (!r) r = draft_propose(S, a, e, &m, err);
    if (r) return r;
    if (rescore_t && (r = draft_rescore(S, a, rescore_t, err))) return r;
    uint32_t p0 = a;
    for (;;) {
        /* rows A .. p0+m-2 give the logits of p0 .. p0+m-1 and the next block's context */
        if ((r = target_forward(S, S->prop, p0 + m - 1, m, S->fprop, err))) return r;
        for (uint32_t i = 0; i < m; i++)
            if ((r = alpha_logp(S, S->rows + (size_t)i * S->V, p0 + i, S->prop[p0 + i], &S->plp[p0 + i], err))) return r;
        p0 += m;
        if (S->stopped || p0 >= e) break;
        A = p0 - 1;
        if ((r = draft_append(S, S->prop, S->fprop, A, err)) || (r = draft_propose(S, p0, e, &m, err))) return r;
    }
    S->dr_ok = vkd_draft_len(S->g);
    *s = p0;
    return VKD_OK;
}

/* ---- the chain ------------------------------------------------------------------------------- */

static double sum(const double *v, uint32_t a, uint32_t b) {
    double s = 0;
    for (uint32_t i = a; i < b; i++) s += v[i];
    return s;
}

/* Proposes from idx to e, decides (always accepting an extension), updates the state. */
static vkd_result move(ps *S, uint32_t block, int32_t step, uint32_t idx, uint32_t e, vkd_error *err) {
    const vkd_power_options *o = S->o;
    uint32_t t = S->L, s, c = S->c;
    bool ext = step < 0;
    memcpy(S->prop, S->cur, idx * sizeof *S->prop);
    vkd_result r = o->proposal == VKD_POWER_DFLASH ? draft_span(S, idx, e, ext ? 0 : t, &s, err)
                                                   : naive_span(S, idx, e, &s, err);
    if (r) return r;
    if (o->proposal != VKD_POWER_DFLASH)
        for (uint32_t p = idx; p < t; p++) S->olq[p] = S->lq[p];
    vkd_power_step info = {.block = block, .step = step, .move = S->move, .c = c, .idx = idx, .t = t, .s = s,
                           .prop = S->prop, .prop_lp = S->plp, .prop_lq = S->plq, .cur = S->cur,
                           .cur_lp = S->lp, .cur_lq = S->olq, .accepted = true};
    if (!ext) {
        double log_r;
        if (o->mh == VKD_POWER_MH_EXACT) {
            log_r = sum(S->plp, idx, s) + sum(S->olq, idx, t) - sum(S->lp, idx, t) - sum(S->plq, idx, s) +
                    (log((double)(t - c)) - log((double)(s - c)));
        } else { /* the reference: old sums over idx .. s-1 (s <= t) */
            log_r = sum(S->plp, idx, s) + sum(S->olq, idx, s) - sum(S->lp, idx, s) - sum(S->plq, idx, s);
        }
        double u = vkd_uniform(o->seed, VKD_POWER_STREAM_ACCEPT, (uint64_t)S->move << 32);
        info.log_r = log_r;
        info.u = u;
        info.accepted = u < exp(log_r); /* NaN: rejected */
        S->res->attempts++;
        S->res->block_attempts[block]++;
        S->res->step_attempts[step]++;
        if (info.accepted) {
            S->res->accepts++;
            S->res->block_accepts[block]++;
            S->res->step_accepts[step]++;
            uint32_t changed = 0, hi = s > t ? s : t;
            for (uint32_t q = idx; q < hi; q++)
                changed += q >= s || q >= t || S->prop[q] != S->cur[q];
            S->res->changes += changed > 0;
            S->res->tokens_changed += changed;
        }
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the proposed answer prop[c .. s) */
        const unsigned char *pb = (const unsigned char *)(S->prop + c);
        for (size_t q = 0; q < (size_t)(s - c) * sizeof *S->prop; q++) h = (h ^ pb[q]) * 0x100000001b3ull;
        bool seen = false;
        for (uint32_t q = 0; q < S->nhash && !seen; q++) seen = S->hashes[q] == h;
        if (!seen) {
            S->hashes[S->nhash++] = h;
            S->res->distinct_proposals++;
        }
    }
    if (o->on_step) o->on_step(o->user, &info);
    S->move++;
    if (info.accepted) {
        memcpy(S->cur + idx, S->prop + idx, (s - idx) * sizeof *S->cur);
        memcpy(S->lp + idx, S->plp + idx, (s - idx) * sizeof *S->lp);
        memcpy(S->lq + idx, S->plq + idx, (s - idx) * sizeof *S->lq);
        S->L = s;
        return keep_features(S, idx - 1, s - 1, err);
    }
    if (S->kv_ok > idx) S->kv_ok = idx;
    if (S->dr_ok > idx) S->dr_ok = idx;
    return VKD_OK;
}

static vkd_result check(const vkd_target *t, const vkd_draft *d, uint32_t n, const vkd_power_options *o,
                        uint32_t N, uint32_t J, vkd_error *err) {
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "power: empty prompt");
    if (!(o->alpha >= 0) || !isfinite(o->alpha) || (o->alpha > 0 && o->alpha < 1e-3f))
        return vkd_fail(err, VKD_ERR_INVALID, "power: alpha %g: expected a value >= 0.001", o->alpha);
    if (!(o->draft_temp >= 0) || !isfinite(o->draft_temp))
        return vkd_fail(err, VKD_ERR_INVALID, "power: draft temperature %g: expected > 0", o->draft_temp);
    if (J > N) return vkd_fail(err, VKD_ERR_INVALID, "power: block_tokens %u exceeds max_new_tokens %u", J, N);
    if ((uint64_t)n + N > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "power: prompt (%u tokens) + max_new_tokens (%u) exceeds the context length %u",
                        n, N, t->ctx_len);
    if (o->proposal == VKD_POWER_DFLASH) {
        if (!d) return vkd_fail(err, VKD_ERR_INVALID, "power: the dflash proposal needs a draft");
        if (d->ntaps && d->target != t) return vkd_fail(err, VKD_ERR_INVALID, "power: the draft belongs to another target");
        if (d->vocab != t->vocab)
            return vkd_fail(err, VKD_ERR_INVALID, "power: draft vocabulary %u differs from the target's %u", d->vocab, t->vocab);
        if (d->block < 2 || d->block > 256 || d->block - 1 > t->logit_rows)
            return vkd_fail(err, VKD_ERR_INVALID, "power: draft block %u: expected 2..%u", d->block,
                            t->logit_rows + 1 < 256 ? t->logit_rows + 1 : 256);
        if ((uint64_t)n + N > d->ctx_len)
            return vkd_fail(err, VKD_ERR_RANGE, "power: prompt + max_new_tokens exceeds the draft's context %u", d->ctx_len);
    } else if (o->proposal != VKD_POWER_NAIVE_TEMP) {
        return vkd_fail(err, VKD_ERR_INVALID, "power: unknown proposal %d", (int)o->proposal);
    }
    if (o->mh != VKD_POWER_MH_REFERENCE && o->mh != VKD_POWER_MH_EXACT)
        return vkd_fail(err, VKD_ERR_INVALID, "power: unknown MH variant %d", (int)o->mh);
    return VKD_OK;
}

vkd_result vkd_power_sample(vkd_target *t, vkd_draft *d, vkd_rec *rec, const int32_t *prompt,
                            uint32_t n, const vkd_power_options *opt, vkd_power_result *res,
                            vkd_error *err) {
    memset(res, 0, sizeof *res);
    double t_start = vkd_now();
    uint32_t N = opt->max_new_tokens ? opt->max_new_tokens : 3072;
    uint32_t J = opt->block_tokens ? opt->block_tokens : 192;
    uint32_t steps = opt->mcmc_steps == VKD_POWER_NO_STEPS ? 0 : opt->mcmc_steps ? opt->mcmc_steps : 10;
    vkd_result r = check(t, d, n, opt, N, J, err);
    if (r) return r;
    bool dfl = opt->proposal == VKD_POWER_DFLASH;
    ps S = {.t = t, .g = dfl ? d : NULL, .rec = rec, .o = opt, .res = res, .V = t->vocab, .c = n, .cap = n + N,
            .B = dfl ? d->block : 2, .alpha = opt->alpha > 0 ? opt->alpha : 4.0};
    S.sp1 = (vkd_sample_params){.temperature = 1.0f};
    S.sq.temperature = dfl ? (opt->draft_temp > 0 ? opt->draft_temp : (float)(1.0 / S.alpha)) : (float)(1.0 / S.alpha);
    S.sq.top_k = opt->top_k;
    S.sq.top_p = opt->top_p;
    uint32_t nblocks = (N + J - 1) / J, V = S.V;
    size_t cap = S.cap;
    S.cur = malloc(cap * sizeof *S.cur);
    S.prop = malloc(cap * sizeof *S.prop);
    double *dbl = malloc(5 * cap * sizeof *dbl);
    S.rows = malloc((size_t)S.B * V * sizeof *S.rows);
    S.drows = malloc((size_t)S.B * V * sizeof *S.drows);
    S.probs = malloc(V * sizeof *S.probs);
    S.logq = malloc(V * sizeof *S.logq);
    res->block_attempts = calloc(nblocks, sizeof(uint32_t));
    res->block_accepts = calloc(nblocks, sizeof(uint32_t));
    res->step_attempts = calloc(steps + 1, sizeof(uint32_t));
    res->step_accepts = calloc(steps + 1, sizeof(uint32_t));
    S.hashes = malloc((steps + 1) * sizeof *S.hashes);
    if (!S.hashes || !S.cur || !S.prop || !dbl || !S.rows || !S.drows || !S.probs || !S.logq || !res->block_attempts ||
        !res->block_accepts || !res->step_attempts || !res->step_accepts) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto out;
    }
    for (size_t i = 0; i < 5 * cap; i++) dbl[i] = 0;
    S.lp = dbl;
    S.lq = dbl + cap;
    S.plp = dbl + 2 * cap;
    S.plq = dbl + 3 * cap;
    S.olq = dbl + 4 * cap;
    if (dfl && d->ntaps) {
        uint64_t w = (uint64_t)d->ntaps * t->hidden;
        if ((r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, cap, w, "power_features", &S.fcur, err)) ||
            (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, cap, w, "power_features_prop", &S.fprop, err)))
            goto out;
    }
    if (dfl && (r = vkd_draft_reset(d, err))) goto out;
    memcpy(S.cur, prompt, n * sizeof *S.cur);
    S.L = n;
    t->len = 0;
    /* the prompt but its last token (the first proposal's anchor) */
    if (n > 1 && (r = target_forward(&S, S.cur, n - 1, 0, S.fcur, err))) goto out;
    res->prefill_s = vkd_now() - t_start;

    for (uint32_t b = 0; b < nblocks; b++) {
        uint32_t e = S.L + J < S.cap ? S.L + J : S.cap;
        res->blocks = b + 1;
        S.nhash = 0;
        if ((r = move(&S, b, -1, S.L, e, err))) goto out;
        for (uint32_t k = 0; k < steps; k++) {
            uint32_t tl = S.L;
            double u = vkd_uniform(opt->seed, VKD_POWER_STREAM_POSITION, (uint64_t)S.move << 32);
            uint32_t idx = n + (uint32_t)floor(u * (double)(tl - n));
            if (idx >= tl) idx = tl - 1;
            uint32_t span_end = opt->mh == VKD_POWER_MH_EXACT ? e : tl;
            if ((r = move(&S, b, (int32_t)k, idx, span_end, err))) goto out;
        }
        uint32_t p = n;
        while (p < S.L && !is_stop(&S, S.cur[p])) p++;
        if (p < S.L) {
            S.L = p + 1;
            res->stopped = true;
            break;
        }
        if (S.L >= S.cap) break;
    }
    res->n = S.L - n;
    res->ids = malloc((res->n ? res->n : 1) * sizeof *res->ids);
    if (!res->ids) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto out;
    }
    memcpy(res->ids, S.cur + n, res->n * sizeof *res->ids);
    res->sum_logp = sum(S.lp, n, S.L) / S.alpha;
    res->total_s = vkd_now() - t_start;
out:
    vkd_tensor_destroy(S.fcur);
    vkd_tensor_destroy(S.fprop);
    free(S.cur);
    free(S.prop);
    free(dbl);
    free(S.rows);
    free(S.drows);
    free(S.probs);
    free(S.logq);
    free(S.hashes);
    if (r) vkd_power_result_free(res);
    return r;
}

void vkd_power_result_free(vkd_power_result *r) {
    free(r->ids);
    free(r->block_attempts);
    free(r->block_accepts);
    free(r->step_attempts);
    free(r->step_accepts);
    memset(r, 0, sizeof *r);
}
