/* train_draft.c: DFlash draft training from scratch (vkd_train_draft.h): the z-lab folder
 * (config, fresh weights, export) and the training step. Per step: the target over the
 * sequence with taps (one submission per max_rows chunk), then one submission with, per
 * pass of up to P anchors (P = 1: the per-block reference path), the draft's training
 * forward of those blocks (models/dflash_train.h: one block-sparse pass), the fused LM head
 * + loss over their rows (every block's row 0 unlabelled), their backward and the draft's
 * backward (every gradient accumulates), then the global gradient norm; read back, and when
 * the loss and the norm are finite a second submission clips and applies AdamW to every
 * tensor. */
#include "vkd_train_draft.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dflash_train.h"
#include "safetensors.h"
#include "st_write.h"
#include "vkd_generate.h"
#include "vkd_optim_state.h"
#include "vkd_train_ops.h"
#include "vkd_ttt.h"

/* ---- the folder --------------------------------------------------------------------- */

vkd_result vkd_train_draft_write_config(const vkd_cfg *t, const vkd_train_draft_shape *s,
                                        const char *dtype, const char *dir, vkd_error *err) {
    if (t->rope_scaling.llama3)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "train-draft: targets with llama3 rope_scaling are not "
                        "supported (the draft config would need it)");
    if (s->ntaps == 0 || s->ntaps > VKD_CFG_MAX_TAPS || s->n_layers == 0 || s->block < 2)
        return vkd_fail(err, VKD_ERR_INVALID, "train-draft: %u taps, %u layers, block %u", s->ntaps,
                        s->n_layers, s->block);
    cJSON *o = cJSON_CreateObject();
    /* keys sorted, as gen_dflash.py / transformers write them */
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("DFlashDraftModel"));
    cJSON_AddFalseToObject(o, "attention_bias");
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    cJSON_AddItemToObject(o, "auto_map", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(o, "auto_map"), "AutoModel", "dflash.DFlashDraftModel");
    cJSON_AddNumberToObject(o, "block_size", s->block);
    if (t->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", (double)t->bos_token_id);
    else cJSON_AddNullToObject(o, "bos_token_id");
    cJSON *df = cJSON_AddObjectToObject(o, "dflash_config");
    cJSON_AddNumberToObject(df, "mask_token_id", (double)s->mask_id);
    cJSON *ids = cJSON_AddArrayToObject(df, "target_layer_ids");
    for (uint32_t i = 0; i < s->ntaps; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)s->tap_ids[i]));
    cJSON_AddStringToObject(o, "dtype", dtype);
    if (t->n_eos == 1) cJSON_AddNumberToObject(o, "eos_token_id", (double)t->eos_token_ids[0]);
    else if (t->n_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; i < t->n_eos; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber((double)t->eos_token_ids[i]));
    } else cJSON_AddNullToObject(o, "eos_token_id");
    cJSON_AddNumberToObject(o, "head_dim", (double)t->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", (double)t->hidden_size);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)t->intermediate_size);
    cJSON *lt = cJSON_AddArrayToObject(o, "layer_types");
    for (uint32_t i = 0; i < s->n_layers; i++) cJSON_AddItemToArray(lt, cJSON_CreateString("full_attention"));
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)t->max_position_embeddings);
    cJSON_AddNumberToObject(o, "max_window_layers", s->n_layers);
    cJSON_AddStringToObject(o, "model_type", "qwen3");
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)t->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", (double)t->num_key_value_heads);
    cJSON_AddNumberToObject(o, "num_target_layers", (double)t->num_hidden_layers);
    cJSON_AddNumberToObject(o, "rms_norm_eps", t->rms_norm_eps);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddNumberToObject(o, "rope_theta", t->rope_theta);
    cJSON_AddNullToObject(o, "sliding_window");
    cJSON_AddFalseToObject(o, "tie_word_embeddings");
    cJSON_AddStringToObject(o, "transformers_version", "4.57.3");
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddFalseToObject(o, "use_sliding_window");
    cJSON_AddNumberToObject(o, "vocab_size", (double)t->vocab_size);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    vkd_result r = vkd_write_text_atomic(path, text, err);
    cJSON_free(text);
    return r;
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static bool is_norm(const vkd_cfg_tensor *t) { return t->rank == 1; }

/* DIR/model.safetensors from outs (PyTorch's "format": "pt" metadata, as z-lab's files). */
static vkd_result write_model(const char *dir, vkd_st_out *outs, size_t n, vkd_error *err) {
    static const char *const meta[] = {"format", "pt", NULL};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return vkd_st_write(path, outs, n, meta, err);
}

