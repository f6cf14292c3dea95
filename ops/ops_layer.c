/* ops_layer.c: the ops of a decoder layer besides matmul: RMSNorm, RoPE, attention,
 * SwiGLU and the strided copy used for KV-cache appends and hidden-state taps.
 * Geometry comes from the device profile (runtime/quirks.c): on lavapipe a few workgroups
 * of subgroup size, each owning one contiguous range; on GPUs one workgroup per group /
 * vector / head block. */
#include "ops_internal.h"

static vkd_result fail(vkd_rec *rec, vkd_result code, const char *fmt, const char *op,
                       unsigned long long a, unsigned long long b) {
    return vkd_fail(vkd_rec_error(rec), code, fmt, op, a, b);
}

/* Splits `items` work items over workgroups: as many as the profile's stream_groups (0: one
 * per item), at most 65535; *per = items per workgroup. Returns the workgroup count. */
static uint32_t split_items(const vkd_profile *p, uint64_t items, uint64_t *per) {
    uint64_t groups = p->stream_groups ? p->stream_groups : items;
    if (groups > items) groups = items;
    if (groups > 65535) groups = 65535;
    if (!groups) groups = 1;
    *per = (items + groups - 1) / groups;
    if (!*per) *per = 1;
    return (uint32_t)((items + *per - 1) / *per);
}

/* groups x dim (x, y: f32; w: dim, f32/f16/bf16) */
vkd_result vkd_op_rmsnorm(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, const vkd_tensor *w,
                          uint32_t groups, uint32_t dim, float eps) {
    vkd_result r;
    uint64_t n = (uint64_t)groups * dim;
    if ((r = vkd_ops_need(rec, "rmsnorm", y, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "rmsnorm", x, VKD_DTYPE_F32, n)))
        return r;
    if (!w) return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "rmsnorm: missing weight");
    vkd_shader_id sh = vkd_select_rmsnorm(&(vkd_variant){.dtype = w->dtype});
    if (sh == VKD_SHADER_COUNT)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "rmsnorm: weight '%s' is %s, expected F32, F16 or BF16", w->name,
                        vkd_dtype_name(w->dtype));
    if ((r = vkd_ops_need(rec, "rmsnorm", w, w->dtype, dim))) return r;
    if (!groups || !dim) return VKD_OK;
    if (n > UINT32_MAX / 4)
        return fail(rec, VKD_ERR_RANGE, "%s: %llu groups of %llu too large", "rmsnorm", groups, dim);
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint32_t sg = vkd_ctx_info(ctx)->subgroup_size;
    uint32_t wg = p->wg_stream;
    if (sg && wg / sg > 64) wg = 64 * sg; /* the shader's shared partial sums hold 64 */
    uint64_t per;
    uint32_t nwg = split_items(p, groups, &per);
    vkd_pc_rmsnorm pc = {.groups = groups, .dim = dim, .groups_per_wg = (uint)per, .eps = eps};
    vkd_dispatch d = {
        .shader = sh,
        .spec = {wg, 0, 0, vkd_ctx_one_subgroup(ctx, wg ? wg : 1)},
        .nspec = 4,
        .binds = {vkd_r(x), vkd_r(w), vkd_w(y)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {nwg},
    };
    if (vkd_ops_overlap(y, x)) d.binds[2].access = VKD_RW;
    return vkd_rec_dispatch(rec, &d);
}

/* x: rows x (>= heads*head_dim) f32 from x_row0, in place; inv_freq: head_dim/2 f32;
 * positions: rows i32 or NULL (pos0 + r). */
