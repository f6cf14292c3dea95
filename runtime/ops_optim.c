/* ops_optim.c: optimizers (AdamW, SGD) and gradient clipping by global norm on the device,
 * plus the warmup + cosine learning-rate schedule (host).
 *
 * Semantics are torch.optim's single-tensor CPU path (what torch runs on CPU tensors):
 * hyper-parameter scalars are computed in double on the host and rounded to f32 once, the
 * f32 operations are done in torch's order (shaders/optim_update.comp; the first moment as
 * torch >= 2.0's lerp_, torch 1.13's mul_/add_ differs by rounding only), so a step agrees
 * with torch to a few ulp (tests/ops/test_optim_torch.py). Reductions run in a fixed order:
 * reruns are bit-identical.
 *
 * Geometry: workgroup w owns a contiguous range of per_wg elements, lanes on consecutive
 * elements. per_wg = wg * per_lane with per_lane >= 256 and at most 1024 ranges per tensor,
 * so one invocation's loop passes (per_lane, plus the partial sums it adds up for the clip
 * factor) stay under lavapipe's 65535 limit (checked against the profile). */
#include "ops_internal.h"
#include "vkd_push_train.h"
#include "vkd_train_ops.h"

#include <math.h>

#define MIN_PER_LANE 256u
#define MAX_PARTS_PER_TENSOR 1024u

static uint32_t per_lane_of(uint32_t wg, uint64_t n) {
    uint64_t pl = (n + (uint64_t)wg * MAX_PARTS_PER_TENSOR - 1) / ((uint64_t)wg * MAX_PARTS_PER_TENSOR);
    if (pl < MIN_PER_LANE) pl = MIN_PER_LANE;
    return pl > UINT32_MAX ? UINT32_MAX : (uint32_t)pl;
}

static uint32_t wg_of(const vkd_ctx *ctx) {
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise;
    return wg ? wg : 1;
}

uint32_t vkd_optim_sumsq_parts(const vkd_ctx *ctx, uint64_t n) {
    uint32_t wg = wg_of(ctx);
    uint64_t per_wg = (uint64_t)wg * per_lane_of(wg, n);
    uint64_t g = (n + per_wg - 1) / per_wg;
    return g ? (uint32_t)g : 1;
}

/* Checks that a lane's loop passes fit the device's loop limit. */
static vkd_result check_loops(vkd_rec *rec, const char *op, uint64_t per_lane, uint64_t nparts) {
    uint32_t lim = vkd_ctx_profile(vkd_rec_ctx(rec))->bug_loop_limit;
    if (lim && per_lane + nparts + 8 > lim)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "%s: %llu elements per lane and %llu norm pieces exceed the device's "
                        "%u loop iterations per invocation", op, (unsigned long long)per_lane,
                        (unsigned long long)nparts, lim);
    return VKD_OK;
}

static bool has_subgroup_add(const vkd_ctx *ctx) {
    const vkd_device_info *d = vkd_ctx_info(ctx);
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    return d->subgroup_in_compute && (d->subgroup_ops & need) == need;
}

vkd_result vkd_op_sumsq(vkd_rec *rec, vkd_tensor *parts, uint32_t part0, const vkd_tensor *x,
                        uint64_t n) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t np = vkd_optim_sumsq_parts(ctx, n);
    vkd_result r;
    if ((r = vkd_ops_need(rec, "sumsq", x, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "sumsq", parts, VKD_DTYPE_F32, (uint64_t)part0 + np)))
        return r;
    if (n == 0 || n > UINT32_MAX)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "sumsq: n = %llu outside 1..2^32-1",
                        (unsigned long long)n);
    if (!has_subgroup_add(ctx))
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "sumsq: the device lacks subgroup arithmetic in compute shaders");
    uint32_t wg = wg_of(ctx), pl = per_lane_of(wg, n);
    if ((r = check_loops(rec, "sumsq", pl, 0))) return r;
    vkd_pc_sumsq pc = {.n = (uint)n, .per_wg = wg * pl, .part0 = part0};
    vkd_dispatch d = {
        .shader = VKD_SHADER_OPTIM_SUMSQ,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(x), vkd_rw(parts)},
        .nbinds = 2,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {np},
    };
    return vkd_rec_dispatch(rec, &d);
}

