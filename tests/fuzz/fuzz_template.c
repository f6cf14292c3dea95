/* fuzz_template: compile and render arbitrary chat-template source with a small
 * conversation; any result is fine except a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>

#include "chat_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vkd_tpl *t = NULL;
    vkd_error err;
    if (vkd_tpl_compile((const char *)data, size, &t, &err) != VKD_OK) return 0;
    vkd_tpl_message m[3] = {{"system", "be brief", NULL}, {"user", "hi <think>", NULL},
                            {"assistant", "<think>\nx\n</think>\n\nyo", "r"}};
    vkd_tpl_opts o = {.add_generation_prompt = true, .enable_thinking = VKD_TPL_THINKING_OFF,
                      .bos_token = "<s>", .eos_token = "</s>", .date = "2026-11-23"};
    char *out = NULL;
    size_t len;
    if (vkd_tpl_render(t, m, 3, &o, &out, &len, &err) == VKD_OK) free(out);
    vkd_tpl_free(t);
    return 0;
}
