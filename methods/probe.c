/* probe.c: the speculative-MCMC probe walk and its Monte Carlo (vkd_probe.h). */
#include "vkd_probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_generate.h"
#include "vkd_sample.h"
#include "vkd_teacher.h"

static const double default_temps[3] = {1.0, 0.5, 0.25};

struct vkd_probe {
    vkd_target *t;
    vkd_draft *g;
    double alpha, temps[VKD_PROBE_MAX_TEMPS];
    uint32_t ntemps, K;
    uint64_t seed;
    vkd_tensor *feats;
    vkd_tensor *dist[VKD_PROBE_MAX_TEMPS + 1]; /* per temperature, then the baseline: rows x 2 */
    float dist_host[VKD_PROBE_MAX_TEMPS + 1][VKD_PROBE_MAX_BLOCK][2];
    float *lt, *ld;            /* (B-1) x V host copies */
    uint32_t steps;
    double *scratch, *logw, *u_mh, *u_sample;
    int32_t *tokens;
    vkd_probe_key *keys;
};

void vkd_probe_free(vkd_probe *p) {
    if (!p) return;
    vkd_tensor_destroy(p->feats);
    for (uint32_t i = 0; i <= VKD_PROBE_MAX_TEMPS; i++) vkd_tensor_destroy(p->dist[i]);
    free(p->lt);
    free(p->ld);
    free(p->scratch);
    free(p->logw);
    free(p->u_mh);
    free(p->u_sample);
    free(p->tokens);
    free(p->keys);
    free(p);
}

vkd_result vkd_probe_create(vkd_target *t, vkd_draft *g, const vkd_probe_options *opt, vkd_probe **out,
                            vkd_error *err) {
    *out = NULL;
    uint32_t B = g->block, V = g->vocab;
    if (B > VKD_PROBE_MAX_BLOCK)
        return vkd_fail(err, VKD_ERR_INVALID, "probe: block size %u > %d", B, VKD_PROBE_MAX_BLOCK);
    if (B - 1 > t->logit_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "probe: block size %u needs %u target logit rows (%u)", B, B - 1,
                        t->logit_rows);
    if (V != t->vocab)
        return vkd_fail(err, VKD_ERR_INVALID, "probe: draft vocabulary %u differs from the target's %u", V, t->vocab);
    if (g->ntaps && g->target != t)
        return vkd_fail(err, VKD_ERR_INVALID, "probe: the draft reads another target's hidden states");
    vkd_probe *p = calloc(1, sizeof *p);
    if (!p) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    p->t = t;
    p->g = g;
    p->alpha = opt->alpha > 0 ? opt->alpha : 4.0;
    p->K = opt->samples ? opt->samples : 100;
    p->steps = opt->mcmc_steps ? opt->mcmc_steps : 10;
    p->seed = opt->seed;
    const double *tv = opt->temps ? opt->temps : default_temps;
    p->ntemps = opt->temps ? opt->ntemps : 3;
    vkd_result r = VKD_OK;
    if (p->ntemps == 0 || p->ntemps > VKD_PROBE_MAX_TEMPS)
        r = vkd_fail(err, VKD_ERR_INVALID, "probe: %u temperatures (1..%d)", p->ntemps, VKD_PROBE_MAX_TEMPS);
    else if (p->K < 2)
        r = vkd_fail(err, VKD_ERR_INVALID, "probe: %u Monte Carlo samples (at least 2)", p->K);
    for (uint32_t i = 0; !r && i < p->ntemps; i++) {
        if (!(tv[i] > 0)) r = vkd_fail(err, VKD_ERR_INVALID, "probe: temperature %g must be > 0", tv[i]);
        p->temps[i] = tv[i];
    }
    size_t rows = B - 1;
    if (!r) {
        p->lt = malloc(rows * V * sizeof *p->lt);
        p->ld = malloc(rows * V * sizeof *p->ld);
        p->scratch = malloc((size_t)V * sizeof *p->scratch);
        p->logw = malloc(p->K * sizeof *p->logw);
        p->u_mh = malloc(p->K * sizeof *p->u_mh);
        p->u_sample = malloc(p->K * rows * sizeof *p->u_sample);
        p->tokens = malloc(p->K * rows * sizeof *p->tokens);
        p->keys = malloc(p->K * sizeof *p->keys);
        if (!p->lt || !p->ld || !p->scratch || !p->logw || !p->u_mh || !p->u_sample || !p->tokens || !p->keys)
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory (probe buffers)");
    }
    if (!r) r = vkd_tf_features_create(t, g, &p->feats, err);
    for (uint32_t i = 0; !r && i <= p->ntemps; i++)
        r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, VKD_PROBE_MAX_BLOCK, 2, "probe_dist", &p->dist[i], err);
    if (r) {
        vkd_probe_free(p);
        return r;
    }
    *out = p;
    return VKD_OK;
}

