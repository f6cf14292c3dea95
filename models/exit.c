/* exit.c: the early-exit head (vkd_exit.h): creation from the target, save/load with the
 * target's identity, and the truncated forward (target layers 0..l, then the head). */
#include "vkd_exit.h"

#include "safetensors.h"
#include "st_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

/* ---- identity ------------------------------------------------------------------------ */

/* 64-bit multiply-xor hash over 8-byte words (the tail byte-wise); not cryptographic: it
 * tells targets apart, it does not defend against forgery. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    h ^= (uint64_t)n;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

vkd_result vkd_exit_target_id(const char *dir, char out[17], vkd_error *err) {
    out[0] = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return vkd_fail(err, VKD_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    uint64_t h = 0x6A09E667F3BCC908ull;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = hash_bytes(h, buf, n);
    fclose(f);
    vkd_st_model *m;
    vkd_result r = vkd_st_model_open(dir, &m, err);
    if (r) return r;
    for (size_t i = 0; i < vkd_st_model_count(m) && !r; i++) {
        const vkd_st_tensor *t;
        if ((r = vkd_st_model_get_at(m, i, &t, err))) break;
        int64_t meta[2 + VKD_ST_MAX_RANK] = {t->dtype, t->rank};
        for (int d = 0; d < t->rank; d++) meta[2 + d] = t->shape[d];
        h = hash_bytes(h, t->name, strlen(t->name));
        h = hash_bytes(h, meta, sizeof meta);
        h = hash_bytes(h, t->data, t->nbytes);
    }
    vkd_st_model_close(m);
    if (!r) snprintf(out, 17, "%016llx", (unsigned long long)h);
    return r;
}

/* ---- create / load / save -------------------------------------------------------------- */

/* n values of dtype dt at src as f32 into dst. */
static vkd_result to_f32(const vkd_st_tensor *s, float *dst, vkd_error *err) {
    const uint16_t *h = s->data;
    for (uint64_t i = 0; i < s->numel; i++) {
        switch (s->dtype) {
        case VKD_DTYPE_F32: memcpy(dst + i, (const char *)s->data + i * 4, 4); break;
        case VKD_DTYPE_BF16: dst[i] = vkd_bf16_to_f32(h[i]); break;
        case VKD_DTYPE_F16: dst[i] = vkd_f16_to_f32(h[i]); break;
        default:
            return vkd_fail(err, VKD_ERR_FORMAT, "tensor %s: dtype %s (expected F32, BF16 or F16)", s->name,
                            vkd_dtype_name(s->dtype));
        }
    }
    return VKD_OK;
}

/* Uploads tensor `name` of m (shape rows x cols, cols alone when rows == 0) as f32 into dst. */
static vkd_result upload_f32(vkd_st_model *m, const char *name, uint64_t rows, uint64_t cols, vkd_tensor *dst,
                             const char *file, vkd_error *err) {
    const vkd_st_tensor *s;
    vkd_result r = vkd_st_model_get(m, name, &s, err);
    if (r) return vkd_error_prefix(err, "%s", file);
    bool ok = rows ? s->rank == 2 && (uint64_t)s->shape[0] == rows && (uint64_t)s->shape[1] == cols
                   : s->rank == 1 && (uint64_t)s->shape[0] == cols;
    if (!ok) {
        char sh[96];
        vkd_st_shape_str(s, sh, sizeof sh);
        return rows ? vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%llu, %llu]", file, name, sh,
                               (unsigned long long)rows, (unsigned long long)cols)
                    : vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%llu]", file, name, sh,
                               (unsigned long long)cols);
    }
    float *buf = malloc(s->numel * sizeof *buf);
    if (!buf) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    r = to_f32(s, buf, err);
    for (uint64_t i = 0; !r && i < s->numel; i++)
        if (!(buf[i] - buf[i] == 0))
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor %s element %llu is not finite", file, name,
                         (unsigned long long)i);
    if (!r) r = vkd_tensor_upload(dst, 0, buf, s->numel * 4, err);
    free(buf);
    return r;
}

/* ---- Option B: the block copy -------------------------------------------------------- */