vkd_result vkd_train_draft_write_init(const char *dir, uint64_t seed, vkd_error *err) {
    vkd_cfg cfg;
    vkd_result r = vkd_cfg_load(dir, &cfg, err);
    if (r) return r;
    vkd_cfg_tensor *list = NULL;
    size_t n = 0;
    if ((r = vkd_cfg_expected_tensors(&cfg, &list, &n, err))) return r;
    vkd_st_out *outs = calloc(n, sizeof *outs);
    float **data = calloc(n, sizeof *data);
    if (!outs || !data) r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; !r && i < n; i++) {
        const vkd_cfg_tensor *t = &list[i];
        uint64_t cnt = (uint64_t)t->shape[0] * (t->rank == 2 ? (uint64_t)t->shape[1] : 1);
        if (!(data[i] = malloc(cnt * sizeof(float)))) {
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
            break;
        }
        uint64_t key = fnv1a64(t->name);
        for (uint64_t e = 0; e < cnt; e += 2) { /* Box-Muller on two uniforms per pair */
            uint32_t w[4];
            vkd_philox4x32(seed, key, e / 2, w);
            double u1 = ((double)(w[0] >> 8) + 1.0) * (1.0 / 16777217.0), u2 = (double)(w[1] >> 8) * (1.0 / 16777216.0);
            double rad = sqrt(-2.0 * log(u1)), z0 = rad * cos(2 * M_PI * u2), z1 = rad * sin(2 * M_PI * u2);
            data[i][e] = is_norm(t) ? 1.0f : (float)(0.02 * z0);
            if (e + 1 < cnt) data[i][e + 1] = is_norm(t) ? 1.0f : (float)(0.02 * z1);
        }
        outs[i] = (vkd_st_out){t->name, VKD_DTYPE_F32, t->rank, {t->shape[0], t->shape[1]}, data[i]};
    }
    if (!r) r = write_model(dir, outs, n, err);
    for (size_t i = 0; data && i < n; i++) free(data[i]);
    free(data);
    free(outs);
    free(list);
    return r;
}

/* one config field of INIT against the run's */
static vkd_result same_field(const char *init_dir, const char *field, int64_t have, int64_t want, vkd_error *err) {
    if (have == want) return VKD_OK;
    return vkd_fail(err, VKD_ERR_INVALID, "%s/config.json: field '%s' is %lld, this run's draft has %lld", init_dir,
                    field, (long long)have, (long long)want);
}

vkd_result vkd_train_draft_write_from(const char *dir, const char *init_dir, vkd_error *err) {
    vkd_cfg cfg, ic;
    vkd_result r = vkd_cfg_load(dir, &cfg, err);
    if (!r) r = vkd_cfg_load(init_dir, &ic, err);
    if (r) return r;
    if (ic.arch != VKD_ARCH_DFLASH)
        return vkd_fail(err, VKD_ERR_INVALID, "%s/config.json: field 'architectures': expected DFlashDraftModel, got %s",
                        init_dir, vkd_arch_name(ic.arch));
    if (ic.target_layer_ids_pending)
        return vkd_fail(err, VKD_ERR_INVALID, "%s/config.json: field 'dflash_config.target_layer_ids': expected the "
                        "list of target layers", init_dir);
    if (!r) r = same_field(init_dir, "num_hidden_layers", ic.num_hidden_layers, cfg.num_hidden_layers, err);
    if (!r) r = same_field(init_dir, "hidden_size", ic.hidden_size, cfg.hidden_size, err);
    if (!r) r = same_field(init_dir, "block_size", ic.block_size, cfg.block_size, err);
    if (!r) r = same_field(init_dir, "dflash_config.mask_token_id", ic.mask_token_id, cfg.mask_token_id, err);
    if (!r) r = same_field(init_dir, "dflash_config.target_layer_ids (count)", ic.n_target_layer_ids,
                           cfg.n_target_layer_ids, err);
    for (int k = 0; !r && k < cfg.n_target_layer_ids; k++)
        r = same_field(init_dir, "dflash_config.target_layer_ids", ic.target_layer_ids[k], cfg.target_layer_ids[k], err);
    if (r) return r;
    vkd_cfg_tensor *list = NULL;
    size_t n = 0;
    if ((r = vkd_cfg_expected_tensors(&cfg, &list, &n, err))) return r;
    vkd_st_model *m = NULL;
    vkd_st_out *outs = calloc(n, sizeof *outs);
    float **data = calloc(n, sizeof *data);
    if (!outs || !data) r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = vkd_st_model_open(init_dir, &m, err);
    for (size_t i = 0; !r && i < n; i++) {
        const vkd_cfg_tensor *t = &list[i];
        const vkd_st_tensor *st;
        if (vkd_st_model_index(m, t->name) == (size_t)-1) {
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' missing", init_dir, t->name);
            break;
        }
        if ((r = vkd_st_model_get(m, t->name, &st, err))) break;
        uint64_t cnt = (uint64_t)t->shape[0] * (t->rank == 2 ? (uint64_t)t->shape[1] : 1);
        if (st->rank != t->rank || st->shape[0] != t->shape[0] || (t->rank == 2 && st->shape[1] != t->shape[1])) {
            char sh[96], want[64];
            vkd_st_shape_str(st, sh, sizeof sh);
            if (t->rank == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
            else snprintf(want, sizeof want, "[%lld]", (long long)t->shape[0]);
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", init_dir, t->name, sh, want);
            break;
        }
        if (st->dtype != VKD_DTYPE_F32 && st->dtype != VKD_DTYPE_BF16 && st->dtype != VKD_DTYPE_F16) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, expected F32, BF16 or F16", init_dir,
                         t->name, vkd_dtype_name(st->dtype));
            break;
        }
        if (!(data[i] = malloc(cnt * sizeof(float)))) {
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
            break;
        }
        const uint8_t *b = st->data;
        for (uint64_t e = 0; !r && e < cnt; e++) {
            uint16_t h = 0;
            if (st->dtype == VKD_DTYPE_F32) memcpy(&data[i][e], b + 4 * e, 4);
            else memcpy(&h, b + 2 * e, 2);
            if (st->dtype == VKD_DTYPE_BF16) data[i][e] = vkd_bf16_to_f32(h);
            if (st->dtype == VKD_DTYPE_F16) data[i][e] = vkd_f16_to_f32(h);
            if (!isfinite(data[i][e]))
                r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value at %llu", init_dir,
                             t->name, (unsigned long long)e);
        }
        outs[i] = (vkd_st_out){t->name, VKD_DTYPE_F32, t->rank, {t->shape[0], t->shape[1]}, data[i]};
    }
    /* a tensor the run would not train (another layer count, a bias) is refused, not dropped */
    for (size_t i = 0; !r && i < vkd_st_model_count(m); i++) {
        const char *name = vkd_st_model_name_at(m, i);
        bool known = false;
        for (size_t k = 0; k < n && !known; k++) known = !strcmp(list[k].name, name);
        if (!known)
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' is not a tensor of this run's draft", init_dir, name);
    }
    if (!r) r = write_model(dir, outs, n, err);
    vkd_st_model_close(m);
    for (size_t i = 0; data && i < n; i++) free(data[i]);
    free(data);
    free(outs);
    free(list);
    return r;
}

