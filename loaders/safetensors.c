/* safetensors.c: header validation for .safetensors files, mmapped access, and model folders
 * (single file or index + lazily opened shards). See safetensors.h for the checks made. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonutil.h"

#define INDEX_FILE "model.safetensors.index.json"
#define SINGLE_FILE "model.safetensors"
#define INDEX_MAX_BYTES (64u << 20)

/* ---- name -> index hash table (open addressing, FNV-1a) ---- */

typedef struct name_table {
    size_t cap;        /* power of two, > 2 * count */
    size_t *slots;     /* index + 1, 0 = empty */
} name_table;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool table_init(name_table *t, size_t count) {
    size_t cap = 16;
    while (cap < 2 * count + 1) cap *= 2;
    t->cap = cap;
    t->slots = calloc(cap, sizeof *t->slots);
    return t->slots != NULL;
}

/* Inserts index i under names[i]; returns the index already stored under that name, or
 * (size_t)-1 when the name was new. */
static size_t table_insert(name_table *t, const char *const *names, size_t i) {
    size_t mask = t->cap - 1, h = (size_t)fnv1a(names[i]) & mask;
    while (t->slots[h]) {
        size_t j = t->slots[h] - 1;
        if (strcmp(names[j], names[i]) == 0) return j;
        h = (h + 1) & mask;
    }
    t->slots[h] = i + 1;
    return (size_t)-1;
}

static size_t table_find(const name_table *t, const char *const *names, const char *name) {
    if (!t->slots) return (size_t)-1;
    size_t mask = t->cap - 1, h = (size_t)fnv1a(name) & mask;
    while (t->slots[h]) {
        size_t j = t->slots[h] - 1;
        if (strcmp(names[j], name) == 0) return j;
        h = (h + 1) & mask;
    }
    return (size_t)-1;
}

/* ---- single files ---- */

struct vkd_st_file {
    char *name;
    const uint8_t *base;    /* whole file (mapping or borrowed buffer) */
    size_t size;
    bool mapped;
    size_t count;
    vkd_st_tensor *tensors; /* sorted by offset */
    const char **names;     /* names[i] == tensors[i].name, for the table */
    name_table table;
    size_t n_meta;
    char **meta_keys, **meta_values;
    char *arena;            /* all name strings */
};

void vkd_st_shape_str(const vkd_st_tensor *t, char *buf, size_t cap) {
    size_t o = 0;
    if (cap == 0) return;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int d = 0; d < t->rank && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

void vkd_st_close(vkd_st_file *f) {
    if (!f) return;
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->names);
    free(f->table.slots);
    free(f->arena);
    free(f->name);
    free(f);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const vkd_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Reads one header entry (obj, named name) into t; data_size is the data section length. */
static vkd_result parse_entry(const char *file, const char *name, const cJSON *obj,
                              size_t data_size, vkd_st_tensor *t, vkd_error *err) {
    if (!cJSON_IsObject(obj))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': expected an object, got %s", file,
                        name, vkd_json_type_name(obj));
    const char *dup = vkd_json_duplicate_key(obj);
    if (dup)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", file,
                        name, dup);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(dt))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': field 'dtype': expected a string, got %s",
                        file, name, vkd_json_type_name(dt));
    if (!vkd_dtype_parse(dt->valuestring, &t->dtype))
        return vkd_fail(err, VKD_ERR_UNSUPPORTED,
                        "%s: tensor '%s': field 'dtype': unknown dtype '%.40s' (expected one of "
                        "BF16 F16 F32 F64 I8 U8 I16 U16 I32 U32 I64 U64 BOOL)", file, name,
                        dt->valuestring);
    if (!cJSON_IsArray(shape))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': field 'shape': expected an array, got %s",
                        file, name, vkd_json_type_name(shape));
    int rank = cJSON_GetArraySize(shape);
    if (rank > VKD_ST_MAX_RANK)
        return vkd_fail(err, VKD_ERR_UNSUPPORTED, "%s: tensor '%s': field 'shape': rank %d exceeds %d",
                        file, name, rank, VKD_ST_MAX_RANK);
    t->rank = rank;
    size_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        int64_t v;
        if (!vkd_json_int(e, 0, (int64_t)VKD_JSON_MAX_EXACT_INT, &v))
            return vkd_fail(err, VKD_ERR_FORMAT,
                            "%s: tensor '%s': field 'shape': entry %d: expected a non-negative "
                            "integer, got %s", file, name, d, vkd_json_type_name(e));
        t->shape[d] = v;
        if (!vkd_mul_size(numel, (size_t)v, &numel)) overflow = true;
    }
    char shp[200];
    vkd_st_shape_str(t, shp, sizeof shp);
    size_t esize = vkd_dtype_size(t->dtype);
    if (overflow || !vkd_mul_size(numel, esize, &t->nbytes))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': shape %s x %s overflows the address space",
                        file, name, shp, vkd_dtype_name(t->dtype));
    t->numel = numel;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: tensor '%s': field 'data_offsets': expected an array of two integers, got %s",
                        file, name, vkd_json_type_name(offs));
    int64_t begin, end;
    if (!vkd_json_int(offs->child, 0, (int64_t)VKD_JSON_MAX_EXACT_INT, &begin) ||
        !vkd_json_int(offs->child->next, 0, (int64_t)VKD_JSON_MAX_EXACT_INT, &end))
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: tensor '%s': field 'data_offsets': expected two non-negative integers",
                        file, name);
    if (begin > end)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld]: begin > end",
                        file, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] run past the data section "
                        "(%zu bytes)", file, name, (long long)begin, (long long)end, data_size);
    if ((uint64_t)(end - begin) != t->nbytes)
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] do not match shape %s x %s "
                        "(%zu bytes)", file, name, (long long)begin, (long long)end, shp,
                        vkd_dtype_name(t->dtype), t->nbytes);
    t->offset = (size_t)begin; /* relative for now; made absolute by the caller */
    return VKD_OK;
}

