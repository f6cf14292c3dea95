/* tokenizer.c: loading tokenizer.json / tokenizer_config.json and the encode pipeline
 * (added tokens -> normalizer -> pre-tokenizers -> BPE -> post-processor), decoding and
 * streaming decoding. The merge loop and hash tables are in bpe.c. */
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

/* ---- tables ---- */

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PT_SPLIT, PT_BYTELEVEL };
#define MAX_STAGES 8
#define MAX_NORMS 8

typedef struct tok_pretok {
    int kind;
    int behavior;
    bool invert, add_prefix_space;
    pcre2_code *re;           /* Split pattern, or the GPT-2 pattern for ByteLevel use_regex */
    pcre2_match_data *md;
} tok_pretok;

typedef struct tok_added {
    const char *content;      /* points into tok->strings */
    uint32_t len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Trie over added-token bytes for leftmost-longest matching. */
typedef struct trie_node {
    int32_t child, sibling;   /* -1 = none */
    int32_t token;            /* index into tok->added, -1 = not a token end */
    uint8_t byte;
} trie_node;

typedef struct tok_trie {
    trie_node *nodes;
    size_t n, cap;
    uint8_t first[256];       /* bytes that start some token */
} tok_trie;

typedef struct tok_entry {
    uint32_t spell_off, spell_len; /* the file's spelling */
    uint32_t bytes_off, bytes_len; /* what decoding yields */
    uint8_t present, special, added;
} tok_entry;

struct vkd_tok {
    char *strings;            /* every token string, NUL separated */
    size_t strings_len, strings_cap;
    tok_entry *entries;
    size_t n_entries;         /* vocab size */
    size_t entries_cap;
    tok_strmap spell;         /* spelling -> id (model vocabulary, then added tokens) */
    tok_bpe bpe;
    tok_added *added;
    size_t n_added;
    tok_trie trie_raw, trie_norm;
    uint32_t norms[MAX_NORMS];
    int n_norms;
    tok_pretok stages[MAX_STAGES];
    int n_stages;
    int32_t *pre_ids, *post_ids; /* TemplateProcessing "single": tokens before/after $A */
    size_t n_pre, n_post;
    int32_t bos_id, eos_id, pad_id;
    char *bos_tok, *eos_tok, *chat_template;
    /* encode scratch */
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    tok_cache cache;
    tok_bpe_scratch scratch;
};

/* GPT-2 byte <-> unicode alphabet. */
static uint16_t byte_to_cp[256];
static int16_t cp_to_byte[324];

static void byte_tables_init(void) {
    if (byte_to_cp['!']) return;
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : 256 + extra++;
        byte_to_cp[b] = (uint16_t)cp;
        cp_to_byte[cp] = (int16_t)b;
    }
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (1..4), 0 when invalid; *need > 0 when the
 * sequence is a valid but truncated prefix (then the return value is 0 and *need is the
 * number of bytes seen so far). Maximal-subpart semantics: *bad is how many bytes form the
 * invalid subpart. */
static int utf8_step(const uint8_t *s, size_t n, size_t *bad, bool *truncated) {
    uint8_t b = s[0];
    *truncated = false;
    if (b < 0x80) return 1;
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) {
            *truncated = true;
            *bad = (size_t)i;
            return 0;
        }
        uint8_t c = s[i];
        if (c < lo || c > hi) {
            *bad = (size_t)i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return len;
}

bool vkd_utf8_valid(const char *s, size_t len, size_t *bad_offset) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad;
        bool trunc;
        int l = utf8_step(u + i, len - i, &bad, &trunc);
        if (!l) {
            if (bad_offset) *bad_offset = i;
            return false;
        }
        i += (size_t)l;
    }
    return true;
}

