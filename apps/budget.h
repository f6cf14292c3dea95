/* budget.h: the parameter budget (seed 000 section 4.1, loaders/param_budget.h) as JSON and
 * text, for `inspect` and the model identities in every experiment's config.json. */
#ifndef VKD_APP_BUDGET_H
#define VKD_APP_BUDGET_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "param_budget.h"

/* {"total", "embed_tokens", "lm_head", "lm_head_tied", "fc", "fc_shape": [out, in] | null,
 *  "norms", "layers", "layer": [...], "other"}; tied: the config's tie_word_embeddings. */
cJSON *budget_json(const vkd_param_budget *b, bool tied);

/* The table inspect prints: one line per component, each layer on its own line, shares of
 * the total in percent. */
void budget_print(FILE *f, const vkd_param_budget *b, bool tied);

/* The budget of the model folder dir as JSON (NULL when its tensors cannot be read). */
cJSON *budget_json_of_dir(const char *dir);

#endif
