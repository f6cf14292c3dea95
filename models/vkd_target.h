/* vkd_target.h: Qwen3 and Llama 3.x causal LMs on Vulkan (transformers' semantics,
 * ../shared/design.md section 3).
 *
 * A forward step appends m tokens at positions len .. len+m-1 to the KV cache and
 * optionally (a) copies the hidden states of chosen layers (output of decoder layer i,
 * before the final norm) into a features tensor and (b) writes logits of the step's last
 * row or of a range of its rows. Steps are recorded into a caller's vkd_rec, so a caller
 * can append its own ops (argmax, sampling, draft forward) to the same submission. */
#ifndef VKD_TARGET_H
#define VKD_TARGET_H

#include "config.h"
#include "vkd_ops.h"

#include "layer.h"   /* vkd_layer, vkd_linear; checkpoint reading (safetensors.h) stays inside models/ */

typedef struct vkd_target_options {
    uint32_t ctx_len;          /* KV cache capacity in tokens; 0: min(max_position_embeddings, 4096) */
    uint32_t max_rows;         /* rows per forward step (longer prompts run in steps); 0: 256 */
    vkd_dtype kv_dtype;        /* VKD_DTYPE_F32 (default, 0) or VKD_DTYPE_F16 */
    bool frozen_head;          /* embedding and lm_head in vkd_ctx_frozen_weight_layout even in a
                                * row_major_weights context: TTT, whose draft reads them only in
                                * forward ops and the fused loss (the layers keep the context's) */
} vkd_target_options;

typedef struct vkd_target {
    vkd_ctx *ctx;
    vkd_cfg cfg;
    vkd_gen_cfg gen;
    uint32_t hidden, n_layers, n_q, n_kv, head_dim, ffn, vocab;
    bool qk_norm;              /* Qwen3 */
    vkd_tensor *embed, *lm_head, *norm, *inv_freq;
    vkd_layer *layers;
    uint32_t ctx_len, max_rows, logit_rows;
    uint32_t len;              /* tokens in the KV cache */
    uint64_t weight_bytes;     /* bytes of weights one decode step reads */
    /* scratch, max_rows rows each */
    vkd_tensor *ids, *x, *a, *q, *k, *v, *o, *g, *u;
    vkd_tensor *qkv;           /* the buffer q, k and v are views of (vkd_scratch_group), or NULL */
    vkd_tensor *logits;        /* logit_rows x vocab, f32 */
    vkd_tensor *lm_part;       /* candidates of the greedy LM head (vkd_op_matmul_argmax) for
                                * logit_rows rows; NULL unless lm_head is in texel blocks */
    vkd_tensor *attn_part;     /* split-K attention partials (vkd_op_attention_split) for
                                * max_rows rows; NULL where the device profile never splits */
} vkd_target;

/* Loads config.json, generation_config.json and the weights of a Qwen3ForCausalLM or
 * LlamaForCausalLM folder; weights keep their checkpoint dtype on the device. */
vkd_result vkd_target_load(vkd_ctx *ctx, const char *dir, const vkd_target_options *opt,
                           vkd_target **out, vkd_error *err);
void vkd_target_free(vkd_target *t);

typedef struct vkd_target_step {
    const int32_t *ids;        /* m token ids, appended at positions t->len .. t->len+m-1 */
    uint32_t m;                /* 1 <= m <= t->max_rows */
    /* logits: rows [logits_row0, logits_row0 + logits_rows) of this step into t->logits
     * rows 0..; logits_rows = 0: none; logits_rows <= t->logit_rows */
    uint32_t logits_row0, logits_rows;
    /* taps: layers tap_layers[0..ntaps) copied side by side (column block i*hidden) into
     * features rows [feat_row0, feat_row0 + m); features: f32, >= ntaps*hidden columns */
    const uint32_t *tap_layers;
    uint32_t ntaps;
    vkd_tensor *features;
    uint32_t feat_row0;
    /* argmax: when set (i32, >= logits_rows), the argmax of each logits row goes to
     * argmax[0..logits_rows) (vkd_op_argmax's ties and -1 for a NaN/+Inf row); with a
     * texel-block lm_head the logits are then never written (t->logits left as it was) */
    vkd_tensor *argmax;
    /* final_h: when set (f32, >= hidden columns, >= final_row0 + m rows), the final-normed
     * hidden states of the step's rows (what the lm_head reads) go to rows [final_row0, +m) */
    vkd_tensor *final_h;
    uint32_t final_row0;
    /* hidden: copy every layer's output? (forward --layers) use taps instead */
} vkd_target_step;

/* Records one step into rec (between vkd_rec_begin and vkd_rec_submit) and advances
 * t->len by m. Token ids must be < vocab; t->len + m must fit the KV cache. */
vkd_result vkd_target_step_record(vkd_target *t, vkd_rec *rec, const vkd_target_step *s,
                                  vkd_error *err);
/* Rolls the KV cache back to len tokens (len <= t->len): rejected tokens are forgotten. */
vkd_result vkd_target_crop(vkd_target *t, uint32_t len, vkd_error *err);

/* Convenience: runs ids through the model in steps of max_rows (one submission each) and
 * leaves the logits of the last token in `last_logits` (vocab floats, may be NULL). */
vkd_result vkd_target_prefill(vkd_target *t, vkd_rec *rec, const int32_t *ids, uint32_t n,
                              float *last_logits, vkd_error *err);

/* RoPE inverse frequencies (head_dim/2 floats) of a config, llama3 scaling applied, in
 * float32 as transformers computes them. */
void vkd_rope_inv_freq(const vkd_cfg *c, uint32_t head_dim, float *out);

#endif