static uint32_t utf8_decode(const uint8_t *s, int len) {
    switch (len) {
    case 1: return s[0];
    case 2: return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    default:
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
               (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
}

static int utf8_len_at(const uint8_t *s) {
    return s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
}

/* Unicode White_Space, as Rust's char::is_whitespace. */
static bool is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static bool is_word_char(uint32_t c) {
    if (c == '_') return true;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* Last code point before s+end (end > 0). */
static uint32_t cp_before(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    return utf8_decode((const uint8_t *)s + i, (int)(end - i));
}

/* ---- string storage ---- */

static vkd_result str_add(vkd_tok *t, const char *s, size_t n, uint32_t *off) {
    size_t need;
    if (!vkd_add_size(t->strings_len, n + 1, &need) || need > UINT32_MAX) return VKD_ERR_NOMEM;
    if (need > t->strings_cap) {
        size_t nc = t->strings_cap ? t->strings_cap : 1 << 20;
        while (nc < need) nc *= 2;
        char *p = realloc(t->strings, nc);
        if (!p) return VKD_ERR_NOMEM;
        t->strings = p;
        t->strings_cap = nc;
    }
    memcpy(t->strings + t->strings_len, s, n);
    t->strings[t->strings_len + n] = 0;
    *off = (uint32_t)t->strings_len;
    t->strings_len = need;
    return VKD_OK;
}

/* Maps a byte-level spelling to raw bytes; false if some character is outside the
 * alphabet (then the reference decodes the token as its own UTF-8 bytes). */
static bool bytelevel_to_bytes(const char *s, size_t n, char *out, size_t *outn) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t bad;
        bool trunc;
        int l = utf8_step((const uint8_t *)s + i, n - i, &bad, &trunc);
        if (!l) return false;
        uint32_t cp = utf8_decode((const uint8_t *)s + i, l);
        if (cp >= 324 || cp_to_byte[cp] < 0) return false;
        out[k++] = (char)cp_to_byte[cp];
        i += (size_t)l;
    }
    *outn = k;
    return true;
}

static vkd_result entries_reserve(vkd_tok *t, int64_t id) {
    if (id < 0 || id >= (1 << 24)) return VKD_ERR_RANGE;
    if ((size_t)id < t->n_entries) return VKD_OK;
    size_t nn = (size_t)id + 1;
    if (nn > t->entries_cap) { /* geometric growth: vocab ids arrive in any order */
        size_t nc = t->entries_cap ? t->entries_cap : 1024;
        while (nc < nn) nc *= 2;
        tok_entry *e = realloc(t->entries, nc * sizeof *e);
        if (!e) return VKD_ERR_NOMEM;
        t->entries = e;
        t->entries_cap = nc;
    }
    memset(t->entries + t->n_entries, 0, (nn - t->n_entries) * sizeof *t->entries);
    t->n_entries = nn;
    return VKD_OK;
}

/* Records id's spelling and decoded bytes. */
static vkd_result set_entry(vkd_tok *t, int64_t id, const char *spell, size_t n, bool special) {
    vkd_result r = entries_reserve(t, id);
    if (r) return r;
    tok_entry *e = &t->entries[id];
    uint32_t off;
    if ((r = str_add(t, spell, n, &off))) return r;
    e->spell_off = off;
    e->spell_len = (uint32_t)n;
    char *tmp = malloc(n + 1);
    if (!tmp) return VKD_ERR_NOMEM;
    size_t bn;
    if (bytelevel_to_bytes(spell, n, tmp, &bn)) {
        if ((r = str_add(t, tmp, bn, &off))) {
            free(tmp);
            return r;
        }
        e->bytes_off = off;
        e->bytes_len = (uint32_t)bn;
    } else {
        e->bytes_off = e->spell_off;
        e->bytes_len = e->spell_len;
    }
    free(tmp);
    e->present = 1;
    e->special = special;
    return VKD_OK;
}

/* ---- trie ---- */

static vkd_result trie_add(tok_trie *tr, const char *s, size_t n, int32_t token) {
    if (!tr->n) {
        tr->cap = 64;
        tr->nodes = malloc(tr->cap * sizeof *tr->nodes);
        if (!tr->nodes) return VKD_ERR_NOMEM;
        tr->nodes[0] = (trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[cur].child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                trie_node *nn = realloc(tr->nodes, tr->cap * 2 * sizeof *nn);
                if (!nn) return VKD_ERR_NOMEM;
                tr->nodes = nn;
                tr->cap *= 2;
            }
            c = (int32_t)tr->n++;
            tr->nodes[c] = (trie_node){-1, tr->nodes[cur].child, -1, b};
            tr->nodes[cur].child = c;
        }
        cur = c;
    }
    if (tr->nodes[cur].token < 0) tr->nodes[cur].token = token; /* first spelling wins */
    tr->first[(uint8_t)s[0]] = 1;
    return VKD_OK;
}

