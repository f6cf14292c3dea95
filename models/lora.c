/* lora.c: LoRA adapters in PEFT's layout (see vkd_lora.h). */
#include "vkd_lora.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "jsonutil.h"
#include "safetensors.h"
#include "st_write.h"
#include "vkd_ops.h"

const char *const vkd_lora_linear_names[8] = {"fc", "q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};

#define PREFIX "base_model.model."
#define CONFIG_NAME "adapter_config.json"
#define WEIGHTS_NAME "adapter_model.safetensors"

/* in/out of a per-layer linear by short name (index into vkd_lora_linear_names, >= 1). */
static void layer_shape(const vkd_lora_dims *d, int kind, uint32_t *in, uint32_t *out) {
    uint32_t q = d->n_q * d->head_dim, kv = d->n_kv * d->head_dim;
    switch (kind) {
    case 1: *in = d->hidden, *out = q; break;
    case 2: case 3: *in = d->hidden, *out = kv; break;
    case 4: *in = q, *out = d->hidden; break;
    case 5: case 6: *in = d->hidden, *out = d->ffn; break;
    default: *in = d->ffn, *out = d->hidden; break;
    }
}

static void module_path(char *buf, size_t cap, int kind, uint32_t layer) {
    if (kind == 0) snprintf(buf, cap, "fc");
    else snprintf(buf, cap, "layers.%u.%s.%s", layer, kind <= 4 ? "self_attn" : "mlp",
                  vkd_lora_linear_names[kind]);
}

bool vkd_lora_linear_shape(const vkd_lora_dims *d, const char *path, uint32_t *in, uint32_t *out) {
    char buf[VKD_LORA_PATH_MAX];
    if (!strcmp(path, "fc")) {
        *in = d->ntaps * d->hidden, *out = d->hidden;
        return true;
    }
    for (uint32_t l = 0; l < d->n_layers; l++)
        for (int k = 1; k < 8; k++) {
            module_path(buf, sizeof buf, k, l);
            if (!strcmp(buf, path)) {
                layer_shape(d, k, in, out);
                return true;
            }
        }
    return false;
}

/* PEFT's rule for a list of target names: the module's full name equals the target or
 * ends with "." + target. */
static bool target_matches(const char *target, const char *path) {
    size_t lt = strlen(target), lp = strlen(path);
    if (lt == lp) return !strcmp(target, path);
    return lp > lt && path[lp - lt - 1] == '.' && !strcmp(path + lp - lt, target);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

void vkd_lora_free(vkd_lora *l) {
    if (!l) return;
    for (uint32_t i = 0; i < l->nmodules; i++) free(l->modules[i].a), free(l->modules[i].b);
    free(l->modules);
    free(l);
}

const vkd_lora_module *vkd_lora_find(const vkd_lora *l, const char *path) {
    for (uint32_t i = 0; i < l->nmodules; i++)
        if (!strcmp(l->modules[i].path, path)) return &l->modules[i];
    return NULL;
}

/* Fills l->modules with every draft linear matched by a target (arrays allocated, zero).
 * `src` names the origin of the targets for messages. */
static vkd_result build_modules(vkd_lora *l, const vkd_lora_dims *d, const char *src, vkd_error *err) {
    if (d->hidden == 0 || d->ntaps == 0)
        return vkd_fail(err, VKD_ERR_INVALID, "lora: draft dimensions missing");
    uint32_t total = 1 + 7 * d->n_layers;
    l->modules = calloc(total, sizeof *l->modules);
    if (!l->modules) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    bool used[VKD_LORA_MAX_TARGETS] = {0};
    for (uint32_t idx = 0; idx < total; idx++) {
        int kind = idx == 0 ? 0 : 1 + (int)((idx - 1) % 7);
        uint32_t layer = idx == 0 ? 0 : (idx - 1) / 7;
        char path[VKD_LORA_PATH_MAX];
        module_path(path, sizeof path, kind, layer);
        bool hit = false;
        for (uint32_t t = 0; t < l->ntargets; t++)
            if (target_matches(l->targets[t], path)) hit = used[t] = true;
        if (!hit) continue;
        vkd_lora_module *m = &l->modules[l->nmodules++];
        snprintf(m->path, sizeof m->path, "%s", path);
        vkd_lora_linear_shape(d, path, &m->in, &m->out);
        m->a = calloc((size_t)l->rank * m->in, sizeof(float));
        m->b = calloc((size_t)m->out * l->rank, sizeof(float));
        if (!m->a || !m->b) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    }
    for (uint32_t t = 0; t < l->ntargets; t++)
        if (!used[t])
            return vkd_fail(err, VKD_ERR_INVALID,
                            "%s: target_modules entry '%s' names no linear layer of the draft "
                            "(fc, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                            src, l->targets[t]);
    return VKD_OK;
}

static vkd_result add_target(vkd_lora *l, const char *t, const char *src, vkd_error *err) {
    if (!*t || strlen(t) >= sizeof l->targets[0])
        return vkd_fail(err, VKD_ERR_INVALID, "%s: target_modules entry '%s' empty or too long", src, t);
    if (l->ntargets == VKD_LORA_MAX_TARGETS)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: more than %d target_modules", src, VKD_LORA_MAX_TARGETS);
    for (uint32_t i = 0; i < l->ntargets; i++)
        if (!strcmp(l->targets[i], t))
            return vkd_fail(err, VKD_ERR_INVALID, "%s: target_modules lists '%s' twice", src, t);
    snprintf(l->targets[l->ntargets++], sizeof l->targets[0], "%s", t);
    return VKD_OK;
}

static void set_scale(vkd_lora *l) {
    l->scale = l->rslora ? (float)(l->alpha / sqrt((double)l->rank)) : (float)((double)l->alpha / l->rank);
}

vkd_result vkd_lora_create(const vkd_lora_dims *dims, const char *const *targets, uint32_t ntargets,
                           uint32_t rank, float alpha, uint64_t seed, const char *base_model,
                           vkd_lora **out, vkd_error *err) {
    *out = NULL;
    if (rank == 0 || rank > 65536)
        return vkd_fail(err, VKD_ERR_INVALID, "lora: rank %u, expected 1..65536", rank);
    if (!(alpha > 0.0f) || !isfinite(alpha))
        return vkd_fail(err, VKD_ERR_INVALID, "lora: alpha %g, expected a finite value > 0", alpha);
    if (ntargets == 0) return vkd_fail(err, VKD_ERR_INVALID, "lora: no target modules");
    vkd_lora *l = calloc(1, sizeof *l);
    if (!l) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    l->rank = rank, l->alpha = alpha;
    set_scale(l);
    snprintf(l->base_model, sizeof l->base_model, "%s", base_model ? base_model : "");
    vkd_result r = VKD_OK;
    for (uint32_t t = 0; t < ntargets && !r; t++) r = add_target(l, targets[t], "lora targets", err);
    if (!r) r = build_modules(l, dims, "lora targets", err);
    if (r) {
        vkd_lora_free(l);
        return r;
    }
    for (uint32_t i = 0; i < l->nmodules; i++) {
        vkd_lora_module *m = &l->modules[i];
        uint64_t ctr_hi = fnv1a64(m->path), n = (uint64_t)rank * m->in;
        double bound = 1.0 / sqrt((double)m->in);
        for (uint64_t e = 0; e < n; e += 4) {
            uint32_t w[4];
            vkd_philox4x32(seed, ctr_hi, e / 4, w);
            for (uint64_t k = 0; k < 4 && e + k < n; k++) {
                double u = (double)(w[k] >> 8) * (1.0 / 16777216.0);
                m->a[e + k] = (float)((2.0 * u - 1.0) * bound);
            }
        }
    }
    *out = l;
    return VKD_OK;
}

/* ---- saving ----------------------------------------------------------------------------- */

static char *config_json(const vkd_lora *l) {
    /* keys in sorted order, as PEFT's save_pretrained (json.dumps(sort_keys=True)) writes */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "base_model_name_or_path",
                          l->base_model[0] ? cJSON_CreateString(l->base_model) : cJSON_CreateNull());
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddNumberToObject(o, "lora_alpha", l->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", 0.0);
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", l->rank);
    cJSON_AddItemToObject(o, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "revision");
    cJSON *t = cJSON_AddArrayToObject(o, "target_modules");
    for (uint32_t i = 0; i < l->ntargets; i++) cJSON_AddItemToArray(t, cJSON_CreateString(l->targets[i]));
    cJSON_AddNullToObject(o, "task_type");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddBoolToObject(o, "use_rslora", l->rslora);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

vkd_result vkd_lora_save(const vkd_lora *l, const char *dir, vkd_error *err) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return vkd_fail(err, VKD_ERR_IO, "%s: cannot create the adapter folder: %s", dir, strerror(errno));
    size_t n = (size_t)l->nmodules * 2;
    vkd_st_out *outs = calloc(n ? n : 1, sizeof *outs);
    char (*names)[VKD_LORA_PATH_MAX + 40] = calloc(n ? n : 1, sizeof *names);
    char path[4096];
    vkd_result r = VKD_OK;
    if (!outs || !names) r = vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    for (uint32_t i = 0; i < l->nmodules && !r; i++) {
        const vkd_lora_module *m = &l->modules[i];
        snprintf(names[2 * i], sizeof names[0], PREFIX "%s.lora_A.weight", m->path);
        snprintf(names[2 * i + 1], sizeof names[0], PREFIX "%s.lora_B.weight", m->path);
        outs[2 * i] = (vkd_st_out){names[2 * i], VKD_DTYPE_F32, 2, {l->rank, m->in}, m->a};
        outs[2 * i + 1] = (vkd_st_out){names[2 * i + 1], VKD_DTYPE_F32, 2, {m->out, l->rank}, m->b};
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if (!r && snprintf(path, sizeof path, "%s/" WEIGHTS_NAME, dir) >= (int)sizeof path)
        r = vkd_fail(err, VKD_ERR_IO, "%s: path too long", dir);
    if (!r) r = vkd_st_write(path, outs, n, meta, err);
    free(outs);
    free(names);
    if (r) return r;
    char *json = config_json(l);
    if (!json) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    snprintf(path, sizeof path, "%s/" CONFIG_NAME, dir);
    r = vkd_write_text_atomic(path, json, err);
    cJSON_free(json);
    return r;
}

/* ---- loading ---------------------------------------------------------------------------- */

static vkd_result parse_config(vkd_lora *l, const char *path, vkd_error *err) {
    char *buf;
    size_t n;
    bool missing = false;
    vkd_result r = vkd_json_read_file(path, 1 << 20, &buf, &n, &missing, err);
    if (r) return r;
    cJSON *o;
    r = vkd_json_parse(buf, n, path, &o, err);
    free(buf);
    if (r) return r;
    const char *dup;
    const cJSON *it;
    int64_t iv;
    if (!cJSON_IsObject(o)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    if ((dup = vkd_json_duplicate_key(o))) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: key '%s' appears twice", path, dup);
        goto done;
    }
    it = cJSON_GetObjectItemCaseSensitive(o, "peft_type");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, "LORA")) {
        r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: peft_type must be \"LORA\"", path);
        goto done;
    }
    it = cJSON_GetObjectItemCaseSensitive(o, "r");
    if (!vkd_json_int(it, 1, 65536, &iv)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: r must be an integer in 1..65536", path);
        goto done;
    }
    l->rank = (uint32_t)iv;
    it = cJSON_GetObjectItemCaseSensitive(o, "lora_alpha");
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !isfinite(it->valuedouble)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: lora_alpha must be a number > 0", path);
        goto done;
    }
    l->alpha = (float)it->valuedouble;
    it = cJSON_GetObjectItemCaseSensitive(o, "lora_dropout");
    if (it && !cJSON_IsNull(it) && (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble < 1))) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: lora_dropout must be a number in [0, 1)", path);
        goto done;
    }
    l->dropout = cJSON_IsNumber(it) ? (float)it->valuedouble : 0.0f;
    it = cJSON_GetObjectItemCaseSensitive(o, "bias");
    if (it && !cJSON_IsNull(it) && (!cJSON_IsString(it) || strcmp(it->valuestring, "none"))) {
        r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: bias must be \"none\" (LoRA biases are not supported)", path);
        goto done;
    }
    static const char *const must_false[] = {"fan_in_fan_out", "use_dora"};
    for (int i = 0; i < 2; i++) {
        it = cJSON_GetObjectItemCaseSensitive(o, must_false[i]);
        if (it && !cJSON_IsNull(it) && !cJSON_IsFalse(it)) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: %s must be false", path, must_false[i]);
            goto done;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(o, "use_rslora");
    l->rslora = cJSON_IsTrue(it);
    static const char *const must_empty[] = {"rank_pattern", "alpha_pattern", "layers_to_transform",
                                             "modules_to_save"};
    for (int i = 0; i < 4; i++) {
        it = cJSON_GetObjectItemCaseSensitive(o, must_empty[i]);
        if (it && !cJSON_IsNull(it) && cJSON_GetArraySize(it) > 0) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: %s must be empty or null (not supported)", path,
                         must_empty[i]);
            goto done;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(o, "base_model_name_or_path");
    if (cJSON_IsString(it)) snprintf(l->base_model, sizeof l->base_model, "%s", it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(o, "target_modules");
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) == 0) {
        r = vkd_fail(err, VKD_ERR_FORMAT,
                     "%s: target_modules must be a non-empty list of module names (a regex string is "
                     "not supported)", path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsString(e)) {
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: target_modules entries must be strings", path);
            goto done;
        }
        if ((r = add_target(l, e->valuestring, path, err))) goto done;
    }
    set_scale(l);
