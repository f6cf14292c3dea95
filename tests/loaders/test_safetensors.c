/* test_safetensors.c: the safetensors reader against files written by an independent
 * writer (tools/st_testgen.py, Python struct/json): every dtype's values read back through
 * the mmapped pointer, metadata, in-memory parsing, single-file and sharded model folders
 * with lazy shard opening, and a hostile corpus (each file rejected with a message naming
 * the problem; never a crash). */
#include <inttypes.h>

#include <cjson/cJSON.h>

#include "ld_util.h"
#include "safetensors.h"

/* Element i of t: floats widened to double, integers printed in decimal into ibuf. */
static bool element(const vkd_st_tensor *t, uint64_t i, double *f, char *ibuf, size_t cap) {
    const uint8_t *p = (const uint8_t *)t->data + i * vkd_dtype_size(t->dtype);
    union { float f32; double f64; uint16_t u16; int8_t i8; uint8_t u8; int16_t i16;
            int32_t i32; uint32_t u32; int64_t i64; uint64_t u64; } v;
    memcpy(&v, p, vkd_dtype_size(t->dtype));
    switch (t->dtype) {
    case VKD_DTYPE_F32: *f = v.f32; return true;
    case VKD_DTYPE_F64: *f = v.f64; return true;
    case VKD_DTYPE_F16: *f = vkd_f16_to_f32(v.u16); return true;
    case VKD_DTYPE_BF16: *f = vkd_bf16_to_f32(v.u16); return true;
    case VKD_DTYPE_I8: snprintf(ibuf, cap, "%d", v.i8); break;
    case VKD_DTYPE_U8: snprintf(ibuf, cap, "%u", v.u8); break;
    case VKD_DTYPE_BOOL: snprintf(ibuf, cap, "%u", v.u8); break;
    case VKD_DTYPE_I16: snprintf(ibuf, cap, "%d", v.i16); break;
    case VKD_DTYPE_U16: snprintf(ibuf, cap, "%u", v.u16); break;
    case VKD_DTYPE_I32: snprintf(ibuf, cap, "%" PRId32, v.i32); break;
    case VKD_DTYPE_U32: snprintf(ibuf, cap, "%" PRIu32, v.u32); break;
    case VKD_DTYPE_I64: snprintf(ibuf, cap, "%" PRId64, v.i64); break;
    case VKD_DTYPE_U64: snprintf(ibuf, cap, "%" PRIu64, v.u64); break;
    default: break;
    }
    return false;
}

/* Compares tensor t with its manifest description d; returns the number of mismatches. */
static int check_tensor(const char *where, const vkd_st_tensor *t, const cJSON *d) {
    int bad = 0;
    const char *dt = cJSON_GetObjectItem(d, "dtype")->valuestring;
    CHECK(strcmp(vkd_dtype_name(t->dtype), dt) == 0, "%s %s: dtype %s, expected %s", where,
          t->name, vkd_dtype_name(t->dtype), dt);
    const cJSON *shape = cJSON_GetObjectItem(d, "shape");
    CHECK(t->rank == cJSON_GetArraySize(shape), "%s %s: rank %d", where, t->name, t->rank);
    uint64_t numel = 1;
    for (int k = 0; k < t->rank && k < cJSON_GetArraySize(shape); k++) {
        int64_t e = (int64_t)cJSON_GetArrayItem(shape, k)->valuedouble;
        CHECK(t->shape[k] == e, "%s %s: dim %d = %lld, expected %lld", where, t->name, k,
              (long long)t->shape[k], (long long)e);
        numel *= (uint64_t)e;
    }
    CHECK(t->numel == numel, "%s %s: numel", where, t->name);
    CHECK(t->nbytes == numel * vkd_dtype_size(t->dtype), "%s %s: nbytes", where, t->name);
    const cJSON *vals = cJSON_GetObjectItem(d, "values");
    CHECK((uint64_t)cJSON_GetArraySize(vals) == numel, "%s %s: manifest values", where, t->name);
    uint64_t i = 0;
    for (const cJSON *v = vals->child; v && i < t->numel; v = v->next, i++) {
        double f;
        char ib[32];
        if (element(t, i, &f, ib, sizeof ib)) {
            if (f != v->valuedouble) bad++;
        } else if (strcmp(ib, v->valuestring) != 0) {
            bad++;
        }
    }
    CHECK(bad == 0, "%s %s: %d of %llu values differ", where, t->name, bad,
          (unsigned long long)numel);
    return bad;
}

