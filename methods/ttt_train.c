/* ttt_train.c: the training step of test-time training (vkd_ttt_adapt and the adapter
 * plumbing of vkd_ttt.h).
 *
 * NOT FINISHED: the step runs on the training engine (the draft's training forward and
 * backward with LoRA, models/layer.c; the fused LM head + loss, the optimizers and PEFT
 * adapters, wt-engine), which this build does not have yet. Every entry point here refuses
 * with VKD_ERR_UNSUPPORTED instead of pretending to train, and vkd_ttt_engine_available()
 * says false so that `vkdraft ttt` refuses before it writes anything. */
#include "vkd_ttt.h"

#include <stdlib.h>

static const char no_engine[] =
    "test-time training needs the training engine (draft backward, fused loss, optimizer, "
    "PEFT adapters), which this build does not have yet";

bool vkd_ttt_engine_available(void) { return false; }

void vkd_ttt_trace_free(vkd_ttt_trace *t) {
    free(t->losses);
    t->losses = NULL;
    t->n = 0;
}

vkd_result vkd_ttt_adapt(vkd_dflash *d, vkd_rec *rec, const int32_t *seq, uint32_t T,
                         const vkd_ttt_options *o, vkd_ttt_trace *trace, vkd_error *err) {
    (void)d, (void)rec, (void)seq, (void)T, (void)o;
    if (trace) *trace = (vkd_ttt_trace){0};
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s", no_engine);
}

void vkd_ttt_detach(vkd_dflash *d) { (void)d; }

vkd_result vkd_ttt_save_adapter(vkd_dflash *d, const char *dir, vkd_error *err) {
    (void)d, (void)dir;
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s", no_engine);
}

vkd_result vkd_ttt_load_adapter(vkd_dflash *d, const char *dir, vkd_error *err) {
    (void)d, (void)dir;
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s", no_engine);
}
