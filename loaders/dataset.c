/* dataset.c: JSONL / JSON-array dataset reader with per-record field mapping. */
#include "dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonutil.h"

#define DATASET_MAX_BYTES ((size_t)1 << 31)

static const struct {
    const char *name, *prompt, *answer, *id;
} presets[] = {
    {"gsm8k", "question", "answer", NULL},
    {"math500", "prompt", "answer", "id"},
    {"humaneval", "prompt", "canonical_solution", "task_id"},
    {"mt-bench", "turns", "", "question_id"},
    {"cl-bench", "messages", "", "metadata.task_id"},
};

bool vkd_ds_preset(const char *name, vkd_ds_options *opt) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(name, presets[i].name)) {
            opt->preset = presets[i].name;
            opt->prompt_field = presets[i].prompt;
            opt->answer_field = presets[i].answer;
            opt->id_field = presets[i].id;
            return true;
        }
    return false;
}

const char *vkd_ds_preset_for_file(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char low[256];
    size_t i = 0;
    for (; base[i] && i + 1 < sizeof low; i++)
        low[i] = (char)(base[i] >= 'A' && base[i] <= 'Z' ? base[i] - 'A' + 'a' : base[i]);
    low[i] = 0;
    if (strstr(low, "gsm8k")) return "gsm8k";
    if (strstr(low, "math500") || strstr(low, "math-500") || strstr(low, "math_500")) return "math500";
    if (strstr(low, "humaneval")) return "humaneval";
    if (strstr(low, "mt_bench") || strstr(low, "mt-bench") || strstr(low, "mtbench")) return "mt-bench";
    if (strstr(low, "cl_bench") || strstr(low, "cl-bench") || strstr(low, "clbench")) return "cl-bench";
    return NULL;
}

void vkd_ds_free(vkd_ds *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->count; i++) {
        vkd_ds_record *r = &ds->records[i];
        free(r->id);
        free(r->prompt);
        free(r->answer);
        for (size_t k = 0; k < r->n_messages; k++) {
            free(r->messages[k].role);
            free(r->messages[k].content);
        }
        free(r->messages);
        for (size_t k = 0; r->fields && k < ds->nfields; k++) free(r->fields[k]);
        free(r->fields);
    }
    free(ds->records);
    free(ds->name);
    free(ds);
}

const void *vkd_ds_field_at(const void *object, const char *path) {
    const cJSON *o = object;
    if (!cJSON_IsObject(o) || !path || !path[0]) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path);
    if (v) return v;
    const char *dot = strchr(path, '.');
    if (!dot || dot == path) return NULL;
    for (const cJSON *c = o->child; c; c = c->next) /* the member named by the text before the dot */
        if (c->string && strlen(c->string) == (size_t)(dot - path) && !memcmp(c->string, path, (size_t)(dot - path)))
            return vkd_ds_field_at(c, dot + 1);
    return NULL;
}

typedef struct parser {
    const char *name;
    vkd_ds_options f;      /* resolved field names */
    vkd_ds *ds;
    size_t cap;
    vkd_error *err;
} parser;

/* Text of a scalar: a string, or a number written as an integer when it is one. */
static char *scalar_text(const cJSON *v) {
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    char b[64];
    double d = v->valuedouble;
    if (d == floor(d) && fabs(d) < 9.2e18)
        snprintf(b, sizeof b, "%lld", (long long)d);
    else
        snprintf(b, sizeof b, "%.17g", d);
    return strdup(b);
}

static bool is_scalar(const cJSON *v) {
    return cJSON_IsString(v) || (cJSON_IsNumber(v) && isfinite(v->valuedouble));
}

static vkd_result fail_field(parser *p, size_t line, const char *key, const char *expected,
                             const cJSON *got) {
    return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: field '%s': expected %s, got %s", p->name,
                    line, key, expected, vkd_json_type_name(got));
}

static vkd_result nomem(parser *p) {
    return vkd_fail(p->err, VKD_ERR_NOMEM, "%s: out of memory", p->name);
}

