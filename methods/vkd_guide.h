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
 * Adaptive (VKD_GUIDE_ADAPTIVE, seeds 001/004 phase 3.3): per token the alpha applied is
 *     alpha_t = alpha * TVD(softmax(target), softmax(draft))     (double, on the host)
 * so guidance is as strong as the two models disagree (0 where they agree, alpha where their
 * distributions do not overlap); the row is (1 - alpha_t) target + alpha_t draft.
 * Top-k constrained (VKD_GUIDE_TOPK, the risk table's mitigation): the guided row on the
 * target's top_k entries (ties: lower index first, as vkd_op_topk), -inf elsewhere, so only
 * tokens the target ranks among its k best can be chosen (alpha 0: top-k sampling from the
 * target; greedy: plain target decoding). Like the null control, both rows are built on the
 * host from the read-back target and draft rows and uploaded.
 *
 * Sampling: the device sampler (vkd_op_sample: temperature, top-k, top-p, transformers'
 * order) with Philox counter = the absolute position of the token being chosen, exactly as
 * vkd_generate. So at alpha = 0 the output equals vkd_generate's token for token, greedy
 * and sampled at the same seed (the rows are identical, and so are the prompt's forward
 * steps: the prefill is chunked as vkd_generate chunks it).
 *
 * Per token metrics: KL(guided || target) with both distributions softmax(logits / T) at
 * the decoding temperature T (T = 0, greedy: softmax(logits)), without top-k/top-p; and
 * whether argmax(guided) != argmax(target); for the per-token analysis (vkd_guide_token)
 * the target's and the draft's probabilities softmax(row) (temperature 1) of the chosen token
 * and of the target's argmax (vkd_op_token_stats on the device).
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
    VKD_GUIDE_ADAPTIVE = 2,        /* alpha scaled per token by TVD(target, draft) */
    VKD_GUIDE_TOPK = 3,            /* guidance restricted to the target's top_k */
} vkd_guide_condition;

/* One generated token (the per-token analysis of seeds 001/004 phase 2.5). */
typedef struct vkd_guide_token {
    int32_t id;                    /* the chosen token */
    int32_t target_argmax, guided_argmax;
    float kl;                      /* KL(guided || target), as kl[] */
    float alpha;                   /* the alpha applied: alpha_t for adaptive, else alpha */
    float p_target, p_draft;       /* softmax(target / draft row)[id] */
    float p_target_pref, p_draft_pref; /* softmax(target / draft row)[target_argmax] */
} vkd_guide_token;

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
    uint32_t top_k;                /* VKD_GUIDE_TOPK: k (1 .. vocab); 0: 20 */
    vkd_guide_rows_fn on_rows;     /* NULL: no row read-back */
    void *rows_user;
} vkd_guide_options;

typedef struct vkd_guide_result {
    int32_t *ids;                  /* generated ids (malloc'd), stop token included */
    uint32_t n;
    bool stopped;
    float *kl;                     /* n values: KL(guided || target) per token (malloc'd) */
    uint8_t *changed;              /* n flags: argmax(guided) != argmax(target) (malloc'd) */
    vkd_guide_token *tokens;       /* n entries (malloc'd) */
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

/* Adaptive: out = (1 - a_t) target + a_t draft with a_t = alpha * TVD(softmax(target),
 * softmax(draft)) (double accumulation); returns a_t. out may alias target. */
double vkd_guide_adaptive_row(const float *target, const float *draft, float alpha, uint32_t n, float *out);
/* Top-k constrained: out[j] = (1 - alpha) target[j] + alpha draft[j] for the k largest
 * target entries (ties: lower index first), -inf elsewhere; 1 <= k <= n. scratch: n floats.
 * out may alias neither input. */
void vkd_guide_topk_row(const float *target, const float *draft, float alpha, uint32_t k, uint32_t n,
                        float *scratch, float *out);

#endif
