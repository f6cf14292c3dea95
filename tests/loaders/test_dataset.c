/* test_dataset.c: the dataset reader on the real shared files (GSM8K 1319, MATH-500 500,
 * HumanEval 164, MT-Bench 80: counts, first/last records, fields), chat messages, field
 * options, and malformed files (each error names the file, the line and the field). */
#include "dataset.h"
#include "ld_util.h"

static char *shared_dataset(const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "../shared/datasets/%s", file);
    return ld_source_path(rel);
}

static vkd_ds *load(const char *file, const vkd_ds_options *opt) {
    char *path = shared_dataset(file);
    vkd_ds *ds = NULL;
    vkd_error err = {0};
    vkd_result r = vkd_ds_load(path, opt, &ds, &err);
    CHECK(r == VKD_OK, "%s: %s", file, err.msg);
    free(path);
    return ds;
}

static bool starts(const char *s, const char *prefix) {
    return s && !strncmp(s, prefix, strlen(prefix));
}

static void test_real(void) {
    vkd_ds *ds = load("gsm8k_test.jsonl", NULL);
    if (ds) {
        CHECK(ds->count == 1319, "gsm8k: %zu records", ds->count);
        CHECK(starts(ds->records[0].prompt, "Janet\xe2\x80\x99s ducks lay 16 eggs per day."),
              "gsm8k first question: %.40s", ds->records[0].prompt);
        CHECK(ds->records[0].answer && strstr(ds->records[0].answer, "#### 18"), "gsm8k answer 0");
        CHECK(!strcmp(ds->records[0].id, "0") && !strcmp(ds->records[1318].id, "1318") &&
              ds->records[1318].line == 1319, "gsm8k ids and lines");
        size_t with_hash = 0;
        for (size_t i = 0; i < ds->count; i++) with_hash += strstr(ds->records[i].answer, "#### ") != NULL;
        CHECK(with_hash == ds->count, "gsm8k: %zu answers end with '#### n'", with_hash);
        vkd_ds_free(ds);
    }
    ds = load("math500.json", NULL);
    if (ds) {
        CHECK(ds->count == 500, "math500: %zu records", ds->count);
        CHECK(starts(ds->records[0].prompt, "Convert the point $(0,3)$ in rectangular coordinates"),
              "math500 prompt 0");
        CHECK(!strcmp(ds->records[0].answer, "\\left( 3, \\frac{\\pi}{2} \\right)"), "math500 answer 0: %s",
              ds->records[0].answer);
        CHECK(!strcmp(ds->records[0].id, "test/precalculus/807.json"), "math500 id 0: %s", ds->records[0].id);
        CHECK(ds->records[0].line == 2 && ds->records[1].line == 8, "math500 record lines %zu %zu",
              ds->records[0].line, ds->records[1].line);
        vkd_ds_free(ds);
    }
    ds = load("humaneval.jsonl", NULL);
    if (ds) {
        CHECK(ds->count == 164, "humaneval: %zu", ds->count);
        CHECK(!strcmp(ds->records[0].id, "HumanEval/0") && !strcmp(ds->records[163].id, "HumanEval/163"),
              "humaneval ids");
        CHECK(starts(ds->records[0].prompt, "from typing import List\n\n\ndef has_close_elements"),
              "humaneval prompt 0");
        CHECK(ds->records[0].answer && strstr(ds->records[0].answer, "for idx, elem in enumerate(numbers)"),
              "humaneval canonical_solution 0");
        vkd_ds_free(ds);
    }
    ds = load("mt_bench_questions.jsonl", NULL);
    if (ds) {
        CHECK(ds->count == 80, "mt-bench: %zu", ds->count);
        CHECK(!strcmp(ds->records[0].id, "81") && !strcmp(ds->records[79].id, "160"), "mt-bench ids %s %s",
              ds->records[0].id, ds->records[79].id);
        CHECK(starts(ds->records[0].prompt, "Compose an engaging travel blog post about a recent trip to Hawaii"),
              "mt-bench turn 0");
        CHECK(ds->records[0].answer == NULL, "mt-bench has no answers");
        vkd_ds_free(ds);
    }
    vkd_ds_options second = {.turn = 1};
    ds = load("mt_bench_questions.jsonl", &second);
    if (ds) {
        CHECK(starts(ds->records[0].prompt, "Rewrite your previous response. Start every sentence with the letter A."),
              "mt-bench turn 1: %.50s", ds->records[0].prompt);
        vkd_ds_free(ds);
    }
    vkd_ds_options three = {.turn = 2};
    char *path = shared_dataset("mt_bench_questions.jsonl");
    vkd_error err = {0};
    CHECK(vkd_ds_load(path, &three, &ds, &err) != VKD_OK &&
          strstr(err.msg, "mt_bench_questions.jsonl:1: field 'turns': turn 2 requested but the list has 2 entries"),
          "turn 2: %s", err.msg);
    free(path);
    /* explicit fields override the preset: HumanEval's test code as the answer */
    vkd_ds_options tests = {.answer_field = "test", .id_field = "entry_point"};
    ds = load("humaneval.jsonl", &tests);
    if (ds) {
        CHECK(strstr(ds->records[0].answer, "def check(candidate)") && !strcmp(ds->records[0].id, "has_close_elements"),
              "humaneval with answer_field=test");
        vkd_ds_free(ds);
    }
    fprintf(stderr, "  real datasets: gsm8k 1319, math500 500, humaneval 164, mt-bench 80\n");
}

