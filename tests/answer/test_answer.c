/* test_answer.c: answer extraction and scoring. Hand-written expectations for the MATH
 * grader port and the GSM8K rules, every gold answer of the real GSM8K (1319) and MATH-500
 * (500) files (gold extraction succeeds and scores its own solution / boxed form), and
 * robustness: random bytes and random LaTeX-ish token soups through every function, and
 * large adversarial inputs (nested braces, 256 KiB of "\frac", digits) that must finish in
 * linear time (the time is printed, not checked; VKD_ANSWER_BIG=bytes to try other sizes,
 * VKD_ANSWER_TIMES=1 for each input's time). Run under ASan+UBSan too. */
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "vkd_answer.h"
#include "vkd_test.h"

#define GSM VKD_ANSWER_GSM8K
#define MATH VKD_ANSWER_MATH

static bool streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static void check_str(char *got, const char *want, const char *what, const char *in) {
    if (want) CHECK(streq(got, want), "%s(%s) = %s, want %s", what, in, got ? got : "NULL", want);
    else CHECK(!got, "%s(%s) = %s, want NULL", what, in, got);
    free(got);
}

static void test_kinds(void) {
    CHECK(vkd_answer_kind_from_name("gsm8k") == GSM && vkd_answer_kind_from_name("GSM8K") == GSM, "gsm8k");
    CHECK(vkd_answer_kind_from_name("math500") == MATH && vkd_answer_kind_from_name("MATH-500") == MATH &&
          vkd_answer_kind_from_name("math") == MATH, "math500");
    CHECK(vkd_answer_kind_from_name("humaneval") == VKD_ANSWER_NONE && vkd_answer_kind_from_name(NULL) == 0,
          "none");
    CHECK(!strcmp(vkd_answer_kind_name(GSM), "gsm8k") && !strcmp(vkd_answer_kind_name(MATH), "math500") &&
          !strcmp(vkd_answer_kind_name(VKD_ANSWER_NONE), "none"), "names");
    CHECK(!vkd_answer_extract(VKD_ANSWER_NONE, "#### 5", 0) && !vkd_answer_score(VKD_ANSWER_NONE, "5", "5", 0),
          "unknown kind scores nothing");
}