uint32_t vkd_exit_block_tensors(const vkd_exit *e, vkd_exit_block_tensor out[VKD_EXIT_BLOCK_MAX]) {
    vkd_layer *L = e->block;
    if (!L) return 0;
    const vkd_target *t = e->t;
    uint64_t H = t->hidden, Q = (uint64_t)t->n_q * t->head_dim, KV = (uint64_t)t->n_kv * t->head_dim, F = t->ffn;
    const vkd_exit_block_tensor all[VKD_EXIT_BLOCK_MAX] = {
        {"input_layernorm.weight", L->ln1, L->grad_ln1, 0, H},
        {"self_attn.q_proj.weight", L->wq.w, L->wq.grad_w, Q, H},
        {"self_attn.k_proj.weight", L->wk.w, L->wk.grad_w, KV, H},
        {"self_attn.v_proj.weight", L->wv.w, L->wv.grad_w, KV, H},
        {"self_attn.o_proj.weight", L->wo.w, L->wo.grad_w, H, Q},
        {"post_attention_layernorm.weight", L->ln2, L->grad_ln2, 0, H},
        {"mlp.gate_proj.weight", L->wg.w, L->wg.grad_w, F, H},
        {"mlp.up_proj.weight", L->wu.w, L->wu.grad_w, F, H},
        {"mlp.down_proj.weight", L->wd.w, L->wd.grad_w, H, F},
        {"self_attn.q_norm.weight", L->q_norm, L->grad_q_norm, 0, t->head_dim},
        {"self_attn.k_norm.weight", L->k_norm, L->grad_k_norm, 0, t->head_dim},
    };
    uint32_t n = t->qk_norm ? 11 : 9;
    memcpy(out, all, n * sizeof *out);
    return n;
}

/* Allocates e->block's f32 tensors (uninitialised). */
static vkd_result block_alloc(vkd_exit *e, vkd_error *err) {
    vkd_target *t = e->t;
    e->block = calloc(1, sizeof *e->block);
    if (!e->block) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    vkd_layer *L = e->block;
    uint64_t H = t->hidden, Q = (uint64_t)t->n_q * t->head_dim, KV = (uint64_t)t->n_kv * t->head_dim, F = t->ffn;
    struct { vkd_tensor **w; uint64_t rows, cols; const char *name; } s[] = {
        {&L->ln1, 0, H, "exit_block_ln1"}, {&L->ln2, 0, H, "exit_block_ln2"},
        {&L->wq.w, Q, H, "exit_block_q"}, {&L->wk.w, KV, H, "exit_block_k"}, {&L->wv.w, KV, H, "exit_block_v"},
        {&L->wo.w, H, Q, "exit_block_o"}, {&L->wg.w, F, H, "exit_block_gate"}, {&L->wu.w, F, H, "exit_block_up"},
        {&L->wd.w, H, F, "exit_block_down"},
        {&L->q_norm, 0, t->head_dim, "exit_block_q_norm"}, {&L->k_norm, 0, t->head_dim, "exit_block_k_norm"}};
    size_t n = t->qk_norm ? 11 : 9;
    vkd_result r = VKD_OK;
    for (size_t i = 0; i < n && !r; i++) {
        int64_t shape[2] = {(int64_t)s[i].rows, (int64_t)s[i].cols};
        r = s[i].rows ? vkd_tensor_create_layout(t->ctx, VKD_DTYPE_F32, 2, shape, VKD_LAYOUT_ROWS, s[i].name, s[i].w, err)
                      : vkd_tensor_create(t->ctx, VKD_DTYPE_F32, 1, shape + 1, s[i].name, s[i].w, err);
        if (!r && (*s[i].w)->nchunks > 1)
            r = vkd_fail(err, VKD_ERR_UNSUPPORTED, "exit block tensor %s of %llu x %llu f32 exceeds one storage binding",
                         s[i].name, (unsigned long long)s[i].rows, (unsigned long long)s[i].cols);
    }
    return r;
}

