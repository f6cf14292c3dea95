/* vkdraft merge: combines the folders of a sharded sweep (--shard I/N) into the outputs of one
 * unsharded run. The shards' configs are checked against each other here (clear errors before
 * anything loads); then the command is run again with the shards' own flags, --out OUT and
 * --merge-shard for each folder, which takes every record from its shard (apps/shard.c)
 * instead of computing it and writes the tables from the merged journal. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "exp.h"

static void usage(void) {
    printf("usage: vkdraft merge OUT SHARD_DIR...\n\n"
           "Combines the --out folders of the N shards of one sweep (diagnose, probe, power, guide\n"
           "or ttt run with --shard I/N, I = 0..N-1, otherwise the same flags) into OUT, which then\n"
           "holds exactly what one unsharded run writes: config.json, examples.jsonl in the\n"
           "unsharded order, and the tables, CSVs, summary and figures made from it (timings are\n"
           "the shards' own). The shard folders may be given in any order. Refused, naming the\n"
           "folder and field: a folder that is no shard, shards of different commands, partitions,\n"
           "parameters, models or data, a shard given twice, a missing shard, a shard that has not\n"
           "finished (complete it with --resume), a record that is no work item of its shard.\n"
           "The merge runs the command once more on this machine (it loads the models, computes\n"
           "nothing): the shards' model and dataset paths must resolve from here, as recorded in\n"
           "their config.json. OUT follows the output folder rules (--overwrite is not taken:\n"
           "give an empty or new folder).\n");
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} sweeps[] = {{"diagnose", vkd_cmd_diagnose}, {"probe", vkd_cmd_probe}, {"power", vkd_cmd_power},
              {"guide", vkd_cmd_guide},       {"ttt", vkd_cmd_ttt}};

/* The shards' command line without what differs per shard or would change the run's meaning
 * (--shard, --out, --resume, --overwrite, --merge-shard), then --out OUT and --merge-shard DIR
 * for shards 0..N-1. */
static char **merged_argv(const cJSON *argv, const char *out, const char *const *dirs, uint32_t n, int *argc) {
    int na = cJSON_GetArraySize(argv);
    char **av = calloc((size_t)na + 2 * n + 4, sizeof *av);
    if (!av) cli_fatal("out of memory");
    int k = 0;
    static const char *const with_value[] = {"--shard", "--out", "--merge-shard"};
    for (int i = 0; i < na; i++) {
        const char *a = cJSON_GetStringValue(cJSON_GetArrayItem(argv, i));
        if (!a) cli_fatal("merge: a shard's config.json argv holds a non-string");
        bool drop = i > 0 && (!strcmp(a, "--resume") || !strcmp(a, "--overwrite"));
        for (size_t f = 0; f < 3 && i > 0 && !drop; f++) {
            size_t l = strlen(with_value[f]);
            if (!strncmp(a, with_value[f], l) && a[l] == '=') drop = true;
            else if (!strcmp(a, with_value[f])) drop = true, i++;
        }
        if (!drop) av[k++] = (char *)a;
    }
    av[k++] = "--out";
    av[k++] = (char *)out;
    for (uint32_t s = 0; s < n; s++) {
        av[k++] = "--merge-shard";
        av[k++] = (char *)dirs[s];
    }
    *argc = k;
    return av;
}

int vkd_cmd_merge(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) { usage(); return 0; }
    if (argc < 3) cli_usage_error("merge", "expected OUT and at least one SHARD_DIR");
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') cli_usage_error("merge", "unknown flag '%s'", argv[i]);
    const char *out = argv[1];
    int nd = argc - 2;
    cJSON **cfg = calloc((size_t)nd, sizeof *cfg);
    if (!cfg) cli_fatal("out of memory");
    const char **by_shard = NULL;
    uint32_t n = 0;
    for (int d = 0; d < nd; d++) {
        const char *dir = argv[2 + d];
        cfg[d] = exp_read_config(dir);
        if (!cfg[d]) cli_fatal("merge: %s: no readable config.json (not the folder of a vkdraft run)", dir);
        uint32_t si, sn;
        if (!exp_shard_of(cfg[d], &si, &sn) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(cfg[d], "argv")))
            cli_fatal("merge: %s/config.json: no common.shard 'I/N' and argv: not a shard (run with --shard I/N)",
                      dir);
        const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg[d], "command"));
        const char *cmd0 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg[0], "command"));
        if (!cmd || !cmd0 || strcmp(cmd, cmd0))
            cli_fatal("merge: %s is a shard of '%s', %s of '%s': one sweep's shards only", dir, cmd ? cmd : "?",
                      argv[2], cmd0 ? cmd0 : "?");
        if (d == 0) {
            n = sn;
            by_shard = calloc(n, sizeof *by_shard);
            if (!by_shard) cli_fatal("out of memory");
        } else if (sn != n)
            cli_fatal("merge: %s is shard %u/%u, %s is shard of %u: shards of different partitions", dir, si, sn,
                      argv[2], n);
        if (by_shard[si]) cli_fatal("merge: overlapping shards: %s and %s are both shard %u/%u", by_shard[si], dir, si, n);
        by_shard[si] = dir;
        if (d > 0) {
            cJSON *a = exp_unsharded_config(cfg[0]), *b = exp_unsharded_config(cfg[d]);
            char f[256];
            if (exp_config_differs(a, b, f, sizeof f)) {
                const cJSON *x = exp_config_at(a, f), *y = exp_config_at(b, f);
                char *sx = x ? cJSON_PrintUnformatted(x) : strdup("absent");
                char *sy = y ? cJSON_PrintUnformatted(y) : strdup("absent");
                cli_fatal("merge: %s/config.json and %s/config.json differ in '%s' (%s vs %s): the shards of one "
                          "run share every parameter, model and dataset", argv[2], dir, f, sx, sy);
            }
            cJSON_Delete(a);
            cJSON_Delete(b);
        }
    }
    for (uint32_t s = 0; s < n; s++)
        if (!by_shard[s]) cli_fatal("merge: shard %u/%u is missing (give all %u shard folders)", s, n, n);
    const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg[0], "command"));
    int (*run)(int, char **) = NULL;
    for (size_t k = 0; k < sizeof sweeps / sizeof sweeps[0]; k++)
        if (!strcmp(cmd, sweeps[k].name)) run = sweeps[k].run;
    if (!run) cli_fatal("merge: %s: command '%s' is not a sweep that can be sharded", argv[2], cmd);
    int mc;
    char **mv = merged_argv(cJSON_GetObjectItemCaseSensitive(cfg[0], "argv"), out,
                            by_shard, n, &mc);
    int rc = run(mc, mv);
    free(mv);
    free(by_shard);
    for (int d = 0; d < nd; d++) cJSON_Delete(cfg[d]);
    free(cfg);
    return rc;
}
