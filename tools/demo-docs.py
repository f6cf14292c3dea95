#!/usr/bin/env python3
"""demo-docs.py AUSTEN KJV > corpus.jsonl: the demo pair's training documents, one JSON
object {"text": ...} a line (vkdraft train-target's .jsonl input).
demo-docs.py --prompts N AUSTEN KJV > prompts.jsonl: N prompts {"prompt": ...} for
train-draft: the first 6-12 words of documents spread over both books (every 7th document,
alternating between the books).

Documents: Austen's paragraphs (her text is wrapped; blank lines end a paragraph) and runs of
four consecutive Bible verses (one verse a line). Every second document of at least 16 words
is a chat turn in the tokenizer's ChatML template: the user gives its first 6-12 words, the
assistant continues the passage, so the model answers chat-rendered prompts (vkdraft spec and
train-draft render prompts with the chat template) in the same English."""
import json
import sys


def austen_paragraphs(path):
    para = []
    for line in open(path, encoding="utf-8"):
        words = line.split()
        if words:
            para.extend(words)
        elif para:
            yield para
            para = []
    if para:
        yield para


def verse_runs(path, run=4):
    verses = [l.split() for l in open(path, encoding="utf-8") if l.strip()]
    for i in range(0, len(verses), run):
        yield [w for v in verses[i:i + run] for w in v]


def prompts(count, austen, kjv):
    a = [w for w in austen_paragraphs(austen) if len(w) >= 16][::7]
    b = [w for w in verse_runs(kjv) if len(w) >= 16][::7]
    picked = [d for pair in zip(a, b) for d in pair][:count]
    if len(picked) < count:
        sys.exit(f"demo-docs: only {len(picked)} prompts available, {count} asked")
    for i, words in enumerate(picked):
        print(json.dumps({"prompt": " ".join(words[:6 + i % 7])}))


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--prompts":
        prompts(int(args[1]), args[2], args[3])
        return
    if len(args) != 2:
        sys.exit("usage: demo-docs.py [--prompts N] AUSTEN_TXT KJV_TXT > FILE.jsonl")
    n = 0
    for words in list(austen_paragraphs(args[0])) + list(verse_runs(args[1])):
        n += 1
        if n % 2 == 0 and len(words) >= 16:
            k = 6 + n % 7
            text = ("<|im_start|>user\n" + " ".join(words[:k]) + "<|im_end|>\n<|im_start|>assistant\n"
                    + " ".join(words[k:]))
        else:
            text = " ".join(words)
        print(json.dumps({"text": text}))


if __name__ == "__main__":
    main()
