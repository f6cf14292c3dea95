/* ops_grad.c: backward ops of the decoder layer besides the matmul: RMSNorm, RoPE, SwiGLU,
 * the attention and the embedding lookup (vkd_ops_grad.h). Simple geometry: one invocation per group, element,
 * query head or key head, reductions split under the loop budget (vkd_ops_loop_items).
 * Correctness first; the forward ops carry the inference load. */
#include <string.h>

#include "ops_internal.h"
#include "vkd_ops_grad.h"

static uint32_t div_up32(uint64_t a, uint64_t b) { return (uint32_t)((a + b - 1) / b); }

vkd_result vkd_ops_split_dispatch(vkd_rec *rec, vkd_dispatch *d, uint32_t r0, uint32_t r1,
                                  uint32_t per, bool accumulate, uint32_t out_mask, uint32_t *lo,
                                  uint32_t *hi, uint32_t *acc) {
    for (uint32_t a = r0; a < r1; a += per) {
        *lo = a;
        *hi = r1 - a > per ? a + per : r1;
        *acc = accumulate || a > r0;
        for (uint32_t b = 0; b < d->nbinds; b++)
            if (out_mask >> b & 1u) d->binds[b].access = *acc ? VKD_RW : VKD_WRITE;
        vkd_result r = vkd_rec_dispatch(rec, d);
        if (r) return r;
        if (*hi == r1) break; /* per == UINT32_MAX: a + per would wrap */
    }
    return VKD_OK;
}

/* groups x dim (x, dy, dx f32; w dim; dw dim f32; rstd groups f32) */
vkd_result vkd_op_rmsnorm_backward(vkd_rec *rec, vkd_tensor *dx, vkd_tensor *dw, vkd_tensor *rstd,
                                   const vkd_tensor *dy, const vkd_tensor *x, const vkd_tensor *w,
                                   uint32_t groups, uint32_t dim, float eps, bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r;
    uint64_t n = (uint64_t)groups * dim;
    if ((r = vkd_ops_need(rec, "rmsnorm_backward", dx, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "rmsnorm_backward", dy, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "rmsnorm_backward", x, VKD_DTYPE_F32, n)))
        return r;
    if (!w) return vkd_fail(err, VKD_ERR_INVALID, "rmsnorm_backward: missing weight");
    vkd_shader_id sh = vkd_select_rmsnorm_backward(&(vkd_variant){.dtype = w->dtype, .trans = VKD_TRANS_DX});
    if (sh == VKD_SHADER_COUNT)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "rmsnorm_backward: weight '%s' is %s, expected "
                        "F32, F16 or BF16", w->name, vkd_dtype_name(w->dtype));
    if ((r = vkd_ops_need(rec, "rmsnorm_backward", w, w->dtype, dim))) return r;
    if (dw && ((r = vkd_ops_need(rec, "rmsnorm_backward", dw, VKD_DTYPE_F32, dim)) ||
               (r = vkd_ops_need(rec, "rmsnorm_backward", rstd, VKD_DTYPE_F32, groups))))
        return r;
    if (dx->chunks[0].buffer == x->chunks[0].buffer || dx->chunks[0].buffer == dy->chunks[0].buffer)
        return vkd_fail(err, VKD_ERR_INVALID, "rmsnorm_backward: dx '%s' aliases an input", dx->name);
    if (!groups || !dim) return VKD_OK;
    if (n > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "rmsnorm_backward: %u groups of %u too large", groups, dim);
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    /* the dx kernel loops over its group twice: 2 * (dim + 1) iterations per invocation */
    if (vkd_ops_loop_items(ctx, 0, 2 * ((uint64_t)dim + 1)) == 0)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "rmsnorm_backward: groups of %u exceed this "
                        "driver's loop limit", dim);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise;
    vkd_pc_rmsnorm_bwd pc = {.groups = groups, .dim = dim, .accumulate = accumulate,
                             .write_rstd = dw != NULL, .r0 = 0, .r1 = groups, .eps = eps};
    vkd_dispatch d = {
        .shader = sh,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(x), vkd_r(w), vkd_r(dy), accumulate ? vkd_rw(dx) : vkd_w(dx),
                  dw ? vkd_w(rstd) : vkd_r(x)},
        .nbinds = 5,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {div_up32(groups, wg)},
    };
    if ((r = vkd_rec_dispatch(rec, &d)) || !dw) return r;
    uint32_t per = vkd_ops_loop_items(ctx, 2, 1);
    if (!per) return vkd_fail(err, VKD_ERR_UNSUPPORTED, "rmsnorm_backward: loop limit too small");
    vkd_pc_rmsnorm_bwd pw = pc;
    vkd_dispatch e = {
        .shader = vkd_select_rmsnorm_backward(&(vkd_variant){.trans = VKD_TRANS_DW}),
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(x), vkd_r(rstd), vkd_r(dy), vkd_w(dw)},
        .nbinds = 4,
        .push = &pw,
        .push_bytes = sizeof pw,
        .groups = {div_up32(dim, wg)},
    };
    return vkd_ops_split_dispatch(rec, &e, 0, groups, per, accumulate, 1u << 3, &pw.r0, &pw.r1,
                                  &pw.accumulate);
}

