/* bench.h: shared timing helpers of the benchmark subcommands. */
#ifndef VKD_BENCH_H
#define VKD_BENCH_H

#include <stdio.h>

#include "vkd_ops.h"

typedef struct bench_env {
    vkd_ctx *ctx;
    vkd_rec *rec;
    int reps;                  /* submissions timed; the median is reported */
    double copy_gbs;           /* measured copy bandwidth, read + write bytes, GB/s */
    bool json;
    int rows;                  /* rows printed so far (for the JSON separator) */
} bench_env;

/* Records one instance of the op under test (called `inner` times per submission). */
typedef vkd_result (*bench_record_fn)(vkd_rec *rec, void *user);

/* Median seconds per op instance over env->reps submissions of `inner` instances each
 * (one warm-up submission first). Exits on error. */
double bench_time(bench_env *env, bench_record_fn fn, void *user, int inner);

/* Prints one result row: op, shape text, dtype, seconds, bytes moved, flops; the GEMV rows
 * also print bandwidth as a fraction of env->copy_gbs. */
void bench_row(bench_env *env, const char *op, const char *shape, const char *dtype, double sec,
               double bytes, double flops, bool roofline);

/* Layer ops (apps/bench_ops_layer.c). */
void bench_ops_layer(bench_env *env);

/* A zero-filled rows x cols tensor (exits on error). */
vkd_tensor *bench_tensor(bench_env *env, vkd_dtype dt, uint64_t rows, uint64_t cols, const char *name);

/* Device copy bandwidth (read + write bytes per second / 1e9) with the streaming geometry. */
double bench_copy_gbs(bench_env *env);

/* Logits ops (apps/bench_ops_logits.c). */
void bench_ops_logits(bench_env *env);

int vkd_bench_ops(int argc, char **argv);

/* matmul and embedding rows (apps/bench_ops_matmul.c) */
void bench_ops_matmul(bench_env *env);
int vkd_bench_generate(int argc, char **argv);  /* apps/bench_model.c */
int vkd_bench_spec(int argc, char **argv);

#endif
