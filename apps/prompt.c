/* prompt.c: --prompt / --chat / --ids to token ids, through the model's tokenizer and its
 * own chat template. */
#include "prompt.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "config.h"
#include "dataset.h"
#include "cli.h"
#include "vkd_target.h"

bool prompt_flag(const char *cmd, prompt_flags *p, int argc, char **argv, int *i) {
    const char *v;
    if ((v = cli_value(cmd, "--prompt", argc, argv, i))) p->prompt = v;
    else if ((v = cli_value(cmd, "--chat", argc, argv, i))) p->chat = v;
    else if ((v = cli_value(cmd, "--system", argc, argv, i))) p->system = v;
    else if ((v = cli_value(cmd, "--ids", argc, argv, i))) p->ids = v;
    else if (cli_is("--think", argv[*i])) p->think = true;
    else return false;
    return true;
}

void prompt_require(const char *cmd, const prompt_flags *p) {
    int n = !!p->prompt + !!p->chat + !!p->ids;
    if (n != 1) cli_usage_error(cmd, "give exactly one of --prompt, --chat or --ids");
    /* a flag that would be ignored is an error */
    if (!p->chat && p->system) cli_usage_error(cmd, "--system applies to --chat only");
    if (!p->chat && p->think) cli_usage_error(cmd, "--think applies to --chat only");
}

int32_t *parse_id_list(const char *cmd, const char *flag, const char *s, size_t *n) {
    return parse_index_list(cmd, flag, s, "token ids", n);
}

int32_t *parse_index_list(const char *cmd, const char *flag, const char *s, const char *what, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) cli_fatal("out of memory");
    const char *p = s;
    while (isspace((unsigned char)*p)) p++;
    bool bracket = *p == '[';
    if (bracket) p++;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (bracket && *p == ']' && k == 0) { p++; break; }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX)
            cli_usage_error(cmd, "%s: expected a list of non-negative %s, got '%s'", flag, what, s);
        if (k == cap) {
            cap *= 2;
            ids = realloc(ids, cap * sizeof *ids);
            if (!ids) cli_fatal("out of memory");
        }
        ids[k++] = (int32_t)v;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') { p++; continue; }
        if (bracket && *p == ']') { p++; break; }
        break;
    }
    while (isspace((unsigned char)*p)) p++;
    if (*p) cli_usage_error(cmd, "%s: unexpected '%s' in the list of %s", flag, p, what);
    if (k == 0) cli_usage_error(cmd, "%s: the list of %s is empty", flag, what);
    *n = k;
    return ids;
}

char *chat_render(const char *cmd, vkd_tok *tok, const char *system, const char *user, bool think) {
    const char *roles[2] = {"system", "user"}, *contents[2] = {system, user};
    return system ? chat_render_turns(cmd, tok, roles, contents, 2, think)
                  : chat_render_turns(cmd, tok, roles + 1, contents + 1, 1, think);
}

char *chat_render_turns(const char *cmd, vkd_tok *tok, const char *const *roles,
                        const char *const *contents, size_t n, bool think) {
    const char *src = vkd_tok_chat_template(tok);
    if (!src) cli_fatal("%s: the model's tokenizer_config.json has no chat_template; use --prompt", cmd);
    vkd_error err = {0};
    vkd_tpl *tpl;
    cli_check(vkd_tpl_compile(src, strlen(src), &tpl, &err), &err);
    vkd_tpl_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) cli_fatal("out of memory");
    for (size_t i = 0; i < n; i++) msgs[i] = (vkd_tpl_message){.role = roles[i], .content = contents[i]};
    vkd_tpl_opts o = {
        .add_generation_prompt = true,
        .enable_thinking = think ? VKD_TPL_THINKING_ON : VKD_TPL_THINKING_OFF,
        .bos_token = vkd_tok_bos_token(tok),
        .eos_token = vkd_tok_eos_token(tok),
    };
    char *text;
    size_t len;
    vkd_result r = vkd_tpl_render(tpl, msgs, n, &o, &text, &len, &err);
    vkd_tpl_free(tpl);
    free(msgs);
    if (r) cli_fatal("chat template: %s", err.msg);
    return text;
}

