/* ttt_train.c: LoRA adapters on the DFlash draft for test-time training (vkd_ttt.h), and
 * the training step.
 *
 * Adapters: the host side and the PEFT files are models/vkd_lora.h; attaching gives each
 * adapted vkd_linear its own device A and B (models/layer.h), which the draft's forward then
 * uses. Saving reads them back from the device.
 *
 * NOT FINISHED: vkd_ttt_adapt needs the draft's training forward and backward with LoRA
 * gradients (the DFlash draft's keep-activations pass and backward ops), which this build
 * does not have yet: it refuses with VKD_ERR_UNSUPPORTED and vkd_ttt_engine_available()
 * says false, so `vkdraft ttt` refuses before it writes anything. */
#include "vkd_ttt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_lora.h"

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

bool vkd_ttt_engine_available(void) { return false; }

void vkd_ttt_trace_free(vkd_ttt_trace *t) {
    free(t->losses);
    t->losses = NULL;
    t->n = 0;
}

vkd_result vkd_ttt_adapt(vkd_dflash *d, vkd_ttt_adapter *a, vkd_rec *rec, const int32_t *seq,
                         uint32_t T, const vkd_ttt_options *o, vkd_ttt_trace *trace,
                         vkd_error *err) {
    (void)d, (void)a, (void)rec, (void)seq, (void)T, (void)o;
    if (trace) *trace = (vkd_ttt_trace){0};
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "test-time training needs the DFlash draft's training "
                    "forward and backward (LoRA gradients), which this build does not have yet");
}
