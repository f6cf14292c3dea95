/* param_budget.h: a model folder's parameters split by component (seed 000 section 4.1's
 * parameter budget), from the safetensors tensor names alone.
 *
 * Components, by the name without a leading "model.":
 *   embed     embed_tokens.*
 *   lm_head   lm_head.* (absent with tied embeddings: the head is the embedding)
 *   fc        fc.* (the DFlash draft's projection of the concatenated target taps)
 *   norms     every RMSNorm weight: *norm.weight / *_layernorm.weight, in layers or not
 *             (input/post-attention, q/k norms, the final norm, the draft's hidden_norm)
 *   layer[i]  everything else under layers.i. (attention and MLP linears)
 *   other     anything else
 * Every tensor lands in exactly one component, so they sum to the total. */
#ifndef VKD_PARAM_BUDGET_H
#define VKD_PARAM_BUDGET_H

#include "safetensors.h"

#define VKD_PB_MAX_LAYERS 4096

typedef struct vkd_param_budget {
    uint64_t total, embed, lm_head, fc, norms, other;
    uint64_t layers;           /* sum of layer[] */
    uint32_t nlayer;           /* 1 + the largest layer index seen; 0: none */
    uint64_t *layer;           /* nlayer entries (malloc'd; NULL when nlayer is 0) */
    int64_t fc_out, fc_in;     /* fc.weight's shape (rows = out, columns = in); 0: no fc */
} vkd_param_budget;

/* The component of one tensor name; *layer is set for VKD_PB_LAYER. */
typedef enum vkd_pb_component {
    VKD_PB_EMBED, VKD_PB_LM_HEAD, VKD_PB_FC, VKD_PB_NORM, VKD_PB_LAYER, VKD_PB_OTHER
} vkd_pb_component;
vkd_pb_component vkd_pb_classify(const char *name, uint32_t *layer);

/* Reads every tensor header of m (all shards) and fills *out (zeroed first). An unreadable
 * tensor or a layer index >= VKD_PB_MAX_LAYERS is an error naming the tensor. */
vkd_result vkd_param_budget_of(vkd_st_model *m, vkd_param_budget *out, vkd_error *err);
void vkd_param_budget_free(vkd_param_budget *b);

#endif
