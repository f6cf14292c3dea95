/* dataset.h: evaluation datasets as prompt / answer / id records.
 *
 * Files: JSONL (one JSON object per line, blank lines skipped) or a JSON array of objects
 * (MATH-500). The format is taken from the first non-blank byte ('[' = array). Each record
 * gives a prompt (a string; the turn-th entry of a list of strings, as MT-Bench's "turns";
 * or a chat: a list of {role, content} messages), an optional answer and an id.
 *
 * Field names: options win; else a preset chosen by name or from the file name
 *   gsm8k      question / answer                 (id: record number)
 *   math500    prompt / answer / id
 *   humaneval  prompt / canonical_solution / task_id
 *   mt-bench   turns[turn] / (no answer) / question_id
 *   cl-bench   messages / (no answer) / metadata.task_id  (the id field may be a dotted path)
 * else automatic: the first of messages, prompt, question, turns for the prompt; answer and
 * the first of id, task_id, question_id when present. CL-bench records (messages with a system
 * turn and the context, plus rubrics and metadata) are chats; their rubrics and metadata are
 * kept through vkd_ds_options.fields. Text must be valid UTF-8. A bad record
 * is reported as "<file>:<line>: field '<name>': expected ..., got ...". */
#ifndef VKD_DATASET_H
#define VKD_DATASET_H

#include <stdbool.h>
#include <stddef.h>

#include "vkd_base.h"

typedef struct vkd_ds_message {
    char *role;
    char *content;
} vkd_ds_message;

typedef struct vkd_ds_record {
    char *id;                  /* the id field's text, or the 0-based record number */
    char *prompt;              /* NULL when the record is a chat (messages) */
    vkd_ds_message *messages;
    size_t n_messages;
    char *answer;              /* NULL when the dataset has none */
    size_t line;               /* 1-based line where the record starts */
    char **fields;             /* per vkd_ds_options.fields entry: the value's JSON text (a string
                                * keeps its quotes), NULL when the record lacks it; NULL when none asked */
} vkd_ds_record;

typedef struct vkd_ds {
    char *name;                /* file name given at load */
    size_t count;
    vkd_ds_record *records;
    size_t nfields;            /* entries of each record's fields */
} vkd_ds;

/* Zero-initialised options mean: preset from the file name, else automatic fields. */
typedef struct vkd_ds_options {
    const char *preset;        /* "gsm8k", "math500", "humaneval", "mt-bench", "cl-bench" */
    const char *prompt_field;
    const char *answer_field;  /* "" = ignore answers */
    const char *id_field;
    int turn;                  /* entry of a list-of-strings prompt (MT-Bench turn), >= 0 */
    const char *const *fields; /* other fields each record keeps (record.fields): a top-level name
                                * or a dotted path into objects ("metadata.context_category"; a
                                * name that holds a dot as it is wins) */
    size_t nfields;
} vkd_ds_options;
/* The value at a field name or dotted path of a JSON object, as vkd_ds_options.fields reads it
 * (a const cJSON *), or NULL. */
const void *vkd_ds_field_at(const void *object, const char *path);

/* Fills the field names of a known dataset; false when the name is unknown. */
bool vkd_ds_preset(const char *name, vkd_ds_options *opt);
/* Preset name guessed from a file name ("gsm8k_test.jsonl" -> "gsm8k"), or NULL. */
const char *vkd_ds_preset_for_file(const char *path);

vkd_result vkd_ds_load(const char *path, const vkd_ds_options *opt, vkd_ds **out,
                       vkd_error *err);
/* Same over n bytes in memory; name is used in messages and for the preset guess. */
vkd_result vkd_ds_parse(const char *buf, size_t n, const char *name, const vkd_ds_options *opt,
                        vkd_ds **out, vkd_error *err);
void vkd_ds_free(vkd_ds *ds);

#endif