vkd_result vkd_exit_add_block(vkd_exit *e, const char *target_dir, vkd_error *err) {
    if (e->block) return vkd_fail(err, VKD_ERR_INVALID, "the exit head has a block already");
    vkd_result r = block_alloc(e, err);
    vkd_st_model *m = NULL;
    if (!r) r = vkd_st_model_open(target_dir, &m, err);
    vkd_exit_block_tensor bt[VKD_EXIT_BLOCK_MAX];
    uint32_t n = r ? 0 : vkd_exit_block_tensors(e, bt);
    for (uint32_t i = 0; i < n && !r; i++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%u.%s", e->layer, bt[i].name);
        r = upload_f32(m, name, bt[i].rows, bt[i].cols, bt[i].w, target_dir, err);
    }
    vkd_st_model_close(m);
    return r;
}

static vkd_result exit_alloc(vkd_target *t, uint32_t layer, vkd_exit **out, vkd_error *err) {
    *out = NULL;
    if (layer >= t->n_layers)
        return vkd_fail(err, VKD_ERR_RANGE, "exit layer %u out of range: the target has layers 0..%u", layer,
                        t->n_layers - 1);
    vkd_exit *e = calloc(1, sizeof *e);
    if (!e) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    *e = (vkd_exit){.ctx = t->ctx, .t = t, .layer = layer, .hidden = t->hidden, .vocab = t->vocab};
    e->info.layer = layer;
    int64_t hs[1] = {t->hidden}, ws[2] = {t->vocab, t->hidden};
    vkd_result r = vkd_tensor_create(t->ctx, VKD_DTYPE_F32, 1, hs, "exit_norm", &e->norm, err);
    if (!r) r = vkd_tensor_create_layout(t->ctx, VKD_DTYPE_F32, 2, ws, VKD_LAYOUT_ROWS, "exit_head", &e->head, err);
    if (r) {
        vkd_exit_free(e);
        return r;
    }
    e->run_norm = e->norm;
    e->run_head = e->head;
    *out = e;
    return VKD_OK;
}

vkd_result vkd_exit_create(vkd_target *t, const char *target_dir, uint32_t layer, vkd_exit **out,
                           vkd_error *err) {
    vkd_exit *e;
    vkd_result r = exit_alloc(t, layer, &e, err);
    if (r) return r;
    snprintf(e->info.trained, sizeof e->info.trained, "none");
    vkd_st_model *m = NULL;
    const char *head = t->cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    if (!(r = vkd_exit_target_id(target_dir, e->info.target_id, err)) && !(r = vkd_st_model_open(target_dir, &m, err)) &&
        !(r = upload_f32(m, "model.norm.weight", 0, t->hidden, e->norm, target_dir, err)))
        r = upload_f32(m, head, t->vocab, t->hidden, e->head, target_dir, err);
    vkd_st_model_close(m);
    if (r) {
        vkd_exit_free(e);
        return r;
    }
    *out = e;
    return VKD_OK;
}

static vkd_result meta_u64(const vkd_st_file *f, const char *key, uint64_t hi, uint64_t *out, const char *file,
                           vkd_error *err) {
    const char *v = vkd_st_metadata_get(f, key);
    char *end;
    errno = 0;
    unsigned long long x = v ? strtoull(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x > hi)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: metadata %s is %s%s%s, expected an integer 0..%llu", file, key,
                        v ? "\"" : "missing", v ? v : "", v ? "\"" : "", (unsigned long long)hi);
    *out = x;
    return VKD_OK;
}

