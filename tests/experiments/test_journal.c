/* test_journal: reading an experiment journal back (apps/journal.c, apps/records.c).
 *
 * Checks: exact 64-bit integers (2^53 + 1 stays distinct from 2^53), shortest round-trip
 * keys (0.3 and 0.3000001 differ, 0.3 prints as 0.3), a torn last line is left out and its
 * bytes reported, a repeated id (two writers) and every kind of bad record give
 * "file:line: field ..." errors for each experiment's check, and the index is linear: a
 * journal of 50,000 records read and looked up in full visits a number of hash slots
 * proportional to the records (a quadratic scan would visit ~1.25e9). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "vkd_test.h"

static vkd_result parse(const char *text, jr_check_fn check, const jr_limits *lim, jr_journal *j, size_t *keep,
                        vkd_error *err) {
    memset(err, 0, sizeof *err);
    return jr_parse("dir/examples.jsonl", text, strlen(text), check, lim, j, keep, err);
}

/* the journal `good` line followed by `bad`: an error at line 2 naming `field` */
static void expect_bad(const char *what, jr_check_fn check, const jr_limits *lim, const char *good,
                       const char *bad, const char *field) {
    char *text = malloc(strlen(good) + strlen(bad) + 3);
    sprintf(text, "%s\n%s\n", good, bad);
    jr_journal j = {0};
    size_t keep;
    vkd_error err;
    vkd_result r = parse(text, check, lim, &j, &keep, &err);
    char want[128];
    snprintf(want, sizeof want, "dir/examples.jsonl:2: field '%s'", field);
    CHECK(r == VKD_ERR_FORMAT && strstr(err.msg, want), "%s: want '%s', got %s '%s'", what, want,
          vkd_result_name(r), err.msg);
    CHECK(j.n == 1, "%s: the good record before the bad one is kept (%zu)", what, j.n);
    jr_free(&j);
    free(text);
}

