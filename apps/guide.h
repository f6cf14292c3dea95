/* guide.h: what vkdraft guide's sweep (apps/cmd_guide.c) and its reporting (apps/guide_report.c)
 * share: the conditions, the cells of the evaluation matrix and the parsed options. */
#ifndef VKD_GUIDE_APP_H
#define VKD_GUIDE_APP_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "exp.h"
#include "tokenizer.h"

typedef enum { C_GUIDED, C_NULL, C_PLAIN, C_ADAPTIVE, C_TOPK, NCOND } cond;
extern const char *const guide_cond_name[NCOND]; /* "guided", "null", "plain", "adaptive", "topk" */
/* the conditions that use the draft, in matrix order */
extern const cond guide_drafted[4];

typedef struct cell {
    cond c;
    double alpha, temp;        /* alpha NAN for plain */
    bool ttt;                  /* the draft adapted to the example first (never for plain) */
    char key[96];              /* "guided/a0.3/T0.6/ttt-off" */
} cell;

typedef struct guide_opts {
    exp_common c;
    const char *ttt_s;
    long max_new, top_k, ttt_steps, ttt_rank;
    double top_p, ttt_lr;
    double *alphas, *temps;
    size_t na, nt;
    bool want[NCOND];          /* by cond */
    long guide_top_k;          /* topk condition: k */
    bool ttt_off, ttt_on;
    cell *cells;
    size_t ncells;
    const char *group_by;      /* --group-by FIELD: dataset field (or dotted path) of the groups, or NULL */
    char **keep;               /* --keep-fields: dataset fields copied into responses.jsonl */
    size_t nkeep;
    const char **ds_fields;    /* the fields the dataset loader keeps: keep[0..nkeep), then group_by */
} guide_opts;

/* The key names the parsed values exactly (shortest text that reads back as the same double):
 * two different alphas never share a key. */
void guide_cell_key(cell *k);
/* Journal id of (cell, example): "<cell key>/<example id>", the full id (malloc'd). */
char *guide_record_id(const cell *k, const char *example);
const cJSON *guide_find_record(exp_out *o, const cell *k, const char *example);
bool guide_any_drafted(const guide_opts *G);

static inline double guide_num(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static inline const char *guide_str(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Everything written from the whole journal: report.txt (also on stdout), matrix.csv,
 * summary.json, heatmap figures, responses.jsonl, tokens.jsonl and compare.md; with --group-by
 * each table, CI and figure also per group (apps/guide_report.c). */
void guide_report(const guide_opts *G, exp_out *o, const exp_data *d, vkd_tok *tok);

#endif
