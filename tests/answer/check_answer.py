#!/usr/bin/python3
"""check_answer.py ANSWER_TOOL: runs the C answer functions (through tests/answer/answer_tool)
and the independent Python reference (tools/reference/answer_ref.py) over
  (a) every gold answer of the real GSM8K (1319) and MATH-500 (500) files: each worked
      GSM8K solution and each boxed MATH gold must extract to its gold and score correct;
      MATH golds are also graded against the next record's gold (a differential check);
  (b) a corpus of model-output-like strings with hand-written expectations;
  (c) 10000 seeded random token soups (LaTeX pieces, digits, braces, Unicode);
and asserts that C and Python agree field by field on every case."""
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("VKDRAFT_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import answer_ref  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "datasets")

# (kind, text, gold field, expected extract or ..., expected score or ...); ... = not checked
E = ...
RANDOM = 10000
CORPUS = [
    # boxed, nested braces, several boxes
    ("math500", "So the answer is \\boxed{\\dfrac{1}{2}}.", "\\frac12", "\\dfrac{1}{2}", True),
    ("math500", "\\boxed{1} first, then \\boxed{\\frac{14}{3}}", "\\frac{14}{3}", "\\frac{14}{3}", True),
    ("math500", "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", E, True),
    ("math500", "\\boxed{(3,\\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", E, True),
    ("math500", "\\boxed{\\{1,2\\}}", "\\{1,2\\}", "\\{1,2\\}", True),
    ("math500", "\\boxed{a{b{c}}}", "a{b{c}}", "a{b{c}}", True),
    ("math500", "\\boxed{3} and \\boxed{4", "3", None, False),
    ("math500", "\\fbox{12}", "12", "12", True),
    ("math500", "\\boxed 12", "12", None, False),
    # fractions, decimals
    ("math500", "\\boxed{0.5}", "\\frac{1}{2}", "0.5", True),
    ("math500", "\\boxed{1/2}", "\\frac{1}{2}", "1/2", True),
    ("math500", "\\boxed{2/4}", "\\frac{1}{2}", "2/4", False),
    ("math500", "\\boxed{\\tfrac{3}{4}}", "\\frac34", E, True),
    ("math500", "\\boxed{-\\frac{1}{4}}", "-0.25", E, True),
    ("math500", "\\boxed{\\frac{9}{2}}", "4.5", E, True),
    ("math500", "\\boxed{4.50}", "\\frac{9}{2}", E, True),
    ("math500", "\\boxed{0.333}", "\\frac{1}{3}", E, False),
    # percentages, degrees, dollars, units, text
    ("math500", "\\boxed{10\\%}", "10", E, True),
    ("math500", "\\boxed{10}", "10\\%", E, True),
    ("math500", "\\boxed{90^\\circ}", "90", E, True),
    ("math500", "\\boxed{90^{\\circ}}", "90^\\circ", E, True),
    ("math500", "\\boxed{30 \\text{ degrees}}", "30", E, True),
    ("math500", "\\boxed{\\$18.90}", "18.90", E, True),
    ("math500", "\\boxed{5\\text{ cm}}", "5", E, True),
    ("math500", "\\boxed{\\text{(C)}}", "\\text{(C)}", E, True),
    ("math500", "\\boxed{(C)}", "\\text{(C)}", E, True),
    ("math500", "\\boxed{C}", "\\text{(C)}", E, True),  # "(c)" is a 1-tuple
    ("math500", "\\boxed{\\text{Monday}}", "\\text{Monday}", E, True),
    ("math500", "\\boxed{monday}", "\\text{Monday}", E, True),
    ("math500", "\\boxed{\\text{Tuesday}}", "\\text{Monday}", E, False),
    # commas, negatives, x = prefixes, sqrt, pi
    ("math500", "\\boxed{1,000}", "1000", E, True),
    ("math500", "\\boxed{10,\\!000}", "10000", E, True),
    ("math500", "\\boxed{-7}", "-7", E, True),
    ("math500", "\\boxed{- 7}", "-7", E, True),
    ("math500", "\\boxed{x = 5}", "5", E, True),
    ("math500", "\\boxed{\\sqrt{3}}", "\\sqrt3", E, True),
    ("math500", "\\boxed{2\\sqrt{2}}", "2\\sqrt2", E, True),
    ("math500", "\\boxed{\\sqrt{8}}", "2\\sqrt{2}", E, False),  # sympy would accept
    ("math500", "\\boxed{2\\pi}", "2 \\pi", E, True),
    ("math500", "\\boxed{(-\\infty, 3]}", "(-\\infty,3]", E, True),
    ("math500", "\\boxed{[-\\infty, 3]}", "(-\\infty,3]", E, False),
    ("math500", "\\boxed{(1, 2, 3)}", "(1,2)", E, False),
    ("math500", "\\boxed{7 \\frac{3}{4}}", "7\\frac34", E, True),
    ("math500", "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", E, True),
    ("math500", "\\boxed{3 \\text{ million}}", "3000000", E, False),
    # fallback and no answer
    ("math500", "Therefore, the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("math500", "The answer is: 42.\nThanks", "42", "42", True),
    ("math500", "The answer is 42.", "42", E, True),
    ("math500", "no answer at all", "42", None, False),
    ("math500", "", "42", None, False),
    # GSM8K
    ("gsm8k", "Natalia sold 48/2 = 24 clips.\n#### 72", "#### 72", "72", True),
    ("gsm8k", "#### 1,234", "x\n#### 1234", "1234", True),
    ("gsm8k", "So the total is \\boxed{1,234}.", "#### 1234", "1234", True),
    ("gsm8k", "\\boxed{\\$18}", "#### 18", "18", True),
    ("gsm8k", "The answer is 18 dollars, not 20.", "#### 18", "18", True),
    ("gsm8k", "The answer is: $18.00", "#### 18", "18.00", True),
    ("gsm8k", "First 5, then 7, so 12 in total.", "#### 12", "12", True),
    ("gsm8k", "The temperature drops to -4 degrees.", "#### -4", "-4", True),
    ("gsm8k", "From 3-5 days", "#### -5", "5", False),
    ("gsm8k", "He has .5 of it", "#### 0.5", ".5", True),
    ("gsm8k", "It is 1,000,000 exactly", "#### 1000000", "1000000", True),
    ("gsm8k", "1,2345 items", "#### 2345", "2345", True),
    ("gsm8k", "no digits", "#### 3", None, False),
    ("gsm8k", "\\boxed{seven}", "#### 7", "seven", False),
    ("gsm8k", "#### \n18", "#### 18", "18", True),
    ("gsm8k", "Answer is-5", "#### 5", "5", True),
    ("gsm8k", "It costs \u00a318.", "#### 18", "18", True),
]


def random_cases(n, seed=1):
    toks = ["\\boxed{", "\\fbox{", "{", "}", "\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\sqrt[3]",
            "\\text{", "\\text{ ", "\\mbox{", "####", "answer is", "Answer is:", "1", "23", "456", "0.5",
            ".5", ".", ",", "-", "/", "=", " ", "  ", "\n", "$", "\\$", "\\%", "%", "^\\circ", "^{\\circ}",
            "\\left(", "\\right)", "(", ")", "[", "]", "\\\\", "\\", "\\!", ",\\!", "\u03b1", "\u221e",
            "\u00a0", "\u2003", "\u00e9", "cm", "degrees", "inches", "million", "\\pi", "\\infty",
            "\\cdot", "\\times", "\\alpha", "\\foo", "\\begin{pmatrix}", "\\end{pmatrix}", "e5", "_",
            "inf", "nan", "x", "X", "k", " or ", " and ", ",000", "1,234", "\\{", "\\}", "&", "~", "'",
            "^2", "^", "\\,", "\\;", "\\ ", "\\quad", "\\operatorname{", "\\textbf{", "7 3/4"]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = "".join(rng.choice(toks) for _ in range(rng.randrange(0, 14)))
        g = "".join(rng.choice(toks) for _ in range(rng.randrange(0, 6)))
        kind = "math500" if i % 3 else "gsm8k"
        if kind == "math500" and i % 2:
            g = t  # identical strings: normalisers see the same text twice
            t = "\\boxed{" + t + "}"
        out.append({"kind": kind, "text": t, "gold": g, "flags": 1 if i % 5 == 0 else 0})
    return out


def load_cases():
    cases, expect = [], []
    with open(os.path.join(DATA, "gsm8k_test.jsonl"), encoding="utf-8") as f:
        gsm = [json.loads(line)["answer"] for line in f if line.strip()]
    with open(os.path.join(DATA, "math500.json"), encoding="utf-8") as f:
        math = [r["answer"] for r in json.load(f)]
    assert len(gsm) == 1319 and len(math) == 500, (len(gsm), len(math))
    for a in gsm:
        g = answer_ref.gold("gsm8k", a)
        cases.append({"kind": "gsm8k", "text": a, "gold": a})
        expect.append(("gold", g, True))
        cases.append({"kind": "gsm8k", "text": f"The answer is {g}.", "gold": a})
        expect.append(("gold", g, True))
    for i, a in enumerate(math):
        cases.append({"kind": "math500", "text": "Hence \\boxed{" + a + "}.", "gold": a})
        expect.append(("gold", a.strip(), True))
        cases.append({"kind": "math500", "text": "\\boxed{" + math[(i + 1) % len(math)] + "}", "gold": a})
        expect.append("cross")
    for kind, text, g, ex, sc in CORPUS:
        cases.append({"kind": kind, "text": text, "gold": g})
        expect.append(("value", ex, sc))
    for c in random_cases(RANDOM):
        cases.append(c)
        expect.append(None)
    return cases, expect


def main():
    tool = sys.argv[1]
    cases, expect = load_cases()
    feed = "".join(json.dumps(c) + "\n" for c in cases).encode()
    res = subprocess.run([tool], input=feed, capture_output=True, check=False)
    if res.returncode != 0:
        print(f"answer_tool failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
        return 1
    lines = res.stdout.decode("utf-8").splitlines()
    if len(lines) != len(cases):
        print(f"answer_tool printed {len(lines)} lines for {len(cases)} cases")
        return 1
    mismatch = failed = 0
    for case, line, ex in zip(cases, lines, expect):
        c = json.loads(line)
        p = answer_ref.case_fields(case)
        diff = [k for k in p if p[k] != c.get(k)]
        if diff:
            mismatch += 1
            if mismatch <= 10:
                print(f"MISMATCH {json.dumps(case, ensure_ascii=False)}")
                for k in diff:
                    print(f"  {k}: C {c.get(k)!r}  Python {p[k]!r}")
        if ex is None or ex == "cross":
            continue
        want_extract = ex[1] if ex[0] == "value" else p["gold"] if ex[0] == "gold" else ...
        bad = []
        if ex[0] == "gold" and p["gold"] is None:
            bad.append("gold not extracted")
        if want_extract is not ... and c["extract"] != want_extract:
            bad.append(f"extract {c['extract']!r}, want {want_extract!r}")
        if ex[2] is not ... and c["score"] != ex[2]:
            bad.append(f"score {c['score']}, want {ex[2]}")
        if bad:
            failed += 1
            if failed <= 10:
                print(f"FAIL {json.dumps(case, ensure_ascii=False)[:200]}: {'; '.join(bad)}")
    cross = sum(1 for case, line, ex in zip(cases, lines, expect)
                if ex == "cross" and json.loads(line)["score"])
    print(f"{len(cases)} cases (GSM8K golds 1319, MATH-500 golds 500, corpus {len(CORPUS)}, random {RANDOM}): "
          f"{mismatch} C/Python mismatches, {failed} failed expectations; "
          f"{cross} differential MATH cases scored correct")
    return 1 if mismatch or failed else 0


if __name__ == "__main__":
    sys.exit(main())
