/* test_tok_unit: behaviour with no reference to compare against: invalid UTF-8 is rejected
 * with the offset (the reference binding only takes valid strings), empty input, a 1 MB
 * single line encodes in bounded time (a generous 5 s: a check on complexity, not speed)
 * and round-trips, lookups and special ids, bad ids, malformed tokenizer.json. */
#include <time.h>

#include "tok_test_util.h"
#include "tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void check_invalid(vkd_tok *t, const char *s, size_t n, size_t off) {
    int32_t *ids = NULL;
    size_t k = 0;
    vkd_error err = {0};
    vkd_result r = vkd_tok_encode(t, s, n, false, &ids, &k, &err);
    char want[64];
    snprintf(want, sizeof want, "offset %zu", off);
    CHECK(r == VKD_ERR_INVALID && strstr(err.msg, "not valid UTF-8") && strstr(err.msg, want),
          "invalid UTF-8 (offset %zu) gave %s: %s", off, vkd_result_name(r), err.msg);
    CHECK(ids == NULL, "ids set on error");
}

static void big_line(vkd_tok *t, const char *name, int mode) {
    size_t n = 1 << 20;
    char *s = malloc(n);
    unsigned long long seed = 7;
    const char *words[] = {"the ", "quick ", "你好", "😀", "  ", "\n", "12345", "x", ", ", "ing"};
    for (size_t i = 0; i < n;) {
        if (mode == 0) s[i++] = 'a';
        else if (mode == 1) s[i++] = ' ';
        else if (mode == 2) s[i++] = "0123456789"[i % 10];
        else {
            const char *w = words[vkd_test_rand_u64(&seed) % 10];
            size_t l = strlen(w);
            if (i + l > n) { while (i < n) s[i++] = 'z'; break; }
            memcpy(s + i, w, l);
            i += l;
        }
    }
    int32_t *ids;
    size_t k;
    vkd_error err = {0};
    double t0 = now();
    vkd_result r = vkd_tok_encode(t, s, n, false, &ids, &k, &err);
    double dt = now() - t0;
    CHECK(r == VKD_OK, "%s 1 MB mode %d: %s", name, mode, err.msg);
    if (r) { free(s); return; }
    fprintf(stderr, "%s: 1 MB line (mode %d) -> %zu ids in %.3f s\n", name, mode, k, dt);
    CHECK(dt < 5.0, "%s: 1 MB line mode %d took %.2f s (superlinear?)", name, mode, dt);
    char *dec;
    size_t dl;
    r = vkd_tok_decode(t, ids, k, false, &dec, &dl, &err);
    CHECK(r == VKD_OK && dl == n && !memcmp(dec, s, n), "%s: 1 MB mode %d does not round-trip", name, mode);
    if (!r) free(dec);
    free(ids);
    free(s);
}

