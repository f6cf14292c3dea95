// llama_peer_bench.c: the llama.cpp peer for vkdraft's benchmarks.
//
// Built by tools/llamacpp/setup.sh against the prebuilt llama.cpp shared libraries that the
// npm packages @node-llama-cpp/linux-x64 (CPU) and @node-llama-cpp/linux-x64-vulkan (Vulkan)
// ship (they ship no llama-cli / llama-bench binaries), with the llama.h of the exact
// llama.cpp source node-llama-cpp bundles.
//
// Loads a GGUF, prefills N prompt tokens in one llama_decode (n_batch = n_ubatch = N),
// then greedily decodes M tokens one at a time (argmax over the logits; no sampler), and
// prints one machine-readable line:
//   llamacpp backend=<cpu|vulkan> threads=T ngl=G prompt=N gen=M prefill_tok_s=X decode_tok_s=Y
//     prefill_s=.. decode_s=.. model_bytes=..
// Prefill is timed after an untimed warm-up (one prefill + one decode step, then the KV
// cache is cleared; Vulkan compiles its pipelines there), as
// llama-bench does; decode is timed over the M steps that follow the timed prefill.
//
// Options:
//   -m FILE          GGUF model
//   -t N             threads (decode and batch), default 2
//   -ngl N           layers offloaded to the GPU backend (0 = CPU only), default 0
//   -p N             prompt length with synthetic ids (id = (1000 + 7919*i) % n_vocab), default 128
//   --ids a,b,c      explicit prompt ids instead of -p
//   --text STR       prompt = llama.cpp's tokenization of STR (no BOS/EOS added, special
//                    tokens parsed)
//   --tokenize-only  with --text: print "tok: ids" and exit (checks the GGUF's tokenizer)
//   -n M             generated tokens, default 32
//   -r R             timed prefill repetitions (mean is reported), default 1
//   --backend-dir D  directory with the libggml-*.so backends to load (required)
//   --backend NAME   label printed as backend=, default cpu
//   --print-ids      print "ids: ..." with the greedy continuation
//   --dump-logits F  write the f32 logits of the N prompt positions and of the M-1 decode
//                    steps, [N+M-1][n_vocab] raw little-endian floats (all prompt positions
//                    are then computed, so do not time with it)
//   --no-warmup      skip the warm-up
//   -v               keep llama.cpp's log output
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

static int verbose = 0;

