/* guide.c: draft-guided decoding and its null control (vkd_guide.h). */
#include "vkd_guide.h"
#include "vkd_sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- null control ------------------------------------------------------------------------ */

void vkd_guide_noise(uint64_t seed, uint32_t pos, float *z, uint32_t n) {
    const double two_pi = 6.283185307179586, inv32 = 1.0 / 4294967296.0;
    for (uint32_t j = 0; j < n; j += 2) {
        uint32_t w[4];
        vkd_philox4x32(seed, (uint64_t)VKD_GUIDE_NOISE_STREAM << 32 | pos, j / 2, w);
        /* 64-bit uniforms from word pairs; u1 in (0, 1] so the log is finite */
        double u1 = ((double)w[0] + (double)w[1] * inv32 + 1.0) * inv32;
        double u2 = ((double)w[2] + (double)w[3] * inv32) * inv32;
        double r = sqrt(-2.0 * log(u1 < 1.0 ? u1 : 1.0));
        z[j] = (float)(r * cos(two_pi * u2));
        if (j + 1 < n) z[j + 1] = (float)(r * sin(two_pi * u2));
    }
}

double vkd_guide_null_row(const float *target, const float *draft, const float *z, float alpha,
                          uint32_t n, float *null) {
    double s1 = 0, s2 = 0, zz = 0;
    for (uint32_t j = 0; j < n; j++) {
        double dlt = (double)draft[j] - target[j];
        s1 += dlt;
        s2 += dlt * dlt;
        zz += (double)z[j] * z[j];
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    double std_d = var > 0 ? sqrt(var) : 0, rms_z = sqrt(zz / n);
    double scale = rms_z > 0 ? std_d / rms_z : 0;
    for (uint32_t j = 0; j < n; j++) null[j] = (float)(target[j] + (double)alpha * scale * z[j]);
    return scale;
}

/* ---- adaptive and top-k constrained rows ---------------------------------------------------- */

double vkd_guide_adaptive_row(const float *target, const float *draft, float alpha, uint32_t n, float *out) {
    double mt = -INFINITY, md = -INFINITY, zt = 0, zd = 0, tvd = 0;
    for (uint32_t j = 0; j < n; j++) {
        if (target[j] > mt) mt = target[j];
        if (draft[j] > md) md = draft[j];
    }
    for (uint32_t j = 0; j < n; j++) {
        zt += exp((double)target[j] - mt);
        zd += exp((double)draft[j] - md);
    }
    for (uint32_t j = 0; j < n; j++) tvd += fabs(exp((double)target[j] - mt) / zt - exp((double)draft[j] - md) / zd);
    double a = (double)alpha * 0.5 * tvd;
    float fa = (float)a;
    for (uint32_t j = 0; j < n; j++) out[j] = (1.0f - fa) * target[j] + fa * draft[j];
    return a;
}

/* the k-th largest of a[0..n) (1 <= k <= n; reorders a): Hoare quickselect */
static float kth_largest(float *a, uint32_t n, uint32_t k) {
    int64_t lo = 0, hi = (int64_t)n - 1, want = (int64_t)k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float x = a[i];
                a[i++] = a[j];
                a[j--] = x;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return a[want];
}

void vkd_guide_topk_row(const float *target, const float *draft, float alpha, uint32_t k, uint32_t n,
                        float *scratch, float *out) {
    memcpy(scratch, target, (size_t)n * sizeof *scratch);
    float v = kth_largest(scratch, n, k);
    uint32_t above = 0;
    for (uint32_t j = 0; j < n; j++) above += target[j] > v;
    uint32_t ties = k - above; /* entries equal to v taken, lowest index first */
    for (uint32_t j = 0; j < n; j++) {
        bool in = target[j] > v || (target[j] == v && ties > 0);
        if (target[j] == v && in) ties--;
        out[j] = in ? (1.0f - alpha) * target[j] + alpha * draft[j] : -INFINITY;
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

typedef struct loop {
    vkd_target *t;
    vkd_draft *g;
    vkd_rec *rec;
    const vkd_guide_options *opt;
    uint32_t V;
    int32_t *seq;                     /* committed ids by position: the prompt, then res->ids */
    int32_t *block;                   /* the draft's block ids */
    vkd_tensor *features, *guided, *tok, *am_t, *am_g, *kl;
    vkd_tensor *st[4];                /* token stats: target/draft row x chosen/target-argmax */
    float *t_row, *d_row, *g_row, *z; /* host rows (null control, on_rows) */
    vkd_guide_result *res;
    uint32_t top_k;
} loop;

typedef struct step_out {
    int32_t tok, am_t, am_g;
    float kl[2];
    float st[4][3];                   /* vkd_op_token_stats rows: logit, lse, rank */
    float alpha;
} step_out;

static vkd_result submit(loop *L, vkd_result r, vkd_error *err) {
    vkd_result r2 = vkd_rec_submit(L->rec);
    if (r) return r;
    if (r2) *err = *vkd_rec_error(L->rec);
    return r2;
}

/* Records the ops after the combined row is in L->guided: the draw (Philox counter = pos,
 * vkd_generate's), both argmaxes and KL(guided || target) at the decoding temperature. */
static void record_finish(loop *L, uint32_t pos, step_out *o) {
    vkd_rec *rec = L->rec;
    const vkd_sample_params *sp = &L->opt->gen.sample;
    float s = sp->temperature > 0 ? 1.0f / sp->temperature : 1.0f;
    vkd_sample_record(rec, L->tok, L->guided, 0, 1, L->V, sp, pos);
    vkd_op_argmax(rec, L->am_t, L->t->logits, 0, 1, L->V);
    vkd_op_argmax(rec, L->am_g, L->guided, 0, 1, L->V);
    vkd_op_kl_tvd(rec, L->kl, L->guided, 0, s, L->t->logits, 0, s, 1, L->V);
    vkd_rec_read(rec, L->tok, 0, &o->tok, 4);
    vkd_rec_read(rec, L->am_t, 0, &o->am_t, 4);
    vkd_rec_read(rec, L->am_g, 0, &o->am_g, 4);
    vkd_rec_read(rec, L->kl, 0, o->kl, 8);
    for (int q = 0; q < 4; q++) {
        vkd_op_token_stats(rec, L->st[q], q < 2 ? L->t->logits : L->g->logits, 0, q % 2 ? L->am_t : L->tok, 1, L->V);
        vkd_rec_read(rec, L->st[q], 0, o->st[q], 12);
    }
}

/* One submission (two for the null control): the target forward of ids (m rows at t->len,
 * taps into features rows [frow, frow + m), logits of the last row), the draft's new context
 * rows (ctx_n rows from features row ctx_row0 at position ctx_pos) and its prediction after
 * ids[m-1] at position t->len + m - 1; then the combined row and the token at t->len + m. */
static vkd_result step(loop *L, const int32_t *ids, uint32_t m, uint32_t frow, uint32_t ctx_row0,
                       uint32_t ctx_n, uint32_t ctx_pos, step_out *o, vkd_error *err) {
    vkd_target *t = L->t;
    vkd_draft *g = L->g;
    const vkd_guide_options *opt = L->opt;
    uint32_t V = L->V, last_pos = t->len + m - 1, pos = t->len + m;
    bool null = opt->condition != VKD_GUIDE_GUIDED; /* the row is built on the host */
    const vkd_tensor *dl = NULL;
    vkd_target_step s = {.ids = ids, .m = m, .logits_row0 = m - 1, .logits_rows = 1,
                         .tap_layers = g->tap_layers, .ntaps = g->ntaps,
                         .features = L->features, .feat_row0 = frow};
    /* the target first: the draft's context rows may be rows this step writes (the prompt's
     * last chunk); the recorder orders the reads after the writes */
    vkd_rec_begin(L->rec);
    vkd_result r = vkd_target_step_record(t, L->rec, &s, err);
    if (!r && ctx_n) r = vkd_draft_context(g, L->rec, L->seq + ctx_pos, ctx_pos, ctx_n, L->features, ctx_row0, err);
    vkd_draft_proposal_ids(g, ids[m - 1], NULL, 0, L->block);
    if (!r) r = vkd_draft_block(g, L->rec, L->block, last_pos, err);
    dl = g->logits;
    if (!r && !null) {
        vkd_op_axpby(L->rec, L->guided, t->logits, dl, 1.0f - opt->alpha, opt->alpha, V);
        record_finish(L, pos, o);
    }
    if (!r && (null || opt->on_rows)) {
        vkd_rec_read(L->rec, t->logits, 0, L->t_row, (uint64_t)V * 4);
        vkd_rec_read(L->rec, dl, 0, L->d_row, (uint64_t)V * 4);
        if (!null) vkd_rec_read(L->rec, L->guided, 0, L->g_row, (uint64_t)V * 4);
    }
    if ((r = submit(L, r, err))) return r;
    L->res->target_forwards++;
    L->res->draft_calls++;
    o->alpha = opt->alpha;
    if (null) {
        if ((r = vkd_check_logits(L->t_row, V, pos - 1, "target", err)) ||
            (r = vkd_check_logits(L->d_row, V, pos - 1, "draft", err)))
            return r;
        if (opt->condition == VKD_GUIDE_NULL) {
            vkd_guide_noise(opt->gen.sample.seed, pos, L->z, V);
            vkd_guide_null_row(L->t_row, L->d_row, L->z, opt->alpha, V, L->g_row);
        } else if (opt->condition == VKD_GUIDE_ADAPTIVE) {
            o->alpha = (float)vkd_guide_adaptive_row(L->t_row, L->d_row, opt->alpha, V, L->g_row);
        } else {
            vkd_guide_topk_row(L->t_row, L->d_row, opt->alpha, L->top_k, V, L->z, L->g_row);
        }
        if ((r = vkd_tensor_upload(L->guided, 0, L->g_row, (uint64_t)V * 4, err))) return r;
        vkd_rec_begin(L->rec);
        record_finish(L, pos, o);
        if ((r = submit(L, VKD_OK, err))) return r;
    }
    /* a NaN / +Inf in the target row shows in am_t, one in the draft's in the guided row */
    if ((r = vkd_check_tokens(&o->am_t, 1, pos - 1, "target", err)) ||
        (r = vkd_check_tokens(&o->am_g, 1, pos - 1, "guided", err)) ||
        (r = vkd_check_tokens(&o->tok, 1, pos - 1, "guided", err)) ||
        (r = vkd_check_stats(o->kl, 1, 2, 2, pos - 1, "guided or target", err)))
        return r;
    if (opt->on_rows) opt->on_rows(opt->rows_user, pos, L->t_row, L->d_row, L->g_row);
    return VKD_OK;
}

static bool is_stop(const vkd_generate_options *o, int32_t id) { return vkd_is_stop(o->stop_ids, o->nstop, id); }

vkd_result vkd_guide_generate(vkd_target *t, vkd_draft *g, vkd_rec *rec,
                              const int32_t *prompt, uint32_t n, const vkd_guide_options *opt,
                              vkd_guide_result *res, vkd_error *err) {
    memset(res, 0, sizeof *res);
    uint32_t max_new = opt->gen.max_new_tokens ? opt->gen.max_new_tokens : 128;
    uint32_t V = t->vocab;
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "empty prompt");
    if (!(opt->alpha >= 0 && opt->alpha <= 1e6f))
        return vkd_fail(err, VKD_ERR_INVALID, "alpha %g: expected a finite value >= 0", opt->alpha);
    if (opt->condition < VKD_GUIDE_GUIDED || opt->condition > VKD_GUIDE_TOPK)
        return vkd_fail(err, VKD_ERR_INVALID, "unknown guide condition %d", (int)opt->condition);
    uint32_t top_k = opt->top_k ? opt->top_k : 20;
    if (opt->condition == VKD_GUIDE_TOPK && top_k > V)
        return vkd_fail(err, VKD_ERR_INVALID, "top-k guidance: k %u exceeds the vocabulary (%u)", top_k, V);
    if (g->vocab != V)
        return vkd_fail(err, VKD_ERR_INVALID, "draft vocabulary %u differs from the target's %u", g->vocab, V);
    if (g->ntaps && g->target != t)
        return vkd_fail(err, VKD_ERR_INVALID, "the draft reads another target's hidden states");
    if ((uint64_t)n + max_new > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE,
                        "prompt (%u tokens) + max_new_tokens (%u) exceeds the context length %u",
                        n, max_new, t->ctx_len);
    loop L = {.t = t, .g = g, .rec = rec, .opt = opt, .V = V, .res = res, .top_k = top_k};
    uint32_t frows = t->max_rows < 2 ? 2 : t->max_rows;
    vkd_result r = VKD_OK;
    res->ids = malloc(max_new * sizeof *res->ids);
    res->kl = malloc(max_new * sizeof *res->kl);
    res->changed = malloc(max_new);
    res->tokens = malloc(max_new * sizeof *res->tokens);
    L.t_row = malloc((size_t)V * 4);
    L.d_row = malloc((size_t)V * 4);
    L.g_row = malloc((size_t)V * 4);
    L.z = malloc((size_t)V * 4);
    L.seq = malloc(((size_t)n + max_new) * sizeof *L.seq);
    L.block = malloc(g->block * sizeof *L.block);
    if (!res->ids || !res->kl || !res->changed || !res->tokens || !L.t_row || !L.d_row || !L.g_row || !L.z || !L.seq || !L.block) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto out;
    }
    memcpy(L.seq, prompt, n * sizeof *L.seq);
    if ((g->ntaps && (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, frows, (uint64_t)g->ntaps * t->hidden,
                                               "guide_features", &L.features, err))) ||
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, 1, V, "guided_logits", &L.guided, err)) ||
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, 4, "guide_token", &L.tok, err)) ||
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, 4, "guide_argmax_t", &L.am_t, err)) ||
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, 4, "guide_argmax_g", &L.am_g, err)) ||
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, 1, 4, "guide_kl", &L.kl, err)))
        goto out;
    for (int q = 0; q < 4; q++)
        if ((r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, 1, 4, "guide_token_stats", &L.st[q], err))) goto out;
    t->len = 0;
    if ((r = vkd_draft_reset(g, err))) goto out;

    /* prefill in vkd_generate's chunks (the same steps give the same logits): all chunks but
     * the last without logits; every chunk's taps join the draft's context, except the last
     * prompt position, which is the row 0 of the first [last, MASK] block */
    double t0 = vkd_now();
    uint32_t done = 0;
    while (n - done > t->max_rows) {
        uint32_t m = t->max_rows;
        vkd_target_step s = {.ids = prompt + done, .m = m, .tap_layers = g->tap_layers,
                             .ntaps = g->ntaps, .features = L.features};
        vkd_rec_begin(rec);
        r = vkd_target_step_record(t, rec, &s, err);
        if (!r) r = vkd_draft_context(g, rec, prompt + done, done, m, L.features, 0, err);
        if ((r = submit(&L, r, err))) goto out;
        res->target_forwards++;
        done += m;
    }
    /* the last chunk: taps at rows 0..m-1, the first m-1 of them join the draft's context */
    uint32_t m = n - done;
    step_out o;
    if ((r = step(&L, prompt + done, m, 0, 0, m - 1, done, &o, err))) goto out;
    uint32_t pending = m - 1; /* features row of the last committed position, not yet in the draft */
    res->prefill_s = vkd_now() - t0;
    t0 = vkd_now();
    double kl_sum = 0;
    uint32_t changed = 0;
    for (;;) {
        res->ids[res->n] = o.tok;
        L.seq[n + res->n] = o.tok;
        res->kl[res->n] = o.kl[0];
        res->changed[res->n] = o.am_t != o.am_g;
        vkd_guide_token *gt = &res->tokens[res->n];
        *gt = (vkd_guide_token){.id = o.tok, .target_argmax = o.am_t, .guided_argmax = o.am_g, .kl = o.kl[0],
                                .alpha = o.alpha};
        float *pp[4] = {&gt->p_target, &gt->p_target_pref, &gt->p_draft, &gt->p_draft_pref};
        for (int q = 0; q < 4; q++) *pp[q] = (float)exp((double)o.st[q][0] - (double)o.st[q][1]);
        kl_sum += o.kl[0];
        changed += res->changed[res->n];
        res->n++;
        if (opt->gen.on_token) opt->gen.on_token(opt->gen.user, o.tok);
        if (is_stop(&opt->gen, o.tok)) {
            res->stopped = true;
            break;
        }
        if (res->n == max_new) break;
        uint32_t w = pending == 0 ? 1 : 0, p = t->len;
        if ((r = step(&L, &res->ids[res->n - 1], 1, w, pending, 1, p - 1, &o, err))) goto out;
        pending = w;
    }
    res->decode_s = vkd_now() - t0;
    res->kl_mean = kl_sum / res->n;
    res->changed_frac = (double)changed / res->n;
out:
    vkd_tensor_destroy(L.features);
    vkd_tensor_destroy(L.guided);
    vkd_tensor_destroy(L.tok);
    vkd_tensor_destroy(L.am_t);
    vkd_tensor_destroy(L.am_g);
    vkd_tensor_destroy(L.kl);
    for (int q = 0; q < 4; q++) vkd_tensor_destroy(L.st[q]);
    free(L.t_row);
    free(L.d_row);
    free(L.g_row);
    free(L.z);
    free(L.seq);
    free(L.block);
    if (r) vkd_guide_result_free(res);
    return r;
}

void vkd_guide_result_free(vkd_guide_result *r) {
    free(r->ids);
    free(r->kl);
    free(r->changed);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}