int main(void) {
    tt_init();
    char dir[8192];
    vkd_tok *q, *l;
    vkd_error err = {0};
    tt_model_dir(dir, sizeof dir, "qwen3");
    REQUIRE(vkd_tok_load(dir, &q, &err) == VKD_OK, "%s", err.msg);
    tt_model_dir(dir, sizeof dir, "llama3");
    REQUIRE(vkd_tok_load(dir, &l, &err) == VKD_OK, "%s", err.msg);

    /* invalid UTF-8: rejected, offset of the first bad byte */
    check_invalid(q, "ab\x80", 3, 2);          /* lone continuation byte */
    check_invalid(q, "\xC0\xAF", 2, 0);        /* overlong */
    check_invalid(q, "x\xED\xA0\x80", 4, 1);   /* UTF-16 surrogate */
    check_invalid(q, "\xF5\x80\x80\x80", 4, 0); /* above U+10FFFF */
    check_invalid(q, "ok\xE4\xBD", 4, 2);      /* truncated at the end */
    check_invalid(l, "\xFF", 1, 0);
    CHECK(vkd_utf8_valid("\xF0\x9F\x98\x80 \xE4\xBD\xA0", 8, NULL), "valid UTF-8 rejected");

    /* empty input: no ids, or just BOS when the post-processor adds it */
    int32_t *ids;
    size_t n;
    CHECK(vkd_tok_encode(q, "", 0, true, &ids, &n, &err) == VKD_OK && n == 0 && ids, "empty input");
    free(ids);
    /* NUL bytes are ordinary text */
    CHECK(vkd_tok_encode(q, "a\0b", 3, false, &ids, &n, &err) == VKD_OK && n >= 2, "embedded NUL");
    free(ids);

    /* lookups and special tokens */
    CHECK(vkd_tok_vocab_size(q) == 151669, "qwen3 vocab size %zu", vkd_tok_vocab_size(q));
    CHECK(vkd_tok_vocab_size(l) == 128256, "llama3 vocab size %zu", vkd_tok_vocab_size(l));
    CHECK(vkd_tok_token_to_id(q, "<|im_end|>") == 151645 && vkd_tok_eos_id(q) == 151645, "qwen3 eos");
    CHECK(vkd_tok_pad_id(q) == 151643 && vkd_tok_bos_id(q) == -1, "qwen3 pad/bos");
    CHECK(vkd_tok_bos_id(l) == 128000 && vkd_tok_eos_id(l) == 128001, "llama3 bos/eos");
    CHECK(vkd_tok_token_to_id(q, "Ġthe") == 279 && !strcmp(vkd_tok_id_to_token(q, 279), "Ġthe"), "Ġthe");
    CHECK(vkd_tok_token_to_id(q, "no such token here") == -1 && !vkd_tok_id_to_token(q, -5) &&
          !vkd_tok_id_to_token(q, 1 << 30), "absent lookups");
    CHECK(vkd_tok_is_special(q, 151644) && !vkd_tok_is_special(q, 151667) && !vkd_tok_is_special(q, 279),
          "special flags (<think> is an added token, not special)");
    CHECK(vkd_tok_chat_template(q) && strstr(vkd_tok_chat_template(q), "enable_thinking"), "qwen3 template");

    /* bad ids */
    char *dec;
    size_t dl;
    int32_t bad[2] = {9707, 999999};
    CHECK(vkd_tok_decode(q, bad, 2, false, &dec, &dl, &err) == VKD_ERR_RANGE && strstr(err.msg, "999999"),
          "bad id: %s", err.msg);
    vkd_tok_stream *st;
    const char *ch;
    size_t cl;
    REQUIRE(vkd_tok_stream_new(q, false, &st, &err) == VKD_OK, "stream");
    CHECK(vkd_tok_stream_push(st, -1, &ch, &cl, &err) == VKD_ERR_RANGE, "stream bad id");
    /* streaming never emits half a character: the 4 bytes of 😀 come as 2 tokens here */
    CHECK(vkd_tok_encode(q, "😀", 4, false, &ids, &n, &err) == VKD_OK, "emoji");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(vkd_tok_stream_push(st, ids[i], &ch, &cl, &err) == VKD_OK && vkd_utf8_valid(ch, cl, NULL), "push");
        CHECK(cl == 0 || cl == 4, "partial character emitted (%zu bytes)", cl);
        total += cl;
    }
    vkd_tok_stream_flush(st, &ch, &cl);
    CHECK(total + cl == 4, "emoji not emitted whole");
    /* a cut character becomes U+FFFD at flush */
    if (n > 1) {
        vkd_tok_stream_push(st, ids[0], &ch, &cl, &err);
        vkd_tok_stream_flush(st, &ch, &cl);
        CHECK(cl == 3 && !memcmp(ch, "\xEF\xBF\xBD", 3), "cut character should flush as U+FFFD");
    }
    free(ids);
    vkd_tok_stream_free(st);

    /* 1 MB single lines: a run of one letter (one huge pre-token), of spaces, of digits, mixed */
    for (int mode = 0; mode < 4; mode++) big_line(q, "qwen3", mode);
    big_line(l, "llama3", 0);
    big_line(l, "llama3", 3);

    /* malformed tokenizer.json */
    const char *bad_json[] = {
        "", "{", "[]", "{\"model\": 3}", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Lowercase\"}}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        vkd_tok *t = NULL;
        vkd_error e = {0};
        vkd_result r = vkd_tok_load_mem(bad_json[i], strlen(bad_json[i]), NULL, 0, "bad.json", &t, &e);
        CHECK(r != VKD_OK && !t && strstr(e.msg, "bad.json"), "bad json %zu accepted or unnamed error: %s", i, e.msg);
    }
    vkd_tok *t = NULL;
    CHECK(vkd_tok_load("/nonexistent-dir", &t, &err) == VKD_ERR_IO && strstr(err.msg, "/nonexistent-dir/tokenizer.json"),
          "missing dir: %s", err.msg);

    vkd_tok_free(q);
    vkd_tok_free(l);
    return vkd_test_result("test_tok_unit");
}
