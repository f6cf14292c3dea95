/* vkdraft generate: autoregressive generation with a target model, streamed as text. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "prompt.h"
#include "vkd_generate.h"

static void usage(void) {
    printf("usage: vkdraft generate --model DIR (--prompt TEXT | --chat TEXT | --ids 1,2,3)\n"
           "           [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
           "           [--think] [--system TEXT] [--ctx-len N] [--kv-dtype f32|f16] [--json]\n\n"
           "Streams the generated text on stdout (progress and timing on stderr) and stops at\n"
           "an EOS id of generation_config.json / config.json or after --max-new-tokens\n"
           "(default 128). Sampling defaults come from generation_config.json (greedy when it\n"
           "has do_sample false or is absent); --temperature 0 forces greedy. top-k 0 and\n"
           "top-p 1 are off. --chat uses the model's own chat template (Qwen3: thinking off\n"
           "unless --think; --system and --think need --chat). --json prints {\"ids\", \"text\",\n"
           "\"prefill_tok_s\", \"decode_tok_s\"} instead of streaming. With --ids a model folder without\n"
           "a tokenizer works too: the generated ids are printed (\"text\" is null with --json).\n"
           "--seed (default 0) drives all randomness.\n");
}

typedef struct stream_ctx {
    vkd_tok_stream *ts;
    bool print;
} stream_ctx;

static void on_token(void *user, int32_t id) {
    stream_ctx *s = user;
    if (!s->print || !s->ts) return;
    const char *text;
    size_t len;
    vkd_error err = {0};
    if (vkd_tok_stream_push(s->ts, id, &text, &len, &err) == VKD_OK && len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
}

int vkd_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *kv = "f32";
    prompt_flags pf = {0};
    long max_new = 128, top_k = -1, ctx_len = 0;
    double temp = -1, top_p = -1;
    unsigned long long seed = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (prompt_flag("generate", &pf, argc, argv, &i)) continue;
        if ((v = cli_value("generate", "--model", argc, argv, &i))) model = v;
        else if ((v = cli_value("generate", "--max-new-tokens", argc, argv, &i)))
            max_new = cli_parse_long("generate", "--max-new-tokens", v, 1, 1 << 20);
        else if ((v = cli_value("generate", "--temperature", argc, argv, &i)))
            temp = cli_parse_double("generate", "--temperature", v, 0, 100);
        else if ((v = cli_value("generate", "--top-k", argc, argv, &i)))
            top_k = cli_parse_long("generate", "--top-k", v, 0, 1 << 30);
        else if ((v = cli_value("generate", "--top-p", argc, argv, &i)))
            top_p = cli_parse_double("generate", "--top-p", v, 0, 1);
        else if ((v = cli_value("generate", "--seed", argc, argv, &i)))
            seed = (unsigned long long)cli_parse_long("generate", "--seed", v, 0, __LONG_MAX__);
        else if ((v = cli_value("generate", "--ctx-len", argc, argv, &i)))
            ctx_len = cli_parse_long("generate", "--ctx-len", v, 1, 1 << 24);
        else if ((v = cli_value("generate", "--kv-dtype", argc, argv, &i))) kv = v;
        else if (cli_is("--json", argv[i])) json = true;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error("generate", "unknown flag '%s'", argv[i]);
    }
    if (!model) cli_usage_error("generate", "--model DIR is required");
    prompt_require("generate", &pf);
    if (strcmp(kv, "f32") && strcmp(kv, "f16")) cli_usage_error("generate", "--kv-dtype must be f32 or f16");

    vkd_error err = {0};
    vkd_tok *tok = NULL;
    {   /* with --ids the tokenizer is optional: without one the ids are the output */
        vkd_result r = vkd_tok_load(model, &tok, &err);
        if (r && !pf.ids) cli_check(r, &err);
        if (r) fprintf(stderr, "generate: no tokenizer in %s: %s ids, no text\n", model,
                       json ? "--json has the" : "printing the generated");
    }
    size_t n;
    int32_t *ids = prompt_encode("generate", &pf, tok, &n);

    vkd_ctx *ctx;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    vkd_target_options to = {.kv_dtype = strcmp(kv, "f16") ? VKD_DTYPE_F32 : VKD_DTYPE_F16};
    if (ctx_len) to.ctx_len = (uint32_t)ctx_len;
    else to.ctx_len = ctx_len_fit(model, n + (uint64_t)max_new, n + (uint64_t)max_new,
                                  "generate: prompt (%zu tokens) + --max-new-tokens (%ld)", n, max_new);
    vkd_target *t;
    cli_check(vkd_target_load(ctx, model, &to, &t, &err), &err);

    vkd_generate_options go = {.max_new_tokens = (uint32_t)max_new};
    const vkd_gen_cfg *g = &t->gen;
    go.sample.temperature = g->do_sample ? (float)g->temperature : 0.0f;
    go.sample.top_k = g->do_sample && g->top_k > 0 ? (uint32_t)g->top_k : 0;
    go.sample.top_p = g->do_sample ? (float)g->top_p : 1.0f;
    if (temp >= 0) go.sample.temperature = (float)temp;
    if (top_k >= 0) go.sample.top_k = (uint32_t)top_k;
    if (top_p >= 0) go.sample.top_p = (float)top_p;
    go.sample.seed = seed;
    int32_t stops[2 * VKD_CFG_MAX_EOS];
    go.stop_ids = stops;
    go.nstop = target_stop_ids(t, stops, 2 * VKD_CFG_MAX_EOS);
    stream_ctx sc = {.print = !json};
    if (tok) cli_check(vkd_tok_stream_new(tok, true, &sc.ts, &err), &err);
    go.on_token = on_token;
    go.user = &sc;

    vkd_rec *rec;
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    vkd_generate_result res;
    cli_check(vkd_generate(t, rec, ids, (uint32_t)n, &go, &res, &err), &err);
    if (sc.ts && !json) {
        const char *text;
        size_t len;
        vkd_tok_stream_flush(sc.ts, &text, &len);
        fwrite(text, 1, len, stdout);
        putchar('\n');
    } else if (!json) { /* no tokenizer: the ids */
        for (uint32_t i = 0; i < res.n; i++) printf("%s%d", i ? "," : "", res.ids[i]);
        putchar('\n');
    }
    double prefill_tps = n / res.prefill_s;
    double decode_tps = res.n > 1 ? (res.n - 1) / res.decode_s : 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *a = cJSON_AddArrayToObject(o, "ids");
        for (uint32_t i = 0; i < res.n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(res.ids[i]));
        if (tok) {
            char *text = decode_generated(tok, res.ids, res.n);
            cJSON_AddStringToObject(o, "text", text);
            free(text);
        } else {
            cJSON_AddNullToObject(o, "text");
        }
        cJSON_AddNumberToObject(o, "prompt_tokens", (double)n);
        cJSON_AddBoolToObject(o, "stopped", res.stopped);
        cJSON_AddNumberToObject(o, "prefill_tok_s", prefill_tps);
        cJSON_AddNumberToObject(o, "decode_tok_s", decode_tps);
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    }
    fprintf(stderr, "generate: %zu prompt tokens at %.1f tok/s, %u new tokens at %.2f tok/s%s\n", n,
            prefill_tps, res.n, decode_tps, res.stopped ? " (stop token)" : "");
    if (vkd_ctx_validation_count(ctx))
        cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(ctx));
    free(res.ids);
    vkd_tok_stream_free(sc.ts);
    vkd_rec_destroy(rec);
    vkd_target_free(t);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    vkd_tok_free(tok);
    free(ids);
    return 0;
}
