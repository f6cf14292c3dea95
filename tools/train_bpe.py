#!/usr/bin/env python3
"""train_bpe.py: train a small byte-level BPE tokenizer in the exact Hugging Face layout.

    tools/train_bpe.py --corpus corpus.txt --vocab 4096 --out DIR

Writes DIR/tokenizer.json (Qwen2/Qwen3 structure: NFC normalizer, the Qwen split regex,
ByteLevel pre-tokenizer and decoder, a BPE model with merges) and DIR/tokenizer_config.json
(Qwen2Tokenizer, ChatML chat template, <|im_end|> as eos, <|endoftext|> as pad). The vocab
is the 256 byte symbols of the GPT-2 byte-to-unicode map, then one token per merge, then the
three special tokens <|endoftext|>, <|im_start|>, <|im_end|>.

Training follows the classic algorithm (Sennrich et al.; what HF `tokenizers`' BpeTrainer
does): pre-tokenize with the same regex the runtime uses, count words, repeatedly merge the
most frequent adjacent pair (ties broken by the pair's symbols, so the result is
deterministic). Python's `re` has no \\p{L}; the scanner below implements the Qwen pattern
by hand with unicodedata categories. Pure standard library: a build-time tool, never a
runtime dependency.
"""
import argparse
import collections
import heapq
import json
import os
import sys
import unicodedata

QWEN_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
              " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def is_l(c):
    return unicodedata.category(c).startswith("L")


def is_n(c):
    return unicodedata.category(c).startswith("N")


def is_s(c):
    return c.isspace()


def split_words(text):
    """The Qwen split regex, alternative by alternative, leftmost-first like the regex."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        # 1. contractions, case-insensitive
        if c == "'":
            low = text[i:i + 3].lower()
            m = next((s for s in ("'re", "'ve", "'ll") if low.startswith(s)), None) or \
                next((s for s in ("'s", "'t", "'m", "'d") if low.startswith(s)), None)
            if m:
                out.append(text[i:i + len(m)])
                i += len(m)
                continue
        # 2. [^\r\n\p{L}\p{N}]?\p{L}+
        j = i
        if c not in "\r\n" and not is_l(c) and not is_n(c) and i + 1 < n and is_l(text[i + 1]):
            j = i + 1
        if is_l(text[j]):
            k = j
            while k < n and is_l(text[k]):
                k += 1
            out.append(text[i:k])
            i = k
            continue
        # 3. a single number character
        if is_n(c):
            out.append(c)
            i += 1
            continue
        # 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        j = i + 1 if c == " " else i
        k = j
        while k < n and not is_s(text[k]) and not is_l(text[k]) and not is_n(text[k]):
            k += 1
        if k > j:
            while k < n and text[k] in "\r\n":
                k += 1
            out.append(text[i:k])
            i = k
            continue
        # 5. \s*[\r\n]+ (the last newline run inside the whitespace run)
        k = i
        while k < n and is_s(text[k]):
            k += 1
        last_nl = max((p for p in range(i, k) if text[p] in "\r\n"), default=-1)
        if last_nl >= 0:
            e = last_nl + 1
            out.append(text[i:e])
            i = e
            continue
        # 6. \s+(?!\S): whitespace not followed by a non-space (keep the last one for a word)
        if k < n and k - i > 1:
            out.append(text[i:k - 1])
            i = k - 1
            continue
        # 7. \s+
        out.append(text[i:k])
        i = k
    return out


def train(words, vocab_size, b2u):
    """words: Counter of byte-level strings. Returns the merges list [(a, b), ...]."""
    n_merges = vocab_size - 256 - len(SPECIALS)
    if n_merges < 0:
        sys.exit(f"train_bpe: --vocab {vocab_size} is below 256 bytes + {len(SPECIALS)} specials")
    seqs = [list(w) for w in words]
    freq = [words[w] for w in words]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for wi, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += freq[wi]
            where[(a, b)].add(wi)
    # max-heap of (count, pair) with lazy deletion: an entry is live while its count is
    # the pair's current count; ties go to the lexicographically smaller pair
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        negc, (a, b) = heapq.heappop(heap)
        if pairs.get((a, b), 0) != -negc:
            continue
        if -negc < 2:
            break
        merges.append((a, b))
        ab = a + b
        touched = set()
        for wi in list(where[(a, b)]):
            s, f = seqs[wi], freq[wi]
            for x, y in zip(s, s[1:]):
                pairs[(x, y)] -= f
                touched.add((x, y))
            t, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    t.append(ab)
                    i += 2
                else:
                    t.append(s[i])
                    i += 1
            seqs[wi] = t
            for x, y in zip(t, t[1:]):
                pairs[(x, y)] += f
                where[(x, y)].add(wi)
                touched.add((x, y))
        for p in touched:
            c = pairs.get(p, 0)
            if c <= 0:
                pairs.pop(p, None)
            elif p != (a, b):
                heapq.heappush(heap, (-c, p))
        pairs.pop((a, b), None)
        where.pop((a, b), None)
    return merges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, nargs="+")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    b2u = bytes_to_unicode()
    words = collections.Counter()
    for path in args.corpus:
        with open(path, encoding="utf-8") as f:
            text = unicodedata.normalize("NFC", f.read())
        for w in split_words(text):
            words["".join(b2u[b] for b in w.encode("utf-8"))] += 1
    merges = train(words, args.vocab, b2u)
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = []
    for s in SPECIALS:
        added.append({"id": len(vocab) + len(added), "content": s, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_SPLIT}, "behavior": "Isolated",
             "invert": False}, bl]},
        "post_processor": bl, "decoder": bl,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": [[a, b] for a, b in merges]},
    }
    cfg = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "errors": "replace",
        "model_max_length": 4096, "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    os.makedirs(args.out, exist_ok=True)
    for name, obj in (("tokenizer.json", tok), ("tokenizer_config.json", cfg)):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        os.replace(tmp, os.path.join(args.out, name))
    print(f"train_bpe: {len(words)} distinct words, {len(merges)} merges, vocab {len(vocab) + len(added)}"
          f" -> {args.out}")


if __name__ == "__main__":
    main()
