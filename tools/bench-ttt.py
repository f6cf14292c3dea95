#!/usr/bin/python3
"""bench-ttt.py: one TTT step of vkdraft against the same step in PyTorch on this machine's
CPU (issue 13's benchmark), as a ratio measured in one run.

  /usr/bin/python3 tools/bench-ttt.py --target DIR --draft DIR [--context 256] [--anchors-per-step 8]
      [--steps 3] [--rank 8] [--optimizer adamw] [--seed 0] [--vkdraft build/apps/vkdraft]

Same pair, same context (--context random ids below min(vocab, 1000) from --seed), same anchors (drawn
here once and given to both with --anchors, so both do identical work every step), same LoRA
(rank, alpha 16, fc/k_proj/v_proj), same optimizer. PyTorch: tools/reference/ttt_ref.py's
objective in float32 with autograd (torch.set_num_threads = the CPU count): the target's
features once (not timed), then per step loss + backward + optimizer step. vkdraft: `vkdraft
ttt --steps N --anchors ...`; its results.csv gives ms per step (the target's feature pass
excluded) and training tokens/s (trained rows per second). Printed: both, and the ratio
(PyTorch ms / vkdraft ms: > 1 means vkdraft is faster). Figures, not a pass/fail."""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import torch  # noqa: E402

import ttt_ref  # noqa: E402


def torch_step_ms(a, ids, anchors):
    ttt_ref.DT = torch.float32
    torch.set_num_threads(os.cpu_count() or 1)
    ttt = ttt_ref.TTT(a.target, a.draft)
    mods, scale = ttt_ref.new_adapter(ttt, ["fc", "k_proj", "v_proj"], a.rank, 16.0, a.seed)
    leaves = {p: (torch.tensor(A, dtype=torch.float32, requires_grad=True),
                  torch.tensor(B, dtype=torch.float32, requires_grad=True)) for p, (A, B) in mods.items()}
    flat = [t for ab in leaves.values() for t in ab]
    opt = (torch.optim.AdamW(flat, lr=1e-4, weight_decay=0.0) if a.optimizer == "adamw"
           else torch.optim.SGD(flat, lr=1e-4))
    F = ttt.features(ids)
    times, rows = [], 0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, rows, _ = ttt.loss(F, ids, anchors, leaves, scale, 7.0)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2], rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True)
    p.add_argument("--draft", required=True)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--anchors-per-step", dest="k", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vkdraft", default=os.path.join(HERE, "..", "build", "apps", "vkdraft"))
    a = p.parse_args()
    rng = random.Random(a.seed)
    vocab = json.load(open(os.path.join(a.target, "config.json")))["vocab_size"]
    ids = [rng.randrange(min(vocab, 1000)) for _ in range(a.context)]
    anchors = sorted(rng.sample(range(1, a.context - 1), a.k))
    print(f"context {a.context} tokens, {a.k} anchors per step {anchors}, rank {a.rank}, {a.optimizer}, "
          f"{a.steps} steps; CPU threads {os.cpu_count()}")

    vk_ms = vk_tok = None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [a.vkdraft, "ttt", "--target", a.target, "--draft", a.draft, "--ids", ",".join(map(str, ids)),
               "--anchors", ",".join(map(str, anchors)), "--steps", str(a.steps), "--rank", str(a.rank),
               "--optimizer", a.optimizer, "--lr", "1e-4", "--max-new-tokens", "1", "--quiet", "--out",
               os.path.join(tmp, "o")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"vkdraft ttt: not measured ({r.stderr.strip()})")
        else:
            with open(os.path.join(tmp, "o", "results.csv"), newline="") as f:
                row = next(csv.DictReader(f))
            vk_ms, vk_tok = float(row["step_ms"]), float(row["train_tok_s"])
            print(f"vkdraft ttt:   {vk_ms:9.1f} ms/step  {vk_tok:8.1f} training tok/s")
    t_ms, rows = torch_step_ms(a, ids, anchors)
    print(f"PyTorch (CPU): {t_ms:9.1f} ms/step  {1e3 * rows / t_ms:8.1f} training tok/s  ({rows} rows/step)")
    if vk_ms:
        print(f"ratio PyTorch / vkdraft: {t_ms / vk_ms:.2f}x")
    print(json.dumps({"torch_ms": t_ms, "vkdraft_ms": vk_ms, "rows": rows,
                      "ratio": (t_ms / vk_ms) if vk_ms else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
