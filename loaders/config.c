/* config.c: config.json / generation_config.json parsing and the expected-tensor checker. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* Sanity bounds: far above any real model, low enough that shape products stay in int64. */
#define MAX_HIDDEN (1 << 20)
#define MAX_FFN (1 << 22)
#define MAX_VOCAB (1 << 24)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 4096
#define MAX_POSITIONS ((int64_t)1 << 40)
#define MAX_TOKEN_ID ((int64_t)1 << 31)

const char *vkd_arch_name(vkd_arch a) {
    switch (a) {
    case VKD_ARCH_QWEN3: return "Qwen3ForCausalLM";
    case VKD_ARCH_LLAMA: return "LlamaForCausalLM";
    case VKD_ARCH_DFLASH: return "DFlashDraftModel";
    }
    return "?";
}

/* "got 5" / "got a string" for messages. */
static const char *got(const cJSON *item, char *buf, size_t cap) {
    if (cJSON_IsNumber(item) && isfinite(item->valuedouble)) {
        snprintf(buf, cap, "%.17g", item->valuedouble);
        return buf;
    }
    if (cJSON_IsString(item)) {
        snprintf(buf, cap, "'%.60s'", item->valuestring);
        return buf;
    }
    return vkd_json_type_name(item);
}

typedef struct ctx {
    const char *file;
    const cJSON *root;
    vkd_error *err;
} ctx;

static const cJSON *field(const ctx *c, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(c->root, key);
}

/* Present and not null. */
static bool given(const cJSON *item) { return item && !cJSON_IsNull(item); }

static vkd_result bad(const ctx *c, vkd_result code, const char *key, const char *expected,
                      const cJSON *item) {
    char b[96];
    return vkd_fail(c->err, code, "%s: field '%s': expected %s, got %s", c->file, key, expected,
                    got(item, b, sizeof b));
}

/* Integer field in [lo, hi]; absent/null gives def, or an error when required. */
static vkd_result get_int(const ctx *c, const cJSON *item, const char *key, int64_t lo,
                          int64_t hi, bool required, int64_t def, int64_t *out) {
    if (!given(item)) {
        if (required)
            return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field '%s' is missing (expected an "
                            "integer in [%lld, %lld])", c->file, key, (long long)lo, (long long)hi);
        *out = def;
        return VKD_OK;
    }
    if (!vkd_json_int(item, lo, hi, out)) {
        char exp[96];
        if (lo == 1)
            snprintf(exp, sizeof exp, "a positive integer <= %lld", (long long)hi);
        else
            snprintf(exp, sizeof exp, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        return bad(c, VKD_ERR_FORMAT, key, exp, item);
    }
    return VKD_OK;
}

/* Number field > 0 (strictly when positive) or >= 0; absent/null gives def. */
static vkd_result get_num(const ctx *c, const cJSON *item, const char *key, bool positive,
                          double def, double *out) {
    if (!given(item)) {
        *out = def;
        return VKD_OK;
    }
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) ||
        (positive ? item->valuedouble <= 0 : item->valuedouble < 0))
        return bad(c, VKD_ERR_FORMAT, key, positive ? "a positive number" : "a non-negative number",
                   item);
    *out = item->valuedouble;
    return VKD_OK;
}

static vkd_result get_bool(const ctx *c, const cJSON *item, const char *key, bool def, bool *out) {
    if (!given(item)) {
        *out = def;
        return VKD_OK;
    }
    if (!cJSON_IsBool(item)) return bad(c, VKD_ERR_FORMAT, key, "true or false", item);
    *out = cJSON_IsTrue(item);
    return VKD_OK;
}