vkd_result vkd_exit_load(vkd_target *t, const char *target_dir, const char *head_dir, vkd_exit **out,
                         vkd_error *err) {
    *out = NULL;
    char file[4200];
    snprintf(file, sizeof file, "%s/exit.safetensors", head_dir);
    vkd_st_file *f;
    vkd_result r = vkd_st_open(file, &f, err);
    if (r) return r;
    uint64_t layer = 0, steps = 0;
    const char *id = vkd_st_metadata_get(f, "target_id");
    const char *T = vkd_st_metadata_get(f, "temperature");
    const char *trained = vkd_st_metadata_get(f, "trained"), *loss = vkd_st_metadata_get(f, "loss");
    char want[17];
    double temp = T ? strtod(T, NULL) : -1;
    if ((r = meta_u64(f, "exit_layer", UINT32_MAX, &layer, file, err)) ||
        (r = meta_u64(f, "steps", UINT64_MAX, &steps, file, err)))
        goto done;
    if (!id || strlen(id) != 16 || !trained || strlen(trained) >= 32 || (loss && strlen(loss) >= 16) ||
        !(temp >= 0 && temp <= 1e6)) {
        r = vkd_fail(err, VKD_ERR_FORMAT,
                     "%s: metadata target_id (16 hex digits), trained and temperature (>= 0) are required", file);
        goto done;
    }
    if ((r = vkd_exit_target_id(target_dir, want, err))) goto done;
    if (strcmp(id, want)) {
        r = vkd_fail(err, VKD_ERR_INVALID, "%s: the head was trained for target %s, but %s is target %s", file, id,
                     target_dir, want);
        goto done;
    }
    if (layer >= t->n_layers) {
        r = vkd_fail(err, VKD_ERR_RANGE, "%s: exit_layer %llu out of range: the target has layers 0..%u", file,
                     (unsigned long long)layer, t->n_layers - 1);
        goto done;
    }
    vkd_exit *e;
    if ((r = exit_alloc(t, (uint32_t)layer, &e, err))) goto done;
    e->info.steps = steps;
    e->info.temperature = (float)temp;
    snprintf(e->info.trained, sizeof e->info.trained, "%s", trained);
    snprintf(e->info.loss, sizeof e->info.loss, "%s", loss ? loss : "");
    memcpy(e->info.target_id, want, 17);
    const char *names[2] = {"norm.weight", "lm_head.weight"};
    vkd_tensor *dst[2] = {e->norm, e->head};
    uint64_t rows[2] = {0, t->vocab};
    for (int i = 0; i < 2 && !r; i++) {
        const vkd_st_tensor *s = vkd_st_find(f, names[i]);
        bool ok = s && s->dtype == VKD_DTYPE_F32 &&
                  (rows[i] ? s->rank == 2 && (uint64_t)s->shape[0] == rows[i] && (uint64_t)s->shape[1] == t->hidden
                           : s->rank == 1 && (uint64_t)s->shape[0] == t->hidden);
        if (!ok)
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor %s %s, expected F32 [%s%u]", file, names[i],
                         s ? "has another dtype or shape" : "is missing", rows[i] ? "vocab, " : "", t->hidden);
        else
            r = vkd_tensor_upload(dst[i], 0, s->data, s->nbytes, err);
    }
    bool has_block = vkd_st_find(f, "block.input_layernorm.weight") != NULL;
    if (!r && has_block != !strcmp(e->info.trained, "head+block"))
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: trained is \"%s\" but the file %s block.* tensors", file, e->info.trained,
                     has_block ? "holds" : "lacks");
    if (!r && has_block) r = block_alloc(e, err);
    vkd_exit_block_tensor bt[VKD_EXIT_BLOCK_MAX];
    uint32_t nb = !r && has_block ? vkd_exit_block_tensors(e, bt) : 0;
    for (uint32_t i = 0; i < nb && !r; i++) {
        char name[160];
        snprintf(name, sizeof name, "block.%s", bt[i].name);
        const vkd_st_tensor *s = vkd_st_find(f, name);
        bool ok = s && s->dtype == VKD_DTYPE_F32 &&
                  (bt[i].rows ? s->rank == 2 && (uint64_t)s->shape[0] == bt[i].rows && (uint64_t)s->shape[1] == bt[i].cols
                              : s->rank == 1 && (uint64_t)s->shape[0] == bt[i].cols);
        if (!ok)
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor %s %s, expected F32 [%llu%s%llu]", file, name,
                         s ? "has another dtype or shape" : "is missing", (unsigned long long)(bt[i].rows ? bt[i].rows : bt[i].cols),
                         bt[i].rows ? ", " : "", (unsigned long long)(bt[i].rows ? bt[i].cols : 0));
        else
            r = vkd_tensor_upload(bt[i].w, 0, s->data, s->nbytes, err);
    }
    if (r) vkd_exit_free(e);
    else *out = e;
done:
    vkd_st_close(f);
    return r;
}