vkd_result vkd_op_global_norm(vkd_rec *rec, vkd_tensor *out, uint32_t out_index,
                              vkd_tensor *parts, uint32_t nparts) {
    vkd_result r;
    if ((r = vkd_ops_need(rec, "global_norm", parts, VKD_DTYPE_F32, nparts))) return r;
    if (out != parts)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID,
                        "global_norm: the norm is written into the parts tensor itself");
    if ((r = vkd_ops_need(rec, "global_norm", out, VKD_DTYPE_F32, (uint64_t)out_index + 1))) return r;
    if (out_index < nparts)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE,
                        "global_norm: output index %u overlaps the %u parts", out_index, nparts);
    if ((r = check_loops(rec, "global_norm", 0, nparts))) return r;
    vkd_pc_sumsq pc = {.nparts = nparts, .part0 = out_index};
    vkd_dispatch d = {
        .shader = VKD_SHADER_OPTIM_NORM,
        .spec = {1},
        .nspec = 1,
        .binds = {vkd_r(parts), vkd_rw(parts)},
        .nbinds = 2,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {1},
    };
    /* binding 0 is unused by the NORM variant; bind parts twice (read, read-write) */
    return vkd_rec_dispatch(rec, &d);
}

static vkd_result check_params(vkd_rec *rec, const vkd_optim_params *p) {
    vkd_error *err = vkd_rec_error(rec);
    if (!p) return vkd_fail(err, VKD_ERR_INVALID, "optim: missing parameters");
    if (!(p->lr >= 0.0) || !isfinite(p->lr))
        return vkd_fail(err, VKD_ERR_INVALID, "optim: learning rate %g, expected a finite value >= 0", p->lr);
    if (p->step == 0) return vkd_fail(err, VKD_ERR_INVALID, "optim: step is 1-based, got 0");
    if (p->kind != VKD_OPTIM_ADAMW && p->kind != VKD_OPTIM_SGD)
        return vkd_fail(err, VKD_ERR_INVALID, "optim: unknown optimizer kind %d", (int)p->kind);
    if (!(p->beta1 >= 0.0 && p->beta1 < 1.0) || !(p->beta2 >= 0.0 && p->beta2 < 1.0))
        return vkd_fail(err, VKD_ERR_INVALID, "optim: betas (%g, %g) outside [0, 1)", p->beta1, p->beta2);
    if (!(p->eps >= 0.0) || !(p->weight_decay >= 0.0) || !(p->momentum >= 0.0) ||
        !(p->dampening >= 0.0) || !(p->max_grad_norm >= 0.0))
        return vkd_fail(err, VKD_ERR_INVALID,
                        "optim: eps, weight_decay, momentum, dampening, max_grad_norm must be >= 0");
    return VKD_OK;
}