vkd_result vkd_op_rope_backward(vkd_rec *rec, vkd_tensor *dx, uint32_t x_row0, uint32_t rows,
                                uint32_t heads, uint32_t head_dim, uint32_t pos0,
                                const vkd_tensor *positions, const vkd_tensor *inv_freq) {
    return vkd_ops_rope_dispatch(rec, dx, x_row0, rows, heads, head_dim, pos0, positions, inv_freq,
                                 true);
}

/* dg, du, dh, g, u: n f32 */
vkd_result vkd_op_swiglu_backward(vkd_rec *rec, vkd_tensor *dg, vkd_tensor *du,
                                  const vkd_tensor *dh, const vkd_tensor *g, const vkd_tensor *u,
                                  uint64_t n) {
    vkd_result r;
    const vkd_tensor *all[5] = {dg, du, dh, g, u};
    for (int i = 0; i < 5; i++)
        if ((r = vkd_ops_need(rec, "swiglu_backward", all[i], VKD_DTYPE_F32, n))) return r;
    for (int i = 0; i < 2; i++)
        for (int j = i + 1; j < 5; j++)
            if (all[i]->chunks[0].buffer == all[j]->chunks[0].buffer)
                return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID,
                                "swiglu_backward: '%s' aliases '%s'", all[i]->name, all[j]->name);
    if (!n) return VKD_OK;
    if (n > UINT32_MAX / 2) return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "swiglu_backward: n too large");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise;
    uint64_t nwg = vkd_ops_elementwise_groups(ctx, n); /* lanes' passes within the loop budget */
    if (nwg > vkd_ctx_info(ctx)->max_workgroup_count[0])
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "swiglu_backward: n too large");
    vkd_pc_swiglu_bwd pc = {.n = (uint)n};
    vkd_dispatch d = {
        .shader = VKD_SHADER_SWIGLU_BACKWARD,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(g), vkd_r(u), vkd_r(dh), vkd_w(dg), vkd_w(du)},
        .nbinds = 5,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(uint32_t)nwg},
    };
    return vkd_rec_dispatch(rec, &d);
}

/* anchors != NULL: the block-sparse mask (vkd_op_attention_blocks_backward), blocks of
 * `block` rows, K/V rows [q_pos0, kv_len) the blocks' own */
