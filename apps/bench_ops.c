/* vkdraft bench ops: the op library at realistic layer shapes. First measures the device's
 * copy bandwidth (the decode roofline), then times each op. Figures, not verdicts. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "cli.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_time(bench_env *env, bench_record_fn fn, void *user, int inner) {
    double *t = malloc(sizeof(double) * (size_t)env->reps);
    for (int rep = -1; rep < env->reps; rep++) {
        vkd_rec_begin(env->rec);
        for (int i = 0; i < inner; i++) fn(env->rec, user);
        double t0 = now();
        vkd_result r = vkd_rec_submit(env->rec);
        double dt = now() - t0;
        cli_check(r, vkd_rec_error(env->rec));
        if (rep >= 0) t[rep] = dt / inner;
    }
    qsort(t, (size_t)env->reps, sizeof *t, cmp_double);
    double med = t[env->reps / 2];
    free(t);
    return med;
}

void bench_row(bench_env *env, const char *op, const char *shape, const char *dtype, double sec,
               double bytes, double flops, bool roofline) {
    double gbs = bytes / sec * 1e-9, gfs = flops / sec * 1e-9;
    if (env->json) {
        printf("%s    {\"op\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"ms\": %.4f, "
               "\"gb_s\": %.3f, \"gflop_s\": %.3f", env->rows ? ",\n" : "", op, shape, dtype,
               sec * 1e3, gbs, gfs);
        if (roofline) printf(", \"fraction_of_copy\": %.3f", gbs / env->copy_gbs);
        printf("}");
    } else {
        printf("%-14s %-28s %-5s %10.4f ms %9.2f GB/s %9.2f GFLOP/s", op, shape, dtype, sec * 1e3,
               gbs, gfs);
        if (roofline) printf("   %5.1f %% of copy", 100.0 * gbs / env->copy_gbs);
        printf("\n");
    }
    env->rows++;
}

typedef struct copy_args {
    vkd_tensor *src, *dst;
    uint64_t bytes;
} copy_args;

static vkd_result rec_copy(vkd_rec *rec, void *u) {
    copy_args *a = u;
    return vkd_op_copy_probe(rec, a->dst, a->src, a->bytes);
}

typedef struct add_args {
    vkd_tensor *y, *x;
    uint64_t n;
} add_args;

static vkd_result rec_add(vkd_rec *rec, void *u) {
    add_args *a = u;
    return vkd_op_add(rec, a->y, a->x, a->n);
}

vkd_tensor *bench_tensor(bench_env *env, vkd_dtype dt, uint64_t rows, uint64_t cols, const char *name) {
    vkd_error err = {0};
    vkd_tensor *t;
    cli_check(vkd_tensor_create_2d(env->ctx, dt, rows, cols, name, &t, &err), &err);
    return t;
}

double bench_copy_gbs(bench_env *env) {
    /* 64 MiB -> 64 MiB, counted as read + write bytes */
    copy_args ca = {.bytes = 64ull << 20};
    ca.src = bench_tensor(env, VKD_DTYPE_F32, 1, ca.bytes / 4, "copy_src");
    ca.dst = bench_tensor(env, VKD_DTYPE_F32, 1, ca.bytes / 4, "copy_dst");
    double t = bench_time(env, rec_copy, &ca, 4);
    vkd_tensor_destroy(ca.src);
    vkd_tensor_destroy(ca.dst);
    return 2.0 * ca.bytes / t * 1e-9;
}

int vkd_bench_ops(int argc, char **argv) {
    bench_env env = {.reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is("--json", argv[i])) env.json = true;
        else if ((v = cli_value("bench ops", "--reps", argc, argv, &i)))
            env.reps = (int)cli_parse_long("bench ops", "--reps", v, 1, 1000);
        else if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            printf("usage: vkdraft bench ops [--reps N] [--json]\n\n"
                   "Measures the device's copy bandwidth, then times every op at the layer\n"
                   "shapes of Qwen3-0.6B, Qwen3-4B and Llama-3.2-1B; prints time, GB/s and\n"
                   "GFLOP/s, and GEMV bandwidth as a fraction of the copy bandwidth (the decode\n"
                   "roofline). --reps: timed submissions per op (median reported, default 5).\n");
            return 0;
        } else cli_usage_error("bench ops", "unknown flag '%s'", argv[i]);
    }
    vkd_error err = {0};
    cli_check(vkd_ctx_create(NULL, &env.ctx, &err), &err);
    cli_check(vkd_rec_create(env.ctx, &env.rec, &err), &err);
    const vkd_device_info *d = vkd_ctx_info(env.ctx);
    if (env.json) printf("{\n  \"device\": \"%s\",\n  \"driver\": \"%s\",\n", d->name, d->driver);
    else printf("device: %s (%s), profile %s\n", d->name, d->driver, vkd_ctx_profile(env.ctx)->name);

    env.copy_gbs = bench_copy_gbs(&env);
    double t;
    if (env.json) printf("  \"copy_gb_s\": %.3f,\n  \"ops\": [\n", env.copy_gbs);
    else printf("copy bandwidth: %.2f GB/s (read + write, 64 MiB)\n\n", env.copy_gbs);

    static const struct { const char *model; uint64_t hidden; } shapes[] = {
        {"qwen3-0.6b", 1024}, {"qwen3-4b", 2560}, {"llama-3.2-1b", 2048}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        add_args aa = {.n = shapes[s].hidden * 16};
        aa.y = bench_tensor(&env, VKD_DTYPE_F32, 16, shapes[s].hidden, "y");
        aa.x = bench_tensor(&env, VKD_DTYPE_F32, 16, shapes[s].hidden, "x");
        char shape[64];
        snprintf(shape, sizeof shape, "%s 16x%llu", shapes[s].model, (unsigned long long)shapes[s].hidden);
        t = bench_time(&env, rec_add, &aa, 50);
        bench_row(&env, "add", shape, "f32", t, 12.0 * aa.n, (double)aa.n, false);
        vkd_tensor_destroy(aa.y);
        vkd_tensor_destroy(aa.x);
    }

    /* ops of each area: bench_ops_<area>(&env) */
    /* matmul */
    bench_ops_matmul(&env);
    /* layer */
    bench_ops_layer(&env);
    /* logits */
    bench_ops_logits(&env);

    if (env.json) printf("\n  ]\n}\n");
    vkd_rec_destroy(env.rec);
    vkd_ctx_destroy(env.ctx);
    return 0;
}
