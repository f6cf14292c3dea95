/* grade.h: the target's answer to a record, graded with text/vkd_answer.h (GSM8K / MATH-500
 * by the dataset's file name, as guide and power do). Seed 001's decisive condition is the
 * examples whose greedy target answer is wrong (`diagnose --only-target-wrong`); seed 002's
 * easy / hard split is the same verdict (`probe`, `power`). */
#ifndef VKD_APP_GRADE_H
#define VKD_APP_GRADE_H

#include <cjson/cJSON.h>

#include "exp.h"
#include "vkd_answer.h"

/* The dataset's answer kind; with need, a dataset that cannot be graded (or an example
 * without an answer) is a usage error naming `flag`. */
vkd_answer_kind grade_kind(const exp_common *c, const exp_data *d, bool need, const char *flag);

/* Grades generated ids against the example's gold answer and adds {"text", "answer",
 * "correct", "tokens"} to obj. Returns 1 correct, 0 wrong, -1 not scored (no kind or no gold). */
int grade_ids(vkd_tok *tok, vkd_answer_kind kind, const exp_example *e, const int32_t *ids, uint32_t n, cJSON *obj);

/* Greedy generation by the target (at most max_new tokens, the target's stop ids) from the
 * example's prompt, graded into obj as grade_ids does, with "ids" and "gen_s" added.
 * Returns grade_ids' verdict; exits on a model error. */
int grade_target_greedy(const exp_models *m, vkd_answer_kind kind, const exp_example *e, uint32_t max_new, cJSON *obj);

#endif
