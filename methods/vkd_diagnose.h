/* vkd_diagnose.h: the deep-readout diagnostic of seed 000 (design.md section 6) on the GPU.
 *
 * Teacher forcing over prompt + gold answer (vkd_teacher.h): one target pass (logits at every
 * answer position, taps of the draft's layers) and the draft in gold / mask / random modes
 * block by block. Per compared token (block rows 1..B-1) the gold token's probability and
 * rank under target and draft come from vkd_op_token_stats on the device (p = softmax(logits)
 * [gold], rank = 1 + the number of entries with a strictly larger logit); only those are read
 * back. Random mode needs the real features once more (their norms): they are kept on the host
 * during the pass and replayed as norm-matched noise (vkd_tf_noise_rows, keyed by seed and
 * key) in a second draft pass. */
#ifndef VKD_DIAGNOSE_H
#define VKD_DIAGNOSE_H

#include "vkd_teacher.h"

#define VKD_DIAGNOSE_MAX_BLOCK 64

/* One compared token. Modes not run: NAN. */
typedef struct vkd_diagnose_token {
    uint32_t pos;              /* index of the gold token in the answer (1 = the second token) */
    uint32_t block, block_pos; /* block k, row 1..B-1 */
    int32_t gold;
    double p_t, rank_t;        /* target */
    double p_d[3], rank_d[3];  /* draft, by vkd_tf_mode */
} vkd_diagnose_token;

/* Wall time of the phases (added to by each run). */
typedef struct vkd_diagnose_times {
    double prompt, draft, target, random;
} vkd_diagnose_times;

typedef struct vkd_diagnose vkd_diagnose;

/* Device tensors for target t and draft g (borrowed); g->block <= VKD_DIAGNOSE_MAX_BLOCK and
 * <= t->logit_rows. */
vkd_result vkd_diagnose_create(vkd_target *t, vkd_draft *g, vkd_diagnose **out, vkd_error *err);
void vkd_diagnose_free(vkd_diagnose *dg);

/* One example: seq[0 .. n), prompt P tokens (1 <= P < n), modes[vkd_tf_mode] to run, noise
 * keyed by (seed, key). *tokens (malloc'd, free()) gets *ntokens compared tokens in order. */
vkd_result vkd_diagnose_run(vkd_diagnose *dg, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P,
                            const bool modes[3], uint64_t seed, uint32_t key, vkd_diagnose_token **tokens,
                            uint32_t *ntokens, vkd_diagnose_times *times, vkd_error *err);

#endif
