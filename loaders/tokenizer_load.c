/* tokenizer_load.c: building a vkd_tok from tokenizer.json and tokenizer_config.json
 * (model, merges, added tokens, normalizer, pre-tokenizers, post-processor, decoder check,
 * chat template). The pipeline that uses it is in tokenizer.c, the merge loop in bpe.c. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

/* ---- loading ---- */

static vkd_result read_file(const char *path, char **data, size_t *len, vkd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return vkd_fail(err, VKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return vkd_fail(err, VKD_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return VKD_OK;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Rust/Oniguruma \s includes U+0085 (NEL); PCRE2's UCP \s does not, so spell it out. */
static char *rewrite_pattern(const char *pat, bool *oom) {
    size_t n = strlen(pat);
    char *out = malloc(n * 12 + 1);
    *oom = !out;
    if (!out) return NULL;
    size_t k = 0;
    int cls = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[i + 1];
            const char *rep = NULL;
            if (d == 's') rep = cls ? "\\s\\x{85}" : "[\\s\\x{85}]";
            else if (d == 'S' && !cls) rep = "[^\\s\\x{85}]";
            if (rep) {
                memcpy(out + k, rep, strlen(rep));
                k += strlen(rep);
            } else {
                out[k++] = c;
                out[k++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !cls) {
            cls = 1;
            out[k++] = c;
            if (i + 1 < n && pat[i + 1] == '^') out[k++] = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') out[k++] = pat[++i];
            continue;
        }
        if (c == ']' && cls) cls = 0;
        out[k++] = c;
    }
    out[k] = 0;
    return out;
}

static vkd_result compile_regex(const char *pat, bool literal, pcre2_code **re,
                                pcre2_match_data **md, const char *name, vkd_error *err) {
    bool oom = false;
    char *p = literal ? strdup(pat) : rewrite_pattern(pat, &oom);
    if (!p) return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : 0);
    *re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
    free(p);
    if (!*re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: pre_tokenizer regex does not compile at offset %zu: %s", name,
                        (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
    *md = pcre2_match_data_create_from_pattern(*re, NULL);
    if (!*md) return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    return VKD_OK;
}

static const char *const GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static vkd_result parse_pretok(vkd_tok *t, const cJSON *pt, const char *name, vkd_error *err) {
    if (!pt || cJSON_IsNull(pt)) return VKD_OK;
    const char *type = jstr(pt, "type");
    if (!type) return vkd_fail(err, VKD_ERR_FORMAT, "%s: pre_tokenizer: missing \"type\"", name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers"), *it;
        if (!cJSON_IsArray(list))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: pre_tokenizer Sequence: expected \"pretokenizers\" list", name);
        cJSON_ArrayForEach(it, list) {
            vkd_result r = parse_pretok(t, it, name, err);
            if (r) return r;
        }
        return VKD_OK;
    }
    if (t->n_stages == MAX_STAGES)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizers", name, MAX_STAGES);
    tok_pretok *s = &t->stages[t->n_stages];
    memset(s, 0, sizeof *s);
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const char *rx = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if (!rx && !lit)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: pre_tokenizer Split: expected pattern {\"Regex\"|\"String\": ...}", name);
        const char *beh = jstr(pt, "behavior");
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        s->behavior = -1;
        for (int i = 0; i < 5; i++)
            if (beh && !strcmp(beh, names[i])) s->behavior = i;
        if (s->behavior < 0)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: pre_tokenizer Split: unknown behavior \"%s\"", name, beh ? beh : "(missing)");
        s->invert = jbool(pt, "invert", false);
        s->kind = PT_SPLIT;
        t->n_stages++;
        return compile_regex(rx ? rx : lit, !rx, &s->re, &s->md, name, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        s->kind = PT_BYTELEVEL;
        s->add_prefix_space = jbool(pt, "add_prefix_space", true);
        t->n_stages++;
        if (jbool(pt, "use_regex", true)) return compile_regex(GPT2_PATTERN, false, &s->re, &s->md, name, err);
        return VKD_OK;
    }
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported (Split, ByteLevel, Sequence are)", name, type);
}

static vkd_result parse_normalizer(vkd_tok *t, const cJSON *nm, const char *name, vkd_error *err) {
    if (!nm || cJSON_IsNull(nm)) return VKD_OK;
    const char *type = jstr(nm, "type");
    if (!type) return vkd_fail(err, VKD_ERR_FORMAT, "%s: normalizer: missing \"type\"", name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(nm, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: normalizer Sequence: expected \"normalizers\" list", name);
        cJSON_ArrayForEach(it, list) {
            vkd_result r = parse_normalizer(t, it, name, err);
            if (r) return r;
        }
        return VKD_OK;
    }
    uint32_t opt;
    if (!strcmp(type, "NFC")) opt = UTF8PROC_COMPOSE;
    else if (!strcmp(type, "NFD")) opt = UTF8PROC_DECOMPOSE;
    else if (!strcmp(type, "NFKC")) opt = UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "NFKD")) opt = UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported (NFC, NFD, NFKC, NFKD, Sequence are)", name, type);
    if (t->n_norms == MAX_NORMS) return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: too many normalizers", name);
    t->norms[t->n_norms++] = opt | UTF8PROC_STABLE;
    return VKD_OK;
}

