/* vkd_ops.h: the op library. One C function per op; each records dispatches into a
 * vkd_rec (nothing runs until vkd_rec_submit). Conventions (llm.c style):
 *   - outputs first, then inputs, then sizes: vkd_op_x(rec, out, in..., sizes...)
 *   - shapes as rows x cols in the comment above each function
 *   - activations f32; weights f32/f16/bf16 in their checkpoint dtype
 *   - tensors larger than the binding limit (vkd_tensor.nchunks > 1) are accepted where
 *     the comment says so (weights: matmul, embedding); elsewhere a split tensor is an error
 *   - errors are sticky in the recorder; every op returns the recorder's status
 * Each op has a plain-C double-accumulation reference in tests/ops/ref_<family>.c. */
#ifndef VKD_OPS_H
#define VKD_OPS_H

#include "vkd_runtime.h"

/* y = a*x0 + b*x1 over the first n elements. x0, x1, y: f32, single chunk; y may alias x0. */
vkd_result vkd_op_axpby(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x0, const vkd_tensor *x1,
                        float a, float b, uint64_t n);
/* y += x over the first n elements (residual add). */
vkd_result vkd_op_add(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, uint64_t n);
/* Copies the first `bytes` (multiple of 16) of src to dst with the streaming geometry:
 * the device-bandwidth probe of `vkdraft bench ops`. */
vkd_result vkd_op_copy_probe(vkd_rec *rec, vkd_tensor *dst, const vkd_tensor *src, uint64_t bytes);

/* count[0] (u32, single chunk, zeroed by the caller: the op adds) += the number of NaN and
 * Inf values in x (f32, f16 or bf16, any number of chunks): the finiteness check of weights
 * at load. A 16-bit tensor is read in 32-bit words: a chunk whose byte size is not a multiple
 * of 4 leaves its last value to the caller (*tail_unchecked = true). */
vkd_result vkd_op_count_nonfinite(vkd_rec *rec, vkd_tensor *count, const vkd_tensor *x, bool *tail_unchecked);

/* ---- matmul and embedding (ops/ops_matmul.c) ----------------------------------- */

/* y[y_row0 + i, :N] (=|+=) x[x_row0 + i, :K] . W^T  for i < m.
 *   W: N x K (out_features x in_features, as in HF Linear.weight), f32/f16/bf16, any number
 *      of chunks (rows of W = output features are split across bindings);
 *   x: f32, row stride K; y: f32, row stride N; both single chunk.
 *   accumulate: y += ... instead of y = ... (residual projections).
 * Uses a GEMV kernel for small m (decode: memory-bound, streams W once) and a tiled GEMM
 * for large m (prefill, blocks, training); the switch point is a device-profile choice. */
vkd_result vkd_op_matmul(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                         uint32_t x_row0, const vkd_tensor *w, uint32_t m, bool accumulate);

/* The fused matmuls below may take x through an RMSNorm first (norm: its weight; NULL: none),
 * as vkd_op_rmsnorm then the matmul, bit for bit, without writing the normed rows; where
 * vkd_matmul_norm_ok(w, norm, x) holds: norm has W's dtype and K elements (row-major), K is a
 * multiple of 4, x has a texel view (the profile's x_texel), and the device runs the texel
 * matmul and rmsnorm on the same 8 lanes (one subgroup: the profile's matmul_bcast), so the
 * sum of squares is formed the same way.
 *
 * Two or three matmuls of one x in one dispatch (q/k/v):
 * ys[j][y_row0 + i, :N_j] = x[x_row0 + i, :K] . W_j^T for i < m, j < n (2 or 3).
 *   W_j: members of one stack (vkd_tensor_create_stack: VKD_LAYOUT_BLOCKS, one dtype and K);
 *   ys[j]: f32, row stride N_j = rows of W_j, single chunk, all in one buffer (views of one
 *   tensor, vkd_tensor_view), bound as one range that spans them.
 * vkd_matmul_group_ok tells whether they qualify (and the profile's matmul_fuse is on);
 * otherwise call vkd_op_matmul per matrix. */
bool vkd_matmul_group_ok(vkd_tensor *const *ys, const vkd_tensor *const *ws, uint32_t n);
vkd_result vkd_op_matmul_group(vkd_rec *rec, vkd_tensor *const *ys, uint32_t y_row0, const vkd_tensor *x,
                               uint32_t x_row0, const vkd_tensor *const *ws, uint32_t n, uint32_t m,
                               const vkd_tensor *norm, float eps);

