#!/usr/bin/python3
"""test_train_target_cli: `vkdraft train-target` end to end (tests/vkd_cli.py) on a
generated English-like corpus (600 lines of subject-verb-object sentences) with a byte-level
BPE tokenizer of 300 ids trained on it (tools/train_bpe.py) and a tiny tied Qwen3 (hidden
32, 2 layers, 2 query heads over 1 kv head of 16, ffn 72).

Checks: training loss and held-out loss go down (the model learns the corpus' structure:
held-out loss after training at least 1.5 nats below the untrained one), the folder holds
config.json (bf16, tied), model.safetensors (every tensor of the architecture, no
lm_head), the tokenizer files with the chat template, and loads in `vkdraft generate`;
the same seed gives the same weights byte for byte; a run stopped after 13 steps
(--stop-after) and resumed ends with the same weights and log (the loss curve) byte for byte
as an uninterrupted one, and a resume with another --lr is refused; the corpus as a .jsonl file
({"text": line} a line) trains the same weights byte for byte. Bad input: an untied config, an
existing --out, a .jsonl line without a "text" string, no --data: one error line (naming
file:line for the .jsonl), non-zero exit, nothing written."""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import PY, SRC, check, run  # noqa: E402
import st  # noqa: E402  (tools/reference, on the path through vkd_cli)

CONFIG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
          "intermediate_size": 72, "num_hidden_layers": 2, "num_attention_heads": 2,
          "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 300, "max_position_embeddings": 256,
          "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
          "attention_bias": False, "torch_dtype": "float32"}


def untrained_loss(stderr):
    m = re.search(r"held-out loss ([0-9.]+) before training", stderr)
    return float(m.group(1)) if m else None