/* The device weight (and, in a trainer, its gradient) of draft tensor `name`. */
static vkd_tensor *weight_of(vkd_dflash *d, vkd_dflash_train *T, const char *name, vkd_tensor **grad) {
    *grad = NULL;
    if (!strcmp(name, "fc.weight")) return *grad = d->fc.grad_w, d->fc.w;
    if (!strcmp(name, "hidden_norm.weight")) return *grad = T ? T->grad_hidden_norm : NULL, d->hidden_norm;
    if (!strcmp(name, "norm.weight")) return *grad = T ? T->grad_norm : NULL, d->norm;
    unsigned l;
    int off = 0;
    if (sscanf(name, "layers.%u.%n", &l, &off) != 1 || off == 0 || l >= d->n_layers) return NULL;
    vkd_layer *L = &d->layers[l];
    const char *s = name + off;
    struct { const char *suffix; vkd_tensor *w, *g; } m[] = {
        {"input_layernorm.weight", L->ln1, L->grad_ln1},
        {"post_attention_layernorm.weight", L->ln2, L->grad_ln2},
        {"self_attn.q_norm.weight", L->q_norm, L->grad_q_norm},
        {"self_attn.k_norm.weight", L->k_norm, L->grad_k_norm},
        {"self_attn.q_proj.weight", L->wq.w, L->wq.grad_w}, {"self_attn.k_proj.weight", L->wk.w, L->wk.grad_w},
        {"self_attn.v_proj.weight", L->wv.w, L->wv.grad_w}, {"self_attn.o_proj.weight", L->wo.w, L->wo.grad_w},
        {"mlp.gate_proj.weight", L->wg.w, L->wg.grad_w}, {"mlp.up_proj.weight", L->wu.w, L->wu.grad_w},
        {"mlp.down_proj.weight", L->wd.w, L->wd.grad_w},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(s, m[i].suffix)) return *grad = m[i].g, m[i].w;
    return NULL;
}

