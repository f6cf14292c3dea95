/* safetensors.h: read-only access to .safetensors files and Hugging Face model folders.
 *
 * File format: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
 * then the data section; offsets are relative to its start. Every offset, shape and size
 * is checked (overflow-safe) before a pointer is handed out: offsets inside the data
 * section, begin <= end, end - begin == product(shape) * dtype size, no two tensors
 * overlapping, rank <= VKD_ST_MAX_RANK, no duplicate names. Files are mmapped read-only;
 * tensor data is never copied.
 *
 * A model folder holds model.safetensors, or model.safetensors.index.json ("weight_map":
 * tensor name -> shard file) plus the shards. Shards are opened on first access; opening
 * one checks it against the index (each name mapped to it is present, each tensor in it
 * is mapped to it). Nothing here prints or exits. */
#ifndef VKD_SAFETENSORS_H
#define VKD_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

#define VKD_ST_MAX_RANK 8
#define VKD_ST_MAX_HEADER (100u * 1000u * 1000u) /* bytes; the Rust reader's limit */

typedef struct vkd_st_tensor {
    const char *name;
    vkd_dtype dtype;
    int rank;                         /* 0 for a scalar (one element) */
    int64_t shape[VKD_ST_MAX_RANK];   /* row-major, outermost first */
    uint64_t numel;                   /* product of shape (1 for a scalar) */
    size_t nbytes;                    /* numel * dtype size */
    size_t offset;                    /* from the start of the file (8 + N + begin) */
    const void *data;                 /* nbytes of little-endian data in the mapping */
} vkd_st_tensor;

typedef struct vkd_st_file vkd_st_file;

/* Maps path read-only and validates its header. */
vkd_result vkd_st_open(const char *path, vkd_st_file **out, vkd_error *err);
/* Same over n bytes in memory (borrowed: buf must outlive the result). name is used in
 * error messages. This is the fuzzing entry point. */
vkd_result vkd_st_parse(const void *buf, size_t n, const char *name, vkd_st_file **out,
                        vkd_error *err);
void vkd_st_close(vkd_st_file *f);

const char *vkd_st_file_name(const vkd_st_file *f); /* path or name given at open */
size_t vkd_st_count(const vkd_st_file *f);
/* Tensors in the order they appear in the data section (ascending offset). */
const vkd_st_tensor *vkd_st_tensor_at(const vkd_st_file *f, size_t i);
const vkd_st_tensor *vkd_st_find(const vkd_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ entries (string -> string), in file order. */
size_t vkd_st_metadata_count(const vkd_st_file *f);
void vkd_st_metadata_at(const vkd_st_file *f, size_t i, const char **key, const char **value);
const char *vkd_st_metadata_get(const vkd_st_file *f, const char *key); /* NULL if absent */

/* "[2560, 151936]" into buf (always NUL-terminated). */
void vkd_st_shape_str(const vkd_st_tensor *t, char *buf, size_t cap);

/* ---- model folders ---- */
typedef struct vkd_st_model vkd_st_model;

/* Opens dir: reads the index (if any) and checks that every shard it names exists, or
 * opens model.safetensors. Shards are mapped lazily. */
vkd_result vkd_st_model_open(const char *dir, vkd_st_model **out, vkd_error *err);
void vkd_st_model_close(vkd_st_model *m);

size_t vkd_st_model_count(const vkd_st_model *m);             /* tensors in the model */
const char *vkd_st_model_name_at(const vkd_st_model *m, size_t i); /* sorted by name */
size_t vkd_st_model_shard_of(const vkd_st_model *m, size_t i);     /* shard index of tensor i */
/* Index of name in [0, count), or (size_t)-1 when the model has no such tensor. */
size_t vkd_st_model_index(const vkd_st_model *m, const char *name);
size_t vkd_st_model_shard_count(const vkd_st_model *m);
const char *vkd_st_model_shard_name(const vkd_st_model *m, size_t s); /* file name in dir */
bool vkd_st_model_has_index(const vkd_st_model *m);

/* Tensor i or the tensor called name, opening its shard if needed. An absent name is
 * VKD_ERR_INVALID. The pointer stays valid until vkd_st_model_close. */
vkd_result vkd_st_model_get_at(vkd_st_model *m, size_t i, const vkd_st_tensor **out,
                               vkd_error *err);
vkd_result vkd_st_model_get(vkd_st_model *m, const char *name, const vkd_st_tensor **out,
                            vkd_error *err);
/* Opens every shard (and so checks all of them against the index). */
vkd_result vkd_st_model_load_all(vkd_st_model *m, vkd_error *err);
/* Bytes of tensor data summed over the tensors of the opened shards. */
uint64_t vkd_st_model_loaded_bytes(const vkd_st_model *m);

#endif
