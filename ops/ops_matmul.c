/* ops_matmul.c: matrix multiplication against weight matrices (GEMV and tiled GEMM on
 * row-major weights, the texel kernel on VKD_LAYOUT_BLOCKS weights) and the embedding lookup
 * (either layout). Weights may be split across several bindings (vkd_tensor chunks along
 * rows); every op issues one dispatch per chunk. Dispatch geometry comes from the device
 * profile (runtime/quirks.c). */
#include "ops_internal.h"

#define GEMV_MAX_M 16u    /* rows of x one GEMV pass handles (shader FOR_ROWS) */
#define BLOCKS_MAX_M 4u   /* rows of x one texel-block pass handles (see matmul_blocks) */
#define BLOCKS_BCAST_MAX_M 16u /* the same with x shared by broadcasts (matmul_blocks_bcast) */
#define GEMV_UNROLL 2u    /* steps per loop iteration in the VEC shader (UNROLL) */
#define GEMV_MAX_WG 256u  /* shared reduction array (MAX_WG) */
#define GEMV_MAX_SUBGROUPS 32u

static uint32_t log2_ceil(uint32_t v) {
    uint32_t l = 0;
    while ((1u << l) < v) l++;
    return l;
}

static bool weight_dtype(vkd_dtype dt) {
    return dt == VKD_DTYPE_F32 || dt == VKD_DTYPE_F16 || dt == VKD_DTYPE_BF16;
}

/* The checks matmul and embed share on their weight matrix w (`what` names it in messages):
 * present, F32/F16/BF16, a known layout, 1..max_rows rows of 1..UINT32_MAX columns. */
static vkd_result weight_check(vkd_rec *rec, const char *op, const char *what, const vkd_tensor *w,
                               uint64_t max_rows) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!w) return vkd_fail(err, VKD_ERR_INVALID, "%s: missing %s", op, what);
    if (!weight_dtype(w->dtype))
        return vkd_fail(err, VKD_ERR_INVALID, "%s: %s '%s' is %s, expected F32/F16/BF16", op, what, w->name,
                        vkd_dtype_name(w->dtype));
    if (w->layout != VKD_LAYOUT_ROWS && w->layout != VKD_LAYOUT_BLOCKS)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: %s '%s' has an unknown layout", op, what, w->name);
    if (!w->rows || !w->cols || w->rows > max_rows || w->cols > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_INVALID, "%s: %s '%s' has shape %llu x %llu", op, what, w->name,
                        (unsigned long long)w->rows, (unsigned long long)w->cols);
    return VKD_OK;
}

/* Common argument checks of vkd_op_matmul. */
static vkd_result matmul_check(vkd_rec *rec, const vkd_tensor *y, uint32_t y_row0,
                               const vkd_tensor *x, uint32_t x_row0, const vkd_tensor *w,
                               uint32_t m) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r = weight_check(rec, "matmul", "weight", w, UINT32_MAX);
    if (r) return r;
    uint64_t N = w->rows, K = w->cols;
    if ((r = vkd_ops_need(rec, "matmul", x, VKD_DTYPE_F32, ((uint64_t)x_row0 + m) * K)) ||
        (r = vkd_ops_need(rec, "matmul", y, VKD_DTYPE_F32, ((uint64_t)y_row0 + m) * N)))
        return r;
    /* 32-bit indexing in the shaders: elements of x, y and of every chunk */
    if (((uint64_t)x_row0 + m) * K > UINT32_MAX || ((uint64_t)y_row0 + m) * N > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "matmul: x or y too large for 32-bit indexing");
    for (uint32_t c = 0; c < w->nchunks; c++)
        if (w->chunks[c].rows * K > UINT32_MAX || w->chunks[c].bytes / 16 > INT32_MAX)
            return vkd_fail(err, VKD_ERR_RANGE, "matmul: chunk %u of '%s' too large for 32-bit "
                            "indexing", c, w->name);
    return VKD_OK;
}

