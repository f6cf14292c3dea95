/* test_optim: AdamW and SGD updates with gradient clipping by global norm, against the
 * double reference of ref_train.c, over 6 steps of a warmup + cosine schedule, on two
 * tensors of odd sizes (37 and 5003: several workgroup ranges and a partial one), with
 * sentinels past n. A second run of the same steps must be bit-identical.
 * With an argument PATH it also writes every configuration's initial values, gradients,
 * learning rates and results as a safetensors file for test_optim_torch.py, which checks
 * them against torch.optim.AdamW / SGD and clip_grad_norm_.
 * Bounds: |p - ref| <= 2e-6 * (1 + |ref|) for every step (f32 state against double). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_train.h"
#include "st_write.h"
#include "vkd_test.h"

#define NT 2
#define STEPS 6
#define SENT 7777.25f
static const uint32_t sizes[NT] = {37, 5003};

typedef struct cfg {
    const char *name;
    vkd_optim_params hp; /* lr = base lr, step filled per step */
    uint64_t warmup;
} cfg;

static const cfg cfgs[] = {
    {"adamw_clip", {.kind = VKD_OPTIM_ADAMW, .lr = 1e-2, .max_grad_norm = 1.0}, 2},
    {"adamw_wd", {.kind = VKD_OPTIM_ADAMW, .lr = 3e-3, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6,
                  .weight_decay = 0.1}, 0},
    {"adamw_b1low", {.kind = VKD_OPTIM_ADAMW, .lr = 1e-3, .beta1 = 0.3, .max_grad_norm = 5.0}, 1},
    {"sgd", {.kind = VKD_OPTIM_SGD, .lr = 0.05}, 0},
    {"sgd_mom_clip", {.kind = VKD_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .dampening = 0.1,
                      .weight_decay = 0.01, .max_grad_norm = 0.5}, 1},
};
#define NCFG (sizeof cfgs / sizeof cfgs[0])

static unsigned long long rng = 4242;

static vkd_tensor *mk(vkd_ctx *ctx, uint64_t n, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    REQUIRE(!vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, 1, n, name, &t, &err), "%s", err.msg);
    return t;
}

static void up(vkd_tensor *t, const float *src, uint64_t n) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_upload(t, 0, src, n * 4, &err), "%s", err.msg);
}

static void down(const vkd_tensor *t, float *dst, uint64_t n) {
    vkd_error err = {0};
    REQUIRE(!vkd_tensor_download(t, 0, dst, n * 4, &err), "%s", err.msg);
}

/* Data of one configuration: p0 and gradients per step (f32), results per step. */
typedef struct run_data {
    float *p0[NT], *g[STEPS][NT], *p[STEPS][NT];
    float lr[STEPS], norm[STEPS];
} run_data;

/* Runs the STEPS updates on the device; results into d->p, norms into d->norm. */
static void run_device(vkd_ctx *ctx, const cfg *c, run_data *d) {
    vkd_tensor *tp[NT], *tg[NT], *tm[NT], *tv[NT];
    vkd_optim_slot slots[NT];
    for (int i = 0; i < NT; i++) {
        uint64_t n = sizes[i] + 5; /* sentinels past n */
        tp[i] = mk(ctx, n, "p"), tg[i] = mk(ctx, n, "g"), tm[i] = mk(ctx, n, "m"), tv[i] = mk(ctx, n, "v");
        float *tmp = malloc(n * 4);
        for (uint64_t k = 0; k < n; k++) tmp[k] = k < sizes[i] ? d->p0[i][k] : SENT;
        up(tp[i], tmp, n);
        for (uint64_t k = sizes[i]; k < n; k++) tmp[k] = SENT;
        for (uint64_t k = 0; k < sizes[i]; k++) tmp[k] = 0;
        up(tm[i], tmp, n);
        up(tv[i], tmp, n);
        free(tmp);
        slots[i] = (vkd_optim_slot){tp[i], tg[i], tm[i], tv[i], sizes[i]};
    }
    uint32_t np = vkd_optim_parts_needed(ctx, slots, NT);
    vkd_tensor *parts = mk(ctx, np + 1, "parts");
    vkd_error err = {0};
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < NT; i++) {
            float *tmp = malloc((sizes[i] + 5) * 4);
            memcpy(tmp, d->g[s][i], sizes[i] * 4);
            for (int k = 0; k < 5; k++) tmp[sizes[i] + k] = SENT;
            up(tg[i], tmp, sizes[i] + 5);
            free(tmp);
        }
        vkd_optim_params hp = c->hp;
        hp.lr = d->lr[s];
        hp.step = (uint64_t)s + 1;
        uint32_t ni = 0;
        vkd_rec_begin(rec);
        vkd_optim_step(rec, slots, NT, &hp, parts, &ni);
        d->norm[s] = NAN;
        if (hp.max_grad_norm > 0) vkd_rec_read(rec, parts, (uint64_t)ni * 4, &d->norm[s], 4);
        CHECK(vkd_rec_submit(rec) == VKD_OK, "%s step %d: %s", c->name, s, vkd_rec_error(rec)->msg);
        for (int i = 0; i < NT; i++) {
            float *tmp = malloc((sizes[i] + 5) * 4);
            down(tp[i], tmp, sizes[i] + 5);
            memcpy(d->p[s][i], tmp, sizes[i] * 4);
            for (int k = 0; k < 5; k++) CHECK(tmp[sizes[i] + k] == SENT, "%s: sentinel overwritten", c->name);
            free(tmp);
        }
    }
    vkd_rec_destroy(rec);
    for (int i = 0; i < NT; i++) {
        vkd_tensor_destroy(tp[i]), vkd_tensor_destroy(tg[i]);
        vkd_tensor_destroy(tm[i]), vkd_tensor_destroy(tv[i]);
    }
    vkd_tensor_destroy(parts);
}

