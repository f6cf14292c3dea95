/* vkd_guide.h: draft-guided decoding (seeds 001 and 004; ../shared/design.md section 6).
 *
 * Token-by-token decoding from
 *     guided_logits = target + alpha * (draft - target)      (seed 004)
 *                   = (1 - alpha) * target + alpha * draft    (seed 001, beta = alpha)
 * computed in f32 as the second form, so alpha = 0 gives the target's logits bit for bit
 * and alpha = 1 the draft's. The draft predicts the token at position p + 1 from the
 * committed prefix: a DFlash block of 2 rows [token p, MASK] at start p, its KV-cached
 * context holding the target's tapped hidden states of positions 0 .. p - 1. The target
 * processes token p in the same submission (one target forward and one draft call per
 * generated token).
 *
 * Null control (condition VKD_GUIDE_NULL): target + alpha * noise, where per token
 *     z_j ~ N(0, 1) for every vocabulary entry j (Box-Muller on Philox4x32-10 keyed by the
 *           seed, counter (VKD_GUIDE_NOISE_STREAM << 32 | position, j / 2); see
 *           vkd_guide_noise),
 *     noise = z * std(draft - target) / rms(z),
 * so the noise vector's RMS over the vocabulary equals the population standard deviation
 * of (draft - target) at that token exactly. The std rather than the RMS of the difference:
 * a constant offset between two logit rows does not change the distribution, so the std is
 * the part of the draft's correction that moves probabilities. The null row is built on the
 * host and uploaded; the sampler, argmax and KL then run on it exactly as on a guided row.
 *
 * Sampling: the device sampler (vkd_op_sample: temperature, top-k, top-p, transformers'
 * order) with Philox counter = the absolute position of the token being chosen, exactly as
 * vkd_generate. So at alpha = 0 the output equals vkd_generate's token for token, greedy
 * and sampled at the same seed (the rows are identical, and so are the prompt's forward
 * steps: the prefill is chunked as vkd_generate chunks it).
 *
 * Per token metrics: KL(guided || target) with both distributions softmax(logits / T) at
 * the decoding temperature T (T = 0, greedy: softmax(logits)), without top-k/top-p; and
 * whether argmax(guided) != argmax(target).
 *
 * The draft is any vkd_draft (vkd_draft.h): row 0 of a block call [token p, MASK...] at start
 * p (a causal draft: [token p]) predicts p + 1. Load a DFlash draft with block_size 2 for the
 * experiment's [last, MASK] block (a larger block works too: more mask rows, still row 0). An
 * adapted draft (LoRA after test-time training) replaces the plain one without touching the
 * loop. */
#ifndef VKD_GUIDE_H
#define VKD_GUIDE_H

#include "vkd_draft.h"
#include "vkd_generate.h"

#define VKD_GUIDE_NOISE_STREAM 0x4e6f6973u /* "Nois": Philox counter high word tag */

typedef enum vkd_guide_condition {
    VKD_GUIDE_GUIDED = 0,          /* target + alpha * (draft - target) */
    VKD_GUIDE_NULL = 1,            /* target + alpha * noise (see above) */
} vkd_guide_condition;

/* Test and analysis hook: called for each generated token before it is drawn, with the
 * position p of the token being chosen and the f32 rows (vocab floats each) of the target,
 * the draft and the row actually sampled from (guided or null). Setting it costs three
 * row read-backs per token. */
typedef void (*vkd_guide_rows_fn)(void *user, uint32_t pos, const float *target,
                                  const float *draft, const float *guided);

typedef struct vkd_guide_options {
    vkd_generate_options gen;           /* max_new_tokens (0: 128), sample, stop ids, on_token */
    float alpha;                   /* 0 = plain target decoding, 1 = the draft alone */
    vkd_guide_condition condition;
    vkd_guide_rows_fn on_rows;     /* NULL: no row read-back */
    void *rows_user;
} vkd_guide_options;

typedef struct vkd_guide_result {
    int32_t *ids;                  /* generated ids (malloc'd), stop token included */
    uint32_t n;
    bool stopped;
    float *kl;                     /* n values: KL(guided || target) per token (malloc'd) */
    uint8_t *changed;              /* n flags: argmax(guided) != argmax(target) (malloc'd) */
    double kl_mean;                /* mean of kl */
    double changed_frac;           /* mean of changed */
    uint32_t target_forwards;      /* target forward submissions, prompt chunks included */
    uint32_t draft_calls;          /* draft predictions (one per generated token) */
    double prefill_s, decode_s;    /* prefill (to the first token), then the decode loop */
} vkd_guide_result;

/* Resets target and draft, prefills the prompt (n >= 1 tokens), decodes. */
vkd_result vkd_guide_generate(vkd_target *t, vkd_draft *g, vkd_rec *rec,
                              const int32_t *prompt, uint32_t n, const vkd_guide_options *opt,
                              vkd_guide_result *res, vkd_error *err);
void vkd_guide_result_free(vkd_guide_result *r);

/* The null control's standard normals for the token at `pos`: z[j], j < n (see above). */
void vkd_guide_noise(uint64_t seed, uint32_t pos, float *z, uint32_t n);
/* null[j] = target[j] + alpha * z[j] * std(draft - target) / rms(z) (double accumulation);
 * returns the scale std(draft - target) / rms(z). null may alias target. */
double vkd_guide_null_row(const float *target, const float *draft, const float *z, float alpha,
                          uint32_t n, float *null);

#endif
