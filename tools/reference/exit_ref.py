#!/usr/bin/python3
"""exit_ref.py: float64 PyTorch reference of early-exit head distillation (seed 003).

For a target folder, an exit layer l, a temperature T and a batch of sequences, the head
(final norm + LM head, copied from the target) is trained on
    loss = sum_r w_r [ T^2 KL(softmax(t_r/T) || softmax(z_r/T)) + (ce: CE(z_r, ids[r+1])) ]
with z_r = (rmsnorm(h_l,r) * norm) head^T, t_r the target's own logits of the same pass,
w_r = 1 / (rows scored in the batch) for the rows scored (row 0 of each sequence masked,
and its last row too with CE, which has no label), 0 elsewhere. Written from the seed
document's objective, independently of the C code; the target forward is ref.py's.

Writes --out (safetensors, float32): loss.0 .. loss.K (batch loss before each of K AdamW
updates and after the last), grad_norm.weight / grad_lm_head.weight (gradients at the start),
norm.weight / lm_head.weight (after K updates), grad_global_norm.0.. (before clipping).

usage: exit_ref.py --target DIR --layer L --temperature T [--ce] --seqs "1,2,3;4,5,6"
                   [--steps K --lr X --clip C] --out FILE
       exit_ref.py --selftest   (gradients against central finite differences)"""
import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402
import st  # noqa: E402

torch.set_default_dtype(torch.float64)


def batch_loss(target, hs, seqs, norm, head, T, ce):
    """hs: per sequence (h_l (n, H), teacher logits (n, V)); returns the weighted batch loss."""
    scored = sum(max(len(s) - (2 if ce else 1), 0) for s in seqs)
    total = 0.0
    for s, (hl, tl) in zip(seqs, hs):
        n = len(s)
        last = n - 2 if ce else n - 1
        rows = torch.arange(1, last + 1)
        z = ref.rms_norm(hl[rows], norm, target.eps) @ head.T
        t = tl[rows]
        logp_t = torch.log_softmax(t / T, dim=-1)
        logq = torch.log_softmax(z / T, dim=-1)
        kl = (logp_t.exp() * (logp_t - logq)).sum(-1) * T * T
        term = kl
        if ce:
            labels = torch.as_tensor(s, dtype=torch.long)[rows + 1]
            term = term - torch.log_softmax(z, dim=-1)[torch.arange(len(rows)), labels]
        total = total + term.sum() / scored
    return total


def forward_all(target, seqs, layer):
    out = []
    with torch.no_grad():
        for s in seqs:
            logits, hidden = target.forward(s)
            out.append((hidden[layer], logits))
    return out


def run(args):
    target = ref.Target.load(args.target)
    seqs = [[int(x) for x in part.split(",")] for part in args.seqs.split(";")]
    hs = forward_all(target, seqs, args.layer)
    norm = target.norm.clone().requires_grad_(True)
    head = target.lm_head.clone().requires_grad_(True)
    opt = torch.optim.AdamW([norm, head], lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    out = {}
    for k in range(args.steps + 1):
        opt.zero_grad()
        loss = batch_loss(target, hs, seqs, norm, head, args.temperature, args.ce)
        out[f"loss.{k}"] = np.array([loss.item()])
        if k == args.steps:
            break
        loss.backward()
        if k == 0:
            out["grad_norm.weight"] = norm.grad.detach().numpy().copy()
            out["grad_lm_head.weight"] = head.grad.detach().numpy().copy()
        gn = torch.nn.utils.clip_grad_norm_([norm, head], args.clip) if args.clip > 0 else \
            torch.sqrt(norm.grad.pow(2).sum() + head.grad.pow(2).sum())
        out[f"grad_global_norm.{k}"] = np.array([float(gn)])
        opt.step()
    out["norm.weight"] = norm.detach().numpy()
    out["lm_head.weight"] = head.detach().numpy()
    st.write(args.out, {k: np.asarray(v, dtype=np.float32) for k, v in out.items()})


def selftest():
    """The autograd gradients of batch_loss against central differences on a random model."""
    torch.manual_seed(0)
    H, V = 6, 11

    class Fake:
        eps = 1e-6
    seqs = [[1, 4, 7, 2, 9], [3, 3, 8, 10]]
    hs = [(torch.randn(len(s), H), torch.randn(len(s), V) * 3) for s in seqs]
    for ce in (False, True):
        norm = (1 + 0.1 * torch.randn(H)).requires_grad_(True)
        head = torch.randn(V, H).requires_grad_(True)
        loss = batch_loss(Fake, hs, seqs, norm, head, 2.0, ce)
        loss.backward()
        worst = 0.0
        for p in (norm, head):
            flat = p.detach().view(-1)
            for i in range(0, flat.numel(), 3):
                old = flat[i].item()
                h = 1e-6
                with torch.no_grad():
                    flat[i] = old + h
                    lp = batch_loss(Fake, hs, seqs, norm.detach(), head.detach(), 2.0, ce).item()
                    flat[i] = old - h
                    lm = batch_loss(Fake, hs, seqs, norm.detach(), head.detach(), 2.0, ce).item()
                    flat[i] = old
                fd = (lp - lm) / (2 * h)
                worst = max(worst, abs(fd - p.grad.view(-1)[i].item()))
        print(f"exit_ref selftest ce={ce}: max |autograd - finite difference| = {worst:.2e}")
        if not worst < 1e-7:
            sys.exit(1)


def main():
    if "--selftest" in sys.argv:
        selftest()
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--ce", action="store_true")
    p.add_argument("--seqs", required=True)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--out", required=True)
    run(p.parse_args())


if __name__ == "__main__":
    main()
