/* fuzz_config: config.json (all three architectures, DFlash fields), the expected-tensor
 * list and DFlash resolution, and generation_config.json, on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *json = (const char *)data;
    vkd_error err = {0};
    vkd_cfg cfg;
    if (vkd_cfg_parse(json, size, "config.json", &cfg, &err) == VKD_OK) {
        vkd_cfg_tensor *list = NULL;
        size_t n = 0;
        if (vkd_cfg_expected_tensors(&cfg, &list, &n, &err) == VKD_OK) free(list);
        if (cfg.arch == VKD_ARCH_DFLASH) {
            vkd_cfg target = cfg;
            target.arch = VKD_ARCH_QWEN3;
            target.num_hidden_layers = cfg.num_target_layers ? cfg.num_target_layers : 36;
            vkd_cfg_dflash_resolve(&cfg, &target, &err);
        }
    } else if (err.msg[0] == 0) {
        abort();
    }
    vkd_gen_cfg g;
    err.msg[0] = 0;
    if (vkd_gen_cfg_parse(json, size, "generation_config.json", &g, &err) != VKD_OK && !err.msg[0])
        abort();
    return 0;
}
