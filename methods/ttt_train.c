/* ttt_train.c: LoRA adapters on the DFlash draft for test-time training (vkd_ttt.h), and
 * the training step.
 *
 * Adapters: the host side and the PEFT files are models/vkd_lora.h; attaching gives each
 * adapted vkd_linear its own device A and B (models/layer.h), which the draft's forward then
 * uses. Saving reads them back from the device.
 *
 * Training (vkd_ttt_adapt): the target once over the context with taps (features kept on the
 * device, T rows); per step, for each anchor a: the draft's training forward on features
 * rows [0, a) and the block [x_a, MASK x (B-1)] (models/dflash_train.h), the fused LM head +
 * loss over its B output rows (row 0 unlabelled, rows k the normalized w_k: their sum over
 * the step is the step's loss), its backward to the output rows, the draft's backward
 * (LoRA gradients accumulate over the anchors); then the global gradient norm and the
 * losses are read back, and only when both are finite the optimizer updates every A and B
 * (runtime/vkd_train_ops.h). Two submissions per step. */
#include "vkd_ttt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dflash_train.h"
#include "vkd_generate.h"
#include "vkd_lora.h"
#include "vkd_train_ops.h"

struct vkd_ttt_adapter {
    vkd_dflash *d;
    vkd_lora *host;            /* paths, rank, alpha, targets; values refreshed on save */
    vkd_linear **lin;          /* host->nmodules linears it is attached to */
    uint32_t targets;          /* VKD_TTT_* mask */
};

static const struct { const char *name; uint32_t bit; } names[4] = {
    {"fc", VKD_TTT_FC}, {"q_proj", VKD_TTT_Q}, {"k_proj", VKD_TTT_K}, {"v_proj", VKD_TTT_V}};

static vkd_lora_dims dims_of(const vkd_dflash *d) {
    return (vkd_lora_dims){.hidden = d->hidden, .n_layers = d->n_layers, .n_q = d->n_q, .n_kv = d->n_kv,
                           .head_dim = d->head_dim, .ffn = d->ffn, .ntaps = d->ntaps};
}

/* The draft's linear at a PEFT module path ("fc", "layers.3.self_attn.k_proj"), or NULL. */
static vkd_linear *linear_at(vkd_dflash *d, const char *path) {
    if (!strcmp(path, "fc")) return &d->fc;
    unsigned li;
    char kind[32];
    if (sscanf(path, "layers.%u.self_attn.%31s", &li, kind) == 2 && li < d->n_layers) {
        vkd_layer *L = &d->layers[li];
        if (!strcmp(kind, "q_proj")) return &L->wq;
        if (!strcmp(kind, "k_proj")) return &L->wk;
        if (!strcmp(kind, "v_proj")) return &L->wv;
    }
    return NULL;
}

static uint32_t bit_of(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *last = dot ? dot + 1 : path;
    for (int i = 0; i < 4; i++)
        if (!strcmp(last, names[i].name)) return names[i].bit;
    return 0;
}

void vkd_ttt_adapter_free(vkd_ttt_adapter *a) {
    if (!a) return;
    for (uint32_t i = 0; a->lin && a->host && i < a->host->nmodules; i++)
        if (a->lin[i]) vkd_linear_lora_detach(a->lin[i]);
    free(a->lin);
    vkd_lora_free(a->host);
    free(a);
}

/* Attaches host (owned by the call) to the draft's linears and uploads A and B. */
static vkd_result attach(vkd_dflash *d, vkd_lora *host, vkd_ttt_adapter **out, vkd_error *err) {
    vkd_ttt_adapter *a = calloc(1, sizeof *a);
    vkd_result r = VKD_OK;
    if (!a || !(a->lin = calloc(host->nmodules ? host->nmodules : 1, sizeof *a->lin))) {
        free(a);
        vkd_lora_free(host);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    }
    a->d = d;
    a->host = host;
    /* rows per call: context rows (fc, k, v) or block rows */
    uint32_t rows = d->max_ctx_rows > d->block ? d->max_ctx_rows : d->block;
    for (uint32_t i = 0; !r && i < host->nmodules; i++) {
        vkd_lora_module *m = &host->modules[i];
        vkd_linear *lin = linear_at(d, m->path);
        if (!lin) {
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "LoRA adapter: module '%s' is not one vkdraft adapts "
                         "(fc, q_proj, k_proj, v_proj)", m->path);
            break;
        }
        if (vkd_linear_in(lin) != m->in || vkd_linear_out(lin) != m->out) {
            r = vkd_fail(err, VKD_ERR_INVALID, "LoRA adapter: module '%s' is %u x %u, the draft's linear %u x %u",
                         m->path, m->out, m->in, vkd_linear_out(lin), vkd_linear_in(lin));
            break;
        }
        if ((r = vkd_linear_lora_attach(d->ctx, lin, host->rank, host->alpha, rows, err))) break;
        a->lin[i] = lin;
        lin->scale = host->scale; /* alpha / r, or alpha / sqrt(r) with use_rslora */
        if ((r = vkd_tensor_upload(lin->lora_a, 0, m->a, (uint64_t)host->rank * m->in * 4, err)) ||
            (r = vkd_tensor_upload(lin->lora_b, 0, m->b, (uint64_t)m->out * host->rank * 4, err)))
            break;
        a->targets |= bit_of(m->path);
    }
    if (r) {
        vkd_ttt_adapter_free(a);
        return r;
    }
    *out = a;
    return VKD_OK;
}