vkd_result vkd_train_draft_save_weights(vkd_dflash *d, const char *dir, vkd_dtype dtype, vkd_error *err) {
    if (dtype != VKD_DTYPE_F32 && dtype != VKD_DTYPE_BF16)
        return vkd_fail(err, VKD_ERR_INVALID, "train-draft: weights are saved as F32 or BF16");
    vkd_cfg_tensor *list = NULL;
    size_t n = 0;
    vkd_result r = vkd_cfg_expected_tensors(&d->cfg, &list, &n, err);
    if (r) return r;
    vkd_st_out *outs = calloc(n, sizeof *outs);
    void **data = calloc(n, sizeof *data);
    if (!outs || !data) r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; !r && i < n; i++) {
        vkd_tensor *g, *w = weight_of(d, NULL, list[i].name, &g);
        uint64_t cnt = (uint64_t)list[i].shape[0] * (list[i].rank == 2 ? (uint64_t)list[i].shape[1] : 1);
        if (!w || w->dtype != VKD_DTYPE_F32 || w->rows * w->cols != cnt) {
            r = vkd_fail(err, VKD_ERR_INVALID, "train-draft: no f32 device weight for '%s'", list[i].name);
            break;
        }
        float *f = malloc(cnt * 4);
        if (!f) { r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory"); break; }
        data[i] = f;
        if ((r = vkd_tensor_download(w, 0, f, cnt * 4, err))) break;
        if (dtype == VKD_DTYPE_BF16) {
            uint16_t *h = (uint16_t *)f; /* in place: element k's 2 bytes go below element k's 4 */
            for (uint64_t k = 0; k < cnt; k++) h[k] = vkd_f32_to_bf16(f[k]);
        }
        outs[i] = (vkd_st_out){list[i].name, dtype, list[i].rank, {list[i].shape[0], list[i].shape[1]}, data[i]};
    }
    if (!r) r = write_model(dir, outs, n, err);
    for (size_t i = 0; data && i < n; i++) free(data[i]);
    free(data);
    free(outs);
    free(list);
    return r;
}

vkd_result vkd_train_draft_rows_weights(vkd_dflash *d, const char *dir, vkd_error *err) {
    static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    vkd_st_model *m = NULL;
    vkd_result r = vkd_st_model_open(dir, &m, err);
    for (uint32_t l = 0; !r && l <= d->n_layers * 7; l++) {
        vkd_linear *lin = &d->fc;
        char name[96] = "fc.weight";
        if (l > 0) {
            vkd_linear *all[7];
            vkd_layer_linears(&d->layers[(l - 1) / 7], all);
            lin = all[(l - 1) % 7];
            snprintf(name, sizeof name, "layers.%u.%s.weight", (l - 1) / 7, names[(l - 1) % 7]);
        }
        if (lin->w->layout == VKD_LAYOUT_ROWS) continue;
        int64_t shape[2] = {(int64_t)lin->w->rows, (int64_t)lin->w->cols};
        vkd_tensor *rows;
        if ((r = vkd_weight_load_as(d->ctx, m, name, 2, shape, VKD_LAYOUT_ROWS, &rows, err))) break;
        vkd_tensor_destroy(lin->w);
        lin->w = rows;
    }
    vkd_st_model_close(m);
    return r;
}

/* ---- the trainer -------------------------------------------------------------------- */

struct vkd_train_draft {
    vkd_dflash *d;
    vkd_train_draft_options o;
    vkd_dflash_train *T;
    vkd_tensor *head;                  /* row-major copy of the target's lm_head, or NULL */
    vkd_lm_loss_ws *ws;
    vkd_tensor *feats;                 /* max_len x ntaps*H */
    uint32_t pass, npass;              /* anchors per pass (P), passes of a full step */
    vkd_tensor **lab, **row_w, **loss; /* per pass: P*B labels, weights, losses */
    vkd_tensor *dout;                  /* P*B x H */
    /* ce_tv: the target's final-normed hidden states (max_len x H), a pass's teacher rows
     * (P*B x H: block row k of anchor a reads position a+k-1), per pass L1 outputs */
    vkd_tensor *final_h, *t_rows, **l1;
    float *l1v;
    vkd_tensor *parts;
    uint32_t nparts;
    vkd_optim_slot *slots;
    char (*names)[96];                 /* slot tensor names */
    uint32_t nslots;
    /* host scratch */
    uint32_t *anch;
    int32_t *blocks, *labels, *lab_b;
    float *weights, *w_b, *lossv;
};

void vkd_train_draft_free(vkd_train_draft *tr) {
    if (!tr) return;
    vkd_dflash_train_free(tr->T);
    vkd_tensor_destroy(tr->head);
    vkd_lm_loss_ws_destroy(tr->ws);
    vkd_tensor_destroy(tr->feats);
    for (uint32_t i = 0; i < tr->npass; i++) {
        if (tr->lab) vkd_tensor_destroy(tr->lab[i]);
        if (tr->row_w) vkd_tensor_destroy(tr->row_w[i]);
        if (tr->loss) vkd_tensor_destroy(tr->loss[i]);
        if (tr->l1) vkd_tensor_destroy(tr->l1[i]);
    }
    free(tr->lab), free(tr->row_w), free(tr->loss), free(tr->l1), free(tr->l1v);
    vkd_tensor_destroy(tr->final_h), vkd_tensor_destroy(tr->t_rows);
    vkd_tensor_destroy(tr->dout);
    vkd_tensor_destroy(tr->parts);
    for (uint32_t i = 0; tr->slots && i < tr->nslots; i++) {
        vkd_tensor_destroy(tr->slots[i].m);
        vkd_tensor_destroy(tr->slots[i].v);
    }
    free(tr->slots), free(tr->names);
    free(tr->anch), free(tr->blocks), free(tr->labels), free(tr->lab_b), free(tr->weights), free(tr->w_b),
        free(tr->lossv);
    free(tr);
}

