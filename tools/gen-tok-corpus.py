#!/usr/bin/env python3
"""gen-tok-corpus.py: writes tests/tokenizer/corpus.jsonl, the strings the tokenizer tests
encode with vkdraft and with Hugging Face's `tokenizers` binding. Deterministic (fixed seed):
re-running it gives the same file. One JSON object per line: {"cat": ..., "text": ...}."""
import json
import os
import random
import unicodedata

rng = random.Random(20261123)
out = []


def add(cat, text):
    out.append({"cat": cat, "text": text})


# ASCII prose and punctuation
prose = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done it; we'd known, hadn't we?", "IT'S LOUD AND I'LL SHOUT",
    "Mr. O'Neil's dog's toy.", "don't DON'T Don'T", "a", " ", "  a", "a  ", "end.",
    "Speculative decoding drafts several tokens, then the target verifies them in one pass.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "What is 2+2? Answer: 4.", "(parenthesised) [bracketed] {braced} <angled>",
    "email@example.com http://example.org/path?q=1&r=2#frag", "C'est la vie -- naive cafe",
    "semi;colon:colon,comma.period!bang?question", "$100.00 costs 50% more than #3 @ ~5^2",
    "\"double\" 'single' `back`", "...", "--", "!!!", "?!", "a.b.c.d", "x=y+z*2/3-1",
]
for p in prose:
    add("ascii", p)

# whitespace runs, tabs and newlines
ws = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "a\n", "\na", "a\n\nb",
      "a \n b", "a\t\tb", "a   b", "a    \n    b", "line1\nline2\nline3", "  leading", "trailing  ",
      "\n\n\n\nmany newlines", "tab\tseparated\tvalues\n1\t2\t3", " \t \n \r\n ", "a\u00a0b",
      "a\u2003b", "a\u3000b", "nel\u0085here", "ls\u2028ps\u2029end", "\u000b\u000cvt ff",
      " " * 17, "\n" * 9, "\t" * 5 + "x", "x" + " " * 40 + "y", "  \n\n  \n  "]
for w in ws:
    add("whitespace", w)

# digits and long numbers
nums = ["0", "7", "42", "123", "1234", "12345", "123456789", "3.14159", "1,000,000", "-17",
        "2026-11-23", "10:45:07", "0x1F", "1e-9", "12345678901234567890123456789",
        "v1.2.3", "a1b2c3", "100%", "1st 2nd 3rd 4th", "٣٤٥ ١٢", "१२३", "①②③", "Ⅻ",
        "3 + 4 = 7", "999999999999999999999999999999999999999999"]
for n in nums:
    add("digits", n)

