/* vkdraft bench generate / bench spec: model-level timings on the device, with the decode
 * roofline (weight bytes read per token / measured copy bandwidth). Figures, not verdicts. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "budget.h"
#include "cli.h"
#include "vkd_spec.h"

typedef struct model_flags {
    const char *model, *draft;
    long prompt, gen, reps;
} model_flags;

static void parse(const char *cmd, int argc, char **argv, model_flags *f, bool want_draft) {
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_value(cmd, "--model", argc, argv, &i))) f->model = v;
        else if ((v = cli_value(cmd, "--target", argc, argv, &i))) f->model = v;
        else if (want_draft && (v = cli_value(cmd, "--draft", argc, argv, &i))) f->draft = v;
        else if ((v = cli_value(cmd, "--prompt-tokens", argc, argv, &i))) f->prompt = cli_parse_long(cmd, "--prompt-tokens", v, 1, 16384);
        else if ((v = cli_value(cmd, "--gen-tokens", argc, argv, &i))) f->gen = cli_parse_long(cmd, "--gen-tokens", v, 2, 16384);
        else if ((v = cli_value(cmd, "--reps", argc, argv, &i))) f->reps = cli_parse_long(cmd, "--reps", v, 1, 1000);
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            if (want_draft)
                printf("usage: vkdraft bench spec --target DIR --draft DIR [--prompt-tokens N] [--reps N]\n\n"
                       "Times one DFlash draft call (context of one block + block), one target\n"
                       "verification forward of B tokens and one plain decode step, all greedy (token\n"
                       "ids from the fused LM head + argmax, as spec at temperature 0), then prints the\n"
                       "speed-up a given tau would give: tau * t_decode / (t_draft + t_verify), and\n"
                       "the efficiency speed-up / tau. Measured tau comes from 'vkdraft spec'. A first\n"
                       "run warms up (pipelines compile at their first dispatch) and is printed apart.\n"
                       "Then the compute budget of the pair (seeds 001/004 item 0.4) for a prompt of\n"
                       "--prompt-tokens (default 128) and one block: target prefill time (with taps),\n"
                       "draft call time, verification time (medians of --reps, default 5) and the bytes\n"
                       "held by the target's and the draft's KV caches and the hidden-state taps\n"
                       "(per token and for the prompt + one block).\n");
            else
                printf("usage: vkdraft bench generate --model DIR [--prompt-tokens N] [--gen-tokens N] [--reps N]\n\n"
                       "Prefill and decode tokens/s on the selected device (greedy, random prompt ids),\n"
                       "and decode time against the memory-bandwidth floor: bytes of weights read per\n"
                       "token / the device's measured copy bandwidth. Defaults: 128 prompt tokens,\n"
                       "32 generated, 3 repetitions (median) after a warm-up run, printed apart (pipelines\n"
                       "compile at their first dispatch). tools/bench-generate.sh runs llama.cpp\n"
                       "on the same weights in the same run.\n");
            exit(0);
        } else cli_usage_error(cmd, "unknown flag '%s'", argv[i]);
    }
    if (!f->model) cli_usage_error(cmd, "--model DIR is required");
    if (want_draft && !f->draft) cli_usage_error(cmd, "--draft DIR is required");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return x[n / 2];
}

static int32_t *random_ids(uint32_t n, uint32_t vocab) {
    int32_t *ids = malloc(n * sizeof *ids);
    unsigned long long s = 12345;
    for (uint32_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        ids[i] = (int32_t)(s % (vocab > 1000 ? 1000 : vocab)); /* ordinary (non-special) ids */
    }
    return ids;
}