/* Gate and up projections with SwiGLU in one dispatch:
 * y[y_row0 + i, :F] = silu(x[x_row0 + i, :K] . G^T) * (x[x_row0 + i, :K] . U^T) for i < m,
 * as vkd_op_matmul twice and vkd_op_swiglu (which it replaces in inference, where g and u
 * need not be kept). G, U: F x K, one dtype, both VKD_LAYOUT_BLOCKS (vkd_matmul_glu_ok);
 * y: f32, row stride F. */
bool vkd_matmul_glu_ok(const vkd_tensor *g, const vkd_tensor *u);
vkd_result vkd_op_matmul_glu(vkd_rec *rec, vkd_tensor *y, uint32_t y_row0, const vkd_tensor *x,
                             uint32_t x_row0, const vkd_tensor *g, const vkd_tensor *u, uint32_t m,
                             const vkd_tensor *norm, float eps);
bool vkd_matmul_norm_ok(const vkd_tensor *w, const vkd_tensor *norm, const vkd_tensor *x);

/* y[i, :] = float(table[ids[i], :]) for i < m. table: V x H, f32/f16/bf16, any chunks;
 * ids: i32, at least m entries (an id outside [0, V) gives a zero row); y: f32 m x H. */
vkd_result vkd_op_embed(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *ids,
                        const vkd_tensor *table, uint32_t m);

/* ---- layer ops (ops/ops_layer.c) ---------------------------------------------------- */

/* RMSNorm over groups: for each of `groups` contiguous groups of `dim` f32 values of x,
 * y = x * rsqrt(mean(x^2) + eps) * w, with w a `dim`-vector (f32/f16/bf16). Rows of a model
 * are groups of dim = hidden; per-head q/k norm is groups = rows*heads of dim = head_dim.
 * y may alias x. */
vkd_result vkd_op_rmsnorm(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, const vkd_tensor *w,
                          uint32_t groups, uint32_t dim, float eps);

/* Rotary embedding in place, rotate-half convention (pairs (j, j + d/2)):
 *   x: f32, rows x (heads*head_dim), rows starting at x_row0;
 *   position of row r: positions[r] (i32 tensor) if positions != NULL, else pos0 + r;
 *   inv_freq: f32 vector of head_dim/2 (llama3 scaling already applied by the caller);
 *   angle = position * inv_freq[j] computed in f32 as transformers does. */
vkd_result vkd_op_rope(vkd_rec *rec, vkd_tensor *x, uint32_t x_row0, uint32_t rows, uint32_t heads,
                       uint32_t head_dim, uint32_t pos0, const vkd_tensor *positions,
                       const vkd_tensor *inv_freq);

/* The attention inputs of a decoder layer in one dispatch, for rows r < rows at positions
 * pos + r: with q_norm/k_norm (both, or both NULL: no per-head norm)
 *   q = rmsnorm per head(q) * q_norm, k = rmsnorm per head(k) * k_norm   (vkd_op_rmsnorm)
 * then q, k = rope(q, k) (vkd_op_rope, positions pos + r), both in place, and
 *   kc/vc rows [pos, pos + rows), columns [0, n_kv*head_dim) = k, v     (vkd_op_copy2d)
 * equal bit for bit to those ops recorded one by one. q: f32 rows x n_q*head_dim (n_q = 0:
 * keys and values only, q and q_norm unused); k, v: f32 rows x n_kv*head_dim; norm weights
 * head_dim f32/f16/bf16; kc, vc: f32 or f16 caches, rows of an even width >= n_kv*head_dim;
 * head_dim a multiple of 4. */
vkd_result vkd_op_qk_rope_kv(vkd_rec *rec, vkd_tensor *q, vkd_tensor *k, const vkd_tensor *v,
                             const vkd_tensor *q_norm, const vkd_tensor *k_norm, uint32_t rows,
                             uint32_t n_q, uint32_t n_kv, uint32_t head_dim, uint32_t pos,
                             const vkd_tensor *inv_freq, float eps, vkd_tensor *kc, vkd_tensor *vc);

/* Attention of q rows against a KV cache, GQA, numerically stable online softmax (no
 * rows x kv_len matrix in memory):
 *   q: f32 q_rows x (n_q*hd); o: f32 q_rows x (n_q*hd) (o != q);
 *   k, v: cache tensors cap x (n_kv*hd), f32 or f16, rows 0..kv_len-1 valid;
 *   query head h reads kv head h / (n_q / n_kv);
 *   causal: query row i sees keys j <= q_pos0 + i (q_pos0 = kv index of query row 0);
 *   non-causal (DFlash blocks): every query row sees all kv_len keys;
 *   scale: usually 1/sqrt(hd). */
vkd_result vkd_op_attention(vkd_rec *rec, vkd_tensor *o, const vkd_tensor *q, const vkd_tensor *k,
                            const vkd_tensor *v, uint32_t q_rows, uint32_t kv_len, uint32_t n_q,
                            uint32_t n_kv, uint32_t hd, uint32_t q_pos0, bool causal, float scale);