static void log_cb(enum ggml_log_level level, const char *text, void *ud) {
    static enum ggml_log_level last = GGML_LOG_LEVEL_INFO;
    (void)ud;
    if (level == GGML_LOG_LEVEL_CONT) level = last;  // continuation of the previous message
    else last = level;
    if (verbose || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void usage(const char *a0) {
    fprintf(stderr,
            "usage: %s -m model.gguf --backend-dir DIR [-t threads] [-ngl layers] [-p N | --ids a,b,...]\n"
            "          [-n gen] [-r reps] [--backend NAME] [--print-ids] [--dump-logits FILE] [--no-warmup] [-v]\n",
            a0);
    exit(2);
}

// decode tokens ids[0..n) at positions pos0.., requesting logits for all (all=1) or the last
static int decode(struct llama_context *ctx, struct llama_batch *b, const llama_token *ids, int n,
                  int pos0, int all) {
    b->n_tokens = n;
    for (int i = 0; i < n; i++) {
        b->token[i] = ids[i];
        b->pos[i] = pos0 + i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = 0;
        b->logits[i] = all || i == n - 1;
    }
    return llama_decode(ctx, *b);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *backend_dir = NULL, *backend = "cpu", *ids_arg = NULL, *dump = NULL;
    const char *text = NULL;
    int threads = 2, ngl = 0, n_prompt = 128, n_gen = 32, reps = 1, print_ids = 0, warmup = 1, tok_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(argv[0]), ""))
        if (!strcmp(a, "-m")) model_path = NEXT();
        else if (!strcmp(a, "-t")) threads = atoi(NEXT());
        else if (!strcmp(a, "-ngl")) ngl = atoi(NEXT());
        else if (!strcmp(a, "-p")) n_prompt = atoi(NEXT());
        else if (!strcmp(a, "--ids")) ids_arg = NEXT();
        else if (!strcmp(a, "--text")) text = NEXT();
        else if (!strcmp(a, "--tokenize-only")) tok_only = 1;
        else if (!strcmp(a, "-n")) n_gen = atoi(NEXT());
        else if (!strcmp(a, "-r")) reps = atoi(NEXT());
        else if (!strcmp(a, "--backend-dir")) backend_dir = NEXT();
        else if (!strcmp(a, "--backend")) backend = NEXT();
        else if (!strcmp(a, "--print-ids")) print_ids = 1;
        else if (!strcmp(a, "--dump-logits")) dump = NEXT();
        else if (!strcmp(a, "--no-warmup")) warmup = 0;
        else if (!strcmp(a, "-v")) verbose = 1;
        else usage(argv[0]);
#undef NEXT
    }
    if (!model_path || !backend_dir || n_gen < 1 || reps < 1) usage(argv[0]);

    llama_log_set(log_cb, NULL);
    ggml_backend_load_all_from_path(backend_dir);
    llama_backend_init();
    if (verbose)
        for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
            ggml_backend_dev_t d = ggml_backend_dev_get(i);
            fprintf(stderr, "device %zu: %s (%s)\n", i, ggml_backend_dev_name(d), ggml_backend_dev_description(d));
        }

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) {
        fprintf(stderr, "llama_peer_bench: cannot load %s\n", model_path);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    llama_token *prompt;
    if (text) {
        int n = (int)strlen(text) + 8;
        prompt = malloc(sizeof(llama_token) * n);
        n_prompt = llama_tokenize(vocab, text, (int32_t)strlen(text), prompt, n, false, true);
        if (n_prompt < 0) {
            fprintf(stderr, "llama_peer_bench: tokenize failed\n");
            return 1;
        }
        if (tok_only) {
            printf("tok:");
            for (int i = 0; i < n_prompt; i++) printf("%s%d", i ? "," : " ", prompt[i]);
            printf("\n");
            llama_model_free(model);
            return 0;
        }
    } else if (ids_arg) {
        n_prompt = 1;
        for (const char *c = ids_arg; *c; c++) n_prompt += *c == ',';
        prompt = malloc(sizeof(llama_token) * n_prompt);
        const char *c = ids_arg;
        for (int i = 0; i < n_prompt; i++) {
            prompt[i] = (llama_token)strtol(c, (char **)&c, 10);
            if (*c == ',') c++;
        }
    } else {
        prompt = malloc(sizeof(llama_token) * n_prompt);
        for (int i = 0; i < n_prompt; i++) prompt[i] = (llama_token)((1000 + 7919L * i) % n_vocab);
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_gen + 16;
    cp.n_batch = n_prompt;
    cp.n_ubatch = n_prompt;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama_peer_bench: cannot create context\n");
        return 1;
    }
    struct llama_batch batch = llama_batch_init(n_prompt, 0, 1);
    FILE *df = NULL;
    if (dump && !(df = fopen(dump, "wb"))) {
        perror(dump);
        return 1;
    }

    if (warmup) {
        // one prefill and one single-token step: backends that build pipelines / graphs
        // lazily (Vulkan shader compilation) do it here, outside the timed region
        llama_token t1;
        if (decode(ctx, &batch, prompt, n_prompt, 0, 0) ||
            (t1 = argmax(llama_get_logits_ith(ctx, -1), n_vocab), decode(ctx, &batch, &t1, 1, n_prompt, 0))) {
            fprintf(stderr, "llama_peer_bench: warm-up decode failed\n");
            return 1;
        }
        llama_memory_clear(llama_get_memory(ctx), true);
    }
    double t_prefill = 0;
    for (int r = 0; r < reps; r++) {
        llama_memory_clear(llama_get_memory(ctx), true);
        double t0 = now_s();
        if (decode(ctx, &batch, prompt, n_prompt, 0, df != NULL)) {
            fprintf(stderr, "llama_peer_bench: prefill decode failed\n");
            return 1;
        }
        llama_synchronize(ctx);
        t_prefill += now_s() - t0;
    }
    t_prefill /= reps;
    if (df)
        for (int i = 0; i < n_prompt; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, df);

    llama_token *out = malloc(sizeof(llama_token) * n_gen);
    double t0 = now_s();
    llama_token t = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
    for (int g = 0; g < n_gen; g++) {
        out[g] = t;
        if (g == n_gen - 1) break;
        if (decode(ctx, &batch, &t, 1, n_prompt + g, 0)) {
            fprintf(stderr, "llama_peer_bench: decode step %d failed\n", g);
            return 1;
        }
        const float *lg = llama_get_logits_ith(ctx, -1);
        if (df) fwrite(lg, sizeof(float), n_vocab, df);
        t = argmax(lg, n_vocab);
    }
    double t_decode = now_s() - t0;
    // n_gen tokens come out, n_gen - 1 single-token decode steps were run (the first token
    // comes from the prefill's logits): decode rate = (n_gen - 1) / time of those steps.
    int steps = n_gen - 1;
    if (df) fclose(df);
    if (print_ids) {
        printf("ids:");
        for (int g = 0; g < n_gen; g++) printf("%s%d", g ? "," : " ", out[g]);
        printf("\n");
    }
    printf("llamacpp backend=%s threads=%d ngl=%d prompt=%d gen=%d prefill_tok_s=%.3f decode_tok_s=%.3f "
           "prefill_s=%.4f decode_s=%.4f model_bytes=%llu\n",
           backend, threads, ngl, n_prompt, n_gen, n_prompt / t_prefill, steps > 0 ? steps / t_decode : 0.0,
           t_prefill, t_decode, (unsigned long long)llama_model_size(model));
    fflush(stdout);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    free(prompt);
    free(out);
    return 0;
}