/* Token id list: an integer, a list of integers, or null. vocab 0 skips the range check. */
static vkd_result get_ids(const ctx *c, const cJSON *item, const char *key, int64_t vocab,
                          int64_t *ids, int *n) {
    *n = 0;
    if (!given(item)) return VKD_OK;
    const cJSON *one = item;
    bool list = cJSON_IsArray(item);
    if (list) {
        if (cJSON_GetArraySize(item) > VKD_CFG_MAX_EOS)
            return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field '%s': more than %d token ids",
                            c->file, key, VKD_CFG_MAX_EOS);
        one = item->child;
    }
    for (; one; one = list ? one->next : NULL) {
        int64_t v;
        if (!vkd_json_int(one, 0, MAX_TOKEN_ID, &v))
            return bad(c, VKD_ERR_FORMAT, key, "a token id (non-negative integer) or a list of them",
                       one);
        if (vocab && v >= vocab)
            return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field '%s': token id %lld is not below "
                            "vocab_size (%lld)", c->file, key, (long long)v, (long long)vocab);
        ids[(*n)++] = v;
    }
    return VKD_OK;
}

static vkd_result get_dtype(const ctx *c, vkd_cfg *cfg) {
    const char *key = "dtype";
    const cJSON *item = field(c, key);
    if (!given(item)) item = field(c, key = "torch_dtype");
    if (!given(item)) return VKD_OK;
    static const struct { const char *name; vkd_dtype dt; } names[] = {
        {"bfloat16", VKD_DTYPE_BF16}, {"float16", VKD_DTYPE_F16}, {"float32", VKD_DTYPE_F32},
        {"torch.bfloat16", VKD_DTYPE_BF16}, {"torch.float16", VKD_DTYPE_F16},
        {"torch.float32", VKD_DTYPE_F32}};
    if (cJSON_IsString(item))
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(item->valuestring, names[i].name)) {
                cfg->dtype = names[i].dt;
                cfg->has_dtype = true;
                return VKD_OK;
            }
    return bad(c, cJSON_IsString(item) ? VKD_ERR_UNSUPPORTED : VKD_ERR_FORMAT, key,
               "\"bfloat16\", \"float16\" or \"float32\"", item);
}

/* rope_scaling (or transformers 5's rope_parameters): null/default, or llama3. */
static vkd_result get_rope(const ctx *c, vkd_cfg *cfg) {
    const char *key = "rope_scaling";
    const cJSON *rs = field(c, key);
    const cJSON *rp = field(c, "rope_parameters");
    if (!given(rs) && cJSON_IsObject(rp)) {
        rs = rp;
        key = "rope_parameters";
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
        if (given(th) && !given(field(c, "rope_theta"))) {
            vkd_result r = get_num(c, th, "rope_parameters.rope_theta", true, 10000.0,
                                   &cfg->rope_theta);
            if (r != VKD_OK) return r;
        }
    }
    if (!given(rs)) return VKD_OK;
    if (!cJSON_IsObject(rs)) return bad(c, VKD_ERR_FORMAT, key, "null or an object", rs);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!given(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(type)) {
        char k[64];
        snprintf(k, sizeof k, "%s.rope_type", key);
        return bad(c, VKD_ERR_FORMAT, k, "a string", type);
    }
    if (!strcmp(type->valuestring, "default")) return VKD_OK;
    if (strcmp(type->valuestring, "llama3") != 0)
        return vkd_fail(c->err, VKD_ERR_UNSUPPORTED, "%s: field '%s': rope type '%.40s' is not "
                        "supported (expected null, \"default\" or \"llama3\")", c->file, key,
                        type->valuestring);
    vkd_rope_scaling *s = &cfg->rope_scaling;
    s->llama3 = true;
    struct { const char *name; double *dst; } nums[] = {
        {"factor", &s->factor}, {"low_freq_factor", &s->low_freq_factor},
        {"high_freq_factor", &s->high_freq_factor}};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rs, nums[i].name);
        char k[64];
        snprintf(k, sizeof k, "%s.%s", key, nums[i].name);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
            return bad(c, VKD_ERR_FORMAT, k, "a positive number", v);
        *nums[i].dst = v->valuedouble;
    }
    char k[80];
    snprintf(k, sizeof k, "%s.original_max_position_embeddings", key);
    vkd_result r = get_int(c, cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings"),
                           k, 1, MAX_POSITIONS, true, 0, &s->original_max_position_embeddings);
    if (r != VKD_OK) return r;
    if (s->factor < 1.0)
        return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field '%s.factor': expected a number >= 1, "
                        "got %g", c->file, key, s->factor);
    if (s->high_freq_factor <= s->low_freq_factor)
        return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field '%s.high_freq_factor': expected more "
                        "than low_freq_factor (%g), got %g", c->file, key, s->low_freq_factor,
                        s->high_freq_factor);
    return VKD_OK;
}

