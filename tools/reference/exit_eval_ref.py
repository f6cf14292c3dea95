#!/usr/bin/python3
"""exit_eval_ref.py: float64 PyTorch reference of vkdraft exit-eval's metrics (seed 003).

Written from the seed document's metrics section, independently of the C code; the target
forward is ref.py's. For a target folder and an exit head folder (exit.safetensors:
norm.weight, lm_head.weight; exit_config.json: exit_layer), with t the target's logits and
z = (rmsnorm(h_l) * norm) head^T the head's, row r predicting ids[r+1]:

  quality, per sequence, rows 1..n-2 (the first token masked, the last has no label):
    kl_t = sum_r KL(softmax(t_r/T) || softmax(z_r/T)), kl_1 the same at T = 1,
    ce = sum_r -log softmax(z_r)[ids[r+1]], top1 / topk = rows whose label has fewer than
    1 / k strictly larger head logits, rows = rows scored;
  overlap, per (ids, r0), rows r0..n-2: sum_r sum_v min(p_r(v), q_r(v)), p and q the
    target's and the head's distributions after temperature, then top-k (keep values >= the
    k-th largest), then top-p (transformers' TopPLogitsWarper), renormalised.

usage: exit_eval_ref.py --target DIR --head DIR --kl-temperature T --topk K
                        [--temperature X --top-k K --top-p P] < job.json
job.json: {"quality": [[ids], ...], "overlap": [[[ids], r0], ...]}; prints
{"quality": [{kl_t, kl_1, ce, top1, topk, rows}, ...], "overlap": [{sum, rows}, ...]}."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402
import st  # noqa: E402

torch.set_default_dtype(torch.float64)


def load_head(folder):
    w = st.read(os.path.join(folder, "exit.safetensors"))
    with open(os.path.join(folder, "exit_config.json")) as f:
        layer = json.load(f)["exit_layer"]
    return (torch.as_tensor(w["norm.weight"], dtype=torch.float64),
            torch.as_tensor(w["lm_head.weight"], dtype=torch.float64), layer)


def logits_both(target, head, ids):
    norm, lm, layer = head
    with torch.no_grad():
        t, hidden = target.forward(ids)
        z = ref.rms_norm(hidden[layer], norm, target.eps) @ lm.T
    return t, z


def warp(logits, temperature, top_k, top_p):
    if temperature == 0:
        p = torch.zeros_like(logits)
        p[int(torch.argmax(logits))] = 1.0
        return p
    x = logits / temperature
    if top_k > 0 and top_k < x.numel():
        kth = torch.topk(x, top_k).values[-1]
        x = torch.where(x >= kth, x, torch.tensor(float("-inf")))
    p = torch.softmax(x, -1)
    if 0 < top_p < 1:
        order = sorted(range(x.numel()), key=lambda v: (-float(x[v]), v))
        keep = torch.zeros_like(p, dtype=torch.bool)
        mass = 0.0
        for v in order:
            if mass >= top_p and keep.any():
                break
            keep[v] = True
            mass += float(p[v])
        p = torch.where(keep, p, torch.zeros_like(p))
        p = p / p.sum()
    return p


def quality(target, head, ids, T, k):
    t, z = logits_both(target, head, ids)
    n = len(ids)
    out = dict(kl_t=0.0, kl_1=0.0, ce=0.0, top1=0, topk=0, rows=0)
    for r in range(1, n - 1):
        for key, temp in (("kl_t", T), ("kl_1", 1.0)):
            lp = torch.log_softmax(t[r] / temp, -1)
            lq = torch.log_softmax(z[r] / temp, -1)
            out[key] += float((lp.exp() * (lp - lq)).sum())
        label = ids[r + 1]
        out["ce"] += float(-torch.log_softmax(z[r], -1)[label])
        rank = int((z[r] > z[r][label]).sum())
        out["top1"] += rank == 0
        out["topk"] += rank < k
        out["rows"] += 1
    return out


def overlap(target, head, ids, r0, args):
    t, z = logits_both(target, head, ids)
    s, rows = 0.0, 0
    for r in range(r0, len(ids) - 1):
        p = warp(t[r], args.temperature, args.top_k, args.top_p)
        q = warp(z[r], args.temperature, args.top_k, args.top_p)
        s += float(torch.minimum(p, q).sum())
        rows += 1
    return dict(sum=s, rows=rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--head", required=True)
    p.add_argument("--kl-temperature", dest="kl_t", type=float, required=True)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", dest="top_k", type=int, default=0)
    p.add_argument("--top-p", dest="top_p", type=float, default=0.0)
    a = p.parse_args()
    job = json.load(sys.stdin)
    target = ref.Target.load(a.target)
    head = load_head(a.head)
    res = {"quality": [quality(target, head, s, a.kl_t, a.topk) for s in job.get("quality", [])],
           "overlap": [overlap(target, head, s, r0, a) for s, r0 in job.get("overlap", [])]}
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