/* vkd_op_attention with the keys split across workgroups (split-K) where the device profile
 * asks for it (vkd_profile attn_split_groups / attn_split_keys; attn_splits, VKDRAFT_ATTN_SPLITS,
 * forces a count): each of S workgroups per (row, head block) takes a contiguous range of the
 * row's keys and leaves its unnormalised sums in part; a second dispatch merges them into o.
 * For decoding over long caches, where the rows x heads alone give a GPU few workgroups.
 * part: f32 scratch, one chunk, apart from q and o, of vkd_op_attention_part_floats()
 * floats for these sizes (its largest q_rows and kv_len); a smaller part splits less, NULL or
 * S = 1 is vkd_op_attention. The result equals vkd_op_attention's up to the rounding of the
 * merge. */
#define VKD_ATTN_SPLITS_MAX 32
vkd_result vkd_op_attention_split(vkd_rec *rec, vkd_tensor *o, vkd_tensor *part, const vkd_tensor *q,
                                  const vkd_tensor *k, const vkd_tensor *v, uint32_t q_rows,
                                  uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                  uint32_t q_pos0, bool causal, float scale);
/* f32 elements of the partials vkd_op_attention_split may use for up to q_rows rows over up to
 * kv_len keys (0: this device never splits them). */
uint64_t vkd_op_attention_part_floats(const vkd_ctx *ctx, uint32_t q_rows, uint32_t kv_len,
                                      uint32_t n_q, uint32_t n_kv, uint32_t hd);
/* The split count vkd_op_attention_split uses for exactly q_rows rows over kv_len keys with
 * partials of vkd_op_attention_part_floats() for them (1: no split). */
uint32_t vkd_op_attention_splits(const vkd_ctx *ctx, uint32_t q_rows, uint32_t kv_len, uint32_t n_q,
                                 uint32_t n_kv, uint32_t hd);

/* The same, also writing lse[row, h] = log sum_j exp(scale * q[row, h] . k[j, h / group])
 * (natural log, f32 q_rows x n_q): what the attention backward needs to recompute the
 * probabilities without storing them (training forward). */
vkd_result vkd_op_attention_lse(vkd_rec *rec, vkd_tensor *o, vkd_tensor *lse, const vkd_tensor *q,
                                const vkd_tensor *k, const vkd_tensor *v, uint32_t q_rows,
                                uint32_t kv_len, uint32_t n_q, uint32_t n_kv, uint32_t hd,
                                uint32_t q_pos0, bool causal, float scale);

/* The block-sparse attention of DFlash training (many anchor blocks of one sequence in one
 * pass), with its log-sum-exp as vkd_op_attention_lse:
 *   q, o: f32 q_rows x (n_q*hd), q_rows = nblk * block: block b is rows [b*block, (b+1)*block);
 *   k, v: f32, rows [0, n_ctx) the context (positions 0..n_ctx-1), rows n_ctx + b*block ..
 *   + block - 1 block b's own (its query rows' K/V);
 *   anchors: i32 >= nblk values, anchors[b] in [0, n_ctx] (larger is clamped to n_ctx).
 * Query rows of block b see the context keys j < anchors[b] and every key of block b
 * (bidirectional inside the block), never another block's. */
vkd_result vkd_op_attention_blocks_lse(vkd_rec *rec, vkd_tensor *o, vkd_tensor *lse, const vkd_tensor *q,
                                       const vkd_tensor *k, const vkd_tensor *v, const vkd_tensor *anchors,
                                       uint32_t q_rows, uint32_t block, uint32_t n_ctx, uint32_t n_q,
                                       uint32_t n_kv, uint32_t hd, float scale);

/* h[i] = silu(g[i]) * u[i] for i < n (f32). h may alias g or u. */
vkd_result vkd_op_swiglu(vkd_rec *rec, vkd_tensor *h, const vkd_tensor *g, const vkd_tensor *u,
                         uint64_t n);

/* 2-D strided copy with dtype conversion: dst[dst_row0 + r, dst_col0 + c] =
 * src[src_row0 + r, src_col0 + c] for r < rows, c < cols. src f32; dst f32 or f16 (KV cache
 * append: K/V rows into the cache at the current length; hidden-state taps: a layer's rows
 * into a column block of the features buffer). Crop of a KV cache is a length change on
 * the host: no op. */
vkd_result vkd_op_copy2d(vkd_rec *rec, vkd_tensor *dst, uint32_t dst_row0, uint32_t dst_col0,
                         const vkd_tensor *src, uint32_t src_row0, uint32_t src_col0,
                         uint32_t rows, uint32_t cols);