static vkd_result ids_of_special(vkd_tok *t, const cJSON *specials, const char *key,
                                 tok_ids *out, const char *name, vkd_error *err) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, key);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids"), *it;
    if (!cJSON_IsArray(ids))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor: special token \"%s\" has no \"ids\" list", name, key);
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (double)t->n_entries)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor: special token \"%s\": bad id", name, key);
        if (tok_ids_push(out, (int32_t)it->valuedouble)) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    return VKD_OK;
}

static vkd_result parse_post(vkd_tok *t, const cJSON *pp, tok_ids *pre, tok_ids *post,
                             const char *name, vkd_error *err) {
    if (!pp || cJSON_IsNull(pp)) return VKD_OK;
    const char *type = jstr(pp, "type");
    if (!type) return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor: missing \"type\"", name);
    if (!strcmp(type, "ByteLevel")) return VKD_OK; /* only moves offsets */
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *it;
        if (!cJSON_IsArray(list))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor Sequence: expected \"processors\" list", name);
        cJSON_ArrayForEach(it, list) {
            vkd_result r = parse_post(t, it, pre, post, name, err);
            if (r) return r;
        }
        return VKD_OK;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *it;
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
        if (!cJSON_IsArray(single))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor TemplateProcessing: expected \"single\" list", name);
        bool seen_a = false;
        cJSON_ArrayForEach(it, single) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (st) {
                const char *id = jstr(st, "id");
                if (!id) return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor: SpecialToken without \"id\"", name);
                vkd_result r = ids_of_special(t, specials, id, seen_a ? post : pre, name, err);
                if (r) return r;
            } else if (sq) {
                seen_a = true;
            } else {
                return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor: \"single\" items must be SpecialToken or Sequence", name);
            }
        }
        return VKD_OK;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
        const cJSON *ci = cJSON_GetArrayItem(cls, 1), *si = cJSON_GetArrayItem(sep, 1);
        if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(si))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: post_processor %s: expected cls/sep [token, id]", name, type);
        if (tok_ids_push(pre, (int32_t)ci->valuedouble) || tok_ids_push(post, (int32_t)si->valuedouble))
            return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
        return VKD_OK;
    }
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", name, type);
}

static vkd_result check_decoder(const cJSON *d, const char *name, vkd_error *err) {
    const char *type = jstr(d, "type");
    if (!type) return vkd_fail(err, VKD_ERR_FORMAT, "%s: decoder: missing \"type\"", name);
    if (!strcmp(type, "ByteLevel")) return VKD_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders"), *it;
        cJSON_ArrayForEach(it, list) {
            vkd_result r = check_decoder(it, name, err);
            if (r) return r;
        }
        return VKD_OK;
    }
    return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported (byte-level BPE only)", name, type);
}

static vkd_result parse_model(vkd_tok *t, const cJSON *model, const char *name, vkd_error *err) {
    if (!cJSON_IsObject(model)) return vkd_fail(err, VKD_ERR_FORMAT, "%s: missing \"model\" object", name);
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE"))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (BPE only)", name, type);
    if (jbool(model, "byte_fallback", false))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: model.byte_fallback is not supported (byte-level BPE only)", name);
    const char *cp = jstr(model, "continuing_subword_prefix"), *ew = jstr(model, "end_of_word_suffix");
    if ((cp && *cp) || (ew && *ew))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: model.continuing_subword_prefix/end_of_word_suffix are not supported", name);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: model.dropout is not supported", name);
    t->bpe.ignore_merges = jbool(model, "ignore_merges", false);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *it;
    if (!cJSON_IsObject(vocab)) return vkd_fail(err, VKD_ERR_FORMAT, "%s: model.vocab: expected an object", name);
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) ||
            it->valuedouble != (double)(int64_t)it->valuedouble)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: model.vocab[\"%.40s\"]: expected an id in [0, 2^24)", name, it->string);
        vkd_result r = tok_set_entry(t, (int64_t)it->valuedouble, it->string, strlen(it->string), false);
        if (r) return vkd_fail(err, r, "%s: out of memory", name);
    }
    return VKD_OK;
}