/* Parses text as file `name`; checks the error message contains expect (NULL: success). */
static vkd_ds *parse_text(const char *name, const char *text, const vkd_ds_options *opt,
                          const char *expect) {
    vkd_ds *ds = NULL;
    vkd_error err = {0};
    vkd_result r = vkd_ds_parse(text, strlen(text), name, opt, &ds, &err);
    if (expect)
        CHECK(r != VKD_OK && !ds && strstr(err.msg, expect), "%s: expected '%s', got '%s'", name,
              expect, err.msg);
    else
        CHECK(r == VKD_OK, "%s: %s", name, err.msg);
    return ds;
}

static void test_formats(void) {
    /* chat messages, automatic fields, blank lines, CRLF, BOM */
    const char *chat =
        "\xef\xbb\xbf{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
        "{\"role\": \"user\", \"content\": \"Hi \xc3\xa9\"}], \"id\": 7}\r\n"
        "\n   \n"
        "{\"prompt\": \"plain\", \"answer\": 42}\r\n";
    vkd_ds *ds = parse_text("chat.jsonl", chat, NULL, NULL);
    if (ds) {
        CHECK(ds->count == 2, "chat: %zu records", ds->count);
        vkd_ds_record *r = &ds->records[0];
        CHECK(!r->prompt && r->n_messages == 2 && !strcmp(r->messages[0].role, "system") &&
              !strcmp(r->messages[1].content, "Hi \xc3\xa9") && !strcmp(r->id, "7") && !r->answer,
              "chat record");
        r = &ds->records[1];
        CHECK(!strcmp(r->prompt, "plain") && !strcmp(r->answer, "42") && !strcmp(r->id, "1") &&
              r->line == 4, "plain record (line %zu)", r->line);
        vkd_ds_free(ds);
    }
    ds = parse_text("arr.json", " [ ]", NULL, "arr.json: no records");
    ds = parse_text("arr.json", "[{\"question\": \"q\"},\n {\"question\": \"r\", \"answer\": \"a\"}]\n", NULL, NULL);
    if (ds) {
        CHECK(ds->count == 2 && ds->records[1].line == 2 && !strcmp(ds->records[1].answer, "a"), "array");
        vkd_ds_free(ds);
    }
    vkd_ds_options named = {.prompt_field = "q", .answer_field = "", .id_field = "k"};
    ds = parse_text("custom.jsonl", "{\"q\": \"x\", \"answer\": \"ignored\", \"k\": \"id-1\"}", &named, NULL);
    if (ds) {
        CHECK(!strcmp(ds->records[0].prompt, "x") && !ds->records[0].answer &&
              !strcmp(ds->records[0].id, "id-1"), "custom fields");
        vkd_ds_free(ds);
    }
    vkd_ds_options gsm = {.preset = "gsm8k"};
    ds = parse_text("anything.jsonl", "{\"question\": \"q\", \"answer\": \"#### 1\"}", &gsm, NULL);
    vkd_ds_free(ds);
    fprintf(stderr, "  formats: JSONL with chat messages, CRLF, BOM, blank lines; arrays; options\n");
}

