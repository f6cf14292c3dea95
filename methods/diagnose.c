/* diagnose.c: the teacher-forced passes of the deep-readout diagnostic (vkd_diagnose.h). */
#include "vkd_diagnose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_generate.h"
#include "vkd_sample.h"

struct vkd_diagnose {
    vkd_target *t;
    vkd_draft *g;
    vkd_tensor *feats, *gids, *stats;
    float st[4][VKD_DIAGNOSE_MAX_BLOCK][3]; /* target, gold, mask, random: logit, lse, rank */
    int32_t block[VKD_DIAGNOSE_MAX_BLOCK];
};

void vkd_diagnose_free(vkd_diagnose *dg) {
    if (!dg) return;
    vkd_tensor_destroy(dg->feats);
    vkd_tensor_destroy(dg->gids);
    vkd_tensor_destroy(dg->stats);
    free(dg);
}

vkd_result vkd_diagnose_create(vkd_target *t, vkd_draft *g, vkd_diagnose **out, vkd_error *err) {
    *out = NULL;
    if (g->block > VKD_DIAGNOSE_MAX_BLOCK || g->block > t->logit_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "diagnose: block size %u is larger than %u", g->block,
                        t->logit_rows < VKD_DIAGNOSE_MAX_BLOCK ? t->logit_rows : VKD_DIAGNOSE_MAX_BLOCK);
    if (g->vocab != t->vocab)
        return vkd_fail(err, VKD_ERR_INVALID, "diagnose: draft vocabulary %u differs from the target's %u", g->vocab,
                        t->vocab);
    vkd_diagnose *dg = calloc(1, sizeof *dg);
    if (!dg) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    dg->t = t;
    dg->g = g;
    vkd_result r = vkd_tf_features_create(t, g, &dg->feats, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, VKD_DIAGNOSE_MAX_BLOCK, "diag_gold", &dg->gids, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, VKD_DIAGNOSE_MAX_BLOCK, 3, "diag_stats", &dg->stats, err);
    if (r) {
        vkd_diagnose_free(dg);
        return r;
    }
    *out = dg;
    return VKD_OK;
}

static double prob(const float s[3]) { return exp((double)s[0] - (double)s[1]); }

/* Records the draft's block call of a mode at s (r rows, c compared) and the read of its stats. */
static vkd_result draft_mode(vkd_diagnose *dg, vkd_rec *rec, vkd_tf_mode md, const int32_t *seq, uint32_t s,
                             uint32_t r, uint32_t c, vkd_error *err) {
    vkd_draft *g = dg->g;
    vkd_tf_draft_block_ids(g, md, seq, s, r, dg->block);
    vkd_result res = vkd_draft_block(g, rec, dg->block, s, err);
    if (res || !c) return res;
    if ((res = vkd_op_token_stats(rec, dg->stats, g->logits, 0, dg->gids, c, g->vocab)) ||
        (res = vkd_rec_read(rec, dg->stats, 0, dg->st[1 + md], (uint64_t)c * 12)))
        *err = *vkd_rec_error(rec);
    return res;
}

/* Random mode: the draft again over norm-matched noise of the host features. */
static vkd_result random_pass(vkd_diagnose *dg, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P,
                              const float *host, uint64_t seed, uint32_t key, vkd_diagnose_token *out,
                              vkd_error *err) {
    vkd_draft *g = dg->g;
    uint32_t B = g->block, cols = g->ntaps * dg->t->hidden, chunk = vkd_tf_chunk(dg->t);
    uint32_t A = n - P, nblocks = (A + B - 1) / B;
    float *noise = malloc(((size_t)(chunk > B ? chunk : B) * cols + 1) * sizeof *noise);
    if (!noise) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory (noise rows)");
    vkd_result r = vkd_draft_reset(g, err);
    for (uint32_t done = 0; !r && done < P;) {
        uint32_t mm = P - done < chunk ? P - done : chunk;
        vkd_tf_noise_rows(host + (size_t)done * cols, noise, mm, cols, seed, key, done);
        if (cols) r = vkd_tensor_upload(dg->feats, 0, noise, (uint64_t)mm * cols * 4, err);
        if (r) break;
        vkd_rec_begin(rec);
        r = vkd_draft_submit(rec, vkd_draft_context(g, rec, seq + done, done, mm, dg->feats, 0, err), err);
        done += mm;
    }
    for (uint32_t k = 0, at = 0; !r && k < nblocks; k++) {
        uint32_t s = P + k * B, rr = n - s < B ? n - s : B, c = rr - 1;
        if (k > 0) {
            vkd_tf_noise_rows(host + (size_t)(s - B) * cols, noise, B, cols, seed, key, s - B);
            if (cols && (r = vkd_tensor_upload(dg->feats, 0, noise, (uint64_t)B * cols * 4, err))) break;
        }
        vkd_rec_begin(rec);
        if (c && (r = vkd_rec_update(rec, dg->gids, 0, seq + s + 1, (uint64_t)c * 4))) *err = *vkd_rec_error(rec);
        if (!r && k > 0) r = vkd_draft_context(g, rec, seq + s - B, s - B, B, dg->feats, 0, err);
        if (!r) r = draft_mode(dg, rec, VKD_TF_RANDOM, seq, s, rr, c, err);
        if ((r = vkd_draft_submit(rec, r, err))) break;
        if ((r = vkd_check_stats(dg->st[3][0], c, 3, 3, s - P + 1, "draft", err))) break;
        for (uint32_t i = 0; i < c; i++) {
            out[at + i].p_d[2] = prob(dg->st[3][i]);
            out[at + i].rank_d[2] = dg->st[3][i][2];
        }
        at += c;
    }
    free(noise);
    return r;
}

