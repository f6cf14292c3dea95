/* journal.h: reading an experiment's journal (DIR/examples.jsonl) back, every record validated,
 * indexed by id. Pure functions (no printing, no exit): the experiments (apps/exp.c) and the
 * fuzz target (tests/fuzz/fuzz_journal.c) share them.
 *
 * A journal is one JSON object per line, each with a unique non-empty string "id". The last
 * line may be torn (no newline: an interrupted write); it is not a record and its bytes are
 * reported so the caller can drop them. Anything else that is not a valid record is an error
 * naming the file, the line and the field ("examples.jsonl:7: field 'tokens': expected ...").
 * Integers with more than 15 digits are read as strings so that 64-bit values (seeds) compare
 * exactly (a double holds 2^53 + 1 as 2^53). */
#ifndef VKD_JOURNAL_H
#define VKD_JOURNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

/* What a record may hold, from the run that reads it back (bounds for ids and positions). */
typedef struct jr_limits {
    uint32_t vocab;      /* token ids lie in [0, vocab) */
    uint32_t ctx_len;    /* positions and token counts are below this */
    uint32_t ntemps;     /* probe: draft temperatures per row */
    uint32_t block;      /* draft block size */
} jr_limits;

/* A record check: true when r is a valid record; else false with msg ("field 'x': ..."). */
typedef bool (*jr_check_fn)(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);

/* The record checks of the experiments (apps/records.c). */
bool jr_check_guide(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);
bool jr_check_diagnose(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);
bool jr_check_probe(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);
bool jr_check_power(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);
bool jr_check_ttt(const cJSON *r, const jr_limits *lim, char *msg, size_t cap);

/* Records in journal order with a hash index by id. */
typedef struct jr_journal {
    cJSON **rec;         /* owned */
    size_t *line;        /* 1-based line of each record (0: added by this run) */
    size_t n, cap;
    size_t *slot;        /* open addressing: record index + 1, 0 empty */
    size_t nslot;        /* power of two */
    uint64_t probes;     /* slots visited by lookups and inserts (tests assert linearity) */
} jr_journal;

/* Index of the record with this id, or -1. */
long jr_find(jr_journal *j, const char *id);
/* Appends r (owned by the journal from here on; needs a string "id" not yet present). */
vkd_result jr_add(jr_journal *j, cJSON *r, size_t line, vkd_error *err);
/* Puts the records at indices idx[0..n) first, in that order (an index out of range or seen
 * before is skipped), the others after them in their journal order; rebuilds the index. */
vkd_result jr_reorder(jr_journal *j, const size_t *idx, size_t n, vkd_error *err);
void jr_free(jr_journal *j);

/* Parses text[0..n) (need not be NUL-terminated) as the journal `path`, checks each record with
 * check (NULL: only the id), and appends them to j. *keep: the bytes of complete lines (a torn
 * last line is left out). Errors: VKD_ERR_FORMAT "path:line: ..." and j holds what came before. */
vkd_result jr_parse(const char *path, const char *text, size_t n, jr_check_fn check, const jr_limits *lim,
                    jr_journal *j, size_t *keep, vkd_error *err);

/* JSON text with every integer literal of more than 15 digits written as a string (malloc'd;
 * NULL when out of memory). Strings and non-integers are left as they are. */
char *jr_exact_ints(const char *text, size_t n);

/* Shortest "%.{15,16,17}g" text of v that reads back as v (cap >= 32). */
void jr_fmt_double(char *buf, size_t cap, double v);

#endif