uint32_t vkd_probe_mh(const double *logw, const double *u, uint32_t K) {
    uint32_t state = 0, accepts = 0;
    for (uint32_t j = 1; j < K; j++) {
        double dl = logw[j] - logw[state];
        if (dl >= 0 || u[j] < exp(dl)) {
            state = j;
            accepts++;
        }
    }
    return accepts;
}

static bool same_row(const int32_t *tokens, uint32_t rows, uint32_t a, uint32_t b) {
    return !memcmp(tokens + (size_t)a * rows, tokens + (size_t)b * rows, rows * sizeof *tokens);
}

static int key_cmp(const void *a, const void *b) {
    const vkd_probe_key *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->sample < y->sample ? -1 : x->sample > y->sample;
}

void vkd_probe_chain_stats(const double *logw, const double *u, const int32_t *tokens, uint32_t rows, uint32_t K,
                           uint32_t steps, vkd_probe_key *keys, vkd_probe_chain *out) {
    memset(out, 0, sizeof *out);
    uint32_t state = 0;
    for (uint32_t j = 1; j < K; j++) {
        double dl = logw[j] - logw[state];
        if (dl >= 0 || u[j] < exp(dl)) {
            out->accepts++;
            out->changes += !same_row(tokens, rows, j, state);
            state = j;
        }
    }
    out->windows = steps ? K / (steps + 1) : 0;
    for (uint32_t w = 0; w < out->windows; w++) {
        uint32_t b = w * (steps + 1), moves = 0, changes = 0;
        state = b;
        for (uint32_t j = b + 1; j <= b + steps; j++) {
            double dl = logw[j] - logw[state];
            if (dl >= 0 || u[j] < exp(dl)) {
                moves++;
                changes += !same_row(tokens, rows, j, state);
                state = j;
            }
        }
        out->moved1 += moves >= 1;
        out->moved3 += moves >= 3;
        out->changed1 += changes >= 1;
    }
    /* distinct rows: sort by an FNV-1a hash, then compare rows exactly within equal-hash runs
     * (representatives are swapped to the front of their run) */
    for (uint32_t j = 0; j < K; j++) {
        uint64_t h = 0xcbf29ce484222325ull;
        const unsigned char *c = (const unsigned char *)(tokens + (size_t)j * rows);
        for (size_t q = 0; q < rows * sizeof *tokens; q++) h = (h ^ c[q]) * 0x100000001b3ull;
        keys[j] = (vkd_probe_key){.hash = h, .sample = j};
    }
    qsort(keys, K, sizeof *keys, key_cmp);
    for (uint32_t a = 0; a < K;) {
        uint32_t e = a + 1, reps = a + 1;
        while (e < K && keys[e].hash == keys[a].hash) e++;
        for (uint32_t i = a + 1; i < e; i++) {
            bool seen = false;
            for (uint32_t r = a; r < reps && !seen; r++) seen = same_row(tokens, rows, keys[i].sample, keys[r].sample);
            if (!seen) {
                vkd_probe_key t = keys[reps];
                keys[reps++] = keys[i];
                keys[i] = t;
            }
        }
        out->distinct += reps - a;
        a = e;
    }
}

