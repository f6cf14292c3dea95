/* fuzz_journal: an experiment journal read back for --resume (apps/journal.c) on arbitrary
 * bytes, through every experiment's record check (apps/records.c). The first byte picks the
 * experiment and the limits; the rest is the journal text. Then the resume itself: every
 * accepted record is found again by its id, a repeated id is refused, a new record is added
 * and found; an accepted record must satisfy what the commands rely on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const jr_check_fn checks[] = {jr_check_guide, jr_check_diagnose, jr_check_probe, jr_check_power, jr_check_ttt,
                                         NULL};
    int which = (data[0] & 7) % 6;
    jr_limits lim = {.vocab = 1u + (data[0] >> 3) * 8000u, .ctx_len = 512, .ntemps = 1u + ((data[0] >> 6) & 1),
                     .block = 4};
    jr_journal j = {0};
    size_t keep = 0;
    vkd_error err = {0};
    vkd_result r = jr_parse("examples.jsonl", (const char *)data + 1, size - 1, checks[which], &lim, &j, &keep, &err);
    if (r != VKD_OK && !err.msg[0]) abort();            /* every error says what is wrong */
    if (r != VKD_OK && !strstr(err.msg, "examples.jsonl")) abort(); /* ... and where */
    if (keep > size - 1) abort();
    for (size_t k = 0; k < j.n; k++) {
        const cJSON *rec = j.rec[k];
        const char *id = cJSON_GetStringValue(get(rec, "id"));
        if (!id || jr_find(&j, id) != (long)k) abort(); /* the index finds every record */
        if (r != VKD_OK) continue;
        /* what the commands read without further checks */
        if (which == 0) {
            if (cJSON_GetArraySize(get(rec, "ids")) != (int)get(rec, "tokens")->valuedouble) abort();
        } else if (which == 1 && !get(rec, "skipped")) {
            const cJSON *row;
            cJSON_ArrayForEach(row, get(rec, "tokens")) {
                double blk = cJSON_GetArrayItem(row, 1)->valuedouble, gold = cJSON_GetArrayItem(row, 3)->valuedouble;
                if (!(blk >= 0 && blk <= lim.ctx_len && gold >= 0 && gold < lim.vocab)) abort();
            }
        } else if (which == 2 && cJSON_IsArray(get(rec, "positions"))) {
            const cJSON *row;
            cJSON_ArrayForEach(row, get(rec, "positions")) {
                double blk = cJSON_GetArrayItem(row, 0)->valuedouble;
                if (cJSON_GetArraySize(row) != (int)(5 + 2 * lim.ntemps) || !(blk >= 0 && blk <= lim.ctx_len)) abort();
            }
        }
    }
    /* resume: a new record is appended once, never twice */
    cJSON *n1 = cJSON_CreateObject();
    cJSON_AddStringToObject(n1, "id", "\x01new");
    if (jr_add(&j, n1, 0, &err) != VKD_OK || jr_find(&j, "\x01new") < 0) abort();
    cJSON *n2 = cJSON_CreateObject();
    cJSON_AddStringToObject(n2, "id", "\x01new");
    if (jr_add(&j, n2, 0, &err) == VKD_OK) abort();
    jr_free(&j);
    return 0;
}