vkd_result vkd_train_draft_create(vkd_dflash *d, const vkd_train_draft_options *o,
                                  vkd_train_draft **out, vkd_error *err) {
    *out = NULL;
    if (!o || o->max_len < 3 || o->anchors == 0 || !(o->lr > 0) || !isfinite(o->lr) || o->total == 0)
        return vkd_fail(err, VKD_ERR_INVALID, "train-draft: sequences of >= 3 tokens, >= 1 anchor, lr > 0 "
                        "and >= 1 step are required");
    if (o->ce_tv && (!(o->ce_weight >= 0) || !(o->tv_weight > 0) || !isfinite(o->ce_weight) ||
                     !isfinite(o->tv_weight)))
        return vkd_fail(err, VKD_ERR_INVALID, "train-draft: ce+tv needs ce weight >= 0 and tv weight > 0 (got "
                        "%g, %g)", o->ce_weight, o->tv_weight);
    vkd_train_draft *tr = calloc(1, sizeof *tr);
    if (!tr) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    tr->d = d;
    tr->o = *o;
    if (!(tr->o.max_grad_norm > 0)) tr->o.max_grad_norm = 1.0;
    if (!(tr->o.gamma > 0)) tr->o.gamma = VKD_TRAIN_DRAFT_GAMMA;
    vkd_ctx *ctx = d->ctx;
    const uint32_t B = d->block, H = d->hidden, K = o->anchors;
    uint32_t P = o->per_block ? 1 : o->blocks_per_pass ? o->blocks_per_pass : VKD_TRAIN_DRAFT_PASS_ROWS / B;
    if (P > K) P = K;
    if (P == 0) P = 1;
    tr->pass = P;
    tr->npass = (K + P - 1) / P;
    vkd_result r = vkd_dflash_train_create_blocks(d, o->max_len - 2, P, &tr->T, err);
    if (!r) r = vkd_dflash_train_weight_grads(tr->T, err);
    if (!r) r = vkd_lm_loss_ws_create(ctx, P * B, 0, o->ce_tv, &tr->ws, err);
    if (!r && o->ce_tv)
        r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, o->max_len, H, "train_final_h", &tr->final_h, err);
    if (!r && o->ce_tv) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, (uint64_t)P * B, H, "train_t_rows", &tr->t_rows, err);
    if (!r && d->target->lm_head->layout != VKD_LAYOUT_ROWS) {
        if (!o->target_dir) {
            r = vkd_fail(err, VKD_ERR_INVALID, "train-draft: the target's lm_head is not row-major and no "
                         "target folder was given for a row-major copy");
            goto fail;
        }
        vkd_st_model *m = NULL;
        const vkd_cfg *tc = &d->target->cfg;
        int64_t shape[2] = {(int64_t)d->vocab, (int64_t)d->hidden};
        r = vkd_st_model_open(o->target_dir, &m, err);
        if (!r) r = vkd_weight_load_as(ctx, m, tc->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                                       2, shape, VKD_LAYOUT_ROWS, &tr->head, err);
        vkd_st_model_close(m);
    }
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, o->max_len, (uint64_t)d->ntaps * H, "train_features",
                                     &tr->feats, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, (uint64_t)P * B, H, "train_dout", &tr->dout, err);
    if (r) goto fail;
    const uint32_t np = tr->npass;
    tr->lab = calloc(np, sizeof *tr->lab), tr->row_w = calloc(np, sizeof *tr->row_w);
    tr->loss = calloc(np, sizeof *tr->loss);
    if (o->ce_tv) tr->l1 = calloc(np, sizeof *tr->l1), tr->l1v = malloc((size_t)np * P * B * 4);
    tr->anch = malloc(K * sizeof *tr->anch);
    tr->blocks = malloc((size_t)K * B * 4), tr->labels = malloc((size_t)K * (B - 1) * 4);
    tr->weights = malloc((size_t)K * (B - 1) * 4), tr->lossv = malloc((size_t)np * P * B * 4);
    tr->lab_b = malloc((size_t)P * B * 4), tr->w_b = malloc((size_t)P * B * 4);
    if (!tr->lab || !tr->row_w || !tr->loss || !tr->anch || !tr->blocks || !tr->labels || !tr->weights ||
        !tr->lossv || !tr->lab_b || !tr->w_b || (o->ce_tv && (!tr->l1 || !tr->l1v))) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    for (uint32_t i = 0; !r && i < np; i++) {
        r = vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, (uint64_t)P * B, "train_labels", &tr->lab[i], err);
        if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, (uint64_t)P * B, "train_row_w", &tr->row_w[i], err);
        if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, (uint64_t)P * B, "train_loss", &tr->loss[i], err);
        if (!r && o->ce_tv) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, (uint64_t)P * B, "train_l1", &tr->l1[i], err);
    }
    if (r) goto fail;
    /* one optimizer slot per draft tensor, in checkpoint order */
    vkd_cfg_tensor *list = NULL;
    size_t n = 0;
    if ((r = vkd_cfg_expected_tensors(&d->cfg, &list, &n, err))) goto fail;
    tr->slots = calloc(n, sizeof *tr->slots);
    tr->names = calloc(n, sizeof *tr->names);
    if (!tr->slots || !tr->names) r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; !r && i < n; i++, tr->nslots++) {
        vkd_tensor *g, *w = weight_of(d, tr->T, list[i].name, &g);
        if (!w || !g || w->dtype != VKD_DTYPE_F32 || w->layout != VKD_LAYOUT_ROWS || w->nchunks != 1) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "train-draft: '%s' must be a trainable f32 row-major weight "
                         "in one binding (load the draft from f32 weights with row-major layout)", list[i].name);
            break;
        }
        snprintf(tr->names[i], sizeof tr->names[i], "%s", list[i].name);
        vkd_optim_slot *s = &tr->slots[i];
        *s = (vkd_optim_slot){.param = w, .grad = g, .n = w->rows * w->cols};
        r = vkd_optim_slot_moments(ctx, s, err);
    }
    free(list);
    if (r || (r = vkd_optim_parts_create(ctx, tr->slots, tr->nslots, &tr->nparts, &tr->parts, err))) goto fail;
    *out = tr;
    return VKD_OK;
