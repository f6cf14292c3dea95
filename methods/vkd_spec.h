/* vkd_spec.h: speculative decoding (../shared/design.md section 5) with a pluggable
 * proposer: the DFlash draft (blocks of B-1 tokens from the target's hidden states) or an
 * ordinary autoregressive draft model of the same tokenizer (gamma tokens).
 *
 * Greedy: accept the longest prefix of proposals equal to the target's argmax, then the
 * target's argmax after it (bonus). Exactly the target's greedy output.
 * Sampling: accept d_i while u_i * q_i(d_i) < p_i(d_i); at the first rejection sample from
 * normalize(max(p - q, 0)); when all are accepted sample the bonus from p. p and q are the
 * target's and proposer's distributions after the same temperature, top-k and top-p, so the
 * output follows the target's sampling distribution exactly. */
#ifndef VKD_SPEC_H
#define VKD_SPEC_H

#include "vkd_dflash.h"
#include "vkd_generate.h"

/* A proposer sees the committed sequence through observe() and proposes after it. */
typedef struct vkd_proposer vkd_proposer;
struct vkd_proposer {
    const char *name;
    uint32_t gamma;            /* tokens proposed per step */
    /* The target processed positions [pos, pos + n) holding ids[0..n), all committed; their
     * tapped hidden states are features rows [row0, row0 + n) (NULL when the proposer asked
     * for no taps). Called after the prefill steps and after every verification. */
    vkd_result (*observe)(vkd_proposer *p, vkd_rec *rec, const int32_t *ids, uint32_t pos,
                          uint32_t n, const vkd_tensor *features, uint32_t row0, vkd_error *err);
    /* Proposes gamma tokens following `last` (committed, at position pos, not yet processed
     * by the target). With q != NULL also fills q[i * vocab ...] with the proposal
     * distributions after warping by sp, and samples tokens from them; else argmax. */
    vkd_result (*propose)(vkd_proposer *p, vkd_rec *rec, int32_t last, uint32_t pos,
                          const vkd_sample_params *sp, int32_t *tokens, float *q, vkd_error *err);
    void (*free)(vkd_proposer *p);
    const uint32_t *tap_layers; /* target layers the proposer reads (ntaps 0: none) */
    uint32_t ntaps;
    void *self;
};

/* Proposers. The DFlash proposer borrows d (and its target); block_size = d->block. */
vkd_result vkd_proposer_dflash(vkd_dflash *d, vkd_proposer **out, vkd_error *err);
/* An autoregressive draft model (same vocabulary) proposing gamma tokens per step. */
vkd_result vkd_proposer_ar(vkd_target *draft, uint32_t gamma, vkd_proposer **out, vkd_error *err);

typedef struct vkd_spec_stats {
    uint32_t steps;            /* verification forwards */
    uint32_t *accept;          /* tokens committed per step (n accepted + 1), malloc'd */
    double tau;                /* mean of accept */
    double prefill_s, draft_s, verify_s, total_s; /* total = decode loop wall time */
} vkd_spec_stats;

typedef struct vkd_spec_result {
    int32_t *ids;              /* generated ids (malloc'd), stop token included */
    uint32_t n;
    bool stopped;
    vkd_spec_stats stats;
} vkd_spec_result;

/* Resets the target (and proposer state through observe), prefills, decodes. */
vkd_result vkd_spec_generate(vkd_target *t, vkd_proposer *p, vkd_rec *rec, const int32_t *prompt,
                             uint32_t n, const vkd_gen_options *opt, vkd_spec_result *res,
                             vkd_error *err);
void vkd_spec_result_free(vkd_spec_result *r);

/* Host-side warping used by the sampling paths (double precision): probs = the
 * distribution of logits after temperature, top-k, top-p with transformers' semantics
 * (temperature 0: one-hot argmax). */
void vkd_warp_probs(const float *logits, uint32_t n, const vkd_sample_params *sp, float *probs);
/* Draws from probs with the uniform u in [0, 1): inverse CDF in index order. */
int32_t vkd_draw(const float *probs, uint32_t n, double u);
/* Uniform in [0, 1) from Philox: (seed, stream, position). */
double vkd_uniform(uint64_t seed, uint32_t stream, uint64_t pos);

#endif