/* Builds the maps once every string is stored (pointers into t->strings are stable now). */
static vkd_result build_vocab_maps(vkd_tok *t) {
    for (size_t id = 0; id < t->n_entries; id++) {
        tok_entry *e = &t->entries[id];
        if (!e->present) continue;
        if (tok_strmap_put(&t->spell, t->strings + e->spell_off, e->spell_len, (int32_t)id))
            return VKD_ERR_NOMEM;
        /* only model tokens spelled in the byte alphabet can come out of BPE */
        if (!e->added && e->bytes_off != e->spell_off)
            if (tok_strmap_put(&t->bpe.vocab, t->strings + e->bytes_off, e->bytes_len, (int32_t)id))
                return VKD_ERR_NOMEM;
    }
    return VKD_OK;
}

static vkd_result parse_merges(vkd_tok *t, const cJSON *model, const char *name, vkd_error *err) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *it;
    if (!merges || cJSON_IsNull(merges)) return VKD_OK;
    if (!cJSON_IsArray(merges)) return vkd_fail(err, VKD_ERR_FORMAT, "%s: model.merges: expected a list", name);
    int32_t rank = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    vkd_result r = VKD_OK;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                r = vkd_fail(err, VKD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\", got \"%.60s\"", name, rank, s);
                break;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) && cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", name, rank);
            break;
        }
        if (la + lb > bufcap) {
            bufcap = (la + lb) * 2 + 64;
            char *nb = realloc(buf, bufcap);
            if (!nb) {
                r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ia = tok_strmap_get(&t->spell, a, la), ib = tok_strmap_get(&t->spell, b, lb);
        int32_t im = tok_strmap_get(&t->spell, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: model.merges[%d]: \"%.*s\" + \"%.*s\" uses a token missing from model.vocab", name, rank, (int)(la > 40 ? 40 : la), a, (int)(lb > 40 ? 40 : lb), b);
            break;
        }
        if (tok_merge_put(&t->bpe.merges, ia, ib, rank, im)) {
            r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
            break;
        }
        rank++;
    }
    free(buf);
    return r;
}

static vkd_result parse_added(vkd_tok *t, const cJSON *root, const char *name, vkd_error *err) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *it;
    if (!list || cJSON_IsNull(list)) return VKD_OK;
    if (!cJSON_IsArray(list)) return vkd_fail(err, VKD_ERR_FORMAT, "%s: added_tokens: expected a list", name);
    size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    cJSON_ArrayForEach(it, list) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = jstr(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) || !content || !*content)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: added_tokens[%zu]: expected \"id\" in [0, 2^24) and a non-empty \"content\"", name, i);
        tok_added *a = &t->added[i++];
        a->id = (int32_t)id->valuedouble;
        a->single_word = jbool(it, "single_word", false);
        a->lstrip = jbool(it, "lstrip", false);
        a->rstrip = jbool(it, "rstrip", false);
        a->normalized = jbool(it, "normalized", !jbool(it, "special", false));
        a->special = jbool(it, "special", false);
        a->len = (uint32_t)strlen(content);
        vkd_result r = tok_set_entry(t, a->id, content, a->len, a->special);
        if (r) return vkd_fail(err, r, "%s: out of memory", name);
        t->entries[a->id].added = 1;
        a->content = NULL; /* resolved after all strings are stored */
    }
    t->n_added = i;
    return VKD_OK;
}

static vkd_result finish_added(vkd_tok *t) {
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        tok_entry *e = &t->entries[a->id];
        a->content = t->strings + e->spell_off;
        if (tok_strmap_put(&t->spell, a->content, a->len, a->id)) return VKD_ERR_NOMEM;
        if (tok_trie_add(a->normalized && t->n_norms ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i))
            return VKD_ERR_NOMEM;
    }
    return VKD_OK;
}

/* tokenizer_config.json: special tokens are strings or {"content": ...} objects. */
static char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? strdup(s) : NULL;
}

