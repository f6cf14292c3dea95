/* builtin_prompts.h: the small prompt set `vkdraft spec` uses when no --dataset is given. */
#ifndef VKD_BUILTIN_PROMPTS_H
#define VKD_BUILTIN_PROMPTS_H

#include <stddef.h>

typedef struct builtin_prompt {
    const char *kind;          /* "math", "code", "chat" */
    const char *text;
} builtin_prompt;

extern const builtin_prompt builtin_prompts[];
extern const size_t builtin_prompt_count;

#endif