vkd_result vkd_ttt_adapter_new(vkd_dflash *d, uint32_t rank, double alpha, uint32_t targets,
                               uint64_t seed, vkd_ttt_adapter **out, vkd_error *err) {
    if (!targets) targets = VKD_TTT_DEFAULT_TARGETS;
    const char *t[4];
    uint32_t nt = 0;
    for (int i = 0; i < 4; i++)
        if (targets & names[i].bit) t[nt++] = names[i].name;
    vkd_lora_dims dims = dims_of(d);
    vkd_lora *host;
    vkd_result r = vkd_lora_create(&dims, t, nt, rank, (float)alpha, seed, NULL, &host, err);
    return r ? r : attach(d, host, out, err);
}

vkd_result vkd_ttt_adapter_load(vkd_dflash *d, const char *dir, vkd_ttt_adapter **out,
                                vkd_error *err) {
    vkd_lora_dims dims = dims_of(d);
    vkd_lora *host;
    vkd_result r = vkd_lora_load(dir, &dims, &host, err);
    return r ? r : attach(d, host, out, err);
}

vkd_result vkd_ttt_adapter_save(vkd_ttt_adapter *a, const char *dir, vkd_error *err) {
    vkd_lora *h = a->host;
    vkd_result r = VKD_OK;
    for (uint32_t i = 0; !r && i < h->nmodules; i++) {
        vkd_lora_module *m = &h->modules[i];
        if ((r = vkd_tensor_download(a->lin[i]->lora_a, 0, m->a, (uint64_t)h->rank * m->in * 4, err)) ||
            (r = vkd_tensor_download(a->lin[i]->lora_b, 0, m->b, (uint64_t)m->out * h->rank * 4, err)))
            break;
    }
    return r ? r : vkd_lora_save(h, dir, err);
}

uint32_t vkd_ttt_adapter_rank(const vkd_ttt_adapter *a) { return a->host->rank; }
uint32_t vkd_ttt_adapter_targets(const vkd_ttt_adapter *a) { return a->targets; }
double vkd_ttt_adapter_alpha(const vkd_ttt_adapter *a) { return a->host->alpha; }

/* ---- training ---- */

bool vkd_ttt_engine_available(void) { return true; }

void vkd_ttt_trace_free(vkd_ttt_trace *t) {
    free(t->losses);
    t->losses = NULL;
    t->n = 0;
}

/* What one vkd_ttt_adapt call holds on the device. */
typedef struct train {
    vkd_dflash_train *tr;
    vkd_lm_loss_ws *ws;
    vkd_tensor *feats;                 /* T x (ntaps * hidden): the context's taps */
    vkd_tensor **lab, **row_w, **loss; /* per anchor: B labels (i32), B weights, B losses */
    uint32_t nanch;
    vkd_tensor *dout;                  /* B x hidden */
    vkd_tensor *parts;                 /* sums of squares of the gradients, then the norm */
    uint32_t nparts, norm_index;
    vkd_optim_slot *slots;             /* A and B of every module */
    uint32_t nslots;
} train;

static void train_free(train *S) {
    vkd_dflash_train_free(S->tr);
    vkd_lm_loss_ws_destroy(S->ws);
    vkd_tensor_destroy(S->feats);
    for (uint32_t i = 0; i < S->nanch; i++) {
        if (S->lab) vkd_tensor_destroy(S->lab[i]);
        if (S->row_w) vkd_tensor_destroy(S->row_w[i]);
        if (S->loss) vkd_tensor_destroy(S->loss[i]);
    }
    free(S->lab);
    free(S->row_w);
    free(S->loss);
    vkd_tensor_destroy(S->dout);
    vkd_tensor_destroy(S->parts);
    for (uint32_t i = 0; S->slots && i < S->nslots; i++) {
        vkd_tensor_destroy(S->slots[i].m);
        vkd_tensor_destroy(S->slots[i].v);
    }
    free(S->slots);
}

