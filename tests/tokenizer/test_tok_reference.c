/* test_tok_reference: every corpus string (tests/tokenizer/corpus.jsonl) through the real
 * Qwen3 and Llama 3 tokenizers, compared id for id with Hugging Face's `tokenizers` binding
 * (tools/tok-reference.mjs), with and without special tokens (and with the Llama 3.1
 * post-processor that adds <|begin_of_text|>); decode, decode skipping special tokens,
 * lossy decodes of id prefixes (cut characters -> U+FFFD) and streaming decode. */
#include <cjson/cJSON.h>

#include "tok_test_util.h"
#include "tokenizer.h"

static void print_ids(const char *what, const int32_t *a, size_t n) {
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static int same_ids(const cJSON *want, const int32_t *got, size_t n) {
    if ((size_t)cJSON_GetArraySize(want) != n) return 0;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, want) if ((int32_t)it->valuedouble != got[i++]) return 0;
    return 1;
}

int main(void) {
    tt_init();
    char out[8192], dir[8192], path[8192];
    tt_run_reference("tok-ref-encode", out, sizeof out);

    const char *names[3] = {"qwen3", "llama3", "llama3-bos"};
    vkd_tok *toks[3];
    for (int i = 0; i < 3; i++) {
        if (i < 2) tt_model_dir(dir, sizeof dir, names[i]);
        else snprintf(dir, sizeof dir, "%s/llama3-bos", out);
        vkd_error err = {0};
        vkd_result r = vkd_tok_load(dir, &toks[i], &err);
        REQUIRE(r == VKD_OK, "load %s: %s", names[i], err.msg);
    }
    tt_path(path, sizeof path, out, "expected.jsonl");
    char *data = tt_read(path, NULL);
    int lines = 0, bad_ids = 0, bad_dec = 0, bad_stream = 0;
    size_t total_ids = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        REQUIRE(o, "bad line in expected.jsonl");
        const char *tn = cJSON_GetObjectItem(o, "tok")->valuestring;
        const char *text = cJSON_GetObjectItem(o, "text")->valuestring;
        const char *cat = cJSON_GetObjectItem(o, "cat")->valuestring;
        int k = !strcmp(tn, "qwen3") ? 0 : !strcmp(tn, "llama3") ? 1 : 2;
        vkd_tok *t = toks[k];
        lines++;
        for (int special = 0; special < 2; special++) {
            const cJSON *want = cJSON_GetObjectItem(o, special ? "ids_special" : "ids");
            int32_t *ids;
            size_t n;
            vkd_error err = {0};
            vkd_result r = vkd_tok_encode(t, text, strlen(text), special, &ids, &n, &err);
            CHECK(r == VKD_OK, "%s encode failed: %s", tn, err.msg);
            if (r) continue;
            total_ids += n;
            if (!same_ids(want, ids, n)) {
                bad_ids++;
                if (bad_ids <= 8) {
                    fprintf(stderr, "MISMATCH %s [%s] special=%d text=%.80s\n", tn, cat, special, text);
                    int32_t w[4096];
                    size_t wn = 0;
                    const cJSON *it;
                    cJSON_ArrayForEach(it, want) if (wn < 4096) w[wn++] = (int32_t)it->valuedouble;
                    print_ids("want", w, wn);
                    print_ids("got ", ids, n);
                }
            }
            if (special) {
                for (int skip = 0; skip < 2; skip++) {
                    char *dec;
                    size_t dl;
                    r = vkd_tok_decode(t, ids, n, skip, &dec, &dl, &err);
                    const char *wd = cJSON_GetObjectItem(o, skip ? "dec_skip" : "dec")->valuestring;
                    CHECK(r == VKD_OK && dl == strlen(wd) && !memcmp(dec, wd, dl),
                          "%s decode(skip=%d) of '%.60s' gave '%.60s', want '%.60s'", tn, skip, text,
                          r ? err.msg : dec, wd);
                    if (r || dl != strlen(wd) || memcmp(dec, wd, dl)) bad_dec++;
                    /* streaming: chunk by chunk, each chunk valid UTF-8, concatenation = decode */
                    vkd_tok_stream *s;
                    REQUIRE(vkd_tok_stream_new(t, skip, &s, &err) == VKD_OK, "stream");
                    char *acc = malloc(dl + 64);
                    size_t an = 0;
                    int ok = 1;
                    for (size_t i = 0; i < n; i++) {
                        const char *ch;
                        size_t cl;
                        if (vkd_tok_stream_push(s, ids[i], &ch, &cl, &err) != VKD_OK || an + cl > dl + 32 ||
                            !vkd_utf8_valid(ch, cl, NULL)) {
                            ok = 0;
                            break;
                        }
                        memcpy(acc + an, ch, cl);
                        an += cl;
                    }
                    const char *ch;
                    size_t cl;
                    vkd_tok_stream_flush(s, &ch, &cl);
                    if (ok && an + cl <= dl + 32) {
                        memcpy(acc + an, ch, cl);
                        an += cl;
                    }
                    if (!(ok && r == VKD_OK && an == dl && !memcmp(acc, dec, dl))) bad_stream++;
                    CHECK(ok && r == VKD_OK && an == dl && !memcmp(acc, dec, dl), "%s stream decode differs for '%.60s'", tn, text);
                    free(acc);
                    vkd_tok_stream_free(s);
                    if (!r) free(dec);
                }
            } else {
                const cJSON *pre = cJSON_GetObjectItem(o, "prefixes"), *it;
                size_t kk = 0;
                cJSON_ArrayForEach(pre, pre) { (void)pre; break; }
                pre = cJSON_GetObjectItem(o, "prefixes");
                cJSON_ArrayForEach(it, pre) {
                    kk++;
                    char *dec;
                    size_t dl;
                    if (kk > n) break;
                    r = vkd_tok_decode(t, ids, kk, false, &dec, &dl, &err);
                    CHECK(r == VKD_OK && dl == strlen(it->valuestring) && !memcmp(dec, it->valuestring, dl),
                          "%s decode of the first %zu ids of '%.40s' differs", tn, kk, text);
                    if (!r) free(dec);
                }
            }
            free(ids);
        }
        cJSON_Delete(o);
    }
    fprintf(stderr, "%d (tokenizer, string) pairs, %zu ids: %d id mismatches, %d decode mismatches, %d stream mismatches\n",
            lines, total_ids, bad_ids, bad_dec, bad_stream);
    CHECK(bad_ids == 0, "%d id mismatches", bad_ids);
    CHECK(lines >= 3 * 300, "corpus too small: %d lines", lines);
    free(data);
    for (int i = 0; i < 3; i++) vkd_tok_free(toks[i]);
    return vkd_test_result("test_tok_reference");
}