static double check_ref(const cfg *c, const run_data *d) {
    double *p[NT], *m[NT], *v[NT], *g[NT];
    for (int i = 0; i < NT; i++) {
        p[i] = malloc(sizes[i] * 8), m[i] = calloc(sizes[i], 8), v[i] = calloc(sizes[i], 8);
        g[i] = malloc(sizes[i] * 8);
        for (uint32_t k = 0; k < sizes[i]; k++) p[i][k] = d->p0[i][k];
    }
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        double ss = 0;
        for (int i = 0; i < NT; i++)
            for (uint32_t k = 0; k < sizes[i]; k++) {
                g[i][k] = d->g[s][i][k];
                ss += g[i][k] * g[i][k];
            }
        double clip = 1.0;
        if (c->hp.max_grad_norm > 0) {
            clip = ref_clip_factor(sqrt(ss), c->hp.max_grad_norm);
            CHECK(fabs(d->norm[s] - sqrt(ss)) <= 1e-5 * sqrt(ss), "%s step %d: norm %.8g, ref %.8g",
                  c->name, s, d->norm[s], sqrt(ss));
        }
        vkd_optim_params hp = c->hp;
        hp.lr = d->lr[s];
        hp.step = (uint64_t)s + 1;
        for (int i = 0; i < NT; i++) {
            ref_optim_update(p[i], g[i], m[i], v[i], sizes[i], &hp, clip);
            for (uint32_t k = 0; k < sizes[i]; k++) {
                double e = fabs(d->p[s][i][k] - p[i][k]);
                if (!(e <= 2e-6 * (1 + fabs(p[i][k]))) || !isfinite(d->p[s][i][k])) {
                    CHECK(0, "%s step %d tensor %d [%u]: %.9g, ref %.9g", c->name, s, i, k,
                          d->p[s][i][k], p[i][k]);
                    e = INFINITY;
                }
                if (e > worst) worst = e;
            }
        }
    }
    for (int i = 0; i < NT; i++) free(p[i]), free(m[i]), free(v[i]), free(g[i]);
    return worst;
}