vkd_result vkd_ops_rope_dispatch(vkd_rec *rec, vkd_tensor *x, uint32_t x_row0, uint32_t rows,
                                 uint32_t heads, uint32_t head_dim, uint32_t pos0,
                                 const vkd_tensor *positions, const vkd_tensor *inv_freq,
                                 bool inverse) {
    vkd_result r;
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!x) return vkd_fail(err, VKD_ERR_INVALID, "rope: missing tensor");
    if (head_dim % 2 || (uint64_t)heads * head_dim > x->cols)
        return vkd_fail(err, VKD_ERR_INVALID,
                        "rope: %u heads of %u (even head_dim expected) do not fit rows of %llu in '%s'",
                        heads, head_dim, (unsigned long long)x->cols, x->name);
    uint64_t n = ((uint64_t)x_row0 + rows) * x->cols;
    if ((r = vkd_ops_need(rec, "rope", x, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "rope", inv_freq, VKD_DTYPE_F32, head_dim / 2)) ||
        (positions && (r = vkd_ops_need(rec, "rope", positions, VKD_DTYPE_I32, rows))))
        return r;
    if (!rows || !heads || !head_dim) return VKD_OK;
    if (n > UINT32_MAX)
        return fail(rec, VKD_ERR_RANGE, "%s: rows up to %llu x %llu too large", "rope",
                    (unsigned long long)x_row0 + rows, x->cols);
    if ((uint64_t)pos0 + rows > (1u << 24) && !positions)
        return vkd_fail(err, VKD_ERR_RANGE, "rope: positions beyond 2^24 are not exact in f32");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t per;
    uint32_t nwg = split_items(p, (uint64_t)rows * heads, &per);
    vkd_pc_rope pc = {
        .rows = rows, .heads = heads, .half_dim = head_dim / 2,
        .x_off = (uint)((uint64_t)x_row0 * x->cols), .x_stride = (uint)x->cols,
        .pos0 = pos0, .use_positions = positions != NULL, .vecs_per_wg = (uint)per,
    };
    vkd_dispatch d = {
        .shader = inverse ? VKD_SHADER_ROPE_BACKWARD : VKD_SHADER_ROPE,
        .spec = {p->wg_stream},
        .nspec = 1,
        .binds = {vkd_rw(x), vkd_r(inv_freq), vkd_r(positions ? positions : inv_freq)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {nwg},
    };
    return vkd_rec_dispatch(rec, &d);
}

vkd_result vkd_op_rope(vkd_rec *rec, vkd_tensor *x, uint32_t x_row0, uint32_t rows, uint32_t heads,
                       uint32_t head_dim, uint32_t pos0, const vkd_tensor *positions,
                       const vkd_tensor *inv_freq) {
    return vkd_ops_rope_dispatch(rec, x, x_row0, rows, heads, head_dim, pos0, positions, inv_freq,
                                 false);
}

