#!/usr/bin/python3
"""bench-train-draft.py: training tokens/s of `vkdraft train-draft` against the same step in
PyTorch on this machine's CPU, as a ratio measured in one run (issue 15's benchmark).

  /usr/bin/python3 tools/bench-train-draft.py --target DIR [--context 256] [--anchors 8]
      [--steps 3] [--block-size 16] [--layers 5] [--seed 0] [--vkdraft build/apps/vkdraft]
      [--baseline OTHER_VKDRAFT] [--no-torch]

One training sequence of --context random ids (the first 16 the prompt, the rest the
response) as a token-id data file. vkdraft: `train-draft --steps N+1` (the first step warms
the shaders up and is not counted); per step from train/log.jsonl: seconds and trained rows
(tokens). A step = the target's forward with taps over the sequence + per anchor the
draft's forward, the fused LM head + loss, their backward + AdamW over every draft weight.
PyTorch (float32, autograd, torch.set_num_threads = the CPU count): the same step with
tools/reference's Target / Draft on the weights vkdraft wrote (the target's forward without
its logits, as vkdraft's feature pass), K anchors drawn on the response, the same position
weights, clipping and AdamW. Printed: ms per step and tokens/s of both, and the ratio
(> 1: vkdraft faster). --baseline: a second vkdraft binary (e.g. an older build) timed on
the same data in the same run (before / after); --no-torch skips the PyTorch side.
Figures, not a pass/fail."""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import torch  # noqa: E402

import ref  # noqa: E402


def torch_steps(a, target, draft_dir, ids, resp):
    torch.set_num_threads(os.cpu_count() or 1)
    T = ref.Target.load(target, dtype=torch.float32)
    D = ref.Draft.load(draft_dir, T, dtype=torch.float32)
    params = [p.requires_grad_(True) for p in D.p.values()]
    opt = torch.optim.AdamW(params, lr=6e-4, weight_decay=0.0)
    B, rng = D.block_size, random.Random(a.seed)
    w = torch.tensor([math.exp(-(k - 1) / 7.0) for k in range(1, B)], dtype=torch.float32)
    head = T.lm_head
    times, rows = [], 0
    for s in range(a.steps):
        t0 = time.perf_counter()
        with torch.no_grad():
            T.lm_head = head[:1]          # the feature pass computes no logits
            _, hidden = T.forward(ids)
            T.lm_head = head
        feats = D.features(hidden)
        anchors = rng.sample(range(resp, len(ids) - 1), min(a.anchors, len(ids) - 1 - resp))
        n = 0
        total = 0.0
        losses = []
        for an in anchors:
            k = min(B - 1, len(ids) - 1 - an)
            logits, _ = D.forward(feats[:an], [ids[an]] + [D.mask_token_id] * (B - 1), an)
            ce = torch.nn.functional.cross_entropy(logits[:k], torch.tensor(ids[an + 1: an + 1 + k]), reduction="none")
            losses.append((ce * w[:k]).sum())
            total += float(w[:k].sum())
            n += k
        loss = sum(losses) / total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        rows = n
    return statistics.median(times), rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--anchors", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--block-size", dest="block", type=int, default=16)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vkdraft", default=os.path.join(HERE, "..", "build", "apps", "vkdraft"))
    p.add_argument("--baseline", default=None)
    p.add_argument("--no-torch", dest="no_torch", action="store_true")
    a = p.parse_args()
    with open(os.path.join(a.target, "config.json")) as f:
        V = json.load(f)["vocab_size"]
    rng = random.Random(a.seed)
    ids = [rng.randrange(0, min(V, 1000)) for _ in range(a.context)]
    resp = 16
    tmp = tempfile.mkdtemp(prefix="bench_train_draft_")
    data = os.path.join(tmp, "ids.jsonl")
    with open(data, "w") as f:
        f.write(json.dumps({"prompt_ids": ids[:resp], "response_ids": ids[resp:]}) + "\n")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)

    def vk_steps(exe, name):
        out = os.path.join(tmp, name)
        cmd = [exe, "train-draft", "--target", a.target, "--data", data, "--out", out, "--eval-prompts", "0",
               "--steps", str(a.steps + 1), "--anchors-per-seq", str(a.anchors), "--block-size", str(a.block),
               "--layers", str(a.layers), "--seed", str(a.seed), "--quiet"]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        with open(os.path.join(out, "train", "log.jsonl")) as f:
            L = [json.loads(x) for x in f if '"loss"' in x][1:]
        s, rows = statistics.median(x["seconds"] for x in L), statistics.median(x["rows"] for x in L)
        print(f"vkdraft{' (' + exe + ')' if name != 'draft' else ''}: {s * 1e3:.0f} ms/step, {rows / s:.1f} training "
              f"tokens/s ({a.anchors} anchors x {a.block - 1} rows, context {a.context}; run {time.time() - t0:.0f}s; "
              f"load average {os.getloadavg()[0]:.1f})", flush=True)
        return s, out

    vk_s, out = vk_steps(a.vkdraft, "draft")
    if a.baseline:
        base_s, _ = vk_steps(a.baseline, "draft_baseline")
        print(f"speed-up over the baseline (baseline ms / vkdraft ms): {base_s / vk_s:.2f}", flush=True)
    if a.no_torch:
        return
    pt_s, pt_rows = torch_steps(a, a.target, out, ids, resp)
    print(f"PyTorch CPU f32 ({torch.get_num_threads()} threads): {pt_s * 1e3:.0f} ms/step, "
          f"{pt_rows / pt_s:.1f} training tokens/s (load average {os.getloadavg()[0]:.1f})")
    print(f"ratio (PyTorch ms / vkdraft ms): {pt_s / vk_s:.2f}")


if __name__ == "__main__":
    main()
