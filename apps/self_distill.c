/* self_distill.c: target responses for prompts without one, cached (self_distill.h). */
#include "self_distill.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exp.h"
#include "vkd_generate.h"

static uint64_t fnv_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) h = (h ^ (uint8_t)((uint32_t)ids[i] >> (8 * b))) * 0x100000001b3ull;
    return h;
}

/* The cached response of p (max_new), or false. cache: the parsed lines. */
static bool from_cache(cJSON *const *lines, size_t nl, sd_prompt *p, uint32_t max_new, const char *hex) {
    for (size_t i = 0; i < nl; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(lines[i], "file");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(lines[i], "line");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(lines[i], "prompt_fnv1a64");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(lines[i], "max_new");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(lines[i], "response");
        if (!cJSON_IsString(f) || strcmp(f->valuestring, p->file) || !cJSON_IsNumber(l) || l->valuedouble != (double)p->line ||
            !cJSON_IsString(h) || strcmp(h->valuestring, hex) || !cJSON_IsNumber(m) || m->valuedouble != (double)max_new ||
            !cJSON_IsArray(r))
            continue;
        int n = cJSON_GetArraySize(r);
        p->response = malloc(((size_t)n + 1) * sizeof *p->response);
        if (!p->response) cli_fatal("out of host memory");
        p->n_response = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, r) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 2147483647.0)
                cli_fatal("self-distill cache: %s line %zu: response ids must be non-negative integers", p->file, p->line);
            p->response[p->n_response++] = (int32_t)x->valuedouble;
        }
        return true;
    }
    return false;
}

void sd_generate(const char *cmd, vkd_target *t, vkd_rec *rec, const int32_t *stops, uint32_t nstop, uint32_t capacity,
                 const char *cache_path, sd_prompt *p, size_t n, uint32_t max_new, bool quiet) {
    /* the cache as left by an earlier run (complete lines only) */
    size_t len = 0, nl = 0;
    char *text = exp_slurp(cache_path, &len);
    cJSON **lines = NULL;
    for (char *s = text, *e; s && s < text + len && (e = strchr(s, '\n')); s = e + 1) {
        *e = 0;
        cJSON *j = cJSON_Parse(s);
        if (!j) cli_fatal("%s: line %zu is not JSON (delete the file to generate the responses again)", cache_path, nl + 1);
        cJSON **g = realloc(lines, (nl + 1) * sizeof *lines);
        if (!g) cli_fatal("out of host memory");
        lines = g;
        lines[nl++] = j;
    }
    /* a torn last line (no newline) goes, so that appending starts on a fresh line */
    size_t keep = 0; /* the parse above turned each complete line's newline into a NUL */
    for (size_t i = len; text && i > 0; i--)
        if (text[i - 1] == '\n' || text[i - 1] == 0) {
            keep = i;
            break;
        }
    if (text && keep < len && truncate(cache_path, (off_t)keep))
        cli_fatal("%s: cannot drop the torn last line (%s)", cache_path, strerror(errno));
    FILE *out = fopen(cache_path, "a");
    if (!out) cli_fatal("%s: cannot append (%s)", cache_path, strerror(errno));
    size_t reused = 0, made = 0;
    double t0 = vkd_now();
    for (size_t i = 0; i < n; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv_ids(p[i].ids, p[i].n));
        if (from_cache(lines, nl, &p[i], max_new, hex)) {
            reused++;
            continue;
        }
        uint32_t room = p[i].n < capacity ? capacity - (uint32_t)p[i].n : 0, k = room < max_new ? room : max_new;
        p[i].response = NULL;
        p[i].n_response = 0;
        if (k > 0) {
            vkd_generate_options go = {.max_new_tokens = k, .stop_ids = stops, .nstop = nstop};
            vkd_generate_result res;
            vkd_error err = {0};
            if (vkd_generate(t, rec, p[i].ids, (uint32_t)p[i].n, &go, &res, &err))
                cli_fatal("%s: self-distill: %s line %zu: %s", cmd, p[i].file, p[i].line, err.msg);
            p[i].response = res.ids;
            p[i].n_response = res.n;
        }
        exp_buf b = {0};
        exp_buf_printf(&b, "{\"file\": ");
        cJSON *fs = cJSON_CreateString(p[i].file);
        char *fq = fs ? cJSON_PrintUnformatted(fs) : NULL; /* JSON-escaped */
        cJSON_Delete(fs);
        if (!fq) cli_fatal("out of host memory");
        exp_buf_printf(&b, "%s, \"line\": %zu, \"prompt_fnv1a64\": \"%s\", \"max_new\": %u, \"response\": [", fq,
                       p[i].line, hex, max_new);
        free(fq);
        for (uint32_t j = 0; j < p[i].n_response; j++) exp_buf_printf(&b, "%s%d", j ? ", " : "", p[i].response[j]);
        exp_buf_printf(&b, "]}\n");
        if (fwrite(b.s, 1, b.n, out) != b.n || fflush(out) || fsync(fileno(out)))
            cli_fatal("%s: write failed (%s)", cache_path, strerror(errno));
        exp_buf_free(&b);
        made++;
        if (!quiet)
            fprintf(stderr, "%s%s: self-distill: %zu/%zu responses (%.0fs)%s", isatty(2) ? "\r" : "", cmd, i + 1, n,
                    vkd_now() - t0, isatty(2) ? "  " : "\n");
    }
    if (fclose(out)) cli_fatal("%s: close failed (%s)", cache_path, strerror(errno));
    if (!quiet)
        fprintf(stderr, "%s%s: self-distill: %zu responses generated, %zu from %s\n", isatty(2) ? "\n" : "", cmd, made,
                reused, cache_path);
    for (size_t i = 0; i < nl; i++) cJSON_Delete(lines[i]);
    free(lines);
    free(text);
}
