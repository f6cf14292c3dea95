/* vkdraft tokenize: text -> token ids (optionally through the model's chat template) and
 * ids -> text, with the model folder's own tokenizer.json / tokenizer_config.json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "cli.h"
#include "cmds.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vkdraft tokenize --model DIR [flags] TEXT\n"
            "       vkdraft tokenize --model DIR [flags] --file F      (F = - reads stdin)\n"
            "       vkdraft tokenize --model DIR --decode IDS           (1,2,3 or [1, 2, 3])\n\n"
            "Encodes UTF-8 text with the model's tokenizer.json and prints the ids on one line.\n\n"
            "  --model DIR   model folder with tokenizer.json (and tokenizer_config.json)\n"
            "  --chat        wrap TEXT as one user turn with the model's chat_template and the\n"
            "                assistant generation prompt (the template adds BOS itself)\n"
            "  --system S    with --chat: a system turn before the user turn\n"
            "  --think       with --chat: enable_thinking=true (Qwen3; default is off)\n"
            "  --date D      with --chat: the date strftime_now sees, YYYY-MM-DD (default today)\n"
            "  --show-chat   with --chat: print the rendered prompt instead of ids\n"
            "  --no-special  encode without the post-processor's special tokens (Llama 3 BOS);\n"
            "                with --decode, drop special tokens from the text\n"
            "  --decode      the argument is a list of ids: print their text\n"
            "  --json        print {\"ids\": [...]} (or {\"text\": ...} with --decode)\n"
            "  --file F      read the text (or ids) from file F instead of the argument\n"
            "  --help        this text\n");
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) cli_fatal("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) cli_fatal("%s: out of memory", path);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    if (ferror(f)) cli_fatal("%s: read error", path);
    if (f != stdin) fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* "1,2,3", "1 2 3" or a JSON list. */
static int32_t *parse_ids(const char *s, size_t *n) {
    size_t cap = 64, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    bool json = *p == '[';
    if (json) p++;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p || (json && *p == ']')) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX)
            cli_usage_error("tokenize", "--decode expects token ids like 1,2,3 or [1, 2, 3]; bad value at '%.20s'", p);
        if (k == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (!ids) cli_fatal("out of memory");
        ids[k++] = (int32_t)v;
        p = end;
    }
    if (json && *p != ']') cli_usage_error("tokenize", "--decode: JSON list is missing its closing ']'");
    *n = k;
    return ids;
}

int vkd_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL, *system = NULL, *date = NULL;
    bool chat = false, think = false, json = false, no_special = false, decode = false, show_chat = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            usage(stdout);
            return 0;
        } else if ((v = cli_value("tokenize", "--model", argc, argv, &i))) model = v;
        else if ((v = cli_value("tokenize", "--file", argc, argv, &i))) file = v;
        else if ((v = cli_value("tokenize", "--system", argc, argv, &i))) system = v;
        else if ((v = cli_value("tokenize", "--date", argc, argv, &i))) date = v;
        else if (cli_is("--chat", argv[i])) chat = true;
        else if (cli_is("--think", argv[i])) think = true;
        else if (cli_is("--json", argv[i])) json = true;
        else if (cli_is("--no-special", argv[i])) no_special = true;
        else if (cli_is("--decode", argv[i])) decode = true;
        else if (cli_is("--show-chat", argv[i])) show_chat = true;
        else if (argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2]) cli_usage_error("tokenize", "unknown flag '%s'", argv[i]);
        else if (!text) text = argv[i];
        else cli_usage_error("tokenize", "more than one TEXT argument ('%s'); quote the text", argv[i]);
    }
    if (!model) cli_usage_error("tokenize", "--model DIR is required");
    if (!text && !file) cli_usage_error("tokenize", "give the TEXT to encode or --file F");
    if (text && file) cli_usage_error("tokenize", "give either TEXT or --file, not both");
    if (decode && chat) cli_usage_error("tokenize", "--decode and --chat do not go together");
    if (!chat && (think || system || date || show_chat))
        cli_usage_error("tokenize", "--think, --system, --date and --show-chat need --chat");
    if (date) {
        int y, m, d;
        char extra;
        if (sscanf(date, "%d-%d-%d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
            cli_usage_error("tokenize", "--date expects YYYY-MM-DD, got '%s'", date);
    }

    size_t len = 0;
    char *owned = file ? read_all(file, &len) : NULL;
    const char *input = owned ? owned : text;
    if (!owned) len = strlen(text);

    vkd_error err = {0};
    vkd_tok *tok;
    cli_check(vkd_tok_load(model, &tok, &err), &err);

    if (decode) {
        size_t n;
        int32_t *ids = parse_ids(input, &n);
        char *out;
        size_t ol;
        cli_check(vkd_tok_decode(tok, ids, n, no_special, &out, &ol, &err), &err);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "text", out);
            char *s = cJSON_PrintUnformatted(o);
            printf("%s\n", s);
            free(s);
            cJSON_Delete(o);
        } else {
            fwrite(out, 1, ol, stdout);
            putchar('\n');
        }
        free(out);
        free(ids);
        free(owned);
        vkd_tok_free(tok);
        return 0;
    }

    char *rendered = NULL;
    bool add_special = !no_special;
    if (chat) {
        const char *src = vkd_tok_chat_template(tok);
        if (!src) cli_fatal("%s/tokenizer_config.json has no chat_template", model);
        if (memchr(input, 0, len)) cli_fatal("--chat: the text contains a NUL byte");
        vkd_tpl *tpl;
        vkd_result r = vkd_tpl_compile(src, strlen(src), &tpl, &err);
        if (r) cli_fatal("%s/tokenizer_config.json: %s", model, err.msg);
        vkd_tpl_message msgs[2] = {{"system", system, NULL}, {"user", input, NULL}};
        vkd_tpl_opts opt = {.add_generation_prompt = true,
                            .enable_thinking = think ? VKD_TPL_THINKING_ON : VKD_TPL_THINKING_OFF,
                            .bos_token = vkd_tok_bos_token(tok), .eos_token = vkd_tok_eos_token(tok), .date = date};
        r = vkd_tpl_render(tpl, system ? msgs : msgs + 1, system ? 2 : 1, &opt, &rendered, &len, &err);
        vkd_tpl_free(tpl);
        if (r) cli_fatal("%s/tokenizer_config.json: %s", model, err.msg);
        if (show_chat) {
            fwrite(rendered, 1, len, stdout);
            free(rendered);
            free(owned);
            vkd_tok_free(tok);
            return 0;
        }
        input = rendered;
        add_special = false; /* as apply_chat_template(tokenize=True): the template has BOS */
    }

    int32_t *ids;
    size_t n;
    cli_check(vkd_tok_encode(tok, input, len, add_special, &ids, &n, &err), &err);
    fputs(json ? "{\"ids\":[" : "", stdout);
    for (size_t i = 0; i < n; i++) printf(json ? "%s%d" : "%s%d", i ? (json ? "," : " ") : "", ids[i]);
    fputs(json ? "]}\n" : "\n", stdout);
    free(ids);
    free(rendered);
    free(owned);
    vkd_tok_free(tok);
    return 0;
}