static void bad_input(vkd_ctx *ctx) {
    vkd_tensor *a = mk(ctx, 10, "a"), *b = mk(ctx, 10, "b"), *m = mk(ctx, 10, "m"), *v = mk(ctx, 10, "v");
    vkd_error err = {0};
    vkd_rec *rec;
    REQUIRE(!vkd_rec_create(ctx, &rec, &err), "%s", err.msg);
    vkd_optim_slot s = {a, b, m, v, 10};
    vkd_optim_params bad[] = {{.kind = VKD_OPTIM_ADAMW, .lr = -1, .step = 1},
                              {.kind = VKD_OPTIM_ADAMW, .lr = NAN, .step = 1},
                              {.kind = VKD_OPTIM_ADAMW, .lr = 1, .step = 0},
                              {.kind = VKD_OPTIM_ADAMW, .lr = 1, .beta2 = 1.0, .step = 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vkd_rec_begin(rec);
        vkd_op_optim_update(rec, &s, &bad[i], NULL, 0);
        CHECK(vkd_rec_submit(rec) == VKD_ERR_INVALID, "bad params %zu accepted", i);
        fprintf(stderr, "  rejected: %s\n", vkd_rec_error(rec)->msg);
        vkd_rec_error(rec)->code = VKD_OK;
    }
    vkd_optim_slot s2 = {a, b, m, v, 11};
    vkd_optim_params ok = {.kind = VKD_OPTIM_ADAMW, .lr = 1, .step = 1};
    vkd_rec_begin(rec);
    vkd_op_optim_update(rec, &s2, &ok, NULL, 0);
    CHECK(vkd_rec_submit(rec) == VKD_ERR_RANGE, "n past the tensor accepted");
    vkd_rec_error(rec)->code = VKD_OK;
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(a), vkd_tensor_destroy(b), vkd_tensor_destroy(m), vkd_tensor_destroy(v);
}

static void test_schedule(void) {
    /* transformers' get_cosine_schedule_with_warmup(warmup=3, total=10), from its formula in
     * Python; past the total the cosine rises again, as it does there */
    const double want[] = {0.0, 1.0 / 3, 2.0 / 3, 1.0, 0.9504844339512095, 0.8117449009293668,
                           0.6112604669781572, 0.3887395330218428, 0.1882550990706332,
                           0.04951556604879043, 0.0, 0.04951556604879043};
    for (int s = 0; s < 12; s++)
        CHECK(fabs(vkd_lr_cosine((uint64_t)s, 3, 10) - want[s]) < 1e-12, "cosine(%d) = %.17g, want %.17g",
              s, vkd_lr_cosine((uint64_t)s, 3, 10), want[s]);
    CHECK(vkd_lr_cosine(0, 0, 0) == 1.0, "cosine without warmup starts at 1");
}

int main(int argc, char **argv) {
    vkd_error err = {0};
    vkd_ctx *ctx;
    REQUIRE(!vkd_ctx_create(&(vkd_ctx_options){0}, &ctx, &err), "%s", err.msg);
    test_schedule();
    vkd_st_out outs[NCFG * (NT + 2 * STEPS * NT + 2)];
    char names[NCFG * (NT + 2 * STEPS * NT + 2)][48];
    size_t no = 0;
    run_data data[NCFG];
    for (size_t ci = 0; ci < NCFG; ci++) {
        const cfg *c = &cfgs[ci];
        run_data *d = &data[ci], again;
        for (int i = 0; i < NT; i++) {
            d->p0[i] = malloc(sizes[i] * 4);
            for (uint32_t k = 0; k < sizes[i]; k++) d->p0[i][k] = (float)vkd_test_rand_normal(&rng);
            for (int s = 0; s < STEPS; s++) {
                d->g[s][i] = malloc(sizes[i] * 4), d->p[s][i] = malloc(sizes[i] * 4);
                again.p[s][i] = malloc(sizes[i] * 4);
                /* gradients grow with the step so clipping is active in some steps only */
                for (uint32_t k = 0; k < sizes[i]; k++)
                    d->g[s][i][k] = (float)(vkd_test_rand_normal(&rng) * 0.004 * (1 + 3 * s));
            }
        }
        for (int s = 0; s < STEPS; s++) d->lr[s] = (float)(c->hp.lr * vkd_lr_cosine((uint64_t)s, c->warmup, STEPS));
        run_device(ctx, c, d);
        memcpy(again.p0, d->p0, sizeof d->p0);
        memcpy(again.g, d->g, sizeof d->g);
        memcpy(again.lr, d->lr, sizeof d->lr);
        run_device(ctx, c, &again);
        int same = 1;
        for (int s = 0; s < STEPS; s++)
            for (int i = 0; i < NT; i++) same &= !memcmp(again.p[s][i], d->p[s][i], sizes[i] * 4);
        CHECK(same, "%s: rerun not bit-identical", c->name);
        double worst = check_ref(c, d);
        fprintf(stderr, "%-14s worst |p - ref| = %.3g, bit-identical rerun: %s\n", c->name, worst,
                same ? "yes" : "NO");
        for (int s = 0; s < STEPS; s++)
            for (int i = 0; i < NT; i++) free(again.p[s][i]);
        /* dump: <cfg>.p0.<i>, <cfg>.g.<s>.<i>, <cfg>.p.<s>.<i>, <cfg>.lr, <cfg>.norm */
        for (int i = 0; i < NT; i++) {
            snprintf(names[no], 48, "%s.p0.%d", c->name, i);
            outs[no] = (vkd_st_out){names[no], VKD_DTYPE_F32, 1, {sizes[i]}, d->p0[i]}, no++;
            for (int s = 0; s < STEPS; s++) {
                snprintf(names[no], 48, "%s.g.%d.%d", c->name, s, i);
                outs[no] = (vkd_st_out){names[no], VKD_DTYPE_F32, 1, {sizes[i]}, d->g[s][i]}, no++;
                snprintf(names[no], 48, "%s.p.%d.%d", c->name, s, i);
                outs[no] = (vkd_st_out){names[no], VKD_DTYPE_F32, 1, {sizes[i]}, d->p[s][i]}, no++;
            }
        }
        snprintf(names[no], 48, "%s.lr", c->name);
        outs[no] = (vkd_st_out){names[no], VKD_DTYPE_F32, 1, {STEPS}, d->lr}, no++;
        snprintf(names[no], 48, "%s.norm", c->name);
        outs[no] = (vkd_st_out){names[no], VKD_DTYPE_F32, 1, {STEPS}, d->norm}, no++;
    }
    if (argc > 1) REQUIRE(!vkd_st_write(argv[1], outs, no, NULL, &err), "%s", err.msg);
    bad_input(ctx);
    for (size_t ci = 0; ci < NCFG; ci++)
        for (int i = 0; i < NT; i++) {
            free(data[ci].p0[i]);
            for (int s = 0; s < STEPS; s++) free(data[ci].g[s][i]), free(data[ci].p[s][i]);
        }
    CHECK(vkd_ctx_validation_count(ctx) == 0, "validation: %s", vkd_ctx_validation_first(ctx));
    vkd_ctx_destroy(ctx);
    return vkd_test_result("test_optim");
}