/* Rejects features vkdraft does not implement. */
static vkd_result check_unsupported(const ctx *c) {
    const char *false_fields[] = {"attention_bias", "mlp_bias", "use_sliding_window"};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = field(c, false_fields[i]);
        if (!given(v)) continue;
        if (!cJSON_IsBool(v)) return bad(c, VKD_ERR_FORMAT, false_fields[i], "false", v);
        if (cJSON_IsTrue(v))
            return vkd_fail(c->err, VKD_ERR_UNSUPPORTED, "%s: field '%s': true is not supported "
                            "(expected false)", c->file, false_fields[i]);
    }
    const cJSON *act = field(c, "hidden_act");
    if (given(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return bad(c, cJSON_IsString(act) ? VKD_ERR_UNSUPPORTED : VKD_ERR_FORMAT, "hidden_act",
                   "\"silu\"", act);
    const cJSON *lt = field(c, "layer_types");
    if (given(lt)) {
        if (!cJSON_IsArray(lt)) return bad(c, VKD_ERR_FORMAT, "layer_types", "an array", lt);
        for (const cJSON *e = lt->child; e; e = e->next)
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention") != 0)
                return bad(c, cJSON_IsString(e) ? VKD_ERR_UNSUPPORTED : VKD_ERR_FORMAT,
                           "layer_types", "only \"full_attention\" entries", e);
    }
    return VKD_OK;
}

/* Picks the architecture from architectures[0], else model_type (+ dflash_config). */
static vkd_result get_arch(const ctx *c, vkd_cfg *cfg) {
    const cJSON *archs = field(c, "architectures");
    const cJSON *mt = field(c, "model_type");
    if (given(mt) && !cJSON_IsString(mt)) return bad(c, VKD_ERR_FORMAT, "model_type", "a string", mt);
    if (given(archs)) {
        if (!cJSON_IsArray(archs) || !cJSON_IsString(archs->child))
            return bad(c, VKD_ERR_FORMAT, "architectures", "a list of strings",
                       cJSON_IsArray(archs) ? archs->child : archs);
        const char *a = archs->child->valuestring;
        if (!strcmp(a, "Qwen3ForCausalLM")) cfg->arch = VKD_ARCH_QWEN3;
        else if (!strcmp(a, "LlamaForCausalLM")) cfg->arch = VKD_ARCH_LLAMA;
        else if (!strcmp(a, "DFlashDraftModel")) cfg->arch = VKD_ARCH_DFLASH;
        else
            return vkd_fail(c->err, VKD_ERR_UNSUPPORTED, "%s: field 'architectures': unsupported "
                            "architecture '%.60s' (expected Qwen3ForCausalLM, LlamaForCausalLM or "
                            "DFlashDraftModel)", c->file, a);
    } else if (given(mt)) {
        const char *t = mt->valuestring;
        if (!strcmp(t, "qwen3"))
            cfg->arch = given(field(c, "dflash_config")) ? VKD_ARCH_DFLASH : VKD_ARCH_QWEN3;
        else if (!strcmp(t, "llama")) cfg->arch = VKD_ARCH_LLAMA;
        else
            return vkd_fail(c->err, VKD_ERR_UNSUPPORTED, "%s: field 'model_type': unsupported "
                            "model type '%.60s' (expected \"qwen3\" or \"llama\")", c->file, t);
    } else {
        return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: fields 'architectures' and 'model_type' are "
                        "both missing (expected e.g. [\"Qwen3ForCausalLM\"])", c->file);
    }
    if (given(mt)) {
        const char *want = cfg->arch == VKD_ARCH_LLAMA ? "llama" : "qwen3";
        if (strcmp(mt->valuestring, want) != 0)
            return vkd_fail(c->err, VKD_ERR_FORMAT, "%s: field 'model_type': expected \"%s\" for "
                            "%s, got '%.40s'", c->file, want, vkd_arch_name(cfg->arch),
                            mt->valuestring);
    }
    return VKD_OK;
}