/* Records the matmul dispatch `disp` (shader, spec constants, push constants set) once per
 * chunk of w, binding the chunk and setting its col0 and rows. Workgroups per chunk:
 * per_group > 0: per_group rows of W each (a divisor of the layout's unit: the texel blocks'
 * VKD_BLOCK_ROWS, the tile), so a chunk's padding rows past the last group are not visited;
 * per_group == 0: the streaming split of the profile, rows costing `iters` loop iterations
 * each. w2 (matmul_glu's up, chunked as w), when given, binds its chunk c at binding 1. */
static vkd_result matmul_chunks(vkd_rec *rec, vkd_dispatch *disp, vkd_pc_matmul *pc,
                                const vkd_tensor *w, const vkd_tensor *w2, uint32_t per_group,
                                uint64_t iters) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    for (uint32_t c = 0; c < w->nchunks; c++) {
        const vkd_chunk *ch = &w->chunks[c];
        pc->col0 = (uint32_t)ch->row0;
        pc->rows = (uint32_t)ch->rows;
        if (per_group) {
            uint64_t groups = vkd_div_up(ch->rows, per_group);
            if (groups > vkd_ctx_info(ctx)->max_workgroup_count[0])
                return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                                "matmul: chunk of %llu rows too large for one dispatch",
                                (unsigned long long)ch->rows);
            pc->rows_per_group = per_group;
            disp->groups[0] = (uint32_t)groups;
        } else {
            pc->rows_per_group = vkd_profile_stream_split(ctx, ch->rows, iters, 4, &disp->groups[0]);
        }
        disp->binds[0].chunk = ch;
        if (w2) disp->binds[1].chunk = &w2->chunks[c];
        vkd_result r = vkd_rec_dispatch(rec, disp);
        if (r) return r;
    }
    return VKD_OK;
}

/* The dispatch every matmul kernel records: W chunk (bound per chunk), x, y. */
static vkd_dispatch matmul_dispatch(vkd_shader_id sh, vkd_tensor *y, const vkd_tensor *x,
                                    bool accumulate, const vkd_pc_matmul *pc) {
    return (vkd_dispatch){
        .shader = sh,
        .binds = {{NULL, VKD_READ}, vkd_r(x), {&y->chunks[0], accumulate ? VKD_RW : VKD_WRITE}},
        .nbinds = 3,
        .push = pc,
        .push_bytes = sizeof *pc,
        .groups = {0, 1, 1},
    };
}

/* GEMV: m <= GEMV_MAX_M rows of x, each weight read once. key: dtype, layout, shape set. */
static vkd_result matmul_gemv(vkd_rec *rec, vkd_variant key, vkd_tensor *y, const vkd_tensor *x,
                              const vkd_tensor *w, vkd_pc_matmul pc, bool accumulate) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    const vkd_device_info *d = vkd_ctx_info(ctx);
    uint32_t K = pc.K, m = pc.m;
    uint32_t wg = p->wg_stream ? p->wg_stream : 64;
    if (wg > GEMV_MAX_WG) wg = GEMV_MAX_WG;
    /* the shared-memory reduction halves a power-of-two workgroup */
    uint32_t wg2 = 1;
    while (wg2 * 2 <= wg) wg2 *= 2;
    key.sg = p->reduce_subgroup && d->subgroup_size && wg / d->subgroup_size <= GEMV_MAX_SUBGROUPS;
    if (!key.sg) wg = wg2;
    /* uvec4 reads need every row 16-byte aligned: K % 8 (16-bit) or K % 4 (f32) suffice;
     * the shader also reads x as vec4 pairs, so K % 8 for all dtypes */
    key.vec = K % 8 == 0;
    uint32_t mb = 1;
    while (mb < m) mb *= 2;
    /* loop iterations per row of W as the driver counts them (every loop entered also
     * costs its exit test): the K loop, its tail, the row loop, with a margin */
    uint64_t iters = key.vec ? vkd_div_up(K / 8, (uint64_t)wg * GEMV_UNROLL) + GEMV_UNROLL + 6
                             : vkd_div_up(K, wg) + 4;
    if (!key.sg) iters += log2_ceil(wg) + 2;
    else {
        iters += mb; /* lavapipe counts each subgroupAdd as a loop iteration */
        if (d->subgroup_size && wg > d->subgroup_size) iters += wg / d->subgroup_size + 2;
    }
    vkd_dispatch disp = matmul_dispatch(vkd_select_matmul(&key), y, x, accumulate, &pc);
    disp.spec[0] = wg;
    disp.spec[1] = mb;
    disp.nspec = 2;
    return matmul_chunks(rec, &disp, &pc, w, NULL, 0, iters);
}