vkd_result vkd_op_optim_update(vkd_rec *rec, const vkd_optim_slot *s, const vkd_optim_params *p,
                               const vkd_tensor *parts, uint32_t nparts) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    vkd_result r;
    if ((r = check_params(rec, p))) return r;
    if (!s) return vkd_fail(err, VKD_ERR_INVALID, "optim: missing slot");
    bool adam = p->kind == VKD_OPTIM_ADAMW, mom = !adam && p->momentum > 0.0;
    if ((r = vkd_ops_need(rec, "optim", s->param, VKD_DTYPE_F32, s->n)) ||
        (r = vkd_ops_need(rec, "optim", s->grad, VKD_DTYPE_F32, s->n)) ||
        ((adam || mom) && (r = vkd_ops_need(rec, "optim", s->m, VKD_DTYPE_F32, s->n))) ||
        (adam && (r = vkd_ops_need(rec, "optim", s->v, VKD_DTYPE_F32, s->n))))
        return r;
    bool clip = p->max_grad_norm > 0.0;
    if (clip && (r = vkd_ops_need(rec, "optim", parts, VKD_DTYPE_F32, nparts))) return r;
    if (clip && nparts == 0) return vkd_fail(err, VKD_ERR_INVALID, "optim: clipping needs norm parts");
    if (s->n == 0 || s->n > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "optim: n = %llu outside 1..2^32-1", (unsigned long long)s->n);
    if (s->param == s->grad || (s->m && (s->m == s->param || s->m == s->grad)) ||
        (s->v && (s->v == s->param || s->v == s->grad || s->v == s->m)))
        return vkd_fail(err, VKD_ERR_INVALID, "optim: param, grad, m and v must be distinct tensors");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg = wg_of(ctx), pl = per_lane_of(wg, s->n);
    if ((r = check_loops(rec, "optim", pl, clip ? nparts : 0))) return r;
    uint64_t per_wg = (uint64_t)wg * pl;
    vkd_pc_optim pc = {.n = (uint)s->n, .per_wg = (uint)per_wg, .nparts = clip ? nparts : 0,
                       .max_norm = (float)p->max_grad_norm};
    if (adam) {
        double b1 = p->beta1 > 0 ? p->beta1 : 0.9, b2 = p->beta2 > 0 ? p->beta2 : 0.999;
        double t = (double)p->step;
        pc.decay = (float)(1.0 - p->lr * p->weight_decay);
        pc.one_minus_b1 = (float)(1.0 - b1);
        pc.b2 = (float)b2;
        pc.one_minus_b2 = (float)(1.0 - b2);
        pc.step_size = (float)(p->lr / (1.0 - pow(b1, t)));
        pc.bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
        pc.eps = (float)(p->eps > 0 ? p->eps : 1e-8);
    } else {
        pc.decay = (float)p->weight_decay;
        pc.one_minus_b1 = (float)p->momentum;
        pc.b2 = (float)(1.0 - p->dampening);
        pc.step_size = (float)p->lr;
        pc.first = p->step == 1;
    }
    /* unused bindings get a bound tensor (read-only access declared) */
    const vkd_tensor *m = s->m ? s->m : s->param, *v = s->v ? s->v : s->param;
    const vkd_tensor *pt = clip ? parts : s->grad;
    vkd_dispatch d = {
        .shader = adam ? VKD_SHADER_OPTIM_ADAMW : VKD_SHADER_OPTIM_SGD,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_rw(s->param), vkd_r(s->grad), (adam || mom) ? vkd_rw(m) : vkd_r(m),
                  adam ? vkd_rw(v) : vkd_r(v), vkd_r(pt)},
        .nbinds = 5,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(uint32_t)((s->n + per_wg - 1) / per_wg)},
    };
    if (!(adam || mom)) d.binds[2].access = d.binds[3].access = VKD_RW; /* aliases param */
    else if (!adam) d.binds[3].access = VKD_RW;
    return vkd_rec_dispatch(rec, &d);
}

uint32_t vkd_optim_parts_needed(const vkd_ctx *ctx, const vkd_optim_slot *slots, uint32_t nslots) {
    uint64_t np = 0;
    for (uint32_t i = 0; i < nslots; i++) np += vkd_optim_sumsq_parts(ctx, slots[i].n);
    return np > UINT32_MAX ? UINT32_MAX : (uint32_t)np;
}

vkd_result vkd_optim_step(vkd_rec *rec, const vkd_optim_slot *slots, uint32_t nslots,
                          const vkd_optim_params *p, vkd_tensor *parts, uint32_t *norm_index) {
    vkd_result r;
    if ((r = check_params(rec, p))) return r;
    if (!slots || nslots == 0) return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "optim: no slots");
    uint32_t np = 0;
    if (p->max_grad_norm > 0.0) {
        vkd_ctx *ctx = vkd_rec_ctx(rec);
        for (uint32_t i = 0; i < nslots; i++) {
            if ((r = vkd_op_sumsq(rec, parts, np, slots[i].grad, slots[i].n))) return r;
            np += vkd_optim_sumsq_parts(ctx, slots[i].n);
        }
        if ((r = vkd_op_global_norm(rec, parts, np, parts, np))) return r;
        if (norm_index) *norm_index = np;
    }
    for (uint32_t i = 0; i < nslots; i++)
        if ((r = vkd_op_optim_update(rec, &slots[i], p, parts, np))) return r;
    return VKD_OK;
}

double vkd_lr_cosine(uint64_t s, uint64_t warmup, uint64_t total) {
    if (s < warmup) return (double)s / (double)(warmup > 1 ? warmup : 1);
    double denom = total > warmup ? (double)(total - warmup) : 1.0;
    double progress = (double)(s - warmup) / denom;
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    return f > 0.0 ? f : 0.0;
}
