/* param_budget.c: parameters by component (param_budget.h). */
#include "param_budget.h"

#include <stdlib.h>
#include <string.h>

static bool starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static bool ends(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

vkd_pb_component vkd_pb_classify(const char *name, uint32_t *layer) {
    if (starts(name, "model.")) name += 6;
    if (starts(name, "embed_tokens.")) return VKD_PB_EMBED;
    if (starts(name, "lm_head.")) return VKD_PB_LM_HEAD;
    if (starts(name, "fc.")) return VKD_PB_FC;
    if (ends(name, "norm.weight") || ends(name, "layernorm.weight")) return VKD_PB_NORM;
    if (starts(name, "layers.") && name[7] >= '0' && name[7] <= '9') {
        char *end;
        unsigned long i = strtoul(name + 7, &end, 10);
        if (*end == '.' && i < VKD_PB_MAX_LAYERS) {
            *layer = (uint32_t)i;
            return VKD_PB_LAYER;
        }
    }
    return VKD_PB_OTHER;
}

void vkd_param_budget_free(vkd_param_budget *b) {
    free(b->layer);
    memset(b, 0, sizeof *b);
}

vkd_result vkd_param_budget_of(vkd_st_model *m, vkd_param_budget *out, vkd_error *err) {
    memset(out, 0, sizeof *out);
    size_t n = vkd_st_model_count(m);
    vkd_result r = vkd_st_model_load_all(m, err);
    if (r) return r;
    for (size_t i = 0; i < n; i++) {
        const char *name = vkd_st_model_name_at(m, i);
        const vkd_st_tensor *t;
        if ((r = vkd_st_model_get_at(m, i, &t, err))) break;
        uint32_t li = 0;
        vkd_pb_component c = vkd_pb_classify(name, &li);
        if (c == VKD_PB_OTHER && starts(name + (starts(name, "model.") ? 6 : 0), "layers.")) {
            r = vkd_fail(err, VKD_ERR_INVALID, "%s: layer index not a number below %d", name, VKD_PB_MAX_LAYERS);
            break;
        }
        out->total += t->numel;
        switch (c) {
        case VKD_PB_EMBED: out->embed += t->numel; break;
        case VKD_PB_LM_HEAD: out->lm_head += t->numel; break;
        case VKD_PB_FC:
            out->fc += t->numel;
            if (!strcmp(name, "fc.weight") || !strcmp(name, "model.fc.weight")) {
                out->fc_out = t->rank == 2 ? t->shape[0] : 0;
                out->fc_in = t->rank == 2 ? t->shape[1] : 0;
            }
            break;
        case VKD_PB_NORM: out->norms += t->numel; break;
        case VKD_PB_OTHER: out->other += t->numel; break;
        case VKD_PB_LAYER:
            if (li >= out->nlayer) {
                uint64_t *g = realloc(out->layer, (size_t)(li + 1) * sizeof *g);
                if (!g) {
                    r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
                    break;
                }
                memset(g + out->nlayer, 0, (size_t)(li + 1 - out->nlayer) * sizeof *g);
                out->layer = g;
                out->nlayer = li + 1;
            }
            out->layer[li] += t->numel;
            out->layers += t->numel;
            break;
        }
        if (r) break;
    }
    if (r) vkd_param_budget_free(out);
    return r;
}