/* Matmul on VKD_LAYOUT_BLOCKS weights: m <= BLOCKS_MAX_M rows of x per pass (a pass is a row of
 * workgroups along y, all of them in one dispatch), each weight
 * texel fetched once per pass. Lanes: the profile's wg_stream; 32 rows per lane. Measured on
 * lavapipe (3072 x 1024 bf16): m = 2 and 4 in one pass cost 1.2x and 1.4x m = 1, m = 8 in
 * one pass 18x (256 accumulators per lane spill), and fewer rows per lane (more workgroups
 * per block) 3-10x at any m; so passes of 4 rows, 32 rows per lane. Where 8-lane workgroups
 * are one subgroup with broadcast (the profile's matmul_bcast: CPU drivers), each lane loads
 * one element per row of x and step and broadcasts it (matmul_blocks_bcast.comp): then the x
 * loads no longer grow with the rows, and passes of 16 rows are the fastest
 * (docs/benchmarks.md, 2026-12-04: m = 16 1.5x, m = 512 1.3-1.6x the passes of 4). Since
 * 2026-12-05 that kernel reads x through its texel view instead (the profile's x_texel: the
 * lanes fetch the same texel, vectorised; no broadcasts): m = 16 1.45x faster again, m = 1
 * 1.1x; x without a view, or K % 4 != 0, takes the passes of 4. A W
 * whose rows leave much of the last workgroup padding (a small model's 64-, 128- and 384-row
 * projections) takes fewer rows per lane instead (docs/benchmarks.md, 2026-12-04: the demo
 * pair's draft call 1.3x; a 16-row pass over 384 x 128 1.2x, and its pipeline compiles in
 * 5 s instead of 13). */
static bool blocks_bcast(const vkd_profile *p, const vkd_tensor *x, uint64_t K) {
    uint32_t lanes = p->wg_stream ? p->wg_stream : 8;
    while (lanes > 256 || (VKD_BLOCK_ROWS % lanes)) lanes /= 2;
    return p->matmul_bcast && lanes == 8 && x && x->nchunks == 1 && x->chunks[0].view && K % 4 == 0;
}

/* Geometry of the texel-block kernels (matmul_blocks, matmul_group, matmul_glu) for m rows of x
 * against W of `rows` rows and row_texels texels a row: lanes, rows per lane (spec[1]), rows
 * of x per workgroup (spec[2]), and workgroup rows along y (groups[1]); bcast: the kernel reads
 * x through its texel view (blocks_bcast), passes of 16 rows. `sets`: accumulator
 * sets per lane (GLU: 2), whose total is kept to what one set of a 16-row pass holds.
 * norm_k: K of a fused RMSNorm (0: none), whose per-row pass over K / 4 and subgroupAdd
 * count against the loop budget too. */
