/* spec.c: the speculative decoding loop (design.md section 5).
 *
 * Randomness (sampling mode) is Philox keyed by the seed, counter (stream, position):
 * stream 0 draws proposals, 1 the acceptance uniforms, 2 residual and bonus tokens; so a
 * run depends only on the seed. */
#include "vkd_spec.h"

#include "vkd_sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { STREAM_PROPOSE = 0, STREAM_ACCEPT = 1, STREAM_RESAMPLE = 2 };

static bool greedy(const vkd_generate_options *o) { return o->sample.temperature <= 0; }

static bool is_stop(const vkd_generate_options *o, int32_t id) { return vkd_is_stop(o->stop_ids, o->nstop, id); }

typedef struct loop {
    vkd_target *t;
    vkd_draft *g;
    vkd_rec *rec;
    const vkd_generate_options *opt;
    vkd_tensor *features, *argmax;
    uint32_t V, gamma;
    float *p_rows, *q_rows, *logit_rows;
    int32_t *post;
    uint32_t pos;               /* position of the last committed token while proposing */
} loop;

/* Target forward over ids at t->len with logits of rows [lrow0, lrow0 + lrows) and taps;
 * greedy: argmax of those rows into post; sampling: warped rows into p_rows. With draft_ctx,
 * the step's rows also join the draft's context in the same submission (the prompt). */
static vkd_result target_step(loop *L, const int32_t *ids, uint32_t m, uint32_t lrow0,
                              uint32_t lrows, bool draft_ctx, vkd_error *err) {
    vkd_target *t = L->t;
    vkd_draft *g = L->g;
    uint32_t pos = t->len;
    /* greedy: the target's fused LM head + argmax (no logits written on texel-block heads) */
    vkd_target_step s = {.ids = ids, .m = m, .logits_row0 = lrow0, .logits_rows = lrows,
                         .tap_layers = g->tap_layers, .ntaps = g->ntaps,
                         .features = g->ntaps ? L->features : NULL,
                         .argmax = lrows && greedy(L->opt) ? L->argmax : NULL};
    vkd_rec_begin(L->rec);
    bool own = g->ops->verify && !draft_ctx; /* the draft verifies (self-speculative): it writes logits */
    vkd_result r = own ? g->ops->verify(g, L->rec, ids, m, lrow0, lrows, err)
                       : vkd_target_step_record(t, L->rec, &s, err);
    if (!r && own && s.argmax) r = vkd_op_argmax(L->rec, L->argmax, t->logits, 0, lrows, t->vocab);
    if (!r && draft_ctx) r = vkd_draft_context(g, L->rec, ids, pos, m, L->features, 0, err);
    if (r) {
        vkd_rec_submit(L->rec);
        return r;
    }
    if (lrows) {
        if (greedy(L->opt)) {
            vkd_rec_read(L->rec, L->argmax, 0, L->post, (uint64_t)lrows * 4);
        } else {
            vkd_rec_read(L->rec, t->logits, 0, L->logit_rows, (uint64_t)lrows * L->V * 4);
        }
    }
    r = vkd_rec_submit(L->rec);
    if (r) {
        *err = *vkd_rec_error(L->rec);
        return r;
    }
    if (lrows && greedy(L->opt)) r = vkd_check_tokens(L->post, lrows, lrow0, "target", err);
    if (lrows && !greedy(L->opt))
        for (uint32_t i = 0; i < lrows && !r; i++)
            if (!(r = vkd_check_logits(L->logit_rows + (size_t)i * L->V, L->V, lrow0 + i, "target", err)))
                r = vkd_sample_probs(L->logit_rows + (size_t)i * L->V, L->V, &L->opt->sample,
                                 L->p_rows + (size_t)i * L->V, err);
    return r;
}

/* The draft's sampling hook: q_i = the warped draft row, the proposal drawn from it with
 * Philox stream 0 at the proposed position. */
