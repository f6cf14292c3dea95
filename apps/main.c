/* vkdraft: one binary, one subcommand per job. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"devices", vkd_cmd_devices, "list Vulkan devices and the limits vkdraft uses"},
    {"forward", vkd_cmd_forward, "one teacher-forced pass: logits and hidden states to safetensors"},
    {"generate", vkd_cmd_generate, "autoregressive generation with a target model"},
    {"spec", vkd_cmd_spec, "speculative decoding (DFlash or a draft model): tau, histogram, speed-up"},
    {"bench", vkd_cmd_bench, "benchmarks: 'bench ops' (op library vs copy bandwidth)"},
    {"inspect", vkd_cmd_inspect, "describe a model folder: config, tensors, shards, tokenizer, problems"},
    {"tokenize", vkd_cmd_tokenize, "text <-> token ids with the model's tokenizer and chat template"},
    {"exit-train", vkd_cmd_exit_train, "distil early-exit heads of a target (seed 003)"},
    {"exit-eval", vkd_cmd_exit_eval, "quality, acceptance and speed of early-exit heads (seed 003)"},
    {"diagnose", vkd_cmd_diagnose, "deep-readout diagnostic (seed 000): gold-token rank/p, draft vs target"},
    {"probe", vkd_cmd_probe, "speculative MCMC probe (seed 002): draft as a proposal for p^alpha"},
    {"power", vkd_cmd_power, "power sampling from p^alpha by block-wise Metropolis-Hastings"},
    {"guide", vkd_cmd_guide, "draft-guided decoding with a null control, alpha/temperature sweeps"},
    {"ttt", vkd_cmd_ttt, "test-time training of the DFlash draft on its context (LoRA), tau with/without"},
    {"train-draft", vkd_cmd_train_draft, "train a DFlash draft for a target from scratch (z-lab layout, resumable)"},
    {"train-target", vkd_cmd_train_target, "train a small tied Qwen3 / Llama from scratch on plain text (HF folder)"},
    {"merge", vkd_cmd_merge, "combine the folders of a sharded sweep (--shard I/N) into one run's outputs"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: vkdraft <command> [flags]   (vkdraft <command> --help for its flags)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment: VKDRAFT_DEVICE=N picks a device, VKDRAFT_VALIDATION=1 enables the\n"
               "Khronos validation layer, VKDRAFT_PROFILE=1 prints a per-op GPU time table.\n");
}

/* Output on stdout (tables, JSON, generated text) is a result: a write that failed (a full
 * disk, a closed pipe) must not end in exit status 0. Runs at every exit, also exit() from a
 * command; buffered output is flushed here, so the check sees every error. */
static void close_stdout(void) {
    errno = 0;
    bool bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !bad) bad = true, e = errno;
    if (bad) {
        fprintf(stderr, "vkdraft: writing to stdout failed: %s\n", e ? strerror(e) : "I/O error");
        _exit(1);
    }
}

int main(int argc, char **argv) {
    atexit(close_stdout);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vkdraft %s\n", VKD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vkdraft: unknown command '%s' (see 'vkdraft --help')\n", argv[1]);
    return 2;
}
