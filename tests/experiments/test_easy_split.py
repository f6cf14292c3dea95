#!/usr/bin/python3
"""test_easy_split: the paths that need a target whose greedy answers are right for some
records: diagnose --only-target-wrong skipping a record "as correct", and the easy side of
probe's and power's easy / hard splits. (The other tests' random targets write no digits, so
every record is wrong there.)

Fixture: a bigram-chain Qwen3 target (tools/reference/gen_model.py --chain-ids) whose cycle is
"\\n\\n" -> "7" -> <|im_end|>: the chat prompt ends in "</think>\\n\\n", so the greedy answer is
"7" and stops. GSM8K-like records, two with gold answer 7 and one with 5. Expected values are
independent of vkdraft: the greedy continuation from tools/reference/ref.py (float64 PyTorch),
decoded by the HF tokenizer and graded by tools/reference/answer_ref.py.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import PY, QWEN_TOK, SRC, check, hf, hf_encode, require_tokenizer, run  # noqa: E402
import answer_ref  # noqa: E402
import ref  # noqa: E402

NL2, SEVEN, IM_END = 271, 22, 151645   # Qwen3 ids of "\n\n", "7", <|im_end|>
JUDGE = 6


def journal(d):
    return [json.loads(x) for x in open(os.path.join(d, "examples.jsonl")) if x.strip()]


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-easy-")
    tgt, drf = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "32",
                    "--layers", "1", "--heads", "2", "--kv-heads", "1", "--head-dim", "16", "--ffn", "64",
                    "--no-tie", "--dtype", "f32", "--max-pos", "256", "--seed", "3", "--resid-scale", "0.05",
                    "--chain-ids", f"{NL2},{SEVEN},{IM_END}", "--chain-gain", "8", "--tokenizer-from", QWEN_TOK,
                    "--out", tgt], check=True, capture_output=True)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", tgt, "--out", drf,
                    "--layers", "1", "--block-size", "4", "--target-layer-ids", "0", "--seed", "5",
                    "--train-steps", "0"], check=True, capture_output=True)
    data = [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "What is 2 + 3?", "answer": "#### 5"},
            {"question": "Half of 14?", "answer": "#### 7"}]
    ds = os.path.join(tmp, "gsm8k_easy.jsonl")
    with open(ds, "w") as f:
        for r in data:
            f.write(json.dumps(r) + "\n")

    # the expectation: float64 greedy continuations, graded in Python
    T = ref.Target.load(tgt)
    enc = hf_encode(["<|im_start|>user\n" + r["question"] + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                     for r in data])
    greedy = [T.greedy(e, JUDGE, stop={IM_END}) for e in enc]
    texts = [hf("decode", {"ids": g}) for g in greedy]
    correct = [answer_ref.score("gsm8k", t, r["answer"]) for t, r in zip(texts, data)]
    print(f"reference greedy texts {texts!r}, correct {correct}", file=sys.stderr)
    check(any(correct) and not all(correct), f"the fixture should be right on some records only: {texts}")
    easy = [str(i) for i, c in enumerate(correct) if c]

    # diagnose --only-target-wrong: the right ones are skipped as correct, the others walked
    out = os.path.join(tmp, "diag")
    run(["diagnose", "--target", tgt, "--draft", drf, "--dataset", ds, "--only-target-wrong", "--judge-tokens",
         str(JUDGE), "--quiet", "--out", out])
    J = journal(out)
    check(len(J) == 3, f"diagnose journal: {len(J)} records")
    for r in J:
        i = int(r["id"])
        tg = r.get("target_greedy", {})
        check(tg.get("correct") is correct[i], f"diagnose {r['id']}: target_greedy {tg} vs Python {correct[i]}")
        if correct[i]:
            check(r.get("skipped") == "target greedy answer correct" and "tokens" not in r, f"skipped as correct: {r}")
        else:
            check("skipped" not in r and r.get("tokens"), f"a wrong record is walked: {str(r)[:200]}")
    summ = json.load(open(os.path.join(out, "summary.json")))
    check(summ["target_correct_skipped"] == len(easy) and summ["examples"] == 3 - len(easy),
          f"diagnose summary: {summ['target_correct_skipped']} skipped as correct, {summ['examples']} examples")

    # probe: the reference generation graded; chains split easy / hard
    out = os.path.join(tmp, "probe")
    p = run(["probe", "--target", tgt, "--draft", drf, "--dataset", ds, "--max-new-tokens", str(JUDGE),
             "--samples", "8", "--mcmc-steps", "2", "--draft-temps", "1", "--quiet", "--out", out])
    summ = json.load(open(os.path.join(out, "summary.json")))
    ch = summ["chains"]
    check("easy" in ch and "hard" in ch, f"probe chains split: {sorted(ch)}")
    if "easy" in ch and "hard" in ch:
        check(ch["easy"][0]["problems"] == len(easy) and ch["hard"][0]["problems"] == 3 - len(easy),
              f"probe easy {ch['easy'][0]['problems']} hard {ch['hard'][0]['problems']}, want {len(easy)} easy")
    check(f"easy: {len(easy)} problem(s)" in p.stdout, "probe report names the easy problems")

    # power: by_difficulty from the greedy baseline's grade
    out = os.path.join(tmp, "power")
    run(["power", "--target", tgt, "--dataset", ds, "--max-new-tokens", str(JUDGE), "--block-tokens", "3",
         "--mcmc-steps", "1", "--baselines", "greedy", "--quiet", "--out", out])
    summ = json.load(open(os.path.join(out, "summary.json")))
    bd = summ.get("by_difficulty", {})
    check(bd.get("easy", {}).get("power", {}).get("examples") == len(easy) and
          bd.get("hard", {}).get("power", {}).get("examples") == 3 - len(easy), f"power by_difficulty {bd}")
    check(bd.get("easy", {}).get("greedy", {}).get("accuracy") == 1.0 and
          bd.get("hard", {}).get("greedy", {}).get("accuracy") == 0.0, f"greedy accuracy per side {bd}")
    print(f"test_easy_split: {vkd_cli.failures} failure(s)", file=sys.stderr)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
