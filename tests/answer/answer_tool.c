/* answer_tool.c: the C side of tests/answer/check_answer.py. Reads JSON lines
 * {"kind", "text", "gold", "flags"} on stdin and writes, per line, the fields
 * tools/reference/answer_ref.py case_fields() computes: kind, boxed, extract, gold, strip,
 * norm, gold_strip, gold_norm (strings or null), equal, score (booleans). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_answer.h"

static void add(cJSON *o, const char *k, char *v) { /* takes v */
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
    free(v);
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int main(void) {
    size_t cap = 0;
    char *line = NULL;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        cJSON *in = cJSON_ParseWithLength(line, (size_t)n);
        if (!in) { fprintf(stderr, "answer_tool: bad JSON line\n"); return 1; }
        vkd_answer_kind kind = vkd_answer_kind_from_name(str(in, "kind"));
        const char *text = str(in, "text"), *field = str(in, "gold");
        const cJSON *fl = cJSON_GetObjectItemCaseSensitive(in, "flags");
        unsigned flags = cJSON_IsNumber(fl) ? (unsigned)fl->valueint : 0;
        char *given = vkd_answer_extract(kind, text, flags), *gold = vkd_answer_gold(kind, field);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", vkd_answer_kind_name(kind));
        add(o, "boxed", vkd_answer_last_boxed(text));
        add(o, "extract", given ? strdup(given) : NULL);
        add(o, "gold", gold ? strdup(gold) : NULL);
        add(o, "strip", vkd_answer_strip_string(given));
        add(o, "norm", vkd_answer_normalize(given));
        add(o, "gold_strip", vkd_answer_strip_string(gold));
        add(o, "gold_norm", vkd_answer_normalize(gold));
        cJSON_AddBoolToObject(o, "equal", vkd_answer_equal(kind, given, gold));
        cJSON_AddBoolToObject(o, "score", vkd_answer_score(kind, text, field, flags));
        char *out = cJSON_PrintUnformatted(o);
        if (!out) return 1;
        puts(out);
        free(out);
        cJSON_Delete(o);
        cJSON_Delete(in);
        free(given);
        free(gold);
    }
    free(line);
    return 0;
}