done:
    cJSON_Delete(o);
    return r;
}

static vkd_result read_tensor(const vkd_st_file *f, const char *fpath, const char *name, uint64_t rows,
                              uint64_t cols, float *dst, vkd_error *err) {
    const vkd_st_tensor *t = vkd_st_find(f, name);
    if (!t) return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' missing", fpath, name);
    if (t->rank != 2 || (uint64_t)t->shape[0] != rows || (uint64_t)t->shape[1] != cols) {
        char s[96];
        vkd_st_shape_str(t, s, sizeof s);
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected [%llu, %llu]", fpath,
                        name, s, (unsigned long long)rows, (unsigned long long)cols);
    }
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < rows * cols; i++) {
        if (t->dtype == VKD_DTYPE_F32) memcpy(&dst[i], p + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (t->dtype == VKD_DTYPE_BF16) dst[i] = vkd_bf16_to_f32(h);
            else if (t->dtype == VKD_DTYPE_F16) dst[i] = vkd_f16_to_f32(h);
            else return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, expected F32, BF16 or F16",
                                 fpath, name, vkd_dtype_name(t->dtype));
        }
        if (!isfinite(dst[i]))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value at %llu", fpath,
                            name, (unsigned long long)i);
    }
    return VKD_OK;
}

vkd_result vkd_lora_load(const char *dir, const vkd_lora_dims *dims, vkd_lora **out, vkd_error *err) {
    *out = NULL;
    char cpath[4096], wpath[4096];
    if (snprintf(cpath, sizeof cpath, "%s/" CONFIG_NAME, dir) >= (int)sizeof cpath ||
        snprintf(wpath, sizeof wpath, "%s/" WEIGHTS_NAME, dir) >= (int)sizeof wpath)
        return vkd_fail(err, VKD_ERR_IO, "%s: path too long", dir);
    vkd_lora *l = calloc(1, sizeof *l);
    if (!l) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    vkd_st_file *f = NULL;
    vkd_result r = parse_config(l, cpath, err);
    if (!r) r = build_modules(l, dims, cpath, err);
    if (!r) r = vkd_st_open(wpath, &f, err);
    for (uint32_t i = 0; i < l->nmodules && !r; i++) {
        vkd_lora_module *m = &l->modules[i];
        char name[VKD_LORA_PATH_MAX + 40];
        snprintf(name, sizeof name, PREFIX "%s.lora_A.weight", m->path);
        r = read_tensor(f, wpath, name, l->rank, m->in, m->a, err);
        if (r) break;
        snprintf(name, sizeof name, PREFIX "%s.lora_B.weight", m->path);
        r = read_tensor(f, wpath, name, m->out, l->rank, m->b, err);
    }
    /* a tensor the config does not account for means the adapter was made for another model */
    for (size_t i = 0; !r && i < vkd_st_count(f); i++) {
        const char *name = vkd_st_tensor_at(f, i)->name;
        bool known = false;
        for (uint32_t k = 0; k < l->nmodules && !known; k++) {
            size_t lp = strlen(PREFIX), lm = strlen(l->modules[k].path);
            known = !strncmp(name, PREFIX, lp) && !strncmp(name + lp, l->modules[k].path, lm) &&
                    (!strcmp(name + lp + lm, ".lora_A.weight") || !strcmp(name + lp + lm, ".lora_B.weight"));
        }
        if (!known)
            r = vkd_fail(err, VKD_ERR_FORMAT,
                         "%s: tensor '%s' is not a LoRA weight of a targeted linear of this draft", wpath, name);
    }
    vkd_st_close(f);
    if (r) {
        vkd_lora_free(l);
        return r;
    }
    *out = l;
    return VKD_OK;
}

