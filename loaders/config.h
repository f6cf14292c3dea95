/* config.h: a model folder's config.json and generation_config.json.
 *
 * Architectures: Qwen3ForCausalLM, LlamaForCausalLM (Llama 3.x, optional llama3 RoPE
 * scaling) and z-lab's DFlashDraftModel (a Qwen3 config plus dflash_config
 * {target_layer_ids, mask_token_id, block_size}). Defaults follow transformers'
 * Qwen3Config / LlamaConfig where a field is optional; required fields that are missing,
 * values of the wrong JSON type, sizes that do not fit together and features vkdraft does
 * not implement (attention bias, sliding windows, other RoPE types, other activations) give
 * one error line naming the file, the field and what was expected.
 *
 * vkd_cfg_check_tensors() compares a model folder's tensors with the names and shapes the
 * architecture needs; vkd_cfg_expected_tensors() gives that list to model loaders. */
#ifndef VKD_CONFIG_H
#define VKD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "vkd_base.h"

#define VKD_CFG_MAX_EOS 8
#define VKD_CFG_MAX_TAPS 64
#define VKD_CFG_DEFAULT_BLOCK_SIZE 16 /* z-lab/dflash's default when the config has none */

typedef enum vkd_arch {
    VKD_ARCH_QWEN3 = 1,  /* Qwen3ForCausalLM: q_norm/k_norm per head */
    VKD_ARCH_LLAMA,      /* LlamaForCausalLM */
    VKD_ARCH_DFLASH,     /* DFlashDraftModel: Qwen3 layers, fc, hidden_norm, no embeddings */
} vkd_arch;

const char *vkd_arch_name(vkd_arch a); /* "Qwen3ForCausalLM" ... */

typedef struct vkd_rope_scaling {
    bool llama3;                 /* false: plain RoPE (rope_scaling null or "default") */
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_max_position_embeddings;
} vkd_rope_scaling;

typedef struct vkd_cfg {
    vkd_arch arch;
    int64_t hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
        head_dim, intermediate_size, vocab_size, max_position_embeddings;
    double rms_norm_eps, rope_theta;
    vkd_rope_scaling rope_scaling;
    bool tie_word_embeddings;
    bool qk_norm;                /* per-head RMSNorm of q and k (Qwen3, DFlash) */
    bool has_dtype;              /* torch_dtype / dtype present */
    vkd_dtype dtype;             /* BF16, F16 or F32 when has_dtype */
    int64_t bos_token_id;        /* -1: none */
    int n_eos;
    int64_t eos_token_ids[VKD_CFG_MAX_EOS];
    /* DFlash draft only */
    int n_target_layer_ids;      /* taps: fc's input is n_target_layer_ids * hidden_size */
    int64_t target_layer_ids[VKD_CFG_MAX_TAPS];
    bool target_layer_ids_pending; /* absent and no num_target_layers: vkd_cfg_dflash_resolve
                                      fills them from the target's layer count */
    int64_t num_target_layers;   /* 0 when absent */
    int64_t mask_token_id;
    int64_t block_size;
} vkd_cfg;

/* Parses n bytes of config.json; name is used in messages ("config.json"). */
vkd_result vkd_cfg_parse(const char *json, size_t n, const char *name, vkd_cfg *cfg,
                         vkd_error *err);
/* Reads dir/config.json. */
vkd_result vkd_cfg_load(const char *dir, vkd_cfg *cfg, vkd_error *err);

/* z-lab's build_target_layer_ids: round(1 + i*(L-4)/(n-1)) for i < n, or {L/2} for n = 1
 * (Python rounding: half to even). Writes n ids; n in [1, VKD_CFG_MAX_TAPS], L >= 1. */
void vkd_cfg_dflash_default_ids(int64_t n_target_layers, int n, int64_t *ids);
/* Completes and checks a draft config against its target: fills pending layer ids from the
 * target's num_hidden_layers, then checks ids < target layers, equal hidden sizes and
 * vocabularies, mask_token_id in the vocabulary. */
vkd_result vkd_cfg_dflash_resolve(vkd_cfg *draft, const vkd_cfg *target, vkd_error *err);

/* ---- generation_config.json: sampling defaults that command-line flags override ---- */
typedef struct vkd_gen_cfg {
    bool present;                /* the file exists */
    int64_t bos_token_id, pad_token_id; /* -1: none */
    int n_eos;
    int64_t eos_token_ids[VKD_CFG_MAX_EOS];
    bool do_sample;              /* default false */
    double temperature;          /* default 1.0 */
    double top_p;                /* default 1.0 */
    int64_t top_k;               /* default 50, as transformers' GenerationConfig */
} vkd_gen_cfg;

void vkd_gen_cfg_defaults(vkd_gen_cfg *g);
vkd_result vkd_gen_cfg_parse(const char *json, size_t n, const char *name, vkd_gen_cfg *g,
                             vkd_error *err);
/* Reads dir/generation_config.json; a missing file leaves the defaults (not an error). */
vkd_result vkd_gen_cfg_load(const char *dir, vkd_gen_cfg *g, vkd_error *err);

/* ---- expected tensors ---- */
typedef struct vkd_cfg_tensor {
    char name[96];
    int rank;                    /* 1 or 2 */
    int64_t shape[2];            /* rows x columns for matrices (out_features x in_features) */
    bool optional;               /* lm_head.weight of a tied model */
} vkd_cfg_tensor;

/* The tensors the architecture reads, in a fixed order: embeddings, layers 0..L-1
 * (input_layernorm, q, k, v, o, q_norm, k_norm, post_attention_layernorm, gate, up, down),
 * final norm, lm_head. *out is malloc'd (free() it). */
vkd_result vkd_cfg_expected_tensors(const vkd_cfg *cfg, vkd_cfg_tensor **out, size_t *n,
                                    vkd_error *err);

/* Called once per problem found, with a one-line description. */
typedef void (*vkd_cfg_problem_fn)(void *user, const char *problem);

/* Checks m against cfg: every expected tensor present with its shape, a float dtype
 * (BF16/F16/F32) equal to the config's dtype when it has one, no unexpected tensors.
 * Each problem goes to fn (may be NULL); the result is VKD_ERR_FORMAT when any was found,
 * with err naming the first and the count. Opens the shards it needs. */
vkd_result vkd_cfg_check_tensors(const vkd_cfg *cfg, vkd_st_model *m, vkd_cfg_problem_fn fn,
                                 void *user, vkd_error *err);

#endif
