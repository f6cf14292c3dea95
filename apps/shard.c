/* shard.c: the merging side of sharded experiments (exp.h: --shard I/N, --merge-shard DIR).
 *
 * A run with --merge-shard DIR_0 ... DIR_{N-1} (what `vkdraft merge` starts) executes the
 * command's loop as an unsharded run would, but exp_claim takes each work item's record from
 * the journal of the shard that owns it (example ex: shard ex mod N) instead of running it, so
 * the merged journal holds the records in the order of one unsharded run, and the tables,
 * CSVs, summary and figures are made from it by the same code. Checked: each folder's
 * config.json equals this run's up to common.shard and argv (a differing field is named), the
 * folders are shards 0..N-1 of one partition in order, every record passes the command's
 * record check, every work item has its record, and every shard record is a work item. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exp.h"

typedef struct exp_merge {
    uint32_t n;
    const char **dirs;               /* borrowed from argv */
    jr_journal *j;                   /* [n] */
    bool **taken;                    /* [n][records] */
} exp_merge;

/* The --merge-shard values of the command line, in order. */
static const char **merge_dirs(const exp_common *c) {
    const char **d = calloc(c->nmerge + 1, sizeof *d);
    if (!d) cli_fatal("out of memory");
    uint32_t k = 0;
    for (int i = 1; i < c->argc && k < c->nmerge; i++) {
        const char *a = c->argv[i], *flag = "--merge-shard";
        size_t n = strlen(flag);
        if (!strncmp(a, flag, n) && a[n] == '=') d[k++] = a + n + 1;
        else if (!strcmp(a, flag) && i + 1 < c->argc) d[k++] = c->argv[++i];
    }
    return d;
}

bool exp_shard_of(const cJSON *cfg, uint32_t *i, uint32_t *n) {
    const cJSON *common = cJSON_GetObjectItemCaseSensitive(cfg, "common");
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(common, "shard"));
    unsigned a, b;
    char tail;
    if (!s || sscanf(s, "%u/%u%c", &a, &b, &tail) != 2 || b == 0 || a >= b) return false;
    *i = a;
    *n = b;
    return true;
}

