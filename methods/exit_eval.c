/* exit_eval.c: teacher-forced quality and overlap of an early-exit head (vkd_exit_eval.h). */
#include "vkd_exit_eval.h"
#include "vkd_draft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct vkd_exit_eval {
    vkd_exit *e;
    uint32_t rows;             /* chunk */
    vkd_tensor *ids, *x, *xn, *logits;
    float *tl, *ql;            /* rows x vocab each: target and head logits of a chunk */
    float *p, *q;              /* vocab: warped distributions (overlap) */
};

vkd_result vkd_exit_eval_create(vkd_exit *e, vkd_exit_eval **out, vkd_error *err) {
    *out = NULL;
    vkd_target *t = e->t;
    vkd_exit_eval *ev = calloc(1, sizeof *ev);
    if (!ev) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    ev->e = e;
    ev->rows = t->logit_rows < t->max_rows ? t->logit_rows : t->max_rows;
    size_t V = e->vocab;
    ev->tl = malloc((size_t)ev->rows * V * sizeof(float));
    ev->ql = malloc((size_t)ev->rows * V * sizeof(float));
    ev->p = malloc(V * sizeof(float));
    ev->q = malloc(V * sizeof(float));
    vkd_result r = ev->tl && ev->ql && ev->p && ev->q ? VKD_OK : vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, ev->rows, "exit_eval_ids", &ev->ids, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, ev->rows, e->hidden, "exit_eval_x", &ev->x, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, ev->rows, e->hidden, "exit_eval_xn", &ev->xn, err);
    if (!r) r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_F32, ev->rows, e->vocab, "exit_eval_logits", &ev->logits, err);
    if (r) {
        vkd_exit_eval_free(ev);
        return r;
    }
    *out = ev;
    return VKD_OK;
}

void vkd_exit_eval_free(vkd_exit_eval *ev) {
    if (!ev) return;
    vkd_tensor_destroy(ev->ids);
    vkd_tensor_destroy(ev->x);
    vkd_tensor_destroy(ev->xn);
    vkd_tensor_destroy(ev->logits);
    free(ev->tl);
    free(ev->ql);
    free(ev->p);
    free(ev->q);
    free(ev);
}

typedef vkd_result (*row_fn)(void *user, uint32_t row, const float *t, const float *z, vkd_error *err);

/* Target and head over ids[0..n) from position 0, chunk by chunk; fn on rows [r0, r1). */
static vkd_result walk(vkd_exit_eval *ev, vkd_rec *rec, const int32_t *ids, uint32_t n, uint32_t r0, uint32_t r1,
                       row_fn fn, void *user, vkd_error *err) {
    vkd_target *t = ev->e->t;
    const size_t V = ev->e->vocab;
    if (n > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE, "sequence of %u tokens exceeds the context of %u", n, t->ctx_len);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= V)
            return vkd_fail(err, VKD_ERR_RANGE, "token id %d outside the vocabulary (0..%zu)", ids[i], V - 1);
    vkd_result r = vkd_target_crop(t, 0, err);
    for (uint32_t pos = 0; !r && pos < n && pos < r1; pos += ev->rows) {
        uint32_t m = n - pos < ev->rows ? n - pos : ev->rows;
        vkd_rec_begin(rec);
        vkd_target_step st = {.ids = ids + pos, .m = m, .logits_row0 = 0, .logits_rows = m};
        r = vkd_target_step_record(t, rec, &st, err);
        if (!r) r = vkd_rec_read(rec, t->logits, 0, ev->tl, (uint64_t)m * V * 4);
        if (!r) r = vkd_rec_update(rec, ev->ids, 0, ids + pos, (uint64_t)m * 4);
        if (!r) r = vkd_exit_trunk_record(rec, ev->e, ev->x, ev->ids, m, pos, NULL, NULL);
        if (!r) r = vkd_exit_head_record(rec, ev->e, ev->logits, 0, ev->x, ev->xn, m);
        if (!r) r = vkd_rec_read(rec, ev->logits, 0, ev->ql, (uint64_t)m * V * 4);
        if (r && !err->msg[0]) *err = *vkd_rec_error(rec);
        r = vkd_draft_submit(rec, r, err);
        for (uint32_t i = 0; !r && i < m; i++) {
            uint32_t row = pos + i;
            if (row < r0 || row >= r1) continue;
            const float *tr = ev->tl + i * V, *zr = ev->ql + i * V;
            r = vkd_check_logits(tr, (uint32_t)V, row, "target", err);
            if (!r) r = vkd_check_logits(zr, (uint32_t)V, row, "exit head", err);
            if (!r) r = fn(user, row, tr, zr, err);
        }
    }
    return r;
}

