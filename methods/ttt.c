/* ttt.c: host side of test-time training (vkd_ttt.h): targets, anchors, step rows, the
 * sweep grid, the bootstrap and the with/without-adapter measurement. */
#include "vkd_ttt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_bootstrap.h"
#include "vkd_generate.h"
#include "vkd_spec.h"
#include "vkd_teacher.h"
#include "vkd_sample.h"

/* checkpoint order */
static const struct { const char *name; uint32_t bit; } target_names[4] = {
    {"fc", VKD_TTT_FC}, {"q_proj", VKD_TTT_Q}, {"k_proj", VKD_TTT_K}, {"v_proj", VKD_TTT_V}};

vkd_result vkd_ttt_parse_targets(const char *s, uint32_t *mask, vkd_error *err) {
    uint32_t m = 0;
    const char *p = s;
    if (!s || !*s) return vkd_fail(err, VKD_ERR_INVALID, "LoRA targets: empty list (expected some of fc,q_proj,k_proj,v_proj)");
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int hit = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(target_names[i].name) == len && !strncmp(p, target_names[i].name, len)) hit = i;
        if (hit < 0)
            return vkd_fail(err, VKD_ERR_INVALID, "LoRA targets: '%.*s' is not one of fc, q_proj, k_proj, v_proj",
                            (int)len, p);
        if (m & target_names[hit].bit)
            return vkd_fail(err, VKD_ERR_INVALID, "LoRA targets: '%s' given twice", target_names[hit].name);
        m |= target_names[hit].bit;
        if (!e) break;
        p = e + 1;
    }
    *mask = m;
    return VKD_OK;
}

void vkd_ttt_targets_str(uint32_t mask, char *buf, size_t cap) {
    size_t at = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < 4; i++) {
        if (!(mask & target_names[i].bit)) continue;
        int w = snprintf(buf + at, cap > at ? cap - at : 0, "%s%s", at ? "," : "", target_names[i].name);
        if (w > 0) at += (size_t)w;
        if (at >= cap) break;
    }
}

uint32_t vkd_ttt_anchor_count(uint32_t T) { return T >= 3 ? T - 2 : 0; }

vkd_result vkd_ttt_draw_anchors(uint64_t seed, uint32_t key, uint32_t step, uint32_t T, uint32_t K,
                                uint32_t *out, vkd_error *err) {
    uint32_t n = vkd_ttt_anchor_count(T);
    if (K == 0 || K > n)
        return vkd_fail(err, VKD_ERR_RANGE, "%u anchors per step asked, a context of %u tokens allows 1..%u", K, T, n);
    uint32_t *pool = malloc((size_t)n * sizeof *pool);
    if (!pool) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (uint32_t i = 0; i < n; i++) pool[i] = i + 1;
    for (uint32_t i = 0; i < K; i++) {
        double u = vkd_uniform(seed, VKD_TTT_STREAM_ANCHORS, ((uint64_t)key << 32) | ((uint64_t)step * K + i));
        uint32_t j = i + (uint32_t)(u * (double)(n - i));
        if (j >= n) j = n - 1;
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = pool[i];
    }
    free(pool);
    return VKD_OK;
}

vkd_result vkd_ttt_check_anchors(const uint32_t *a, uint32_t n, uint32_t T, vkd_error *err) {
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "anchors: empty list");
    for (uint32_t i = 0; i < n; i++) {
        if (a[i] < 1 || a[i] + 2 > T)
            return vkd_fail(err, VKD_ERR_RANGE, "anchor %u outside 1..%d (the context has %u tokens)", a[i],
                            (int)T - 2, T);
        for (uint32_t j = 0; j < i; j++)
            if (a[j] == a[i]) return vkd_fail(err, VKD_ERR_INVALID, "anchor %u given twice", a[i]);
    }
    return VKD_OK;
}

uint32_t vkd_ttt_step_rows(const int32_t *seq, uint32_t T, const uint32_t *anchors, uint32_t na,
                           uint32_t B, int32_t mask_id, double gamma, int32_t *blocks,
                           int32_t *labels, float *weights) {
    double sum = 0;
    uint32_t rows = 0, R = B - 1;
    for (uint32_t i = 0; i < na; i++) {
        uint32_t a = anchors[i];
        blocks[(size_t)i * B] = seq[a];
        for (uint32_t k = 1; k < B; k++) {
            blocks[(size_t)i * B + k] = mask_id;
            size_t r = (size_t)i * R + (k - 1);
            if ((uint64_t)a + k <= (uint64_t)T - 1) {
                labels[r] = seq[a + k];
                sum += exp(-(double)(k - 1) / gamma);
                rows++;
            } else {
                labels[r] = -1;
            }
        }
    }
    for (uint32_t i = 0; i < na; i++)
        for (uint32_t k = 1; k < B; k++) {
            size_t r = (size_t)i * R + (k - 1);
            weights[r] = labels[r] >= 0 ? (float)(exp(-(double)(k - 1) / gamma) / sum) : 0.0f;
        }
    return rows;
}