vkd_result vkd_diagnose_run(vkd_diagnose *dg, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P,
                            const bool modes[3], uint64_t seed, uint32_t key, vkd_diagnose_token **tokens,
                            uint32_t *ntokens, vkd_diagnose_times *times, vkd_error *err) {
    vkd_draft *g = dg->g;
    vkd_target *t = dg->t;
    uint32_t B = g->block, cols = g->ntaps * t->hidden;
    *tokens = NULL;
    *ntokens = 0;
    if (P == 0 || P >= n) return vkd_fail(err, VKD_ERR_INVALID, "diagnose: prompt of %u tokens in a sequence of %u", P, n);
    uint32_t A = n - P, nblocks = (A + B - 1) / B, total = 0;
    for (uint32_t k = 0; k < nblocks; k++) total += (A - k * B < B ? A - k * B : B) - 1;
    float *host = modes[VKD_TF_RANDOM] ? malloc(((size_t)n * cols + 1) * sizeof *host) : NULL;
    vkd_diagnose_token *out = calloc(total ? total : 1, sizeof *out);
    if (!out || (modes[VKD_TF_RANDOM] && !host)) {
        free(host);
        free(out);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory (%u feature rows)", n);
    }
    double t0 = vkd_now();
    vkd_result r = vkd_tf_prompt(t, g, rec, dg->feats, seq, P, host, err);
    times->prompt += vkd_now() - t0;
    for (uint32_t k = 0, at = 0; !r && k < nblocks; k++) {
        uint32_t s = P + k * B, rr = n - s < B ? n - s : B, c = rr - 1;
        t0 = vkd_now();
        vkd_rec_begin(rec);
        if (c && (r = vkd_rec_update(rec, dg->gids, 0, seq + s + 1, (uint64_t)c * 4))) *err = *vkd_rec_error(rec);
        if (!r && (modes[VKD_TF_GOLD] || modes[VKD_TF_MASK])) {
            if (k > 0) r = vkd_draft_context(g, rec, seq + s - B, s - B, B, dg->feats, 0, err);
            for (int md = 0; !r && md < 2; md++)
                if (modes[md]) r = draft_mode(dg, rec, (vkd_tf_mode)md, seq, s, rr, c, err);
        }
        if ((r = vkd_draft_submit(rec, r, err))) break; /* separate submissions only to time the phases */
        double t1 = vkd_now();
        times->draft += t1 - t0;
        vkd_rec_begin(rec);
        r = vkd_tf_target_record(t, g, rec, dg->feats, seq, s, rr, err);
        if (!r && c &&
            ((r = vkd_op_token_stats(rec, dg->stats, t->logits, 0, dg->gids, c, t->vocab)) ||
             (r = vkd_rec_read(rec, dg->stats, 0, dg->st[0], (uint64_t)c * 12))))
            *err = *vkd_rec_error(rec);
        if (!r && host && cols && (r = vkd_rec_read(rec, dg->feats, 0, host + (size_t)s * cols, (uint64_t)rr * cols * 4)))
            *err = *vkd_rec_error(rec);
        if ((r = vkd_draft_submit(rec, r, err))) break;
        times->target += vkd_now() - t1;
        if ((r = vkd_check_stats(dg->st[0][0], c, 3, 3, s - P + 1, "target", err))) break;
        for (int md = 0; md < 2; md++)
            if (modes[md] && (r = vkd_check_stats(dg->st[1 + md][0], c, 3, 3, s - P + 1, "draft", err))) break;
        if (r) break;
        for (uint32_t i = 0; i < c; i++) {
            vkd_diagnose_token *tr = &out[at + i];
            tr->pos = s - P + i + 1;
            tr->block = k;
            tr->block_pos = i + 1;
            tr->gold = seq[s + i + 1];
            tr->p_t = prob(dg->st[0][i]);
            tr->rank_t = dg->st[0][i][2];
            for (int md = 0; md < 3; md++) tr->p_d[md] = tr->rank_d[md] = NAN;
            for (int md = 0; md < 2; md++)
                if (modes[md]) {
                    tr->p_d[md] = prob(dg->st[1 + md][i]);
                    tr->rank_d[md] = dg->st[1 + md][i][2];
                }
        }
        at += c;
    }
    if (!r && host) {
        t0 = vkd_now();
        r = random_pass(dg, rec, seq, n, P, host, seed, key, out, err);
        times->random += vkd_now() - t0;
    }
    free(host);
    if (r) {
        free(out);
        return r;
    }
    *tokens = out;
    *ntokens = total;
    return VKD_OK;
}