static void test_boxed(void) {
    static const char *cases[][2] = {
        {"so \\boxed{5}.", "5"},
        {"\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"},
        {"\\boxed{a{b{c}}d}", "a{b{c}}d"},
        {"\\fbox{7}", "7"},
        {"\\boxed{3} and \\fbox{7}", "3"},        /* \fbox only when there is no \boxed */
        {"\\boxed{3} \\boxed{4", NULL},            /* the last box is unbalanced: no answer */
        {"\\boxed 5", NULL},                       /* remove_boxed wants "\boxed{" */
        {"\\boxed{}", ""},
        {"no box", NULL},
        {"\\boxed}{x}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_str(vkd_answer_last_boxed(cases[i][0]), cases[i][1], "last_boxed", cases[i][0]);
}

static void test_strip_string(void) {
    static const char *cases[][2] = {
        {"\\dfrac{1}{2}", "\\frac{1}{2}"},
        {"\\frac12", "\\frac{1}{2}"},
        {"\\frac1{72}", "\\frac{1}{72}"},
        {"0.5", "\\frac{1}{2}"},
        {".5", "\\frac{1}{2}"},
        {"3/4", "\\frac{3}{4}"},
        {"03/4", "03/4"},
        {"\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"},
        {"10\\%", "10"},
        {"90^\\circ", "90"},
        {"90^{\\circ}", "90"},
        {"\\$32", "32"},
        {"x = 5", "5"},
        {"xy = 5", "xy=5"},
        {"xyz = 5", "xyz=5"},
        {"\\sqrt3", "\\sqrt{3}"},
        {"\\text{(C)}", "(C)"},
        {"5\\text{ cm}", "5"},
        {"5\\text{ cm}\\text{ m}", "5\\text{ cm}\\text{ m}"}, /* the assert: returned unchanged */
        {"\\frac", "\\frac"},                                 /* IndexError: unchanged */
        {"\\frac1", "\\frac1"},                               /* len < 2: unchanged */
        {"  7  ", "7"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_str(vkd_answer_strip_string(cases[i][0]), cases[i][1], "strip_string", cases[i][0]);
}

static void test_normalize(void) {
    static const char *cases[][2] = {
        {"\\frac{1}{2}", "1/2"},
        {"\\text{Monday}", "mon"}, /* the unit "day" goes, as in the reference */
        {"5 \\text{ cm}^2", "5^2"},
        {"5 cm", "5"},
        {"10 degrees", "10"},
        {"1,000,000", "1000000"},
        {"2.0", "2"},
        {"3 million", "3*10^6"},
        {"\\sqrt{2}", "sqrt(2)"},
        {"2\\pi", "2pi"},
        {"(-\\infty, 3]", "(-inf,3]"},
        {"7 3/4", "7+3/4"},
        {"- 5", "-5"},
        {"\\$1.50", "1.50"},
        {"{x}", "x"},
        {"1 or 2", "1,2"},
        {"\\alpha", "\xce\xb1"},
        {"\\unknownmacro", "unknownmacro"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_str(vkd_answer_normalize(cases[i][0]), cases[i][1], "normalize", cases[i][0]);
}

static void test_math_equal(void) {
    static const struct { const char *given, *gold; bool eq; } cases[] = {
        {"\\dfrac{1}{2}", "\\frac12", true},
        {"\\frac{1}{2}", "0.5", true},
        {"0.5", "\\frac{1}{2}", true},
        {"1/2", "\\frac{1}{2}", true},
        {"2/4", "\\frac{1}{2}", false}, /* unreduced fractions stay wrong */
        {"-.25", "-\\frac{1}{4}", true},
        {"10", "10\\%", true},
        {"90", "90^\\circ", true},
        {"(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", true},
        {"(3,\\frac{\\pi}{2}]", "\\left( 3, \\frac{\\pi}{2} \\right)", false},
        {"(1,2,3)", "(1,2)", false},
        {"\\text{(C)}", "(C)", true},
        {"C", "\\text{(C)}", true}, /* "(c)" splits as a 1-tuple: c == c */
        {"1,234", "1234", true},
        {"5.0", "5", true},
        {"5.5", "5", false},
        {"\\sqrt{3}", "\\sqrt3", true},
        {"\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", true},
        {"x = 3", "3", true},
        {"Monday", "\\text{Monday}", true},
        {"3", "4", false},
        {"", "4", false},
        {"2\\sqrt{2}", "\\sqrt{8}", false}, /* sympy would say equal: not ported */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(vkd_answer_math_equal(cases[i].given, cases[i].gold) == cases[i].eq, "math_equal(%s, %s) != %d",
              cases[i].given, cases[i].gold, cases[i].eq);
    CHECK(!vkd_answer_math_equal(NULL, "1") && !vkd_answer_math_equal("1", NULL), "NULL is wrong");
}

static void test_extract(void) {
    static const struct { vkd_answer_kind k; const char *text, *want; unsigned flags; } cases[] = {
        {GSM, "She pays 3 * 6 = 18 dollars.\n#### 18", "18", 0},
        {GSM, "#### 1,234", "1234", 0},
        {GSM, "blah 5\n#### -3\n", "-3", 0},
        {GSM, "The answer is $1,250.50. Then 7 more", "1250.50", 0},
        {GSM, "so \\boxed{18 \\text{ dollars}} and 5", "18", 0},
        {GSM, "\\boxed{2 \\times 9 = 18}", "18", 0},
        {GSM, "first 3, then 4, finally 12.", "12", 0},
        {GSM, "temperature is -5 degrees", "-5", 0},
        {GSM, "from 3-5", "5", 0},
        {GSM, "no numbers here", NULL, 0},
        {GSM, "#### \n answer 7", "7", 0},
        {GSM, "x = .5", ".5", 0},
        {MATH, "Thus \\boxed{\\frac{14}{3}}.", "\\frac{14}{3}", 0},
        {MATH, "The answer is $\\frac{1}{2}$.", "\\frac{1}{2}", 0},
        {MATH, "The final answer is: 42.\nDone", "42", 0},
        {MATH, "The final answer is 42.", NULL, VKD_ANSWER_BOXED_ONLY},
        {MATH, "nothing", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_str(vkd_answer_extract(cases[i].k, cases[i].text, cases[i].flags), cases[i].want, "extract",
                  cases[i].text);
    check_str(vkd_answer_gold(GSM, "work\n#### 1,234"), "1234", "gold", "#### 1,234");
    check_str(vkd_answer_gold(GSM, "no hashes"), NULL, "gold", "no hashes");
    check_str(vkd_answer_gold(MATH, " \\frac{14}{3} "), "\\frac{14}{3}", "gold", "\\frac{14}{3}");
    CHECK(vkd_answer_score(GSM, "so #### 1,234", "x\n#### 1234", 0), "#### 1,234 == 1234");
    CHECK(vkd_answer_score(GSM, "it costs 18.00", "#### 18", 0), "18.00 == 18");
    CHECK(!vkd_answer_score(GSM, "it costs 18.5", "#### 18", 0), "18.5 != 18");
    CHECK(vkd_answer_score(MATH, "\\boxed{\\dfrac{1}{2}}", "\\frac12", 0), "boxed dfrac");
    CHECK(!vkd_answer_equal(GSM, NULL, "1") && !vkd_answer_equal(MATH, "1", NULL), "NULL");
}

static char *shared_path(const char *file) {
    const char *root = getenv("VKDRAFT_SOURCE_ROOT");
    char *p = malloc(4096);
    REQUIRE(p, "malloc");
    snprintf(p, 4096, "%s/../shared/datasets/%s", root ? root : ".", file);
    return p;
}

static void test_real_golds(void) {
    static const char *files[] = {"gsm8k_test.jsonl", "math500.json"};
    for (int f = 0; f < 2; f++) {
        char *path = shared_path(files[f]);
        vkd_ds *ds = NULL;
        vkd_error err = {0};
        vkd_result r = vkd_ds_load(path, NULL, &ds, &err);
        free(path);
        CHECK(r == VKD_OK, "%s: %s", files[f], err.msg);
        if (r != VKD_OK) continue;
        vkd_answer_kind k = f == 0 ? GSM : MATH;
        size_t got = 0, self = 0, numeric = 0;
        for (size_t i = 0; i < ds->count; i++) {
            const char *field = ds->records[i].answer;
            char *g = vkd_answer_gold(k, field);
            got += g != NULL;
            if (k == GSM) {
                /* the worked solution scores itself; the gold is a plain number */
                self += vkd_answer_score(k, field, field, 0);
                char *e = vkd_answer_extract(k, g ? g : "", 0);
                numeric += streq(e, g);
                free(e);
            } else {
                size_t n = strlen(field) + 32;
                char *text = malloc(n);
                REQUIRE(text, "malloc");
                snprintf(text, n, "so \\boxed{%s}.", field);
                self += vkd_answer_score(k, text, field, 0);
                free(text);
                numeric++;
            }
            free(g);
        }
        CHECK(got == ds->count && self == ds->count && numeric == ds->count,
              "%s: gold %zu, self-scored %zu, numeric %zu of %zu", files[f], got, self, numeric, ds->count);
        fprintf(stderr, "%s: %zu golds extracted, %zu self-scored\n", files[f], got, self);
        vkd_ds_free(ds);
    }
}

/* every function on one input: must not crash, leak (ASan) or return invalid pointers */
static void run_all(const char *s) {
    for (int k = 0; k < 3; k++) {
        free(vkd_answer_extract((vkd_answer_kind)k, s, 0));
        free(vkd_answer_extract((vkd_answer_kind)k, s, VKD_ANSWER_BOXED_ONLY));
        free(vkd_answer_gold((vkd_answer_kind)k, s));
        (void)vkd_answer_score((vkd_answer_kind)k, s, s, 0);
    }
    free(vkd_answer_last_boxed(s));
    free(vkd_answer_strip_string(s));
    free(vkd_answer_normalize(s));
    (void)vkd_answer_math_equal(s, "\\frac{1}{2}");
    (void)vkd_answer_math_equal("(1,2)", s);
}

static void test_robust(void) {
    unsigned long long rng = 0x5eed1234ULL;
    static const char *tokens[] = {
        "\\boxed{", "\\fbox{", "{", "}", "\\frac", "\\dfrac", "\\sqrt", "\\text{", "\\text{ ", "####",
        "answer is", "1", "23", "0.5", ".", ",", "-", "/", "=", " ", "\n", "$", "\\%", "%", "^\\circ",
        "\\left(", "\\right)", "(", ")", "[", "]", "\\\\", "\\", "\\!", "\xce\xb1", "\xe2\x88\x9e", "cm",
        "degrees", "million", "\\pi", "\\mbox{", "\\begin{pmatrix}", "e5", "_", "inf", "nan", "x",
        "\xff", "\xc3", "\xe2\x80", ",000", ",\\!", " or ", " and ",
    };
    enum { CASES = 3000 };
    char buf[512];
    for (int c = 0; c < CASES; c++) {
        size_t n = 0;
        if (c % 3 == 0) { /* raw bytes, no NUL */
            size_t len = vkd_test_rand_u64(&rng) % 200;
            for (; n < len; n++) buf[n] = (char)(1 + vkd_test_rand_u64(&rng) % 255);
        } else {
            size_t cnt = vkd_test_rand_u64(&rng) % 40;
            for (size_t t = 0; t < cnt; t++) {
                const char *tok = tokens[vkd_test_rand_u64(&rng) % (sizeof tokens / sizeof *tokens)];
                size_t l = strlen(tok);
                if (n + l >= sizeof buf) break;
                memcpy(buf + n, tok, l);
                n += l;
            }
        }
        buf[n] = 0;
        run_all(buf);
    }
    /* large adversarial inputs: 256 KiB each (VKD_ANSWER_BIG bytes to check the scaling; the
     * sanitizer build runs ~30x slower) */
    const char *big_env = getenv("VKD_ANSWER_BIG");
    size_t BIG = big_env ? (size_t)strtoull(big_env, NULL, 10) : (size_t)1 << 18;
    if (BIG < 64) BIG = 64;
    static const char *units[] = {"{", "}", "\\frac", "\\boxed{", "\\sqrt", "1,234", "9", "\\frac{", "- ", "\\a{"};
    char *big = malloc(BIG + 16);
    REQUIRE(big, "malloc");
    double worst = 0;
    const char *worst_unit = "";
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        size_t l = strlen(units[u]), n = 0;
        while (n + l < BIG) { memcpy(big + n, units[u], l); n += l; }
        big[n] = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        run_all(big);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (getenv("VKD_ANSWER_TIMES")) fprintf(stderr, "  %-10s %.3f s\n", units[u], s);
        if (s > worst) { worst = s; worst_unit = units[u]; }
    }
    free(big);
    fprintf(stderr, "robust: %d random inputs; %zu-byte inputs through every function: slowest %.2f s (\"%s\" repeated)\n",
            CASES, BIG, worst, worst_unit);
}

int main(void) {
    test_kinds();
    test_boxed();
    test_strip_string();
    test_normalize();
    test_math_equal();
    test_extract();
    test_real_golds();
    test_robust();
    return vkd_test_result("answer");
}