# code
code = [
    "def f(x):\n    return x * 2\n",
    "int main(void) {\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; i++) { a[i] += b[i]; }",
    "const x = await fetch(`/api/${id}`);",
    "    if x is None:\n        raise ValueError('x')\n",
    "<div class=\"a\">text</div>",
    "SELECT * FROM t WHERE id = 3;",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "x->y = &z; p[i] |= 1 << k;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "fn main() { println!(\"{}\", 1); }",
    "    \n    \n        deeply indented",
    "a=b&&c||!d", "::std::vector<int> v;", "$ ls -la | grep foo > out.txt 2>&1",
    "// comment\n/* block */", "@decorator\nclass A(B):\n    pass",
]
for c in code:
    add("code", c)

# CJK and other scripts
cjk = ["你好，世界", "我爱北京天安门。", "日本語のテキストです。", "カタカナとひらがな", "한국어 문장입니다.",
       "中文English混合text", "東京2026年11月23日", "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم",
       "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu", "Ελληνικά και русский",
       "𠀀𠀁 rare CJK ext B", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "半角ｶﾀｶﾅ", "Ærøskøbing straße ß"]
for c in cjk:
    add("cjk", c)

# emoji and ZWJ sequences
emoji = ["😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷🇯🇵", "I ❤️ Vulkan 🚀", "a😀b",
         "👩🏾‍💻 coding", "1️⃣2️⃣", "🧑‍🤝‍🧑", "emoji at end 🎉", "☕️☕︎", "🫠🫡🪿"]
for e in emoji:
    add("emoji", e)

# combining marks, NFC vs NFD
comb = ["café", "cafe\u0301", "e\u0301\u0300", "A\u030a", "\u212b", "n\u0303o", "ñ", "Å",
        "\u1e9b\u0323", "ﬁ ligature", "x\u0335y", "Zalgo: Z\u0351\u036b\u0343a\u0352l\u0367g\u0311o",
        "\u0301 starts with a combining mark", "한", "\u1112\u1161\u11ab", "ǅ", "Ω\u2126"]
for c in comb:
    add("combining", c)
    add("combining", unicodedata.normalize("NFD", c))

# special tokens inside text
spec = ["<|im_start|>user\nhi<|im_end|>\n", "<|endoftext|>", "text<|endoftext|>more",
        "<|begin_of_text|>Hello", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<think>\nreasoning\n</think>\n\nanswer", "<|im_start|><|im_end|>", "<|im_start",
        "<|im_start|x", "< |im_start| >", "<|endoftext|><|endoftext|>", " <|im_end|> ",
        "<tool_call>{\"a\":1}</tool_call>", "<|reserved_special_token_5|>", "<|eom_id|><|python_tag|>",
        "<|fim_prefix|>def<|fim_suffix|>x<|fim_middle|>", "<<|im_end|>>", "<|end_of_text|>x",
        "\n<|im_start|>assistant\n", "a<think>b</think>c", "<|finetune_right_pad_id|>"]
for s in spec:
    add("special", s)

# apostrophes and contractions around the case-insensitive alternatives
for s in ["'s", "'S", "'ll", "'LL", "'Re", "it'd", "x'y", "''", "'", "ſ'ſ", "'ſ", "O'Reilly's"]:
    add("contraction", s)

add("empty", "")

# random mixtures from a pool of interesting pieces
pool = (["the", " the", "The", "ing", "tion", "a", " ", "  ", "\n", "\t", "0", "42", "123456",
         ".", ",", "!", "?", "'s", "'ll", "(", ")", "{", "}", "->", "==", "\"", "你", "好", "世界",
         "日本", "😀", "👍🏽", "‍", "️", "é", "e\u0301", "ß", "Ω", "\u00a0", "\u3000", "<|im_start|>",
         "<|endoftext|>", "<|eot_id|>", "<think>", "ab", "xyz", "QWEN", "llama", "\r\n", "ـ", "ك",
         "\u0085", "#", "$", "%", "_", "__init__", "::", "—", "…", "“", "”", "½", "²", "ℕ"])
for i in range(180):
    k = rng.randint(1, 24)
    add("random", "".join(rng.choice(pool) for _ in range(k)))

# random code points (valid scalar values, no surrogates), short strings
for i in range(40):
    cps = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.4:
            cp = rng.randint(0x20, 0x7e)
        elif r < 0.7:
            cp = rng.randint(0xa0, 0x2fff)
        elif r < 0.9:
            cp = rng.randint(0x3000, 0xd7ff)
        else:
            cp = rng.randint(0xe000, 0x1faff)
        cps.append(chr(cp))
    add("codepoints", "".join(cps))

# a long line (prose repeated with varying numbers) and a long run of one letter
add("long", " ".join(f"word{i} and {i * 7919 % 1000} things," for i in range(2500)))
add("long", "a" * 5000)
add("long", " " * 3000 + "x")
add("long", "ab" * 2000)

path = os.path.join(os.path.dirname(__file__), "..", "tests", "tokenizer", "corpus.jsonl")
with open(path, "w", encoding="utf-8") as f:
    for o in out:
        f.write(json.dumps(o, ensure_ascii=False) + "\n")
print(f"{len(out)} strings -> {os.path.normpath(path)}")