uint32_t vkd_probe_block_mc(const float *lt, const float *ld, uint32_t rows, uint32_t V, double alpha,
                            double T, uint32_t K, uint64_t seed, uint32_t key, uint64_t counter0,
                            double *scratch, double *logw, int32_t *tokens, double *u_sample,
                            double *u_mh) {
    double C = 0;
    for (uint32_t j = 0; j < K; j++) logw[j] = 0;
    for (uint32_t i = 0; i < rows; i++) {
        const float *a = lt + (size_t)i * V, *b = ld + (size_t)i * V;
        double lse_t = vkd_sample_cdf(a, V, 1.0, scratch); /* log-normaliser of p */
        double lse_q = vkd_sample_cdf(b, V, T, scratch);   /* of q_T; scratch = its cdf */
        C += lse_q - alpha * lse_t;
        for (uint32_t j = 0; j < K; j++) {
            double u = vkd_uniform(seed, 2 * key, (counter0 + j) * VKD_PROBE_MAX_BLOCK + i);
            uint32_t x = vkd_sample_cdf_draw(scratch, V, u);
            logw[j] += alpha * (double)a[x] - (double)b[x] / T;
            if (tokens) tokens[(size_t)j * rows + i] = (int32_t)x;
            if (u_sample) u_sample[(size_t)j * rows + i] = u;
        }
    }
    for (uint32_t j = 0; j < K; j++) logw[j] += C;
    double *u = u_mh ? u_mh : malloc(K * sizeof *u);
    if (!u) return 0;
    u[0] = 0;
    for (uint32_t j = 1; j < K; j++) u[j] = vkd_uniform(seed, 2 * key + 1, counter0 + j);
    uint32_t accepts = vkd_probe_mh(logw, u, K);
    if (!u_mh) free(u);
    return accepts;
}

/* f32 rounding on the device can put a KL a little below 0 or a TVD a little above 1 */
static double clamp01(double x, double hi) { return x < 0 ? 0 : x > hi ? hi : x; }

/* Submits; a failure recorded in the recorder (ops, reads) becomes err unless a model call
 * already filled err with the failure r. */
static vkd_result submit(vkd_rec *rec, vkd_result r, vkd_error *err) {
    vkd_result s = vkd_rec_submit(rec);
    if ((!r && s) || (r && err->code != r)) {
        *err = *vkd_rec_error(rec);
        if (!r) r = s;
    }
    return r;
}

