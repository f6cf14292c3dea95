/* bpe.c: hash tables and the BPE merge loop of the tokenizer.
 *
 * The merge loop works on raw bytes: every vocabulary token was mapped back from the
 * byte-level alphabet at load time, so a word starts as one symbol per byte. Merges are
 * applied lowest rank first, leftmost first among equal ranks, exactly as the reference's
 * priority queue does. Short words scan a rank array (cheap, cache friendly); long words
 * (a 1 MB run of one letter is one word) use a binary heap with lazy deletion: O(n log n). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

uint64_t tok_hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

/* ---- string map ---- */

static vkd_result strmap_grow(tok_strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return VKD_ERR_NOMEM;
    for (size_t e = 0; e < m->count; e++) {
        size_t i = tok_hash(m->keys[e], m->lens[e]) & (ncap - 1);
        while (ns[i]) i = (i + 1) & (ncap - 1);
        ns[i] = (uint32_t)e + 1;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return VKD_OK;
}

vkd_result tok_strmap_put(tok_strmap *m, const char *key, uint32_t len, int32_t val) {
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != VKD_OK) return VKD_ERR_NOMEM;
    size_t mask = m->cap - 1, i = tok_hash(key, len) & mask;
    for (; m->slots[i]; i = (i + 1) & mask) {
        uint32_t e = m->slots[i] - 1;
        if (m->lens[e] == len && memcmp(m->keys[e], key, len) == 0) {
            m->vals[e] = val; /* later entries win, like a JSON object read in order */
            return VKD_OK;
        }
    }
    if (m->count == m->ecap) {
        size_t nc = m->ecap ? m->ecap * 2 : 1024;
        const char **k = realloc(m->keys, nc * sizeof *k);
        if (!k) return VKD_ERR_NOMEM;
        m->keys = k;
        uint32_t *l = realloc(m->lens, nc * sizeof *l);
        if (!l) return VKD_ERR_NOMEM;
        m->lens = l;
        int32_t *v = realloc(m->vals, nc * sizeof *v);
        if (!v) return VKD_ERR_NOMEM;
        m->vals = v;
        m->ecap = nc;
    }
    m->keys[m->count] = key;
    m->lens[m->count] = len;
    m->vals[m->count] = val;
    m->slots[i] = (uint32_t)++m->count;
    return VKD_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = tok_hash(key, len) & mask;
    for (; m->slots[i]; i = (i + 1) & mask) {
        uint32_t e = m->slots[i] - 1;
        if (m->lens[e] == len && memcmp(m->keys[e], key, len) == 0) return m->vals[e];
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- merge map ---- */

static vkd_result merge_grow(tok_merge_map *m) {
    size_t ncap = m->cap ? m->cap * 2 : 4096;
    uint64_t *nk = calloc(ncap, sizeof *nk);
    int32_t *nr = malloc(ncap * sizeof *nr), *nm = malloc(ncap * sizeof *nm);
    if (!nk || !nr || !nm) {
        free(nk);
        free(nr);
        free(nm);
        return VKD_ERR_NOMEM;
    }
    for (size_t j = 0; j < m->cap; j++) {
        uint64_t key = m->keys[j];
        if (!key) continue;
        size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (ncap - 1);
        while (nk[i]) i = (i + 1) & (ncap - 1);
        nk[i] = key;
        nr[i] = m->rank[j];
        nm[i] = m->merged[j];
    }
    free(m->keys);
    free(m->rank);
    free(m->merged);
    m->keys = nk;
    m->rank = nr;
    m->merged = nm;
    m->cap = ncap;
    return VKD_OK;
}

vkd_result tok_merge_put(tok_merge_map *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 > m->cap && merge_grow(m) != VKD_OK) return VKD_ERR_NOMEM;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (; m->keys[i]; i = (i + 1) & mask)
        if (m->keys[i] == key) { /* a repeated pair: the later line wins, as in the reference */
            m->rank[i] = rank;
            m->merged[i] = merged;
            return VKD_OK;
        }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->merged[i] = merged;
    m->count++;
    return VKD_OK;
}

void tok_merge_free(tok_merge_map *m) {
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---- id vector ---- */

static vkd_result ids_reserve(tok_ids *a, size_t extra) {
    size_t need;
    if (!vkd_add_size(a->n, extra, &need)) return VKD_ERR_NOMEM;
    if (need <= a->cap) return VKD_OK;
    size_t nc = a->cap ? a->cap : 64;
    while (nc < need) nc *= 2;
    int32_t *v = realloc(a->v, nc * sizeof *v);
    if (!v) return VKD_ERR_NOMEM;
    a->v = v;
    a->cap = nc;
    return VKD_OK;
}

vkd_result tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap && ids_reserve(a, 1) != VKD_OK) return VKD_ERR_NOMEM;
    a->v[a->n++] = id;
    return VKD_OK;
}