/* The prompt of record o: a string, a list of strings (entry f.turn), or messages. */
static vkd_result read_prompt(parser *p, const cJSON *o, size_t line, vkd_ds_record *r) {
    const char *key = p->f.prompt_field;
    const cJSON *v = NULL;
    if (key) {
        v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (!v)
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: field '%s' is missing (expected the "
                            "prompt)", p->name, line, key);
    } else {
        static const char *const autos[] = {"messages", "prompt", "question", "turns"};
        for (size_t i = 0; i < 4 && !v; i++)
            if ((v = cJSON_GetObjectItemCaseSensitive(o, autos[i]))) key = autos[i];
        if (!v)
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: no prompt field (looked for "
                            "'messages', 'prompt', 'question', 'turns'; name one explicitly)",
                            p->name, line);
    }
    if (cJSON_IsString(v)) {
        r->prompt = strdup(v->valuestring);
        return r->prompt ? VKD_OK : nomem(p);
    }
    const char *expected = "a string, a list of strings or a list of {role, content} messages";
    if (!cJSON_IsArray(v) || !v->child) return fail_field(p, line, key, expected, v);
    if (cJSON_IsString(v->child)) {
        int n = cJSON_GetArraySize(v);
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e)) return fail_field(p, line, key, "a list of strings", e);
        if (p->f.turn >= n)
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: field '%s': turn %d requested but the "
                            "list has %d entries", p->name, line, key, p->f.turn, n);
        r->prompt = strdup(cJSON_GetArrayItem(v, p->f.turn)->valuestring);
        return r->prompt ? VKD_OK : nomem(p);
    }
    if (!cJSON_IsObject(v->child)) return fail_field(p, line, key, expected, v->child);
    size_t n = (size_t)cJSON_GetArraySize(v);
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return nomem(p);
    for (const cJSON *m = v->child; m; m = m->next) {
        if (!cJSON_IsObject(m)) return fail_field(p, line, key, "a list of {role, content} messages", m);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        char where[160];
        if (!cJSON_IsString(role)) {
            snprintf(where, sizeof where, "%.100s[%zu].role", key, r->n_messages);
            return fail_field(p, line, where, "a string", role);
        }
        if (!cJSON_IsString(content)) {
            snprintf(where, sizeof where, "%.100s[%zu].content", key, r->n_messages);
            return fail_field(p, line, where, "a string", content);
        }
        vkd_ds_message *msg = &r->messages[r->n_messages++];
        msg->role = strdup(role->valuestring);
        msg->content = strdup(content->valuestring);
        if (!msg->role || !msg->content) return nomem(p);
    }
    return VKD_OK;
}

static vkd_result read_record(parser *p, const cJSON *o, size_t line) {
    if (!cJSON_IsObject(o))
        return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: expected a JSON object, got %s", p->name,
                        line, vkd_json_type_name(o));
    vkd_ds *ds = p->ds;
    if (ds->count == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        vkd_ds_record *nr = realloc(ds->records, cap * sizeof *nr);
        if (!nr) return nomem(p);
        ds->records = nr;
        p->cap = cap;
    }
    vkd_ds_record *r = &ds->records[ds->count++];
    memset(r, 0, sizeof *r);
    r->line = line;
    vkd_result res = read_prompt(p, o, line, r);
    if (res != VKD_OK) return res;

    const char *akey = p->f.answer_field;
    if (!akey || akey[0]) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, akey ? akey : "answer");
        if (akey && !a)
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: field '%s' is missing (expected the "
                            "answer)", p->name, line, akey);
        if (a) {
            if (!is_scalar(a)) return fail_field(p, line, akey ? akey : "answer", "a string", a);
            if (!(r->answer = scalar_text(a))) return nomem(p);
        }
    }

    if (p->f.nfields) {
        if (!(r->fields = calloc(p->f.nfields, sizeof *r->fields))) return nomem(p);
        for (size_t k = 0; k < p->f.nfields; k++) {
            const cJSON *v = vkd_ds_field_at(o, p->f.fields[k]);
            if (v && !(r->fields[k] = cJSON_PrintUnformatted(v))) return nomem(p);
        }
    }

    const char *ikey = p->f.id_field;
    const cJSON *id = NULL;
    if (ikey) {
        id = vkd_ds_field_at(o, ikey);
        if (!id)
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: field '%s' is missing (expected the "
                            "record id)", p->name, line, ikey);
    } else {
        static const char *const autos[] = {"id", "task_id", "question_id"};
        for (size_t i = 0; i < 3 && !id; i++)
            if ((id = cJSON_GetObjectItemCaseSensitive(o, autos[i]))) ikey = autos[i];
    }
    if (id) {
        if (!is_scalar(id)) return fail_field(p, line, ikey, "a string or a number", id);
        r->id = scalar_text(id);
    } else {
        char b[32];
        snprintf(b, sizeof b, "%zu", ds->count - 1);
        r->id = strdup(b);
    }
    return r->id ? VKD_OK : nomem(p);
}

static size_t skip_ws(const char *b, size_t i, size_t n, size_t *line) {
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) {
        if (b[i] == '\n') (*line)++;
        i++;
    }
    return i;
}

static vkd_result parse_jsonl(parser *p, const char *b, size_t n) {
    size_t line = 1, i = 0;
    while (i < n) {
        const char *nl = memchr(b + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - b) : n, s = i, dummy = 0;
        s = skip_ws(b, s, end, &dummy);
        if (s < end) {
            const char *stop = NULL;
            cJSON *o = cJSON_ParseWithLengthOpts(b + s, end - s, &stop, 0);
            if (!o) {
                size_t col = stop && stop >= b + s ? (size_t)(stop - (b + i)) + 1 : 1;
                return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: invalid JSON at column %zu",
                                p->name, line, col);
            }
            size_t after = skip_ws(b, (size_t)(stop - b), end, &dummy);
            vkd_result r = VKD_OK;
            if (after < end)
                r = vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: unexpected data after the JSON "
                             "object at column %zu (one object per line)", p->name, line,
                             after - i + 1);
            else
                r = read_record(p, o, line);
            cJSON_Delete(o);
            if (r != VKD_OK) return r;
        }
        i = end + 1;
        line++;
    }
    return VKD_OK;
}

