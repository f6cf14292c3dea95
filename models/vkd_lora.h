/* vkd_lora.h: LoRA adapters on the DFlash draft's linear layers, in PyTorch PEFT's layout.
 *
 * A LoRA module adds to a linear y = x W^T (W: out x in) the term scale * (x A^T) B^T with
 * A: r x in, B: out x r, scale = alpha / r (alpha / sqrt(r) with use_rslora). A starts as
 * PEFT's nn.init.kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), drawn from
 * Philox4x32-10 (vkd_philox4x32: key = seed, counter = (FNV-1a 64 of the module path,
 * element / 4), word element % 4, u = (word >> 8) * 2^-24, A = (2u - 1) / sqrt(in)), so
 * one module's values do not depend on which other modules are adapted; B starts at zero
 * (an untrained adapter changes nothing).
 *
 * On disk (a folder, as PEFT's save_pretrained writes it):
 *   adapter_config.json        peft_type "LORA", r, lora_alpha, target_modules (list of
 *                              module-name suffixes), lora_dropout, bias "none",
 *                              base_model_name_or_path, task_type null, ...
 *   adapter_model.safetensors  base_model.model.<module path>.lora_A.weight  (r x in)
 *                              base_model.model.<module path>.lora_B.weight  (out x r)
 * Module paths are the draft checkpoint's: "fc", "layers.<i>.self_attn.{q,k,v,o}_proj",
 * "layers.<i>.mlp.{gate,up,down}_proj". Saved in f32; loaded from f32, bf16 or f16.
 * The host struct holds plain f32 arrays; vkd_lora_upload makes device tensors for the
 * draft's linears (A: r x in, B: out x r, f32), vkd_lora_download reads trained ones back. */
#ifndef VKD_LORA_H
#define VKD_LORA_H

#include "vkd_runtime.h"

#define VKD_LORA_MAX_TARGETS 8
#define VKD_LORA_PATH_MAX 64

/* The shapes of a DFlash draft that decide which linears exist and their sizes. */
typedef struct vkd_lora_dims {
    uint32_t hidden, n_layers, n_q, n_kv, head_dim, ffn, ntaps;
} vkd_lora_dims;

typedef struct vkd_lora_module {
    char path[VKD_LORA_PATH_MAX];  /* module path in the draft, e.g. "layers.0.self_attn.k_proj" */
    uint32_t in, out;              /* the linear's in_features, out_features */
    float *a;                      /* r x in (lora_A.weight) */
    float *b;                      /* out x r (lora_B.weight) */
} vkd_lora_module;

typedef struct vkd_lora {
    uint32_t rank;
    float alpha;
    bool rslora;                   /* use_rslora: scale = alpha / sqrt(r) */
    float scale;                   /* alpha / r (or alpha / sqrt(r)) */
    float dropout;                 /* lora_dropout as read (training here uses none) */
    uint32_t ntargets;
    char targets[VKD_LORA_MAX_TARGETS][48]; /* target_modules: name suffixes such as "k_proj" */
    char base_model[512];          /* base_model_name_or_path ("" = null) */
    uint32_t nmodules;
    vkd_lora_module *modules;      /* in draft order: fc, then per layer q,k,v,o,gate,up,down */
} vkd_lora;

/* The short names a draft linear answers to, in draft order. */
extern const char *const vkd_lora_linear_names[8];
/* in/out features of module `path` of a draft with these dims; false if no such linear. */
bool vkd_lora_linear_shape(const vkd_lora_dims *dims, const char *path, uint32_t *in, uint32_t *out);

/* A fresh adapter: A Kaiming-uniform from (seed, module path), B = 0. targets: short names
 * (each must name a draft linear; no duplicates); rank >= 1; alpha > 0. */
vkd_result vkd_lora_create(const vkd_lora_dims *dims, const char *const *targets, uint32_t ntargets,
                           uint32_t rank, float alpha, uint64_t seed, const char *base_model,
                           vkd_lora **out, vkd_error *err);
void vkd_lora_free(vkd_lora *l);
const vkd_lora_module *vkd_lora_find(const vkd_lora *l, const char *path);

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (f32), each through a
 * temporary file and rename; creates dir if missing. */
vkd_result vkd_lora_save(const vkd_lora *l, const char *dir, vkd_error *err);
/* Reads an adapter folder and checks it against the draft: peft_type LORA, bias none, no
 * per-layer rank/alpha patterns, fan_in_fan_out false, no DoRA; every target a draft linear;
 * exactly the expected tensors with shapes [r, in] and [out, r]. Errors name the file and
 * the field or tensor. */
vkd_result vkd_lora_load(const char *dir, const vkd_lora_dims *dims, vkd_lora **out, vkd_error *err);

/* Device copies of every module's A and B (f32, one binding each), same order as modules. */
typedef struct vkd_lora_device {
    uint32_t n;
    vkd_tensor **a, **b;
} vkd_lora_device;
vkd_result vkd_lora_upload(const vkd_lora *l, vkd_ctx *ctx, vkd_lora_device **out, vkd_error *err);
/* Copies the device values back into the host arrays (after training). */
vkd_result vkd_lora_download(vkd_lora *l, const vkd_lora_device *d, vkd_error *err);
void vkd_lora_device_free(vkd_lora_device *d);

#endif
