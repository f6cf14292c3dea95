/* ops_logits.c: row-wise ops over vocabulary-sized logits (softmax, argmax, top-k, token
 * statistics, KL/TVD, sampling) and the host Philox4x32-10.
 *
 * Geometry: one workgroup per row of profile->wg_row lanes (the subgroup size on lavapipe,
 * where cost grows with the workgroup count; 256 on GPUs), lanes on consecutive elements.
 * Reductions are subgroup ops plus one shared slot per subgroup summed in a fixed order
 * (shaders/rowreduce.glsl), so a rerun on the same device is bit-identical.
 *
 * Logits tensors may be split across bindings (many rows of a 151936-wide vocabulary exceed
 * lavapipe's 128 MiB binding limit): each op issues one dispatch per run of rows that stays
 * within one chunk of every row-addressed tensor. Small per-row outputs (indices, stats)
 * must be one chunk.
 *
 * A row holding a NaN or +Inf is signalled in the output (vkd_ops.h; bad_logit in
 * shaders/rowreduce.glsl, a bit test no fast-math folding can drop). */
#include "ops_internal.h"

#include <math.h>
#include <string.h>

#define MAX_ROWS_PER_DISPATCH 65535u

/* Checks the shared preconditions of a row op and returns the workgroup size. */
static uint32_t row_wg(vkd_rec *rec, const char *op) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_device_info *d = vkd_ctx_info(ctx);
    uint32_t wg = vkd_ctx_profile(ctx)->wg_row;
    uint32_t min_sg = d->min_subgroup_size ? d->min_subgroup_size : d->subgroup_size;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    if (!d->subgroup_in_compute || (d->subgroup_ops & need) != need) {
        vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                 "%s: the device lacks subgroup arithmetic in compute shaders", op);
        return 0;
    }
    /* power of two, <= 256 (shared arrays), <= 64 subgroups (reduction slots) */
    while (wg > 256 || (min_sg && wg > 64 * min_sg) || (wg & (wg - 1))) wg >>= 1;
    return wg ? wg : 1;
}

/* A logits input: rows x_row0.. of f32 tensor t, n <= t->cols elements used per row. */
static vkd_result need_rows(vkd_rec *rec, const char *op, const vkd_tensor *t, uint64_t row0,
                            uint32_t rows, uint32_t n) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!t) return vkd_fail(err, VKD_ERR_INVALID, "%s: missing tensor", op);
    if (t->dtype != VKD_DTYPE_F32)
        return vkd_fail(err, VKD_ERR_INVALID, "%s: tensor '%s' is %s, expected f32", op, t->name,
                        vkd_dtype_name(t->dtype));
    if (t->layout != VKD_LAYOUT_ROWS)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s' is in the texel block layout",
                        op, t->name);
    if (n == 0 || n > t->cols)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: row length %u outside 1..%llu of '%s'", op, n,
                        (unsigned long long)t->cols, t->name);
    if (row0 + rows > t->rows)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: rows %llu..%llu outside the %llu rows of '%s'", op,
                        (unsigned long long)row0, (unsigned long long)(row0 + rows),
                        (unsigned long long)t->rows, t->name);
    if (t->cols > UINT32_MAX / 2)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: rows of '%s' too long", op, t->name);
    return VKD_OK;
}

/* Shortens *len so that rows row..row+*len of t lie in one chunk; returns that chunk and
 * the element offset of `row` inside it. */
static const vkd_chunk *run_of(const vkd_tensor *t, uint64_t row, uint32_t *len, uint32_t *off) {
    const vkd_chunk *c = vkd_tensor_chunk_of_row(t, row);
    uint64_t local = row - c->row0;
    if (c->rows - local < *len) *len = (uint32_t)(c->rows - local);
    *off = (uint32_t)(local * t->cols);
    return c;
}

/* One dispatch's run of rows [r, r + len) of an op, within one chunk of each of its (at most
 * two) row-addressed logits tensors: c[i] that chunk, off[i] the element offset in it. */
typedef struct row_run {
    uint32_t r, len;
    const vkd_chunk *c[2];
    uint32_t off[2];
} row_run;

/* Advances *u (zero-initialised before the first call) to the next run over `rows` rows of
 * t0 (from row a0) and t1 (from row a1; NULL if none); false when all rows are done. */