static void test_malformed(void) {
    struct { const char *name, *text, *expect; } cases[] = {
        {"gsm8k.jsonl", "{\"question\": \"a\", \"answer\": \"b\"}\n\n{\"question\": 5, \"answer\": \"b\"}\n",
         "gsm8k.jsonl:3: field 'question': expected a string, a list of strings or a list of {role, content} messages, got an integer"},
        {"gsm8k.jsonl", "{\"question\": \"a\"}\n", "gsm8k.jsonl:1: field 'answer' is missing (expected the answer)"},
        {"gsm8k.jsonl", "{\"question\": \"a\", \"answer\": [1]}\n", "gsm8k.jsonl:1: field 'answer': expected a string, got an array"},
        {"gsm8k.jsonl", "{\"q\": \"a\", \"answer\": \"b\"}\n", "gsm8k.jsonl:1: field 'question' is missing"},
        {"data.jsonl", "{\"text\": \"a\"}\n", "data.jsonl:1: no prompt field"},
        {"data.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n", "data.jsonl:2: invalid JSON at column"},
        {"data.jsonl", "{\"prompt\": \"a\"} {\"prompt\": \"b\"}\n", "data.jsonl:1: unexpected data after the JSON object at column 17"},
        {"data.jsonl", "[1]\n{\"prompt\": \"b\"}", "data.jsonl:1: expected a JSON object, got an integer"},
        {"data.jsonl", "\"just a string\"\n", "data.jsonl:1: expected a JSON object, got a string"},
        {"data.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": \"bad \xff byte\"}\n", "data.jsonl:2: invalid UTF-8 (byte 0xff at column 17)"},
        {"data.jsonl", "{\"prompt\": \"\xc0\xaf\"}", "data.jsonl:1: invalid UTF-8 (byte 0xc0"},
        {"data.jsonl", "{\"prompt\": \"\xed\xa0\x80\"}", "data.jsonl:1: invalid UTF-8"},
        {"data.jsonl", "{\"prompt\": \"cut \xe2\x82", "data.jsonl:1: invalid UTF-8"},
        {"data.jsonl", "", "data.jsonl: no records"},
        {"data.jsonl", "\n\n  \n", "data.jsonl: no records"},
        {"chat.jsonl", "{\"messages\": [{\"role\": \"user\"}]}", "chat.jsonl:1: field 'messages[0].content': expected a string, got nothing"},
        {"chat.jsonl", "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", "chat.jsonl:1: field 'messages[0].role': expected a string, got an integer"},
        {"chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, 3]}", "chat.jsonl:1: field 'messages': expected a list of {role, content} messages, got an integer"},
        {"chat.jsonl", "{\"messages\": []}", "chat.jsonl:1: field 'messages': expected a string, a list of strings"},
        {"mt_bench.jsonl", "{\"turns\": [\"a\", 2], \"question_id\": 1}", "mt_bench.jsonl:1: field 'turns': expected a list of strings, got an integer"},
        {"mt_bench.jsonl", "{\"turns\": [\"a\"], \"question_id\": {}}", "mt_bench.jsonl:1: field 'question_id': expected a string or a number, got an object"},
        {"math500.json", "[{\"prompt\": \"a\", \"answer\": \"b\", \"id\": \"x\"},\n{\"prompt\": \"a\", \"answer\": null, \"id\": \"y\"}]",
         "math500.json:2: field 'answer': expected a string, got null"},
        {"math500.json", "[{\"prompt\": \"a\", \"answer\": \"b\", \"id\": \"x\"}", "math500.json:1: expected ',' or ']' after record 0"},
        {"math500.json", "[{\"prompt\": \"a\", \"answer\": \"b\", \"id\": \"x\"},", "math500.json:1: the array is not closed"},
        {"math500.json", "[{\"prompt\": \"a\", \"answer\": \"b\", \"id\": \"x\"}] x", "math500.json:1: unexpected data after the array"},
        {"math500.json", "[\n\n{\"prompt\": ", "math500.json:3: invalid JSON in record 0"},
        {"math500.json", "[1]", "math500.json:1: expected a JSON object, got an integer"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) parse_text(cases[k].name, cases[k].text, NULL, cases[k].expect);
    vkd_ds_options bad = {.preset = "squad"};
    parse_text("x.jsonl", "{}", &bad, "unknown dataset preset 'squad'");

    /* a file on disk: the error names its path */
    char *dir = ld_mkdtemp("ds");
    ld_write_str(dir, "broken.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"id\": [1]}\n");
    char *path = ld_join(dir, "broken.jsonl");
    vkd_ds *ds = NULL;
    vkd_error err = {0};
    CHECK(vkd_ds_load(path, NULL, &ds, &err) != VKD_OK && strstr(err.msg, "broken.jsonl:2: field 'id': expected a string or a number, got an array"),
          "file error: %s", err.msg);
    char *missing = ld_join(dir, "nope.jsonl");
    CHECK(vkd_ds_load(missing, NULL, &ds, &err) == VKD_ERR_IO && strstr(err.msg, "nope.jsonl: cannot open"),
          "missing file: %s", err.msg);
    free(missing);
    free(path);
    ld_rm_rf(dir);
    free(dir);
    fprintf(stderr, "  malformed datasets: %zu cases rejected with file:line and field\n",
            sizeof cases / sizeof cases[0]);
}

/* CL-bench records (system + user messages, rubrics, metadata): the cl-bench preset from the
 * file name takes metadata.task_id as the id; other fields are kept as JSON text, by name or
 * dotted path; a name that holds a dot as it is wins over the path. */
static void test_fields(void) {
    const char *cl =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"ctx + task\"}], "
        "\"rubrics\": [\"r1\", \"r2\"], \"metadata\": {\"task_id\": \"t-9\", \"context_category\": \"Rule System Application\", "
        "\"n\": 3}, \"a.b\": 1, \"a\": {\"b\": 2}}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}], \"metadata\": {\"task_id\": 5}}\n";
    const char *want[] = {"rubrics", "metadata.context_category", "metadata.n", "a.b", "missing", "metadata.task_id.x"};
    vkd_ds_options o = {.fields = want, .nfields = 6};
    vkd_ds *ds = parse_text("CL-bench_dev.jsonl", cl, &o, NULL);
    if (ds) {
        const vkd_ds_record *r = &ds->records[0];
        CHECK(ds->count == 2 && ds->nfields == 6 && !strcmp(r->id, "t-9") && !strcmp(ds->records[1].id, "5"),
              "cl-bench ids %s %s", r->id, ds->records[1].id);
        CHECK(r->n_messages == 2 && !r->answer && !strcmp(r->messages[1].content, "ctx + task"), "cl-bench chat");
        CHECK(!strcmp(r->fields[0], "[\"r1\",\"r2\"]"), "rubrics kept: %s", r->fields[0]);
        CHECK(!strcmp(r->fields[1], "\"Rule System Application\""), "dotted path: %s", r->fields[1]);
        CHECK(!strcmp(r->fields[2], "3") && !strcmp(r->fields[3], "1"), "number; literal dotted name: %s %s",
              r->fields[2], r->fields[3]);
        CHECK(!r->fields[4] && !r->fields[5], "missing fields are NULL");
        CHECK(!ds->records[1].fields[0] && !ds->records[1].fields[1], "second record lacks rubrics");
        vkd_ds_free(ds);
    }
    ds = parse_text("clbench.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}\n", NULL,
                    "field 'metadata.task_id' is missing");
    vkd_ds_free(ds);
    fprintf(stderr, "  fields: cl-bench preset, kept fields by name and dotted path\n");
}

int main(void) {
    test_real();
    test_formats();
    test_fields();
    test_malformed();
    return vkd_test_result("test_dataset");
}
