/* train_target.c: the whole-model trainer (vkd_train_target.h). */
#include "vkd_train_target.h"

#include "st_write.h"
#include "vkd_optim_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vkd_train_target {
    vkd_target *t;
    vkd_target_train *T;
    vkd_train_target_options o;
    vkd_target_param *params;
    const char **names;        /* params[i].name, for vkd_optim_state_* */
    vkd_optim_slot *slots;
    uint32_t nslots, nparts;
    vkd_tensor *parts;
    float *lossv;
};

void vkd_train_target_free(vkd_train_target *tr) {
    if (!tr) return;
    for (uint32_t i = 0; tr->slots && i < tr->nslots; i++) {
        vkd_tensor_destroy(tr->slots[i].m);
        vkd_tensor_destroy(tr->slots[i].v);
    }
    vkd_tensor_destroy(tr->parts);
    vkd_target_train_free(tr->T);
    free(tr->slots), free(tr->params), free(tr->names), free(tr->lossv);
    free(tr);
}

vkd_result vkd_train_target_create(vkd_target *t, const vkd_train_target_options *o,
                                   vkd_train_target **out, vkd_error *err) {
    *out = NULL;
    if (!o || o->max_len < 2 || !(o->lr > 0) || !isfinite(o->lr) || o->total == 0)
        return vkd_fail(err, VKD_ERR_INVALID, "train-target: sequences of >= 2 tokens, lr > 0 and >= 1 step "
                        "are required");
    vkd_train_target *tr = calloc(1, sizeof *tr);
    if (!tr) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    tr->t = t;
    tr->o = *o;
    if (!(tr->o.max_grad_norm > 0)) tr->o.max_grad_norm = 1.0;
    vkd_result r = vkd_target_train_create(t, o->max_len, &tr->T, err);
    if (r) goto fail;
    uint32_t n = vkd_target_train_params(tr->T, NULL, 0);
    tr->params = calloc(n, sizeof *tr->params);
    tr->slots = calloc(n, sizeof *tr->slots);
    tr->names = calloc(n, sizeof *tr->names);
    tr->lossv = malloc((size_t)o->max_len * sizeof *tr->lossv);
    if (!tr->params || !tr->slots || !tr->names || !tr->lossv) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    vkd_target_train_params(tr->T, tr->params, n);
    for (uint32_t i = 0; !r && i < n; i++, tr->nslots++) {
        vkd_optim_slot *s = &tr->slots[i];
        tr->names[i] = tr->params[i].name;
        *s = (vkd_optim_slot){.param = tr->params[i].param, .grad = tr->params[i].grad,
                              .n = tr->params[i].param->rows * tr->params[i].param->cols};
        r = vkd_optim_slot_moments(t->ctx, s, err);
    }
    if (r || (r = vkd_optim_parts_create(t->ctx, tr->slots, tr->nslots, &tr->nparts, &tr->parts, err))) goto fail;
    *out = tr;
    return VKD_OK;
fail:
    vkd_train_target_free(tr);
    return r;
}

/* zeroed gradients, then every sequence's forward + backward; *loss: the batch mean */
static vkd_result batch_grads(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *seqs,
                              const uint32_t *lens, uint32_t n, double *loss, vkd_error *err) {
    uint64_t rows = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (lens[i] < 2 || lens[i] > tr->o.max_len)
            return vkd_fail(err, VKD_ERR_INVALID, "train-target: sequence of %u tokens (2..%u allowed)",
                            lens[i], tr->o.max_len);
        rows += lens[i] - 1;
    }
    if (!rows) return vkd_fail(err, VKD_ERR_INVALID, "train-target: empty batch");
    vkd_rec_begin(rec);
    vkd_result r = vkd_rec_submit_after(rec, vkd_target_train_zero_grads(tr->T, rec), err);
    double sum = 0;
    for (uint32_t i = 0; !r && i < n; i++) {
        vkd_rec_begin(rec);
        r = vkd_rec_submit_after(rec, vkd_target_train_sequence(tr->T, rec, seqs[i], lens[i], (float)(1.0 / rows), err), err);
        if (!r) r = vkd_tensor_download(tr->T->loss, 0, tr->lossv, (size_t)(lens[i] - 1) * 4, err);
        for (uint32_t k = 0; !r && k + 1 < lens[i]; k++) sum += tr->lossv[k];
    }
    *loss = sum;
    return r;
}

