/* vkd_teacher.h: teacher-forced walks of a target and a draft (any vkd_draft) over a known
 * sequence (prompt + answer), the substrate of `diagnose` and `probe` (design.md section 6).
 *
 * Layout. The sequence seq[0..n) has a prompt of P tokens; the answer is cut into
 * non-overlapping blocks of B starting at P: block k covers positions s = P + kB ..
 * s + r - 1 (r = min(B, n - s)). Exactly as speculative decoding builds it, the draft's
 * KV-cached context before block k holds the features of every position < s: block 0 sees
 * the whole prompt, block k adds block k-1's B positions. Block rows are
 *   gold / random: seq[s .. s+r) (gold embeddings; the draft can see future gold tokens),
 *   mask:          [seq[s], MASK x (B-1)] (what spec decoding feeds: the fair mode),
 * padded with MASK to B rows when r < B. Draft logits row i (i < r-1) and target logits row
 * i of the block's teacher-forced step both predict seq[s+i+1]: the compared token.
 * Random mode replaces the features by Gaussian noise with each row's L2 norm kept.
 * A causal draft (mask_id < 0: an autoregressive model) reads no future rows, so its mask
 * mode feeds the gold ids too (row i then sees what speculative decoding shows it when every
 * earlier proposal was accepted). */
#ifndef VKD_TEACHER_H
#define VKD_TEACHER_H

#include "vkd_draft.h"

typedef enum vkd_tf_mode { VKD_TF_GOLD = 0, VKD_TF_MASK = 1, VKD_TF_RANDOM = 2 } vkd_tf_mode;
extern const char *const vkd_tf_mode_names[3];

/* The block's B ids for a mode (see above). seq: the whole sequence; out: B ids. */
void vkd_tf_block_ids(vkd_tf_mode mode, const int32_t *seq, uint32_t s, uint32_t r, uint32_t B,
                      int32_t mask_id, int32_t *out);
/* The same for draft g (B = g->block, its mask id); a causal draft (mask_id < 0) gets the
 * gold ids in mask mode. */
void vkd_tf_draft_block_ids(const vkd_draft *g, vkd_tf_mode mode, const int32_t *seq, uint32_t s, uint32_t r,
                            int32_t *out);

/* Feature rows for the walk: f32, rows x (ntaps * target hidden) (1 column when the draft
 * reads none), rows = max(chunk, B) where chunk = vkd_tf_chunk. */
vkd_result vkd_tf_features_create(const vkd_target *t, const vkd_draft *g, vkd_tensor **out,
                                  vkd_error *err);
/* The prompt step size: the target's max_rows. */
uint32_t vkd_tf_chunk(const vkd_target *t);

/* Resets target and draft, then runs the prompt seq[0..P) through the target in chunks with
 * taps; each chunk joins the draft's context in the chunk's submission. When host_feats is
 * not NULL, the prompt's feature rows are also copied there (P x cols f32). */
vkd_result vkd_tf_prompt(vkd_target *t, vkd_draft *g, vkd_rec *rec, vkd_tensor *feats,
                         const int32_t *seq, uint32_t P, float *host_feats, vkd_error *err);

/* Records the teacher-forced target step of block (s, r): target logits rows 0..r-1 into
 * t->logits, taps of the draft's layers into feats rows 0..r-1. The draft context call for
 * the previous block must be recorded before (it reads the same rows). */
vkd_result vkd_tf_target_record(vkd_target *t, const vkd_draft *g, vkd_rec *rec, vkd_tensor *feats,
                                const int32_t *seq, uint32_t s, uint32_t r, vkd_error *err);

/* Host-side noise for random mode: out[i][j] = z[i][j] * ||f_i|| / ||z_i|| with z standard
 * normal from Philox keyed by (seed, key, global row index row0 + i) (Box-Muller), norms in
 * double, so each row keeps its norm exactly (up to f32 rounding of the result). A zero row
 * stays zero. f, out: rows x cols (may alias). */
void vkd_tf_noise_rows(const float *f, float *out, uint32_t rows, uint32_t cols, uint64_t seed,
                       uint32_t key, uint32_t row0);

#endif