vkd_result vkd_op_qk_rope_kv(vkd_rec *rec, vkd_tensor *q, vkd_tensor *k, const vkd_tensor *v,
                             const vkd_tensor *q_norm, const vkd_tensor *k_norm, uint32_t rows,
                             uint32_t n_q, uint32_t n_kv, uint32_t head_dim, uint32_t pos,
                             const vkd_tensor *inv_freq, float eps, vkd_tensor *kc, vkd_tensor *vc) {
    vkd_result r;
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    const uint32_t D = head_dim;
    if (!k || !v || !kc || !vc || !inv_freq || (n_q && !q) || !n_kv)
        return vkd_fail(err, VKD_ERR_INVALID, "qk_rope_kv: missing tensor");
    if (!D || D % 4 || (n_q && (!q_norm) != (!k_norm)))
        return vkd_fail(err, VKD_ERR_INVALID, "qk_rope_kv: head_dim %u (a multiple of 4 expected), "
                        "q_norm and k_norm both given or both NULL", D);
    if (!n_q) q_norm = k_norm; /* keys only: q_norm unused, bound in its place */
    uint64_t kvn = (uint64_t)rows * n_kv * D;
    if ((n_q && (r = vkd_ops_need(rec, "qk_rope_kv", q, VKD_DTYPE_F32, (uint64_t)rows * n_q * D))) ||
        (r = vkd_ops_need(rec, "qk_rope_kv", k, VKD_DTYPE_F32, kvn)) ||
        (r = vkd_ops_need(rec, "qk_rope_kv", v, VKD_DTYPE_F32, kvn)) ||
        (r = vkd_ops_need(rec, "qk_rope_kv", inv_freq, VKD_DTYPE_F32, D / 2)))
        return r;
    if (q_norm && (q_norm->dtype != k_norm->dtype ||
                   (r = vkd_ops_need(rec, "qk_rope_kv", q_norm, q_norm->dtype, D)) ||
                   (r = vkd_ops_need(rec, "qk_rope_kv", k_norm, k_norm->dtype, D))))
        return r ? r : vkd_fail(err, VKD_ERR_UNSUPPORTED, "qk_rope_kv: norm weights '%s' and '%s' "
                                "of different dtypes", q_norm->name, k_norm->name);
    if (kc->dtype != vc->dtype || kc->cols != vc->cols || kc->cols % 2 ||
        kc->cols < (uint64_t)n_kv * D)
        return vkd_fail(err, VKD_ERR_INVALID, "qk_rope_kv: caches '%s' and '%s' must share a dtype "
                        "and an even row width >= %u", kc->name, vc->name, n_kv * D);
    if ((r = vkd_ops_need(rec, "qk_rope_kv", kc, kc->dtype, ((uint64_t)pos + rows) * kc->cols)) ||
        (r = vkd_ops_need(rec, "qk_rope_kv", vc, vc->dtype, ((uint64_t)pos + rows) * vc->cols)))
        return r;
    if (!rows) return VKD_OK;
    if (((uint64_t)pos + rows) * kc->cols > UINT32_MAX || (uint64_t)rows * (n_q + n_kv) * D > UINT32_MAX)
        return fail(rec, VKD_ERR_RANGE, "%s: rows up to %llu x %llu too large", "qk_rope_kv",
                    (unsigned long long)pos + rows, kc->cols);
    if ((uint64_t)pos + rows > (1u << 24))
        return vkd_fail(err, VKD_ERR_RANGE, "qk_rope_kv: positions beyond 2^24 are not exact in f32");
    vkd_dtype wd = q_norm ? q_norm->dtype : VKD_DTYPE_F32;
    static const vkd_shader_id sh[2][3] = {
        {VKD_SHADER_QK_ROPE_KV_F32, VKD_SHADER_QK_ROPE_KV_F16, VKD_SHADER_QK_ROPE_KV_BF16},
        {VKD_SHADER_QK_ROPE_KV_F32_CACHE_F16, VKD_SHADER_QK_ROPE_KV_F16_CACHE_F16,
         VKD_SHADER_QK_ROPE_KV_BF16_CACHE_F16}};
    int wi = wd == VKD_DTYPE_F32 ? 0 : wd == VKD_DTYPE_F16 ? 1 : wd == VKD_DTYPE_BF16 ? 2 : -1;
    int ci = kc->dtype == VKD_DTYPE_F32 ? 0 : kc->dtype == VKD_DTYPE_F16 ? 1 : -1;
    if (wi < 0 || ci < 0)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "qk_rope_kv: norm weights %s and cache %s, expected "
                        "F32/F16/BF16 and F32/F16", vkd_dtype_name(wd), vkd_dtype_name(kc->dtype));
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint32_t sg = vkd_ctx_info(ctx)->subgroup_size;
    uint32_t wg = p->wg_stream; /* as vkd_op_rmsnorm and vkd_op_rope: the same lanes, the same sums */
    if (sg && wg / sg > 64) wg = 64 * sg;
    uint32_t nl = wg ? wg : 1;
    /* loop passes per vector: norm (2 walks, the subgroup sums), rope, the K/V copy */
    uint64_t per_vec = 2 * (vkd_div_up(D / 4, nl) + 1) + 4 + (nl / (sg ? sg : 1)) + vkd_div_up(D / 2, nl) + 1 +
                       vkd_div_up(D, nl) + 2;
    uint32_t groups;
    uint32_t per = vkd_profile_stream_split(ctx, (uint64_t)rows * (n_q + n_kv), per_vec, 1, &groups);
    vkd_pc_qk_rope_kv pc = {.rows = rows, .n_q = n_q, .n_kv = n_kv, .half_dim = D / 2, .pos0 = pos,
                            .vecs_per_wg = per, .qk_norm = q_norm != NULL,
                            .kv_stride = (uint32_t)kc->cols, .eps = eps};
    const vkd_tensor *wq = q_norm ? q_norm : inv_freq, *wk = k_norm ? k_norm : inv_freq;
    vkd_dispatch d = {
        .shader = sh[ci][wi],
        .spec = {wg, 0, 0, vkd_ctx_one_subgroup(ctx, nl)},
        .nspec = 4,
        .binds = {n_q ? vkd_rw(q) : vkd_r(k), vkd_rw(k), vkd_r(v), vkd_r(wq), vkd_r(wk), vkd_r(inv_freq),
                  vkd_w(kc), vkd_w(vc)},
        .nbinds = 8,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {groups},
    };
    return vkd_rec_dispatch(rec, &d);
}