/* Longest token starting at s[0]; returns its index or -1, and its length. */
static int32_t trie_longest(const tok_trie *tr, const char *s, size_t n, size_t *len) {
    int32_t cur = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[cur].child;
        while (c >= 0 && tr->nodes[c].byte != (uint8_t)s[i]) c = tr->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (tr->nodes[cur].token >= 0) {
            best = tr->nodes[cur].token;
            *len = i + 1;
        }
    }
    return best;
}

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

static const char *GPT2_PATTERN =
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
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
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
        vkd_result r = set_entry(t, (int64_t)it->valuedouble, it->string, strlen(it->string), false);
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
        vkd_result r = set_entry(t, a->id, content, a->len, a->special);
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
        if (trie_add(a->normalized && t->n_norms ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i))
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
    byte_tables_init();
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

/* ---- encoding ---- */

typedef struct enc_ctx {
    vkd_tok *t;
    tok_ids *out;
    vkd_error *err;
} enc_ctx;

static vkd_result enc_word(enc_ctx *c, const char *p, size_t n) {
    vkd_tok *t = c->t;
    const int32_t *ids;
    size_t nid;
    if (n <= TOK_CACHE_MAX_WORD && tok_cache_get(&t->cache, p, n, &ids, &nid))
        return tok_ids_append(c->out, ids, nid) ? vkd_fail(c->err, VKD_ERR_NOMEM, "encode: out of memory") : VKD_OK;
    size_t before = c->out->n;
    if (tok_bpe_word(&t->bpe, &t->scratch, p, n, c->out))
        return vkd_fail(c->err, VKD_ERR_NOMEM, "encode: out of memory");
    if (n <= TOK_CACHE_MAX_WORD) tok_cache_put(&t->cache, p, n, c->out->v + before, c->out->n - before);
    return VKD_OK;
}

static vkd_result enc_stage(enc_ctx *c, int stage, const char *p, size_t n);

/* Runs re over p[0..n) and hands each piece (per the Split behaviour) to the next stage. */
static vkd_result enc_split(enc_ctx *c, int stage, const tok_pretok *s, int behavior,
                            bool invert, const char *p, size_t n) {
    vkd_tok *t = c->t;
    size_t off = 0, prev = 0;
    /* Pieces are contiguous ranges; the pending one [pst, pen) is handed on when the next
     * segment cannot merge into it (the reference's folds over (range, is_match) lists:
     * MergedWithNext is its reverse fold, i.e. a match joins the gap that follows it). */
    size_t pst = 0, pen = 0;
    bool have = false, prev_match = false;
    vkd_result r = VKD_OK;
    for (;;) {
        size_t ms = n, me = n;
        bool found = false;
        if (off < n) {
            int rc = pcre2_match(s->re, (PCRE2_SPTR)p, n, off, PCRE2_NO_UTF_CHECK, s->md, t->mctx);
            if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) {
                if (rc >= 0) {
                    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
                    ms = ov[0];
                    me = ov[1];
                    found = true;
                    if (ms == me) { /* empty match: not a piece; step one character */
                        off = me + (me < n ? (size_t)utf8_len_at((const uint8_t *)p + me) : 1);
                        continue;
                    }
                }
            } else {
                return vkd_fail(c->err, VKD_ERR_INVALID, "encode: regex matching failed (PCRE2 error %d)", rc);
            }
        }
        /* segments: gap [prev, ms) (is_match = invert), match [ms, me) (is_match = !invert) */
        for (int seg = 0; seg < 2; seg++) {
            size_t a = seg ? ms : prev, b = seg ? me : ms;
            if (seg == 1 && !found) break;
            if (a == b) continue;
            bool is_match = seg ? !invert : invert;
            bool merge = false;
            switch (behavior) {
            case SPLIT_REMOVED:
                if (is_match) continue;
                break;
            case SPLIT_ISOLATED: break;
            case SPLIT_MERGED_PREV: merge = have && is_match && !prev_match; break;
            case SPLIT_MERGED_NEXT: merge = have && prev_match && !is_match; break;
            case SPLIT_CONTIGUOUS: merge = have && is_match == prev_match; break;
            }
            if (merge) {
                pen = b;
            } else {
                if (have && (r = enc_stage(c, stage + 1, p + pst, pen - pst))) return r;
                pst = a;
                pen = b;
                have = true;
            }
            prev_match = is_match;
        }
        if (!found) break;
        prev = off = me;
    }
    if (have) r = enc_stage(c, stage + 1, p + pst, pen - pst);
    return r;
}