/* Copies __metadata__ (an object of strings) into f. */
static vkd_result parse_metadata(vkd_st_file *f, const cJSON *meta, vkd_error *err) {
    if (!cJSON_IsObject(meta))
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: field '__metadata__': expected an object, got %s",
                        f->name, vkd_json_type_name(meta));
    const char *dup = vkd_json_duplicate_key(meta);
    if (dup)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: field '__metadata__': key '%s' appears twice",
                        f->name, dup);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    f->meta_keys = calloc(n ? n : 1, sizeof *f->meta_keys);
    f->meta_values = calloc(n ? n : 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values)
        return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory reading __metadata__", f->name);
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return vkd_fail(err, VKD_ERR_FORMAT,
                            "%s: field '__metadata__': key '%s': expected a string, got %s",
                            f->name, e->string, vkd_json_type_name(e));
        f->meta_keys[f->n_meta] = strdup(e->string);
        f->meta_values[f->n_meta] = strdup(e->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory reading __metadata__", f->name);
    }
    return VKD_OK;
}

/* Validates the header of the file image f->base[0, f->size) and fills f. */
static vkd_result parse_image(vkd_st_file *f, vkd_error *err) {
    const char *file = f->name;
    if (f->size == 0)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: empty file (expected an 8-byte header length)", file);
    if (f->size < 8)
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: file is %zu bytes, too short for the 8-byte header length", file, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > VKD_ST_MAX_HEADER)
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit",
                        file, (unsigned long long)hlen, VKD_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return vkd_fail(err, VKD_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%zu bytes)", file,
                        (unsigned long long)hlen, f->size);
    if (hlen < 2 || f->base[8] != '{')
        return vkd_fail(err, VKD_ERR_FORMAT, "%s: header is not a JSON object (must start with '{')",
                        file);
    size_t data_start = 8 + (size_t)hlen, data_size = f->size - data_start;

    char where[300];
    snprintf(where, sizeof where, "%s: header", file);
    cJSON *root = NULL;
    vkd_result r = vkd_json_parse((const char *)f->base + 8, (size_t)hlen, where, &root, err);
    if (r != VKD_OK) return r;
    if (!cJSON_IsObject(root)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: header: expected a JSON object, got %s", file,
                     vkd_json_type_name(root));
        goto done;
    }
    const char *dup = vkd_json_duplicate_key(root);
    if (dup) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", file, dup);
        goto done;
    }
    size_t count = 0, name_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        count++;
        name_bytes += strlen(e->string) + 1;
    }
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    f->names = calloc(count ? count : 1, sizeof *f->names);
    f->arena = malloc(name_bytes ? name_bytes : 1);
    if (!f->tensors || !f->names || !f->arena || !table_init(&f->table, count)) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory for %zu tensors", file, count);
        goto done;
    }
    char *ap = f->arena;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            r = parse_metadata(f, e, err);
            if (r != VKD_OK) goto done;
            continue;
        }
        vkd_st_tensor *t = &f->tensors[f->count];
        size_t len = strlen(e->string) + 1;
        memcpy(ap, e->string, len);
        t->name = ap;
        ap += len;
        r = parse_entry(file, t->name, e, data_size, t, err);
        if (r != VKD_OK) goto done;
        f->count++;
    }
    qsort(f->tensors, f->count, sizeof *f->tensors, cmp_tensor_offset);
    /* sorted by begin: a tensor overlaps an earlier one exactly when it starts before the
     * furthest end seen so far (empty tensors occupy no bytes and overlap nothing) */
    const vkd_st_tensor *far = NULL;
    for (size_t i = 0; i < f->count; i++) {
        const vkd_st_tensor *b = &f->tensors[i];
        if (!b->nbytes) continue;
        if (far && b->offset < far->offset + far->nbytes) {
            r = vkd_fail(err, VKD_ERR_FORMAT,
                         "%s: tensors '%s' (data_offsets [%zu, %zu]) and '%s' (data_offsets "
                         "[%zu, %zu]) overlap", file, far->name, far->offset,
                         far->offset + far->nbytes, b->name, b->offset, b->offset + b->nbytes);
            goto done;
        }
        if (!far || b->offset + b->nbytes > far->offset + far->nbytes) far = b;
    }
    for (size_t i = 0; i < f->count; i++) {
        vkd_st_tensor *t = &f->tensors[i];
        t->data = f->base + data_start + t->offset;
        t->offset += data_start;
        f->names[i] = t->name;
        table_insert(&f->table, f->names, i);
    }
    r = VKD_OK;