/* Attention launch parameters: lanes per key (L), 16-byte words per lane (NV), query heads
 * per workgroup (HPW), workgroup size. */
typedef struct attn_geom {
    uint32_t wg, lanes, nv, hpw;
} attn_geom;

static attn_geom attention_geometry(const vkd_ctx *ctx, uint32_t hd, uint32_t group) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    const vkd_device_info *info = vkd_ctx_info(ctx);
    /* a team of lanes must sit inside one subgroup whatever size the driver picks */
    uint32_t sg = info->min_subgroup_size ? info->min_subgroup_size : info->subgroup_size;
    if (!sg) sg = 1;
    uint32_t wg = p->wg_stream ? p->wg_stream : 1;
    uint32_t hd4 = hd / 4, lanes = 1;
    uint32_t most = p->attn_lanes ? p->attn_lanes : sg;
    while (lanes * 2 <= sg && lanes * 2 <= wg && lanes * 2 <= hd4 && lanes * 2 <= most) lanes *= 2;
    wg = wg / lanes * lanes;
    uint32_t nv = (hd4 + lanes - 1) / lanes;
    /* q and the accumulators live in registers: keep HPW * NV words per lane modest */
    uint32_t hpw = 1;
    for (uint32_t h = 1; h <= group; h++)
        if (group % h == 0 && h * nv <= 16 &&
            (uint64_t)wg * h * (8 + 16 * nv) <= info->shared_memory_bytes)
            hpw = h;
    return (attn_geom){wg, lanes, nv, hpw};
}

/* Splits of split-K attention for q_rows rows over at most `keys` keys (1: none): the
 * profile's forced count, else enough for the dispatch to have attn_split_groups workgroups,
 * each split at least attn_split_keys keys; at most VKD_ATTN_SPLITS_MAX. */
static uint32_t attention_splits(const vkd_ctx *ctx, uint32_t q_rows, uint32_t keys, uint32_t n_q,
                                 uint32_t hpw) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint64_t s = p->attn_splits;
    if (!s) {
        uint64_t base = (uint64_t)(n_q / hpw) * q_rows;
        if (!p->attn_split_groups || !base || base >= p->attn_split_groups) return 1;
        s = (p->attn_split_groups + base - 1) / base;
        uint64_t by_keys = p->attn_split_keys ? keys / p->attn_split_keys : keys;
        if (s > by_keys) s = by_keys;
    }
    if (s > VKD_ATTN_SPLITS_MAX) s = VKD_ATTN_SPLITS_MAX;
    if (s > keys) s = keys;
    return s > 1 ? (uint32_t)s : 1;
}

uint32_t vkd_op_attention_splits(const vkd_ctx *ctx, uint32_t q_rows, uint32_t kv_len, uint32_t n_q,
                                 uint32_t n_kv, uint32_t hd) {
    if (!hd || !n_q || !n_kv || n_q % n_kv || !q_rows) return 1;
    return attention_splits(ctx, q_rows, kv_len, n_q, attention_geometry(ctx, hd, n_q / n_kv).hpw);
}

uint64_t vkd_op_attention_part_floats(const vkd_ctx *ctx, uint32_t q_rows, uint32_t kv_len,
                                      uint32_t n_q, uint32_t n_kv, uint32_t hd) {
    if (!hd || !n_q || !n_kv || n_q % n_kv) return 0;
    uint32_t hpw = attention_geometry(ctx, hd, n_q / n_kv).hpw;
    uint64_t most = 0;
    for (uint32_t r = 1; r <= q_rows; r++) {
        uint32_t s = attention_splits(ctx, r, kv_len, n_q, hpw);
        uint64_t need = s > 1 ? (uint64_t)s * r * n_q * (hd + 4) : 0;
        if (need > most) most = need;
    }
    return most;
}

