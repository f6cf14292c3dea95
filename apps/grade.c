/* grade.c: the target's answer graded (grade.h). */
#include "grade.h"

#include <stdlib.h>

#include "cli.h"
#include "prompt.h"
#include "vkd_generate.h"

vkd_answer_kind grade_kind(const exp_common *c, const exp_data *d, bool need, const char *flag) {
    vkd_answer_kind kind = vkd_answer_kind_from_name(vkd_ds_preset_for_file(d->path));
    if (!need) return kind;
    if (kind == VKD_ANSWER_NONE)
        cli_usage_error(c->cmd, "%s needs graded answers: %s is neither GSM8K nor MATH-500 by its file name", flag,
                        d->path);
    for (size_t k = 0; k < d->n; k++)
        if (!d->ex[k].answer)
            cli_usage_error(c->cmd, "%s needs an answer in every record: %s:%zu has none", flag, d->path, d->ex[k].line);
    return kind;
}

int grade_ids(vkd_tok *tok, vkd_answer_kind kind, const exp_example *e, const int32_t *ids, uint32_t n, cJSON *obj) {
    char *text = decode_generated(tok, ids, n);
    cJSON_AddStringToObject(obj, "text", text ? text : "");
    cJSON_AddNumberToObject(obj, "tokens", n);
    int verdict = -1;
    if (kind != VKD_ANSWER_NONE && e->answer) {
        char *pred = vkd_answer_extract(kind, text ? text : "", 0), *gold = vkd_answer_gold(kind, e->answer);
        if (pred) cJSON_AddStringToObject(obj, "answer", pred);
        else cJSON_AddNullToObject(obj, "answer");
        verdict = vkd_answer_equal(kind, pred, gold) ? 1 : 0;
        cJSON_AddBoolToObject(obj, "correct", verdict == 1);
        free(pred);
        free(gold);
    }
    free(text);
    return verdict;
}

int grade_target_greedy(const exp_models *m, vkd_answer_kind kind, const exp_example *e, uint32_t max_new, cJSON *obj) {
    vkd_error err = {0};
    vkd_generate_options go = {.max_new_tokens = max_new, .stop_ids = m->stops, .nstop = m->nstop};
    vkd_generate_result gr;
    double t0 = vkd_now();
    cli_check(vkd_generate(m->t, m->rec, e->prompt, e->n_prompt, &go, &gr, &err), &err);
    cJSON_AddNumberToObject(obj, "gen_s", vkd_now() - t0);
    cJSON *ia = cJSON_AddArrayToObject(obj, "ids");
    for (uint32_t i = 0; i < gr.n; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(gr.ids[i]));
    int v = grade_ids(m->tok, kind, e, gr.ids, gr.n, obj);
    free(gr.ids);
    return v;
}