int32_t *prompt_encode(const char *cmd, const prompt_flags *p, vkd_tok *tok, size_t *n) {
    if (p->ids) return parse_id_list(cmd, "--ids", p->ids, n);
    vkd_error err = {0};
    int32_t *ids;
    if (p->chat) {
        char *text = chat_render(cmd, tok, p->system, p->chat, p->think);
        /* the template writes any BOS itself */
        cli_check(vkd_tok_encode(tok, text, strlen(text), false, &ids, n, &err), &err);
        free(text);
    } else {
        cli_check(vkd_tok_encode(tok, p->prompt, strlen(p->prompt), true, &ids, n, &err), &err);
    }
    if (*n == 0) cli_fatal("%s: the prompt encodes to no tokens", cmd);
    return ids;
}

int32_t *encode_rendered(vkd_tok *tok, const char *text, size_t *n) {
    vkd_error err = {0};
    int32_t *ids;
    cli_check(vkd_tok_encode(tok, text, strlen(text), false, &ids, n, &err), &err);
    return ids;
}

char *decode_generated(vkd_tok *tok, const int32_t *ids, size_t n) {
    int32_t *known = malloc((n ? n : 1) * sizeof *known);
    if (!known) cli_fatal("out of memory");
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        if (vkd_tok_id_to_token(tok, ids[i])) known[nk++] = ids[i];
    vkd_error err = {0};
    char *text;
    size_t len;
    cli_check(vkd_tok_decode(tok, known, nk, true, &text, &len, &err), &err);
    free(known);
    return text;
}

char *chat_render_record(const char *cmd, vkd_tok *tok, const vkd_ds_record *r, bool think) {
    if (r->prompt) return chat_render(cmd, tok, NULL, r->prompt, think);
    const char **roles = malloc((r->n_messages ? r->n_messages : 1) * sizeof *roles);
    const char **contents = malloc((r->n_messages ? r->n_messages : 1) * sizeof *contents);
    if (!roles || !contents) cli_fatal("out of memory");
    for (size_t m = 0; m < r->n_messages; m++) {
        roles[m] = r->messages[m].role;
        contents[m] = r->messages[m].content;
    }
    char *text = chat_render_turns(cmd, tok, roles, contents, r->n_messages, think);
    free(roles);
    free(contents);
    return text;
}

uint32_t target_stop_ids(const vkd_target *t, int32_t *stops, uint32_t cap) {
    uint32_t n = 0;
    for (int i = 0; i < t->gen.n_eos && n < cap; i++) stops[n++] = (int32_t)t->gen.eos_token_ids[i];
    if (!t->gen.present)
        for (int i = 0; i < t->cfg.n_eos && n < cap; i++) stops[n++] = (int32_t)t->cfg.eos_token_ids[i];
    return n;
}

size_t *draw_records(size_t count) {
    size_t *order = malloc((count ? count : 1) * sizeof *order);
    if (!order) cli_fatal("out of memory");
    for (size_t i = 0; i < count; i++) order[i] = i;
    unsigned long long s = 0x9E3779B97F4A7C15ull;
    for (size_t i = count ? count - 1 : 0; i > 0; i--) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = (size_t)(s % (i + 1));
        size_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    return order;
}

uint32_t ctx_len_fit(const char *model_dir, uint64_t want, uint64_t need, const char *fmt, ...) {
    vkd_cfg c;
    vkd_error err = {0};
    cli_check(vkd_cfg_load(model_dir, &c, &err), &err);
    uint64_t max = c.max_position_embeddings > 0 ? (uint64_t)c.max_position_embeddings : 0;
    if (need > max) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        cli_fatal("%s exceeds the model's max_position_embeddings (%llu)", what, (unsigned long long)max);
    }
    return (uint32_t)(want < max ? want : max);
}
