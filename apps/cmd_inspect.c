/* vkdraft inspect DIR: what a model folder holds and every problem vkdraft finds in it
 * (config.json, safetensors shards and index, expected tensors, generation_config.json,
 * tokenizer). Exit status 1 when any problem was found. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "budget.h"
#include "cli.h"
#include "cmds.h"
#include "config.h"
#include "safetensors.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vkdraft inspect DIR [--json]\n\n"
            "Reads a Hugging Face model folder (config.json, model.safetensors or\n"
            "model.safetensors.index.json + shards, generation_config.json, tokenizer.json) and\n"
            "prints the architecture, sizes, dtypes, shards, parameter count, every tensor (name,\n"
            "dtype, shape, shard), the parameter budget by component (embed_tokens, lm_head, the\n"
            "DFlash fc with its compression ratio, each transformer layer's attention + MLP, all\n"
            "RMSNorm weights, other; seed 000 section 4.1), the generation defaults and the\n"
            "tokenizer, then every problem\n"
            "found: config errors, missing/unexpected/mis-shaped tensors, shard/index mismatches.\n"
            "Exits with status 1 when there is any problem.\n\n"
            "  --json     one JSON object on stdout instead of text\n"
            "  --help     this text\n");
}

typedef struct report {
    cJSON *problems;   /* array of strings */
} report;

static void add_problem(void *user, const char *line) {
    report *r = user;
    cJSON_AddItemToArray(r->problems, cJSON_CreateString(line));
}

static cJSON *ids_json(const int64_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids[i]));
    return a;
}

static cJSON *config_json(const vkd_cfg *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "architecture", vkd_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->num_key_value_heads);
    cJSON_AddNumberToObject(o, "head_dim", (double)c->head_dim);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position_embeddings);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    if (c->rope_scaling.llama3) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", c->rope_scaling.factor);
        cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_scaling.low_freq_factor);
        cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_scaling.high_freq_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                (double)c->rope_scaling.original_max_position_embeddings);
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddBoolToObject(o, "qk_norm", c->qk_norm);
    if (c->has_dtype) cJSON_AddStringToObject(o, "dtype", vkd_dtype_name(c->dtype));
    else cJSON_AddNullToObject(o, "dtype");
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", (double)c->bos_token_id);
    else cJSON_AddNullToObject(o, "bos_token_id");
    cJSON_AddItemToObject(o, "eos_token_id", ids_json(c->eos_token_ids, c->n_eos));
    if (c->arch == VKD_ARCH_DFLASH) {
        cJSON *d = cJSON_AddObjectToObject(o, "dflash");
        if (c->target_layer_ids_pending) cJSON_AddNullToObject(d, "target_layer_ids");
        else cJSON_AddItemToObject(d, "target_layer_ids", ids_json(c->target_layer_ids, c->n_target_layer_ids));
        cJSON_AddNumberToObject(d, "n_taps", c->n_target_layer_ids);
        cJSON_AddNumberToObject(d, "mask_token_id", (double)c->mask_token_id);
        cJSON_AddNumberToObject(d, "block_size", (double)c->block_size);
        if (c->num_target_layers) cJSON_AddNumberToObject(d, "num_target_layers", (double)c->num_target_layers);
    }
    return o;
}

static void print_ids(const char *label, const int64_t *ids, int n) {
    printf("%s", label);
    if (!n) printf("none");
    for (int i = 0; i < n; i++) printf("%s%" PRId64, i ? ", " : "", ids[i]);
    printf("\n");
}

static void print_config(const vkd_cfg *c) {
    printf("architecture: %s\n", vkd_arch_name(c->arch));
    printf("  hidden %" PRId64 ", layers %" PRId64 ", heads %" PRId64 " q / %" PRId64
           " kv, head_dim %" PRId64 ", ffn %" PRId64 ", vocab %" PRId64 "\n",
           c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
           c->head_dim, c->intermediate_size, c->vocab_size);
    printf("  rms_norm_eps %g, rope_theta %g, rope scaling ", c->rms_norm_eps, c->rope_theta);
    if (c->rope_scaling.llama3)
        printf("llama3 (factor %g, low %g, high %g, original %" PRId64 ")\n", c->rope_scaling.factor,
               c->rope_scaling.low_freq_factor, c->rope_scaling.high_freq_factor,
               c->rope_scaling.original_max_position_embeddings);
    else
        printf("none\n");
    printf("  max positions %" PRId64 ", %s embeddings, q/k norm %s, dtype %s\n",
           c->max_position_embeddings, c->tie_word_embeddings ? "tied" : "untied",
           c->qk_norm ? "yes" : "no", c->has_dtype ? vkd_dtype_name(c->dtype) : "unspecified");
    printf("  bos %s", c->bos_token_id >= 0 ? "" : "none");
    if (c->bos_token_id >= 0) printf("%" PRId64, c->bos_token_id);
    print_ids(", eos ", c->eos_token_ids, c->n_eos);
    if (c->arch == VKD_ARCH_DFLASH) {
        printf("  dflash: block_size %" PRId64 ", mask_token_id %" PRId64 ", ", c->block_size,
               c->mask_token_id);
        if (c->target_layer_ids_pending)
            printf("target_layer_ids from the target (%d taps)\n", c->n_target_layer_ids);
        else
            print_ids("target_layer_ids ", c->target_layer_ids, c->n_target_layer_ids);
    }
}

