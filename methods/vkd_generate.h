/* vkd_generate.h: plain autoregressive decoding with a target model (the baseline every
 * speculative method is compared against). One submission per generated token: the
 * forward step, the sampler and the read-back of one token id. */
#ifndef VKD_GENERATE_H
#define VKD_GENERATE_H

#include "vkd_target.h"

typedef void (*vkd_token_fn)(void *user, int32_t id);

typedef struct vkd_generate_options {
    uint32_t max_new_tokens;   /* 0: 128 */
    vkd_sample_params sample;  /* temperature 0 = greedy; seed; counter0 is ignored */
    const int32_t *stop_ids;   /* generation stops after emitting one of these */
    uint32_t nstop;
    vkd_token_fn on_token;     /* called for each generated token as it is decided */
    void *user;
} vkd_generate_options;

typedef struct vkd_generate_result {
    int32_t *ids;              /* generated ids (malloc'd; free()), stop token included */
    uint32_t n;
    bool stopped;              /* ended on a stop id (else on max_new_tokens) */
    double prefill_s, decode_s;/* wall time of the prefill and of the decode loop */
} vkd_generate_result;

/* Resets the target's KV cache, prefills the prompt and generates. The sampler's Philox
 * counter for the token at absolute position p is p, so a run depends only on the seed. */
vkd_result vkd_generate(vkd_target *t, vkd_rec *rec, const int32_t *prompt, uint32_t n,
                        const vkd_generate_options *opt, vkd_generate_result *res, vkd_error *err);

double vkd_now(void); /* monotonic seconds */
/* Whether id is one of the nstop stop ids. */
bool vkd_is_stop(const int32_t *stop_ids, uint32_t nstop, int32_t id);

#endif
