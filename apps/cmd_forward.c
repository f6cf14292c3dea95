/* vkdraft forward: one teacher-forced pass; logits of every position and hidden states of
 * chosen layers, written as safetensors for numpy/torch. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "prompt.h"
#include "st_write.h"
#include "vkd_target.h"

static void usage(void) {
    printf("usage: vkdraft forward --model DIR (--prompt TEXT | --chat TEXT | --ids 1,2,3)\n"
           "                      --out FILE.safetensors [--layers 0,5,...] [--kv-dtype f32|f16]\n\n"
           "Runs the target over the whole input once (teacher forcing) and writes\n"
           "  logits      [T, V] f32, every position\n"
           "  hidden.<i>  [T, H] f32 for each --layers entry: the output of decoder layer i\n"
           "              (0-based) before the final norm\n"
           "  ids         [T] i32, the input ids\n"
           "--chat wraps TEXT as one user turn through the model's chat template (Qwen3:\n"
           "thinking off unless --think; --system TEXT adds a system turn).\n");
}

int vkd_cmd_forward(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *layers = NULL, *kv = "f32";
    prompt_flags pf = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (prompt_flag("forward", &pf, argc, argv, &i)) continue;
        if ((v = cli_value("forward", "--model", argc, argv, &i))) model = v;
        else if ((v = cli_value("forward", "--out", argc, argv, &i))) out = v;
        else if ((v = cli_value("forward", "--layers", argc, argv, &i))) layers = v;
        else if ((v = cli_value("forward", "--kv-dtype", argc, argv, &i))) kv = v;
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
        else cli_usage_error("forward", "unknown flag '%s'", argv[i]);
    }
    if (!model) cli_usage_error("forward", "--model DIR is required");
    if (!out) cli_usage_error("forward", "--out FILE.safetensors is required");
    prompt_require("forward", &pf);
    cli_check_out_file("forward", "--out", out);
    if (strcmp(kv, "f32") && strcmp(kv, "f16")) cli_usage_error("forward", "--kv-dtype must be f32 or f16");

    vkd_error err = {0};
    vkd_tok *tok = NULL;
    if (!pf.ids) cli_check(vkd_tok_load(model, &tok, &err), &err);
    size_t T;
    int32_t *ids = prompt_encode("forward", &pf, tok, &T);
    size_t ntaps = 0;
    int32_t *taps = layers ? parse_index_list("forward", "--layers", layers, "layer indices", &ntaps) : NULL;
    for (size_t i = 0; i < ntaps; i++)
        for (size_t j = 0; j < i; j++)
            if (taps[i] == taps[j]) cli_usage_error("forward", "--layers: layer %d appears twice", taps[i]);

    vkd_ctx *ctx;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    vkd_target_options to = {.ctx_len = 0, .kv_dtype = strcmp(kv, "f16") ? VKD_DTYPE_F32 : VKD_DTYPE_F16};
    vkd_target *t;
    /* context: exactly the input (bounded by the model) */
    to.ctx_len = ctx_len_fit(model, T, T, "forward: the input (%zu tokens)", T);
    cli_check(vkd_target_load(ctx, model, &to, &t, &err), &err);
    for (size_t i = 0; i < ntaps; i++)
        if ((uint32_t)taps[i] >= t->n_layers)
            cli_usage_error("forward", "--layers: layer %d does not exist (the model has %u)", taps[i], t->n_layers);
    uint32_t H = t->hidden, V = t->vocab;
    uint32_t step = t->max_rows < t->logit_rows ? t->max_rows : t->logit_rows;
    vkd_tensor *feat = NULL;
    if (ntaps) cli_check(vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, step, ntaps * H, "features", &feat, &err), &err);
    float *logits = malloc((size_t)T * V * sizeof(float));
    float *hid = ntaps ? malloc((size_t)T * ntaps * H * sizeof(float)) : NULL;
    float *rowbuf = ntaps ? malloc((size_t)step * ntaps * H * sizeof(float)) : NULL;
    if (!logits || (ntaps && (!hid || !rowbuf))) cli_fatal("out of memory for %zu x %u logits", T, V);
    uint32_t *tapl = malloc((ntaps + 1) * sizeof *tapl);
    for (size_t i = 0; i < ntaps; i++) tapl[i] = (uint32_t)taps[i];
    vkd_rec *rec;
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    for (size_t done = 0; done < T;) {
        uint32_t m = (uint32_t)(T - done < step ? T - done : step);
        vkd_target_step s = {.ids = ids + done, .m = m, .logits_rows = m, .tap_layers = tapl,
                             .ntaps = (uint32_t)ntaps, .features = feat};
        vkd_rec_begin(rec);
        cli_check(vkd_target_step_record(t, rec, &s, &err), &err);
        vkd_rec_read(rec, t->logits, 0, logits + done * V, (uint64_t)m * V * 4);
        if (ntaps) vkd_rec_read(rec, feat, 0, rowbuf, (uint64_t)m * ntaps * H * 4);
        cli_check(vkd_rec_submit(rec), vkd_rec_error(rec));
        for (size_t k = 0; k < ntaps; k++)
            for (uint32_t r = 0; r < m; r++)
                memcpy(hid + ((size_t)k * T + done + r) * H, rowbuf + ((size_t)r * ntaps + k) * H, H * 4);
        done += m;
    }
    size_t nout = 2 + ntaps;
    vkd_st_out *o = calloc(nout, sizeof *o);
    char (*names)[32] = calloc(ntaps + 1, 32);
    o[0] = (vkd_st_out){"ids", VKD_DTYPE_I32, 1, {(int64_t)T}, ids};
    o[1] = (vkd_st_out){"logits", VKD_DTYPE_F32, 2, {(int64_t)T, V}, logits};
    for (size_t k = 0; k < ntaps; k++) {
        snprintf(names[k], 32, "hidden.%d", taps[k]);
        o[2 + k] = (vkd_st_out){names[k], VKD_DTYPE_F32, 2, {(int64_t)T, H}, hid + k * T * H};
    }
    const char *md[] = {"format", "pt", "producer", "vkdraft forward " VKD_VERSION, NULL};
    cli_check(vkd_st_write(out, o, nout, md, &err), &err);
    fprintf(stderr, "forward: %zu tokens, %zu layer(s) -> %s\n", T, ntaps, out);
    if (vkd_ctx_validation_count(ctx))
        cli_fatal("Vulkan validation reported: %s", vkd_ctx_validation_first(ctx));
    vkd_rec_destroy(rec);
    vkd_tensor_destroy(feat);
    vkd_target_free(t);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    vkd_tok_free(tok);
    free(o); free(names); free(logits); free(hid); free(rowbuf); free(tapl); free(ids); free(taps);
    return 0;
}