double vkd_ttt_loss_ref(const float *logits, uint32_t rows, uint32_t V, const int32_t *labels,
                        const float *weights) {
    double loss = 0;
    for (uint32_t r = 0; r < rows; r++) {
        if (!(weights[r] > 0)) continue;
        const float *l = logits + (size_t)r * V;
        double mx = l[0], s = 0;
        for (uint32_t j = 1; j < V; j++) if (l[j] > mx) mx = l[j];
        for (uint32_t j = 0; j < V; j++) s += exp((double)l[j] - mx);
        loss += (double)weights[r] * (mx + log(s) - (double)l[labels[r]]);
    }
    return loss;
}

vkd_result vkd_ttt_grid(const uint32_t *steps, size_t nsteps, const double *lrs, size_t nlr,
                        const uint32_t *ranks, size_t nrank, vkd_ttt_setting **out, size_t *n,
                        vkd_error *err) {
    if (!nsteps || !nlr || !nrank) return vkd_fail(err, VKD_ERR_INVALID, "sweep: empty list");
    for (size_t i = 0; i < nsteps; i++) {
        if (steps[i] < 1) return vkd_fail(err, VKD_ERR_INVALID, "--steps: %u is not >= 1", steps[i]);
        for (size_t j = 0; j < i; j++)
            if (steps[j] == steps[i]) return vkd_fail(err, VKD_ERR_INVALID, "--steps: %u given twice", steps[i]);
    }
    for (size_t i = 0; i < nlr; i++) {
        if (!(lrs[i] > 0) || !isfinite(lrs[i]))
            return vkd_fail(err, VKD_ERR_INVALID, "--lr: %g is not a finite number > 0", lrs[i]);
        for (size_t j = 0; j < i; j++)
            if (lrs[j] == lrs[i]) return vkd_fail(err, VKD_ERR_INVALID, "--lr: %g given twice", lrs[i]);
    }
    for (size_t i = 0; i < nrank; i++) {
        if (ranks[i] < 1) return vkd_fail(err, VKD_ERR_INVALID, "--rank: %u is not >= 1", ranks[i]);
        for (size_t j = 0; j < i; j++)
            if (ranks[j] == ranks[i]) return vkd_fail(err, VKD_ERR_INVALID, "--rank: %u given twice", ranks[i]);
    }
    uint32_t *st = malloc(nsteps * sizeof *st);
    vkd_ttt_setting *g = malloc(nsteps * nlr * nrank * sizeof *g);
    if (!st || !g) {
        free(st);
        free(g);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    }
    memcpy(st, steps, nsteps * sizeof *st);
    for (size_t i = 1; i < nsteps; i++) /* ascending */
        for (size_t j = i; j > 0 && st[j - 1] > st[j]; j--) {
            uint32_t t = st[j];
            st[j] = st[j - 1];
            st[j - 1] = t;
        }
    size_t k = 0;
    for (size_t r = 0; r < nrank; r++)
        for (size_t l = 0; l < nlr; l++)
            for (size_t s = 0; s < nsteps; s++) g[k++] = (vkd_ttt_setting){.steps = st[s], .rank = ranks[r], .lr = lrs[l]};
    free(st);
    *out = g;
    *n = k;
    return VKD_OK;
}

void vkd_ttt_bootstrap_ci(const double *x, size_t n, uint32_t reps, double level, uint64_t seed,
                          double *lo, double *hi) {
    if (n > 1 && reps == 0) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += x[i];
        *lo = *hi = s / (double)n;
        return;
    }
    vkd_bootstrap_ci(x, NULL, n, reps, level, seed, VKD_TTT_STREAM_BOOTSTRAP, lo, hi, NULL);
}

void vkd_ttt_metrics_free(vkd_ttt_metrics *m) {
    free(m->ids);
    m->ids = NULL;
}

/* The mask-mode teacher-forced walk over seq[P..n) (vkd_teacher.h) through the draft
 * interface: per compared token the draft's p and rank of the gold token, summed into m. */
