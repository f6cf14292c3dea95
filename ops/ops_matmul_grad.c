/* ops_matmul_grad.c: gradients of the matmul, for training. dx = dy W streams a frozen
 * weight chunk by chunk (its dtype as stored); dw = dy^T x is an f32 outer-product sum (LoRA
 * matrices, trainable heads). Where the profile's matmul_bcast holds (CPU drivers) both run
 * as 8 x 32 broadcast register tiles (shaders/matmul_bcast.comp, vkd_ops_matmul_bcast, also
 * used by the forward and the fused loss); elsewhere shaders/matmul_grad.comp: dx one
 * invocation per 8 rows of a column (four columns with K % 4 == 0), so W is streamed once
 * per 8 rows; dw one invocation per output element. The reduction is split into dispatches
 * under the loop budget, the later ones accumulating. */
#include "ops_internal.h"
#include "vkd_ops_grad.h"

/* one reduction range [r0, r1) split under the loop budget; acc0: accumulate into out on the
 * first piece */
static vkd_result grad_dispatch(vkd_rec *rec, vkd_shader_id sh, vkd_bind in0, const vkd_tensor *dy,
                                vkd_tensor *out, vkd_pc_matmul_grad pc, uint32_t r0, uint32_t r1,
                                bool acc0, uint32_t out_rows, uint32_t cols) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise;
    uint32_t per = vkd_ops_loop_items(ctx, 4, 2);
    if (!per) return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED, "matmul_backward: loop limit too small");
    vkd_dispatch d = {
        .shader = sh,
        .spec = {wg},
        .nspec = 1,
        .binds = {in0, vkd_r(dy), vkd_w(out)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(cols + wg - 1) / wg, out_rows},
    };
    return vkd_ops_split_dispatch(rec, &d, r0, r1, per, acc0, 1u << 2, &pc.r0, &pc.r1, &pc.accumulate);
}

vkd_result vkd_ops_matmul_bcast(vkd_rec *rec, vkd_shader_id sh, vkd_bind in0, vkd_bind in1,
                                vkd_bind out, vkd_pc_matmul_bcast pc, uint32_t r0, uint32_t r1,
                                bool accumulate) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_device_info *info = vkd_ctx_info(ctx);
    /* per invocation: one loop pass per 4 steps of the reduction (and its 4-step load loop),
     * plus the store loops */
    uint32_t passes = vkd_ops_loop_items(ctx, 48, 6);
    if (!passes) return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED, "matmul: loop limit too small");
    uint32_t per = passes > UINT32_MAX / 4 ? UINT32_MAX : passes * 4;
    uint64_t gx = ((uint64_t)pc.cols_b + 31) / 32, gy = ((uint64_t)pc.rows_a + 7) / 8;
    if (gx > info->max_workgroup_count[0] || gy > info->max_workgroup_count[1])
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "matmul: %u x %u outputs too many workgroups",
                        pc.rows_a, pc.cols_b);
    vkd_dispatch d = {
        .shader = sh,
        .binds = {in0, in1, out},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(uint32_t)gx, (uint32_t)gy, 1},
    };
    return vkd_ops_split_dispatch(rec, &d, r0, r1, per, accumulate, 1u << 2, &pc.r0, &pc.r1, &pc.accumulate);
}

