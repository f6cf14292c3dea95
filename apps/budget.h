/* budget.h: the parameter budget (seed 000 section 4.1, loaders/param_budget.h) as JSON and
 * text, for `inspect` and the model identities in every experiment's config.json. */
#ifndef VKD_APP_BUDGET_H
#define VKD_APP_BUDGET_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "param_budget.h"
#include "vkd_dflash.h"

/* {"total", "embed_tokens", "lm_head", "lm_head_tied", "fc", "fc_shape": [out, in] | null,
 *  "norms", "layers", "layer": [...], "other"}; tied: the config's tie_word_embeddings. */
cJSON *budget_json(const vkd_param_budget *b, bool tied);

/* The table inspect prints: one line per component, each layer on its own line, shares of
 * the total in percent. */
void budget_print(FILE *f, const vkd_param_budget *b, bool tied);

/* The budget of the model folder dir as JSON (NULL when its tensors cannot be read). */
cJSON *budget_json_of_dir(const char *dir);

/* Compute budget (seeds 001/004 item 0.4): what one speculative-decoding pair costs for
 * the prompts actually run. Times are sums over the prompts; memory is what the caches
 * hold at the longest sequence (prompt + generated) of the run:
 *   target KV = layers x 2 x kv_heads x head_dim x length x the KV dtype's bytes
 *   draft KV  = the same over the draft's layers (DFlash: its context + one block)
 *   taps      = taps x hidden x 4 bytes per position (f32 features of every context
 *               position; held whole on the host by diagnose's random mode) */
typedef struct compute_budget {
    uint64_t prompts, prompt_tokens, max_len;
    double prefill_s;          /* target prefill (with taps) */
    uint64_t draft_calls;
    double draft_s;            /* draft calls (context + block) */
    uint64_t verify_steps;
    double verify_s;           /* target verification forwards */
    uint64_t target_kv_per_token, draft_kv_per_token, taps_per_token; /* bytes */
} compute_budget;

/* Per-token bytes of the target's and the draft's KV caches and of the taps. */
void compute_budget_sizes(const vkd_target *t, const vkd_dflash *d, compute_budget *b);
cJSON *compute_budget_json(const compute_budget *b);
/* The table, markdown-style. */
void compute_budget_print(FILE *f, const compute_budget *b);

#endif