/* ---- device ------------------------------------------------------------------------------ */

void vkd_lora_device_free(vkd_lora_device *d) {
    if (!d) return;
    for (uint32_t i = 0; i < d->n; i++) {
        if (d->a) vkd_tensor_destroy(d->a[i]);
        if (d->b) vkd_tensor_destroy(d->b[i]);
    }
    free(d->a);
    free(d->b);
    free(d);
}

vkd_result vkd_lora_upload(const vkd_lora *l, vkd_ctx *ctx, vkd_lora_device **out, vkd_error *err) {
    *out = NULL;
    vkd_lora_device *d = calloc(1, sizeof *d);
    if (!d) return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    d->a = calloc(l->nmodules ? l->nmodules : 1, sizeof *d->a);
    d->b = calloc(l->nmodules ? l->nmodules : 1, sizeof *d->b);
    if (!d->a || !d->b) {
        vkd_lora_device_free(d);
        return vkd_fail(err, VKD_ERR_NOMEM, "lora: out of memory");
    }
    vkd_result r = VKD_OK;
    for (uint32_t i = 0; i < l->nmodules && !r; i++, d->n++) {
        const vkd_lora_module *m = &l->modules[i];
        char name[64];
        snprintf(name, sizeof name, "lora_A:%.55s", m->path);
        r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, l->rank, m->in, name, &d->a[i], err);
        if (!r) r = vkd_tensor_upload(d->a[i], 0, m->a, (uint64_t)l->rank * m->in * 4, err);
        snprintf(name, sizeof name, "lora_B:%.55s", m->path);
        if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, m->out, l->rank, name, &d->b[i], err);
        if (!r) r = vkd_tensor_upload(d->b[i], 0, m->b, (uint64_t)m->out * l->rank * 4, err);
        if (!r && (d->a[i]->nchunks != 1 || d->b[i]->nchunks != 1))
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "lora: '%s' exceeds one device binding", m->path);
    }
    if (r) {
        vkd_lora_device_free(d);
        return r;
    }
    *out = d;
    return VKD_OK;
}

vkd_result vkd_lora_download(vkd_lora *l, const vkd_lora_device *d, vkd_error *err) {
    if (d->n != l->nmodules)
        return vkd_fail(err, VKD_ERR_INVALID, "lora: device copy holds %u modules, adapter %u", d->n, l->nmodules);
    vkd_result r = VKD_OK;
    for (uint32_t i = 0; i < l->nmodules && !r; i++) {
        vkd_lora_module *m = &l->modules[i];
        r = vkd_tensor_download(d->a[i], 0, m->a, (uint64_t)l->rank * m->in * 4, err);
        if (!r) r = vkd_tensor_download(d->b[i], 0, m->b, (uint64_t)m->out * l->rank * 4, err);
    }
    return r;
}