static vkd_result train_create(vkd_dflash *d, vkd_ttt_adapter *a, uint32_t T, uint32_t nanch,
                               vkd_ttt_optimizer opt, train *S, vkd_error *err) {
    vkd_ctx *ctx = d->ctx;
    uint32_t B = d->block;
    vkd_result r = vkd_dflash_train_create(d, T - 2, &S->tr, err);
    if (!r) r = vkd_dflash_train_grads(S->tr, err);
    if (!r) r = vkd_lm_loss_ws_create(ctx, B, 0, false, &S->ws, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, T, (uint64_t)d->ntaps * d->hidden, "ttt_features",
                                     &S->feats, err);
    if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, B, d->hidden, "ttt_dout", &S->dout, err);
    if (r) return r;
    S->lab = calloc(nanch, sizeof *S->lab);
    S->row_w = calloc(nanch, sizeof *S->row_w);
    S->loss = calloc(nanch, sizeof *S->loss);
    S->nslots = 2 * a->host->nmodules;
    S->slots = calloc(S->nslots, sizeof *S->slots);
    if (!S->lab || !S->row_w || !S->loss || !S->slots) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    S->nanch = nanch;
    for (uint32_t i = 0; !r && i < nanch; i++) {
        r = vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, B, "ttt_labels", &S->lab[i], err);
        if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, B, "ttt_row_w", &S->row_w[i], err);
        if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, B, "ttt_loss", &S->loss[i], err);
    }
    for (uint32_t i = 0; !r && i < a->host->nmodules; i++) {
        vkd_linear *lin = a->lin[i];
        const vkd_lora_module *m = &a->host->modules[i];
        vkd_optim_slot *sa = &S->slots[2 * i], *sb = &S->slots[2 * i + 1];
        *sa = (vkd_optim_slot){.param = lin->lora_a, .grad = lin->grad_a, .n = (uint64_t)a->host->rank * m->in};
        *sb = (vkd_optim_slot){.param = lin->lora_b, .grad = lin->grad_b, .n = (uint64_t)m->out * a->host->rank};
        if (opt == VKD_TTT_ADAMW)
            for (int k = 0; !r && k < 2; k++) {
                vkd_optim_slot *sl = k ? sb : sa;
                r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, sl->n, "ttt_adam_m", &sl->m, err);
                if (!r) r = vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, sl->n, "ttt_adam_v", &sl->v, err);
            }
    }
    if (r) return r;
    S->nparts = vkd_optim_parts_needed(ctx, S->slots, S->nslots);
    return vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, S->nparts + 1, "ttt_norm_parts", &S->parts, err);
}

