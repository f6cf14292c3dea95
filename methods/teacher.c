/* teacher.c: teacher-forced target + draft walks (vkd_teacher.h). */
#include "vkd_teacher.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const vkd_tf_mode_names[3] = {"gold", "mask", "random"};

void vkd_tf_block_ids(vkd_tf_mode mode, const int32_t *seq, uint32_t s, uint32_t r, uint32_t B,
                      int32_t mask_id, int32_t *out) {
    for (uint32_t i = 0; i < B; i++) out[i] = mask_id;
    out[0] = seq[s];
    if (mode != VKD_TF_MASK)
        for (uint32_t i = 1; i < r && i < B; i++) out[i] = seq[s + i];
}

void vkd_tf_draft_block_ids(const vkd_draft *g, vkd_tf_mode mode, const int32_t *seq, uint32_t s, uint32_t r,
                            int32_t *out) {
    vkd_tf_block_ids(mode == VKD_TF_MASK && g->mask_id < 0 ? VKD_TF_GOLD : mode, seq, s, r, g->block, g->mask_id, out);
}

uint32_t vkd_tf_chunk(const vkd_target *t) { return t->max_rows; }

vkd_result vkd_tf_features_create(const vkd_target *t, const vkd_draft *g, vkd_tensor **out,
                                  vkd_error *err) {
    uint32_t rows = vkd_tf_chunk(t);
    if (g->block > rows) rows = g->block;
    uint64_t cols = g->ntaps ? (uint64_t)g->ntaps * t->hidden : 1;
    return vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, rows, cols, "tf_features", out, err);
}

vkd_result vkd_tf_prompt(vkd_target *t, vkd_draft *g, vkd_rec *rec, vkd_tensor *feats,
                         const int32_t *seq, uint32_t P, float *host_feats, vkd_error *err) {
    vkd_result r;
    if (P == 0) return vkd_fail(err, VKD_ERR_INVALID, "empty prompt");
    if ((r = vkd_target_crop(t, 0, err)) || (r = vkd_draft_reset(g, err))) return r;
    uint32_t chunk = vkd_tf_chunk(t), cols = g->ntaps * t->hidden;
    for (uint32_t done = 0; done < P;) {
        uint32_t m = P - done < chunk ? P - done : chunk;
        vkd_target_step st = {.ids = seq + done, .m = m, .tap_layers = g->tap_layers,
                              .ntaps = g->ntaps, .features = feats, .feat_row0 = 0};
        vkd_rec_begin(rec);
        r = vkd_target_step_record(t, rec, &st, err);
        if (!r) r = vkd_draft_context(g, rec, seq + done, done, m, feats, 0, err);
        if (!r && host_feats && cols)
            r = vkd_rec_read(rec, feats, 0, host_feats + (size_t)done * cols, (uint64_t)m * cols * 4);
        if ((r = vkd_rec_submit_after(rec, r, err))) return r;
        done += m;
    }
    return VKD_OK;
}

vkd_result vkd_tf_target_record(vkd_target *t, const vkd_draft *g, vkd_rec *rec, vkd_tensor *feats,
                                const int32_t *seq, uint32_t s, uint32_t r, vkd_error *err) {
    if (t->len != s)
        return vkd_fail(err, VKD_ERR_INVALID, "teacher forcing: target at %u, block at %u", t->len, s);
    if (r == 0 || r > g->block || r > t->logit_rows)
        return vkd_fail(err, VKD_ERR_INVALID, "teacher forcing: block of %u rows", r);
    vkd_target_step st = {.ids = seq + s, .m = r, .logits_row0 = 0, .logits_rows = r,
                          .tap_layers = g->tap_layers, .ntaps = g->ntaps, .features = feats,
                          .feat_row0 = 0};
    return vkd_target_step_record(t, rec, &st, err);
}

void vkd_tf_noise_rows(const float *f, float *out, uint32_t rows, uint32_t cols, uint64_t seed,
                       uint32_t key, uint32_t row0) {
    double *z = malloc((size_t)cols * sizeof *z);
    if (!z) return;
    for (uint32_t i = 0; i < rows; i++) {
        const float *fi = f + (size_t)i * cols;
        float *oi = out + (size_t)i * cols;
        double fn = 0, zn = 0;
        for (uint32_t j = 0; j < cols; j++) fn += (double)fi[j] * fi[j];
        for (uint32_t j = 0; j < cols; j += 4) {
            uint32_t w[4];
            vkd_philox4x32(seed, ((uint64_t)key << 32) | (row0 + i), j / 4, w);
            for (int p = 0; p < 2; p++) {
                double u1 = ((w[2 * p] >> 8) + 1.0) / 16777217.0; /* (0, 1): log is finite */
                double u2 = (w[2 * p + 1] >> 8) / 16777216.0;
                double rad = sqrt(-2.0 * log(u1));
                if (j + 2 * p < cols) z[j + 2 * p] = rad * cos(2 * M_PI * u2);
                if (j + 2 * p + 1 < cols) z[j + 2 * p + 1] = rad * sin(2 * M_PI * u2);
            }
        }
        for (uint32_t j = 0; j < cols; j++) zn += z[j] * z[j];
        double scale = zn > 0 ? sqrt(fn) / sqrt(zn) : 0;
        for (uint32_t j = 0; j < cols; j++) oi[j] = (float)(z[j] * scale);
    }
    free(z);
}