/* Tensors of the model (all shards opened): list, dtype counts, parameter count, budget. */
static void tensors_section(vkd_st_model *m, bool tied, bool json, cJSON *root, report *rep) {
    vkd_error err = {0};
    if (vkd_st_model_load_all(m, &err) != VKD_OK) add_problem(rep, err.msg);
    size_t n = vkd_st_model_count(m), counts[VKD_DTYPE_COUNT] = {0};
    uint64_t params = 0, bytes = 0;
    cJSON *list = json ? cJSON_AddArrayToObject(root, "tensors") : NULL;
    if (!json) printf("tensors: %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        const char *name = vkd_st_model_name_at(m, i);
        const char *shard = vkd_st_model_shard_name(m, vkd_st_model_shard_of(m, i));
        const vkd_st_tensor *t = NULL;
        if (vkd_st_model_get_at(m, i, &t, &err) != VKD_OK) {
            if (!json) printf("  %-60s (unreadable) %s\n", name, shard);
            continue;
        }
        counts[t->dtype]++;
        params += t->numel;
        bytes += t->nbytes;
        char shp[200];
        vkd_st_shape_str(t, shp, sizeof shp);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "dtype", vkd_dtype_name(t->dtype));
            cJSON *s = cJSON_AddArrayToObject(o, "shape");
            for (int d = 0; d < t->rank; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddStringToObject(o, "shard", shard);
            cJSON_AddItemToArray(list, o);
        } else {
            printf("  %-60s %-5s %-16s %s\n", name, vkd_dtype_name(t->dtype), shp, shard);
        }
    }
    if (json) {
        cJSON *dt = cJSON_AddObjectToObject(root, "dtypes");
        for (int d = 0; d < VKD_DTYPE_COUNT; d++)
            if (counts[d]) cJSON_AddNumberToObject(dt, vkd_dtype_name((vkd_dtype)d), (double)counts[d]);
        cJSON_AddNumberToObject(root, "parameters", (double)params);
        cJSON_AddNumberToObject(root, "tensor_bytes", (double)bytes);
    } else {
        printf("dtypes:");
        for (int d = 0; d < VKD_DTYPE_COUNT; d++)
            if (counts[d]) printf(" %s %zu", vkd_dtype_name((vkd_dtype)d), counts[d]);
        double p = (double)params;
        const char *unit = p >= 1e9 ? "B" : p >= 1e6 ? "M" : "K";
        double scale = p >= 1e9 ? 1e9 : p >= 1e6 ? 1e6 : 1e3;
        printf("\nparameters: %" PRIu64 " (%.2f %s), %.3f GiB of tensor data\n", params,
               p / scale, unit, (double)bytes / (1024.0 * 1024.0 * 1024.0));
    }
    vkd_param_budget b;
    if (vkd_param_budget_of(m, &b, &err) != VKD_OK) {
        add_problem(rep, err.msg);
        return;
    }
    if (json) cJSON_AddItemToObject(root, "parameter_budget", budget_json(&b, tied));
    else budget_print(stdout, &b, tied);
    vkd_param_budget_free(&b);
}

