/* tok_internal.h: data structures shared by tokenizer.c (pipeline), tokenizer_load.c
 * (loading) and bpe.c (hash tables and the merge loop). Not a public header. */
#ifndef VKD_TOK_INTERNAL_H
#define VKD_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

/* Byte-string -> id map, open addressing. Keys live in the caller's storage. */
typedef struct tok_strmap {
    uint32_t *slots;   /* entry index + 1; 0 = empty */
    size_t cap;        /* power of two */
    size_t count;
    const char **keys; /* per entry */
    uint32_t *lens;
    int32_t *vals;
    size_t ecap;
} tok_strmap;

vkd_result tok_strmap_put(tok_strmap *m, const char *key, uint32_t len, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len); /* -1 absent */
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_merge_map {
    uint64_t *keys;    /* (left << 32 | right) + 1; 0 = empty */
    int32_t *rank;
    int32_t *merged;
    size_t cap, count;
} tok_merge_map;

vkd_result tok_merge_put(tok_merge_map *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
/* Returns rank or -1; *merged set when found. */
static inline int32_t tok_merge_get(const tok_merge_map *m, int32_t a, int32_t b,
                                    int32_t *merged) {
    if (!m->cap) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *merged = m->merged[i];
            return m->rank[i];
        }
        if (!k) return -1;
        i = (i + 1) & mask;
    }
}
void tok_merge_free(tok_merge_map *m);

/* Growable id vector. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
vkd_result tok_ids_push(tok_ids *a, int32_t id);
vkd_result tok_ids_append(tok_ids *a, const int32_t *ids, size_t n);

/* Cache of BPE results for short words: word bytes -> ids. Cleared when full. */
typedef struct tok_cache {
    uint32_t *slots;   /* entry + 1 */
    size_t cap, count;
    char *keybuf;      /* concatenated keys */
    size_t keylen, keycap;
    int32_t *idbuf;
    size_t idlen, idcap;
    uint32_t *koff, *klen, *ioff, *ilen; /* per entry */
    size_t ecap;
} tok_cache;

#define TOK_CACHE_MAX_WORD 64
#define TOK_CACHE_MAX_ENTRIES 65536

/* Returns true and the ids when word is cached. */
bool tok_cache_get(const tok_cache *c, const char *w, size_t n, const int32_t **ids, size_t *nid);
void tok_cache_put(tok_cache *c, const char *w, size_t n, const int32_t *ids, size_t nid);
void tok_cache_free(tok_cache *c);

/* Scratch for the merge loop, reused between words. */
typedef struct tok_bpe_scratch {
    int32_t *id, *prev, *next, *rank;
    uint64_t *heap;    /* (rank << 32 | pos) */
    size_t cap, heapcap;
} tok_bpe_scratch;

/* The model part: byte-level BPE over raw bytes. */
typedef struct tok_bpe {
    tok_strmap vocab;      /* raw bytes of each byte-level vocabulary token -> id */
    tok_merge_map merges;
    int32_t byte_id[256];  /* id of the single-byte token, -1 if missing */
    bool ignore_merges;
} tok_bpe;

/* Appends the BPE ids of word (raw bytes) to out. */
vkd_result tok_bpe_word(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n,
                        tok_ids *out);
void tok_bpe_scratch_free(tok_bpe_scratch *s);

uint64_t tok_hash(const char *p, size_t n);

/* ---- the tokenizer (tokenizer.c: pipeline, tokenizer_load.c: loading) ---- */

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "tokenizer.h"


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

/* Sets token id's spelling (as in the file) and the bytes it decodes to; grows entries. */
vkd_result tok_set_entry(vkd_tok *t, int64_t id, const char *spell, size_t n, bool special);
/* Adds token index `token` under bytes s[0..n) to the added-token trie. */
vkd_result tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t token);

#endif
