/* vkd_spec.h: speculative decoding (../shared/design.md section 5) with any draft
 * (vkd_draft.h): the DFlash draft (blocks of B-1 tokens from the target's hidden states), an
 * ordinary autoregressive draft model of the same tokenizer (gamma tokens), or another.
 *
 * Greedy: accept the longest prefix of proposals equal to the target's argmax, then the
 * target's argmax after it (bonus). Exactly the target's greedy output.
 * Sampling: accept d_i while u_i * q_i(d_i) < p_i(d_i); at the first rejection sample from
 * normalize(max(p - q, 0)); when all are accepted sample the bonus from p. p and q are the
 * target's and draft's distributions after the same temperature, top-k and top-p, so the
 * output follows the target's sampling distribution exactly. */
#ifndef VKD_SPEC_H
#define VKD_SPEC_H

#include "vkd_draft.h"
#include "vkd_generate.h"

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

/* Resets the target and the draft, prefills (the prompt joins the draft's context), decodes.
 * Proposals: greedy = the draft's argmax; sampling = drawn from q = the draft row warped by
 * opt->sample (vkd_sample_probs) with Philox stream 0 at the proposed position. */
vkd_result vkd_spec_generate(vkd_target *t, vkd_draft *g, vkd_rec *rec, const int32_t *prompt,
                             uint32_t n, const vkd_generate_options *opt, vkd_spec_result *res,
                             vkd_error *err);
void vkd_spec_result_free(vkd_spec_result *r);

#endif
