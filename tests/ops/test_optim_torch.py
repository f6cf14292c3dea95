#!/usr/bin/env python3
"""test_optim_torch: runs test_optim (which writes its inputs and device results) and replays
every configuration with torch.optim.AdamW / torch.optim.SGD, torch.nn.utils.clip_grad_norm_
and the learning rates of transformers' get_cosine_schedule_with_warmup (formula restated
here), in float32 as torch runs on CPU. Device parameters must match torch's after every
step within 1e-6 * (1 + |p|) (a few ulp of f32 state over 6 steps); norms within 1e-5.
usage: test_optim_torch.py TEST_OPTIM_BINARY"""
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("VKDRAFT_SOURCE_ROOT", "."), "tools", "reference"))
import numpy as np  # noqa: E402
import st  # noqa: E402

try:
    import torch
except ImportError:
    print("torch not available: skipped")
    sys.exit(77)

CFGS = {  # the configurations of test_optim.c
    "adamw_clip": dict(kind="adamw", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, wd=0.0, clip=1.0, warmup=2),
    "adamw_wd": dict(kind="adamw", lr=3e-3, betas=(0.8, 0.95), eps=1e-6, wd=0.1, clip=0.0, warmup=0),
    "adamw_b1low": dict(kind="adamw", lr=1e-3, betas=(0.3, 0.999), eps=1e-8, wd=0.0, clip=5.0, warmup=1),
    "sgd": dict(kind="sgd", lr=0.05, mom=0.0, damp=0.0, wd=0.0, clip=0.0, warmup=0),
    "sgd_mom_clip": dict(kind="sgd", lr=0.1, mom=0.9, damp=0.1, wd=0.01, clip=0.5, warmup=1),
}
STEPS, NT = 6, 2


def cosine(s, warmup, total):
    if s < warmup:
        return s / max(1, warmup)
    progress = (s - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optim.safetensors")
        r = subprocess.run([sys.argv[1], path])
        if r.returncode != 0:
            print("test_optim failed", file=sys.stderr)
            return 1
        t = st.read(path)
    fails, worst = 0, 0.0
    for name, c in CFGS.items():
        ps = [torch.nn.Parameter(torch.from_numpy(t[f"{name}.p0.{i}"].copy())) for i in range(NT)]
        if c["kind"] == "adamw":
            opt = torch.optim.AdamW(ps, lr=c["lr"], betas=c["betas"], eps=c["eps"], weight_decay=c["wd"])
        else:
            opt = torch.optim.SGD(ps, lr=c["lr"], momentum=c["mom"], dampening=c["damp"],
                                  weight_decay=c["wd"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine(s, c["warmup"], STEPS))
        for s in range(STEPS):
            lr_dev = float(t[f"{name}.lr"][s])
            lr_torch = opt.param_groups[0]["lr"]
            if abs(lr_dev - lr_torch) > 1e-7 * max(1.0, lr_torch):
                print(f"{name} step {s}: lr {lr_dev} vs torch {lr_torch}", file=sys.stderr)
                fails += 1
            for i, p in enumerate(ps):
                p.grad = torch.from_numpy(t[f"{name}.g.{s}.{i}"].copy())
            if c["clip"] > 0:
                n = float(torch.nn.utils.clip_grad_norm_(ps, c["clip"]))
                nd = float(t[f"{name}.norm"][s])
                if abs(n - nd) > 1e-5 * n:
                    print(f"{name} step {s}: norm {nd} vs torch {n}", file=sys.stderr)
                    fails += 1
            opt.step()
            sched.step()
            for i, p in enumerate(ps):
                dev = t[f"{name}.p.{s}.{i}"].astype(np.float64)
                ref = p.detach().numpy().astype(np.float64)
                err = np.abs(dev - ref) / (1 + np.abs(ref))
                worst = max(worst, float(err.max()))
                if not np.all(err <= 1e-6):
                    k = int(err.argmax())
                    print(f"{name} step {s} tensor {i}[{k}]: {dev[k]!r} vs torch {ref[k]!r}", file=sys.stderr)
                    fails += 1
        print(f"{name}: matches torch.optim over {STEPS} steps")
    print(f"test_optim_torch: worst |p - torch| / (1 + |p|) = {worst:.3g}, {fails} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