/* ---- logits ops (ops/ops_logits.c) ------------------------------------------------- */
/* All take logits x: f32 rows x n (row stride n = x->cols unless stated), rows from x_row0.
 * Non-finite rows: a row holding a NaN or +Inf (an activation overflow; -Inf is a masked
 * token) gives no plausible answer: argmax, topk and sample write index -1 (topk values NaN),
 * token_stats and kl_tvd (either row) NaN in every output, softmax a row of NaN. Callers
 * check what they read back (methods/vkd_sample.h: vkd_check_tokens, vkd_check_stats). */

/* y = softmax(scale * x) per row, or log_softmax when `log`. y: f32 rows x n. */
vkd_result vkd_op_softmax(vkd_rec *rec, vkd_tensor *y, const vkd_tensor *x, uint32_t x_row0,
                          uint32_t rows, uint32_t n, float scale, bool log);

/* idx[i] = argmax of row i (lowest index among equal maxima), i32. */
vkd_result vkd_op_argmax(vkd_rec *rec, vkd_tensor *idx, const vkd_tensor *x, uint32_t x_row0,
                         uint32_t rows, uint32_t n);

/* Greedy LM head: idx[i] = argmax over n < w->rows of x[x_row0 + i, :] . w[n, :] for i < m,
 * i32, with vkd_op_argmax's ties and NaN/+Inf signal, without writing the m x w->rows logits.
 * w: F32/F16/BF16 in the texel block layout (VKD_LAYOUT_BLOCKS) only; with row-major weights
 * use vkd_op_matmul + vkd_op_argmax. part: i32 scratch (one chunk) of at least
 * 2 * m * vkd_op_matmul_argmax_parts(ctx, w) elements, the per-workgroup candidates. */
vkd_result vkd_op_matmul_argmax(vkd_rec *rec, vkd_tensor *idx, vkd_tensor *part, const vkd_tensor *x,
                                uint32_t x_row0, const vkd_tensor *w, uint32_t m);
uint64_t vkd_op_matmul_argmax_parts(const vkd_ctx *ctx, const vkd_tensor *w);

/* The k largest entries of each row, sorted descending (ties: lower index first):
 * idx i32 rows x k, val f32 rows x k. k <= 256. */
vkd_result vkd_op_topk(vkd_rec *rec, vkd_tensor *idx, vkd_tensor *val, const vkd_tensor *x,
                       uint32_t x_row0, uint32_t rows, uint32_t n, uint32_t k);

/* Per row i with token t = ids[i] (i32): out[i, 0] = x[i, t] (the gold logit),
 * out[i, 1] = logsumexp(x[i, :]) (so p = exp(out0 - out1)), out[i, 2] = rank as a float:
 * 1 + number of entries strictly larger than x[i, t]. out: f32 rows x 3. */
vkd_result vkd_op_token_stats(vkd_rec *rec, vkd_tensor *out, const vkd_tensor *x, uint32_t x_row0,
                              const vkd_tensor *ids, uint32_t rows, uint32_t n);

/* Distances between p = softmax(p_scale * xp[row]) and q = softmax(q_scale * xq[row]):
 * out[i, 0] = KL(p || q), out[i, 1] = TVD = 0.5 * sum |p - q|. out: f32 rows x 2. */
vkd_result vkd_op_kl_tvd(vkd_rec *rec, vkd_tensor *out, const vkd_tensor *xp, uint32_t xp_row0,
                         float p_scale, const vkd_tensor *xq, uint32_t xq_row0, float q_scale,
                         uint32_t rows, uint32_t n);

/* Sampling: tok[i] ~ the distribution of row i after temperature, top-k, top-p, applied in
 * that order with transformers' semantics (top_k = 0: off; top_p >= 1: off; temperature 0:
 * argmax). Randomness: Philox4x32-10 keyed by seed, counter = (counter0 + i), so a result
 * depends only on (seed, counter) and not on scheduling. tok: i32 rows. */
typedef struct vkd_sample_params {
    float temperature;         /* 0 = greedy */
    uint32_t top_k;            /* 0 = off */
    float top_p;               /* 0 or >= 1 = off */
    uint64_t seed;
    uint64_t counter0;
} vkd_sample_params;
vkd_result vkd_op_sample(vkd_rec *rec, vkd_tensor *tok, const vkd_tensor *x, uint32_t x_row0,
                         uint32_t rows, uint32_t n, const vkd_sample_params *p);

/* Philox4x32-10 on the host, the same generator the shaders use: four 32-bit words for
 * (key = seed, counter). Uniform floats: (word >> 8) * 2^-24, in [0, 1). */
void vkd_philox4x32(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]);

#endif