vkd_result vkd_probe_run(vkd_probe *p, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P,
                         uint32_t key, vkd_probe_hook hook, void *user, vkd_probe_pos **pos_out,
                         uint32_t *npos_out, vkd_probe_block **blk_out, uint32_t *nblk_out,
                         vkd_probe_times *times, vkd_error *err) {
    vkd_draft *g = p->g;
    vkd_target *t = p->t;
    uint32_t B = g->block, V = g->vocab, nt = p->ntemps, K = p->K;
    *pos_out = NULL;
    *blk_out = NULL;
    *npos_out = *nblk_out = 0;
    memset(times, 0, sizeof *times);
    if (P == 0 || P >= n) return vkd_fail(err, VKD_ERR_INVALID, "probe: prompt of %u tokens in a sequence of %u", P, n);
    uint32_t cap = t->ctx_len < g->ctx_len ? t->ctx_len : g->ctx_len;
    if ((uint64_t)n + B > cap)
        return vkd_fail(err, VKD_ERR_INVALID, "probe: %u tokens + a block of %u exceed the context (%u)", n, B, cap);
    uint32_t A = n - P, nblocks = (A + B - 1) / B, total = 0;
    for (uint32_t k = 0; k < nblocks; k++) total += (A - k * B < B ? A - k * B : B) - 1;
    vkd_probe_pos *pos = calloc(total ? total : 1, sizeof *pos);
    vkd_probe_block *blk = calloc(nblocks ? nblocks : 1, sizeof *blk);
    if (!pos || !blk) {
        free(pos);
        free(blk);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    }
    double t0 = vkd_now();
    vkd_result r = vkd_tf_prompt(t, g, rec, p->feats, seq, P, NULL, err);
    times->prompt_s = vkd_now() - t0;
    int32_t ids[VKD_PROBE_MAX_BLOCK];
    uint32_t at = 0, nb = 0;
    for (uint32_t k = 0; !r && k < nblocks; k++) {
        uint32_t s = P + k * B, rr = n - s < B ? n - s : B, c = rr - 1;
        if (c == 0) break; /* a last block of one row predicts nothing */
        t0 = vkd_now();
        vkd_rec_begin(rec);
        if (k > 0) r = vkd_draft_context(g, rec, seq + s - B, s - B, B, p->feats, 0, err);
        vkd_tf_draft_block_ids(g, VKD_TF_MASK, seq, s, rr, ids);
        if (!r) r = vkd_draft_block(g, rec, ids, s, err);
        if (!r) r = vkd_tf_target_record(t, g, rec, p->feats, seq, s, rr, err);
        if (!r) r = vkd_rec_read(rec, t->logits, 0, p->lt, (uint64_t)c * V * 4); /* the largest read first */
        for (uint32_t ti = 0; !r && ti <= nt; ti++) {
            bool base = ti == nt;
            float ps = base ? 1.0f : (float)p->alpha, qs = base ? 1.0f : (float)(1.0 / p->temps[ti]);
            r = vkd_op_kl_tvd(rec, p->dist[ti], t->logits, 0, ps, g->logits, 0, qs, c, V);
            if (!r) r = vkd_rec_read(rec, p->dist[ti], 0, p->dist_host[ti], (uint64_t)c * 8);
        }
        r = submit(rec, r, err);
        /* the draft logits in a submission of their own: the recorder sizes its read-back space
         * at twice a submission's first read, which the two logits reads would fill exactly */
        if (!r) {
            vkd_rec_begin(rec);
            r = vkd_rec_read(rec, g->logits, 0, p->ld, (uint64_t)c * V * 4);
            r = submit(rec, r, err);
        }
        times->blocks_s += vkd_now() - t0;
        for (uint32_t i = 0; !r && i < c; i++)
            if (!(r = vkd_check_logits(p->lt + (size_t)i * V, V, s + i, "target", err)))
                r = vkd_check_logits(p->ld + (size_t)i * V, V, s + i, "draft", err);
        if (r) break;

        t0 = vkd_now();
        vkd_probe_block *b = &blk[nb++];
        b->block = k;
        b->start = s;
        b->npos = c;
        for (uint32_t ti = 0; ti < nt; ti++) b->product[ti] = 1;
        for (uint32_t i = 0; i < c; i++) {
            vkd_probe_pos *q = &pos[at + i];
            q->block = k;
            q->block_pos = i + 1;
            q->pos = s + i + 1;
            q->token = seq[s + i + 1];
            for (uint32_t ti = 0; ti < nt; ti++) {
                q->kl[ti] = clamp01(p->dist_host[ti][i][0], INFINITY);
                q->tvd[ti] = clamp01(p->dist_host[ti][i][1], 1);
                b->product[ti] *= 1.0 - q->tvd[ti];
            }
            q->base_tvd = clamp01(p->dist_host[nt][i][1], 1);
        }
        at += c;
        for (uint32_t ti = 0; ti < nt; ti++) {
            uint64_t counter0 = ((uint64_t)k * nt + ti) * K;
            uint32_t acc = vkd_probe_block_mc(p->lt, p->ld, c, V, p->alpha, p->temps[ti], K, p->seed, key,
                                              counter0, p->scratch, p->logw, p->tokens,
                                              hook ? p->u_sample : NULL, p->u_mh);
            vkd_probe_chain_stats(p->logw, p->u_mh, p->tokens, c, K, p->steps, p->keys, &b->chain[ti]);
            double m = 0, v = 0;
            for (uint32_t j = 0; j < K; j++) m += p->logw[j];
            m /= K;
            for (uint32_t j = 0; j < K; j++) v += (p->logw[j] - m) * (p->logw[j] - m);
            b->sim_accept[ti] = (double)acc / (K - 1);
            b->logw_mean[ti] = m;
            b->logw_std[ti] = sqrt(v / K);
            if (hook) {
                vkd_probe_trace tr = {.block = k, .start = s, .rows = c, .vocab = V, .temp_index = ti,
                                      .samples = K, .temperature = p->temps[ti], .alpha = p->alpha,
                                      .target_logits = p->lt, .draft_logits = p->ld, .tokens = p->tokens,
                                      .u_sample = p->u_sample, .logw = p->logw, .u_mh = p->u_mh,
                                      .accepts = acc, .mcmc_steps = p->steps, .chain = b->chain[ti]};
                hook(user, &tr);
            }
        }
        times->mc_s += vkd_now() - t0;
    }
    if (r) {
        free(pos);
        free(blk);
        return r;
    }
    *pos_out = pos;
    *npos_out = at;
    *blk_out = blk;
    *nblk_out = nb;
    return VKD_OK;
}