/* Value of a DFlash field: dflash_config.<key>, else the top-level <key> (as z-lab reads it). */
static const cJSON *dflash_field(const ctx *c, const cJSON *dc, const char *key, char *name,
                                 size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(dc, key);
    snprintf(name, cap, "dflash_config.%s", key);
    if (!given(v) && given(field(c, key))) {
        v = field(c, key);
        snprintf(name, cap, "%s", key);
    }
    return v;
}

static vkd_result get_dflash(const ctx *c, vkd_cfg *cfg) {
    const cJSON *dc = field(c, "dflash_config");
    if (!cJSON_IsObject(dc)) return bad(c, VKD_ERR_FORMAT, "dflash_config", "an object", dc);
    char key[64];
    vkd_result r;
    r = get_int(c, field(c, "num_target_layers"), "num_target_layers", 1, MAX_LAYERS, false, 0,
                &cfg->num_target_layers);
    if (r != VKD_OK) return r;
    const cJSON *ids = dflash_field(c, dc, "target_layer_ids", key, sizeof key);
    if (given(ids)) {
        int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : 0;
        if (n < 1 || n > VKD_CFG_MAX_TAPS)
            return bad(c, VKD_ERR_FORMAT, key, "a list of 1 to 64 layer indices", ids);
        int64_t hi = cfg->num_target_layers ? cfg->num_target_layers - 1 : MAX_LAYERS - 1;
        int i = 0;
        for (const cJSON *e = ids->child; e; e = e->next, i++) {
            char exp[80];
            snprintf(exp, sizeof exp, "layer indices in [0, %lld]%s", (long long)hi,
                     cfg->num_target_layers ? " (below num_target_layers)" : "");
            if (!vkd_json_int(e, 0, hi, &cfg->target_layer_ids[i]))
                return bad(c, VKD_ERR_FORMAT, key, exp, e);
        }
        cfg->n_target_layer_ids = n;
    } else {
        /* z-lab's fallback: one tap per draft layer, spread over the target's layers */
        if (cfg->num_hidden_layers > VKD_CFG_MAX_TAPS)
            return vkd_fail(c->err, VKD_ERR_UNSUPPORTED, "%s: field 'num_hidden_layers': more "
                            "than %d draft layers", c->file, VKD_CFG_MAX_TAPS);
        cfg->n_target_layer_ids = (int)cfg->num_hidden_layers;
        if (cfg->num_target_layers)
            vkd_cfg_dflash_default_ids(cfg->num_target_layers, cfg->n_target_layer_ids,
                                       cfg->target_layer_ids);
        else
            cfg->target_layer_ids_pending = true;
    }
    const cJSON *mask = dflash_field(c, dc, "mask_token_id", key, sizeof key);
    r = get_int(c, mask, key, 0, cfg->vocab_size - 1, true, 0, &cfg->mask_token_id);
    if (r != VKD_OK) return r;
    const cJSON *bs = dflash_field(c, dc, "block_size", key, sizeof key);
    r = get_int(c, bs, key, 1, 4096, false, VKD_CFG_DEFAULT_BLOCK_SIZE, &cfg->block_size);
    if (r != VKD_OK) return r;
    /* newer z-lab options that change the math; only their neutral values are supported */
    const char *neutral[] = {"input_embedding_scale", "output_multiplier"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = dflash_field(c, dc, neutral[i], key, sizeof key);
        if (given(v) && (!cJSON_IsNumber(v) || v->valuedouble != 1.0))
            return bad(c, VKD_ERR_UNSUPPORTED, key, "1 (other values are not supported)", v);
    }
    const cJSON *cap = dflash_field(c, dc, "final_logit_softcapping", key, sizeof key);
    if (given(cap) && (!cJSON_IsNumber(cap) || cap->valuedouble > 0))
        return bad(c, VKD_ERR_UNSUPPORTED, key, "null (soft-capping is not supported)", cap);
    return VKD_OK;
}