done:
    cJSON_Delete(root);
    return r;
}

static vkd_st_file *file_new(const char *name) {
    vkd_st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->name = strdup(name ? name : "<memory>");
    if (!f->name) {
        free(f);
        return NULL;
    }
    return f;
}

vkd_result vkd_st_parse(const void *buf, size_t n, const char *name, vkd_st_file **out,
                        vkd_error *err) {
    *out = NULL;
    vkd_st_file *f = file_new(name);
    if (!f) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    f->base = buf;
    f->size = n;
    vkd_result r = parse_image(f, err);
    if (r != VKD_OK) {
        vkd_st_close(f);
        return r;
    }
    *out = f;
    return VKD_OK;
}

vkd_result vkd_st_open(const char *path, vkd_st_file **out, vkd_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vkd_fail(err, VKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vkd_fail(err, VKD_ERR_IO, "%s: not a regular file", path);
    }
    vkd_st_file *f = file_new(path);
    if (!f) {
        close(fd);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            vkd_st_close(f);
            return vkd_fail(err, VKD_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        f->base = p;
        f->mapped = true;
    }
    close(fd);
    vkd_result r = parse_image(f, err);
    if (r != VKD_OK) {
        vkd_st_close(f);
        return r;
    }
    *out = f;
    return VKD_OK;
}

const char *vkd_st_file_name(const vkd_st_file *f) { return f->name; }
size_t vkd_st_count(const vkd_st_file *f) { return f->count; }

const vkd_st_tensor *vkd_st_tensor_at(const vkd_st_file *f, size_t i) {
    return i < f->count ? &f->tensors[i] : NULL;
}

const vkd_st_tensor *vkd_st_find(const vkd_st_file *f, const char *name) {
    size_t i = table_find(&f->table, f->names, name);
    return i == (size_t)-1 ? NULL : &f->tensors[i];
}

size_t vkd_st_metadata_count(const vkd_st_file *f) { return f->n_meta; }

void vkd_st_metadata_at(const vkd_st_file *f, size_t i, const char **key, const char **value) {
    *key = i < f->n_meta ? f->meta_keys[i] : NULL;
    *value = i < f->n_meta ? f->meta_values[i] : NULL;
}

const char *vkd_st_metadata_get(const vkd_st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- model folders ---- */

struct vkd_st_model {
    char *dir;
    bool has_index;
    size_t n_shards;
    char **shard_names;
    vkd_st_file **shards;           /* NULL until opened */
    size_t count;
    char **names;                   /* sorted */
    size_t *shard_of;
    const vkd_st_tensor **tensors;  /* filled when the shard is opened */
    name_table table;
};

void vkd_st_model_close(vkd_st_model *m) {
    if (!m) return;
    for (size_t s = 0; s < m->n_shards; s++) {
        vkd_st_close(m->shards ? m->shards[s] : NULL);
        free(m->shard_names[s]);
    }
    for (size_t i = 0; i < m->count; i++) free(m->names[i]);
    free(m->shard_names);
    free(m->shards);
    free(m->names);
    free(m->shard_of);
    free(m->tensors);
    free(m->table.slots);
    free(m->dir);
    free(m);
}

static char *join_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fills m's name list (sorted), the table, and per-name shard indices.
 * pairs[2k] = tensor name, pairs[2k+1] = shard name; shards are m->shard_names (sorted). */
static vkd_result model_set_names(vkd_st_model *m, const char **tnames, const char **tshards,
                                  size_t n, vkd_error *err) {
    m->names = calloc(n ? n : 1, sizeof *m->names);
    m->shard_of = calloc(n ? n : 1, sizeof *m->shard_of);
    m->tensors = calloc(n ? n : 1, sizeof *m->tensors);
    if (!m->names || !m->shard_of || !m->tensors || !table_init(&m->table, n))
        return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory for %zu tensor names", m->dir, n);
    for (size_t i = 0; i < n; i++) {
        /* names are stored with their shard name appended after the NUL, so sorting the
         * names keeps the pairing */
        size_t a = strlen(tnames[i]) + 1, b = strlen(tshards[i]) + 1;
        m->names[i] = malloc(a + b);
        if (!m->names[i])
            return vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory for tensor names", m->dir);
        memcpy(m->names[i], tnames[i], a);
        memcpy(m->names[i] + a, tshards[i], b);
        m->count = i + 1;
    }
    qsort(m->names, n, sizeof *m->names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        const char *shard = m->names[i] + strlen(m->names[i]) + 1;
        char **hit = bsearch(&shard, m->shard_names, m->n_shards, sizeof *m->shard_names, cmp_str);
        m->shard_of[i] = hit ? (size_t)(hit - m->shard_names) : 0;
        size_t prev = table_insert(&m->table, (const char *const *)m->names, i);
        if (prev != (size_t)-1)
            return vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' is listed twice", m->dir,
                            m->names[i]);
    }
    return VKD_OK;
}

/* Reads dir/model.safetensors.index.json (text buf) into m. */
static vkd_result model_read_index(vkd_st_model *m, const char *path, const char *buf, size_t n,
                                   vkd_error *err) {
    cJSON *root = NULL;
    const char **tn = NULL, **ts = NULL;
    vkd_result r = vkd_json_parse(buf, n, path, &root, err);
    if (r != VKD_OK) return r;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field 'weight_map': expected an object, got %s",
                     path, cJSON_IsObject(root) ? vkd_json_type_name(wm) : "no object");
        goto done;
    }
    const char *dup = vkd_json_duplicate_key(wm);
    if (dup) {
        r = vkd_fail(err, VKD_ERR_FORMAT, "%s: field 'weight_map': tensor '%s' is listed twice",
                     path, dup);
        goto done;
    }
    size_t count = (size_t)cJSON_GetArraySize(wm);
    tn = calloc(count ? count : 1, sizeof *tn);
    ts = calloc(count ? count : 1, sizeof *ts);
    m->shard_names = calloc(count ? count : 1, sizeof *m->shard_names);
    if (!tn || !ts || !m->shard_names) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t i = 0;
    for (const cJSON *e = wm->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || !vkd_json_plain_filename(e->valuestring)) {
            r = vkd_fail(err, VKD_ERR_FORMAT,
                         "%s: field 'weight_map': tensor '%s': expected a shard file name in "
                         "the same folder, got %s", path, e->string,
                         cJSON_IsString(e) ? "a path" : vkd_json_type_name(e));
            goto done;
        }
        tn[i] = e->string;
        ts[i] = e->valuestring;
    }
    /* unique sorted shard list */
    const char **sorted = malloc((count ? count : 1) * sizeof *sorted);
    if (!sorted) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(sorted, ts, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, cmp_str);
    for (i = 0; i < count; i++) {
        if (m->n_shards && strcmp(m->shard_names[m->n_shards - 1], sorted[i]) == 0) continue;
        m->shard_names[m->n_shards] = strdup(sorted[i]);
        if (!m->shard_names[m->n_shards]) {
            free(sorted);
            r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        m->n_shards++;
    }
    free(sorted);
    /* every shard file must exist now, not on first use */
    for (size_t s = 0; s < m->n_shards; s++) {
        char *p = join_path(m->dir, m->shard_names[s]);
        struct stat st;
        bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
        if (!ok) {
            const char *who = "?";
            for (i = 0; i < count; i++)
                if (strcmp(ts[i], m->shard_names[s]) == 0) { who = tn[i]; break; }
            r = vkd_fail(err, VKD_ERR_IO,
                         "%s: tensor '%s' is mapped to shard '%s', which does not exist in %s",
                         path, who, m->shard_names[s], m->dir);
            goto done;
        }
    }
    m->shards = calloc(m->n_shards ? m->n_shards : 1, sizeof *m->shards);
    if (!m->shards) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    r = model_set_names(m, tn, ts, count, err);
done:
    free(tn);
    free(ts);
    cJSON_Delete(root);
    return r;
}