with tempfile.TemporaryDirectory() as tmp:
    rnd = random.Random(1)
    subj = ["the cat", "a dog", "the king", "my sister", "the old man", "a young woman"]
    verb = ["sees", "loves", "follows", "finds", "calls", "helps"]
    obj = ["the house", "a bird", "the river", "her friend", "the garden", "a letter"]
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        for _ in range(600):
            f.write(" ".join(f"{rnd.choice(subj)} {rnd.choice(verb)} {rnd.choice(obj)}." for _ in range(3))
                    .capitalize() + "\n")
    tok = os.path.join(tmp, "tok")
    subprocess.run([PY, os.path.join(SRC, "tools/train_bpe.py"), "--corpus", corpus, "--vocab", "300", "--out", tok],
                   check=True, capture_output=True)
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        json.dump(CONFIG, f)
    args = ["train-target", "--config", cfg, "--tokenizer", tok, "--data", corpus, "--seq-len", "48",
            "--batch-tokens", "192", "--steps", "30", "--lr", "1e-2", "--seed", "5"]
    out = os.path.join(tmp, "out")
    p = run(args + ["--out", out])
    before = untrained_loss(p.stderr)
    summary = p.stdout.strip()
    print(summary)
    held_after = float(summary.split("held-out loss ")[1].split(";")[0])
    first, last = [float(x) for x in summary.split("; loss ")[1].split(",")[0].split(" -> ")]
    check(last < first - 1.0, f"training loss {first} -> {last}: not down by 1 nat")
    check(before and held_after < before - 1.5, f"held-out loss {before} -> {held_after}: not down by 1.5 nats")
    names = sorted(os.listdir(out))
    check(names == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                    "tokenizer_config.json", "train_log.jsonl"], f"output files {names}")
    c = json.load(open(os.path.join(out, "config.json")))
    check(c["torch_dtype"] == "bfloat16" and c["tie_word_embeddings"] is True, "config.json dtype / tie")
    check("chat_template" in json.load(open(os.path.join(out, "tokenizer_config.json"))), "no chat template")
    hdr = st.read_header(os.path.join(out, "model.safetensors"))[0]
    tensors = {k: v for k, v in hdr.items() if k != "__metadata__"}
    check(len(tensors) == 2 + 2 * 11 and "lm_head.weight" not in tensors and
          all(v["dtype"] == "BF16" for v in tensors.values()), f"saved tensors {sorted(tensors)}")
    g = run(["generate", "--model", out, "--prompt", "The king", "--max-new-tokens", "8", "--temperature", "0",
             "--json"])
    res = json.loads(g.stdout)
    check(len(res["ids"]) == 8 and res["text"], f"generate on the trained folder: {res}")
    # the same seed: the same weights, byte for byte
    out2 = os.path.join(tmp, "out2")
    run(args + ["--out", out2, "--quiet"])
    same = open(os.path.join(out, "model.safetensors"), "rb").read() == open(os.path.join(out2, "model.safetensors"), "rb").read()
    check(same, "a second run with the same seed gave other weights")
    # the corpus as .jsonl ({"text": line} a line): the same token stream, the same weights
    cj = os.path.join(tmp, "corpus.jsonl")
    with open(corpus) as f, open(cj, "w") as g:
        for line in f:
            g.write(json.dumps({"text": line.rstrip("\n")}) + "\n")
    out4 = os.path.join(tmp, "out4")
    run([cj if a == corpus else a for a in args] + ["--out", out4, "--quiet"])
    same = open(os.path.join(out4, "model.safetensors"), "rb").read() == open(os.path.join(out2, "model.safetensors"), "rb").read()
    check(same, "the .jsonl corpus trained other weights than the same lines as text")
    # stopped after 13 steps (checkpoints at 10 and 13), resumed: the same log and weights
    out3 = os.path.join(tmp, "out3")
    p = run(args + ["--out", out3, "--quiet", "--checkpoint-every", "10", "--stop-after", "13"])
    check(not os.path.exists(out3) and os.path.exists(os.path.join(out3 + ".partial", "ckpt", "step.json")),
          f"--stop-after: {p.stdout}")
    p = run(args + ["--out", out3, "--quiet", "--resume", "--lr", "2e-2"], ok=False)
    check(p.returncode != 0 and "'lr' differs" in p.stderr, f"resume with another --lr: {p.stderr!r}")
    run(args + ["--out", out3, "--quiet", "--checkpoint-every", "10", "--resume"])
    for f in ["model.safetensors", "train_log.jsonl"]:
        a, b = (open(os.path.join(d, f), "rb").read() for d in (out2, out3))
        check(a == b, f"resumed run: {f} differs from the uninterrupted run's")
    check(len(open(os.path.join(out3, "train_log.jsonl")).read().splitlines()) == 30, "log of 30 steps")
    # bad input
    untied = os.path.join(tmp, "untied.json")
    with open(untied, "w") as f:
        json.dump(dict(CONFIG, tie_word_embeddings=False), f)
    for bad, what in [(["--config", untied, "--out", os.path.join(tmp, "b1")], "tie_word_embeddings"),
                      (["--config", cfg, "--out", out], "exists")]:
        a = ["train-target", "--tokenizer", tok, "--data", corpus, "--steps", "1"] + bad
        p = run(a, ok=False)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(lines) == 1 and what in lines[0], f"{what}: rc {p.returncode} {p.stderr!r}")
    bj = os.path.join(tmp, "bad.jsonl")
    with open(bj, "w") as f:
        f.write('{"text": "the king sees a bird."}\n{"txt": "no text field"}\n')
    p = run(["train-target", "--config", cfg, "--tokenizer", tok, "--data", bj, "--steps", "1", "--out",
             os.path.join(tmp, "b2")], ok=False)
    lines = p.stderr.strip().splitlines()
    check(p.returncode != 0 and len(lines) == 1 and "bad.jsonl:2" in lines[0] and '"text"' in lines[0],
          f"bad .jsonl line: rc {p.returncode} {p.stderr!r}")
    p = run(["train-target", "--config", cfg, "--tokenizer", tok, "--out", os.path.join(tmp, "b3")], ok=False)
    check(p.returncode != 0 and "--data" in p.stderr, f"no --data: {p.stderr!r}")
    check(not os.path.exists(os.path.join(tmp, "b1")) and not os.path.exists(os.path.join(tmp, "b1.partial")) and
          not os.path.exists(os.path.join(tmp, "b2")) and not os.path.exists(os.path.join(tmp, "b2.partial")) and
          not os.path.exists(os.path.join(tmp, "b3")), "a refused run wrote its folder")

print(f"test_train_target_cli: {vkd_cli.failures} failures")
sys.exit(1 if vkd_cli.failures else 0)