vkd_result tok_ids_append(tok_ids *a, const int32_t *ids, size_t n) {
    if (ids_reserve(a, n) != VKD_OK) return VKD_ERR_NOMEM;
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return VKD_OK;
}

/* ---- word cache ---- */

bool tok_cache_get(const tok_cache *c, const char *w, size_t n, const int32_t **ids, size_t *nid) {
    if (!c->cap) return false;
    size_t mask = c->cap - 1, i = tok_hash(w, n) & mask;
    for (; c->slots[i]; i = (i + 1) & mask) {
        uint32_t e = c->slots[i] - 1;
        if (c->klen[e] == n && memcmp(c->keybuf + c->koff[e], w, n) == 0) {
            *ids = c->idbuf + c->ioff[e];
            *nid = c->ilen[e];
            return true;
        }
    }
    return false;
}

static void cache_clear(tok_cache *c) {
    if (c->slots) memset(c->slots, 0, c->cap * sizeof *c->slots);
    c->count = c->keylen = c->idlen = 0;
}

/* Best effort: on allocation failure the word is simply not cached. */
void tok_cache_put(tok_cache *c, const char *w, size_t n, const int32_t *ids, size_t nid) {
    if (n > TOK_CACHE_MAX_WORD) return;
    if (c->count >= TOK_CACHE_MAX_ENTRIES) cache_clear(c);
    if (!c->cap) {
        c->cap = 2 * TOK_CACHE_MAX_ENTRIES;
        c->ecap = TOK_CACHE_MAX_ENTRIES;
        c->slots = calloc(c->cap, sizeof *c->slots);
        c->koff = malloc(c->ecap * sizeof *c->koff);
        c->klen = malloc(c->ecap * sizeof *c->klen);
        c->ioff = malloc(c->ecap * sizeof *c->ioff);
        c->ilen = malloc(c->ecap * sizeof *c->ilen);
        c->keycap = (size_t)TOK_CACHE_MAX_ENTRIES * 16;
        c->idcap = (size_t)TOK_CACHE_MAX_ENTRIES * 4;
        c->keybuf = malloc(c->keycap);
        c->idbuf = malloc(c->idcap * sizeof *c->idbuf);
        if (!c->slots || !c->koff || !c->klen || !c->ioff || !c->ilen || !c->keybuf ||
            !c->idbuf) {
            tok_cache_free(c);
            return;
        }
    }
    if (c->keylen + n > c->keycap || c->idlen + nid > c->idcap) cache_clear(c);
    if (n > c->keycap || nid > c->idcap) return;
    size_t mask = c->cap - 1, i = tok_hash(w, n) & mask;
    while (c->slots[i]) i = (i + 1) & mask;
    size_t e = c->count++;
    c->koff[e] = (uint32_t)c->keylen;
    c->klen[e] = (uint32_t)n;
    c->ioff[e] = (uint32_t)c->idlen;
    c->ilen[e] = (uint32_t)nid;
    memcpy(c->keybuf + c->keylen, w, n);
    memcpy(c->idbuf + c->idlen, ids, nid * sizeof *ids);
    c->keylen += n;
    c->idlen += nid;
    c->slots[i] = (uint32_t)e + 1;
}

void tok_cache_free(tok_cache *c) {
    free(c->slots);
    free(c->keybuf);
    free(c->idbuf);
    free(c->koff);
    free(c->klen);
    free(c->ioff);
    free(c->ilen);
    memset(c, 0, sizeof *c);
}

/* ---- merge loop ---- */