void vkd_cfg_dflash_default_ids(int64_t n_target_layers, int n, int64_t *ids) {
    if (n == 1) {
        ids[0] = n_target_layers / 2;
        return;
    }
    double span = (double)(n_target_layers - 3 - 1);
    for (int i = 0; i < n; i++)
        ids[i] = (int64_t)nearbyint(1.0 + (double)i * span / (double)(n - 1)); /* half to even */
}

vkd_result vkd_cfg_parse(const char *json, size_t n, const char *name, vkd_cfg *cfg,
                         vkd_error *err) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = NULL;
    vkd_result r = vkd_json_parse(json, n, name, &root, err);
    if (r != VKD_OK) return r;
    ctx c = {name, root, err};
    if (!cJSON_IsObject(root)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: expected a JSON object, got %s", name,
                     vkd_json_type_name(root));
        goto done;
    }
    const char *dup = vkd_json_duplicate_key(root);
    if (dup) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field '%s' appears twice", name, dup);
        goto done;
    }
    if ((r = get_arch(&c, cfg)) != VKD_OK) goto done;
    if ((r = check_unsupported(&c)) != VKD_OK) goto done;
    struct { const char *key; int64_t hi; int64_t *dst; } req[] = {
        {"hidden_size", MAX_HIDDEN, &cfg->hidden_size},
        {"num_hidden_layers", MAX_LAYERS, &cfg->num_hidden_layers},
        {"num_attention_heads", MAX_HEADS, &cfg->num_attention_heads},
        {"intermediate_size", MAX_FFN, &cfg->intermediate_size},
        {"vocab_size", MAX_VOCAB, &cfg->vocab_size},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if ((r = get_int(&c, field(&c, req[i].key), req[i].key, 1, req[i].hi, true, 0,
                         req[i].dst)) != VKD_OK)
            goto done;
    int64_t H = cfg->hidden_size, nq = cfg->num_attention_heads;
    const cJSON *kv = field(&c, "num_key_value_heads");
    if (given(kv)) {
        int64_t v;
        if (!vkd_json_int(kv, 1, nq, &v) || nq % v != 0) {
            char exp[96];
            snprintf(exp, sizeof exp, "a positive integer dividing num_attention_heads (%lld)",
                     (long long)nq);
            r = bad(&c, VKD_ERR_FORMAT, "num_key_value_heads", exp, kv);
            goto done;
        }
        cfg->num_key_value_heads = v;
    } else {
        cfg->num_key_value_heads = nq;
    }
    const cJSON *hd = field(&c, "head_dim");
    if (given(hd)) {
        if ((r = get_int(&c, hd, "head_dim", 2, MAX_HEAD_DIM, true, 0, &cfg->head_dim)) != VKD_OK)
            goto done;
    } else if (H % nq != 0) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field 'head_dim' is missing and hidden_size (%lld) "
                     "is not a multiple of num_attention_heads (%lld)", name, (long long)H,
                     (long long)nq);
        goto done;
    } else {
        cfg->head_dim = H / nq;
    }
    if (cfg->head_dim % 2 != 0) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field 'head_dim': expected an even number (RoPE "
                     "rotates pairs), got %lld", name, (long long)cfg->head_dim);
        goto done;
    }
    int64_t def_pos = cfg->arch == VKD_ARCH_LLAMA ? 2048 : 32768;
    if ((r = get_int(&c, field(&c, "max_position_embeddings"), "max_position_embeddings", 1,
                     MAX_POSITIONS, false, def_pos, &cfg->max_position_embeddings)) != VKD_OK ||
        (r = get_num(&c, field(&c, "rms_norm_eps"), "rms_norm_eps", true, 1e-6,
                     &cfg->rms_norm_eps)) != VKD_OK ||
        (r = get_num(&c, field(&c, "rope_theta"), "rope_theta", true, 10000.0,
                     &cfg->rope_theta)) != VKD_OK ||
        (r = get_rope(&c, cfg)) != VKD_OK ||
        (r = get_bool(&c, field(&c, "tie_word_embeddings"), "tie_word_embeddings", false,
                      &cfg->tie_word_embeddings)) != VKD_OK ||
        (r = get_dtype(&c, cfg)) != VKD_OK)
        goto done;
    if ((r = get_int(&c, field(&c, "bos_token_id"), "bos_token_id", 0, cfg->vocab_size - 1, false,
                     -1, &cfg->bos_token_id)) != VKD_OK)
        goto done;
    if ((r = get_ids(&c, field(&c, "eos_token_id"), "eos_token_id", cfg->vocab_size,
                     cfg->eos_token_ids, &cfg->n_eos)) != VKD_OK)
        goto done;
    if (cfg->rope_scaling.llama3 &&
        cfg->rope_scaling.original_max_position_embeddings > cfg->max_position_embeddings) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field 'rope_scaling.original_max_position_embeddings'"
                     ": expected at most max_position_embeddings (%lld), got %lld", name,
                     (long long)cfg->max_position_embeddings,
                     (long long)cfg->rope_scaling.original_max_position_embeddings);
        goto done;
    }
    cfg->qk_norm = cfg->arch != VKD_ARCH_LLAMA;
    if (cfg->arch == VKD_ARCH_DFLASH) r = get_dflash(&c, cfg);