static vkd_result blocks_geometry(vkd_rec *rec, const char *op, uint64_t rows, uint64_t row_texels,
                                  uint32_t m, uint32_t sets, uint64_t norm_k, bool bcast,
                                  vkd_dispatch *disp) {
    const vkd_profile *p = vkd_ctx_profile(vkd_rec_ctx(rec));
    uint32_t lanes = p->wg_stream ? p->wg_stream : 8;
    while (lanes > 256 || (VKD_BLOCK_ROWS % lanes)) lanes /= 2;
    /* rows of x per workgroup: up to the pass size, the workgroup rows (y) covering m */
    uint32_t pass = bcast ? BLOCKS_BCAST_MAX_M : BLOCKS_MAX_M;
    uint32_t mb = 1;
    while (mb < m && mb < pass) mb *= 2;
    uint32_t rpl = VKD_BLOCK_ROWS / lanes;
    if (rpl > 32) rpl = 32;
    while (rpl > 1 && (uint64_t)sets * mb * rpl > (uint64_t)pass * 32) rpl /= 2;
    /* halve the rows per lane while that spares at least an eighth of W's rows in padding
     * rows computed (a small model's 64-, 128- and 384-row projections) */
    while (rpl > 1) {
        uint64_t g = (uint64_t)lanes * rpl, pad = vkd_div_up(rows, g) * g - rows;
        uint64_t pad2 = vkd_div_up(rows, g / 2) * (g / 2) - rows;
        if ((pad - pad2) * 8 < rows) break;
        rpl /= 2;
    }
    /* one loop pass per texel step of a row, plus the tail step and loop exits */
    uint64_t norm_iters = norm_k ? mb * (vkd_div_up(norm_k / 4, lanes) + 2) : 0;
    if (row_texels + 8 + norm_iters > vkd_profile_loop_budget(p))
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "%s: K of %llu texels%s exceeds the driver's loop limit for the texel kernel", op,
                        (unsigned long long)row_texels, norm_k ? " with the norm" : "");
    disp->spec[0] = lanes;
    disp->spec[1] = rpl;
    disp->spec[2] = mb;
    disp->nspec = 3;
    uint64_t gy = vkd_div_up(m, mb);
    if (gy > vkd_ctx_info(vkd_rec_ctx(rec))->max_workgroup_count[1])
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED, "%s: m = %u too large", op, m);
    disp->groups[1] = (uint32_t)gy;
    return VKD_OK;
}

static vkd_result matmul_blocks(vkd_rec *rec, vkd_variant key, vkd_tensor *y, const vkd_tensor *x,
                                const vkd_tensor *w, vkd_pc_matmul pc, bool accumulate) {
    bool bcast = blocks_bcast(vkd_ctx_profile(vkd_rec_ctx(rec)), x, pc.K);
    if (bcast) key.shape = VKD_SHAPE_BCAST;
    vkd_dispatch disp = matmul_dispatch(vkd_select_matmul(&key), y, x, accumulate, &pc);
    vkd_result r = blocks_geometry(rec, "matmul", w->rows, w->row_texels, pc.m, 1, 0, bcast, &disp);
    return r ? r : matmul_chunks(rec, &disp, &pc, w, NULL, disp.spec[0] * disp.spec[1], 0);
}

bool vkd_matmul_group_ok(vkd_tensor *const *ys, const vkd_tensor *const *ws, uint32_t n) {
    if (n < 2 || n > 3 || !ws[0] || !vkd_ctx_profile(ws[0]->ctx)->matmul_fuse) return false;
    for (uint32_t j = 0; j < n; j++) {
        const vkd_tensor *w = ws[j], *y = ys[j];
        if (!w || w->layout != VKD_LAYOUT_BLOCKS || !w->parent || w->parent != ws[0]->parent ||
            w->parent->layout != VKD_LAYOUT_BLOCKS || w->parent->nchunks != 1 || w->nchunks != 1 ||
            w->dtype != ws[0]->dtype || w->cols != ws[0]->cols || !weight_dtype(w->dtype))
            return false;
        if (!y || y->nchunks != 1 || y->layout != VKD_LAYOUT_ROWS || y->dtype != VKD_DTYPE_F32 ||
            y->chunks[0].buffer != ys[0]->chunks[0].buffer || y->chunks[0].base % 4)
            return false;
    }
    return true;
}