vkd_result vkd_exit_save(const vkd_exit *e, const char *dir, vkd_error *err) {
    if (!e->head) return vkd_fail(err, VKD_ERR_INVALID, "a frozen exit head cannot be saved");
    uint64_t nw = (uint64_t)e->vocab * e->hidden;
    float *norm = malloc(e->hidden * 4), *head = malloc(nw * 4);
    vkd_result r = norm && head ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = vkd_tensor_download(e->norm, 0, norm, e->hidden * 4, err);
    if (!r) r = vkd_tensor_download(e->head, 0, head, nw * 4, err);
    char layer[16], steps[24], temp[32], path[4200], tmp[4300];
    snprintf(layer, sizeof layer, "%u", e->layer);
    snprintf(steps, sizeof steps, "%llu", (unsigned long long)e->info.steps);
    snprintf(temp, sizeof temp, "%.9g", e->info.temperature);
    const char *meta[] = {"exit_layer", layer, "temperature", temp, "trained", e->info.trained, "loss", e->info.loss,
                          "steps", steps, "target_id", e->info.target_id, NULL};
    vkd_st_out ts[2 + VKD_EXIT_BLOCK_MAX] = {{"norm.weight", VKD_DTYPE_F32, 1, {e->hidden}, norm},
                                             {"lm_head.weight", VKD_DTYPE_F32, 2, {e->vocab, e->hidden}, head}};
    vkd_exit_block_tensor bt[VKD_EXIT_BLOCK_MAX];
    uint32_t nb = vkd_exit_block_tensors(e, bt);
    char names[VKD_EXIT_BLOCK_MAX][160];
    float *bw[VKD_EXIT_BLOCK_MAX] = {0};
    for (uint32_t i = 0; i < nb && !r; i++) {
        uint64_t n = (bt[i].rows ? bt[i].rows : 1) * bt[i].cols;
        snprintf(names[i], sizeof names[i], "block.%s", bt[i].name);
        bw[i] = malloc(n * 4);
        r = bw[i] ? vkd_tensor_download(bt[i].w, 0, bw[i], n * 4, err) : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        ts[2 + i] = bt[i].rows ? (vkd_st_out){names[i], VKD_DTYPE_F32, 2, {(int64_t)bt[i].rows, (int64_t)bt[i].cols}, bw[i]}
                               : (vkd_st_out){names[i], VKD_DTYPE_F32, 1, {(int64_t)bt[i].cols}, bw[i]};
    }
    snprintf(path, sizeof path, "%s/exit.safetensors", dir);
    if (!r) r = vkd_st_write(path, ts, 2 + nb, meta, err);
    free(norm);
    free(head);
    for (uint32_t i = 0; i < nb; i++) free(bw[i]);
    if (r) return r;
    snprintf(path, sizeof path, "%s/exit_config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return vkd_fail(err, VKD_ERR_IO, "%s: cannot write (%s)", tmp, strerror(errno));
    fprintf(f,
            "{\n  \"exit_layer\": %u,\n  \"temperature\": %s,\n  \"trained\": \"%s\",\n  \"loss\": \"%s\",\n"
            "  \"steps\": %s,\n  \"target_id\": \"%s\",\n  \"hidden_size\": %u,\n  \"vocab_size\": %u\n}\n",
            e->layer, temp, e->info.trained, e->info.loss, steps, e->info.target_id, e->hidden, e->vocab);
    bool bad = ferror(f) != 0;
    if (fclose(f) || bad || rename(tmp, path)) {
        remove(tmp);
        return vkd_fail(err, VKD_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    }
    return VKD_OK;
}

vkd_result vkd_exit_freeze(vkd_exit *e, vkd_error *err) {
    if (!e->head) return VKD_OK;
    vkd_target *t = e->t;
    if (!strcmp(e->info.trained, "none")) {
        e->run_norm = t->norm;
        e->run_head = t->lm_head;
    } else {
        vkd_dtype dt = t->lm_head->dtype;
        uint64_t n = (uint64_t)e->vocab * e->hidden;
        float *w = malloc(n * 4);
        uint16_t *h = dt == VKD_DTYPE_F32 ? NULL : malloc(n * 2);
        int64_t shape[2] = {e->vocab, e->hidden};
        vkd_result r = w && (h || dt == VKD_DTYPE_F32) ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        if (!r) r = vkd_tensor_download(e->head, 0, w, n * 4, err);
        for (uint64_t i = 0; !r && h && i < n; i++) h[i] = dt == VKD_DTYPE_BF16 ? vkd_f32_to_bf16(w[i]) : vkd_f32_to_f16(w[i]);
        if (!r) r = vkd_tensor_create_layout(t->ctx, dt, 2, shape, vkd_ctx_weight_layout(t->ctx, dt), "exit_head_run",
                                             &e->frozen_head, err);
        if (!r) r = vkd_tensor_upload(e->frozen_head, 0, h ? (const void *)h : w, n * (h ? 2 : 4), err);
        free(w);
        free(h);
        if (r) return r;
        e->run_head = e->frozen_head;
    }
    vkd_tensor_destroy(e->head);
    e->head = NULL;
    return VKD_OK;
}

void vkd_exit_free(vkd_exit *e) {
    if (!e) return;
    vkd_tensor_destroy(e->frozen_head);
    vkd_tensor_destroy(e->norm);
    vkd_tensor_destroy(e->head);
    if (e->block) vkd_layer_free(e->block);
    free(e->block);
    free(e);
}

/* ---- forward --------------------------------------------------------------------------- */

vkd_result vkd_exit_layers_record(vkd_rec *rec, vkd_target *t, vkd_tensor *x, uint32_t m, uint32_t pos,
                                  uint32_t l0, uint32_t l1, vkd_tensor *const *kc,
                                  vkd_tensor *const *vc) {
    const vkd_layer_acts A = {.a1 = t->a, .q_raw = t->q, .k_raw = t->k, .q = t->q, .k = t->k,
                              .v = t->v, .o = t->o, .a2 = t->a, .g = t->g, .u = t->u, .h = t->g};
    const vkd_layer_dims dims = {t->hidden, t->n_q, t->n_kv, t->head_dim, t->ffn, t->qk_norm};
    for (uint32_t l = l0; l < l1 && l < t->n_layers; l++) {
        vkd_layer *L = &t->layers[l];
        vkd_layer_step ls = {.m = m, .pos = pos, .causal = true, .kc = kc ? kc[l] : L->kc,
                             .vc = vc ? vc[l] : L->vc, .inv_freq = t->inv_freq, .eps = (float)t->cfg.rms_norm_eps};
        vkd_layer_forward(rec, L, &dims, x, &A, &ls);
    }
    return vkd_rec_error(rec)->code;
}

vkd_result vkd_exit_trunk_record(vkd_rec *rec, const vkd_exit *e, vkd_tensor *x, const vkd_tensor *ids,
                                 uint32_t m, uint32_t pos, vkd_tensor *const *kc, vkd_tensor *const *vc) {
    vkd_target *t = e->t;
    if (e->block && (!kc || !vc || !kc[e->layer] || !vc[e->layer])) {
        if (!vkd_rec_error(rec)->code)
            vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "an exit head with its own block %u needs its own KV cache "
                     "for that layer (the target's holds the target block's K/V)", e->layer);
        return vkd_rec_error(rec)->code;
    }
    vkd_op_embed(rec, x, ids, t->embed, m);
    if (!e->block) return vkd_exit_layers_record(rec, t, x, m, pos, 0, e->layer + 1, kc, vc);
    vkd_exit_layers_record(rec, t, x, m, pos, 0, e->layer, kc, vc);
    const vkd_layer_acts A = {.a1 = t->a, .q_raw = t->q, .k_raw = t->k, .q = t->q, .k = t->k,
                              .v = t->v, .o = t->o, .a2 = t->a, .g = t->g, .u = t->u, .h = t->g};
    const vkd_layer_dims dims = {t->hidden, t->n_q, t->n_kv, t->head_dim, t->ffn, t->qk_norm};
    vkd_layer_step ls = {.m = m, .pos = pos, .causal = true, .kc = kc[e->layer], .vc = vc[e->layer],
                         .inv_freq = t->inv_freq, .eps = (float)t->cfg.rms_norm_eps};
    return vkd_layer_forward(rec, e->block, &dims, x, &A, &ls);
}

vkd_result vkd_exit_head_record(vkd_rec *rec, const vkd_exit *e, vkd_tensor *logits, uint32_t row0,
                                const vkd_tensor *x, vkd_tensor *xn, uint32_t m) {
    vkd_op_rmsnorm(rec, xn, x, e->run_norm, m, e->hidden, (float)e->t->cfg.rms_norm_eps);
    return vkd_op_matmul(rec, logits, row0, xn, 0, e->run_head, m, false);
}
