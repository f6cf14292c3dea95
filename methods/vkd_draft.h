/* vkd_draft.h: the one draft interface. Speculative decoding (vkd_spec), guided decoding
 * (vkd_guide), power sampling (vkd_power), the probe (vkd_probe) and the teacher-forced walks
 * of diagnose (vkd_teacher, vkd_diagnose) all reach their draft through a vkd_draft, so any
 * draft serves any of them:
 *   vkd_draft_dflash  the DFlash block-diffusion draft (models/vkd_dflash.h): reads the
 *                     target's tapped hidden states, proposes block - 1 tokens per call;
 *   vkd_draft_ar      an ordinary autoregressive model of the same vocabulary
 *                     (models/vkd_target.h): reads token ids, proposes gamma tokens one by one;
 *   vkd_draft_exit    an early-exit head (models/vkd_exit.h): the target's first l+1 layers and
 *                     a trained head, causal, gamma tokens one by one (plain or reusing the
 *                     target's KV cache).
 * A LoRA-adapted DFlash draft is vkd_draft_dflash over a vkd_dflash whose linears carry
 * adapters. Callers only use the fields and ops below.
 *
 * Positions. The draft's context is a prefix of the committed sequence: positions
 * 0 .. len-1, given by context() together with their ids and the target's hidden states at
 * tap_layers (features rows, ntaps * target hidden columns, f32, taps side by side). block()
 * and propose() look at the token `last` at position pos = len (committed, not yet in the
 * context) and predict positions pos + 1 .. pos + gamma; their rows never join the context.
 *
 * Submissions. context() and block() only record into the caller's open vkd_rec (between
 * vkd_rec_begin and vkd_rec_submit), so a caller puts a target step, the draft's context and
 * its block in one submission. propose() records into the caller's open rec too (after any
 * context the caller recorded), then submits it, and may run further submissions of its own
 * (an autoregressive draft needs one per token). */
#ifndef VKD_DRAFT_H
#define VKD_DRAFT_H

#include "vkd_dflash.h"
#include "vkd_exit.h"
#include "vkd_sample.h"

typedef struct vkd_draft vkd_draft;

/* propose()'s sampling hook: called for proposed position pos + 1 + i, in order, with its
 * logits (vocab f32, host memory); sets *token to the token proposed there. Setting *stop
 * ends the proposal after this token; a failure ends propose() with it. NULL hook: greedy
 * (argmax on the device; the logits are not read back). */
typedef vkd_result (*vkd_draft_draw_fn)(void *user, uint32_t i, const float *logits, int32_t *token,
                                        bool *stop, vkd_error *err);

typedef struct vkd_draft_ops {
    /* Forgets every context position (a new sequence). */
    vkd_result (*reset)(vkd_draft *g, vkd_error *err);
    /* Forgets context positions >= len (no-op when len >= the positions held). */
    vkd_result (*crop)(vkd_draft *g, uint32_t len, vkd_error *err);
    /* Context positions held. */
    uint32_t (*len)(const vkd_draft *g);
    /* Records: committed positions [pos, pos + n) join the context: ids[0 .. n) and features
     * rows [row0, row0 + n) (features may be NULL when ntaps == 0). pos <= len; positions
     * >= pos held before are replaced. Chunks internally (any n). */
    vkd_result (*context)(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, uint32_t n,
                          const vkd_tensor *features, uint32_t row0, vkd_error *err);
    /* Records one teacher-forced block at pos = len: ids[0 .. block) are the tokens at
     * positions pos .. pos + block - 1 (ids[0] = the last committed token; later rows are
     * known tokens or mask_id). Writes logits rows j < block - 1: the prediction for position
     * pos + 1 + j. A causal draft (mask_id < 0) reads ids[0 .. j] for row j and stops at the
     * first id < 0: rows from there on are not written. */
    vkd_result (*block)(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos, vkd_error *err);
    /* Proposes n <= gamma tokens after `last` at pos = len into tokens[0 .. *count) (see the
     * hook above; *count < n only when the hook stopped). Submits (see above). A mask draft's
     * proposal is block() over vkd_draft_proposal_ids plus the draws, so with a hook its
     * logits then hold the block's rows (power sampling re-reads them for q(old)); a greedy
     * proposal (NULL hook) may leave them unwritten (the DFlash draft's fused LM head +
     * argmax): record block() over those ids to see them. */
    vkd_result (*propose)(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos, uint32_t n,
                          vkd_draft_draw_fn draw, void *user, int32_t *tokens, uint32_t *count,
                          vkd_error *err);
    void (*free)(vkd_draft *g);
    /* Optional (NULL for most drafts): records the target's verification forward over
     * ids[0 .. m) at target->len exactly as vkd_target_step_record with logits rows
     * [lrow0, lrow0 + lrows) into target->logits (no taps) and advances target->len by m,
     * reusing the work of the last proposal. vkd_spec_generate calls it instead of the
     * target step when present: the self-speculative exit draft, whose drafting already ran
     * the target's first layers on the proposals. */
    vkd_result (*verify)(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t m, uint32_t lrow0,
                         uint32_t lrows, vkd_error *err);
} vkd_draft_ops;