/* good with the first occurrence of `from` replaced by `to` */
static char *edit(const char *good, const char *from, const char *to) {
    const char *at = strstr(good, from);
    if (!at) {
        fprintf(stderr, "FATAL: '%s' not in the record\n", from);
        exit(1);
    }
    char *s = malloc(strlen(good) + strlen(to) + 1);
    sprintf(s, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    return s;
}

static void bad_edit(const char *what, jr_check_fn check, const jr_limits *lim, const char *good, const char *from,
                     const char *to, const char *field) {
    char *b = edit(good, from, to);
    /* a different id so that the edit, not the repeat, is what fails */
    char *b2 = edit(b, "\"id\":\"", "\"id\":\"x");
    expect_bad(what, check, lim, good, b2, field);
    free(b);
    free(b2);
}

int main(void) {
    /* ---- exact integers and keys ---- */
    const char *src = "{\"seed\":9007199254740993,\"s\":\"12345678901234567\",\"f\":0.12345678901234567,"
                      "\"e\":1e300,\"n\":-12345678901234567}";
    char *x = jr_exact_ints(src, strlen(src));
    CHECK(x && !strcmp(x, "{\"seed\":\"9007199254740993\",\"s\":\"12345678901234567\",\"f\":0.12345678901234567,"
                          "\"e\":1e300,\"n\":\"-12345678901234567\"}"), "jr_exact_ints: %s", x);
    free(x);
    char a[32], b[32];
    jr_fmt_double(a, sizeof a, 0.3);
    jr_fmt_double(b, sizeof b, 0.3000001);
    CHECK(!strcmp(a, "0.3") && !strcmp(b, "0.3000001"), "keys: '%s' '%s'", a, b);
    jr_fmt_double(a, sizeof a, 0.1 + 0.2);
    CHECK(strtod(a, NULL) == 0.1 + 0.2 && strcmp(a, "0.3"), "0.1 + 0.2 keeps its own key: '%s'", a);

    /* ---- torn last line, repeated id ---- */
    jr_journal j = {0};
    size_t keep;
    vkd_error err;
    const char *t = "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c";
    CHECK(parse(t, NULL, NULL, &j, &keep, &err) == VKD_OK && j.n == 2 && keep == 22, "torn line: n %zu keep %zu",
          j.n, keep);
    jr_free(&j);
    CHECK(parse("{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"a\"}\n", NULL, NULL, &j, &keep, &err) == VKD_ERR_FORMAT &&
              strstr(err.msg, "dir/examples.jsonl:3: id 'a' repeats line 1"),
          "repeated id: %s", err.msg);
    jr_free(&j);
    {   /* appending an id already present is refused, the message names it (fuzz_journal found a
         * use after free here) */
        jr_journal k = {0};
        cJSON *r1 = cJSON_Parse("{\"id\":\"dup\"}"), *r2 = cJSON_Parse("{\"id\":\"dup\"}");
        memset(&err, 0, sizeof err);
        CHECK(jr_add(&k, r1, 0, &err) == VKD_OK && jr_add(&k, r2, 0, &err) == VKD_ERR_INVALID &&
                  strstr(err.msg, "'dup' is already present") && k.n == 1, "jr_add of a present id: %s", err.msg);
        jr_free(&k);
    }
    {   /* jr_reorder: the work order first (an index out of range or repeated is skipped), the rest
         * after in journal order; lines move with their records; the index still finds each */
        CHECK(parse("{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n{\"id\":\"d\"}\n", NULL, NULL, &j, &keep, &err) ==
                  VKD_OK && j.n == 4, "reorder input: %s", err.msg);
        size_t idx[4] = {2, 0, 2, 9};
        CHECK(jr_reorder(&j, idx, 4, &err) == VKD_OK, "jr_reorder: %s", err.msg);
        const char *want = "cabd";
        bool ok = j.n == 4;
        for (size_t q = 0; ok && q < 4; q++) {
            char id[2] = {want[q], 0};
            const char *got = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j.rec[q], "id"));
            ok = got && !strcmp(got, id) && jr_find(&j, id) == (long)q && j.line[q] == (size_t)(want[q] - 'a' + 1);
        }
        CHECK(ok, "jr_reorder: order c a b d with their lines, found by id");
        jr_free(&j);
    }
    CHECK(parse("{\"id\":\"a\"}\n[1]\n", NULL, NULL, &j, &keep, &err) == VKD_ERR_FORMAT &&
              strstr(err.msg, "dir/examples.jsonl:2: not a journal record"), "array line: %s", err.msg);
    jr_free(&j);
    CHECK(parse("{\"id\":\"\"}\n", NULL, NULL, &j, &keep, &err) == VKD_ERR_FORMAT &&
              strstr(err.msg, ":1: field 'id'"), "empty id: %s", err.msg);
    jr_free(&j);

    /* ---- each experiment's record check ---- */
    jr_limits lim = {.vocab = 1000, .ctx_len = 512, .ntemps = 2, .block = 4};
    const char *guide = "{\"id\":\"guided/a0.5/T0/ttt-off/7\",\"example\":\"7\",\"cell\":\"guided/a0.5/T0/ttt-off\","
                        "\"condition\":\"guided\",\"alpha\":0.5,\"temperature\":0,\"ttt\":\"off\",\"prompt_tokens\":20,"
                        "\"tokens\":3,\"stopped\":false,\"response\":\"abc\",\"predicted\":null,\"correct\":false,"
                        "\"kl_sum\":0.25,\"changed\":1,\"target_forwards\":3,\"draft_calls\":3,\"prefill_s\":0.1,"
                        "\"decode_s\":0.2,\"ids\":[1,2,999]}";
    CHECK(parse(guide, jr_check_guide, &lim, &j, &keep, &err) == VKD_OK, "a valid guide record: %s", err.msg);
    jr_free(&j);
    {
        char *s = malloc(strlen(guide) + 2);
        sprintf(s, "%s\n", guide);
        CHECK(parse(s, jr_check_guide, &lim, &j, &keep, &err) == VKD_OK && j.n == 1, "guide record read: %s", err.msg);
        jr_free(&j);
        free(s);
    }
    /* the crash of the issue: a record without ids (NULL strcmp in the alpha-0 comparison) */
    char *noids = edit(guide, ",\"ids\":[1,2,999]", "");
    bad_edit("guide: no ids", jr_check_guide, &lim, guide, ",\"ids\":[1,2,999]", "", "ids");
    free(noids);
    bad_edit("guide: ids length", jr_check_guide, &lim, guide, "[1,2,999]", "[1,2]", "ids");
    bad_edit("guide: id out of the vocabulary", jr_check_guide, &lim, guide, "999]", "1000]", "ids");
    bad_edit("guide: negative tokens", jr_check_guide, &lim, guide, "\"tokens\":3", "\"tokens\":-3", "tokens");
    bad_edit("guide: cell not a string", jr_check_guide, &lim, guide, "\"cell\":\"guided/a0.5/T0/ttt-off\"",
             "\"cell\":5", "cell");
    bad_edit("guide: condition", jr_check_guide, &lim, guide, "\"condition\":\"guided\"", "\"condition\":\"other\"",
             "condition");
    bad_edit("guide: fractional count", jr_check_guide, &lim, guide, "\"changed\":1", "\"changed\":0.5", "changed");

    const char *diag = "{\"id\":\"0\",\"line\":1,\"prompt_tokens\":20,\"answer_tokens\":3,\"tokens\":["
                       "[21,0,1,17,0.5,2,0.25,3,null,null,0.125,9]]}";
    CHECK(parse(diag, jr_check_diagnose, &lim, &j, &keep, &err) == VKD_OK, "a valid diagnose record: %s", err.msg);
    jr_free(&j);
    /* the crash of the issue: a negative block index made diagnose realloc ~240 GB */
    bad_edit("diagnose: negative block", jr_check_diagnose, &lim, diag, "[21,0,", "[21,-5,", "tokens");
    bad_edit("diagnose: gold id", jr_check_diagnose, &lim, diag, ",17,", ",4000,", "tokens");
    bad_edit("diagnose: short row", jr_check_diagnose, &lim, diag, ",0.125,9]", "]", "tokens");
    bad_edit("diagnose: rows > answer tokens", jr_check_diagnose, &lim, diag, "\"answer_tokens\":3",
             "\"answer_tokens\":0", "tokens");
    bad_edit("diagnose: line", jr_check_diagnose, &lim, diag, "\"line\":1", "\"line\":\"1\"", "line");

    const char *probe = "{\"id\":\"p1\",\"line\":1,\"prompt_tokens\":20,\"generated_tokens\":2,\"stopped\":true,"
                        "\"gen_s\":0.5,\"reference\":[5,6],\"prompt_s\":0.1,\"blocks_s\":0.2,\"mc_s\":0.3,"
                        "\"positions\":[[0,1,1,6,0.5,0.25,0.1,0.2,0.3]],\"blocks\":[[0,0,1,0.5,0.5,0.5,0.5,-1,-1,0.1,0.1]]}";
    CHECK(parse(probe, jr_check_probe, &lim, &j, &keep, &err) == VKD_OK, "a valid probe record: %s", err.msg);
    jr_free(&j);
    /* the issue: negative ints made probe grow a table without bound */
    bad_edit("probe: negative block", jr_check_probe, &lim, probe, "[[0,1,1,6,", "[[-1,1,1,6,", "positions");
    bad_edit("probe: row width", jr_check_probe, &lim, probe, ",0.3]]", "]]", "positions");
    bad_edit("probe: tvd above 1", jr_check_probe, &lim, probe, "0.1,0.2,0.3]]", "0.1,2.5,0.3]]", "positions");
    bad_edit("probe: reference length", jr_check_probe, &lim, probe, "[5,6]", "[5]", "reference");
    bad_edit("probe: block start", jr_check_probe, &lim, probe, "[[0,0,1,", "[[0,-7,1,", "blocks");
    /* chain counts per block and the graded reference (optional fields) */
    const char *probe2 = "{\"id\":\"p2\",\"line\":2,\"prompt_tokens\":20,\"generated_tokens\":2,\"stopped\":true,"
                         "\"gen_s\":0.5,\"reference\":[5,6],\"prompt_s\":0.1,\"blocks_s\":0.2,\"mc_s\":0.3,"
                         "\"positions\":[[0,1,1,6,0.5,0.25,0.1,0.2,0.3]],\"blocks\":[[0,0,1,0.5,0.5,0.5,0.5,-1,-1,0.1,0.1]],"
                         "\"chains\":[[0,5,3,4,1,1,0,1,6,2,3,1,1,1,1]],"
                         "\"graded\":{\"text\":\"x\",\"answer\":null,\"correct\":false,\"tokens\":2}}";
    CHECK(parse(probe2, jr_check_probe, &lim, &j, &keep, &err) == VKD_OK, "a valid probe record with chains: %s", err.msg);
    jr_free(&j);
    bad_edit("probe: chains width", jr_check_probe, &lim, probe2, ",1,1,1,1]]", ",1,1,1]]", "chains");
    bad_edit("probe: negative chain count", jr_check_probe, &lim, probe2, "[[0,5,3,", "[[0,-5,3,", "chains");
    bad_edit("probe: chains rows", jr_check_probe, &lim, probe2, "1,1,1,1]]", "1,1,1,1],[0,1,1,1,1,1,1,1,1,1,1,1,1,1,1]]",
             "chains");
    bad_edit("probe: graded verdict", jr_check_probe, &lim, probe2, "\"correct\":false", "\"correct\":3", "correct");

    const char *power = "{\"id\":\"q\",\"line\":2,\"prompt_tokens\":9,\"gold\":\"#### 3\",\"gold_answer\":\"3\","
                        "\"power\":{\"text\":\"x\",\"ids\":[4],\"tokens\":1,\"answer\":null,\"correct\":false,"
                        "\"stopped\":true,\"sum_logp\":-1.5,\"blocks\":1,\"attempts\":2,\"accepts\":1,"
                        "\"acceptance\":0.5,\"block_attempts\":[2],\"block_accepts\":[1],\"step_attempts\":[1,1],"
                        "\"step_accepts\":[1,0],\"target_forwards\":3,\"target_rows\":7,\"draft_calls\":0,"
                        "\"tokens_proposed\":3,\"wall_s\":0.5,\"tokens_per_s\":2},"
                        "\"greedy\":{\"text\":\"y\",\"ids\":[5,6],\"tokens\":2,\"stopped\":false,"
                        "\"target_forwards\":2,\"wall_s\":0.1,\"tokens_per_s\":20}}";
    CHECK(parse(power, jr_check_power, &lim, &j, &keep, &err) == VKD_OK, "a valid power record: %s", err.msg);
    jr_free(&j);
    bad_edit("power: negative step count", jr_check_power, &lim, power, "\"step_attempts\":[1,1]",
             "\"step_attempts\":[1,-1]", "power");
    bad_edit("power: block arrays", jr_check_power, &lim, power, "\"block_accepts\":[1]", "\"block_accepts\":[]",
             "power");
    bad_edit("power: baseline ids", jr_check_power, &lim, power, "\"ids\":[5,6]", "\"ids\":[5,-6]", "greedy");
    bad_edit("power: accepts > attempts", jr_check_power, &lim, power, "\"accepts\":1,", "\"accepts\":3,", "power");
    bad_edit("power: missing", jr_check_power, &lim, power, "\"power\":{", "\"powe\":{", "power");

    const char *ttt = "{\"id\":\"0\",\"line\":0,\"prompt_tokens\":20,\"context_tokens\":30,\"baseline\":{\"tau\":1.5,"
                      "\"spec_steps\":2,\"generated\":3,\"stopped\":false,\"spec_s\":0.1,\"tf_tokens\":9,\"p_mean\":0.5,"
                      "\"rank_mean\":2,\"logp_mean\":-0.7,\"ids\":[1,2,999]},\"settings\":[{\"tau\":2,\"spec_steps\":2,"
                      "\"generated\":3,\"stopped\":true,\"spec_s\":0.1,\"tf_tokens\":9,\"p_mean\":null,\"rank_mean\":null,"
                      "\"logp_mean\":null,\"ids\":[4,5,6],\"steps\":2,\"lr\":0.001,\"rank\":8,\"losses\":[3.5,2.5],"
                      "\"features_s\":0.01,\"train_s\":0.2,\"train_rows\":30}]}";
    CHECK(parse(ttt, jr_check_ttt, &lim, &j, &keep, &err) == VKD_OK, "a valid ttt record: %s", err.msg);
    jr_free(&j);
    bad_edit("ttt: baseline ids length", jr_check_ttt, &lim, ttt, "[1,2,999]", "[1,2]", "ids");
    bad_edit("ttt: setting id out of the vocabulary", jr_check_ttt, &lim, ttt, "[4,5,6]", "[4,5,1000]", "ids");
    bad_edit("ttt: more losses than steps", jr_check_ttt, &lim, ttt, "[3.5,2.5]", "[3.5,2.5,1]", "losses");
    bad_edit("ttt: negative loss", jr_check_ttt, &lim, ttt, "[3.5,2.5]", "[3.5,-2.5]", "losses");
    bad_edit("ttt: rank 0", jr_check_ttt, &lim, ttt, "\"rank\":8", "\"rank\":0", "rank");
    bad_edit("ttt: no settings", jr_check_ttt, &lim, ttt, "\"settings\":[", "\"setting\":[", "settings");
    bad_edit("ttt: context past the cache", jr_check_ttt, &lim, ttt, "\"context_tokens\":30", "\"context_tokens\":513",
             "context_tokens");

    /* ---- a large journal: linear reading and lookups ---- */
    enum { N = 50000 };
    size_t cap = (size_t)N * 64, len = 0;
    char *big = malloc(cap);
    for (int k = 0; k < N; k++) len += (size_t)snprintf(big + len, cap - len, "{\"id\":\"guided/a0.1/T0/ttt-off/%d\"}\n", k);
    jr_journal J = {0};
    CHECK(jr_parse("big.jsonl", big, len, NULL, NULL, &J, &keep, &err) == VKD_OK && J.n == N && keep == len,
          "big journal: %s", err.msg);
    uint64_t after_read = J.probes;
    size_t found = 0;
    for (int k = 0; k < N; k++) {
        char id[64];
        snprintf(id, sizeof id, "guided/a0.1/T0/ttt-off/%d", k);
        found += jr_find(&J, id) == k;
    }
    snprintf(big, cap, "not/there");
    found += jr_find(&J, big) < 0;
    CHECK(found == N + 1, "index lookups: %zu of %d", found, N + 1);
    /* a load factor <= 1/2 keeps the expected probes per lookup or insert below ~2.5; allow 8 */
    CHECK(after_read < 8ull * N && J.probes - after_read < 8ull * N,
          "linear: %llu slots visited reading %d records, %llu looking them up (quadratic: ~%.2g)",
          (unsigned long long)after_read, N, (unsigned long long)(J.probes - after_read), (double)N * N / 2);
    printf("journal index: %d records, %.2f slots per insert, %.2f per lookup\n", N, (double)after_read / N,
           (double)(J.probes - after_read) / (N + 1));
    jr_free(&J);
    free(big);
    return vkd_test_result("test_journal");
}
