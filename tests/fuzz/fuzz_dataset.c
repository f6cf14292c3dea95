/* fuzz_dataset: the JSONL / JSON-array dataset reader on arbitrary bytes, with the first
 * byte choosing the file name (and so the preset) and the list turn. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[] = {"data.jsonl", "gsm8k.jsonl", "math500.json", "humaneval.jsonl",
                                  "mt_bench.jsonl"};
    if (size < 1) return 0;
    const char *name = names[data[0] % 5];
    vkd_ds_options opt = {.turn = (data[0] >> 4) & 3};
    vkd_ds *ds = NULL;
    vkd_error err = {0};
    if (vkd_ds_parse((const char *)data + 1, size - 1, name, &opt, &ds, &err) == VKD_OK) {
        size_t total = 0;
        for (size_t i = 0; i < ds->count; i++) {
            const vkd_ds_record *r = &ds->records[i];
            if (!r->id || (!r->prompt && !r->n_messages)) abort();
            total += strlen(r->id) + (r->prompt ? strlen(r->prompt) : 0);
            for (size_t k = 0; k < r->n_messages; k++) total += strlen(r->messages[k].content);
        }
        (void)total;
        vkd_ds_free(ds);
    } else if (err.msg[0] == 0) {
        abort();
    }
    return 0;
}