static void check_valid_file(const char *dir, const char *fname, const cJSON *desc) {
    char *path = ld_join(dir, fname);
    vkd_error err = {0};
    vkd_st_file *f = NULL;
    vkd_result r = vkd_st_open(path, &f, &err);
    REQUIRE(r == VKD_OK, "open %s: %s", fname, err.msg);
    const cJSON *tensors = cJSON_GetObjectItem(desc, "tensors");
    CHECK(vkd_st_count(f) == (size_t)cJSON_GetArraySize(tensors), "%s: %zu tensors", fname,
          vkd_st_count(f));
    int n = 0;
    for (const cJSON *d = tensors->child; d; d = d->next, n++) {
        const vkd_st_tensor *t = vkd_st_find(f, d->string);
        CHECK(t != NULL, "%s: tensor %s not found", fname, d->string);
        if (t) check_tensor(fname, t, d);
    }
    CHECK(vkd_st_find(f, "nope") == NULL, "%s: found a tensor that does not exist", fname);
    /* enumeration is in data order: offsets strictly follow each other */
    for (size_t i = 1; i < vkd_st_count(f); i++)
        CHECK(vkd_st_tensor_at(f, i)->offset >= vkd_st_tensor_at(f, i - 1)->offset, "order");
    const cJSON *meta = cJSON_GetObjectItem(desc, "metadata");
    CHECK(vkd_st_metadata_count(f) == (size_t)cJSON_GetArraySize(meta), "%s: metadata count", fname);
    for (const cJSON *m = meta->child; m; m = m->next) {
        const char *v = vkd_st_metadata_get(f, m->string);
        CHECK(v && strcmp(v, m->valuestring) == 0, "%s: metadata %s", fname, m->string);
    }
    vkd_st_close(f);

    /* the in-memory entry point gives the same result */
    size_t nb;
    char *buf = ld_read_file(path, &nb);
    r = vkd_st_parse(buf, nb, fname, &f, &err);
    CHECK(r == VKD_OK, "parse %s from memory: %s", fname, err.msg);
    if (r == VKD_OK) {
        for (const cJSON *d = tensors->child; d; d = d->next) {
            const vkd_st_tensor *t = vkd_st_find(f, d->string);
            CHECK(t && (const char *)t->data >= buf && (const char *)t->data + t->nbytes <= buf + nb,
                  "%s: %s points outside the buffer", fname, d->string);
            if (t) check_tensor("memory", t, d);
        }
        vkd_st_close(f);
    }
    free(buf);
    free(path);
    fprintf(stderr, "  valid %s: %d tensors checked value by value\n", fname, n);
}

