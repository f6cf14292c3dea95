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
With --ft-block the exit head also trains a copy of decoder block l (seed 003's Option B):
h_l is then that block (ref.py's layer forward, written out again here with its own
parameters) applied to the target's output of block l-1 (the embeddings for l = 0), while
the teacher keeps the target's own block l; the file adds grad_block.<name> (gradients at
the start) and block.<name> (after K updates) for each of the block's tensors, <name> as in
the checkpoint without the "model.layers.<l>." prefix.

usage: exit_ref.py --target DIR --layer L --temperature T [--ce] [--ft-block] --seqs "1,2,3;4,5,6"
                   [--steps K --lr X --clip C] --out FILE
       exit_ref.py --selftest   (gradients of head and block against central finite differences)"""
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


def block_forward(target, p, x):
    """One decoder block with parameters p (checkpoint names without the layer prefix) on x
    (T, H) at positions 0..T-1, causal: the student's block l under --ft-block."""
    T = x.shape[0]
    pos = torch.arange(T)
    mask = torch.arange(T)[None, :] <= pos[:, None]
    a = ref.rms_norm(x, p["input_layernorm.weight"], target.eps)
    q = ref.heads(a @ p["self_attn.q_proj.weight"].T, target.nq, target.d)
    k = ref.heads(a @ p["self_attn.k_proj.weight"].T, target.nkv, target.d)
    v = ref.heads(a @ p["self_attn.v_proj.weight"].T, target.nkv, target.d)
    if "self_attn.q_norm.weight" in p:
        q = ref.rms_norm(q, p["self_attn.q_norm.weight"], target.eps)
        k = ref.rms_norm(k, p["self_attn.k_norm.weight"], target.eps)
    q = ref.rope(q, pos, target.inv_freq)
    k = ref.rope(k, pos, target.inv_freq)
    x = x + ref.unheads(ref.attention(q, k, v, mask)) @ p["self_attn.o_proj.weight"].T
    return x + ref.mlp(ref.rms_norm(x, p["post_attention_layernorm.weight"], target.eps), p)


def block_inputs(target, seqs, layer):
    """Per sequence (input of block `layer` (n, H), teacher logits (n, V))."""
    out = []
    with torch.no_grad():
        for s in seqs:
            logits, hidden = target.forward(s)
            x = hidden[layer - 1] if layer > 0 else target.embed[torch.as_tensor(s, dtype=torch.long)]
            out.append((x, logits))
    return out


def run(args):
    target = ref.Target.load(args.target)
    seqs = [[int(x) for x in part.split(",")] for part in args.seqs.split(";")]
    norm = target.norm.clone().requires_grad_(True)
    head = target.lm_head.clone().requires_grad_(True)
    block = {}
    if args.ft_block:
        xs = block_inputs(target, seqs, args.layer)
        block = {k: v.clone().requires_grad_(True) for k, v in sorted(target.layers[args.layer].items())}
    else:
        hs = forward_all(target, seqs, args.layer)
    params = [norm, head] + list(block.values())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    out = {}
    for k in range(args.steps + 1):
        opt.zero_grad()
        if block:
            hs = [(block_forward(target, block, x), tl) for x, tl in xs]
        loss = batch_loss(target, hs, seqs, norm, head, args.temperature, args.ce)
        out[f"loss.{k}"] = np.array([loss.item()])
        if k == args.steps:
            break
        loss.backward()
        if k == 0:
            out["grad_norm.weight"] = norm.grad.detach().numpy().copy()
            out["grad_lm_head.weight"] = head.grad.detach().numpy().copy()
            for name, v in block.items():
                out[f"grad_block.{name}"] = v.grad.detach().numpy().copy()
        gn = torch.nn.utils.clip_grad_norm_(params, args.clip) if args.clip > 0 else \
            torch.sqrt(sum(p.grad.pow(2).sum() for p in params))
        out[f"grad_global_norm.{k}"] = np.array([float(gn)])
        opt.step()
    out["norm.weight"] = norm.detach().numpy()
    out["lm_head.weight"] = head.detach().numpy()
    for name, v in block.items():
        out[f"block.{name}"] = v.detach().numpy()
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
    # --ft-block: the gradients of the block's parameters through block_forward
    Fake.nq, Fake.nkv, Fake.d, F = 2, 1, 4, 7
    Fake.inv_freq = ref.default_inv_freq(10000.0, Fake.d)
    Q, KV = Fake.nq * Fake.d, Fake.nkv * Fake.d
    shapes = {"input_layernorm.weight": (H,), "self_attn.q_proj.weight": (Q, H), "self_attn.k_proj.weight": (KV, H),
              "self_attn.v_proj.weight": (KV, H), "self_attn.q_norm.weight": (Fake.d,),
              "self_attn.k_norm.weight": (Fake.d,), "self_attn.o_proj.weight": (H, Q),
              "post_attention_layernorm.weight": (H,), "mlp.gate_proj.weight": (F, H), "mlp.up_proj.weight": (F, H),
              "mlp.down_proj.weight": (H, F)}
    block = {k: (1 + 0.1 * torch.randn(v) if len(v) == 1 else 0.4 * torch.randn(v)).requires_grad_(True)
             for k, v in shapes.items()}
    xs = [(torch.randn(len(s), H), tl) for s, (_, tl) in zip(seqs, hs)]
    norm, head = 1 + 0.1 * torch.randn(H), torch.randn(V, H)

    def block_loss():
        return batch_loss(Fake, [(block_forward(Fake, block, x), tl) for x, tl in xs], seqs, norm, head, 2.0, True)
    block_loss().backward()
    worst = 0.0
    for p in block.values():
        flat = p.detach().view(-1)
        for i in range(0, flat.numel(), 5):
            old = flat[i].item()
            h = 1e-6
            with torch.no_grad():
                flat[i] = old + h
                lp = block_loss().item()
                flat[i] = old - h
                lm = block_loss().item()
                flat[i] = old
            worst = max(worst, abs((lp - lm) / (2 * h) - p.grad.view(-1)[i].item()))
    print(f"exit_ref selftest block: max |autograd - finite difference| = {worst:.2e}")
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
    p.add_argument("--ft-block", action="store_true", help="also train a copy of block l (Option B)")
    p.add_argument("--seqs", required=True)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--out", required=True)
    run(p.parse_args())


if __name__ == "__main__":
    main()