static vkd_result attention_backward(vkd_rec *rec, vkd_tensor *dq, vkd_tensor *dk, vkd_tensor *dv,
                                     const vkd_tensor *do_, const vkd_tensor *q, const vkd_tensor *k,
                                     const vkd_tensor *v, const vkd_tensor *o, const vkd_tensor *lse,
                                     const vkd_tensor *anchors, uint32_t block, uint32_t q_rows,
                                     uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                     uint32_t q_pos0, bool causal, float scale, bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r;
    if (err->code) return err->code;
    if (!hd || hd % 4 || hd > 256 || !n_q || !n_kv || n_q % n_kv)
        return vkd_fail(err, VKD_ERR_INVALID, "attention_backward: head_dim %u (a multiple of 4 "
                        "up to 256 expected), %u query heads over %u kv heads", hd, n_q, n_kv);
    if (!k || !v || k->cols != v->cols || k->cols < (uint64_t)n_kv * hd || k->cols % 4)
        return vkd_fail(err, VKD_ERR_INVALID, "attention_backward: k and v need equal rows, a "
                        "multiple of 4 holding %u kv heads of %u", n_kv, hd);
    uint64_t qn = (uint64_t)q_rows * n_q * hd, kn = (uint64_t)kv_len * k->cols;
    const char *op = "attention_backward";
    if ((r = vkd_ops_need(rec, op, q, VKD_DTYPE_F32, qn)) || (r = vkd_ops_need(rec, op, o, VKD_DTYPE_F32, qn)) ||
        (r = vkd_ops_need(rec, op, do_, VKD_DTYPE_F32, qn)) || (r = vkd_ops_need(rec, op, dq, VKD_DTYPE_F32, qn)) ||
        (r = vkd_ops_need(rec, op, lse, VKD_DTYPE_F32, (uint64_t)q_rows * n_q)) ||
        (r = vkd_ops_need(rec, op, k, VKD_DTYPE_F32, kn)) || (r = vkd_ops_need(rec, op, v, VKD_DTYPE_F32, kn)) ||
        (r = vkd_ops_need(rec, op, dk, VKD_DTYPE_F32, kn)) || (r = vkd_ops_need(rec, op, dv, VKD_DTYPE_F32, kn)))
        return r;
    if (dk->cols != k->cols || dv->cols != k->cols)
        return vkd_fail(err, VKD_ERR_INVALID, "attention_backward: dk/dv rows differ from k's");
    if (!q_rows || !kv_len) return VKD_OK;
    if (qn > UINT32_MAX || kn > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "attention_backward: %u rows x %u keys too large", q_rows, kv_len);
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise, hd4 = hd / 4, group = n_q / n_kv;
    vkd_pc_attention_bwd pc = {
        .q_rows = q_rows, .kv_len = kv_len, .n_q = n_q, .n_kv = n_kv, .q_pos0 = q_pos0,
        .causal = causal, .k_stride = (uint)k->cols, .scale = scale, .block = block,
    };
    /* DQ: per key 1 + 2 * (hd4 + 1) iterations after a setup loop of hd4 + 1 */
    uint32_t per = vkd_ops_loop_items(ctx, hd4 + 2, 2 * (hd4 + 1) + 1);
    uint32_t per_rows = vkd_ops_loop_items(ctx, hd4 + 2, 2 + (uint64_t)group * (2 * (hd4 + 1) + 2));
    if (!per || !per_rows)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "attention_backward: %u query heads per kv head "
                        "of %u exceed this driver's loop limit", group, hd);
    vkd_dispatch d = {
        .shader = VKD_SHADER_ATTENTION_BWD_DQ,
        .spec = {wg, hd4},
        .nspec = 2,
        .binds = {vkd_r(q), vkd_r(k), vkd_r(v), vkd_r(o), vkd_r(lse), vkd_r(do_), vkd_w(dq)},
        .nbinds = 7,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {div_up32((uint64_t)q_rows * n_q, wg)},
    };
    if (anchors) {
        d.shader = VKD_SHADER_ATTENTION_BWD_BLOCKS_DQ;
        d.binds[7] = vkd_r(anchors);
        d.nbinds = 8;
    }
    /* blocks: a row's visible keys number at most q_pos0 + block */
    if ((r = vkd_ops_split_dispatch(rec, &d, 0, anchors ? q_pos0 + block : kv_len, per, accumulate, 1u << 6,
                                    &pc.r0, &pc.r1, &pc.accumulate)))
        return r;
    /* DKV: per query row 2 + group * (1 + 2 * (hd4 + 1) + 1) after setup hd4 + 1 */
    d.shader = anchors ? VKD_SHADER_ATTENTION_BWD_BLOCKS_DKV : VKD_SHADER_ATTENTION_BWD_DKV;
    d.binds[6] = vkd_w(dk);
    d.binds[7] = vkd_w(dv);
    d.nbinds = 8;
    if (anchors) {
        d.binds[8] = vkd_r(anchors);
        d.nbinds = 9;
    }
    d.groups[0] = div_up32((uint64_t)kv_len * n_kv, wg);
    return vkd_ops_split_dispatch(rec, &d, 0, q_rows, per_rows, accumulate, 3u << 6, &pc.r0,
                                  &pc.r1, &pc.accumulate);
}

vkd_result vkd_op_attention_backward(vkd_rec *rec, vkd_tensor *dq, vkd_tensor *dk, vkd_tensor *dv,
                                     const vkd_tensor *do_, const vkd_tensor *q,
                                     const vkd_tensor *k, const vkd_tensor *v, const vkd_tensor *o,
                                     const vkd_tensor *lse, uint32_t q_rows, uint32_t kv_len,
                                     uint32_t n_q, uint32_t n_kv, uint32_t hd, uint32_t q_pos0,
                                     bool causal, float scale, bool accumulate) {
    return attention_backward(rec, dq, dk, dv, do_, q, k, v, o, lse, NULL, 0, q_rows, kv_len, n_q, n_kv, hd,
                              q_pos0, causal, scale, accumulate);
}

