/* ops_basic.c: element-wise arithmetic and the bandwidth probe. */
#include "ops_internal.h"

#include <string.h>

vkd_result vkd_ops_need(vkd_rec *rec, const char *op, const vkd_tensor *t, vkd_dtype dtype,
                        uint64_t elems) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!t) return vkd_fail(err, VKD_ERR_INVALID, "%s: missing tensor", op);
    if (t->dtype != dtype)
        return vkd_fail(err, VKD_ERR_INVALID, "%s: tensor '%s' is %s, expected %s", op, t->name,
                        vkd_dtype_name(t->dtype), vkd_dtype_name(dtype));
    if (t->layout != VKD_LAYOUT_ROWS)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s' is in the texel block layout, "
                        "this op reads row-major tensors only", op, t->name);
    if (t->nchunks != 1)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s' is split across %u bindings",
                        op, t->name, t->nchunks);
    if (elems > t->rows * t->cols)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: tensor '%s' holds %llu elements, needs %llu", op,
                        t->name, (unsigned long long)(t->rows * t->cols), (unsigned long long)elems);
    return VKD_OK;
}

vkd_result vkd_op_axpby(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x0, const vkd_tensor *x1,
                        float a, float b, uint64_t n) {
    vkd_result r;
    if ((r = vkd_ops_need(rec, "axpby", y, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "axpby", x0, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "axpby", x1, VKD_DTYPE_F32, n)))
        return r;
    if (n > UINT32_MAX) return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "axpby: n too large");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    vkd_pc_axpby pc = {.n = (uint)n, .a = a, .b = b};
    vkd_dispatch d = {
        .shader = VKD_SHADER_AXPBY,
        .spec = {vkd_ctx_profile(ctx)->wg_elementwise},
        .nspec = 1,
        .binds = {vkd_r(x0), vkd_r(x1), vkd_w(y)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {vkd_ops_elementwise_groups(ctx, n)},
    };
    if (y == x0 || y == x1) d.binds[2].access = VKD_RW;
    return vkd_rec_dispatch(rec, &d);
}

vkd_result vkd_op_add(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, uint64_t n) {
    return vkd_op_axpby(rec, y, y, x, 1.0f, 1.0f, n);
}

vkd_result vkd_op_count_nonfinite(vkd_rec *rec, vkd_tensor *count, const vkd_tensor *x, bool *tail_unchecked) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r;
    if ((r = vkd_ops_need(rec, "count_nonfinite", count, VKD_DTYPE_U32, 1))) return r;
    if (!x || (x->dtype != VKD_DTYPE_F32 && x->dtype != VKD_DTYPE_F16 && x->dtype != VKD_DTYPE_BF16))
        return vkd_fail(err, VKD_ERR_INVALID, "count_nonfinite: tensor '%s' is not f32, f16 or bf16",
                        x ? x->name : "(null)");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint32_t kind = x->dtype == VKD_DTYPE_F32 ? 0 : x->dtype == VKD_DTYPE_BF16 ? 1 : 2;
    *tail_unchecked = false;
    for (uint32_t c = 0; c < x->nchunks; c++) {
        uint64_t words = x->chunks[c].bytes / 4;
        if (x->chunks[c].bytes % 4) *tail_unchecked = true;
        if (!words) continue;
        if (words > UINT32_MAX) return vkd_fail(err, VKD_ERR_RANGE, "count_nonfinite: chunk too large");
        /* at most 1024 words per lane: far inside any loop budget */
        uint64_t groups = (words + (uint64_t)p->wg_elementwise * 1024 - 1) / ((uint64_t)p->wg_elementwise * 1024);
        if (groups > vkd_ctx_info(ctx)->max_workgroup_count[0])
            return vkd_fail(err, VKD_ERR_UNSUPPORTED, "count_nonfinite: tensor '%s' needs too many workgroups", x->name);
        vkd_pc_nonfinite pc = {.n = (uint)words, .kind = kind};
        vkd_dispatch d = {
            .shader = VKD_SHADER_NONFINITE,
            .spec = {p->wg_elementwise},
            .nspec = 1,
            .binds = {{&x->chunks[c], VKD_READ}, vkd_rw(count)},
            .nbinds = 2,
            .push = &pc,
            .push_bytes = sizeof pc,
            .groups = {(uint32_t)groups},
        };
        if ((r = vkd_rec_dispatch(rec, &d))) return r;
    }
    return VKD_OK;
}

vkd_result vkd_op_copy_probe(vkd_rec *rec, vkd_tensor *dst, const vkd_tensor *src, uint64_t bytes) {
    vkd_error *err = vkd_rec_error(rec);
    if (bytes % 16 || bytes > src->bytes || bytes > dst->bytes || src->nchunks != 1 ||
        dst->nchunks != 1)
        return vkd_fail(err, VKD_ERR_INVALID, "copy_probe: bad sizes");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t nvec = bytes / 16;
    uint64_t groups = p->stream_groups ? p->stream_groups : (nvec + 4095) / 4096;
    if (!groups) groups = 1;
    if (vkd_profile_loop_budget(p) != UINT64_MAX) {
        /* each lane runs per_group / (4 * wg_stream) iterations (the shader copies four
         * words per lane per iteration); stay under the driver's limit, in whole multiples
         * of stream_groups so the threads stay evenly loaded */
        uint64_t per_lane = 4 * vkd_profile_loop_budget(p);
        uint64_t need = (nvec + per_lane * p->wg_stream - 1) / (per_lane * p->wg_stream);
        uint64_t unit = p->stream_groups ? p->stream_groups : 1;
        if (need > groups) groups = (need + unit - 1) / unit * unit;
    }
    if (groups > vkd_ctx_info(ctx)->max_workgroup_count[0])
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "copy_probe: %llu bytes need too many workgroups",
                        (unsigned long long)bytes);
    vkd_pc_copy pc = {.n_vec4 = (uint)nvec, .per_group = (uint)((nvec + groups - 1) / groups)};
    vkd_dispatch d = {
        .shader = VKD_SHADER_COPY_PROBE,
        .spec = {p->wg_stream},
        .nspec = 1,
        .binds = {vkd_r(src), vkd_w(dst)},
        .nbinds = 2,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(uint32_t)groups},
    };
    return vkd_rec_dispatch(rec, &d);
}
