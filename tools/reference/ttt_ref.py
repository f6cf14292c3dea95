#!/usr/bin/python3
"""ttt_ref.py: independent PyTorch (float64) reference of one test-time-training step of the
DFlash draft with LoRA (issue 13's objective), for checking vkdraft's `ttt`.

  ttt_ref.py --target DIR --draft DIR --ids 1,2,3,... --anchors a1,a2,... --out DIR
             [--adapter DIR | --rank 8 --lora-alpha 16 --lora-targets fc,k_proj,v_proj --seed S]
             [--gamma 7] [--block-size B] [--optimizer sgd|adamw --lr X [--steps N]]
  ttt_ref.py --selftest

Objective (exactly): the target runs once over x_0..x_{T-1} with taps (F = hidden states of
the draft's target_layer_ids, concatenated). For each anchor a (1 <= a <= T-2) the draft gets
the block [x_a, MASK x (B-1)] at positions a..a+B-1 with context features F[0:a]; block row k
(1 <= k <= B-1, a+k <= T-1) predicts x_{a+k} with weight w_k = exp(-(k-1)/gamma).
  loss = sum_{a,k} w_k CE(logits_{a,k}, x_{a+k}) / sum_{a,k} w_k
LoRA (PEFT semantics) on each adapted linear: y = x W^T + s (x A^T) B^T, s = alpha/r
(alpha/sqrt(r) with use_rslora), evaluated here as x (W + s B A)^T (the same function).
The adapter is read from a PEFT folder (tools/reference/lora_ref.py: f32/bf16/f16), or
created as vkdraft does (Philox Kaiming-uniform A, B = 0).

Outputs in --out:
  ttt_ref.json              loss (before any update), rows, weight sum, losses (the loss
                            before each update, then after the last one), scale, anchors,
                            module paths
  grads.safetensors         d loss / d A and d loss / d B under the PEFT tensor names
                            (base_model.model.<path>.lora_{A,B}.weight), F32
  adapter_after/            with --optimizer: the adapter after --steps updates
                            (torch.optim.SGD / AdamW, defaults betas 0.9/0.999, eps 1e-8, wd 0)
--selftest generates a tiny target + draft pair and a non-zero bf16 adapter, then checks
every LoRA gradient against central finite differences (float64) and that a zero-B adapter
leaves the draft's logits bit-identical."""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lora_ref  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402

DT = torch.float64


class TTT:
    def __init__(self, target_dir, draft_dir, block_size=None):
        self.T = ref.Target.load(target_dir, DT)
        self.cfg = ref.load_config(draft_dir)
        self.base = ref.to_torch(st.read_model(draft_dir), DT)
        self.D = ref.Draft(self.cfg, None, self.T, DT, params=self.base)
        self.B = block_size or self.D.block_size
        self.linears = {p: (i, o) for p, i, o in lora_ref.draft_linears(self._dims_cfg())}

    def _dims_cfg(self):
        c = dict(self.cfg)
        c["dflash_config"] = {"target_layer_ids": self.D.layer_ids}
        return c

    def features(self, ids):
        with torch.no_grad():
            _, hidden = self.T.forward(torch.tensor(ids))
        return self.D.features(hidden)

    def params(self, lora, scale):
        p = dict(self.base)
        for path, (A, B) in lora.items():
            p[path + ".weight"] = self.base[path + ".weight"] + scale * (B @ A)
        return p

    def loss(self, F, ids, anchors, lora, scale, gamma):
        """Weighted CE of the objective; also returns (rows, weight sum)."""
        self.D.p = self.params(lora, scale)
        mask = self.D.mask_token_id
        total, wsum, rows = torch.zeros((), dtype=DT), 0.0, 0
        for a in anchors:
            block = [ids[a]] + [mask] * (self.B - 1)
            logits, _ = self.D.forward(F[:a], block, a, None)
            for k in range(1, self.B):
                if a + k > len(ids) - 1:
                    break
                w = math.exp(-(k - 1) / gamma)
                ce = torch.logsumexp(logits[k - 1], dim=-1) - logits[k - 1][ids[a + k]]
                total = total + w * ce
                wsum += w
                rows += 1
        self.D.p = self.base
        return total / wsum, rows, wsum


def new_adapter(ttt, targets, rank, alpha, seed):
    mods = {}
    for path, (fin, fout) in ttt.linears.items():
        if any(lora_ref.matches(t, path) for t in targets):
            mods[path] = (lora_ref.init_a(seed, path, rank, fin).astype(np.float64), np.zeros((fout, rank)))
    for t in targets:
        if not any(lora_ref.matches(t, p) for p in ttt.linears):
            raise SystemExit(f"ttt_ref: target '{t}' names no linear of the draft")
    return mods, alpha / rank


