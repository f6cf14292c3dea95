/* budget.c: the parameter budget as JSON and text (budget.h). */
#include "budget.h"

#include <inttypes.h>

#include "config.h"

cJSON *budget_json(const vkd_param_budget *b, bool tied) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "total", (double)b->total);
    cJSON_AddNumberToObject(o, "embed_tokens", (double)b->embed);
    cJSON_AddNumberToObject(o, "lm_head", (double)b->lm_head);
    cJSON_AddBoolToObject(o, "lm_head_tied", tied && !b->lm_head);
    cJSON_AddNumberToObject(o, "fc", (double)b->fc);
    if (b->fc_out) {
        cJSON *s = cJSON_AddArrayToObject(o, "fc_shape");
        cJSON_AddItemToArray(s, cJSON_CreateNumber((double)b->fc_out));
        cJSON_AddItemToArray(s, cJSON_CreateNumber((double)b->fc_in));
    } else {
        cJSON_AddNullToObject(o, "fc_shape");
    }
    cJSON_AddNumberToObject(o, "norms", (double)b->norms);
    cJSON_AddNumberToObject(o, "layers", (double)b->layers);
    cJSON *l = cJSON_AddArrayToObject(o, "layer");
    for (uint32_t i = 0; i < b->nlayer; i++) cJSON_AddItemToArray(l, cJSON_CreateNumber((double)b->layer[i]));
    cJSON_AddNumberToObject(o, "other", (double)b->other);
    return o;
}

static void line(FILE *f, const char *what, uint64_t n, uint64_t total, const char *note) {
    fprintf(f, "  %-28s %14" PRIu64 "  %8.3fM  %5.1f%%%s%s\n", what, n, (double)n / 1e6,
            total ? 100.0 * (double)n / (double)total : 0.0, note ? "  " : "", note ? note : "");
}

void budget_print(FILE *f, const vkd_param_budget *b, bool tied) {
    char w[96];
    fprintf(f, "parameter budget (norms: every RMSNorm weight; layers: attention + MLP):\n");
    line(f, "embed_tokens", b->embed, b->total, NULL);
    line(f, "lm_head", b->lm_head, b->total, tied && !b->lm_head ? "tied to embed_tokens" : NULL);
    if (b->fc_out) {
        snprintf(w, sizeof w, "%" PRId64 " -> %" PRId64 ", %.1f:1 compression", b->fc_in, b->fc_out,
                 (double)b->fc_in / (double)b->fc_out);
        line(f, "fc", b->fc, b->total, w);
    } else if (b->fc) {
        line(f, "fc", b->fc, b->total, NULL);
    }
    snprintf(w, sizeof w, "%u transformer layers", b->nlayer);
    line(f, w, b->layers, b->total, NULL);
    for (uint32_t i = 0; i < b->nlayer; i++) {
        snprintf(w, sizeof w, "  layer %u", i);
        line(f, w, b->layer[i], b->total, NULL);
    }
    line(f, "norms", b->norms, b->total, NULL);
    if (b->other) line(f, "other", b->other, b->total, NULL);
    line(f, "total", b->total, b->total, NULL);
}

cJSON *budget_json_of_dir(const char *dir) {
    vkd_st_model *m;
    vkd_error err = {0};
    if (vkd_st_model_open(dir, &m, &err)) return NULL;
    vkd_param_budget b;
    cJSON *o = NULL;
    if (!vkd_param_budget_of(m, &b, &err)) {
        vkd_cfg cfg;
        bool tied = vkd_cfg_load(dir, &cfg, &err) == VKD_OK && cfg.tie_word_embeddings;
        o = budget_json(&b, tied);
        vkd_param_budget_free(&b);
    }
    vkd_st_model_close(m);
    return o;
}
