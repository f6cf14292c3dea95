/* chat_template.h: renders a model's own Jinja `chat_template` (tokenizer_config.json).
 *
 * A small interpreter for the Jinja subset that chat templates use (Qwen3, Llama 3/3.1/3.2
 * and similar): {{ }}, {% if/elif/else %}, {% for %} (loop.index0/first/last/..., tuple
 * targets, inline if, break/continue), {% set %} including namespace() attributes,
 * whitespace control, filters (trim, length, tojson, string, default, join, items, ...),
 * string/dict methods, slicing, `in`, tests (defined, none, string, ...), `~`,
 * raise_exception and strftime_now. It renders like transformers' apply_chat_template:
 * trim_blocks and lstrip_blocks on, one trailing newline of the template dropped.
 * Errors (syntax, unknown filter or test, raise_exception) come back as a vkd_error that
 * names the line and column in the template. */
#ifndef VKD_CHAT_TEMPLATE_H
#define VKD_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "vkd_base.h"

typedef struct vkd_tpl vkd_tpl;

typedef struct vkd_tpl_message {
    const char *role;              /* "system", "user", "assistant", "tool" */
    const char *content;           /* NULL renders as none */
    const char *reasoning_content; /* NULL = absent (Qwen3 assistant turns may carry it) */
} vkd_tpl_message;

typedef enum vkd_tpl_thinking {
    VKD_TPL_THINKING_DEFAULT = 0,  /* enable_thinking left undefined (Qwen3 then thinks) */
    VKD_TPL_THINKING_ON,
    VKD_TPL_THINKING_OFF,
} vkd_tpl_thinking;

/* Zero-initialised = defaults. */
typedef struct vkd_tpl_opts {
    bool add_generation_prompt;
    vkd_tpl_thinking enable_thinking;
    const char *bos_token;         /* NULL = "" */
    const char *eos_token;         /* NULL = "" */
    const char *date;              /* "YYYY-MM-DD" seen by strftime_now; NULL = today (local) */
} vkd_tpl_opts;

/* Parses template source (len bytes). */
vkd_result vkd_tpl_compile(const char *src, size_t len, vkd_tpl **out, vkd_error *err);
void vkd_tpl_free(vkd_tpl *tpl);

/* Renders with messages[0..n) and opts; *out is malloc'd and NUL-terminated. */
vkd_result vkd_tpl_render(const vkd_tpl *tpl, const vkd_tpl_message *messages, size_t n,
                          const vkd_tpl_opts *opts, char **out, size_t *len, vkd_error *err);

#endif