bool vkd_matmul_norm_ok(const vkd_tensor *w, const vkd_tensor *norm, const vkd_tensor *x) {
    if (!w || !norm || !blocks_bcast(vkd_ctx_profile(w->ctx), x, w->cols) || norm->dtype != w->dtype ||
        norm->layout != VKD_LAYOUT_ROWS || norm->nchunks != 1 || norm->rows * norm->cols != w->cols)
        return false;
    return true;
}

/* The optional RMSNorm of a fused matmul (vkd_matmul_norm_ok). */
static vkd_result norm_check(vkd_rec *rec, const char *op, const vkd_tensor *norm, const vkd_tensor *w,
                             const vkd_tensor *x) {
    if (!norm || vkd_matmul_norm_ok(w, norm, x)) return VKD_OK;
    return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "%s: norm weight '%s' must be %llu row-major %s "
                    "elements (the weight's dtype), K a multiple of 4, x '%s' with a texel view, on a "
                    "device with 8-lane broadcast texel matmuls", op, norm->name, (unsigned long long)w->cols,
                    vkd_dtype_name(w->dtype), x->name);
}

vkd_result vkd_op_matmul_group(vkd_rec *rec, vkd_tensor *const *ys, uint32_t y_row0, const vkd_tensor *x,
                               uint32_t x_row0, const vkd_tensor *const *ws, uint32_t n, uint32_t m,
                               const vkd_tensor *norm, float eps) {
    vkd_error *err = vkd_rec_error(rec);
    if (err->code) return err->code;
    if (!vkd_matmul_group_ok(ys, ws, n))
        return vkd_fail(err, VKD_ERR_INVALID, "matmul_group: expected 2 or 3 matrices of one stack "
                        "(vkd_tensor_create_stack) with one dtype and K, and f32 outputs in one buffer");
    vkd_result r;
    for (uint32_t j = 0; j < n; j++)
        if ((r = matmul_check(rec, ys[j], y_row0, x, x_row0, ws[j], m))) return r;
    if ((r = norm_check(rec, "matmul_group", norm, ws[0], x))) return r;
    if (!m) return VKD_OK;
    const vkd_tensor *st = ws[0]->parent;
    /* y: one binding over the span of the outputs' bytes in their buffer */
    vkd_chunk span = ys[0]->chunks[0];
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint32_t j = 0; j < n; j++) {
        const vkd_chunk *c = &ys[j]->chunks[0];
        uint64_t end = c->base + (c->bind_bytes ? c->bind_bytes : (c->bytes + 15) / 16 * 16);
        if (c->base < lo) lo = c->base, span = *c;
        if (end > hi) hi = end;
    }
    if ((hi - lo) / 4 > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "matmul_group: outputs too far apart for 32-bit indexing");
    span.base = lo;
    span.bytes = span.bind_bytes = hi - lo;
    bool bcast = blocks_bcast(vkd_ctx_profile(vkd_rec_ctx(rec)), x, st->cols);
    vkd_variant key = {.dtype = st->dtype, .layout = VKD_LAYOUT_BLOCKS,
                       .shape = bcast ? VKD_SHAPE_BCAST : VKD_SHAPE_GEMV};
    vkd_pc_matmul_group pc = {.m = m, .K = (uint32_t)st->cols, .x_row0 = x_row0, .y_row0 = y_row0,
                              .norm = norm != NULL, .eps = eps};
    vkd_dispatch disp = {
        .shader = vkd_select_matmul_group(&key),
        .binds = {{&st->chunks[0], VKD_READ}, vkd_r(x), {&span, VKD_WRITE}, vkd_r(norm ? norm : x)},
        .nbinds = 4,
        .push = &pc,
        .push_bytes = sizeof pc,
    };
    /* one geometry for all: the rows per lane of the matrix that wants the fewest */
    uint32_t rpl = 32;
    for (uint32_t j = 0; j < n; j++) {
        if ((r = blocks_geometry(rec, "matmul_group", ws[j]->rows, st->row_texels, m, 1, norm ? st->cols : 0,
                                 bcast, &disp)))
            return r;
        if (disp.spec[1] < rpl) rpl = disp.spec[1];
    }
    disp.spec[1] = rpl;
    uint32_t rows[3], base[3], yoff[3], start[4] = {0};
    for (uint32_t j = 0; j < 3; j++) {
        uint32_t jj = j < n ? j : n - 1;
        const vkd_tensor *w = ws[jj];
        rows[j] = (uint32_t)w->rows;
        base[j] = (uint32_t)((w->chunks[0].base - st->chunks[0].base) / 16);
        yoff[j] = (uint32_t)((ys[jj]->chunks[0].base - lo) / 4);
        uint64_t g = j < n ? vkd_div_up(w->rows, (uint64_t)disp.spec[0] * rpl) : 0;
        if (start[j] + g > vkd_ctx_info(vkd_rec_ctx(rec))->max_workgroup_count[0])
            return vkd_fail(err, VKD_ERR_UNSUPPORTED, "matmul_group: too many rows for one dispatch");
        start[j + 1] = start[j] + (uint32_t)g;
    }
    pc.rows0 = rows[0], pc.rows1 = rows[1], pc.rows2 = rows[2];
    pc.base0 = base[0], pc.base1 = base[1], pc.base2 = base[2];
    pc.yoff0 = yoff[0], pc.yoff1 = yoff[1], pc.yoff2 = yoff[2];
    pc.start1 = start[1], pc.start2 = start[2];
    disp.groups[0] = start[n];
    return vkd_rec_dispatch(rec, &disp);
}