done:
    cJSON_Delete(root);
    return r;
}

vkd_result vkd_cfg_load(const char *dir, vkd_cfg *cfg, vkd_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *buf;
    size_t n;
    vkd_result r = vkd_json_read_file(path, CONFIG_MAX_BYTES, &buf, &n, NULL, err);
    if (r != VKD_OK) return r;
    r = vkd_cfg_parse(buf, n, path, cfg, err);
    free(buf);
    return r;
}

vkd_result vkd_cfg_dflash_resolve(vkd_cfg *d, const vkd_cfg *t, vkd_error *err) {
    if (d->arch != VKD_ARCH_DFLASH)
        return vkd_fail(err, VKD_ERR_INVALID, "draft config: architecture is %s, expected "
                        "DFlashDraftModel", vkd_arch_name(d->arch));
    if (t->arch == VKD_ARCH_DFLASH)
        return vkd_fail(err, VKD_ERR_INVALID, "target config: a DFlash draft cannot be a target");
    if (d->target_layer_ids_pending) {
        vkd_cfg_dflash_default_ids(t->num_hidden_layers, d->n_target_layer_ids, d->target_layer_ids);
        d->target_layer_ids_pending = false;
    }
    if (d->num_target_layers && d->num_target_layers != t->num_hidden_layers)
        return vkd_fail(err, VKD_ERR_INVALID, "draft config: num_target_layers is %lld but the "
                        "target has %lld layers", (long long)d->num_target_layers,
                        (long long)t->num_hidden_layers);
    for (int i = 0; i < d->n_target_layer_ids; i++)
        if (d->target_layer_ids[i] < 0 || d->target_layer_ids[i] >= t->num_hidden_layers)
            return vkd_fail(err, VKD_ERR_INVALID, "draft config: target_layer_ids[%d] = %lld is "
                            "not a layer of the target (%lld layers)", i,
                            (long long)d->target_layer_ids[i], (long long)t->num_hidden_layers);
    if (d->hidden_size != t->hidden_size)
        return vkd_fail(err, VKD_ERR_INVALID, "draft config: hidden_size %lld differs from the "
                        "target's %lld", (long long)d->hidden_size, (long long)t->hidden_size);
    if (d->vocab_size != t->vocab_size)
        return vkd_fail(err, VKD_ERR_INVALID, "draft config: vocab_size %lld differs from the "
                        "target's %lld", (long long)d->vocab_size, (long long)t->vocab_size);
    return VKD_OK;
}

/* ---- generation_config.json ---- */

void vkd_gen_cfg_defaults(vkd_gen_cfg *g) {
    memset(g, 0, sizeof *g);
    g->bos_token_id = g->pad_token_id = -1;
    g->temperature = 1.0;
    g->top_p = 1.0;
    g->top_k = 50;
}