int vkd_bench_generate(int argc, char **argv) {
    model_flags f = {.prompt = 128, .gen = 32, .reps = 3};
    parse("bench generate", argc, argv, &f, false);
    vkd_error err = {0};
    bench_env env = {.reps = 3};
    cli_check(vkd_ctx_create(NULL, &env.ctx, &err), &err);
    cli_check(vkd_rec_create(env.ctx, &env.rec, &err), &err);
    env.copy_gbs = bench_copy_gbs(&env);
    vkd_target_options to = {.ctx_len = (uint32_t)(f.prompt + f.gen + 1)};
    vkd_target *t;
    cli_check(vkd_target_load(env.ctx, f.model, &to, &t, &err), &err);
    const vkd_device_info *d = vkd_ctx_info(env.ctx);
    int32_t *ids = random_ids((uint32_t)f.prompt, t->vocab);
    double *pre = malloc(f.reps * sizeof *pre), *dec = malloc(f.reps * sizeof *dec);
    double cold_pre = 0, cold_dec = 0;
    /* rep -1 warms up: lavapipe compiles each pipeline at its first dispatch (JIT, 10-150
     * ms each), so the first run's figures are printed apart and kept out of the medians */
    for (long r = -1; r < f.reps; r++) {
        vkd_generate_options go = {.max_new_tokens = (uint32_t)f.gen};
        vkd_generate_result g;
        cli_check(vkd_generate(t, env.rec, ids, (uint32_t)f.prompt, &go, &g, &err), &err);
        double p1 = g.prefill_s, d1 = g.n > 1 ? g.decode_s / (g.n - 1) : 0;
        if (r < 0) cold_pre = p1, cold_dec = d1;
        else pre[r] = p1, dec[r] = d1;
        if (r < 0) vkd_ctx_profile_reset(env.ctx); /* VKDRAFT_PROFILE: the timed runs only */
        free(g.ids);
    }
    double tp = median(pre, (int)f.reps), td = median(dec, (int)f.reps);
    double floor_s = t->weight_bytes / (env.copy_gbs * 1e9);
    printf("device: %s (%s)\n", d->name, d->driver);
    printf("model: %s  (%u layers, hidden %u, vocab %u, weights %s, %.1f MB read per token)\n", f.model,
           t->n_layers, t->hidden, t->vocab, vkd_dtype_name(t->layers[0].wq.w->dtype), t->weight_bytes / 1e6);
    printf("copy bandwidth: %.2f GB/s (read + write)\n", env.copy_gbs);
    printf("first run (warm-up, includes pipeline compilation): prefill %.3f s, decode %.2f ms/token\n",
           cold_pre, cold_dec * 1e3);
    printf("prefill: %ld tokens in %.3f s = %.2f tok/s\n", f.prompt, tp, f.prompt / tp);
    printf("decode:  %.2f ms/token = %.2f tok/s; bandwidth floor %.2f ms/token -> %.1f %% of the floor\n",
           td * 1e3, 1.0 / td, floor_s * 1e3, 100.0 * floor_s / td);
    printf("vkdraft backend=vulkan device=\"%s\" prompt=%ld gen=%ld prefill_tok_s=%.3f decode_tok_s=%.3f floor_fraction=%.3f\n",
           d->name, f.prompt, f.gen, f.prompt / tp, 1.0 / td, floor_s / td);
    free(pre);
    free(dec);
    free(ids);
    vkd_target_free(t);
    vkd_rec_destroy(env.rec);
    cli_print_profile(env.ctx);
    vkd_ctx_destroy(env.ctx);
    return 0;
}