/* Opens shard s and checks it against the index: each of its tensors is mapped to it, and
 * each name mapped to it is present. */
static vkd_result model_open_shard(vkd_st_model *m, size_t s, vkd_error *err) {
    if (m->shards[s]) return VKD_OK;
    char *p = join_path(m->dir, m->shard_names[s]);
    if (!p) return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    vkd_st_file *f = NULL;
    vkd_result r = vkd_st_open(p, &f, err);
    free(p);
    if (r != VKD_OK) return r;
    if (m->has_index) {
        for (size_t k = 0; k < f->count; k++) {
            const char *name = f->tensors[k].name;
            size_t i = table_find(&m->table, (const char *const *)m->names, name);
            if (i == (size_t)-1) {
                r = vkd_fail(err, VKD_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                             m->shard_names[s], name, INDEX_FILE);
                goto fail;
            }
            if (m->shard_of[i] != s) {
                r = vkd_fail(err, VKD_ERR_FORMAT,
                             "%s: tensor '%s' is also in this shard, but %s maps it to '%s' "
                             "(a tensor must be in exactly one shard)", m->shard_names[s], name,
                             INDEX_FILE, m->shard_names[m->shard_of[i]]);
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < m->count; i++) {
        if (m->shard_of[i] != s) continue;
        m->tensors[i] = vkd_st_find(f, m->names[i]);
        if (!m->tensors[i]) {
            r = vkd_fail(err, VKD_ERR_FORMAT, "%s: maps tensor '%s' to '%s', which does not contain it",
                         INDEX_FILE, m->names[i], m->shard_names[s]);
            goto fail;
        }
    }
    m->shards[s] = f;
    return VKD_OK;
fail:
    for (size_t i = 0; i < m->count; i++)
        if (m->shard_of[i] == s) m->tensors[i] = NULL;
    vkd_st_close(f);
    return r;
}

vkd_result vkd_st_model_open(const char *dir, vkd_st_model **out, vkd_error *err) {
    *out = NULL;
    vkd_st_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
    }
    vkd_result r;
    char *ipath = join_path(dir, INDEX_FILE);
    char *buf = NULL;
    size_t n = 0;
    bool missing = false;
    if (!ipath) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
        goto done;
    }
    r = vkd_json_read_file(ipath, INDEX_MAX_BYTES, &buf, &n, &missing, err);
    if (r == VKD_OK) {
        m->has_index = true;
        r = model_read_index(m, ipath, buf, n, err);
        goto done;
    }
    if (!missing) goto done;
    /* no index: a single model.safetensors */
    m->shard_names = calloc(1, sizeof *m->shard_names);
    m->shards = calloc(1, sizeof *m->shards);
    if (!m->shard_names || !m->shards || !(m->shard_names[0] = strdup(SINGLE_FILE))) {
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
        goto done;
    }
    m->n_shards = 1;
    char *spath = join_path(dir, SINGLE_FILE);
    struct stat st;
    if (!spath || stat(spath, &st) != 0) {
        free(spath);
        r = vkd_fail(err, VKD_ERR_IO, "%s: no %s and no %s", dir, SINGLE_FILE, INDEX_FILE);
        goto done;
    }
    vkd_st_file *f = NULL;
    r = vkd_st_open(spath, &f, err);
    free(spath);
    if (r != VKD_OK) goto done;
    m->shards[0] = f;
    const char **tn = calloc(f->count ? f->count : 1, sizeof *tn);
    const char **ts = calloc(f->count ? f->count : 1, sizeof *ts);
    if (!tn || !ts) {
        free(tn);
        free(ts);
        r = vkd_fail(err, VKD_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < f->count; i++) {
        tn[i] = f->tensors[i].name;
        ts[i] = SINGLE_FILE;
    }
    r = model_set_names(m, tn, ts, f->count, err);
    free(tn);
    free(ts);
    if (r == VKD_OK)
        for (size_t i = 0; i < m->count; i++) m->tensors[i] = vkd_st_find(f, m->names[i]);
done:
    free(ipath);
    free(buf);
    if (r != VKD_OK) {
        vkd_st_model_close(m);
        return r;
    }
    *out = m;
    return VKD_OK;
}

size_t vkd_st_model_count(const vkd_st_model *m) { return m->count; }
const char *vkd_st_model_name_at(const vkd_st_model *m, size_t i) {
    return i < m->count ? m->names[i] : NULL;
}
size_t vkd_st_model_shard_of(const vkd_st_model *m, size_t i) {
    return i < m->count ? m->shard_of[i] : (size_t)-1;
}
size_t vkd_st_model_index(const vkd_st_model *m, const char *name) {
    return table_find(&m->table, (const char *const *)m->names, name);
}
size_t vkd_st_model_shard_count(const vkd_st_model *m) { return m->n_shards; }
const char *vkd_st_model_shard_name(const vkd_st_model *m, size_t s) {
    return s < m->n_shards ? m->shard_names[s] : NULL;
}
bool vkd_st_model_has_index(const vkd_st_model *m) { return m->has_index; }

vkd_result vkd_st_model_get_at(vkd_st_model *m, size_t i, const vkd_st_tensor **out,
                               vkd_error *err) {
    *out = NULL;
    if (i >= m->count)
        return vkd_fail(err, VKD_ERR_RANGE, "%s: tensor index %zu out of range (%zu tensors)",
                        m->dir, i, m->count);
    if (!m->tensors[i]) {
        vkd_result r = model_open_shard(m, m->shard_of[i], err);
        if (r != VKD_OK) return r;
    }
    *out = m->tensors[i];
    return VKD_OK;
}

vkd_result vkd_st_model_get(vkd_st_model *m, const char *name, const vkd_st_tensor **out,
                            vkd_error *err) {
    size_t i = vkd_st_model_index(m, name);
    if (i == (size_t)-1) {
        *out = NULL;
        return vkd_fail(err, VKD_ERR_INVALID, "%s: no tensor '%s'", m->dir, name);
    }
    return vkd_st_model_get_at(m, i, out, err);
}

vkd_result vkd_st_model_load_all(vkd_st_model *m, vkd_error *err) {
    for (size_t s = 0; s < m->n_shards; s++) {
        vkd_result r = model_open_shard(m, s, err);
        if (r != VKD_OK) return r;
    }
    return VKD_OK;
}

uint64_t vkd_st_model_loaded_bytes(const vkd_st_model *m) {
    uint64_t total = 0;
    for (size_t i = 0; i < m->count; i++)
        if (m->tensors[i]) total += m->tensors[i]->nbytes;
    return total;
}