/* dy: m x N f32; x: m x K f32; w: N x K; dx: m x K f32; dw: N x K f32 */
vkd_result vkd_op_matmul_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t dx_row0, vkd_tensor *dw,
                                  const vkd_tensor *dy, uint32_t dy_row0, const vkd_tensor *x,
                                  uint32_t x_row0, const vkd_tensor *w, uint32_t m,
                                  bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!w || !dy) return vkd_fail(err, VKD_ERR_INVALID, "matmul_backward: missing tensor");
    if (w->dtype != VKD_DTYPE_F32 && w->dtype != VKD_DTYPE_F16 && w->dtype != VKD_DTYPE_BF16)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "matmul_backward: weight '%s' is %s, expected "
                        "F32, F16 or BF16", w->name, vkd_dtype_name(w->dtype));
    const uint64_t N = w->rows, K = w->cols;
    vkd_result r;
    if ((r = vkd_ops_need(rec, "matmul_backward", dy, VKD_DTYPE_F32, ((uint64_t)dy_row0 + m) * N)))
        return r;
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const bool bcast = vkd_ctx_profile(ctx)->matmul_bcast; /* broadcast tiles (CPU drivers) */
    const vkd_device_info *info = vkd_ctx_info(ctx);
    if (!m) return VKD_OK;
    if (((uint64_t)dy_row0 + m) * N > UINT32_MAX || ((uint64_t)dx_row0 + m) * K > UINT32_MAX ||
        ((uint64_t)x_row0 + m) * K > UINT32_MAX || m > info->max_workgroup_count[1])
        return vkd_fail(err, VKD_ERR_RANGE, "matmul_backward: %u rows of %llu x %llu too large",
                        m, (unsigned long long)N, (unsigned long long)K);
    vkd_pc_matmul_grad pc = {.K = (uint)K, .N = (uint)N, .x_row0 = dx_row0, .dy_row0 = dy_row0, .m = m};
    if (dx) {
        if ((r = vkd_ops_need(rec, "matmul_backward", dx, VKD_DTYPE_F32, ((uint64_t)dx_row0 + m) * K)))
            return r;
        vkd_variant key = {.dtype = w->dtype, .layout = w->layout, .trans = VKD_TRANS_DX,
                           .shape = bcast ? VKD_SHAPE_BCAST : VKD_SHAPE_GEMV};
        vkd_shader_id dx_sh = vkd_select_matmul(&key);
        if (dx_sh == VKD_SHADER_COUNT)
            return vkd_fail(err, VKD_ERR_UNSUPPORTED, "matmul_backward: weight '%s' is not "
                            "row-major; dx = dy W has no texel-block kernel", w->name);
        for (uint32_t c = 0; c < w->nchunks; c++) {
            const vkd_chunk *ch = &w->chunks[c];
            if (ch->rows * K > UINT32_MAX)
                return vkd_fail(err, VKD_ERR_RANGE, "matmul_backward: chunk of '%s' too large", w->name);
            pc.col0 = (uint)ch->row0;
            if (bcast) {
                vkd_pc_matmul_bcast pb = {.K = (uint)K, .N = (uint)N, .col0 = pc.col0, .x_row0 = dx_row0,
                                          .y_row0 = dy_row0, .rows_a = m, .cols_b = (uint)K};
                r = vkd_ops_matmul_bcast(rec, dx_sh, (vkd_bind){ch, VKD_READ}, vkd_r(dy), vkd_w(dx), pb, 0,
                                         (uint32_t)ch->rows, accumulate || c > 0);
                if (r) return r;
                continue;
            }
            r = grad_dispatch(rec, dx_sh, (vkd_bind){ch, VKD_READ}, dy, dx, pc, 0,
                              (uint32_t)ch->rows, accumulate || c > 0, (m + 7) / 8,
                              K % 4 == 0 ? (uint32_t)(K / 4) : (uint32_t)K);
            if (r) return r;
        }
    }
    if (dw) {
        if ((r = vkd_ops_need(rec, "matmul_backward", dw, VKD_DTYPE_F32, N * K)) ||
            (r = vkd_ops_need(rec, "matmul_backward", x, VKD_DTYPE_F32, ((uint64_t)x_row0 + m) * K)))
            return r;
        if ((!bcast && N > info->max_workgroup_count[1]) || N * K > UINT32_MAX)
            return vkd_fail(err, VKD_ERR_RANGE, "matmul_backward: weight gradient of %llu x %llu "
                            "too large", (unsigned long long)N, (unsigned long long)K);
        if (bcast) {
            vkd_variant key = {.dtype = VKD_DTYPE_F32, .trans = VKD_TRANS_DW, .shape = VKD_SHAPE_BCAST};
            vkd_pc_matmul_bcast pb = {.K = (uint)K, .N = (uint)N, .x_row0 = x_row0, .y_row0 = dy_row0,
                                      .rows_a = (uint)N, .cols_b = (uint)K};
            return vkd_ops_matmul_bcast(rec, vkd_select_matmul(&key), vkd_r(x), vkd_r(dy), vkd_w(dw), pb, 0, m,
                                        accumulate);
        }
        pc.col0 = 0;
        pc.x_row0 = x_row0;
        vkd_variant key = {.dtype = VKD_DTYPE_F32, .trans = VKD_TRANS_DW};
        r = grad_dispatch(rec, vkd_select_matmul(&key), vkd_r(x), dy, dw, pc, 0, m, accumulate, (uint32_t)N,
                          (uint32_t)K);
        if (r) return r;
    }
    return VKD_OK;
}
