#!/usr/bin/python3
"""test_exit_cli: `vkdraft exit-train` end to end on a generated 4-layer Qwen3-shaped target
with the real Qwen3 tokenizer (tests/vkd_cli.py).

Data of all three kinds (chat messages JSONL, prompt/response JSONL, plain text); a head
(layer 1 of 4, T = 2) trains on the full batch (the real vocabulary makes each step slow on
lavapipe, so 2 steps), its loss goes down, the files are there and load back as
heads of this target (exit_config.json names the layer, T, steps and the target's id); a run
stopped after 1 step and resumed gives the same head, optimizer state and log, byte for
byte, as an uninterrupted run. --ft-last-block trains the head with its copy of block 1
(trained "head+block", block.* tensors saved). The folder protocol (docs/results.md):
config.json first, a second run into a folder with results is refused without --resume,
--overwrite moves it aside, a resume with other parameters or another target names the
differing config.json field. Bad input: a layer out of range, a data file without usable
text, an unknown --loss: one error line, non-zero exit, nothing written."""
import json
import os
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import PY, QWEN_TOK, SRC, check, require_tokenizer, run  # noqa: E402


def gen(tmp, name, seed):
    d = os.path.join(tmp, name)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "48",
                    "--layers", "4", "--heads", "3", "--kv-heads", "1", "--head-dim", "16", "--ffn", "80", "--tie",
                    "--dtype", "f32", "--max-pos", "512", "--seed", str(seed), "--tokenizer-from", QWEN_TOK,
                    "--out", d], check=True, capture_output=True)
    return d


def one_error(p, *needles):
    err = p.stderr.strip().splitlines()
    ok = p.returncode > 0 and len(err) == 1 and all(n in err[0] for n in needles)
    check(ok, f"expected one error line with {needles}, got rc {p.returncode}: {p.stderr!r}")


require_tokenizer()
with tempfile.TemporaryDirectory() as tmp:
    tgt, other = gen(tmp, "target", 21), gen(tmp, "other", 22)
    chat, pr, txt = (os.path.join(tmp, n) for n in ("chat.jsonl", "pr.jsonl", "text.txt"))
    with open(chat, "w") as f:
        for i in range(2):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me about number {i}."},
                                             {"role": "assistant", "content": f"The number {i} is small and "
                                              "comes after the number before it, as numbers do."}]}) + "\n")
    with open(pr, "w") as f:
        for i in range(2):
            f.write(json.dumps({"prompt": f"Count to {i + 3}.", "response": " ".join(str(k) for k in range(i + 3))}) + "\n")
    with open(txt, "w") as f:
        f.write("It was the best of times, it was the worst of times.\n\n"
                "Call me Ishmael. Some years ago, never mind how long precisely.\n\n\n")
    common = ["--model", tgt, "--data", chat, "--data", pr, "--data", txt, "--layers", "1", "--temperatures", "2",
              "--steps", "2", "--warmup", "0", "--lr", "0.01", "--batch-tokens", "4096", "--seq-len", "32",
              "--checkpoint-every", "1", "--holdout", "0.3", "--seed", "4", "--quiet"]
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    run(["exit-train"] + common + ["--out", a])
    summary = json.load(open(os.path.join(a, "summary.json")))
    check(len(summary["heads"]) == 1 and summary["heads"][0]["heldout_tokens"] > 0, f"summary {summary}")
    for layer in (1,):
        d = os.path.join(a, f"layer{layer}-T2")
        log = [json.loads(line) for line in open(os.path.join(d, "train.jsonl"))]
        cfg = json.load(open(os.path.join(d, "exit_config.json")))
        check([r["step"] for r in log] == [1, 2], f"layer {layer}: log steps {[r['step'] for r in log]}")
        check(log[-1]["loss"] < log[0]["loss"], f"layer {layer}: loss {log[0]['loss']} -> {log[-1]['loss']}")
        check(cfg["exit_layer"] == layer and cfg["temperature"] == 2 and cfg["steps"] == 2 and cfg["trained"] == "head"
              and cfg["loss"] == "kl" and len(cfg["target_id"]) == 16, f"exit_config.json {cfg}")
        print(f"layer {layer}: loss {log[0]['loss']:.4f} -> {log[-1]['loss']:.4f}")
    # interrupted after 3 steps, resumed: identical to the uninterrupted run
    run(["exit-train"] + common + ["--out", b, "--stop-after", "1"])
    run(["exit-train"] + common + ["--out", b, "--resume"])
    for layer in (1,):
        for f in ("exit.safetensors", "state.safetensors", "train.jsonl", "exit_config.json"):
            x = open(os.path.join(a, f"layer{layer}-T2", f), "rb").read()
            y = open(os.path.join(b, f"layer{layer}-T2", f), "rb").read()
            check(x == y, f"layer {layer}: {f} of the resumed run differs from the uninterrupted one")
    # the folder protocol: config.json, refusal without --resume, --overwrite, other parameters
    cfg = json.load(open(os.path.join(a, "config.json")))
    check(cfg["command"] == "exit-train" and cfg["params"]["layers"] == [1] and cfg["params"]["ft_last_block"] is False,
          f"config.json {cfg.get('params')}")
    p = run(["exit-train"] + common + ["--out", a], ok=False)
    one_error(p, "already holds results", "--resume")
    one_error(run(["exit-train"] + common + ["--out", a, "--resume", "--lr", "0.02"], ok=False), "params.lr", "differs")
    # --ft-last-block: head and block 1 trained, saved, loss down; --overwrite moves the old run aside
    run(["exit-train"] + common + ["--out", b, "--ft-last-block", "--overwrite"])
    check(os.path.isdir(b + ".old-1") and os.path.exists(os.path.join(b + ".old-1", "layer1-T2", "exit.safetensors")),
          "--overwrite did not move the earlier run to b.old-1")
    d = os.path.join(b, "layer1-T2")
    cfg = json.load(open(os.path.join(d, "exit_config.json")))
    log = [json.loads(line) for line in open(os.path.join(d, "train.jsonl"))]
    raw = open(os.path.join(d, "exit.safetensors"), "rb").read()
    hdr = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    check(cfg["trained"] == "head+block" and "block.mlp.down_proj.weight" in hdr and "block.self_attn.q_norm.weight" in hdr,
          f"--ft-last-block: trained {cfg['trained']}, tensors {sorted(hdr)}")
    check(log[-1]["loss"] < log[0]["loss"], f"--ft-last-block: loss {log[0]['loss']} -> {log[-1]['loss']}")
    print(f"layer 1 with its block: loss {log[0]['loss']:.4f} -> {log[-1]['loss']:.4f}")
    # bad input
    c = os.path.join(tmp, "c")
    base = ["exit-train", "--model", tgt, "--data", chat, "--out", c]
    one_error(run(base + ["--layers", "4"], ok=False), "layer 4 out of range", "0..3")
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").write("\n\n  \n")
    one_error(run(["exit-train", "--model", tgt, "--data", empty, "--layers", "1", "--out", c], ok=False),
              "empty.txt", "no usable text")
    one_error(run(base + ["--layers", "1", "--loss", "mse"], ok=False), "--loss")
    check(not os.path.exists(c), "a failed run created its --out folder")
    p = run(["exit-train", "--model", other] + common[2:] + ["--out", a, "--resume"], ok=False)
    one_error(p, "models.target", "differs")
sys.exit(1 if vkd_cli.failures else 0)