static vkd_result enc_stage(enc_ctx *c, int stage, const char *p, size_t n) {
    if (n == 0) return VKD_OK;
    if (stage == c->t->n_stages) return enc_word(c, p, n);
    const tok_pretok *s = &c->t->stages[stage];
    if (s->kind == PT_SPLIT) return enc_split(c, stage, s, s->behavior, s->invert, p, n);
    /* ByteLevel: optional prefix space, optional GPT-2 split; bytes stay raw (the
     * vocabulary was mapped to raw bytes at load). */
    char *tmp = NULL;
    if (s->add_prefix_space && p[0] != ' ') {
        tmp = malloc(n + 1);
        if (!tmp) return vkd_fail(c->err, VKD_ERR_NOMEM, "encode: out of memory");
        tmp[0] = ' ';
        memcpy(tmp + 1, p, n);
        p = tmp;
        n++;
    }
    vkd_result r = s->re ? enc_split(c, stage, s, SPLIT_ISOLATED, false, p, n) : enc_stage(c, stage + 1, p, n);
    free(tmp);
    return r;
}

/* Splits text on the added tokens of trie tr (reference: AddedVocabulary::find_matches).
 * Plain ranges go to plain(); tokens are appended. */
typedef vkd_result (*plain_fn)(enc_ctx *c, const char *p, size_t n);

static vkd_result split_added(enc_ctx *c, const tok_trie *tr, const char *s, size_t n, plain_fn plain) {
    vkd_tok *t = c->t;
    size_t start_off = 0, i = 0;
    vkd_result r;
    while (tr->n && i < n) {
        if (!tr->first[(uint8_t)s[i]]) {
            i++;
            continue;
        }
        size_t len = 0;
        int32_t k = trie_longest(tr, s + i, n - i, &len);
        if (k < 0) {
            i++;
            continue;
        }
        const tok_added *a = &t->added[k];
        size_t start = i, stop = i + len;
        if (a->single_word) {
            bool ok_start = start == 0 || !is_word_char(cp_before(s, start));
            bool ok_stop = stop == n || !is_word_char(utf8_decode((const uint8_t *)s + stop, utf8_len_at((const uint8_t *)s + stop)));
            if (!ok_start || !ok_stop) {
                i = stop; /* the reference's iterator resumes after the rejected match */
                continue;
            }
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t q = ns - 1;
                while (q > 0 && ((uint8_t)s[q] & 0xC0) == 0x80) q--;
                if (!is_ws(utf8_decode((const uint8_t *)s + q, (int)(ns - q)))) break;
                ns = q;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) {
            while (stop < n) {
                int l = utf8_len_at((const uint8_t *)s + stop);
                if (!is_ws(utf8_decode((const uint8_t *)s + stop, l))) break;
                stop += (size_t)l;
            }
        }
        if (start_off < start && (r = plain(c, s + start_off, start - start_off))) return r;
        if (tok_ids_push(c->out, a->id)) return vkd_fail(c->err, VKD_ERR_NOMEM, "encode: out of memory");
        start_off = i = stop;
    }
    if (start_off < n) return plain(c, s + start_off, n - start_off);
    return VKD_OK;
}

static vkd_result enc_pretok(enc_ctx *c, const char *p, size_t n) { return enc_stage(c, 0, p, n); }