/* log-sum-exp of x / T over n entries */
static double lse(const float *x, size_t n, double T) {
    double mx = -INFINITY, s = 0;
    for (size_t v = 0; v < n; v++) mx = fmax(mx, x[v] / T);
    for (size_t v = 0; v < n; v++) s += exp(x[v] / T - mx);
    return mx + log(s);
}

/* KL(softmax(t/T) || softmax(z/T)) */
static double kl(const float *t, const float *z, size_t n, double T) {
    double lt = lse(t, n, T), lz = lse(z, n, T), s = 0;
    for (size_t v = 0; v < n; v++) {
        double a = t[v] / T - lt;
        s += exp(a) * (a - (z[v] / T - lz));
    }
    return s;
}

typedef struct quality_ctx {
    const int32_t *ids;
    size_t V;
    double T;
    uint32_t k;
    vkd_exit_quality *q;
} quality_ctx;

static vkd_result quality_row(void *user, uint32_t row, const float *t, const float *z, vkd_error *err) {
    (void)err;
    quality_ctx *c = user;
    int32_t label = c->ids[row + 1];
    c->q->kl_t += kl(t, z, c->V, c->T);
    c->q->kl_1 += kl(t, z, c->V, 1.0);
    c->q->ce += lse(z, c->V, 1.0) - z[label];
    uint32_t rank = 0;
    for (size_t v = 0; v < c->V; v++) rank += z[v] > z[label];
    c->q->top1 += rank == 0;
    c->q->topk += rank < c->k;
    c->q->rows++;
    return VKD_OK;
}

vkd_result vkd_exit_eval_quality(vkd_exit_eval *ev, vkd_rec *rec, const int32_t *ids, uint32_t n, double T,
                                 uint32_t k, vkd_exit_quality *q, vkd_error *err) {
    memset(q, 0, sizeof *q);
    if (!(T > 0)) return vkd_fail(err, VKD_ERR_INVALID, "KL temperature %g: expected > 0", T);
    if (n < 3) return VKD_OK;
    quality_ctx c = {.ids = ids, .V = ev->e->vocab, .T = T, .k = k, .q = q};
    return walk(ev, rec, ids, n, 1, n - 1, quality_row, &c, err);
}

typedef struct overlap_ctx {
    vkd_exit_eval *ev;
    const vkd_sample_params *sp;
    double sum;
    uint32_t rows;
} overlap_ctx;

static vkd_result overlap_row(void *user, uint32_t row, const float *t, const float *z, vkd_error *err) {
    (void)row;
    overlap_ctx *c = user;
    uint32_t V = c->ev->e->vocab;
    vkd_result r = vkd_sample_probs(t, V, c->sp, c->ev->p, err);
    if (!r) r = vkd_sample_probs(z, V, c->sp, c->ev->q, err);
    if (r) return r;
    double s = 0;
    for (uint32_t v = 0; v < V; v++) s += fmin(c->ev->p[v], c->ev->q[v]);
    c->sum += s;
    c->rows++;
    return VKD_OK;
}

vkd_result vkd_exit_eval_overlap(vkd_exit_eval *ev, vkd_rec *rec, const int32_t *ids, uint32_t n, uint32_t r0,
                                 const vkd_sample_params *sp, double *sum, uint32_t *rows, vkd_error *err) {
    *sum = 0;
    *rows = 0;
    if (n < 2 || r0 > n - 2) return VKD_OK;
    overlap_ctx c = {.ev = ev, .sp = sp};
    vkd_result r = walk(ev, rec, ids, n, r0, n - 1, overlap_row, &c, err);
    *sum = c.sum;
    *rows = c.rows;
    return r;
}
