/* tokenizer.h: Hugging Face byte-level BPE tokenizers (Qwen2/Qwen3, Llama 3) read from a
 * model folder's tokenizer.json and tokenizer_config.json.
 *
 * Semantics follow the Rust `tokenizers` library, which is the gold reference in the tests:
 * added tokens are matched first (leftmost-longest, honouring single_word/lstrip/rstrip/
 * normalized), then the normalizer (NFC ...), the pre-tokenizer chain (Split with the file's
 * own regex, ByteLevel), BPE merges by rank (ignore_merges: whole-word vocabulary hit
 * first), and the post-processor (TemplateProcessing adds <|begin_of_text|> for Llama 3).
 *
 * Input text must be valid UTF-8: invalid input is rejected with VKD_ERR_INVALID naming the
 * byte offset (the reference binding only accepts valid Unicode strings, so there is no
 * reference behaviour to copy). Decoding is lossy like the reference: byte sequences that
 * are not valid UTF-8 (a token sequence cut inside a character) come out as U+FFFD.
 *
 * A vkd_tok is read-only after loading except for its word cache and regex scratch, so one
 * tokenizer must not encode from two threads at once (decode and the lookups are safe). */
#ifndef VKD_TOKENIZER_H
#define VKD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkd_base.h"

typedef struct vkd_tok vkd_tok;

/* Loads model_dir/tokenizer.json and, when present, model_dir/tokenizer_config.json
 * (special token names, chat template). */
vkd_result vkd_tok_load(const char *model_dir, vkd_tok **out, vkd_error *err);
/* Same from memory: config may be NULL (config_len 0). name is used in error messages. */
vkd_result vkd_tok_load_mem(const char *json, size_t json_len, const char *config,
                            size_t config_len, const char *name, vkd_tok **out, vkd_error *err);
void vkd_tok_free(vkd_tok *tok);

/* Encodes len bytes of UTF-8 text. add_special applies the post-processor (BOS for Llama 3).
 * Special tokens written in the text (<|im_start|>) are always recognised, as in the
 * reference. *ids is malloc'd (free() it); it is non-NULL even when *n is 0. */
vkd_result vkd_tok_encode(vkd_tok *tok, const char *text, size_t len, bool add_special,
                          int32_t **ids, size_t *n, vkd_error *err);

/* Decodes ids to UTF-8 (malloc'd, NUL-terminated, *len excludes the NUL). skip_special
 * drops added tokens marked special. An id outside the vocabulary is VKD_ERR_RANGE. */
vkd_result vkd_tok_decode(const vkd_tok *tok, const int32_t *ids, size_t n, bool skip_special,
                          char **text, size_t *len, vkd_error *err);

/* Incremental decoding for generation: push one id at a time, get back the text it
 * completes. Never emits part of a UTF-8 character; bytes that cannot start or continue a
 * valid character are emitted as U+FFFD, so the concatenation of every chunk plus the
 * flush equals vkd_tok_decode of the whole sequence. */
typedef struct vkd_tok_stream vkd_tok_stream;
vkd_result vkd_tok_stream_new(const vkd_tok *tok, bool skip_special, vkd_tok_stream **out,
                              vkd_error *err);
/* *text points into the stream and stays valid until the next call on it. */
vkd_result vkd_tok_stream_push(vkd_tok_stream *s, int32_t id, const char **text, size_t *len,
                               vkd_error *err);
/* Emits what is held back (an incomplete character becomes U+FFFD) and resets the stream. */
void vkd_tok_stream_flush(vkd_tok_stream *s, const char **text, size_t *len);
void vkd_tok_stream_free(vkd_tok_stream *s);

/* Vocabulary. Token strings are in the file's own spelling (byte-level: "Ġthe"). */
size_t vkd_tok_vocab_size(const vkd_tok *tok);      /* 1 + the largest id */
int32_t vkd_tok_token_to_id(const vkd_tok *tok, const char *token); /* -1 when absent */
const char *vkd_tok_id_to_token(const vkd_tok *tok, int32_t id);   /* NULL when absent */
bool vkd_tok_is_special(const vkd_tok *tok, int32_t id);
/* Special ids from tokenizer_config.json; -1 when the model has none. */
int32_t vkd_tok_bos_id(const vkd_tok *tok);
int32_t vkd_tok_eos_id(const vkd_tok *tok);
int32_t vkd_tok_pad_id(const vkd_tok *tok);
/* Their strings ("" when absent) and the chat_template (NULL when absent), as the
 * template renderer needs them. */
const char *vkd_tok_bos_token(const vkd_tok *tok);
const char *vkd_tok_eos_token(const vkd_tok *tok);
const char *vkd_tok_chat_template(const vkd_tok *tok);

/* Checks that len bytes are valid UTF-8 (no overlongs, surrogates or values > U+10FFFF);
 * on failure stores the offset of the first bad byte. */
bool vkd_utf8_valid(const char *s, size_t len, size_t *bad_offset);

#endif