bool vkd_matmul_glu_ok(const vkd_tensor *g, const vkd_tensor *u) {
    if (!g || !u || !vkd_ctx_profile(g->ctx)->matmul_fuse || g->layout != VKD_LAYOUT_BLOCKS ||
        u->layout != VKD_LAYOUT_BLOCKS ||
        g->dtype != u->dtype || g->rows != u->rows || g->cols != u->cols || g->nchunks != u->nchunks ||
        !weight_dtype(g->dtype))
        return false;
    for (uint32_t c = 0; c < g->nchunks; c++)
        if (g->chunks[c].rows != u->chunks[c].rows) return false;
    return true;
}

vkd_result vkd_op_matmul_glu(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                             uint32_t x_row0, const vkd_tensor *g, const vkd_tensor *u, uint32_t m,
                             const vkd_tensor *norm, float eps) {
    vkd_result r = matmul_check(rec, y, y_row0, x, x_row0, g, m);
    if (r) return r;
    if (!vkd_matmul_glu_ok(g, u))
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_INVALID, "matmul_glu: gate '%s' and up '%s' must "
                        "have one shape and dtype, in the texel block layout", g->name, u ? u->name : "");
    if ((r = norm_check(rec, "matmul_glu", norm, g, x))) return r;
    if (!m) return VKD_OK;
    bool bcast = blocks_bcast(vkd_ctx_profile(vkd_rec_ctx(rec)), x, g->cols);
    vkd_variant key = {.dtype = g->dtype, .layout = VKD_LAYOUT_BLOCKS,
                       .shape = bcast ? VKD_SHAPE_BCAST : VKD_SHAPE_GEMV};
    vkd_pc_matmul pc = {.m = m, .K = (uint32_t)g->cols, .N = (uint32_t)g->rows, .x_row0 = x_row0,
                        .y_row0 = y_row0, .norm = norm != NULL, .eps = eps};
    vkd_dispatch disp = {
        .shader = vkd_select_matmul_glu(&key),
        .binds = {{NULL, VKD_READ}, {NULL, VKD_READ}, vkd_r(x), {&y->chunks[0], VKD_WRITE},
                  vkd_r(norm ? norm : x)},
        .nbinds = 5,
        .push = &pc,
        .push_bytes = sizeof pc,
    };
    if ((r = blocks_geometry(rec, "matmul_glu", g->rows, g->row_texels, m, 2, norm ? g->cols : 0, bcast, &disp)))
        return r;
    return matmul_chunks(rec, &disp, &pc, g, u, disp.spec[0] * disp.spec[1], 0);
}