struct vkd_draft {
    const char *name;              /* "dflash", "autoregressive" */
    uint32_t gamma;                /* tokens one proposal makes */
    uint32_t block;                /* rows of a block() call: gamma + 1 */
    uint32_t vocab;
    int32_t mask_id;               /* the block rows' unknown token; < 0: a causal draft */
    const vkd_target *target;      /* whose hidden states it reads (NULL: none) */
    const uint32_t *tap_layers;    /* target layers read from features (ntaps 0: none) */
    uint32_t ntaps;
    uint32_t ctx_len;              /* context capacity in positions */
    const vkd_tensor *logits;      /* >= gamma rows x vocab f32: block()'s output */
    const vkd_draft_ops *ops;
    void *self;
};

/* The DFlash draft (borrowed; block = d->block). */
vkd_result vkd_draft_dflash(vkd_dflash *d, vkd_draft **out, vkd_error *err);
/* An autoregressive draft model (borrowed), gamma in 1..63 and < its logit rows. */
vkd_result vkd_draft_ar(vkd_target *m, uint32_t gamma, vkd_draft **out, vkd_error *err);
/* An early-exit draft (methods/exit_draft.c; e borrowed, its target is e->t), gamma in 1..63:
 * reuse false: the truncated target with its own KV cache for layers 0..l (seed 003's draft);
 * reuse true: self-speculative, sharing the target's KV cache and hidden states through the
 * verify op; meant for vkd_spec_generate with e->t (its block() only at the target's end);
 * refused (VKD_ERR_INVALID) for a head with its own block (e->block: --ft-last-block). */
vkd_result vkd_draft_exit(vkd_exit *e, uint32_t gamma, bool reuse, vkd_draft **out, vkd_error *err);
void vkd_draft_free(vkd_draft *g); /* NULL: no-op */

/* Wrappers of the ops (the same arguments). */
static inline vkd_result vkd_draft_reset(vkd_draft *g, vkd_error *err) { return g->ops->reset(g, err); }
static inline vkd_result vkd_draft_crop(vkd_draft *g, uint32_t len, vkd_error *err) { return g->ops->crop(g, len, err); }
static inline uint32_t vkd_draft_len(const vkd_draft *g) { return g->ops->len(g); }
static inline vkd_result vkd_draft_context(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos,
                                           uint32_t n, const vkd_tensor *features, uint32_t row0,
                                           vkd_error *err) {
    return g->ops->context(g, rec, ids, pos, n, features, row0, err);
}
static inline vkd_result vkd_draft_block(vkd_draft *g, vkd_rec *rec, const int32_t *ids, uint32_t pos,
                                         vkd_error *err) {
    return g->ops->block(g, rec, ids, pos, err);
}
static inline vkd_result vkd_draft_propose(vkd_draft *g, vkd_rec *rec, int32_t last, uint32_t pos,
                                           uint32_t n, vkd_draft_draw_fn draw, void *user,
                                           int32_t *tokens, uint32_t *count, vkd_error *err) {
    return g->ops->propose(g, rec, last, pos, n, draw, user, tokens, count, err);
}

/* The block ids a draft saw when it proposed tokens[0 .. n) after last (n <= gamma):
 * [last, mask_id x gamma] for a mask draft, [last, tokens..., -1...] for a causal one; so
 * block() over them gives the logits the proposal was drawn from. out: block ids. */
void vkd_draft_proposal_ids(const vkd_draft *g, int32_t last, const int32_t *tokens, uint32_t n,
                            int32_t *out);

/* Submits rec; a recorder failure becomes err unless r already failed. Returns the first
 * failure. (Shared by the methods that drive drafts.) */
vkd_result vkd_draft_submit(vkd_rec *rec, vkd_result r, vkd_error *err);

#endif