static void generation_section(const char *dir, bool json, cJSON *root, report *rep) {
    vkd_gen_cfg g;
    vkd_error err = {0};
    if (vkd_gen_cfg_load(dir, &g, &err) != VKD_OK) {
        add_problem(rep, err.msg);
        return;
    }
    if (json) {
        cJSON *o = cJSON_AddObjectToObject(root, "generation_config");
        cJSON_AddBoolToObject(o, "present", g.present);
        cJSON_AddBoolToObject(o, "do_sample", g.do_sample);
        cJSON_AddNumberToObject(o, "temperature", g.temperature);
        cJSON_AddNumberToObject(o, "top_p", g.top_p);
        cJSON_AddNumberToObject(o, "top_k", (double)g.top_k);
        cJSON_AddItemToObject(o, "eos_token_id", ids_json(g.eos_token_ids, g.n_eos));
        if (g.bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", (double)g.bos_token_id);
        if (g.pad_token_id >= 0) cJSON_AddNumberToObject(o, "pad_token_id", (double)g.pad_token_id);
        return;
    }
    printf("generation config: %s: do_sample %s, temperature %g, top_p %g, top_k %" PRId64,
           g.present ? "generation_config.json" : "none (transformers defaults)",
           g.do_sample ? "true" : "false", g.temperature, g.top_p, g.top_k);
    print_ids(", eos ", g.eos_token_ids, g.n_eos);
}

/* vocab_size: the config's (0 when unknown); a tokenizer with more ids cannot be embedded. */
static void tokenizer_section(const char *dir, int64_t vocab_size, bool json, cJSON *root,
                              report *rep) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (json) cJSON_AddNullToObject(root, "tokenizer");
        else printf("tokenizer: none (no tokenizer.json)\n");
        return;
    }
    vkd_tok *tok = NULL;
    vkd_error err = {0};
    if (vkd_tok_load(dir, &tok, &err) != VKD_OK) {
        add_problem(rep, err.msg);
        return;
    }
    size_t vocab = vkd_tok_vocab_size(tok), special = 0;
    for (size_t id = 0; id < vocab; id++) special += vkd_tok_is_special(tok, (int32_t)id);
    const char *bos = vkd_tok_bos_token(tok), *eos = vkd_tok_eos_token(tok);
    bool tmpl = vkd_tok_chat_template(tok) != NULL;
    if (vocab_size && (int64_t)vocab > vocab_size) {
        char line[512];
        snprintf(line, sizeof line, "%s/tokenizer.json: %zu token ids, more than config.json's "
                 "vocab_size (%" PRId64 ")", dir, vocab, vocab_size);
        add_problem(rep, line);
    }
    if (json) {
        cJSON *o = cJSON_AddObjectToObject(root, "tokenizer");
        cJSON_AddNumberToObject(o, "vocab_size", (double)vocab);
        cJSON_AddNumberToObject(o, "special_tokens", (double)special);
        cJSON_AddStringToObject(o, "bos_token", bos);
        cJSON_AddStringToObject(o, "eos_token", eos);
        cJSON_AddNumberToObject(o, "pad_id", vkd_tok_pad_id(tok));
        cJSON_AddBoolToObject(o, "chat_template", tmpl);
    } else {
        printf("tokenizer: vocab %zu, %zu special tokens, bos '%s' eos '%s' pad id %d, chat template %s\n",
               vocab, special, bos, eos, vkd_tok_pad_id(tok), tmpl ? "yes" : "no");
    }
    vkd_tok_free(tok);
}

int vkd_cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is("--help", argv[i]) || cli_is("-h", argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_is("--json", argv[i])) {
            json = true;
        } else if (argv[i][0] == '-') {
            cli_usage_error("inspect", "unknown flag '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            cli_usage_error("inspect", "one model folder expected, got '%s' too", argv[i]);
        }
    }
    if (!dir) cli_usage_error("inspect", "missing the model folder");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) cli_fatal("%s: not a folder", dir);

    report rep = {cJSON_CreateArray()};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", dir);
    if (!json) printf("model: %s\n", dir);

    vkd_cfg cfg;
    vkd_error err = {0};
    bool have_cfg = vkd_cfg_load(dir, &cfg, &err) == VKD_OK;
    if (have_cfg) {
        if (json) cJSON_AddItemToObject(root, "config", config_json(&cfg));
        else print_config(&cfg);
    } else {
        add_problem(&rep, err.msg);
        if (json) cJSON_AddNullToObject(root, "config");
    }

    vkd_st_model *m = NULL;
    if (vkd_st_model_open(dir, &m, &err) == VKD_OK) {
        size_t ns = vkd_st_model_shard_count(m);
        if (json) {
            cJSON *sh = cJSON_AddArrayToObject(root, "shards");
            for (size_t s = 0; s < ns; s++)
                cJSON_AddItemToArray(sh, cJSON_CreateString(vkd_st_model_shard_name(m, s)));
            cJSON_AddBoolToObject(root, "index", vkd_st_model_has_index(m));
        } else {
            printf("shards: %zu%s\n", ns, vkd_st_model_has_index(m) ? " (model.safetensors.index.json)" : "");
            for (size_t s = 0; s < ns; s++) printf("  %s\n", vkd_st_model_shard_name(m, s));
        }
        tensors_section(m, have_cfg && cfg.tie_word_embeddings, json, root, &rep);
        if (have_cfg) {
            vkd_error cerr = {0};
            vkd_cfg_check_tensors(&cfg, m, add_problem, &rep, &cerr);
        }
        vkd_st_model_close(m);
    } else {
        add_problem(&rep, err.msg);
    }
    generation_section(dir, json, root, &rep);
    tokenizer_section(dir, have_cfg ? cfg.vocab_size : 0, json, root, &rep);

    int np = cJSON_GetArraySize(rep.problems);
    if (json) {
        cJSON_AddItemToObject(root, "problems", rep.problems);
        char *txt = cJSON_Print(root);
        printf("%s\n", txt);
        free(txt);
    } else {
        if (np == 0) {
            printf("problems: none\n");
        } else {
            printf("problems: %d\n", np);
            for (const cJSON *p = rep.problems->child; p; p = p->next) printf("  %s\n", p->valuestring);
        }
        cJSON_Delete(rep.problems);
    }
    cJSON_Delete(root);
    return np ? 1 : 0;
}
