/* cli.h: flag parsing helpers for the vkdraft subcommands. Only apps/ prints and exits. */
#ifndef VKD_CLI_H
#define VKD_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "vkd_base.h"

/* Prints "vkdraft: <message>" on stderr and exits with status 1 (2 for usage errors). */
_Noreturn void cli_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Exits with the error's message when r != VKD_OK. */
void cli_check(vkd_result r, const vkd_error *err);

/* Value of flag argv[*i] ("--flag VALUE" or "--flag=VALUE"); advances *i. NULL if argv[*i]
 * is not this flag. Exits with a usage error when the value is missing. */
const char *cli_value(const char *cmd, const char *flag, int argc, char **argv, int *i);
bool cli_is(const char *flag, const char *arg); /* exact match of a boolean flag */
bool cli_has_ext(const char *path, const char *ext); /* path ends with ext, after a name */

long cli_parse_long(const char *cmd, const char *flag, const char *s, long lo, long hi);
double cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi);

/* Checks before any work that `path` (the value of flag) can be written: not empty, not a
 * folder, in an existing writable folder. Exits with a clear message otherwise. */
void cli_check_out_file(const char *cmd, const char *flag, const char *path);

/* With profiling on (VKDRAFT_PROFILE=1), prints the per-op GPU time table to stderr. */
struct vkd_ctx;
void cli_print_profile(const struct vkd_ctx *ctx);

#endif