static bool next_run(row_run *u, uint32_t rows, const vkd_tensor *t0, uint64_t a0,
                     const vkd_tensor *t1, uint64_t a1) {
    u->r += u->len;
    if (u->r >= rows) return false;
    u->len = rows - u->r < MAX_ROWS_PER_DISPATCH ? rows - u->r : MAX_ROWS_PER_DISPATCH;
    u->c[0] = run_of(t0, a0 + u->r, &u->len, &u->off[0]);
    if (t1) u->c[1] = run_of(t1, a1 + u->r, &u->len, &u->off[1]);
    return true;
}

/* Records one dispatch of a row-reduction shader: one workgroup of wg lanes per row of the
 * run (len rows), push constants pc. */
static vkd_result row_dispatch(vkd_rec *rec, vkd_shader_id shader, uint32_t wg, const vkd_bind *binds,
                               uint32_t nbinds, const void *pc, uint32_t pc_bytes, uint32_t len) {
    vkd_dispatch d = {.shader = shader, .spec = {wg, 0, 0, vkd_ctx_one_subgroup(vkd_rec_ctx(rec), wg)},
                      .nspec = 4, .nbinds = nbinds, .push = pc,
                      .push_bytes = pc_bytes, .groups = {len}};
    memcpy(d.binds, binds, nbinds * sizeof *binds);
    return vkd_rec_dispatch(rec, &d);
}

