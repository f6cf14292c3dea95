/* exit_eval_out.h: exit-eval's journal records and result files (apps/cmd_exit_eval.c).
 *
 * Journal (DIR/examples.jsonl): one record "vanilla" (the target alone on every prompt:
 * tokens, prefill_s, decode_s per prompt) and one record per head, id = its folder as given:
 * layer, train_temperature, trained, steps; per held-out sequence q_kl_t, q_kl_1, q_ce (sums
 * in nats), q_top1, q_topk, q_rows; per prompt overlap, overlap_rows and, for the variants
 * reuse_ and plain_: tokens, steps (verifications), accepted (draft tokens accepted),
 * prefill_s, decode_s; hist (gamma + 1 counts of verifications by tokens accepted, reuse
 * variant); outputs (the reuse variant's generated ids per prompt); peak_rss_mib. */
#ifndef VKD_EXIT_EVAL_OUT_H
#define VKD_EXIT_EVAL_OUT_H

#include "exp.h"
#include "report.h"

typedef struct xe_settings {
    uint32_t gamma, max_new, topk_acc;
    float temperature, top_p;
    uint32_t top_k;
    size_t nseq, nprompt;      /* held-out sequences scored, prompts decoded */
} xe_settings;

/* Record check of this run (the counts above fix the array lengths). */
void xe_check_init(const xe_settings *s);
bool xe_check(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);

/* results.csv, summary.json, report.txt and the figures from the journal: heads in order. */
void xe_write_outputs(exp_out *o, const xe_settings *s, const rep_boot *b, const char *const *heads, size_t nheads);

#endif