static vkd_result enc_normalized(enc_ctx *c, const char *p, size_t n) {
    vkd_tok *t = c->t;
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = (uint8_t)p[i] < 0x80;
    if (!t->n_norms || ascii) return split_added(c, &t->trie_norm, p, n, enc_pretok);
    char *cur = NULL;
    const char *src = p;
    size_t len = n;
    for (int k = 0; k < t->n_norms; k++) {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)len, &dst, (utf8proc_option_t)t->norms[k]);
        free(cur);
        if (m < 0) {
            free(dst);
            return vkd_fail(c->err, m == UTF8PROC_ERROR_NOMEM ? VKD_ERR_NOMEM : VKD_ERR_INVALID, "encode: normalization failed: %s", utf8proc_errmsg(m));
        }
        cur = (char *)dst;
        src = cur;
        len = (size_t)m;
    }
    vkd_result r = split_added(c, &t->trie_norm, src, len, enc_pretok);
    free(cur);
    return r;
}

vkd_result vkd_tok_encode(vkd_tok *t, const char *text, size_t len, bool add_special,
                          int32_t **ids, size_t *n, vkd_error *err) {
    *ids = NULL;
    *n = 0;
    if (!text && len) return vkd_fail(err, VKD_ERR_INVALID, "encode: NULL text");
    size_t bad;
    if (!vkd_utf8_valid(text, len, &bad))
        return vkd_fail(err, VKD_ERR_INVALID, "encode: input is not valid UTF-8 (byte 0x%02x at offset %zu)", (uint8_t)text[bad], bad);
    tok_ids out = {0};
    enc_ctx c = {t, &out, err};
    vkd_result r = VKD_OK;
    if (add_special && t->n_pre) r = tok_ids_append(&out, t->pre_ids, t->n_pre) ? vkd_fail(err, VKD_ERR_NOMEM, "encode: out of memory") : VKD_OK;
    if (!r && len) r = split_added(&c, &t->trie_raw, text, len, enc_normalized);
    if (!r && add_special && t->n_post) r = tok_ids_append(&out, t->post_ids, t->n_post) ? vkd_fail(err, VKD_ERR_NOMEM, "encode: out of memory") : VKD_OK;
    if (!r && !out.v && tok_ids_push(&out, 0) == VKD_OK) out.n = 0;
    if (!r && !out.v) r = vkd_fail(err, VKD_ERR_NOMEM, "encode: out of memory");
    if (r) {
        free(out.v);
        return r;
    }
    *ids = out.v;
    *n = out.n;
    return VKD_OK;
}

/* ---- decoding ---- */

typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

static bool buf_put(tok_buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) return false;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

/* Appends the valid part of s (U+FFFD for each maximal invalid subpart). When final is
 * false, a truncated but so far valid sequence at the end is not consumed; returns the
 * number of bytes consumed. */
static size_t utf8_lossy(tok_buf *b, const char *s, size_t n, bool final, bool *oom) {
    static const char FFFD[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, run = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad;
        bool trunc;
        int l = utf8_step((const uint8_t *)s + i, n - i, &bad, &trunc);
        if (l) {
            i += (size_t)l;
            continue;
        }
        if (trunc && !final) break;
        if (!buf_put(b, s + run, i - run) || !buf_put(b, FFFD, 3)) *oom = true;
        i += bad;
        run = i;
    }
    if (!buf_put(b, s + run, i - run)) *oom = true;
    return i;
}

static vkd_result check_id(const vkd_tok *t, int32_t id, vkd_error *err) {
    if (id < 0 || (size_t)id >= t->n_entries || !t->entries[id].present)
        return vkd_fail(err, VKD_ERR_RANGE, "decode: token id %d is not in the vocabulary (size %zu)", id, t->n_entries);
    return VKD_OK;
}

