#!/usr/bin/python3
"""test_exit_draft_cli: an early-exit head (vkdraft exit-train) as the draft of diagnose, probe,
power and guide (--exit-head DIR [--exit-mode reuse|plain], apps/exp.c exp_draft), on a
generated 4-layer Qwen3-shaped target with the real Qwen3 tokenizer (tests/vkd_cli.py).

Each command runs one example with the head and writes its results; config.json names the
head. probe drafts only at the target's end: its reuse (self-speculative) and plain runs
give the same records apart from timings (the proposals are the same computation).
diagnose, power and guide draft behind the target's end: --exit-mode reuse is refused with
one error line before --out is touched; --draft with --exit-head is refused too.

The head is trained with --self-distill on a GSM8K-style file (answers kept) and an
MT-Bench-style file (prompts only): OUT/self_distill.jsonl holds one response per MT-Bench
prompt, its prompt hash equals that of the chat rendering encoded by HF tokenizers, its ids
are the float64 PyTorch reference's greedy continuation (tools/reference/ref.py), and a
--resume reuses the cache without generating again."""
import json
import os
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tools", "reference"))
import vkd_cli  # noqa: E402
import ref  # noqa: E402
from vkd_cli import PY, QWEN_TOK, SRC, check, hf_encode, require_tokenizer, run  # noqa: E402


def fnv_ids(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for b in (i & 0xFFFFFFFF).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def records(out):
    """The journal's records without timing fields (*_s)."""
    rs = [json.loads(line) for line in open(os.path.join(out, "examples.jsonl"))]
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rs]


def names_head(out, head):
    cfg = json.load(open(os.path.join(out, "config.json")))
    x = cfg["models"].get("exit_head", {})
    check(x.get("path") == head and len(x.get("exit_config_fnv1a64", "")) == 16, f"{out}: config.json models {x}")


require_tokenizer()
with tempfile.TemporaryDirectory() as tmp:
    tgt = os.path.join(tmp, "target")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "48",
                    "--layers", "4", "--heads", "3", "--kv-heads", "1", "--head-dim", "16", "--ffn", "80", "--tie",
                    "--dtype", "f32", "--max-pos", "512", "--seed", "21", "--tokenizer-from", QWEN_TOK,
                    "--out", tgt], check=True, capture_output=True)
    ds = os.path.join(tmp, "tiny_gsm8k.jsonl")
    with open(ds, "w") as f:
        f.write(json.dumps({"question": "Tom has 3 apples and buys 4 more. How many apples?",
                            "answer": "3 + 4 = 7 apples.\n#### 7"}) + "\n")
    mt = os.path.join(tmp, "mt_bench_q.jsonl")
    qs = ["Compose a short poem about the sea.", "Explain what a prime number is."]
    with open(mt, "w") as f:
        for i, q in enumerate(qs):
            f.write(json.dumps({"question_id": 81 + i, "category": "writing", "turns": [q, "Now shorter."]}) + "\n")
    heads = os.path.join(tmp, "heads")
    train = ["exit-train", "--model", tgt, "--data", ds, "--data", mt, "--self-distill", "--self-distill-tokens", "8",
             "--layers", "1", "--steps", "1", "--seq-len", "48", "--holdout", "0", "--out", heads]
    run(train + ["--quiet"])
    cache = [json.loads(line) for line in open(os.path.join(heads, "self_distill.jsonl"))]
    check([(c["file"], c["line"]) for c in cache] == [(mt, 1), (mt, 2)], f"self-distill cache entries {cache}")
    prompts = hf_encode(["<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                         for q in qs])
    T = ref.Target.load(tgt)
    for c, pr in zip(cache, prompts):
        want = T.greedy(pr, 8)
        got = c["response"]
        check(c["prompt_fnv1a64"] == fnv_ids(pr), f"line {c['line']}: prompt hash differs from the HF rendering's")
        check(0 < len(got) <= 8 and got == want[:len(got)], f"line {c['line']}: response {got}, reference {want}")
    p = run(train + ["--resume"])
    check("0 responses generated, 2 from" in p.stderr, f"resume regenerated: {p.stderr}")
    check(len(open(os.path.join(heads, "self_distill.jsonl")).readlines()) == 2, "resume appended to the cache")
    head = os.path.join(heads, "layer1-T1")
    common = ["--target", tgt, "--exit-head", head, "--dataset", ds, "--limit", "1", "--quiet"]
    o = {k: os.path.join(tmp, k) for k in ("diag", "probe_r", "probe_p", "power", "guide", "bad")}

    run(["diagnose"] + common + ["--out", o["diag"]])
    check(json.load(open(os.path.join(o["diag"], "summary.json"))).get("examples") == 1, "diagnose: summary.json")
    names_head(o["diag"], head)

    probe = ["probe"] + common + ["--samples", "4", "--max-new-tokens", "8", "--mcmc-steps", "2"]
    run(probe + ["--out", o["probe_r"], "--exit-mode", "reuse"])
    run(probe + ["--out", o["probe_p"], "--exit-mode", "plain"])
    a, b = records(o["probe_r"]), records(o["probe_p"])
    check(len(a) == 1 and a == b, "probe: reuse and plain exit drafts give different records")
    names_head(o["probe_r"], head)

    run(["power"] + common + ["--proposal", "dflash", "--max-new-tokens", "8", "--block-tokens", "4",
                              "--mcmc-steps", "2", "--baselines", "none", "--out", o["power"]])
    rec = records(o["power"])[0]
    check(rec["power"]["draft_calls"] > 0, f"power: the exit draft made no proposals: {rec['power']}")
    names_head(o["power"], head)

    run(["guide"] + common + ["--max-new-tokens", "6", "--alphas", "0,0.5", "--temperatures", "0",
                              "--out", o["guide"]])
    check(any(r["condition"] == "guided" for r in records(o["guide"])), "guide: no guided cell")
    names_head(o["guide"], head)

    for cmd, extra in (("diagnose", []), ("power", ["--proposal", "dflash", "--max-new-tokens", "8", "--block-tokens", "4"]),
                       ("guide", ["--max-new-tokens", "6"])):
        p = run([cmd] + common + extra + ["--exit-mode", "reuse", "--out", o["bad"]], ok=False)
        err = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(err) == 1 and "--exit-mode plain" in err[0], f"{cmd} reuse: {p.stderr!r}")
    p = run(["probe"] + common + ["--draft", head, "--out", o["bad"]], ok=False)
    check(p.returncode != 0 and "exclude each other" in p.stderr, f"--draft with --exit-head: {p.stderr!r}")
    check(not os.path.exists(o["bad"]), "a refused run created its --out folder")
sys.exit(1 if vkd_cli.failures else 0)