static void check_model(const char *root, const char *folder, const cJSON *desc) {
    char *dir = ld_join(root, folder);
    vkd_error err = {0};
    vkd_st_model *m = NULL;
    REQUIRE(vkd_st_model_open(dir, &m, &err) == VKD_OK, "model %s: %s", folder, err.msg);
    const cJSON *tensors = cJSON_GetObjectItem(desc, "tensors");
    const cJSON *shards = cJSON_GetObjectItem(desc, "shards");
    size_t n = vkd_st_model_count(m);
    CHECK(n == (size_t)cJSON_GetArraySize(tensors), "%s: %zu tensors", folder, n);
    CHECK(vkd_st_model_shard_count(m) == (size_t)cJSON_GetArraySize(shards), "%s: shards", folder);
    bool sharded = cJSON_GetArraySize(shards) > 1;
    CHECK(vkd_st_model_has_index(m) == sharded, "%s: has_index", folder);
    if (sharded) CHECK(vkd_st_model_loaded_bytes(m) == 0, "%s: shards opened eagerly", folder);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(vkd_st_model_name_at(m, i - 1), vkd_st_model_name_at(m, i)) < 0,
              "%s: names not sorted", folder);
    bool first = true;
    for (const cJSON *d = tensors->child; d; d = d->next) {
        size_t i = vkd_st_model_index(m, d->string);
        CHECK(i != (size_t)-1, "%s: %s missing", folder, d->string);
        if (i == (size_t)-1) continue;
        const char *shard = cJSON_GetObjectItem(d, "shard")->valuestring;
        CHECK(strcmp(vkd_st_model_shard_name(m, vkd_st_model_shard_of(m, i)), shard) == 0,
              "%s: %s in the wrong shard", folder, d->string);
        const vkd_st_tensor *t = NULL;
        CHECK(vkd_st_model_get(m, d->string, &t, &err) == VKD_OK, "%s: get %s: %s", folder,
              d->string, err.msg);
        if (t) check_tensor(folder, t, d);
        if (first && sharded) {
            /* only the first tensor's shard is open now */
            uint64_t shard_bytes = 0;
            for (const cJSON *e = tensors->child; e; e = e->next)
                if (!strcmp(cJSON_GetObjectItem(e, "shard")->valuestring, shard)) {
                    const cJSON *sh = cJSON_GetObjectItem(e, "shape");
                    uint64_t c = 2;
                    for (const cJSON *x = sh->child; x; x = x->next) c *= (uint64_t)x->valuedouble;
                    shard_bytes += c;
                }
            CHECK(vkd_st_model_loaded_bytes(m) == shard_bytes, "%s: lazy open: %llu bytes loaded, "
                  "expected %llu", folder, (unsigned long long)vkd_st_model_loaded_bytes(m),
                  (unsigned long long)shard_bytes);
        }
        first = false;
    }
    const vkd_st_tensor *t = NULL;
    vkd_result r = vkd_st_model_get(m, "model.missing.weight", &t, &err);
    CHECK(r == VKD_ERR_INVALID && strstr(err.msg, "no tensor 'model.missing.weight'"),
          "%s: missing tensor: %s", folder, err.msg);
    CHECK(vkd_st_model_load_all(m, &err) == VKD_OK, "%s: load_all: %s", folder, err.msg);
    vkd_st_model_close(m);
    free(dir);
    fprintf(stderr, "  model %s: %zu tensors in %d shard(s)\n", folder, n, cJSON_GetArraySize(shards));
}

static void check_hostile(const char *dir, const cJSON *list) {
    int n = 0;
    for (const cJSON *h = list->child; h; h = h->next, n++) {
        const char *file = cJSON_GetObjectItem(h, "file")->valuestring;
        const char *expect = cJSON_GetObjectItem(h, "expect")->valuestring;
        char *path = ld_join(dir, file);
        vkd_error err = {0};
        vkd_st_file *f = NULL;
        vkd_result r = vkd_st_open(path, &f, &err);
        CHECK(r != VKD_OK && f == NULL, "%s: accepted", file);
        CHECK(strstr(err.msg, expect) != NULL, "%s: message '%s' lacks '%s'", file, err.msg, expect);
        CHECK(strstr(err.msg, file) != NULL, "%s: message '%s' does not name the file", file, err.msg);
        size_t nb;
        char *buf = ld_read_file(path, &nb);
        vkd_error err2 = {0};
        r = vkd_st_parse(buf, nb, file, &f, &err2);
        CHECK(r != VKD_OK && strstr(err2.msg, expect), "%s in memory: '%s'", file, err2.msg);
        free(buf);
        free(path);
    }
    fprintf(stderr, "  hostile files: %d rejected with the expected message\n", n);
}