fail:
    vkd_train_draft_free(tr);
    return r;
}

/* One sequence of a step: its K anchors, rows, features and one submission of every pass
 * (forward, loss, backward: the gradients accumulate; zeroed first when `first`, the global
 * norm recorded after when `last`, read into *gnorm). Row weights are scaled by `wscale`
 * (the sequence's share of the step's total weight). Adds to *loss, *tau (sum over anchors). */
static vkd_result step_seq(vkd_train_draft *tr, vkd_rec *rec, const vkd_train_draft_seq *q, uint64_t step,
                           double wscale, bool first, bool last, float *gnorm, double *loss, double *tau,
                           double *accept, vkd_error *err) {
    vkd_dflash *d = tr->d;
    const uint32_t B = d->block, T = q->n;
    uint32_t s0 = q->resp_start > 1 ? q->resp_start : 1, avail = T - 1 - s0;
    uint32_t K = tr->o.anchors < avail ? tr->o.anchors : avail;
    /* anchors 1..avail drawn as for a context of avail + 2 tokens, shifted to s0..T-2 */
    vkd_result r = vkd_ttt_draw_anchors(tr->o.seed, q->key, (uint32_t)step, avail + 2, K, tr->anch, err);
    if (r) return r;
    for (uint32_t i = 0; i < K; i++) tr->anch[i] += s0 - 1;
    vkd_ttt_step_rows(q->ids, T, tr->anch, K, B, d->mask_id, tr->o.gamma, tr->blocks, tr->labels, tr->weights);
    for (size_t i = 0; i < (size_t)K * (B - 1); i++) tr->weights[i] = (float)(tr->weights[i] * wscale);
    const uint32_t P = tr->pass, np = (K + P - 1) / P;
    /* pass g: anchors [g*P, g*P + nb); row 0 of every block unlabelled */
    for (uint32_t g = 0; !r && g < np; g++) {
        uint32_t nb = K - g * P < P ? K - g * P : P;
        for (uint32_t b = 0; b < nb; b++) {
            size_t i = (size_t)g * P + b;
            tr->lab_b[b * B] = -1;
            tr->w_b[b * B] = 0;
            memcpy(tr->lab_b + b * B + 1, tr->labels + i * (B - 1), (B - 1) * 4);
            memcpy(tr->w_b + b * B + 1, tr->weights + i * (B - 1), (B - 1) * 4);
        }
        r = vkd_tensor_upload(tr->lab[g], 0, tr->lab_b, (uint64_t)nb * B * 4, err);
        if (!r) r = vkd_tensor_upload(tr->row_w[g], 0, tr->w_b, (uint64_t)nb * B * 4, err);
    }
    if (!r) r = vkd_dflash_target_features_final(d, rec, q->ids, T, tr->feats, tr->final_h, err);
    if (r) return r;
    vkd_rec_begin(rec);
    if (first) r = vkd_dflash_train_zero_grads(tr->T, rec, err);
    for (uint32_t g = 0; !r && g < np; g++) {
        uint32_t nb = K - g * P < P ? K - g * P : P;
        const vkd_tensor *head = tr->head ? tr->head : d->target->lm_head;
        vkd_lm_loss_args la = {.rows = nb * B, .h = tr->T->out, .w = head, .labels = tr->lab[g],
                               .row_w = tr->row_w[g], .loss = tr->loss[g], .dh = tr->dout};
        if (tr->o.ce_tv) {
            /* teacher row b*B + k: position a+k-1 (a >= 1); rows past the sequence keep old values
             * (weight 0) */
            for (uint32_t b = 0; b < nb; b++) {
                uint32_t p0 = tr->anch[(size_t)g * P + b] - 1, n = T - p0 < B ? T - p0 : B;
                vkd_op_copy2d(rec, tr->t_rows, b * B, 0, tr->final_h, p0, 0, n, d->hidden);
            }
            la.t_h = tr->t_rows, la.t_w = head, la.teacher_l1 = true, la.l1 = tr->l1[g];
            la.l1_weight = (float)tr->o.tv_weight;
            la.ce_weight = (float)tr->o.ce_weight;
            if (tr->o.ce_weight == 0) la.labels = NULL; /* lm_loss reads a zero weight as 1 */
        }
        if (tr->o.per_block)
            r = vkd_dflash_train_forward(tr->T, rec, tr->feats, 0, tr->anch[g], tr->blocks + (size_t)g * B, err);
        else
            r = vkd_dflash_train_forward_blocks(tr->T, rec, tr->feats, 0, nb, tr->anch + (size_t)g * P,
                                                tr->blocks + (size_t)g * P * B, err);
        if (!r) r = vkd_op_lm_loss_forward_backward(rec, tr->ws, &la);
        if (!r) r = vkd_dflash_train_backward(tr->T, rec, tr->dout, err);
        if (!r) r = vkd_rec_read(rec, tr->loss[g], 0, tr->lossv + (size_t)g * P * B, (uint64_t)nb * B * 4);
        if (!r && tr->o.ce_tv) r = vkd_rec_read(rec, tr->l1[g], 0, tr->l1v + (size_t)g * P * B, (uint64_t)nb * B * 4);
    }
    if (last) {
        uint32_t part = 0;
        for (uint32_t k = 0; !r && k < tr->nslots; k++) {
            r = vkd_op_sumsq(rec, tr->parts, part, tr->slots[k].grad, tr->slots[k].n);
            part += vkd_optim_sumsq_parts(d->ctx, tr->slots[k].n);
        }
        if (!r) r = vkd_op_global_norm(rec, tr->parts, tr->nparts, tr->parts, part);
        if (!r) r = vkd_rec_read(rec, tr->parts, (uint64_t)tr->nparts * 4, gnorm, 4);
    }
    if ((r = vkd_rec_submit_after(rec, r, err))) return r;
    for (uint32_t i = 0; i < K; i++) {
        double run = 1, acc = 1;
        for (uint32_t k = 1; k < B; k++) {
            double w = tr->weights[(size_t)i * (B - 1) + k - 1], l = tr->lossv[(size_t)i * B + k];
            *loss += l;
            if (w <= 0) break;
            double ce = l / w; /* the row's loss is w * CE, or w (ce_w CE + tv_w L1) */
            if (tr->o.ce_tv) {
                double l1 = tr->l1v[(size_t)i * B + k];
                *accept += 1 - 0.5 * l1;
                /* without the CE term: the TV acceptance estimate stands in for exp(-CE) */
                ce = tr->o.ce_weight > 0 ? (ce - tr->o.tv_weight * l1) / tr->o.ce_weight : -log(fmax(1 - 0.5 * l1, 1e-30));
            }
            run *= exp(-ce);
            acc += run;
        }
        *tau += acc;
    }
    return VKD_OK;
}