vkd_result vkd_op_attention_blocks_backward(vkd_rec *rec, vkd_tensor *dq, vkd_tensor *dk, vkd_tensor *dv,
                                            const vkd_tensor *do_, const vkd_tensor *q, const vkd_tensor *k,
                                            const vkd_tensor *v, const vkd_tensor *o, const vkd_tensor *lse,
                                            const vkd_tensor *anchors, uint32_t q_rows, uint32_t block,
                                            uint32_t n_ctx, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                            float scale, bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!anchors) return vkd_fail(err, VKD_ERR_INVALID, "attention_blocks_backward: missing anchors");
    if (!block || q_rows % block)
        return vkd_fail(err, VKD_ERR_INVALID, "attention_blocks_backward: %u query rows are not whole blocks "
                        "of %u", q_rows, block);
    vkd_result r = vkd_ops_need(rec, "attention_blocks_backward", anchors, VKD_DTYPE_I32, q_rows / block);
    if (r) return r;
    if ((uint64_t)n_ctx + q_rows > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "attention_blocks_backward: %u context rows too many", n_ctx);
    return attention_backward(rec, dq, dk, dv, do_, q, k, v, o, lse, anchors, block, q_rows, n_ctx + q_rows, n_q,
                              n_kv, hd, n_ctx, false, scale, accumulate);
}

void vkd_embed_grad_index(const int32_t *ids, uint32_t m, uint32_t V, int32_t *offsets, int32_t *order) {
    memset(offsets, 0, ((size_t)V + 1) * sizeof *offsets);
    for (uint32_t i = 0; i < m; i++)
        if (ids[i] >= 0 && (uint32_t)ids[i] < V) offsets[ids[i] + 1]++;
    for (uint32_t v = 0; v < V; v++) offsets[v + 1] += offsets[v];
    /* offsets[v] doubles as the next free slot of id v, then is shifted back */
    for (uint32_t i = 0; i < m; i++)
        if (ids[i] >= 0 && (uint32_t)ids[i] < V) order[offsets[ids[i]]++] = (int32_t)i;
    for (uint32_t v = V; v > 0; v--) offsets[v] = offsets[v - 1];
    offsets[0] = 0;
}

/* dtable: V x H f32; dy: m x H f32; order: m i32; offsets: V + 1 i32 */
vkd_result vkd_op_embed_backward(vkd_rec *rec, vkd_tensor *dtable, const vkd_tensor *dy,
                                 const vkd_tensor *order, const vkd_tensor *offsets, uint32_t m,
                                 uint32_t V, uint32_t H, bool accumulate) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r;
    if ((r = vkd_ops_need(rec, "embed_backward", dtable, VKD_DTYPE_F32, (uint64_t)V * H)) ||
        (r = vkd_ops_need(rec, "embed_backward", dy, VKD_DTYPE_F32, (uint64_t)m * H)) ||
        (r = vkd_ops_need(rec, "embed_backward", order, VKD_DTYPE_I32, m)) ||
        (r = vkd_ops_need(rec, "embed_backward", offsets, VKD_DTYPE_I32, (uint64_t)V + 1)))
        return r;
    if ((uint64_t)V * H > UINT32_MAX || (uint64_t)m * H > UINT32_MAX || m > INT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "embed_backward: %u x %u table or %u rows too large "
                        "for 32-bit indexing", V, H, m);
    if (vkd_ops_overlap(dtable, dy))
        return vkd_fail(err, VKD_ERR_INVALID, "embed_backward: '%s' aliases '%s'", dtable->name, dy->name);
    if (!V || !H) return VKD_OK;
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise;
    uint32_t gy = vkd_ctx_info(ctx)->max_workgroup_count[1];
    if (gy > V) gy = V;
    uint32_t rows_per = (V + gy - 1) / gy;
    /* an invocation walks its rows (a few iterations each) and the piece's tokens */
    uint32_t per = vkd_ops_loop_items(ctx, (uint64_t)rows_per * 4, 1);
    if (!per) return vkd_fail(err, VKD_ERR_UNSUPPORTED, "embed_backward: loop limit too small");
    vkd_pc_embed_bwd pc = {.V = V, .H = H};
    vkd_dispatch d = {
        .shader = VKD_SHADER_EMBED_BACKWARD,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(dy), vkd_r(order), vkd_r(offsets), vkd_w(dtable)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {(H + wg - 1) / wg, gy},
    };
    /* m == 0 still writes (zeros) unless accumulating */
    return vkd_ops_split_dispatch(rec, &d, 0, m ? m : 1, per, accumulate, 1u << 3, &pc.r0, &pc.r1,
                                  &pc.accumulate);
}