vkd_result vkd_ttt_adapt(vkd_dflash *d, vkd_ttt_adapter *a, vkd_rec *rec, const int32_t *seq,
                         uint32_t T, const vkd_ttt_options *o, vkd_ttt_trace *trace,
                         vkd_error *err) {
    *trace = (vkd_ttt_trace){0};
    uint32_t B = d->block, H = d->hidden;
    if (a->d != d) return vkd_fail(err, VKD_ERR_INVALID, "ttt: the adapter is attached to another draft");
    if (!o || o->steps == 0 || !(o->lr > 0) || !isfinite(o->lr))
        return vkd_fail(err, VKD_ERR_INVALID, "ttt: steps must be >= 1 and lr a finite number > 0");
    if (T < 3) return vkd_fail(err, VKD_ERR_RANGE, "ttt: a context of %u tokens has no anchor (T >= 3)", T);
    vkd_result r;
    if (o->anchors && (r = vkd_ttt_check_anchors(o->anchors, o->nanchors, T, err))) return r;
    uint32_t K = o->anchors ? o->nanchors : o->anchors_per_step ? o->anchors_per_step : VKD_TTT_DEFAULT_ANCHORS;
    if (!o->anchors && K > T - 2) K = T - 2;
    double gamma = o->gamma > 0 ? o->gamma : VKD_TTT_DEFAULT_GAMMA;
    trace->losses = calloc(o->steps, sizeof *trace->losses);
    uint32_t *anch = malloc((size_t)K * sizeof *anch);
    int32_t *blocks = malloc((size_t)K * B * sizeof *blocks), *labels = malloc((size_t)K * (B - 1) * sizeof *labels);
    float *weights = malloc((size_t)K * (B - 1) * sizeof *weights), *lossv = malloc((size_t)K * B * sizeof *lossv);
    int32_t *lab_b = malloc((size_t)B * sizeof *lab_b);
    float *w_b = malloc((size_t)B * sizeof *w_b);
    train S = {0};
    r = trace->losses && anch && blocks && labels && weights && lossv && lab_b && w_b
            ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = train_create(d, a, T, K, o->optimizer, &S, err);
    double t0 = vkd_now();
    if (!r) r = vkd_dflash_target_features(d, rec, seq, T, S.feats, err);
    trace->features_s = vkd_now() - t0;
    uint32_t next_cp = 0;
    for (uint32_t s = 0; !r && s < o->steps; s++) {
        t0 = vkd_now();
        if (o->anchors) memcpy(anch, o->anchors, (size_t)K * sizeof *anch);
        else if ((r = vkd_ttt_draw_anchors(o->seed, o->key, s, T, K, anch, err))) break;
        uint32_t rows = vkd_ttt_step_rows(seq, T, anch, K, B, d->mask_id, gamma, blocks, labels, weights);
        /* per anchor, B loss rows: row 0 (the known token) has no label and weight 0 */
        for (uint32_t i = 0; !r && i < K; i++) {
            lab_b[0] = -1;
            w_b[0] = 0;
            memcpy(lab_b + 1, labels + (size_t)i * (B - 1), (B - 1) * sizeof *lab_b);
            memcpy(w_b + 1, weights + (size_t)i * (B - 1), (B - 1) * sizeof *w_b);
            r = vkd_tensor_upload(S.lab[i], 0, lab_b, (uint64_t)B * 4, err);
            if (!r) r = vkd_tensor_upload(S.row_w[i], 0, w_b, (uint64_t)B * 4, err);
        }
        if (r) break;
        vkd_rec_begin(rec);
        r = vkd_dflash_train_zero_grads(S.tr, rec, err);
        for (uint32_t i = 0; !r && i < K; i++) {
            vkd_lm_loss_args la = {.rows = B, .h = S.tr->out, .w = d->target->lm_head, .labels = S.lab[i],
                                   .row_w = S.row_w[i], .loss = S.loss[i], .dh = S.dout};
            r = vkd_dflash_train_forward(S.tr, rec, S.feats, 0, anch[i], blocks + (size_t)i * B, err);
            if (!r) r = vkd_op_lm_loss_forward_backward(rec, S.ws, &la);
            if (!r) r = vkd_dflash_train_backward(S.tr, rec, S.dout, err);
            if (!r) r = vkd_rec_read(rec, S.loss[i], 0, lossv + (size_t)i * B, (uint64_t)B * 4);
        }
        /* the global gradient norm (finite check before the update) */
        uint32_t part = 0;
        for (uint32_t k = 0; !r && k < S.nslots; k++) {
            r = vkd_op_sumsq(rec, S.parts, part, S.slots[k].grad, S.slots[k].n);
            part += vkd_optim_sumsq_parts(d->ctx, S.slots[k].n);
        }
        if (!r) r = vkd_op_global_norm(rec, S.parts, S.nparts, S.parts, part);
        float gnorm = NAN;
        if (!r) r = vkd_rec_read(rec, S.parts, (uint64_t)S.nparts * 4, &gnorm, 4);
        if ((r = vkd_rec_submit_after(rec, r, err))) break;
        double loss = 0;
        for (uint32_t i = 0; i < K; i++)
            for (uint32_t k = 1; k < B; k++) loss += lossv[(size_t)i * B + k];
        trace->losses[s] = loss;
        trace->n = s + 1;
        if (!isfinite(loss) || !isfinite(gnorm)) {
            r = vkd_fail(err, VKD_ERR_RANGE, "ttt step %u: the loss (%g) or the gradient norm (%g) is not finite; "
                         "stopped before that update", s + 1, loss, (double)gnorm);
            break;
        }
        vkd_optim_params op = {.kind = o->optimizer == VKD_TTT_SGD ? VKD_OPTIM_SGD : VKD_OPTIM_ADAMW,
                               .lr = o->lr, .step = (uint64_t)s + 1};
        vkd_rec_begin(rec);
        if ((r = vkd_rec_submit_after(rec, vkd_optim_step(rec, S.slots, S.nslots, &op, NULL, NULL), err))) break;
        trace->updates = s + 1;
        trace->train_rows += rows;
        trace->train_s += vkd_now() - t0;
        while (!r && next_cp < o->ncheckpoints && o->checkpoints[next_cp] <= s + 1) {
            if (o->checkpoints[next_cp] == s + 1 && o->on_checkpoint) r = o->on_checkpoint(o->user, s + 1, err);
            next_cp++;
        }
    }
    (void)H;
    train_free(&S);
    free(anch);
    free(blocks);
    free(labels);
    free(weights);
    free(lossv);
    free(lab_b);
    free(w_b);
    return r;
}