/* q, o: q_rows x (n_q*hd) f32; k, v: cap x (>= n_kv*hd) f32/f16, rows < kv_len read. */
/* part: split-K partials (inference only; NULL: no split). */
/* anchors != NULL: the block-sparse mask (vkd_op_attention_blocks_lse), blocks of `block`
 * rows, K/V rows [q_pos0, kv_len) the blocks' own. */
static vkd_result attention_impl(vkd_rec *rec, vkd_tensor *o, vkd_tensor *lse, vkd_tensor *part,
                                 const vkd_tensor *q, const vkd_tensor *k,
                            const vkd_tensor *v, const vkd_tensor *anchors, uint32_t block, uint32_t q_rows,
                            uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd, uint32_t q_pos0, bool causal,
                            float scale) {
    vkd_result r;
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!k || !v) return vkd_fail(err, VKD_ERR_INVALID, "attention: missing tensor");
    if (!hd || hd % 4 || hd > 1024 || !n_q || !n_kv || n_q % n_kv)
        return vkd_fail(err, VKD_ERR_INVALID,
                        "attention: head_dim %u (a multiple of 4 up to 1024 expected), %u query "
                        "heads over %u kv heads", hd, n_q, n_kv);
    if (k->dtype != v->dtype || (k->dtype != VKD_DTYPE_F32 && k->dtype != VKD_DTYPE_F16))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "attention: cache '%s' is %s and '%s' is %s, "
                        "expected both F32 or both F16", k->name, vkd_dtype_name(k->dtype),
                        v->name, vkd_dtype_name(v->dtype));
    uint64_t qn = (uint64_t)q_rows * n_q * hd;
    if ((r = vkd_ops_need(rec, "attention", q, VKD_DTYPE_F32, qn)) ||
        (r = vkd_ops_need(rec, "attention", o, VKD_DTYPE_F32, qn)) ||
        (r = vkd_ops_need(rec, "attention", k, k->dtype, (uint64_t)kv_len * k->cols)) ||
        (r = vkd_ops_need(rec, "attention", v, v->dtype, (uint64_t)kv_len * v->cols)))
        return r;
    if (vkd_ops_overlap(o, q))
        return vkd_fail(err, VKD_ERR_INVALID, "attention: output '%s' aliases the queries", o->name);
    if (lse && (r = vkd_ops_need(rec, "attention", lse, VKD_DTYPE_F32, (uint64_t)q_rows * n_q)))
        return r;
    for (int i = 0; i < 2; i++) {
        const vkd_tensor *c = i ? v : k;
        if (c->cols < (uint64_t)n_kv * hd || c->cols % 4)
            return vkd_fail(err, VKD_ERR_INVALID, "attention: cache '%s' rows of %llu, expected a "
                            "multiple of 4 holding %u kv heads of %u", c->name,
                            (unsigned long long)c->cols, n_kv, hd);
    }
    if (!q_rows) return VKD_OK;
    if (!kv_len) return vkd_fail(err, VKD_ERR_INVALID, "attention: empty kv cache");
    if (qn > UINT32_MAX || (uint64_t)kv_len * k->cols > UINT32_MAX ||
        (uint64_t)kv_len * v->cols > UINT32_MAX || q_rows > 65535)
        return vkd_fail(err, VKD_ERR_RANGE, "attention: %u query rows x %u keys too large",
                        q_rows, kv_len);
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    attn_geom g = attention_geometry(ctx, hd, n_q / n_kv);
    uint32_t keys = anchors ? q_pos0 + block : kv_len; /* most keys one row sees */
    /* split-K: as many splits as the profile asks for and part holds */
    uint32_t splits = 1;
    uint64_t rec_floats = (uint64_t)q_rows * n_q * (hd + 4); /* one split's partials */
    if (part && !lse && !anchors) {
        if (part->dtype != VKD_DTYPE_F32 || part->nchunks != 1 || vkd_ops_overlap(part, o) ||
            vkd_ops_overlap(part, q))
            return vkd_fail(err, VKD_ERR_INVALID, "attention: partials '%s' must be one f32 chunk "
                            "apart from q and o", part->name);
        splits = attention_splits(ctx, q_rows, keys, n_q, g.hpw);
        uint64_t fit = part->rows * part->cols / rec_floats;
        if (splits > fit) splits = fit > 1 ? (uint32_t)fit : 1;
    }
    /* lavapipe ends loops silently after bug_loop_limit iterations per invocation: each
     * step over a team's keys is one iteration plus one subgroupAdd per head (the loops
     * over NV and HPW have constant trip counts and are unrolled). Refuse rather than
     * return a truncated softmax. */
    uint64_t budget = vkd_profile_loop_budget(vkd_ctx_profile(ctx));
    uint32_t keys_wg = (keys + splits - 1) / splits; /* most keys one workgroup walks */
    uint64_t steps = (keys_wg + g.wg / g.lanes - 1) / (g.wg / g.lanes);
    if (steps * (1 + g.hpw) > budget)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "attention over %u keys exceeds this driver's loop limit (%u iterations "
                        "per invocation; at most about %llu keys here)", keys_wg,
                        vkd_ctx_profile(ctx)->bug_loop_limit,
                        (unsigned long long)(budget / (1 + g.hpw) * (g.wg / g.lanes)));
    vkd_pc_attention pc = {
        .q_rows = q_rows, .kv_len = kv_len, .n_q = n_q, .hd = hd, .q_pos0 = q_pos0,
        .causal = causal, .k_stride = (uint)k->cols, .v_stride = (uint)v->cols,
        .group = n_q / n_kv, .scale_log2e = scale * 1.4426950408889634f, .block = block,
    };
    /* caches with texel views (vkd_tensor_create_kv on a kv_texel profile; vkd_ops_need
     * above refused texel-block tensors) are read through them; the training variants (LSE,
     * blocks) read storage buffers */
    bool texel = !lse && !anchors && k->chunks[0].view && v->chunks[0].view;
    vkd_dispatch d = {
        .shader = texel ? (k->dtype == VKD_DTYPE_F16 ? VKD_SHADER_ATTENTION_TEXEL_F16 : VKD_SHADER_ATTENTION_TEXEL_F32)
                        : k->dtype == VKD_DTYPE_F16 ? VKD_SHADER_ATTENTION_F16 : VKD_SHADER_ATTENTION_F32,
        .spec = {g.wg, g.lanes, g.nv, g.hpw},
        .nspec = 4,
        .binds = {vkd_r(q), vkd_r(k), vkd_r(v), vkd_w(o)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {n_q / g.hpw, q_rows},
    };
    if (lse) {
        d.shader = k->dtype == VKD_DTYPE_F16 ? VKD_SHADER_ATTENTION_LSE_F16 : VKD_SHADER_ATTENTION_LSE_F32;
        d.binds[4] = vkd_w(lse);
        d.nbinds = 5;
    }
    if (anchors) {
        d.shader = VKD_SHADER_ATTENTION_BLOCKS_LSE_F32;
        d.binds[5] = vkd_r(anchors);
        d.nbinds = 6;
    }
    if (splits == 1) return vkd_rec_dispatch(rec, &d);
    bool f16 = k->dtype == VKD_DTYPE_F16;
    d.shader = texel ? (f16 ? VKD_SHADER_ATTENTION_TEXEL_SPLIT_F16 : VKD_SHADER_ATTENTION_TEXEL_SPLIT_F32)
                     : f16 ? VKD_SHADER_ATTENTION_SPLIT_F16 : VKD_SHADER_ATTENTION_SPLIT_F32;
    d.binds[3] = vkd_w(part);
    d.groups[2] = splits;
    if ((r = vkd_rec_dispatch(rec, &d))) return r;
    uint32_t wg = vkd_ctx_profile(ctx)->wg_elementwise, words = n_q * (hd / 4);
    vkd_pc_attn_merge mp = {.q_rows = q_rows, .n_q = n_q, .hd4 = hd / 4, .splits = splits};
    vkd_dispatch m = {
        .shader = VKD_SHADER_ATTENTION_MERGE,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(part), vkd_w(o)},
        .nbinds = 2,
        .push = &mp,
        .push_bytes = sizeof mp,
        .groups = {(words + wg - 1) / wg, q_rows},
    };
    return vkd_rec_dispatch(rec, &m);
}

