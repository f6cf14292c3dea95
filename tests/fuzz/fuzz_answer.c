/* fuzz_answer: answer extraction and grading (text/vkd_answer.h) on arbitrary model
 * output: the first byte picks the answer kind and the split between "generated text" and
 * "gold field"; every function must return without crashing, and what it returns must be a
 * string equal to itself under the grader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vkd_answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 65536) return 0;
    vkd_answer_kind kind = data[0] & 1 ? VKD_ANSWER_MATH : VKD_ANSWER_GSM8K;
    unsigned flags = data[0] & 2 ? VKD_ANSWER_BOXED_ONLY : 0;
    size_t cut = 2 + (size - 2) * data[1] / 255; /* text = data[2, cut), gold = data[cut, size) */
    char *text = malloc(cut - 2 + 1), *gold = malloc(size - cut + 1);
    if (!text || !gold) abort();
    memcpy(text, data + 2, cut - 2);
    text[cut - 2] = 0;
    memcpy(gold, data + cut, size - cut);
    gold[size - cut] = 0;

    char *a = vkd_answer_extract(kind, text, flags);
    char *g = vkd_answer_gold(kind, gold);
    if (a && strlen(a) >= size) abort(); /* an answer comes out of the text */
    (void)vkd_answer_equal(kind, a, g);
    (void)vkd_answer_score(kind, text, gold, flags);
    char *b = vkd_answer_last_boxed(text);
    char *s = vkd_answer_strip_string(text);
    char *n = vkd_answer_normalize(text);
    (void)vkd_answer_math_equal(text, gold);
    free(a);
    free(g);
    free(b);
    free(s);
    free(n);
    free(text);
    free(gold);
    return 0;
}