/* Tiled GEMM: T x T output tiles, (T/4)^2 lanes each computing 4 x 4 outputs. */
static vkd_result matmul_gemm(vkd_rec *rec, vkd_variant key, vkd_tensor *y, const vkd_tensor *x,
                              const vkd_tensor *w, vkd_pc_matmul pc, bool accumulate) {
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    const vkd_device_info *d = vkd_ctx_info(ctx);
    uint32_t t = p->gemm_tile ? p->gemm_tile : 16;
    t = t < 4 ? 4 : t > 64 ? 64 : t / 4 * 4;
    while ((t / 4) * (t / 4) > d->max_workgroup_invocations && t > 4) t -= 4;
    uint32_t lanes = (t / 4) * (t / 4);
    /* per invocation: per K slice of 16, a load loop of t*16/lanes and a barrier pair */
    if (vkd_div_up(pc.K, 16) * (vkd_div_up((uint64_t)t * 16, lanes) + 4) > vkd_profile_loop_budget(p))
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED,
                        "matmul: K = %u exceeds the driver's loop limit for the tiled GEMM", pc.K);
    uint64_t gy = vkd_div_up(pc.m, t);
    if (gy > d->max_workgroup_count[1])
        return vkd_fail(vkd_rec_error(rec), VKD_ERR_UNSUPPORTED, "matmul: m = %u too large", pc.m);
    vkd_dispatch disp = matmul_dispatch(vkd_select_matmul(&key), y, x, accumulate, &pc);
    disp.spec[0] = lanes;
    disp.spec[1] = t;
    disp.nspec = 2;
    disp.groups[1] = (uint32_t)gy;
    return matmul_chunks(rec, &disp, &pc, w, NULL, t, 0);
}

vkd_result vkd_op_matmul(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                         uint32_t x_row0, const vkd_tensor *w, uint32_t m, bool accumulate) {
    vkd_result r = matmul_check(rec, y, y_row0, x, x_row0, w, m);
    if (r || !m) return r;
    const vkd_profile *p = vkd_ctx_profile(vkd_rec_ctx(rec));
    uint32_t gemm_min = p->gemm_min_m ? p->gemm_min_m : 32;
    /* the variant: weight dtype and layout; row-major weights: the tiled GEMM from
     * gemm_min_m rows of x, GEMV below (vec and reduce: matmul_gemv) */
    vkd_variant key = {.dtype = w->dtype, .layout = w->layout, .trans = VKD_TRANS_N};
    bool blocks = w->layout == VKD_LAYOUT_BLOCKS;
    key.shape = !blocks && m >= gemm_min ? VKD_SHAPE_GEMM : VKD_SHAPE_GEMV;
    vkd_pc_matmul pc = {.K = (uint32_t)w->cols, .N = (uint32_t)w->rows, .accumulate = accumulate};
    if (key.shape == VKD_SHAPE_GEMM && p->matmul_bcast) {
        key.shape = VKD_SHAPE_BCAST;
        vkd_shader_id sh = vkd_select_matmul(&key);
        for (uint32_t c = 0; c < w->nchunks; c++) {
            const vkd_chunk *ch = &w->chunks[c];
            vkd_pc_matmul_bcast pb = {.K = pc.K, .N = pc.N, .col0 = (uint32_t)ch->row0, .x_row0 = x_row0,
                                      .y_row0 = y_row0, .rows_a = m, .cols_b = (uint32_t)ch->rows};
            if ((r = vkd_ops_matmul_bcast(rec, sh, (vkd_bind){ch, VKD_READ}, vkd_r(x), vkd_w(y), pb, 0, pc.K,
                                          accumulate)))
                return r;
        }
        return VKD_OK;
    }
    if (key.shape == VKD_SHAPE_GEMM) {
        pc.m = m, pc.x_row0 = x_row0, pc.y_row0 = y_row0;
        return matmul_gemm(rec, key, y, x, w, pc, accumulate);
    }
    /* texel blocks: one dispatch per chunk, workgroup row y taking rows of x [y * MB, y * MB +
     * MB) with MB up to 4, or 16 with x broadcast (matmul_blocks); GEMV: passes of up to 16
     * rows (m between 17 and gemm_min_m - 1 reads W twice) */
    if (blocks) {
        pc.m = m, pc.x_row0 = x_row0, pc.y_row0 = y_row0;
        return matmul_blocks(rec, key, y, x, w, pc, accumulate);
    }
    uint32_t pass = GEMV_MAX_M;
    for (uint32_t i = 0; i < m; i += pass) {
        pc.m = m - i < pass ? m - i : pass;
        pc.x_row0 = x_row0 + i;
        pc.y_row0 = y_row0 + i;
        r = matmul_gemv(rec, key, y, x, w, pc, accumulate);
        if (r) return r;
    }
    return VKD_OK;
}