vkd_result vkd_gen_cfg_parse(const char *json, size_t n, const char *name, vkd_gen_cfg *g,
                             vkd_error *err) {
    vkd_gen_cfg_defaults(g);
    cJSON *root = NULL;
    vkd_result r = vkd_json_parse(json, n, name, &root, err);
    if (r != VKD_OK) return r;
    ctx c = {name, root, err};
    int np = 0;
    int64_t pad[VKD_CFG_MAX_EOS];
    if (!cJSON_IsObject(root)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: expected a JSON object, got %s", name,
                     vkd_json_type_name(root));
    } else if (vkd_json_duplicate_key(root)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field '%s' appears twice", name,
                     vkd_json_duplicate_key(root));
    } else if ((r = get_int(&c, field(&c, "bos_token_id"), "bos_token_id", 0, MAX_TOKEN_ID, false,
                            -1, &g->bos_token_id)) == VKD_OK &&
               (r = get_ids(&c, field(&c, "pad_token_id"), "pad_token_id", 0, pad, &np)) == VKD_OK &&
               (r = get_ids(&c, field(&c, "eos_token_id"), "eos_token_id", 0, g->eos_token_ids,
                            &g->n_eos)) == VKD_OK &&
               (r = get_bool(&c, field(&c, "do_sample"), "do_sample", false, &g->do_sample)) == VKD_OK &&
               (r = get_num(&c, field(&c, "temperature"), "temperature", false, 1.0,
                            &g->temperature)) == VKD_OK &&
               (r = get_num(&c, field(&c, "top_p"), "top_p", true, 1.0, &g->top_p)) == VKD_OK &&
               (r = get_int(&c, field(&c, "top_k"), "top_k", 0, MAX_VOCAB, false, 50,
                            &g->top_k)) == VKD_OK) {
        if (np) g->pad_token_id = pad[0]; /* a list (rare) names the first as the pad token */
        if (g->top_p > 1.0) r = bad(&c, VKD_ERR_FORMAT, "top_p", "a number in (0, 1]",
                                    field(&c, "top_p"));
    }
    if (r == VKD_OK) g->present = true;
    cJSON_Delete(root);
    return r;
}

vkd_result vkd_gen_cfg_load(const char *dir, vkd_gen_cfg *g, vkd_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    char *buf;
    size_t n;
    bool missing = false;
    vkd_gen_cfg_defaults(g);
    vkd_result r = vkd_json_read_file(path, CONFIG_MAX_BYTES, &buf, &n, &missing, err);
    if (r != VKD_OK) return missing ? VKD_OK : r;
    r = vkd_gen_cfg_parse(buf, n, path, g, err);
    free(buf);
    return r;
}

/* ---- expected tensors ---- */

static void add(vkd_cfg_tensor *list, size_t *n, const char *name, int64_t rows, int64_t cols,
                bool optional) {
    vkd_cfg_tensor *t = &list[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->optional = optional;
}

vkd_result vkd_cfg_expected_tensors(const vkd_cfg *cfg, vkd_cfg_tensor **out, size_t *n,
                                    vkd_error *err) {
    *out = NULL;
    *n = 0;
    int64_t H = cfg->hidden_size, L = cfg->num_hidden_layers, V = cfg->vocab_size;
    int64_t d = cfg->head_dim, Q = cfg->num_attention_heads * d, KV = cfg->num_key_value_heads * d;
    int64_t F = cfg->intermediate_size;
    if (L < 0 || L > MAX_LAYERS)
        return vkd_fail(err, VKD_ERR_INVALID, "config: num_hidden_layers %lld out of range",
                        (long long)L);
    size_t cap = (size_t)L * 11 + 8;
    vkd_cfg_tensor *list = calloc(cap, sizeof *list);
    if (!list) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory for the tensor list");
    bool draft = cfg->arch == VKD_ARCH_DFLASH;
    const char *pre = draft ? "" : "model.";
    char name[96];
    if (!draft) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", pre);
        add(list, n, name, V, H, false);
    } else {
        add(list, n, "fc.weight", H, (int64_t)cfg->n_target_layer_ids * H, false);
        add(list, n, "hidden_norm.weight", H, 0, false);
    }
    for (int64_t l = 0; l < L; l++) {
        struct { const char *suffix; int64_t rows, cols; bool want; } per[] = {
            {"input_layernorm.weight", H, 0, true},
            {"self_attn.q_proj.weight", Q, H, true},
            {"self_attn.k_proj.weight", KV, H, true},
            {"self_attn.v_proj.weight", KV, H, true},
            {"self_attn.o_proj.weight", H, Q, true},
            {"self_attn.q_norm.weight", d, 0, cfg->qk_norm},
            {"self_attn.k_norm.weight", d, 0, cfg->qk_norm},
            {"post_attention_layernorm.weight", H, 0, true},
            {"mlp.gate_proj.weight", F, H, true},
            {"mlp.up_proj.weight", F, H, true},
            {"mlp.down_proj.weight", H, F, true},
        };
        for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
            if (!per[k].want) continue;
            snprintf(name, sizeof name, "%slayers.%lld.%s", pre, (long long)l, per[k].suffix);
            add(list, n, name, per[k].rows, per[k].cols, false);
        }
    }
    snprintf(name, sizeof name, "%snorm.weight", pre);
    add(list, n, name, H, 0, false);
    if (!draft) add(list, n, "lm_head.weight", V, H, cfg->tie_word_embeddings);
    *out = list;
    return VKD_OK;
}

