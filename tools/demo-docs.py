#!/usr/bin/env python3
"""demo-docs.py AUSTEN KJV > corpus.jsonl: the demo pair's training documents, one JSON
object {"text": ...} a line (vkdraft train-target's .jsonl input).
demo-docs.py --prompts N AUSTEN KJV > prompts.jsonl: N prompts {"prompt": ...} for
train-draft, alternating between two kinds: the first 6-12 words of a document (spread over
both books, alternating between them) and a question asked in the books (a sentence of 5-24
words ending with '?', alternating between the books), so that the draft also learns the
target's answers to question-shaped prompts. --part 2: other documents and the questions
part 1 left, for a second training stage.
demo-docs.py --passages N AUSTEN KJV > passages.jsonl: N records {"question", "answer"}: a
document's first words and the rest of it, the gold answers of the demo pair's diagnose and
probe examples.

Documents: Austen's paragraphs (her text is wrapped; blank lines end a paragraph) and runs of
four consecutive Bible verses (one verse a line). Every second document of at least 16 words
is a chat turn in the tokenizer's ChatML template: the user gives its first 6-12 words, the
assistant continues the passage, so the model answers chat-rendered prompts (vkdraft spec and
train-draft render prompts with the chat template) in the same English."""
import json
import re
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


def questions(text, stop):
    """Sentences of 5-24 words that end with a question mark (a character's or a verse's
    question), whitespace folded; `stop` holds the characters that end a sentence."""
    flat = re.sub(r"\s+", " ", text)
    found = re.findall(r"[A-Z][^" + stop + r"]{10,160}\?", flat)
    return [q for q in found if 5 <= len(q.split()) <= 24]


def spread(items, n):
    """n items evenly spaced over the list"""
    if len(items) < n:
        sys.exit(f"demo-docs: only {len(items)} prompts of a kind available, {n} asked")
    return [items[i * len(items) // n] for i in range(n)]


def prompts(count, austen, kjv, part=1):
    """count prompts alternating between the two kinds: a passage's first 6-12 words
    (alternating between the books) and a question asked in the books (alternating too).
    part 2: other documents (every 7th from the 4th on, not from the 1st) and the questions
    part 1 of the same count did not take, so that a second training stage sees new prompts."""
    a = [w for w in austen_paragraphs(austen) if len(w) >= 16][3 if part == 2 else 0::7]
    b = [w for w in verse_runs(kjv) if len(w) >= 16][3 if part == 2 else 0::7]
    n_open, n_q = (count + 1) // 2, count // 2
    opening = spread([d for pair in zip(a, b) for d in pair], n_open)
    qa = questions(open(austen, encoding="utf-8").read(), '.!?"')
    qk = questions(open(kjv, encoding="utf-8").read(), ".!?:;")
    half = (n_q + 1) // 2
    if part == 2:
        qa = [q for i, q in enumerate(qa) if i not in {j * len(qa) // half for j in range(half)}]
        qk = [q for i, q in enumerate(qk) if i not in {j * len(qk) // half for j in range(half)}]
    asked = [q for pair in zip(spread(qa, half), spread(qk, half)) for q in pair][:n_q]
    for i in range(count):
        if i % 2 == 0:
            words = opening[i // 2]
            text = " ".join(words[:6 + (i // 2) % 7])
        else:
            text = asked[i // 2]
        print(json.dumps({"prompt": text}))


def passages(count, austen, kjv):
    """count records {"question": a document's first 6-12 words, "answer": the rest of it}
    (documents of 24-120 words, spread over both books, alternating between them): the gold
    answers of the demo pair's diagnose and probe examples"""
    a = [w for w in austen_paragraphs(austen) if 24 <= len(w) <= 120]
    b = [w for w in verse_runs(kjv) if 24 <= len(w) <= 120]
    picked = [d for pair in zip(spread(a, (count + 1) // 2), spread(b, (count + 1) // 2)) for d in pair][:count]
    for i, words in enumerate(picked):
        k = 6 + i % 7
        print(json.dumps({"question": " ".join(words[:k]), "answer": " ".join(words[k:])}))


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] in ("--prompts", "--passages"):
        (prompts if args[0] == "--prompts" else passages)(int(args[1]), args[2], args[3])
        return
    if len(args) == 6 and args[0] == "--prompts" and args[2] == "--part" and args[3] in ("1", "2"):
        prompts(int(args[1]), args[4], args[5], int(args[3]))
        return
    if len(args) != 2:
        sys.exit("usage: demo-docs.py [--prompts N [--part 1|2] | --passages N] AUSTEN_TXT KJV_TXT > FILE.jsonl")
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