static vkd_result parse_array(parser *p, const char *b, size_t n, size_t i, size_t line) {
    i++; /* '[' */
    i = skip_ws(b, i, n, &line);
    if (i < n && b[i] == ']') {
        i++;
    } else {
        for (;;) {
            if (i >= n)
                return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: the array is not closed", p->name, line);
            const char *stop = NULL;
            cJSON *o = cJSON_ParseWithLengthOpts(b + i, n - i, &stop, 0);
            if (!o)
                return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: invalid JSON in record %zu",
                                p->name, line, p->ds->count);
            vkd_result r = read_record(p, o, line);
            cJSON_Delete(o);
            if (r != VKD_OK) return r;
            for (size_t k = i; k < (size_t)(stop - b); k++) line += b[k] == '\n';
            i = skip_ws(b, (size_t)(stop - b), n, &line);
            if (i < n && b[i] == ',') {
                i = skip_ws(b, i + 1, n, &line);
                continue;
            }
            if (i < n && b[i] == ']') {
                i++;
                break;
            }
            return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: expected ',' or ']' after record %zu",
                            p->name, line, p->ds->count - 1);
        }
    }
    i = skip_ws(b, i, n, &line);
    if (i < n)
        return vkd_fail(p->err, VKD_ERR_FORMAT, "%s:%zu: unexpected data after the array", p->name, line);
    return VKD_OK;
}

/* Line of the first escaped NUL (\u0000) in a string, or 0. A C string would end there:
 * the prompt or answer would be cut short without a word. */
static size_t nul_escape_line(const char *b, size_t n) {
    size_t line = 1;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\n') line++;
        if (b[i] != '\\') continue;
        size_t k = i; /* a run of backslashes: pairs are escaped backslashes */
        while (k < n && b[k] == '\\') k++;
        if ((k - i) % 2 == 1 && n - k >= 5 && !memcmp(b + k, "u0000", 5)) return line;
        i = k - 1;
    }
    return 0;
}

vkd_result vkd_ds_parse(const char *buf, size_t n, const char *name, const vkd_ds_options *opt,
                        vkd_ds **out, vkd_error *err) {
    *out = NULL;
    vkd_ds_options zero = {0};
    if (!opt) opt = &zero;
    parser p = {.name = name ? name : "<memory>", .err = err};
    size_t nul = nul_escape_line(buf, n);
    if (nul)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu: a string holds a NUL character (\\u0000); vkdraft's "
                        "strings end at NUL, so the text would be cut short", p.name, nul);
    if (opt->turn < 0) return vkd_fail(err, VKD_ERR_INVALID, "%s: turn must be >= 0", p.name);
    const char *preset = opt->preset ? opt->preset : vkd_ds_preset_for_file(p.name);
    if (preset && !vkd_ds_preset(preset, &p.f))
        return vkd_fail(err, VKD_ERR_INVALID, "unknown dataset preset '%.60s' (expected gsm8k, "
                        "math500, humaneval, mt-bench or cl-bench)", preset);
    if (opt->prompt_field) p.f.prompt_field = opt->prompt_field;
    if (opt->answer_field) p.f.answer_field = opt->answer_field;
    if (opt->id_field) p.f.id_field = opt->id_field;
    p.f.turn = opt->turn;
    p.f.fields = opt->fields;
    p.f.nfields = opt->nfields;

    size_t bad;
    if (!vkd_json_utf8_valid(buf, n, &bad)) {
        size_t line = 1, col = 1;
        for (size_t k = 0; k < bad; k++) {
            if (buf[k] == '\n') { line++; col = 1; } else col++;
        }
        return vkd_fail(err, VKD_ERR_FORMAT, "%s:%zu: invalid UTF-8 (byte 0x%02x at column %zu)",
                        p.name, line, (unsigned char)buf[bad], col);
    }
    size_t i = 0, line = 1;
    if (n >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) i = 3; /* byte order mark */
    p.ds = calloc(1, sizeof *p.ds);
    if (!p.ds || !(p.ds->name = strdup(p.name))) {
        free(p.ds);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    p.ds->nfields = opt->nfields;
    size_t first = skip_ws(buf, i, n, &line);
    vkd_result r = first < n && buf[first] == '[' ? parse_array(&p, buf, n, first, line)
                                                  : parse_jsonl(&p, buf + i, n - i);
    if (r == VKD_OK && p.ds->count == 0)
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: no records", p.name);
    if (r != VKD_OK) {
        vkd_ds_free(p.ds);
        return r;
    }
    *out = p.ds;
    return VKD_OK;
}

vkd_result vkd_ds_load(const char *path, const vkd_ds_options *opt, vkd_ds **out,
                       vkd_error *err) {
    char *buf;
    size_t n;
    *out = NULL;
    vkd_result r = vkd_json_read_file(path, DATASET_MAX_BYTES, &buf, &n, NULL, err);
    if (r != VKD_OK) return r;
    r = vkd_ds_parse(buf, n, path, opt, out, err);
    free(buf);
    return r;
}
