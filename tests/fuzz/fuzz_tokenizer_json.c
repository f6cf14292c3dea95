/* fuzz_tokenizer_json: vkd_tok_load_mem on arbitrary bytes (the tokenizer.json loader);
 * when a tokenizer loads, encode and decode a little text with it. */
#include <stdint.h>
#include <stdlib.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vkd_tok *t = NULL;
    vkd_error err;
    if (vkd_tok_load_mem((const char *)data, size, NULL, 0, "fuzz.json", &t, &err) != VKD_OK) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    static const char text[] = "Hello  world\n<|im_start|>12345 caf\xC3\xA9";
    if (vkd_tok_encode(t, text, sizeof text - 1, true, &ids, &n, &err) == VKD_OK) {
        char *out = NULL;
        size_t len;
        if (vkd_tok_decode(t, ids, n, false, &out, &len, &err) == VKD_OK) free(out);
        free(ids);
    }
    vkd_tok_free(t);
    return 0;
}