vkd_result vkd_train_target_step(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *seqs,
                                 const uint32_t *lens, uint32_t n, uint64_t step,
                                 vkd_train_target_stats *st, vkd_error *err) {
    memset(st, 0, sizeof *st);
    for (uint32_t i = 0; i < n; i++) st->tokens += lens[i];
    vkd_result r = batch_grads(tr, rec, seqs, lens, n, &st->loss, err);
    if (r) return r;
    if (!isfinite(st->loss))
        return vkd_fail(err, VKD_ERR_RANGE, "train-target step %llu: the loss is not finite (%g); stopped "
                        "before that update", (unsigned long long)step + 1, st->loss);
    st->lr = tr->o.lr * vkd_lr_cosine(step, tr->o.warmup, tr->o.total);
    vkd_optim_params op = {.kind = VKD_OPTIM_ADAMW, .lr = st->lr, .step = step + 1,
                           .max_grad_norm = tr->o.max_grad_norm, .weight_decay = tr->o.weight_decay};
    uint32_t ni = 0;
    vkd_rec_begin(rec);
    r = vkd_rec_submit_after(rec, vkd_optim_step(rec, tr->slots, tr->nslots, &op, tr->parts, &ni), err);
    if (!r) r = vkd_tensor_download(tr->parts, (uint64_t)ni * 4, &st->grad_norm, 4, err);
    return r;
}

vkd_result vkd_train_target_eval(vkd_train_target *tr, vkd_rec *rec, const int32_t *const *seqs,
                                 const uint32_t *lens, uint32_t n, double *loss, vkd_error *err) {
    return batch_grads(tr, rec, seqs, lens, n, loss, err);
}

vkd_result vkd_train_target_save_weights(vkd_train_target *tr, const char *dir, vkd_dtype dtype,
                                         vkd_error *err) {
    if (dtype != VKD_DTYPE_F32 && dtype != VKD_DTYPE_BF16)
        return vkd_fail(err, VKD_ERR_INVALID, "train-target: weights are saved as F32 or BF16");
    const uint32_t n = tr->nslots;
    vkd_st_out *outs = calloc(n, sizeof *outs);
    float **data = calloc(n, sizeof *data);
    vkd_result r = !outs || !data ? vkd_fail(err, VKD_ERR_NOMEM, "out of host memory") : VKD_OK;
    for (uint32_t i = 0; !r && i < n; i++) {
        const vkd_tensor *w = tr->params[i].param;
        uint64_t cnt = tr->slots[i].n;
        if (!(data[i] = malloc(cnt * 4))) {
            r = vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
            break;
        }
        if ((r = vkd_tensor_download(w, 0, data[i], cnt * 4, err))) break;
        if (dtype == VKD_DTYPE_BF16) { /* in place: element k's 2 bytes go below element k's 4 */
            uint16_t *h = (uint16_t *)data[i];
            for (uint64_t k = 0; k < cnt; k++) h[k] = vkd_f32_to_bf16(data[i][k]);
        }
        outs[i] = (vkd_st_out){tr->params[i].name, dtype, w->ndim, {0}, data[i]};
        memcpy(outs[i].shape, w->shape, (size_t)w->ndim * sizeof outs[i].shape[0]);
    }
    if (!r) {
        static const char *const meta[] = {"format", "pt", NULL};
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        r = vkd_st_write(path, outs, n, meta, err);
    }
    for (uint32_t i = 0; data && i < n; i++) free(data[i]);
    free(data), free(outs);
    return r;
}

vkd_result vkd_train_target_save_optim(vkd_train_target *tr, const char *path, vkd_error *err) {
    return vkd_optim_state_save(tr->slots, tr->names, tr->nslots, path, err);
}

vkd_result vkd_train_target_load_optim(vkd_train_target *tr, const char *path, vkd_error *err) {
    return vkd_optim_state_load(tr->slots, tr->names, tr->nslots, path, err);
}