vkd_result vkd_op_attention(vkd_rec *rec, vkd_tensor *o, const vkd_tensor *q, const vkd_tensor *k,
                            const vkd_tensor *v, uint32_t q_rows, uint32_t kv_len, uint32_t n_q,
                            uint32_t n_kv, uint32_t hd, uint32_t q_pos0, bool causal, float scale) {
    return attention_impl(rec, o, NULL, NULL, q, k, v, NULL, 0, q_rows, kv_len, n_q, n_kv, hd, q_pos0, causal, scale);
}

vkd_result vkd_op_attention_split(vkd_rec *rec, vkd_tensor *o, vkd_tensor *part, const vkd_tensor *q,
                                  const vkd_tensor *k, const vkd_tensor *v, uint32_t q_rows,
                                  uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                  uint32_t q_pos0, bool causal, float scale) {
    return attention_impl(rec, o, NULL, part, q, k, v, NULL, 0, q_rows, kv_len, n_q, n_kv, hd, q_pos0, causal, scale);
}

vkd_result vkd_op_attention_lse(vkd_rec *rec, vkd_tensor *o, vkd_tensor *lse, const vkd_tensor *q,
                                const vkd_tensor *k, const vkd_tensor *v, uint32_t q_rows,
                                uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                uint32_t q_pos0, bool causal, float scale) {
    if (!lse) return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "attention: missing lse tensor");
    return attention_impl(rec, o, lse, NULL, q, k, v, NULL, 0, q_rows, kv_len, n_q, n_kv, hd, q_pos0, causal, scale);
}

