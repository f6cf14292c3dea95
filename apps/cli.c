/* cli.c: flag parsing and fatal-error helpers shared by the subcommands. */
#include "cli.h"

#include "vkd_runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn void cli_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("vkdraft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

_Noreturn void cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vkdraft %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'vkdraft %s --help')\n", cmd);
    va_end(ap);
    exit(2);
}

void cli_check(vkd_result r, const vkd_error *err) {
    if (r != VKD_OK) cli_fatal("%s", err && err->msg[0] ? err->msg : vkd_result_name(r));
}

bool cli_is(const char *flag, const char *arg) { return strcmp(flag, arg) == 0; }

bool cli_has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcmp(path + n - e, ext);
}

const char *cli_value(const char *cmd, const char *flag, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    size_t n = strlen(flag);
    if (strncmp(a, flag, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) cli_usage_error(cmd, "flag %s needs a value", flag);
    return argv[++*i];
}

long cli_parse_long(const char *cmd, const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        cli_usage_error(cmd, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return v;
}

double cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        cli_usage_error(cmd, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    return v;
}

void cli_check_out_file(const char *cmd, const char *flag, const char *path) {
    if (!path[0]) cli_usage_error(cmd, "%s needs a file name, got ''", flag);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) cli_fatal("%s: is a folder (%s of %s expects a file)", path, flag, cmd);
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) cli_fatal("out of memory");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        cli_fatal("%s: folder '%s' does not exist (%s of %s; nothing was run)", path, dir, flag, cmd);
    if (access(dir, W_OK | X_OK) != 0)
        cli_fatal("%s: cannot write in folder '%s': %s (%s of %s; nothing was run)", path, dir, strerror(errno), flag, cmd);
    free(dir);
}

static int cmp_prof(const void *a, const void *b) {
    double x = ((const vkd_profile_entry *)a)->total_ms, y = ((const vkd_profile_entry *)b)->total_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

void cli_print_profile(const struct vkd_ctx *ctx) {
    const vkd_profile_entry *e;
    uint32_t n = vkd_ctx_profile_entries(ctx, &e);
    if (!n) return;
    vkd_profile_entry *s = malloc(n * sizeof *s);
    if (!s) return;
    memcpy(s, e, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_prof);
    double total = 0;
    for (uint32_t i = 0; i < n; i++) total += s[i].total_ms;
    fprintf(stderr, "\nGPU time per op (VKDRAFT_PROFILE):\n%-28s %10s %12s %10s %7s\n", "shader", "calls",
            "total ms", "ms/call", "share");
    for (uint32_t i = 0; i < n; i++)
        fprintf(stderr, "%-28s %10llu %12.2f %10.4f %6.1f%%\n", s[i].name, (unsigned long long)s[i].calls,
                s[i].total_ms, s[i].total_ms / (double)s[i].calls, 100.0 * s[i].total_ms / total);
    fprintf(stderr, "%-28s %10s %12.2f\n", "total", "", total);
    free(s);
}