static vkd_result tf_walk(vkd_dflash *d, vkd_draft *g, vkd_rec *rec, const int32_t *seq, uint32_t P,
                          uint32_t n, vkd_ttt_metrics *m, vkd_error *err) {
    vkd_target *t = d->target;
    uint32_t B = g->block, V = g->vocab;
    vkd_tensor *feats = NULL, *gids = NULL, *stats = NULL;
    float *st = malloc((size_t)B * 3 * sizeof *st);
    int32_t *block = malloc((size_t)B * sizeof *block);
    vkd_result r = st && block ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = vkd_tf_features_create(t, g, &feats, err);
    if (!r) r = vkd_tensor_create_2d(d->ctx, VKD_DTYPE_I32, 1, B, "ttt_gold", &gids, err);
    if (!r) r = vkd_tensor_create_2d(d->ctx, VKD_DTYPE_F32, B, 3, "ttt_stats", &stats, err);
    if (!r) r = vkd_tf_prompt(t, g, rec, feats, seq, P, NULL, err);
    double sp = 0, sr = 0, sl = 0;
    uint32_t cnt = 0;
    for (uint32_t s = P; !r && s < n; s += B) {
        uint32_t rr = n - s < B ? n - s : B, c = rr - 1;
        vkd_rec_begin(rec);
        if (s > P) r = vkd_draft_context(g, rec, seq + s - B, s - B, B, feats, 0, err);
        if (!r && c) {
            r = vkd_rec_update(rec, gids, 0, seq + s + 1, (uint64_t)c * 4);
            vkd_tf_draft_block_ids(g, VKD_TF_MASK, seq, s, rr, block);
            if (!r) r = vkd_draft_block(g, rec, block, s, err);
            if (!r) r = vkd_op_token_stats(rec, stats, g->logits, 0, gids, c, V);
            if (!r) r = vkd_rec_read(rec, stats, 0, st, (uint64_t)c * 12);
        }
        /* the block's own features, the next block's context */
        if (!r && s + rr < n) r = vkd_tf_target_record(t, g, rec, feats, seq, s, rr, err);
        if ((r = vkd_draft_submit(rec, r, err))) break;
        if ((r = vkd_check_stats(st, c, 3, 3, s + 1, "draft", err))) break;
        for (uint32_t i = 0; i < c; i++) {
            double lp = (double)st[3 * i] - (double)st[3 * i + 1];
            sp += exp(lp);
            sl += lp;
            sr += st[3 * i + 2];
            cnt++;
        }
    }
    m->tf_tokens = cnt;
    m->p_mean = cnt ? sp / cnt : NAN;
    m->logp_mean = cnt ? sl / cnt : NAN;
    m->rank_mean = cnt ? sr / cnt : NAN;
    vkd_tensor_destroy(feats);
    vkd_tensor_destroy(gids);
    vkd_tensor_destroy(stats);
    free(st);
    free(block);
    return r;
}

vkd_result vkd_ttt_measure(vkd_dflash *d, vkd_rec *rec, const int32_t *prompt, uint32_t P,
                           const int32_t *seq, uint32_t n, const vkd_ttt_measure_options *opt,
                           vkd_ttt_metrics *out, vkd_error *err) {
    memset(out, 0, sizeof *out);
    out->p_mean = out->rank_mean = out->logp_mean = NAN;
    vkd_draft *g;
    vkd_result r = vkd_draft_dflash(d, &g, err);
    if (r) return r;
    vkd_generate_options go = {.max_new_tokens = opt && opt->max_new_tokens ? opt->max_new_tokens : 128,
                          .stop_ids = opt ? opt->stop_ids : NULL, .nstop = opt ? opt->nstop : 0};
    vkd_spec_result sr;
    double t0 = vkd_now();
    r = vkd_spec_generate(d->target, g, rec, prompt, P, &go, &sr, err);
    if (r) {
        vkd_draft_free(g);
        return r;
    }
    out->spec_s = vkd_now() - t0;
    out->tau = sr.stats.tau;
    out->spec_steps = sr.stats.steps;
    out->generated = sr.n;
    out->stopped = sr.stopped;
    out->ids = sr.ids;
    sr.ids = NULL;
    vkd_spec_result_free(&sr);
    if (seq && n >= P + 2) {
        t0 = vkd_now();
        r = tf_walk(d, g, rec, seq, P, n, out, err);
        out->tf_s = vkd_now() - t0;
        if (r) vkd_ttt_metrics_free(out);
    }
    vkd_draft_free(g);
    return r;
}