def check_adapter(ttt, mods, cfg):
    r = cfg["r"]
    for path, (A, B) in mods.items():
        if path not in ttt.linears:
            raise SystemExit(f"ttt_ref: adapter module '{path}' is not a linear of the draft")
        fin, fout = ttt.linears[path]
        if A.shape != (r, fin) or B.shape != (fout, r):
            raise SystemExit(f"ttt_ref: adapter '{path}': A {A.shape}, B {B.shape}, expected ({r}, {fin}), "
                             f"({fout}, {r})")


def run(ttt, ids, anchors, mods, scale, gamma, optimizer=None, lr=None, steps=1):
    """Returns (loss before updates, rows, wsum, grads {path: (gA, gB)}, per-step losses,
    updated mods or None)."""
    for a in anchors:
        if not 1 <= a <= len(ids) - 2:
            raise SystemExit(f"ttt_ref: anchor {a} outside 1..{len(ids) - 2}")
    F = ttt.features(ids)
    leaves = {p: (torch.tensor(A, dtype=DT, requires_grad=True), torch.tensor(B, dtype=DT, requires_grad=True))
              for p, (A, B) in mods.items()}
    flat = [t for ab in leaves.values() for t in ab]
    opt = None
    if optimizer == "sgd":
        opt = torch.optim.SGD(flat, lr=lr)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(flat, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses, first = [], None
    n_steps = steps if opt else 1
    for s in range(n_steps):
        for t in flat:
            t.grad = None
        loss, rows, wsum = ttt.loss(F, ids, anchors, leaves, scale, gamma)
        loss.backward()
        losses.append(float(loss))
        if s == 0:
            first = (float(loss), rows, wsum,
                     {p: (A.grad.detach().clone().numpy(), B.grad.detach().clone().numpy())
                      for p, (A, B) in leaves.items()})
        if opt:
            opt.step()
    if opt:
        with torch.no_grad():
            loss, _, _ = ttt.loss(F, ids, anchors, leaves, scale, gamma)
        losses.append(float(loss))
    after = {p: (A.detach().numpy().copy(), B.detach().numpy().copy()) for p, (A, B) in leaves.items()} if opt else None
    return first[0], first[1], first[2], first[3], losses, after


def write_outputs(out, loss, rows, wsum, grads, losses, after, scale, anchors, cfg):
    os.makedirs(out, exist_ok=True)
    t = {}
    for p, (gA, gB) in grads.items():
        t[lora_ref.PREFIX + p + ".lora_A.weight"] = gA.astype(np.float32)
        t[lora_ref.PREFIX + p + ".lora_B.weight"] = gB.astype(np.float32)
    st.write(os.path.join(out, "grads.safetensors"), t, "F32")
    with open(os.path.join(out, "ttt_ref.json"), "w") as f:
        json.dump({"loss": loss, "rows": rows, "weight_sum": wsum, "losses": losses, "scale": scale,
                   "anchors": anchors, "modules": sorted(grads)}, f, indent=2)
    if after is not None:
        lora_ref.write_adapter(os.path.join(out, "adapter_after"), after, cfg["r"], cfg["lora_alpha"],
                               cfg["target_modules"], cfg.get("base_model_name_or_path"))


def selftest():
    here = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tdir, ddir, adir = (os.path.join(tmp, x) for x in ("target", "draft", "adapter"))
        py = sys.executable
        subprocess.run([py, os.path.join(here, "gen_model.py"), "--hidden", "32", "--layers", "3", "--heads", "4",
                        "--kv-heads", "2", "--head-dim", "8", "--ffn", "48", "--vocab", "97", "--dtype", "f32",
                        "--seed", "5", "--out", tdir], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([py, os.path.join(here, "gen_dflash.py"), "--target", tdir, "--out", ddir, "--layers", "2",
                        "--block-size", "5", "--train-steps", "0", "--dtype", "bf16", "--seed", "6"],
                       check=True, stdout=subprocess.DEVNULL)
        ttt = TTT(tdir, ddir)
        rng = np.random.default_rng(11)
        ids = [int(x) for x in rng.integers(0, 96, size=14)]
        anchors = [1, 5, 11]            # 11: only rows k = 1, 2 fit (a + k <= 13)
        targets = ["fc", "q_proj", "k_proj", "v_proj"]
        mods, _ = new_adapter(ttt, targets, 3, 5.0, 42)
        mods = {p: (A, rng.normal(0, 0.2, size=B.shape)) for p, (A, B) in mods.items()}
        lora_ref.write_adapter(adir, mods, 3, 5.0, targets, dtype="BF16")
        cfg, mods, scale = lora_ref.read_adapter(adir)
        check_adapter(ttt, mods, cfg)
        loss, rows, wsum, grads, _, _ = run(ttt, ids, anchors, mods, scale, 7.0)
        want_rows = 4 + 4 + 2
        assert rows == want_rows, f"rows {rows}, expected {want_rows}"
        F = ttt.features(ids)

        def f(m):
            with torch.no_grad():
                v, _, _ = ttt.loss(F, ids, anchors, {p: (torch.tensor(A), torch.tensor(B)) for p, (A, B) in m.items()},
                                   scale, 7.0)
            return float(v)

        assert abs(f(mods) - loss) < 1e-12
        worst, checked, h = 0.0, 0, 1e-6
        for p in sorted(mods):
            for which in (0, 1):
                g = grads[p][which]
                gmax = float(np.abs(g).max())
                assert gmax > 0, f"{p}: zero gradient"
                for _ in range(4):
                    idx = tuple(int(rng.integers(0, s)) for s in g.shape)
                    mp, mm = {k: [v[0].copy(), v[1].copy()] for k, v in mods.items()}, \
                        {k: [v[0].copy(), v[1].copy()] for k, v in mods.items()}
                    mp[p][which][idx] += h
                    mm[p][which][idx] -= h
                    fd = (f(mp) - f(mm)) / (2 * h)
                    err = abs(fd - g[idx]) / (gmax + 1e-12)
                    worst = max(worst, err)
                    checked += 1
                    assert err < 1e-6, f"{p} {'AB'[which]}{idx}: autograd {g[idx]:.10g}, finite differences {fd:.10g}"
        # a zero-B adapter leaves the draft's logits bit-identical
        zero = {p: (torch.tensor(A), torch.zeros(B.shape, dtype=DT)) for p, (A, B) in mods.items()}
        block = [ids[5]] + [ttt.D.mask_token_id] * (ttt.B - 1)
        with torch.no_grad():
            plain, _ = ttt.D.forward(F[:5], block, 5, None)
            ttt.D.p = ttt.params(zero, scale)
            adapted, _ = ttt.D.forward(F[:5], block, 5, None)
            ttt.D.p = ttt.base
        assert torch.equal(plain, adapted), "zero-B adapter changed the logits"
        # one SGD step moves every parameter by -lr * grad; AdamW lowers the loss
        _, _, _, _, losses, after = run(ttt, ids, anchors, mods, scale, 7.0, "sgd", 0.5, 1)
        dmax = max(float(np.abs(after[p][w] - (mods[p][w] - 0.5 * grads[p][w])).max()) for p in mods for w in (0, 1))
        assert dmax < 1e-12, f"SGD update off by {dmax}"
        _, _, _, _, losses, _ = run(ttt, ids, anchors, mods, scale, 7.0, "adamw", 1e-2, 5)
        assert losses[-1] < losses[0], f"AdamW did not lower the loss: {losses}"
        print(f"ttt_ref selftest: loss {loss:.6f} over {rows} rows; {checked} gradient entries of {len(mods)} "
              f"modules vs finite differences, worst {worst:.2e} (relative to the tensor's max); zero-B exact; "
              f"AdamW 5 steps {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--selftest", action="store_true")
    p.add_argument("--target")
    p.add_argument("--draft")
    p.add_argument("--ids", help="comma-separated token ids x_0..x_{T-1}")
    p.add_argument("--anchors", help="comma-separated anchors")
    p.add_argument("--adapter", help="PEFT adapter folder to start from")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lora-alpha", dest="alpha", type=float, default=16.0)
    p.add_argument("--lora-targets", dest="targets", default="fc,k_proj,v_proj")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gamma", type=float, default=7.0)
    p.add_argument("--block-size", dest="block_size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--out")
    a = p.parse_args()
    if a.selftest:
        return selftest()
    for need in ("target", "draft", "ids", "anchors", "out"):
        if getattr(a, need) is None:
            p.error(f"--{need} is required (or --selftest)")
    if a.optimizer and not (a.lr and a.lr > 0):
        p.error("--optimizer needs --lr > 0")
    ttt = TTT(a.target, a.draft, a.block_size)
    ids = [int(x) for x in a.ids.split(",")]
    anchors = [int(x) for x in a.anchors.split(",")]
    if a.adapter:
        cfg, mods, scale = lora_ref.read_adapter(a.adapter)
        check_adapter(ttt, mods, cfg)
    else:
        targets = a.targets.split(",")
        mods, scale = new_adapter(ttt, targets, a.rank, a.alpha, a.seed)
        cfg = {"r": a.rank, "lora_alpha": a.alpha, "target_modules": targets}
    loss, rows, wsum, grads, losses, after = run(ttt, ids, anchors, mods, scale, a.gamma, a.optimizer, a.lr,
                                                 a.steps)
    write_outputs(a.out, loss, rows, wsum, grads, losses, after, scale, anchors, cfg)
    print(f"ttt_ref: loss {loss:.8f} over {rows} rows (weight sum {wsum:.6f}); wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