int vkd_bench_spec(int argc, char **argv) {
    model_flags f = {.prompt = 128, .gen = 2, .reps = 5};
    parse("bench spec", argc, argv, &f, true);
    vkd_error err = {0};
    vkd_ctx *ctx;
    vkd_rec *rec;
    cli_check(vkd_ctx_create(NULL, &ctx, &err), &err);
    cli_check(vkd_rec_create(ctx, &rec, &err), &err);
    vkd_target_options to = {.ctx_len = (uint32_t)f.prompt + 2 * 64 + 2};
    vkd_target *t;
    cli_check(vkd_target_load(ctx, f.model, &to, &t, &err), &err);
    vkd_dflash *dr;
    cli_check(vkd_dflash_load(ctx, t, f.draft, NULL, &dr, &err), &err);
    uint32_t B = dr->block, H = t->hidden;
    int32_t *ids = random_ids((uint32_t)f.prompt + B, t->vocab);
    vkd_tensor *feat, *am;
    cli_check(vkd_tensor_create_2d(ctx, VKD_DTYPE_F32, t->max_rows, (uint64_t)dr->ntaps * H, "features", &feat, &err), &err);
    /* greedy, as spec at temperature 0: token ids (fused LM head + argmax), no logits read */
    cli_check(vkd_tensor_create_2d(ctx, VKD_DTYPE_I32, 1, B, "argmax", &am, &err), &err);
    double *tdraft = malloc(f.reps * sizeof(double)), *tver = malloc(f.reps * sizeof(double)),
           *tdec = malloc(f.reps * sizeof(double)), *tpre = malloc(f.reps * sizeof(double));
    int32_t block[256];
    double cold[4] = {0};
    uint32_t nd[3] = {0}; /* dispatches of a draft call, a verification, a decode step */
    /* rep -1 warms up (pipeline compilation at first dispatch), reported apart */
    for (long r = -1; r < f.reps; r++) {
        double *td = r < 0 ? &cold[0] : &tdraft[r], *tv = r < 0 ? &cold[1] : &tver[r],
               *tt = r < 0 ? &cold[2] : &tdec[r], *tpr = r < 0 ? &cold[3] : &tpre[r];
        /* prompt into target and draft */
        t->len = 0;
        dr->len = 0;
        double tp0 = vkd_now();
        for (uint32_t done = 0; done < (uint32_t)f.prompt;) {
            uint32_t m = (uint32_t)f.prompt - done < t->max_rows ? (uint32_t)f.prompt - done : t->max_rows;
            vkd_target_step s = {.ids = ids + done, .m = m, .tap_layers = dr->tap_layers, .ntaps = dr->ntaps, .features = feat};
            vkd_rec_begin(rec);
            cli_check(vkd_target_step_record(t, rec, &s, &err), &err);
            cli_check(vkd_dflash_context_record(dr, rec, feat, 0, m, &err), &err);
            cli_check(vkd_rec_submit(rec), vkd_rec_error(rec));
            done += m;
        }
        *tpr = vkd_now() - tp0;
        /* one draft call: a block's worth of new context + the block */
        block[0] = ids[f.prompt];
        for (uint32_t i = 1; i < B; i++) block[i] = dr->mask_id;
        double t0 = vkd_now();
        vkd_rec_begin(rec);
        cli_check(vkd_dflash_context_record(dr, rec, feat, 0, B, &err), &err);
        cli_check(vkd_dflash_block_argmax_record(dr, rec, block, am, &err), &err);
        nd[0] = vkd_rec_dispatches(rec);
        cli_check(vkd_rec_submit(rec), vkd_rec_error(rec));
        *td = vkd_now() - t0;
        /* one verification forward of B tokens with logits and taps */
        t0 = vkd_now();
        vkd_target_step s = {.ids = ids + f.prompt, .m = B, .logits_rows = B, .tap_layers = dr->tap_layers,
                             .ntaps = dr->ntaps, .features = feat, .argmax = am};
        vkd_rec_begin(rec);
        cli_check(vkd_target_step_record(t, rec, &s, &err), &err);
        nd[1] = vkd_rec_dispatches(rec);
        cli_check(vkd_rec_submit(rec), vkd_rec_error(rec));
        *tv = vkd_now() - t0;
        /* one plain decode step with the last-row logits */
        cli_check(vkd_target_crop(t, (uint32_t)f.prompt, &err), &err);
        t0 = vkd_now();
        vkd_target_step one = {.ids = ids + f.prompt, .m = 1, .logits_rows = 1, .argmax = am};
        vkd_rec_begin(rec);
        cli_check(vkd_target_step_record(t, rec, &one, &err), &err);
        nd[2] = vkd_rec_dispatches(rec);
        cli_check(vkd_rec_submit(rec), vkd_rec_error(rec));
        *tt = vkd_now() - t0;
        if (r < 0) vkd_ctx_profile_reset(ctx); /* VKDRAFT_PROFILE: the timed runs only */
    }
    double a = median(tdraft, (int)f.reps), v = median(tver, (int)f.reps), dd = median(tdec, (int)f.reps);
    const vkd_device_info *di = vkd_ctx_info(ctx);
    printf("device: %s (%s)\n", di->name, di->driver);
    printf("target %s (%u layers, hidden %u), draft %s (%u layers, block %u), context %ld tokens\n",
           f.model, t->n_layers, H, f.draft, dr->n_layers, B, f.prompt);
    printf("first run (warm-up, includes pipeline compilation): draft call %.2f ms, verify %.2f ms, "
           "decode step %.2f ms\n", cold[0] * 1e3, cold[1] * 1e3, cold[2] * 1e3);
    printf("draft call %.2f ms, verify (%u tokens) %.2f ms, plain decode step %.2f ms (median of %ld)\n",
           a * 1e3, B, v * 1e3, dd * 1e3, f.reps);
    printf("dispatches: draft call %u, verify %u, decode step %u\n", nd[0], nd[1], nd[2]);
    printf("cost of one speculative step = %.2f plain decode steps\n", (a + v) / dd);
    printf("%6s %10s %10s\n", "tau", "speed-up", "efficiency");
    for (uint32_t tau = 1; tau <= B; tau++) {
        double sp = tau * dd / (a + v);
        printf("%6u %9.2fx %10.2f\n", tau, sp, sp / tau);
    }
    compute_budget cb = {.prompts = 1, .prompt_tokens = (uint64_t)f.prompt, .max_len = (uint64_t)f.prompt + B,
                         /* the warm-up run's prefill (pipeline compilation) is left out */
                         .prefill_s = median(tpre, (int)f.reps), .draft_calls = 1, .draft_s = a, .verify_steps = 1,
                         .verify_s = v};
    compute_budget_sizes(t, dr, &cb);
    compute_budget_print(stdout, &cb);
    free(tdraft);
    free(tver);
    free(tdec);
    free(tpre);
    free(ids);
    vkd_tensor_destroy(feat);
    vkd_tensor_destroy(am);
    vkd_dflash_free(dr);
    vkd_target_free(t);
    vkd_rec_destroy(rec);
    cli_print_profile(ctx);
    vkd_ctx_destroy(ctx);
    return 0;
}
