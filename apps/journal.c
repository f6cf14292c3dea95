/* journal.c: journal reading, record index and exact integers (see journal.h). */
#include "journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static const char *rec_id(const cJSON *r) {
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(r, "id");
    return cJSON_IsString(i) ? i->valuestring : NULL;
}

long jr_find(jr_journal *j, const char *id) {
    if (!j->nslot) return -1;
    size_t mask = j->nslot - 1;
    for (size_t s = hash_str(id) & mask;; s = (s + 1) & mask) {
        j->probes++;
        size_t v = j->slot[s];
        if (!v) return -1;
        if (!strcmp(rec_id(j->rec[v - 1]), id)) return (long)(v - 1);
    }
}

static bool rehash(jr_journal *j, size_t nslot) {
    size_t *slot = calloc(nslot, sizeof *slot);
    if (!slot) return false;
    for (size_t k = 0; k < j->n; k++) {
        size_t s = hash_str(rec_id(j->rec[k])) & (nslot - 1);
        while (slot[s]) {
            j->probes++;
            s = (s + 1) & (nslot - 1);
        }
        slot[s] = k + 1;
    }
    free(j->slot);
    j->slot = slot;
    j->nslot = nslot;
    return true;
}

vkd_result jr_add(jr_journal *j, cJSON *r, size_t line, vkd_error *err) {
    const char *id = rec_id(r);
    if (!id) {
        cJSON_Delete(r);
        return vkd_fail(err, VKD_ERR_INVALID, "journal record without an id");
    }
    if (jr_find(j, id) >= 0) {
        vkd_fail(err, VKD_ERR_INVALID, "journal id '%.200s' is already present", id);
        cJSON_Delete(r); /* after the message: id points into r */
        return VKD_ERR_INVALID;
    }
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        cJSON **rec = realloc(j->rec, cap * sizeof *rec);
        if (rec) j->rec = rec;
        size_t *ln = rec ? realloc(j->line, cap * sizeof *ln) : NULL;
        if (!ln) {
            cJSON_Delete(r);
            return vkd_fail(err, VKD_ERR_NOMEM, "journal: out of memory");
        }
        j->line = ln;
        j->cap = cap;
    }
    if (2 * (j->n + 1) > j->nslot && !rehash(j, j->nslot ? 2 * j->nslot : 128)) {
        cJSON_Delete(r);
        return vkd_fail(err, VKD_ERR_NOMEM, "journal: out of memory");
    }
    j->rec[j->n] = r;
    j->line[j->n] = line;
    size_t mask = j->nslot - 1, s = hash_str(id) & mask;
    while (j->slot[s]) {
        j->probes++;
        s = (s + 1) & mask;
    }
    j->slot[s] = ++j->n;
    return VKD_OK;
}

vkd_result jr_reorder(jr_journal *j, const size_t *idx, size_t n, vkd_error *err) {
    cJSON **rec = malloc((j->cap ? j->cap : 1) * sizeof *rec);
    size_t *ln = malloc((j->cap ? j->cap : 1) * sizeof *ln);
    bool *placed = calloc(j->n ? j->n : 1, sizeof *placed);
    if (!rec || !ln || !placed) {
        free(rec);
        free(ln);
        free(placed);
        return vkd_fail(err, VKD_ERR_NOMEM, "journal: out of memory");
    }
    size_t w = 0;
    for (size_t q = 0; q < n; q++) {
        if (idx[q] >= j->n || placed[idx[q]]) continue;
        placed[idx[q]] = true;
        rec[w] = j->rec[idx[q]];
        ln[w++] = j->line[idx[q]];
    }
    for (size_t k = 0; k < j->n; k++)
        if (!placed[k]) {
            rec[w] = j->rec[k];
            ln[w++] = j->line[k];
        }
    free(placed);
    free(j->rec);
    free(j->line);
    j->rec = rec;
    j->line = ln;
    if (j->nslot && !rehash(j, j->nslot)) return vkd_fail(err, VKD_ERR_NOMEM, "journal: out of memory");
    return VKD_OK;
}

void jr_free(jr_journal *j) {
    for (size_t k = 0; k < j->n; k++) cJSON_Delete(j->rec[k]);
    free(j->rec);
    free(j->line);
    free(j->slot);
    memset(j, 0, sizeof *j);
}

char *jr_exact_ints(const char *t, size_t n) {
    char *o = malloc(2 * n + 1); /* at most two quotes per literal of >= 16 characters */
    if (!o) return NULL;
    size_t w = 0;
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        char ch = t[i];
        if (in_str) {
            o[w++] = ch;
            if (ch == '\\' && i + 1 < n) o[w++] = t[++i];
            else if (ch == '"') in_str = false;
            i++;
            continue;
        }
        if (ch == '"') {
            in_str = true;
            o[w++] = t[i++];
            continue;
        }
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            size_t e = i + (ch == '-'), digits = 0;
            while (e < n && t[e] >= '0' && t[e] <= '9') e++, digits++;
            bool integer = e >= n || !strchr(".eE", t[e]);
            if (integer && digits > 15) {
                o[w++] = '"';
                memcpy(o + w, t + i, e - i);
                w += e - i;
                o[w++] = '"';
                i = e;
                continue;
            }
            while (e < n && strchr("0123456789.eE+-", t[e]) && t[e]) e++; /* a fraction, exponent */
            while (i < e) o[w++] = t[i++];
            continue;
        }
        o[w++] = t[i++];
    }
    o[w] = 0;
    return o;
}

vkd_result jr_parse(const char *path, const char *text, size_t n, jr_check_fn check, const jr_limits *lim,
                    jr_journal *j, size_t *keep, vkd_error *err) {
    *keep = 0;
    size_t line = 1;
    for (size_t s = 0; s < n; line++) {
        const char *e = memchr(text + s, '\n', n - s);
        if (!e) break; /* torn last line: not a record */
        size_t len = (size_t)(e - (text + s));
        if (memchr(text + s, 0, len))
            return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu: a NUL byte: not a journal record", path, line);
        char *x = jr_exact_ints(text + s, len);
        if (!x) return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
        cJSON *r = cJSON_Parse(x);
        free(x);
        if (!cJSON_IsObject(r)) {
            cJSON_Delete(r);
            return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu: not a journal record (expected one JSON object)", path,
                            line);
        }
        const char *id = rec_id(r);
        char msg[256] = "";
        if (!id || !id[0]) snprintf(msg, sizeof msg, "field 'id': expected a non-empty string");
        else if (check && !check(r, lim, msg, sizeof msg) && !msg[0]) snprintf(msg, sizeof msg, "invalid record");
        if (msg[0]) {
            cJSON_Delete(r);
            return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu: %s", path, line, msg);
        }
        long at = jr_find(j, id);
        if (at >= 0) {
            vkd_fail(err, VKD_ERR_FORMAT,
                     "%s:%zu: id '%.200s' repeats line %zu (was the folder written by two runs at once?)", path,
                     line, id, j->line[at]);
            cJSON_Delete(r);
            return VKD_ERR_FORMAT;
        }
        vkd_result rc = jr_add(j, r, line, err);
        if (rc) return rc;
        s = (size_t)(e - text) + 1;
        *keep = s;
    }
    return VKD_OK;
}

void jr_fmt_double(char *buf, size_t cap, double v) {
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return;
    }
}
