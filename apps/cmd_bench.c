/* vkdraft bench: benchmark programs (they print figures; they never pass or fail on time). */
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "cmds.h"

int vkd_cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is("--help", argv[1]) || cli_is("-h", argv[1])) {
        printf("usage: vkdraft bench <what> [flags]\n\n"
               "  ops     each op of the op library at realistic shapes: time, GB/s, GFLOP/s;\n"
               "          GEMV bandwidth as a fraction of the device's measured copy bandwidth\n"
               "          (vkdraft bench ops --help for flags)\n"
               "  generate  prefill and decode tokens/s of a model, decode vs the bandwidth floor\n"
               "  spec      DFlash draft call, verification and decode step times; speed-up per tau\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "ops")) return vkd_bench_ops(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate")) return vkd_bench_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "spec")) return vkd_bench_spec(argc - 1, argv + 1);
    cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