typedef struct problems {
    vkd_cfg_problem_fn fn;
    void *user;
    size_t count;
    char first[400];
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...) {
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->count++ == 0) snprintf(p->first, sizeof p->first, "%s", line);
    if (p->fn) p->fn(p->user, line);
}

vkd_result vkd_cfg_check_tensors(const vkd_cfg *cfg, vkd_st_model *m, vkd_cfg_problem_fn fn,
                                 void *user, vkd_error *err) {
    vkd_cfg_tensor *want = NULL;
    size_t nwant = 0;
    vkd_result r = vkd_cfg_expected_tensors(cfg, &want, &nwant, err);
    if (r != VKD_OK) return r;
    problems p = {fn, user, 0, ""};
    size_t count = vkd_st_model_count(m);
    bool *used = calloc(count ? count : 1, sizeof *used);
    if (!used) {
        free(want);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < nwant; k++) {
        const vkd_cfg_tensor *w = &want[k];
        size_t i = vkd_st_model_index(m, w->name);
        char exp[64];
        if (w->rank == 2)
            snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)w->shape[0], (long long)w->shape[1]);
        else
            snprintf(exp, sizeof exp, "[%lld]", (long long)w->shape[0]);
        if (i == (size_t)-1) {
            if (!w->optional) problem(&p, "tensor '%s' is missing (expected shape %s)", w->name, exp);
            continue;
        }
        used[i] = true;
        const vkd_st_tensor *t = NULL;
        vkd_error e2 = {0};
        if (vkd_st_model_get_at(m, i, &t, &e2) != VKD_OK) {
            problem(&p, "%s", e2.msg);
            continue;
        }
        bool same = t->rank == w->rank && t->shape[0] == w->shape[0] &&
                    (w->rank == 1 || t->shape[1] == w->shape[1]);
        if (!same) {
            char shp[200];
            vkd_st_shape_str(t, shp, sizeof shp);
            problem(&p, "tensor '%s': shape %s, expected %s", w->name, shp, exp);
        }
        if (t->dtype != VKD_DTYPE_BF16 && t->dtype != VKD_DTYPE_F16 && t->dtype != VKD_DTYPE_F32)
            problem(&p, "tensor '%s': dtype %s, expected BF16, F16 or F32", w->name,
                    vkd_dtype_name(t->dtype));
        else if (cfg->has_dtype && t->dtype != cfg->dtype)
            problem(&p, "tensor '%s': dtype %s differs from the config's torch_dtype (%s)",
                    w->name, vkd_dtype_name(t->dtype), vkd_dtype_name(cfg->dtype));
    }
    for (size_t i = 0; i < count; i++)
        if (!used[i])
            problem(&p, "unexpected tensor '%s' (not part of %s)", vkd_st_model_name_at(m, i),
                    vkd_arch_name(cfg->arch));
    free(used);
    free(want);
    if (p.count)
        return vkd_fail(err, VKD_ERR_FORMAT, "%zu tensor problem%s; first: %s", p.count,
                        p.count == 1 ? "" : "s", p.first);
    return VKD_OK;
}