static vkd_result parse_config(vkd_tok *t, const char *config, size_t len, const char *name, vkd_error *err) {
    if (!config) return VKD_OK;
    cJSON *cfg = cJSON_ParseWithLength(config, len);
    if (!cfg) return vkd_fail(err, VKD_ERR_FORMAT, "%s: tokenizer_config.json is not valid JSON", name);
    vkd_result r = VKD_OK;
    t->bos_tok = config_token(cfg, "bos_token");
    t->eos_tok = config_token(cfg, "eos_token");
    char *pad = config_token(cfg, "pad_token");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    if (cJSON_IsArray(ct)) { /* [{"name": ..., "template": ...}]: the "default" one */
        const cJSON *it;
        cJSON_ArrayForEach(it, ct) {
            const char *nm = jstr(it, "name");
            if (!tpl || (nm && !strcmp(nm, "default"))) tpl = jstr(it, "template");
        }
    }
    if (tpl && !(t->chat_template = strdup(tpl))) r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    t->bos_id = t->bos_tok ? tok_strmap_get(&t->spell, t->bos_tok, strlen(t->bos_tok)) : -1;
    t->eos_id = t->eos_tok ? tok_strmap_get(&t->spell, t->eos_tok, strlen(t->eos_tok)) : -1;
    t->pad_id = pad ? tok_strmap_get(&t->spell, pad, strlen(pad)) : -1;
    free(pad);
    cJSON_Delete(cfg);
    return r;
}

vkd_result vkd_tok_load_mem(const char *json, size_t json_len, const char *config,
                            size_t config_len, const char *name, vkd_tok **out, vkd_error *err) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + json_len ? (long)(at - json) : -1;
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", name, off);
    }
    vkd_tok *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    }
    t->bos_id = t->eos_id = t->pad_id = -1;
    tok_ids pre = {0}, post = {0};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    vkd_result r = parse_model(t, model, name, err);
    if (!r) r = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name, err);
    if (!r) r = parse_added(t, root, name, err);
    if (!r && build_vocab_maps(t)) r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    if (!r) r = parse_merges(t, model, name, err);
    if (!r && finish_added(t)) r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
    if (!r) r = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), name, err);
    if (!r) r = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), &pre, &post, name, err);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!r && dec && !cJSON_IsNull(dec)) r = check_decoder(dec, name, err);
    if (!r && t->n_entries == 0) r = vkd_fail(err, VKD_ERR_FORMAT, "%s: empty vocabulary", name);
    cJSON_Delete(root);
    t->pre_ids = pre.v;
    t->n_pre = pre.n;
    t->post_ids = post.v;
    t->n_post = post.n;
    if (!r) {
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->bpe.byte_id[b] = tok_strmap_get(&t->bpe.vocab, &c, 1);
        }
        r = parse_config(t, config, config_len, name, err);
    }
    if (!r) {
        t->mctx = pcre2_match_context_create(NULL);
        t->jit = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
        if (!t->mctx) r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", name);
        else if (t->jit) pcre2_jit_stack_assign(t->mctx, NULL, t->jit);
    }
    if (r) {
        vkd_tok_free(t);
        return r;
    }
    *out = t;
    return VKD_OK;
}

vkd_result vkd_tok_load(const char *model_dir, vkd_tok **out, vkd_error *err) {
    *out = NULL;
    size_t dl = strlen(model_dir);
    char *path = malloc(dl + 32);
    if (!path) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    snprintf(path, dl + 32, "%s/tokenizer.json", model_dir);
    char *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    vkd_result r = read_file(path, &json, &jl, err);
    if (!r) {
        snprintf(path, dl + 32, "%s/tokenizer_config.json", model_dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            r = read_file(path, &cfg, &cl, err);
        }
        snprintf(path, dl + 32, "%s/tokenizer.json", model_dir);
    }
    if (!r) r = vkd_tok_load_mem(json, jl, cfg, cl, path, out, err);
    free(json);
    free(cfg);
    free(path);
    return r;
}

void vkd_tok_free(vkd_tok *t) {
    if (!t) return;
    free(t->strings);
    free(t->entries);
    tok_strmap_free(&t->spell);
    tok_strmap_free(&t->bpe.vocab);
    tok_merge_free(&t->bpe.merges);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    for (int i = 0; i < t->n_stages; i++) {
        pcre2_code_free(t->stages[i].re);
        pcre2_match_data_free(t->stages[i].md);
    }
    free(t->pre_ids);
    free(t->post_ids);
    free(t->bos_tok);
    free(t->eos_tok);
    free(t->chat_template);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit);
    tok_cache_free(&t->cache);
    tok_bpe_scratch_free(&t->scratch);
    free(t);
}

