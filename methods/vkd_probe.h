/* vkd_probe.h: the speculative-MCMC probe of seed 002 (design.md section 6): can a draft (the
 * DFlash draft in the seed; any vkd_draft) serve as an independence Metropolis-Hastings
 * proposal for p^alpha?
 *
 * The walk. A known sequence seq[0..n) (prompt of P tokens + the target's greedy reference
 * generation) is teacher-forced block by block (vkd_teacher.h, mask mode): block k at
 * s = P + kB has r = min(B, n - s) rows and c = r - 1 predicted positions; draft row i and
 * target row i (i < c) both predict seq[s+i+1]. One submission per block records the draft's
 * context + block call, the target's teacher-forced step, the distance ops and the reads of
 * the distances and target logits; a second one reads the draft logits back.
 *
 * Per predicted position, for every draft temperature T (l_t, l_d: target, draft logits):
 *   p^alpha = softmax(alpha * l_t), q_T = softmax(l_d / T)
 *   kl = KL(p^alpha || q_T), tvd = 0.5 * sum |p^alpha - q_T|, token accept = 1 - tvd
 * and the speculative-decoding baseline 1 - TVD(softmax(l_t), softmax(l_d)). The distances
 * run on the device (vkd_op_kl_tvd); f32 rounding there is clamped away (kl >= 0, 0 <= tvd <= 1).
 *
 * Per block and temperature (host, double precision, over the c rows read back):
 *   block product = prod_i (1 - tvd_i)
 *   K samples x_j = (x_j1..x_jc), each position drawn independently from q_T by inverse CDF
 *   (cumulative sum in index order) with the uniform
 *       vkd_uniform(seed, 2 * key,     ((k * ntemps + ti) * K + j) * 64 + i)
 *   log w_j = alpha * sum_i log p_i(x_ji) - sum_i log q_T,i(x_ji), p = softmax(l_t)
 *   (temperature 1: the document's unnormalised p^alpha), computed as
 *       sum_i (alpha * l_t,i(x) - l_d,i(x) / T) + sum_i (lse(l_d,i / T) - alpha * lse(l_t,i))
 *   so that q_T == p^alpha gives exactly equal weights.
 *   Independence MH: state = 0; for j = 1..K-1 the move to j is accepted when
 *       u_j < min(1, exp(log w_j - log w_state)),  u_j = vkd_uniform(seed, 2 * key + 1,
 *       (k * ntemps + ti) * K + j)
 *   sim accept = accepts / (K - 1). Reported: mean and population std of log w over the K
 *   samples of the block.
 *   Beside the acceptance (vkd_probe_chain): the accepted moves whose sample's tokens differ
 *   from the state's (a one-hot proposal "accepts" every move while never changing the
 *   sequence), the number of distinct token sequences among the K samples, and the seed's
 *   section 4.3 chains of S = mcmc_steps moves: the samples are cut into floor(K / (S + 1))
 *   windows w of S + 1 (start at sample w(S+1), proposals w(S+1)+1 .. w(S+1)+S, the same
 *   weights and uniforms as above), each an independent S-step independence MH chain; the
 *   windows whose chain accepted >= 1 and >= 3 moves (and changed the sequence >= 1 time)
 *   are counted, so P(moves >= 1 in S steps) = moved1 / windows over blocks.
 * Results depend only on (seed, key = the example's index, block, temperature index). */
#ifndef VKD_PROBE_H
#define VKD_PROBE_H

#include "vkd_draft.h"

#define VKD_PROBE_MAX_TEMPS 8
#define VKD_PROBE_MAX_BLOCK 64

typedef struct vkd_probe_options {
    double alpha;              /* 0: 4 */
    const double *temps;       /* draft temperatures; NULL: {1, 0.5, 0.25} */
    uint32_t ntemps;           /* <= VKD_PROBE_MAX_TEMPS */
    uint32_t samples;          /* K >= 2; 0: 100 */
    uint32_t mcmc_steps;       /* S, the steps of a section 4.3 chain; 0: 10 */
    uint64_t seed;
} vkd_probe_options;

/* One predicted position. */
typedef struct vkd_probe_pos {
    uint32_t block, block_pos; /* block k, row i + 1 in it (1..B-1) */
    uint32_t pos;              /* absolute position of the predicted token seq[s+i+1] */
    int32_t token;
    double kl[VKD_PROBE_MAX_TEMPS], tvd[VKD_PROBE_MAX_TEMPS];
    double base_tvd;           /* TVD(p, q_1) */
} vkd_probe_pos;

