/* exit_data.h: the token sequences of exit-train's --data files and their deterministic
 * held-out split (apps/cmd_exit_train.c), shared with exit-eval so that it scores exactly the
 * sequences exit-train held out. */
#ifndef VKD_EXIT_DATA_H
#define VKD_EXIT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct seqs {
    int32_t **ids;
    uint32_t *len;
    size_t n, cap;
} seqs;

/* Appends the sequences of one file (windows of win tokens; texts of JSONL chat messages,
 * prompt/response or plain text); exits naming the file when it gives none. cmd: for messages.
 * A record without a response counts as its prompt alone: exit-train --self-distill instead
 * appends the target's responses after all files, so its sequence numbers (and the held-out
 * split) differ from this loader's for such files. */
void exit_data_load(const char *cmd, const char *path, vkd_tok *tok, uint32_t win, seqs *s);
/* Whether sequence i is held out (hash of seed and i below holdout). */
bool exit_data_held(uint64_t seed, size_t i, double holdout);

#endif
