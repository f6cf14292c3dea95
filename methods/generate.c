/* generate.c: autoregressive decoding. */
#include "vkd_generate.h"

#include "vkd_sample.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double vkd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool vkd_is_stop(const int32_t *stop_ids, uint32_t nstop, int32_t id) {
    for (uint32_t i = 0; i < nstop; i++)
        if (stop_ids[i] == id) return true;
    return false;
}

static bool is_stop(const vkd_generate_options *o, int32_t id) { return vkd_is_stop(o->stop_ids, o->nstop, id); }

vkd_result vkd_generate(vkd_target *t, vkd_rec *rec, const int32_t *prompt, uint32_t n,
                        const vkd_generate_options *opt, vkd_generate_result *res, vkd_error *err) {
    memset(res, 0, sizeof *res);
    uint32_t max_new = opt->max_new_tokens ? opt->max_new_tokens : 128;
    if (n == 0) return vkd_fail(err, VKD_ERR_INVALID, "empty prompt");
    if ((uint64_t)n + max_new > t->ctx_len)
        return vkd_fail(err, VKD_ERR_RANGE,
                        "prompt (%u tokens) + max_new_tokens (%u) exceeds the context length %u",
                        n, max_new, t->ctx_len);
    res->ids = malloc(sizeof(int32_t) * max_new);
    if (!res->ids) return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
    vkd_tensor *tok;
    vkd_result r = vkd_tensor_create_2d(t->ctx, VKD_DTYPE_I32, 1, 4, "sampled", &tok, err);
    if (r) return r;
    t->len = 0;

    /* prefill: all steps but the last without logits, then the last with the sampler */
    double t0 = vkd_now();
    uint32_t done = 0;
    while (n - done > t->max_rows) {
        r = vkd_target_prefill(t, rec, prompt + done, t->max_rows, NULL, err);
        if (r) goto out;
        done += t->max_rows;
    }
    const int32_t *step_ids = prompt + done;
    uint32_t m = n - done;
    int32_t next = -1;
    for (;;) {
        /* greedy: the fused LM head + argmax (no vocabulary row written on texel-block heads) */
        bool greedy = opt->sample.temperature == 0.0f;
        vkd_target_step s = {.ids = step_ids, .m = m, .logits_row0 = m - 1, .logits_rows = 1,
                             .argmax = greedy ? tok : NULL};
        vkd_rec_begin(rec);
        r = vkd_target_step_record(t, rec, &s, err);
        if (!r) {
            /* Philox counter: the absolute position of the token being chosen */
            if (!greedy) vkd_sample_record(rec, tok, t->logits, 0, 1, t->vocab, &opt->sample, t->len);
            vkd_rec_read(rec, tok, 0, &next, 4);
            r = vkd_rec_submit(rec);
            if (r) *err = *vkd_rec_error(rec);
        }
        if (!r) r = vkd_check_tokens(&next, 1, res->n, "target", err);
        if (r) goto out;
        if (res->n == 0) {
            res->prefill_s = vkd_now() - t0;
            t0 = vkd_now();
        }
        res->ids[res->n++] = next;
        if (opt->on_token) opt->on_token(opt->user, next);
        if (is_stop(opt, next)) {
            res->stopped = true;
            break;
        }
        if (res->n == max_new) break;
        step_ids = &res->ids[res->n - 1];
        m = 1;
    }
    res->decode_s = vkd_now() - t0;
out:
    vkd_tensor_destroy(tok);
    if (r) {
        free(res->ids);
        res->ids = NULL;
        res->n = 0;
    }
    return r;
}