cJSON *exp_unsharded_config(const cJSON *cfg) {
    cJSON *u = cJSON_Duplicate(cfg, true);
    if (!u) cli_fatal("out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(u, "common"), "shard");
    cJSON_DeleteItemFromObjectCaseSensitive(u, "argv");
    return u;
}

bool exp_config_differs(const cJSON *a, const cJSON *b, char *path, size_t cap) {
    if (exp_config_diff(a, b, path, cap)) return true;
    const cJSON *la = exp_config_at(a, "common.limit"), *lb = exp_config_at(b, "common.limit");
    if ((la || lb) && !(la && lb && cJSON_Compare(la, lb, true))) {
        snprintf(path, cap, "common.limit");
        return true;
    }
    return false;
}

/* "(x there, y here)" text of a differing field (malloc'd). */
static char *field_text(const cJSON *c, const char *path) {
    const cJSON *v = exp_config_at(c, path);
    char *t = v ? cJSON_PrintUnformatted(v) : strdup("absent");
    if (!t) cli_fatal("out of memory");
    return t;
}

void exp_merge_open(const exp_common *c, jr_check_fn check, const jr_limits *lim, exp_out *o) {
    exp_merge *m = calloc(1, sizeof *m);
    if (!m) cli_fatal("out of memory");
    m->n = c->nmerge;
    m->dirs = merge_dirs(c);
    m->j = calloc(m->n, sizeof *m->j);
    m->taken = calloc(m->n, sizeof *m->taken);
    if (!m->j || !m->taken) cli_fatal("out of memory");
    o->merge = m;
    /* this run's config as it reads back from config.json (the seed is written raw) */
    char *now_s = cJSON_PrintUnformatted(o->config), *now_x = now_s ? jr_exact_ints(now_s, strlen(now_s)) : NULL;
    cJSON *now = now_x ? cJSON_Parse(now_x) : NULL;
    if (!now) cli_fatal("out of memory");
    free(now_s);
    free(now_x);
    for (uint32_t k = 0; k < m->n; k++) {
        const char *dir = m->dirs[k];
        cJSON *cfg = exp_read_config(dir);
        if (!cfg) cli_fatal("%s: no readable config.json (not the folder of a vkdraft shard)", dir);
        uint32_t si, sn;
        if (!exp_shard_of(cfg, &si, &sn))
            cli_fatal("%s/config.json: no common.shard 'I/N': not a shard (run with --shard I/N)", dir);
        if (sn != m->n || si != k)
            cli_fatal("%s/config.json: shard %u/%u where --merge-shard number %u of %u expects %u/%u", dir, si, sn,
                      k, m->n, k, m->n);
        cJSON *u = exp_unsharded_config(cfg);
        char f[256];
        if (exp_config_differs(u, now, f, sizeof f)) {
            char *x = field_text(u, f), *y = field_text(now, f);
            cli_fatal("%s/config.json: field '%s' differs from this run (%s there, %s here): the shards of one "
                      "run share every parameter, model and dataset", dir, f, x, y);
        }
        cJSON_Delete(u);
        cJSON_Delete(cfg);
        size_t len = strlen(dir) + 32, n = 0, keep;
        char *path = malloc(len);
        if (!path) cli_fatal("out of memory");
        snprintf(path, len, "%s/examples.jsonl", dir);
        char *text = exp_slurp(path, &n);
        if (!text) cli_fatal("%s: cannot read the shard's journal", path);
        vkd_error err = {0};
        cli_check(jr_parse(path, text, n, check, lim, &m->j[k], &keep, &err), &err);
        free(text);
        free(path);
        m->taken[k] = calloc(m->j[k].n + 1, sizeof **m->taken);
        if (!m->taken[k]) cli_fatal("out of memory");
    }
    cJSON_Delete(now);
}

bool exp_merge_take(exp_out *o, size_t ex, const char *id) {
    exp_merge *m = o->merge;
    uint32_t s = (uint32_t)(ex % m->n);
    long k = jr_find(&m->j[s], id);
    if (k < 0)
        cli_fatal("%s (shard %u/%u) has no record '%s': the shard is unfinished (complete it with --resume) or "
                  "ran on other data", m->dirs[s], s, m->n, id);
    m->taken[s][k] = true;
    cJSON *r = cJSON_Duplicate(m->j[s].rec[k], true);
    if (!r) cli_fatal("out of memory");
    exp_journal(o, r);
    return false;
}

void exp_finish_work(exp_out *o) {
    size_t *idx = malloc((o->nwork ? o->nwork : 1) * sizeof *idx), n = 0;
    if (!idx) cli_fatal("out of memory");
    for (size_t q = 0; q < o->nwork; q++) {
        long k = jr_find(&o->done, o->work[q]);
        if (k >= 0) idx[n++] = (size_t)k;
    }
    vkd_error err = {0};
    cli_check(jr_reorder(&o->done, idx, n, &err), &err);
    free(idx);
    exp_merge *m = o->merge;
    if (!m) return;
    for (uint32_t s = 0; s < m->n; s++)
        for (size_t k = 0; k < m->j[s].n; k++)
            if (!m->taken[s][k])
                cli_fatal("%s/examples.jsonl:%zu: record '%s' is no work item of shard %u/%u of this run "
                          "(overlapping shards, or shards of other data)", m->dirs[s], m->j[s].line[k],
                          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m->j[s].rec[k], "id")), s, m->n);
}

void exp_merge_free(exp_out *o) {
    exp_merge *m = o->merge;
    if (!m) return;
    for (uint32_t s = 0; s < m->n; s++) {
        jr_free(&m->j[s]);
        free(m->taken[s]);
    }
    free(m->j);
    free(m->taken);
    free(m->dirs);
    free(m);
    o->merge = NULL;
}
