/* budget.c: the parameter budget as JSON and text (budget.h). */
#include "budget.h"

#include <inttypes.h>

#include "layer.h"

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

static uint64_t kv_per_token(const vkd_layer *layers, uint32_t n_layers, uint32_t n_kv, uint32_t head_dim) {
    if (!n_layers) return 0;
    return (uint64_t)n_layers * 2 * n_kv * head_dim * vkd_dtype_size(layers[0].kc->dtype);
}

void compute_budget_sizes(const vkd_target *t, const vkd_dflash *d, compute_budget *b) {
    b->target_kv_per_token = kv_per_token(t->layers, t->n_layers, t->n_kv, t->head_dim);
    b->draft_kv_per_token = d ? kv_per_token(d->layers, d->n_layers, d->n_kv, d->head_dim) : 0;
    b->taps_per_token = d ? (uint64_t)d->ntaps * t->hidden * 4 : 0;
}

cJSON *compute_budget_json(const compute_budget *b) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompts", (double)b->prompts);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)b->prompt_tokens);
    cJSON_AddNumberToObject(o, "max_len", (double)b->max_len);
    cJSON_AddNumberToObject(o, "prefill_s", b->prefill_s);
    cJSON_AddNumberToObject(o, "draft_calls", (double)b->draft_calls);
    cJSON_AddNumberToObject(o, "draft_s", b->draft_s);
    cJSON_AddNumberToObject(o, "draft_ms_per_call", b->draft_calls ? 1e3 * b->draft_s / (double)b->draft_calls : 0);
    cJSON_AddNumberToObject(o, "verify_steps", (double)b->verify_steps);
    cJSON_AddNumberToObject(o, "verify_s", b->verify_s);
    cJSON_AddNumberToObject(o, "verify_ms_per_step", b->verify_steps ? 1e3 * b->verify_s / (double)b->verify_steps : 0);
    cJSON_AddNumberToObject(o, "target_kv_bytes_per_token", (double)b->target_kv_per_token);
    cJSON_AddNumberToObject(o, "draft_kv_bytes_per_token", (double)b->draft_kv_per_token);
    cJSON_AddNumberToObject(o, "taps_bytes_per_token", (double)b->taps_per_token);
    cJSON_AddNumberToObject(o, "target_kv_bytes", (double)(b->target_kv_per_token * b->max_len));
    cJSON_AddNumberToObject(o, "draft_kv_bytes", (double)(b->draft_kv_per_token * b->max_len));
    cJSON_AddNumberToObject(o, "taps_bytes", (double)(b->taps_per_token * b->max_len));
    return o;
}

void compute_budget_print(FILE *f, const compute_budget *b) {
    const double MiB = 1024.0 * 1024.0;
    fprintf(f, "compute budget (%" PRIu64 " prompt(s), %" PRIu64 " prompt tokens, longest sequence %" PRIu64 "):\n",
            b->prompts, b->prompt_tokens, b->max_len);
    fprintf(f, "| item | total | per unit |\n|:---|---:|---:|\n");
    fprintf(f, "| target prefill | %.3f s | %.3f ms/token |\n", b->prefill_s,
            b->prompt_tokens ? 1e3 * b->prefill_s / (double)b->prompt_tokens : 0);
    fprintf(f, "| draft calls (%" PRIu64 ") | %.3f s | %.3f ms/call |\n", b->draft_calls, b->draft_s,
            b->draft_calls ? 1e3 * b->draft_s / (double)b->draft_calls : 0);
    fprintf(f, "| verification (%" PRIu64 ") | %.3f s | %.3f ms/step |\n", b->verify_steps, b->verify_s,
            b->verify_steps ? 1e3 * b->verify_s / (double)b->verify_steps : 0);
    fprintf(f, "| target KV cache | %.3f MiB | %" PRIu64 " B/token |\n", (double)(b->target_kv_per_token * b->max_len) / MiB,
            b->target_kv_per_token);
    fprintf(f, "| draft KV cache | %.3f MiB | %" PRIu64 " B/token |\n", (double)(b->draft_kv_per_token * b->max_len) / MiB,
            b->draft_kv_per_token);
    fprintf(f, "| hidden-state taps | %.3f MiB | %" PRIu64 " B/token |\n", (double)(b->taps_per_token * b->max_len) / MiB,
            b->taps_per_token);
}
