/* bench_tokenizer: encoding throughput of vkdraft's tokenizer on one text file.
 *   bench_tokenizer MODEL_DIR TEXT_FILE [REPS]
 * Times only vkd_tok_encode (the load is reported apart), best and median of REPS runs,
 * each run on a fresh word cache so no run benefits from the previous one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer MODEL_DIR TEXT_FILE [REPS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (reps < 1 || reps > 1000) reps = 5;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) return 1;
    fclose(f);
    double *t = malloc((size_t)reps * sizeof *t);
    size_t n_ids = 0;
    double load = 0;
    for (int r = 0; r < reps; r++) {
        vkd_error err = {0};
        vkd_tok *tok;
        double t0 = now();
        if (vkd_tok_load(argv[1], &tok, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        double t1 = now();
        load = t1 - t0;
        int32_t *ids;
        if (vkd_tok_encode(tok, text, (size_t)len, false, &ids, &n_ids, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        t[r] = now() - t1;
        free(ids);
        vkd_tok_free(tok);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double mb = (double)len / 1e6;
    printf("vkdraft  %-28s %8.3f MB %9zu ids  best %7.1f ms  %7.2f MB/s  median %7.2f MB/s  (load %.0f ms)\n",
           strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1], mb, n_ids, t[0] * 1e3, mb / t[0],
           mb / t[reps / 2], load * 1e3);
    free(t);
    free(text);
    return 0;
}