vkd_result vkd_op_attention_blocks_lse(vkd_rec *rec, vkd_tensor *o, vkd_tensor *lse, const vkd_tensor *q,
                                       const vkd_tensor *k, const vkd_tensor *v, const vkd_tensor *anchors,
                                       uint32_t q_rows, uint32_t block, uint32_t n_ctx, uint32_t n_q,
                                       uint32_t n_kv, uint32_t hd, float scale) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    vkd_result r;
    if (!lse || !k || !v || !anchors) return vkd_fail(err, VKD_ERR_INVALID, "attention_blocks: missing tensor");
    if (!block || q_rows % block)
        return vkd_fail(err, VKD_ERR_INVALID, "attention_blocks: %u query rows are not whole blocks of %u", q_rows,
                        block);
    if (k->dtype != VKD_DTYPE_F32 || v->dtype != VKD_DTYPE_F32)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "attention_blocks: K/V rows must be f32");
    if ((r = vkd_ops_need(rec, "attention_blocks", anchors, VKD_DTYPE_I32, q_rows / block))) return r;
    if ((uint64_t)n_ctx + q_rows > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "attention_blocks: %u context rows too many", n_ctx);
    return attention_impl(rec, o, lse, NULL, q, k, v, anchors, block, q_rows, n_ctx + q_rows, n_q, n_kv, hd, n_ctx,
                          false, scale);
}

/* h, g, u: n f32 */
vkd_result vkd_op_swiglu(vkd_rec *rec, vkd_tensor *h, const vkd_tensor *g, const vkd_tensor *u,
                         uint64_t n) {
    vkd_result r;
    if ((r = vkd_ops_need(rec, "swiglu", h, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "swiglu", g, VKD_DTYPE_F32, n)) ||
        (r = vkd_ops_need(rec, "swiglu", u, VKD_DTYPE_F32, n)))
        return r;
    if (!n) return VKD_OK;
    if (n > UINT32_MAX - 4) return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "swiglu: n too large");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    uint32_t nwg = vkd_ops_elementwise_groups(ctx, (n + 3) / 4);
    uint64_t per = ((n + nwg - 1) / nwg + 3) / 4 * 4;
    nwg = (uint32_t)((n + per - 1) / per);
    vkd_pc_swiglu pc = {.n = (uint)n, .per_wg = (uint)per};
    vkd_dispatch d = {
        .shader = VKD_SHADER_SWIGLU,
        .spec = {vkd_ctx_profile(ctx)->wg_elementwise},
        .nspec = 1,
        .binds = {vkd_r(g), vkd_r(u), vkd_w(h)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {nwg},
    };
    if (vkd_ops_overlap(h, g) || vkd_ops_overlap(h, u))
        d.binds[2].access = VKD_RW;
    return vkd_rec_dispatch(rec, &d);
}

