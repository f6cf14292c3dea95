/* tokenizer.c: the encode pipeline (added tokens -> normalizer -> pre-tokenizers -> BPE ->
 * post-processor), decoding and streaming decoding, and the token tables loading fills.
 * Loading tokenizer.json / tokenizer_config.json is in tokenizer_load.c, the merge loop
 * and hash tables in bpe.c. */
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

/* GPT-2's byte-level alphabet, decoded: code point -> byte, -1 for code points that stand
 * for no byte. Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF are their own code points; the
 * other 68 bytes, in order, are 256..323 (openai/gpt-2 encoder.py bytes_to_unicode). A
 * constant table, so loading shares no state between tokenizers or threads. */
static const int16_t cp_to_byte[324] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, -1, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141,
    142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157,
    158, 159, 160, 173,
};

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
vkd_result tok_set_entry(vkd_tok *t, int64_t id, const char *spell, size_t n, bool special) {
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

vkd_result tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t token) {
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
