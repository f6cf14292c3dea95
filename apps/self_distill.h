/* self_distill.h: responses of a target to prompts that have none (exit-train
 * --self-distill): greedy decoding, cached in a JSONL file so that a resumed run reuses
 * them instead of generating again.
 *
 * Cache: one line per prompt, appended, flushed and fsynced as each is generated:
 *   {"file": F, "line": N, "prompt_fnv1a64": "16 hex", "max_new": M, "response": [ids]}
 * A line is reused when file, line, the hash of the prompt ids and max_new all match; a
 * torn last line (an interrupted write) is ignored and generated again. */
#ifndef VKD_SELF_DISTILL_H
#define VKD_SELF_DISTILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vkd_target;
struct vkd_rec;

typedef struct sd_prompt {
    const char *file;          /* data file (borrowed) */
    size_t line;               /* 1-based line of the record */
    int32_t *ids;              /* chat-rendered prompt ids (owned by the caller) */
    size_t n;
    int32_t *response;         /* out: generated ids (malloc'd), stop id included */
    uint32_t n_response;
} sd_prompt;

/* Fills every p[i].response: from the cache at cache_path, else by greedy decoding with t
 * (at most min(max_new, capacity - prompt) new tokens, ending at a stop id); prompts that
 * leave no room get an empty response. Exits (cli_fatal) on error. */
void sd_generate(const char *cmd, struct vkd_target *t, struct vkd_rec *rec, const int32_t *stops, uint32_t nstop,
                 uint32_t capacity, const char *cache_path, sd_prompt *p, size_t n, uint32_t max_new, bool quiet);

#endif