/* y: f32 rows x n (row stride y->cols), x: rows from x_row0 (row stride x->cols). */
vkd_result vkd_op_softmax(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, uint32_t x_row0,
                          uint32_t rows, uint32_t n, float scale, bool log) {
    vkd_result res;
    if ((res = need_rows(rec, "softmax", x, x_row0, rows, n)) ||
        (res = need_rows(rec, "softmax", y, 0, rows, n)))
        return res;
    uint32_t wg = row_wg(rec, "softmax");
    if (!wg) return vkd_rec_error(rec)->code;
    for (row_run u = {0}; next_run(&u, rows, x, x_row0, y, 0);) {
        const vkd_chunk *xc = u.c[0], *yc = u.c[1];
        uint32_t len = u.len;
        vkd_pc_logits pc = {.n = n, .x_off = u.off[0], .x_stride = (uint)x->cols, .y_off = u.off[1],
                            .y_stride = (uint)y->cols, .mode = log ? 1u : 0u, .scale = scale};
        vkd_bind binds[] = {{xc, VKD_READ}, {yc, vkd_ops_chunks_overlap(xc, yc) ? VKD_RW : VKD_WRITE}};
        if ((res = row_dispatch(rec, VKD_SHADER_SOFTMAX, wg, binds, 2, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

/* idx: i32, rows entries. */
vkd_result vkd_op_argmax(vkd_rec *rec, vkd_tensor *idx, const vkd_tensor *x, uint32_t x_row0,
                         uint32_t rows, uint32_t n) {
    vkd_result res;
    if ((res = need_rows(rec, "argmax", x, x_row0, rows, n)) ||
        (res = vkd_ops_need(rec, "argmax", idx, VKD_DTYPE_I32, rows)))
        return res;
    uint32_t wg = row_wg(rec, "argmax");
    if (!wg) return vkd_rec_error(rec)->code;
    for (row_run u = {0}; next_run(&u, rows, x, x_row0, NULL, 0);) {
        const vkd_chunk *xc = u.c[0];
        uint32_t xo = u.off[0], r = u.r, len = u.len;
        vkd_pc_logits pc = {.n = n, .x_off = xo, .x_stride = (uint)x->cols, .y_off = r};
        vkd_bind binds[] = {{xc, VKD_READ}, vkd_w(idx)};
        if ((res = row_dispatch(rec, VKD_SHADER_ARGMAX, wg, binds, 2, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

/* idx: i32 rows x k, val: f32 rows x k (flat, row r at r*k). */
vkd_result vkd_op_topk(vkd_rec *rec, vkd_tensor *idx, vkd_tensor *val, const vkd_tensor *x,
                       uint32_t x_row0, uint32_t rows, uint32_t n, uint32_t k) {
    vkd_result res;
    if ((res = need_rows(rec, "topk", x, x_row0, rows, n))) return res;
    if (k > 256 || k > n)
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_RANGE, "topk: k = %u, must be <= 256 and <= n = %u",
                        k, n);
    if ((res = vkd_ops_need(rec, "topk", idx, VKD_DTYPE_I32, (uint64_t)rows * k)) ||
        (res = vkd_ops_need(rec, "topk", val, VKD_DTYPE_F32, (uint64_t)rows * k)))
        return res;
    if (k == 0) return VKD_OK;
    uint32_t wg = row_wg(rec, "topk");
    if (!wg) return vkd_rec_error(rec)->code;
    for (row_run u = {0}; next_run(&u, rows, x, x_row0, NULL, 0);) {
        const vkd_chunk *xc = u.c[0];
        uint32_t xo = u.off[0], r = u.r, len = u.len;
        vkd_pc_logits pc = {.n = n, .x_off = xo, .x_stride = (uint)x->cols, .y_off = r * k, .k = k};
        vkd_bind binds[] = {{xc, VKD_READ}, vkd_w(idx), vkd_w(val)};
        if ((res = row_dispatch(rec, VKD_SHADER_TOPK, wg, binds, 3, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

/* out: f32 rows x 3 (flat); ids: i32, rows entries. An id outside [0, n) gives
 * out = (-inf, logsumexp, 1 + number of entries > -inf). */
vkd_result vkd_op_token_stats(vkd_rec *rec, vkd_tensor *out, const vkd_tensor *x, uint32_t x_row0,
                              const vkd_tensor *ids, uint32_t rows, uint32_t n) {
    vkd_result res;
    if ((res = need_rows(rec, "token_stats", x, x_row0, rows, n)) ||
        (res = vkd_ops_need(rec, "token_stats", ids, VKD_DTYPE_I32, rows)) ||
        (res = vkd_ops_need(rec, "token_stats", out, VKD_DTYPE_F32, (uint64_t)rows * 3)))
        return res;
    uint32_t wg = row_wg(rec, "token_stats");
    if (!wg) return vkd_rec_error(rec)->code;
    for (row_run u = {0}; next_run(&u, rows, x, x_row0, NULL, 0);) {
        const vkd_chunk *xc = u.c[0];
        uint32_t xo = u.off[0], r = u.r, len = u.len;
        vkd_pc_logits pc = {.n = n, .x_off = xo, .x_stride = (uint)x->cols, .y_off = r, .aux_off = r};
        vkd_bind binds[] = {{xc, VKD_READ}, vkd_r(ids), vkd_w(out)};
        if ((res = row_dispatch(rec, VKD_SHADER_TOKEN_STATS, wg, binds, 3, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

/* out: f32 rows x 2 (flat); xp, xq: rows from xp_row0 / xq_row0. */
vkd_result vkd_op_kl_tvd(vkd_rec *rec, vkd_tensor *out, const vkd_tensor *xp, uint32_t xp_row0,
                         float p_scale, const vkd_tensor *xq, uint32_t xq_row0, float q_scale,
                         uint32_t rows, uint32_t n) {
    vkd_result res;
    if ((res = need_rows(rec, "kl_tvd", xp, xp_row0, rows, n)) ||
        (res = need_rows(rec, "kl_tvd", xq, xq_row0, rows, n)) ||
        (res = vkd_ops_need(rec, "kl_tvd", out, VKD_DTYPE_F32, (uint64_t)rows * 2)))
        return res;
    uint32_t wg = row_wg(rec, "kl_tvd");
    if (!wg) return vkd_rec_error(rec)->code;
    for (row_run u = {0}; next_run(&u, rows, xp, xp_row0, xq, xq_row0);) {
        const vkd_chunk *pcn = u.c[0], *qcn = u.c[1];
        uint32_t len = u.len;
        vkd_pc_kl pc = {.n = n, .p_off = u.off[0], .p_stride = (uint)xp->cols, .q_off = u.off[1],
                        .q_stride = (uint)xq->cols, .out_off = u.r, .p_scale = p_scale,
                        .q_scale = q_scale};
        vkd_bind binds[] = {{pcn, VKD_READ}, {qcn, VKD_READ}, vkd_w(out)};
        if ((res = row_dispatch(rec, VKD_SHADER_KL_TVD, wg, binds, 3, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

/* tok: i32, rows entries. The temperature is applied as x * (1/T) in f32 (the host
 * reference does the same), so scaling is monotone and ties are reproducible. */
vkd_result vkd_op_sample(vkd_rec *rec, vkd_tensor *tok, const vkd_tensor *x, uint32_t x_row0,
                         uint32_t rows, uint32_t n, const vkd_sample_params *p) {
    vkd_result res;
    if ((res = need_rows(rec, "sample", x, x_row0, rows, n)) ||
        (res = vkd_ops_need(rec, "sample", tok, VKD_DTYPE_I32, rows)))
        return res;
    if (!p || !(p->temperature >= 0.0f) || isinf(p->temperature) || isnan(p->top_p))
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID,
                        "sample: temperature must be finite and >= 0, top_p a number");
    if (p->temperature == 0.0f) return vkd_op_argmax(rec, tok, x, x_row0, rows, n);
    uint32_t wg = row_wg(rec, "sample");
    if (!wg) return vkd_rec_error(rec)->code;
    float top_p = p->top_p > 0.0f && p->top_p < 1.0f ? p->top_p : 1.0f;
    for (row_run u = {0}; next_run(&u, rows, x, x_row0, NULL, 0);) {
        const vkd_chunk *xc = u.c[0];
        uint32_t xo = u.off[0], r = u.r, len = u.len;
        uint64_t ctr = p->counter0 + r;
        vkd_pc_sample pc = {.n = n, .x_off = xo, .x_stride = (uint)x->cols, .out_off = r,
                            .inv_t = 1.0f / p->temperature, .top_k = p->top_k, .top_p = top_p,
                            .seed_lo = (uint)p->seed, .seed_hi = (uint)(p->seed >> 32),
                            .ctr_lo = (uint)ctr, .ctr_hi = (uint)(ctr >> 32)};
        vkd_bind binds[] = {{xc, VKD_READ}, vkd_w(tok)};
        if ((res = row_dispatch(rec, VKD_SHADER_SAMPLE, wg, binds, 2, &pc, sizeof pc, len))) return res;
    }
    return VKD_OK;
}

static inline void mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void vkd_philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]) {
    uint32_t c[4] = {(uint32_t)counter_lo, (uint32_t)(counter_lo >> 32), (uint32_t)counter_hi,
                     (uint32_t)(counter_hi >> 32)};
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(0xD2511F53u, c[0], &hi0, &lo0);
        mulhilo32(0xCD9E8D57u, c[2], &hi1, &lo1);
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
    memcpy(out, c, sizeof c);
}

/* Greedy LM head on texel-block weights: argmax_blocks (the matmul of matmul_blocks with a
 * per-workgroup argmax in place of the store) then argmax_merge over the workgroups'
 * candidates. Geometry as matmul_blocks (ops_matmul.c): the profile's wg_stream lanes, 32
 * rows per lane, up to ARGMAX_BLOCKS_MAX_M rows of x per workgroup, one dispatch per chunk
 * (rows of x along the workgroups' y). x with a texel view (the profile's x_texel) and K % 4
 * == 0 takes argmax_blocks_bcast, which reads x through it and carries up to
 * ARGMAX_BLOCKS_TEXEL_M rows (the draft's 15 proposals in one pass over the head). */
#define ARGMAX_BLOCKS_MAX_M 4u
#define ARGMAX_BLOCKS_TEXEL_M 16u
#define ARGMAX_BLOCKS_SHARED 1024u /* the shader's per-row, per-lane candidates: MB * lanes */

static void argmax_blocks_geometry(const vkd_ctx *ctx, uint32_t *lanes, uint32_t *rpl) {
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint32_t l = p->wg_stream ? p->wg_stream : 8;
    while (l > 256 || (VKD_BLOCK_ROWS % l)) l /= 2;
    *lanes = l;
    *rpl = VKD_BLOCK_ROWS / l > 32 ? 32 : VKD_BLOCK_ROWS / l;
}

uint64_t vkd_op_matmul_argmax_parts(const vkd_ctx *ctx, const vkd_tensor *w) {
    uint32_t lanes, rpl;
    argmax_blocks_geometry(ctx, &lanes, &rpl);
    return (w->rows + VKD_BLOCK_ROWS - 1) / VKD_BLOCK_ROWS * (VKD_BLOCK_ROWS / (lanes * rpl));
}


vkd_result vkd_op_matmul_argmax(vkd_rec *rec, vkd_tensor *idx, vkd_tensor *part, const vkd_tensor *x,
                                uint32_t x_row0, const vkd_tensor *w, uint32_t m) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    if (!w || w->layout != VKD_LAYOUT_BLOCKS ||
        (w->dtype != VKD_DTYPE_F32 && w->dtype != VKD_DTYPE_F16 && w->dtype != VKD_DTYPE_BF16))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "matmul_argmax: the weight '%s' must be F32/F16/BF16 "
                        "in the texel block layout", w ? w->name : "(missing)");
    if (w->cols > UINT32_MAX || w->rows > INT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "matmul_argmax: weight '%s' of %llu x %llu too large", w->name,
                        (unsigned long long)w->rows, (unsigned long long)w->cols);
    uint32_t K = (uint32_t)w->cols, lanes, rpl;
    uint64_t parts = vkd_op_matmul_argmax_parts(ctx, w);
    vkd_result res;
    if ((res = vkd_ops_need(rec, "matmul_argmax", x, VKD_DTYPE_F32, ((uint64_t)x_row0 + m) * K)) ||
        (res = vkd_ops_need(rec, "matmul_argmax", idx, VKD_DTYPE_I32, m)) ||
        (res = vkd_ops_need(rec, "matmul_argmax", part, VKD_DTYPE_I32, (uint64_t)m * parts * 2)))
        return res;
    if (((uint64_t)x_row0 + m) * K > UINT32_MAX || (uint64_t)m * parts * 2 > UINT32_MAX ||
        m > MAX_ROWS_PER_DISPATCH)
        return vkd_fail(err, VKD_ERR_RANGE, "matmul_argmax: %u rows too many for 32-bit indexing", m);
    if (!m) return VKD_OK;
    argmax_blocks_geometry(ctx, &lanes, &rpl);
    bool xtex = x->nchunks == 1 && x->chunks[0].view && K % 4 == 0;
    /* passes of mb rows of x, one per workgroup row (y) */
    uint32_t mb = 1, mb_max = xtex ? ARGMAX_BLOCKS_TEXEL_M : ARGMAX_BLOCKS_MAX_M;
    while (mb < m && mb < mb_max && mb * 2 * lanes <= ARGMAX_BLOCKS_SHARED) mb *= 2;
    /* one loop pass per texel step of a row, the tail step, loop exits, the merge of lanes */
    if (w->row_texels + 8 + lanes + mb > vkd_profile_loop_budget(vkd_ctx_profile(ctx)))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "matmul_argmax: K = %u exceeds the driver's loop limit for the texel kernel", K);
    uint32_t subs = VKD_BLOCK_ROWS / (lanes * rpl);
    vkd_dispatch disp = {
        .shader = vkd_select_argmax_blocks(&(vkd_variant){.dtype = w->dtype, .layout = VKD_LAYOUT_BLOCKS,
                                                          .shape = xtex ? VKD_SHAPE_BCAST : VKD_SHAPE_GEMV}),
        .spec = {lanes, rpl, 0, vkd_ctx_one_subgroup(ctx, lanes)},
        .nspec = 4,
        .binds = {{NULL, VKD_READ}, vkd_r(x), vkd_w(part)},
        .nbinds = 3,
        .push_bytes = sizeof(vkd_pc_argmax_blocks),
    };
    disp.spec[2] = mb;
    disp.groups[1] = (m + mb - 1) / mb;
    vkd_pc_argmax_blocks pb = {.m = m, .K = K, .x_row0 = x_row0, .parts = (uint32_t)parts};
    disp.push = &pb;
    for (uint32_t c = 0; c < w->nchunks; c++) {
        const vkd_chunk *ch = &w->chunks[c];
        uint64_t groups = (ch->rows + VKD_BLOCK_ROWS - 1) / VKD_BLOCK_ROWS * subs;
        if (groups > vkd_ctx_info(ctx)->max_workgroup_count[0])
            return vkd_fail(err, VKD_ERR_UNSUPPORTED, "matmul_argmax: chunk of %llu rows too large "
                            "for one dispatch", (unsigned long long)ch->rows);
        pb.col0 = (uint32_t)ch->row0;
        pb.rows = (uint32_t)ch->rows;
        pb.part0 = (uint32_t)(ch->row0 / VKD_BLOCK_ROWS * subs);
        disp.groups[0] = (uint32_t)groups;
        disp.binds[0].chunk = ch;
        if ((res = vkd_rec_dispatch(rec, &disp))) return res;
    }
    uint32_t wg = row_wg(rec, "matmul_argmax");
    if (!wg) return err->code;
    vkd_pc_logits pc = {.n = (uint32_t)parts, .x_stride = (uint32_t)parts};
    vkd_bind binds[] = {vkd_r(part), vkd_w(idx)};
    return row_dispatch(rec, VKD_SHADER_ARGMAX_MERGE, wg, binds, 2, &pc, sizeof pc, m);
}