/* The independence MH chain of one block and temperature beyond its acceptance. */
typedef struct vkd_probe_chain {
    uint32_t accepts;          /* accepted moves of the chain over all K samples */
    uint32_t changes;          /* of those, moves to a sample whose tokens differ from the state's */
    uint32_t distinct;         /* distinct token sequences among the K samples */
    uint32_t windows;          /* S-step chains: floor(K / (S + 1)) */
    uint32_t moved1, moved3;   /* windows whose chain accepted >= 1 / >= 3 moves */
    uint32_t changed1;         /* windows whose chain changed the sequence >= 1 time */
} vkd_probe_chain;

/* One block with at least one predicted position. */
typedef struct vkd_probe_block {
    uint32_t block, start, npos;
    double product[VKD_PROBE_MAX_TEMPS];     /* prod (1 - tvd) */
    double sim_accept[VKD_PROBE_MAX_TEMPS];  /* MH acceptance rate */
    double logw_mean[VKD_PROBE_MAX_TEMPS], logw_std[VKD_PROBE_MAX_TEMPS];
    vkd_probe_chain chain[VKD_PROBE_MAX_TEMPS];
} vkd_probe_block;

/* What the per-block hook sees (tests dump it; all pointers valid during the call). */
typedef struct vkd_probe_trace {
    uint32_t block, start, rows, vocab, temp_index, samples;
    double temperature, alpha;
    const float *target_logits, *draft_logits; /* rows x vocab */
    const int32_t *tokens;     /* samples x rows: x_ji */
    const double *u_sample;    /* samples x rows: the uniforms that drew them */
    const double *logw;        /* samples */
    const double *u_mh;        /* samples (entry 0 unused) */
    uint32_t accepts;
    uint32_t mcmc_steps;       /* S */
    vkd_probe_chain chain;
} vkd_probe_trace;
typedef void (*vkd_probe_hook)(void *user, const vkd_probe_trace *tr);

typedef struct vkd_probe_times {
    double prompt_s;           /* target over the prompt + draft context */
    double blocks_s;           /* per-block submissions: draft, target step, distances, reads */
    double mc_s;               /* host Monte Carlo */
} vkd_probe_times;

typedef struct vkd_probe vkd_probe;

/* Device tensors and host scratch for the shapes of target t and draft g (both borrowed). */
vkd_result vkd_probe_create(vkd_target *t, vkd_draft *g, const vkd_probe_options *opt, vkd_probe **out,
                            vkd_error *err);
void vkd_probe_free(vkd_probe *p);

/* Runs the walk over seq[0..n) with prompt length P (1 <= P < n - 1 is useful; n - P < 2
 * gives no positions). key: the example's index (randomness). Fills malloc'd arrays
 * (free()) of positions and blocks; hook (may be NULL) is called per block and temperature.
 * Needs the target's and draft's context >= n + B. */
vkd_result vkd_probe_run(vkd_probe *p, vkd_rec *rec, const int32_t *seq, uint32_t n, uint32_t P,
                         uint32_t key, vkd_probe_hook hook, void *user, vkd_probe_pos **pos,
                         uint32_t *npos, vkd_probe_block **blocks, uint32_t *nblocks,
                         vkd_probe_times *times, vkd_error *err);

/* Host pieces (exposed for the tests). */
/* Independence MH over K log weights with uniforms u[1..K-1]: the number of accepted moves. */
uint32_t vkd_probe_mh(const double *logw, const double *u, uint32_t K);

/* Scratch entry of vkd_probe_chain_stats. */
typedef struct vkd_probe_key {
    uint64_t hash;
    uint32_t sample;
} vkd_probe_key;

/* The chain statistics of vkd_probe_chain over K log weights, uniforms u[1..K-1] and the
 * samples' tokens (K x rows), S-step windows (steps >= 1). keys: K entries of scratch. */
void vkd_probe_chain_stats(const double *logw, const double *u, const int32_t *tokens, uint32_t rows, uint32_t K,
                           uint32_t steps, vkd_probe_key *keys, vkd_probe_chain *out);

/* Monte Carlo of one block at one temperature over host logits lt, ld (rows x V, f32):
 * draws K samples (uniforms as documented above, counter base = (k * ntemps + ti) * K,
 * streams 2*key and 2*key+1), fills logw[K], tokens[K*rows], u_sample[K*rows], u_mh[K]
 * (each may be NULL except logw) and returns the number of MH accepts. scratch: V doubles. */
uint32_t vkd_probe_block_mc(const float *lt, const float *ld, uint32_t rows, uint32_t V, double alpha,
                            double T, uint32_t K, uint64_t seed, uint32_t key, uint64_t counter0,
                            double *scratch, double *logw, int32_t *tokens, double *u_sample,
                            double *u_mh);

#endif
