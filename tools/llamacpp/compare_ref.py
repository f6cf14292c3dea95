#!/usr/bin/python3
"""compare_ref.py: compare llama.cpp's greedy continuation and logits with tools/reference/ref.py.

  compare_ref.py MODEL_DIR --ids 1,2,3 --gen N --llama-ids a,b,c --logits FILE [--tol T]

--llama-ids / --logits are what llama_peer_bench printed (--print-ids) and wrote
(--dump-logits): logits rows for the prompt positions then for the N-1 decode steps.
Checks: (1) the greedy ids equal ref.Target.greedy's exactly; (2) on the same sequence the
argmax of llama.cpp's logits equals the reference's at every position (prompt positions
included), except where the reference's top-1/top-2 gap is below 2x the observed error;
(3) max |logit difference| <= tol * max |reference logit| (default tol 0.02: llama.cpp's CPU
backend rounds activations to the weight type, bf16 / f16, before each matmul).
Prints one line `conversion-check <model> ... OK|FAIL` and exits 1 on FAIL.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--gen", type=int, required=True)
    ap.add_argument("--llama-ids", required=True)
    ap.add_argument("--logits", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--tol", type=float, default=0.02)
    a = ap.parse_args()
    prompt = [int(x) for x in a.ids.split(",")]
    got = [int(x) for x in a.llama_ids.split(",")]
    tgt = ref.Target.load(a.model_dir)
    want = tgt.greedy(prompt, a.gen)
    seq = prompt + want
    with torch.no_grad():
        lg_ref, _ = tgt.forward(seq[:-1])
    lg_ref = lg_ref.numpy()                                   # (P + N - 1, V)
    V = lg_ref.shape[1]
    lg = np.fromfile(a.logits, dtype=np.float32)
    rows = lg.size // V
    lg = lg.reshape(rows, V).astype(np.float64)
    ok = True
    msgs = []
    if got != want:
        ok = False
        k = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) if \
            any(g != w for g, w in zip(got, want)) else min(len(got), len(want))
        msgs.append(f"greedy differs at step {k}: llama.cpp {got[k:k+4]} reference {want[k:k+4]}")
    n = min(rows, lg_ref.shape[0]) if got == want else len(prompt)
    diff = np.abs(lg[:n] - lg_ref[:n])
    maxdiff = float(diff.max())
    scale = float(np.abs(lg_ref[:n]).max())
    srt = np.sort(lg_ref[:n], axis=1)
    gap = srt[:, -1] - srt[:, -2]
    am_ok = (lg[:n].argmax(1) == lg_ref[:n].argmax(1)) | (gap < 2 * maxdiff)
    if not am_ok.all():
        ok = False
        msgs.append(f"argmax differs at positions {np.nonzero(~am_ok)[0][:8].tolist()}")
    if maxdiff > a.tol * scale:
        ok = False
        msgs.append(f"max |dlogit| {maxdiff:.4g} > {a.tol} * {scale:.4g}")
    print(f"conversion-check {a.label or os.path.basename(a.model_dir)} prompt={len(prompt)} gen={a.gen} "
          f"greedy_match={'yes' if got == want else 'no'} positions={n} max_abs_dlogit={maxdiff:.4g} "
          f"max_abs_logit={scale:.4g} rel={maxdiff / scale:.2e} min_top2_gap={float(gap.min()):.4g} "
          f"{'OK' if ok else 'FAIL'}" + ("" if ok else " (" + "; ".join(msgs) + ")"))
    if not ok:
        print(f"  reference: {want}\n  llama.cpp: {got}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
