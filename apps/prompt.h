/* prompt.h: turning --prompt / --chat / --ids flags into token ids. */
#ifndef VKD_PROMPT_H
#define VKD_PROMPT_H

#include "tokenizer.h"

typedef struct prompt_flags {
    const char *prompt;        /* raw text, encoded with the model's post-processor */
    const char *chat;          /* one user turn through the chat template */
    const char *system;        /* optional system turn for --chat */
    const char *ids;           /* "1,2,3" or "[1,2,3]" */
    bool think;                /* Qwen3: enable_thinking (off by default) */
} prompt_flags;

/* Parses one of the prompt flags at argv[*i]; returns true when it was one. */
bool prompt_flag(const char *cmd, prompt_flags *p, int argc, char **argv, int *i);
/* Exactly one of --prompt/--chat/--ids must be set, and --system/--think only with --chat;
 * exits with a usage error otherwise. */
void prompt_require(const char *cmd, const prompt_flags *p);
/* Token ids for the flags; tok may be NULL only with --ids. Exits on error. */
int32_t *prompt_encode(const char *cmd, const prompt_flags *p, vkd_tok *tok, size_t *n);
/* Parses "1,2,3" / "[1, 2, 3]"; exits with a usage error naming flag on bad input. */
int32_t *parse_id_list(const char *cmd, const char *flag, const char *s, size_t *n);
/* Same for other non-negative integers; `what` names them in messages ("layer indices"). */
int32_t *parse_index_list(const char *cmd, const char *flag, const char *s, const char *what, size_t *n);
/* Renders one conversation with the model's own chat template (add_generation_prompt on). */
char *chat_render(const char *cmd, vkd_tok *tok, const char *system, const char *user, bool think);

/* Same for a whole conversation: roles[i] / contents[i]. */
char *chat_render_turns(const char *cmd, vkd_tok *tok, const char *const *roles,
                        const char *const *contents, size_t n, bool think);
/* Text of generated ids, special tokens skipped. Ids the tokenizer does not know (the padding
 * rows of an embedding matrix larger than the vocabulary, e.g. Qwen3's 151936 vs 151669) are
 * left out, as Hugging Face's decode does. Exits on error. */
char *decode_generated(vkd_tok *tok, const int32_t *ids, size_t n);
/* Renders a dataset record: its prompt as one user turn, or its messages as a conversation. */
struct vkd_ds_record;
char *chat_render_record(const char *cmd, vkd_tok *tok, const struct vkd_ds_record *r, bool think);
/* Token ids of a chat-template rendering (no extra special tokens: the template has them). */
int32_t *encode_rendered(vkd_tok *tok, const char *text, size_t *n);

/* Context capacity (KV cache tokens) for a model folder: want, capped at the model's
 * max_position_embeddings. When fewer than need tokens (need <= want; 0: no minimum) fit,
 * exits with the line "<what> exceeds the model's max_position_embeddings (N)", what
 * formatted from fmt (e.g. "generate: prompt (12 tokens) + --max-new-tokens (8)"). The one
 * place a command sizes its context from config.json. */
uint32_t ctx_len_fit(const char *model_dir, uint64_t want, uint64_t need, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record order for drawing N records of a dataset of count records with seed 0 (the DFlash
 * benchmark protocol): the permutation of 0..count-1 made by a Fisher-Yates shuffle from the
 * end driven by xorshift64 from 0x9E3779B97F4A7C15 (malloc'd); N records are its first N.
 * Exits when out of memory. */
size_t *draw_records(size_t count);

/* The target's stop ids: generation_config.json's eos ids, else config.json's (at most cap;
 * 2 * VKD_CFG_MAX_EOS holds them all). */
struct vkd_target;
uint32_t target_stop_ids(const struct vkd_target *t, int32_t *stops, uint32_t cap);

#endif