/* The raw position weight sum of the rows vkd_ttt_step_rows labels for sequence q at
 * `step` (the anchors drawn as step_seq draws them); *anchors gets their count. */
static vkd_result seq_raw_weight(vkd_train_draft *tr, const vkd_train_draft_seq *q, uint64_t step, double *sum,
                                 uint32_t *anchors, uint32_t *rows, vkd_error *err) {
    const uint32_t B = tr->d->block, T = q->n;
    uint32_t s0 = q->resp_start > 1 ? q->resp_start : 1, avail = T - 1 - s0;
    uint32_t K = tr->o.anchors < avail ? tr->o.anchors : avail;
    vkd_result r = vkd_ttt_draw_anchors(tr->o.seed, q->key, (uint32_t)step, avail + 2, K, tr->anch, err);
    if (r) return r;
    *sum = 0;
    *rows = 0;
    *anchors = K;
    for (uint32_t i = 0; i < K; i++) {
        uint64_t a = tr->anch[i] + s0 - 1;
        for (uint32_t k = 1; k < B && a + k <= (uint64_t)T - 1; k++, (*rows)++)
            *sum += exp(-(double)(k - 1) / tr->o.gamma);
    }
    return VKD_OK;
}

vkd_result vkd_train_draft_step_batch(vkd_train_draft *tr, vkd_rec *rec, const vkd_train_draft_seq *seqs,
                                      uint32_t nseq, uint64_t step, vkd_train_draft_stats *st, vkd_error *err) {
    memset(st, 0, sizeof *st);
    double t0 = vkd_now();
    if (nseq == 0) return vkd_fail(err, VKD_ERR_INVALID, "train-draft: a step without sequences");
    double *raw = malloc(nseq * sizeof *raw), total_w = 0;
    if (!raw) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    vkd_result r = VKD_OK;
    for (uint32_t s = 0; !r && s < nseq; s++) {
        const vkd_train_draft_seq *q = &seqs[s];
        uint32_t T = q->n, s0 = q->resp_start > 1 ? q->resp_start : 1, K, rows;
        if (T > tr->o.max_len)
            r = vkd_fail(err, VKD_ERR_RANGE, "train-draft: a sequence of %u tokens (at most %u)", T, tr->o.max_len);
        else if (T < 3 || s0 > T - 2)
            r = vkd_fail(err, VKD_ERR_RANGE, "train-draft: the sequence (%u tokens, response from %u) has no "
                         "anchor", T, q->resp_start);
        else if (!(r = seq_raw_weight(tr, q, step, &raw[s], &K, &rows, err))) {
            total_w += raw[s];
            st->anchors += K;
            st->rows += rows;
        }
    }
    /* each sequence's rows are normalised over the sequence (vkd_ttt_step_rows): rescaled to
     * its share so that the step's loss is the weighted mean CE over all of its rows */
    double loss = 0, tau = 0, accept = 0;
    float gnorm = NAN;
    for (uint32_t s = 0; !r && s < nseq; s++)
        r = step_seq(tr, rec, &seqs[s], step, total_w > 0 ? raw[s] / total_w : 0, s == 0, s + 1 == nseq, &gnorm,
                     &loss, &tau, &accept, err);
    free(raw);
    if (r) return r;
    st->loss = loss;
    st->grad_norm = gnorm;
    st->tau_est = st->anchors ? tau / st->anchors : 0;
    st->tv_accept = tr->o.ce_tv && st->rows ? accept / st->rows : 0;
    uint64_t warm = tr->o.warmup, total = tr->o.total;
    st->lr = tr->o.lr * vkd_lr_cosine(step, warm, total);
    if (!isfinite(loss) || !isfinite(gnorm))
        return vkd_fail(err, VKD_ERR_RANGE, "train-draft step %llu: the loss (%g) or the gradient norm (%g) is "
                        "not finite; stopped before that update", (unsigned long long)step + 1, loss, (double)gnorm);
    vkd_optim_params op = {.kind = VKD_OPTIM_ADAMW, .lr = st->lr, .step = step + 1,
                           .max_grad_norm = tr->o.max_grad_norm};
    vkd_rec_begin(rec);
    r = vkd_rec_submit_after(rec, vkd_optim_step(rec, tr->slots, tr->nslots, &op, tr->parts, NULL), err);
    st->seconds = vkd_now() - t0;
    return r;
}