vkd_result vkd_op_embed(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *ids,
                        const vkd_tensor *table, uint32_t m) {
    vkd_error *err = vkd_rec_error(rec);
    vkd_result r = weight_check(rec, "embed", "table", table, INT32_MAX);
    if (r) return r;
    uint64_t V = table->rows, H = table->cols;
    if ((r = vkd_ops_need(rec, "embed", ids, VKD_DTYPE_I32, m)) ||
        (r = vkd_ops_need(rec, "embed", y, VKD_DTYPE_F32, (uint64_t)m * H)))
        return r;
    if ((uint64_t)m * H > UINT32_MAX)
        return vkd_fail(err, VKD_ERR_RANGE, "embed: y too large for 32-bit indexing");
    for (uint32_t c = 0; c < table->nchunks; c++)
        if (table->chunks[c].rows * H > UINT32_MAX)
            return vkd_fail(err, VKD_ERR_RANGE, "embed: chunk %u of '%s' too large for 32-bit "
                            "indexing", c, table->name);
    if (!m) return VKD_OK;
    vkd_ctx *ctx = vkd_rec_ctx(rec);
    const vkd_profile *p = vkd_ctx_profile(ctx);
    uint32_t wg = p->wg_stream ? p->wg_stream : 64;
    uint32_t groups;
    /* one row of y costs H / wg iterations plus the id test (texel blocks: a texel per
     * iteration and a loop over its elements) */
    uint64_t per_row = table->layout == VKD_LAYOUT_BLOCKS ? vkd_div_up(table->row_texels, wg) * 10 + 4
                                                          : vkd_div_up(H, wg) + 4;
    vkd_profile_stream_split(ctx, m, per_row, 1, &groups);
    vkd_pc_embed pc = {.m = m, .H = (uint32_t)H, .V = (uint32_t)V};
    vkd_dispatch disp = {
        .shader = vkd_select_embed(&(vkd_variant){.dtype = table->dtype, .layout = table->layout}),
        .spec = {wg},
        .nspec = 1,
        .binds = {{NULL, VKD_READ}, vkd_r(ids), vkd_w(y)},
        .nbinds = 3,
        .push = &pc,
        .push_bytes = sizeof pc,
        .groups = {groups},
    };
    for (uint32_t c = 0; c < table->nchunks; c++) {
        const vkd_chunk *ch = &table->chunks[c];
        pc.row0 = (uint32_t)ch->row0;
        pc.rows = (uint32_t)ch->rows;
        disp.binds[0].chunk = ch;
        if ((r = vkd_rec_dispatch(rec, &disp))) return r;
    }
    return VKD_OK;
}