vkd_result vkd_tok_decode(const vkd_tok *t, const int32_t *ids, size_t n, bool skip_special,
                          char **text, size_t *len, vkd_error *err) {
    *text = NULL;
    *len = 0;
    tok_buf raw = {0}, out = {0};
    bool oom = !buf_put(&raw, "", 0);
    for (size_t i = 0; i < n && !oom; i++) {
        vkd_result r = check_id(t, ids[i], err);
        if (r) {
            free(raw.p);
            return r;
        }
        const tok_entry *e = &t->entries[ids[i]];
        if (skip_special && e->special) continue;
        oom = !buf_put(&raw, t->strings + e->bytes_off, e->bytes_len);
    }
    if (!oom) oom = !buf_put(&out, "", 0);
    if (!oom) utf8_lossy(&out, raw.p, raw.n, true, &oom);
    free(raw.p);
    if (oom) {
        free(out.p);
        return vkd_fail(err, VKD_ERR_NOMEM, "decode: out of memory");
    }
    *text = out.p;
    *len = out.n;
    return VKD_OK;
}

struct vkd_tok_stream {
    const vkd_tok *t;
    bool skip_special;
    tok_buf pend;  /* bytes of an incomplete character */
    tok_buf out;   /* last chunk handed out */
};

vkd_result vkd_tok_stream_new(const vkd_tok *t, bool skip_special, vkd_tok_stream **out, vkd_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    (*out)->t = t;
    (*out)->skip_special = skip_special;
    if (!buf_put(&(*out)->pend, "", 0) || !buf_put(&(*out)->out, "", 0)) {
        vkd_tok_stream_free(*out);
        *out = NULL;
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    return VKD_OK;
}

vkd_result vkd_tok_stream_push(vkd_tok_stream *s, int32_t id, const char **text, size_t *len,
                               vkd_error *err) {
    s->out.n = 0;
    s->out.p[0] = 0;
    *text = s->out.p;
    *len = 0;
    vkd_result r = check_id(s->t, id, err);
    if (r) return r;
    const tok_entry *e = &s->t->entries[id];
    if (s->skip_special && e->special) return VKD_OK;
    bool oom = !buf_put(&s->pend, s->t->strings + e->bytes_off, e->bytes_len);
    size_t used = oom ? 0 : utf8_lossy(&s->out, s->pend.p, s->pend.n, false, &oom);
    if (oom) return vkd_fail(err, VKD_ERR_NOMEM, "decode: out of memory");
    memmove(s->pend.p, s->pend.p + used, s->pend.n - used);
    s->pend.n -= used;
    *text = s->out.p;
    *len = s->out.n;
    return VKD_OK;
}

void vkd_tok_stream_flush(vkd_tok_stream *s, const char **text, size_t *len) {
    bool oom = false;
    s->out.n = 0;
    s->out.p[0] = 0;
    utf8_lossy(&s->out, s->pend.p, s->pend.n, true, &oom);
    s->pend.n = 0;
    *text = s->out.p;
    *len = s->out.n;
}

void vkd_tok_stream_free(vkd_tok_stream *s) {
    if (!s) return;
    free(s->pend.p);
    free(s->out.p);
    free(s);
}

/* ---- lookups ---- */

size_t vkd_tok_vocab_size(const vkd_tok *t) { return t->n_entries; }

int32_t vkd_tok_token_to_id(const vkd_tok *t, const char *token) {
    return tok_strmap_get(&t->spell, token, strlen(token));
}

const char *vkd_tok_id_to_token(const vkd_tok *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_entries || !t->entries[id].present) return NULL;
    return t->strings + t->entries[id].spell_off;
}

bool vkd_tok_is_special(const vkd_tok *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_entries && t->entries[id].special;
}

int32_t vkd_tok_bos_id(const vkd_tok *t) { return t->bos_id; }
int32_t vkd_tok_eos_id(const vkd_tok *t) { return t->eos_id; }
int32_t vkd_tok_pad_id(const vkd_tok *t) { return t->pad_id; }
const char *vkd_tok_bos_token(const vkd_tok *t) { return t->bos_tok ? t->bos_tok : ""; }
const char *vkd_tok_eos_token(const vkd_tok *t) { return t->eos_tok ? t->eos_tok : ""; }
const char *vkd_tok_chat_template(const vkd_tok *t) { return t->chat_template; }