vkd_result vkd_train_draft_step(vkd_train_draft *tr, vkd_rec *rec, const int32_t *seq, uint32_t T,
                                uint32_t resp_start, uint32_t key, uint64_t step,
                                vkd_train_draft_stats *st, vkd_error *err) {
    vkd_train_draft_seq q = {.ids = seq, .n = T, .resp_start = resp_start, .key = key};
    return vkd_train_draft_step_batch(tr, rec, &q, 1, step, st, err);
}

/* ---- optimizer state ----------------------------------------------------------------- */

/* the slots' names as the pointer array vkd_optim_state_* take (free() it) */
static const char **slot_names(const vkd_train_draft *tr) {
    const char **nm = malloc((tr->nslots ? tr->nslots : 1) * sizeof *nm);
    for (uint32_t i = 0; nm && i < tr->nslots; i++) nm[i] = tr->names[i];
    return nm;
}

vkd_result vkd_train_draft_save_optim(vkd_train_draft *tr, const char *path, vkd_error *err) {
    const char **nm = slot_names(tr);
    vkd_result r = nm ? vkd_optim_state_save(tr->slots, nm, tr->nslots, path, err)
                      : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    free(nm);
    return r;
}

vkd_result vkd_train_draft_load_optim(vkd_train_draft *tr, const char *path, vkd_error *err) {
    const char **nm = slot_names(tr);
    vkd_result r = nm ? vkd_optim_state_load(tr->slots, nm, tr->nslots, path, err)
                      : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    free(nm);
    return r;
}