static void check_hostile_models(const char *root, const cJSON *list) {
    int n = 0;
    for (const cJSON *h = list->child; h; h = h->next, n++) {
        const char *folder = cJSON_GetObjectItem(h, "dir")->valuestring;
        const char *expect = cJSON_GetObjectItem(h, "expect")->valuestring;
        bool at_open = !strcmp(cJSON_GetObjectItem(h, "stage")->valuestring, "open");
        char *dir = ld_join(root, folder);
        vkd_error err = {0};
        vkd_st_model *m = NULL;
        vkd_result r = vkd_st_model_open(dir, &m, &err);
        if (at_open) {
            CHECK(r != VKD_OK, "%s: opened", folder);
        } else {
            CHECK(r == VKD_OK, "%s: open failed early: %s", folder, err.msg);
            if (m) {
                r = vkd_st_model_load_all(m, &err);
                CHECK(r != VKD_OK, "%s: loaded", folder);
                /* a failed shard stays closed; asking again gives the same error */
                vkd_error err2 = {0};
                CHECK(vkd_st_model_load_all(m, &err2) != VKD_OK && !strcmp(err.msg, err2.msg),
                      "%s: second load differs: %s", folder, err2.msg);
                vkd_st_model_close(m);
            }
        }
        CHECK(strstr(err.msg, expect) != NULL, "%s: message '%s' lacks '%s'", folder, err.msg, expect);
        free(dir);
    }
    fprintf(stderr, "  hostile model folders: %d rejected with the expected message\n", n);
}

/* Direct in-memory cases that need no file: NULL-free tiny buffers and a header with
 * padding, exercising the exact boundaries. */
static void check_boundaries(void) {
    vkd_error err = {0};
    vkd_st_file *f = NULL;
    /* header exactly fills the file: no data, no tensors */
    const char img[] = "\x08\0\0\0\0\0\0\0{}      ";
    CHECK(vkd_st_parse(img, 16, "b", &f, &err) == VKD_OK, "empty header object: %s", err.msg);
    if (f) {
        CHECK(vkd_st_count(f) == 0, "no tensors");
        vkd_st_close(f);
    }
    /* tensor ending exactly at EOF passes, one byte more fails */
    char buf[64] = {0};
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    size_t hl = strlen(h);
    buf[0] = (char)hl;
    memcpy(buf + 8, h, hl);
    CHECK(vkd_st_parse(buf, 8 + hl + 3, "edge", &f, &err) == VKD_OK, "edge: %s", err.msg);
    if (f) {
        const vkd_st_tensor *t = vkd_st_find(f, "a");
        CHECK(t && t->offset == 8 + hl && t->data == buf + 8 + hl, "edge offset");
        vkd_st_close(f);
    }
    CHECK(vkd_st_parse(buf, 8 + hl + 2, "edge", &f, &err) != VKD_OK &&
          strstr(err.msg, "run past the data section (2 bytes)"), "short by one: %s", err.msg);
    fprintf(stderr, "  boundary cases checked\n");
}

int main(void) {
    char *dir = ld_mkdtemp("st");
    ld_run_generator("tools/st_testgen.py", dir);
    char *mpath = ld_join(dir, "manifest.json");
    char *mtext = ld_read_file(mpath, NULL);
    cJSON *man = cJSON_Parse(mtext);
    REQUIRE(man, "manifest.json does not parse");

    const cJSON *valid = cJSON_GetObjectItem(man, "valid");
    for (const cJSON *v = valid->child; v; v = v->next) check_valid_file(dir, v->string, v);
    const cJSON *models = cJSON_GetObjectItem(man, "models");
    for (const cJSON *v = models->child; v; v = v->next) check_model(dir, v->string, v);
    check_hostile(dir, cJSON_GetObjectItem(man, "hostile"));
    check_hostile_models(dir, cJSON_GetObjectItem(man, "hostile_models"));
    check_boundaries();

    cJSON_Delete(man);
    free(mtext);
    free(mpath);
    ld_rm_rf(dir);
    free(dir);
    return vkd_test_result("test_safetensors");
}