/* dst[dst_row0 + r, dst_col0 + c] = src[src_row0 + r, src_col0 + c], r < rows, c < cols;
 * src f32, dst f32 or f16. */
vkd_result vkd_op_copy2d(vkd_rec *rec, vkd_tensor *dst, uint32_t dst_row0, uint32_t dst_col0,
                         const vkd_tensor *src, uint32_t src_row0, uint32_t src_col0,
                         uint32_t rows, uint32_t cols) {
    vkd_result r;
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!dst || !src) return vkd_fail(err, VKD_ERR_INVALID, "copy2d: missing tensor");
    if (dst->dtype != VKD_DTYPE_F32 && dst->dtype != VKD_DTYPE_F16)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "copy2d: destination '%s' is %s, expected F32 "
                        "or F16", dst->name, vkd_dtype_name(dst->dtype));
    if ((r = vkd_ops_need(rec, "copy2d", src, VKD_DTYPE_F32, 0)) ||
        (r = vkd_ops_need(rec, "copy2d", dst, dst->dtype, 0)))
        return r;
    if ((uint64_t)src_row0 + rows > src->rows || (uint64_t)src_col0 + cols > src->cols ||
        (uint64_t)dst_row0 + rows > dst->rows || (uint64_t)dst_col0 + cols > dst->cols)
        return vkd_fail(err, VKD_ERR_RANGE, "copy2d: block %u x %u from (%u, %u) of '%s' "
                        "(%llu x %llu) to (%u, %u) of '%s' (%llu x %llu) is out of range", rows,
                        cols, src_row0, src_col0, src->name, (unsigned long long)src->rows,
                        (unsigned long long)src->cols, dst_row0, dst_col0, dst->name,
                        (unsigned long long)dst->rows, (unsigned long long)dst->cols);
    if (!rows || !cols) return VKD_OK;
    if (src->rows * src->cols > UINT32_MAX || dst->rows * dst->cols > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "copy2d: tensors over 2^32 elements");
    if (vkd_ops_overlap(src, dst))
        return vkd_fail(err, VKD_ERR_INVALID, "copy2d: source and destination are the same tensor");
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    bool f16 = dst->dtype == VKD_DTYPE_F16;
    uint32_t wg = p->wg_stream;
    uint64_t items = f16 ? (uint64_t)cols / 2 + 1 : cols; /* items per row (f16: words) */
    uint64_t rows_per, cols_per;
    uint32_t gy, gx;
    if (p->stream_groups) {
        uint32_t t = p->stream_groups;
        gy = split_items(p, rows, &rows_per);
        gx = gy < t ? (t + gy - 1) / gy : 1;
        if (gx > items) gx = (uint32_t)items;
        cols_per = (items + gx - 1) / gx;
    } else {
        gy = rows > 65535 ? 65535 : rows;
        rows_per = (rows + gy - 1) / gy;
        cols_per = (uint64_t)wg * 4;
    }
    gy = (uint32_t)((rows + rows_per - 1) / rows_per);
    gx = (uint32_t)((items + cols_per - 1) / cols_per);
    vkd_pc_copy2d pc = {
        .rows = rows, .cols = cols,
        .src_off = (uint)((uint64_t)src_row0 * src->cols + src_col0), .src_stride = (uint)src->cols,
        .dst_off = (uint)((uint64_t)dst_row0 * dst->cols + dst_col0), .dst_stride = (uint)dst->cols,
        .rows_per_wg = (uint)rows_per, .cols_per_wg = (uint)cols_per,
    };
    vkd_dispatch d = {
        .shader = f16 ? VKD_SHADER_COPY2D_F16 : VKD_SHADER_COPY2D_F32,
        .spec = {wg},
        .nspec = 1,
        .binds = {vkd_r(src), vkd_w(dst)},
        .nbinds = 2,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {gx, gy},
    };
    if (f16) d.binds[1].access = VKD_RW;
    return vkd_rec_dispatch(rec, &d);
}