static vkd_result draw_proposal(void *user, uint32_t i, const float *logits, int32_t *token, bool *stop,
                                vkd_error *err) {
    loop *L = user;
    float *qi = L->q_rows + (size_t)i * L->V;
    (void)stop;
    vkd_result r = vkd_sample_probs(logits, L->V, &L->opt->sample, qi, err);
    if (!r) *token = vkd_draw(qi, L->V, vkd_uniform(L->opt->sample.seed, STREAM_PROPOSE, L->pos + 1 + i));
    return r;
}

vkd_result vkd_spec_generate(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *prompt,
                             uint32_t n, const vkd_generate_options *opt, vkd_spec_result *res,
                             vkd_error *err) {
    memset(res, 0, sizeof *res);
    uint32_t max_new = opt->max_new_tokens ? opt->max_new_tokens : 128;
    uint32_t gamma = g->gamma, V = t->vocab;
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "empty prompt");
    if (g->vocab != V)
        return vkd_fail(err, VKD_ERR_INVALID, "draft vocabulary %u differs from the target's %u", g->vocab, V);
    if (g->ops->verify && g->target != t)
        return vkd_fail(err, VKD_ERR_INVALID, "the self-speculative draft shares another target's cache");
    if (g->ntaps && g->target != t) return vkd_fail(err, VKD_ERR_INVALID, "the draft reads another target's hidden states");
    if (gamma + 1 > t->logit_rows || gamma + 1 > t->max_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "block of %u tokens exceeds the target's step size", gamma + 1);
    if ((uint64_t)n + max_new + gamma + 1 > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE,
                        "prompt (%u tokens) + max_new_tokens (%u) + one block exceeds the context "
                        "length %u", n, max_new, t->ctx_len);
    loop L = {.t = t, .g = g, .rec = rec, .opt = opt, .V = V, .gamma = gamma};
    vkd_result r = VKD_OK;
    bool samp = !greedy(opt);
    L.post = malloc((gamma + 1) * sizeof *L.post);
    res->ids = malloc((max_new + gamma + 1) * sizeof *res->ids);
    res->stats.accept = malloc((max_new + 1) * sizeof *res->stats.accept);
    if (samp) {
        L.p_rows = malloc((size_t)(gamma + 1) * V * sizeof(float));
        L.q_rows = malloc((size_t)gamma * V * sizeof(float));
        L.logit_rows = malloc((size_t)(gamma + 1) * V * sizeof(float));
    }
    if (!L.post || !res->ids || !res->stats.accept || (samp && (!L.p_rows || !L.q_rows || !L.logit_rows))) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto out;
    }
    uint32_t frows = t->max_rows;
    if ((r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, gamma + 1, "spec_argmax", &L.argmax, err)))
        goto out;
    if (g->ntaps &&
        (r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, frows, (uint64_t)g->ntaps * t->hidden,
                                  "spec_features", &L.features, err)))
        goto out;

    /* prefill; each chunk joins the draft's context in the chunk's submission */
    double t0 = vkd_now();
    t->len = 0;
    if ((r = vkd_draft_reset(g, err))) goto out;
    for (uint32_t done = 0; done < n;) {
        uint32_t m = n - done < frows ? n - done : frows;
        bool last = done + m == n;
        if ((r = target_step(&L, prompt + done, m, last ? m - 1 : 0, last ? 1 : 0, true, err))) goto out;
        done += m;
    }
    int32_t next;
    if (samp) next = vkd_draw(L.p_rows, V, vkd_uniform(opt->sample.seed, STREAM_RESAMPLE, n));
    else next = L.post[0];
    res->stats.prefill_s = vkd_now() - t0;
    t0 = vkd_now();
    res->ids[res->n++] = next;
    if (opt->on_token) opt->on_token(opt->user, next);
    res->stopped = is_stop(opt, next);

    int32_t *block = malloc((gamma + 1) * sizeof *block);
    if (!block) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); goto out; }
    uint32_t ctx_n = 0; /* committed rows of the last verification not yet in the draft's context */
    while (!res->stopped && res->n < max_new) {
        uint32_t pos = t->len; /* position of `next`, the last committed token */
        double td = vkd_now();
        uint32_t got = 0;
        vkd_rec_begin(rec);
        r = ctx_n ? vkd_draft_context(g, rec, block, pos - ctx_n, ctx_n, L.features, 0, err) : VKD_OK;
        L.pos = pos;
        if (r) vkd_rec_submit(rec);
        else r = vkd_draft_propose(g, rec, next, pos, gamma, samp ? draw_proposal : NULL, &L, block + 1, &got, err);
        res->stats.draft_s += vkd_now() - td;
        if (r) break;
        block[0] = next;
        td = vkd_now();
        r = target_step(&L, block, gamma + 1, 0, gamma + 1, false, err);
        res->stats.verify_s += vkd_now() - td;
        if (r) break;
        /* acceptance */
        uint32_t acc = 0;
        int32_t bonus;
        if (!samp) {
            while (acc < gamma && block[1 + acc] == L.post[acc]) acc++;
            bonus = L.post[acc];
        } else {
            bonus = -1;
            while (acc < gamma) {
                int32_t d = block[1 + acc];
                const float *pp = L.p_rows + (size_t)acc * V, *qq = L.q_rows + (size_t)acc * V;
                double u = vkd_uniform(opt->sample.seed, STREAM_ACCEPT, pos + 1 + acc);
                if (qq[d] > 0 && u * qq[d] < pp[d]) {
                    acc++;
                    continue;
                }
                /* rejected: residual distribution normalize(max(p - q, 0)) */
                float *res_p = L.logit_rows; /* scratch */
                double mass = 0;
                for (uint32_t i = 0; i < V; i++) {
                    float x = pp[i] - qq[i];
                    res_p[i] = x > 0 ? x : 0;
                    mass += res_p[i];
                }
                const float *from = mass > 0 ? res_p : pp;
                bonus = vkd_draw(from, V, vkd_uniform(opt->sample.seed, STREAM_RESAMPLE, pos + 1 + acc));
                break;
            }
            if (bonus < 0)
                bonus = vkd_draw(L.p_rows + (size_t)gamma * V, V,
                                 vkd_uniform(opt->sample.seed, STREAM_RESAMPLE, pos + 1 + gamma));
        }
        /* commit block[1..acc] and the bonus, stopping at a stop id or max_new */
        uint32_t committed = 0;
        for (uint32_t i = 0; i <= acc && !res->stopped && res->n < max_new; i++) {
            int32_t id = i < acc ? block[1 + i] : bonus;
            res->ids[res->n++] = id;
            committed++;
            if (opt->on_token) opt->on_token(opt->user, id);
            if (is_stop(opt, id)) res->stopped = true;
        }
        res->stats.accept[res->stats.steps++] = committed;
        /* the target keeps positions pos .. pos+acc (next and the accepted proposals) */
        if ((r = vkd_target_crop(t, pos + acc + 1, err))) break;
        ctx_n = acc + 1;
        next = bonus;
    }
    free(block);
    res->stats.total_s = vkd_now() - t0;
    if (res->stats.steps) {
        double s = 0;
        for (uint32_t i = 0; i < res->stats.steps; i++) s += res->stats.accept[i];
        res->stats.tau = s / res->stats.steps;
    }
out:
    vkd_tensor_destroy(L.argmax);
    vkd_tensor_destroy(L.features);
    free(L.post);
    free(L.p_rows);
    free(L.q_rows);
    free(L.logit_rows);
    if (r) vkd_spec_result_free(res);
    return r;
}

void vkd_spec_result_free(vkd_spec_result *r) {
    free(r->ids);
    free(r->stats.accept);
    memset(r, 0, sizeof *r);
}