void tok_bpe_scratch_free(tok_bpe_scratch *s) {
    free(s->id);
    free(s->prev);
    free(s->next);
    free(s->rank);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

static vkd_result scratch_reserve(tok_bpe_scratch *s, size_t n) {
    if (n <= s->cap) return VKD_OK;
    size_t nc = s->cap ? s->cap : 256;
    while (nc < n) nc *= 2;
    int32_t *a = realloc(s->id, nc * sizeof *a);
    if (!a) return VKD_ERR_NOMEM;
    s->id = a;
    if (!(a = realloc(s->prev, nc * sizeof *a))) return VKD_ERR_NOMEM;
    s->prev = a;
    if (!(a = realloc(s->next, nc * sizeof *a))) return VKD_ERR_NOMEM;
    s->next = a;
    if (!(a = realloc(s->rank, nc * sizeof *a))) return VKD_ERR_NOMEM;
    s->rank = a;
    s->cap = nc;
    return VKD_OK;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

#define BPE_SCAN_MAX 64

vkd_result tok_bpe_word(const tok_bpe *m, tok_bpe_scratch *s, const char *w, size_t n,
                        tok_ids *out) {
    if (n == 0) return VKD_OK;
    if (m->ignore_merges || n == 1) {
        int32_t id = tok_strmap_get(&m->vocab, w, n);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n > (size_t)INT32_MAX / 2) return VKD_ERR_NOMEM;
    if (scratch_reserve(s, n) != VKD_OK) return VKD_ERR_NOMEM;
    /* Symbols: one per byte that has a token (the reference drops unknown symbols when
     * the model has no unk token). */
    int32_t *id = s->id, *prev = s->prev, *next = s->next, *rank = s->rank;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t b = m->byte_id[(uint8_t)w[i]];
        if (b >= 0) id[k++] = b;
    }
    if (k == 0) return VKD_OK;
    for (size_t i = 0; i < k; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    int32_t merged = -1;
    if (k <= BPE_SCAN_MAX) {
        for (size_t i = 0; i + 1 < k; i++) rank[i] = tok_merge_get(&m->merges, id[i], id[i + 1], &merged);
        rank[k - 1] = -1;
        for (;;) {
            int32_t best = -1, br = INT32_MAX;
            for (int32_t i = 0; i >= 0; i = next[i])
                if (rank[i] >= 0 && rank[i] < br) {
                    br = rank[i];
                    best = i;
                }
            if (best < 0) break;
            int32_t r = next[best];
            tok_merge_get(&m->merges, id[best], id[r], &merged);
            id[best] = merged;
            next[best] = next[r];
            if (next[r] >= 0) prev[next[r]] = best;
            rank[best] = next[best] >= 0 ? tok_merge_get(&m->merges, merged, id[next[best]], &merged) : -1;
            if (prev[best] >= 0)
                rank[prev[best]] = tok_merge_get(&m->merges, id[prev[best]], id[best], &merged);
        }
    } else {
        if (s->heapcap < k) {
            uint64_t *h = realloc(s->heap, k * sizeof *h);
            if (!h) return VKD_ERR_NOMEM;
            s->heap = h;
            s->heapcap = k;
        }
        /* Each live adjacent pair has at most one heap entry at a time in steady state, but
         * stale entries stay until popped; k-1 initial + 2 per merge is bounded by 3k, so
         * the heap is grown on demand. */
        size_t hn = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            int32_t r = tok_merge_get(&m->merges, id[i], id[i + 1], &merged);
            rank[i] = r;
            if (r >= 0) heap_push(s->heap, &hn, (uint64_t)r << 32 | i);
        }
        rank[k - 1] = -1;
        while (hn) {
            uint64_t top = heap_pop(s->heap, &hn);
            int32_t r = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top;
            if (rank[pos] != r || next[pos] < 0) continue; /* stale: symbol merged away */
            int32_t nx = next[pos];
            tok_merge_get(&m->merges, id[pos], id[nx], &merged);
            id[pos] = merged;
            rank[nx] = -1;
            next[pos] = next[nx];
            if (next[nx] >= 0) prev[next[nx]] = pos;
            if (hn + 2 > s->heapcap) {
                size_t nc = s->heapcap * 2;
                uint64_t *h = realloc(s->heap, nc * sizeof *h);
                if (!h) return VKD_ERR_NOMEM;
                s->heap = h;
                s->heapcap = nc;
            }
            int32_t nr = next[pos] >= 0 ? tok_merge_get(&m->merges, merged, id[next[pos]], &merged) : -1;
            rank[pos] = nr;
            if (nr >= 0) heap_push(s->heap, &hn, (uint64_t)nr << 32 | (uint32_t)pos);
            int32_t pv = prev[pos];
            if (pv >= 0) {
                int32_t pr = tok_merge_get(&m->merges, id[pv], id[pos], &merged);
                rank[pv] = pr;
                if (pr >= 0) heap_push(s->heap, &hn, (uint64_t)pr << 32 | (uint32_t)pv);
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (tok_ids_push(out, id[i]) != VKD_OK) return VKD_ERR_NOMEM;
    return VKD_OK;
}
