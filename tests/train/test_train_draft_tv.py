"""test_train_draft_tv: `vkdraft train-draft --loss ce+tv` (DSpark's loss, issue 15) on a tiny pair.

Pair and data as test_train_draft_batch.py: the bigram-chain Qwen3 target (vocabulary 512),
a 1-layer draft, block 4, token-id records with responses, --anchors-per-seq 64 (every
response position an anchor, so a step's rows follow from the sequence alone).
  - one-sequence steps with --lr 1e-12 (weights do not move) against tools/reference in
    float64 (PyTorch autograd, tools/reference/dspark_ref.py, one draft call per anchor on the
    f32 checkpoint, p from the target's logits at the position before each label): the
    loss, the gradient norm (before clipping) and tv_accept within 1e-5 relative, for the
    defaults (ce_w 0.1, tv_w 0.9) and --ce-weight 0.5 --tv-weight 2;
  - ce+tv training (lr 5e-3, 40 steps) lowers the loss (mean of the last 5 steps < 0.8 x the
    first; measured 0.72) and raises tv_accept;
  - bad input is one line: --tv-weight -1, --loss kl, --ce-weight with --loss ce.
usage: test_train_draft_tv.py"""
import json
import math
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vkd_cli  # noqa: E402
from vkd_cli import SRC, check, run  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "tools", "reference"))
B = 4


def log(path):
    with open(path) as f:
        return [json.loads(x) for x in f if "loss" in x]


def reference(tgt, draft_dir, seqs, ce_w, tv_w):
    """float64 loss, gradient norm and TV acceptance of a one-sequence step, per sequence (rows -> values)"""
    import torch
    import ref
    import dspark_ref
    T = ref.Target.load(tgt, dtype=torch.float64)
    out = {}
    for p, r in seqs:
        D = ref.Draft.load(draft_dir, T, dtype=torch.float64)
        params = [x.requires_grad_(True) for x in D.p.values()]
        ids, resp = p + r, len(p)
        with torch.no_grad():
            tlogits, hidden = T.forward(ids)
        feats = D.features(hidden)
        terms, wsum, rows, acc = [], 0.0, 0, 0.0
        for a in range(max(resp, 1), len(ids) - 1):
            k = min(B - 1, len(ids) - 1 - a)
            logits, _ = D.forward(feats[:a], [ids[a]] + [D.mask_token_id] * (B - 1), a)
            w = torch.tensor([math.exp(-(j - 1) / 7.0) for j in range(1, k + 1)], dtype=torch.float64)
            # row j predicts ids[a + j]; the target's distribution for it comes from position a + j - 1
            rl, l1 = dspark_ref.row_losses(logits[:k], tlogits[a: a + k], torch.tensor(ids[a + 1: a + 1 + k]),
                                           ce_w, tv_w)
            terms.append((rl * w).sum())
            wsum += float(w.sum())
            rows += k
            acc += float((1 - 0.5 * l1).sum())
        loss = sum(terms) / wsum
        loss.backward()
        gn = math.sqrt(sum(float((x.grad ** 2).sum()) for x in params))
        out[rows] = (float(loss), gn, acc / rows)
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="vkd_train_tv_")
    tgt, data, seqs = vkd_cli.chain_target_data(tmp)
    base = ["train-draft", "--target", tgt, "--data", data, "--block-size", str(B), "--layers", "1",
            "--target-layers", "1,2", "--anchors-per-seq", "64", "--eval-prompts", "1", "--seed", "3", "--quiet"]

    for name, extra, ce_w, tv_w in [("tv", [], 0.1, 0.9), ("tvw", ["--ce-weight", "0.5", "--tv-weight", "2"], 0.5, 2.0)]:
        out = os.path.join(tmp, name)
        run(base + ["--loss", "ce+tv", "--lr", "1e-12", "--batch-tokens", "1", "--out", out] + extra)
        steps = log(os.path.join(out, "train", "log.jsonl"))
        check(len(steps) == 3 and all("tv_accept" in x for x in steps), f"{name}: log lines {steps}")
        R = reference(tgt, os.path.join(out, "train", "ckpt"), seqs[:3], ce_w, tv_w)
        for x in steps:
            if x["rows"] not in R:
                check(False, f"{name}: a step of {x['rows']} rows, expected one of {sorted(R)}")
                continue
            rl, rg, ra = R[x["rows"]]
            el, eg, ea = (abs(x["loss"] - rl) / abs(rl), abs(x["grad_norm"] - rg) / abs(rg),
                          abs(x["tv_accept"] - ra) / abs(ra))
            print(f"ce+tv ({ce_w}, {tv_w}) step of {x['rows']} rows vs float64 reference: loss {x['loss']:.8f} / "
                  f"{rl:.8f} ({el:.2g}), grad norm {x['grad_norm']:.8f} / {rg:.8f} ({eg:.2g}), tv_accept "
                  f"{x['tv_accept']:.6f} / {ra:.6f} ({ea:.2g})", file=sys.stderr)
            check(el < 1e-5 and eg < 1e-5 and ea < 1e-5, f"{name}: step of {x['rows']} rows vs float64 reference: "
                  f"loss {el:.3g}, grad norm {eg:.3g}, tv_accept {ea:.3g}")

    out = os.path.join(tmp, "train")
    run(base + ["--loss", "ce+tv", "--lr", "5e-3", "--steps", "40", "--out", out])
    steps = log(os.path.join(out, "train", "log.jsonl"))
    losses, accs = [x["loss"] for x in steps], [x["tv_accept"] for x in steps]
    last, acc_last = sum(losses[-5:]) / 5, sum(accs[-5:]) / 5
    print(f"ce+tv training: loss {losses[0]:.4f} -> {last:.4f}, tv_accept {accs[0]:.4f} -> {acc_last:.4f} "
          f"(means of the last 5 of {len(steps)} steps)", file=sys.stderr)
    check(len(steps) == 40, f"{len(steps)} steps, expected 40")
    check(last < 0.8 * losses[0], f"ce+tv loss does not go down: {losses[0]:.4f} -> {last:.4f}")
    check(acc_last > accs[0] and all(0 <= a <= 1 for a in accs), f"tv_accept {accs[0]:.4f} -> {acc_last:.4f}")

    for extra, word in [(["--loss", "ce+tv", "--tv-weight", "-1"], "--tv-weight"), (["--loss", "kl"], "--loss"),
                        (["--ce-weight", "0.5"], "--ce-weight")]:
        p = run(base + extra + ["--out", os.path.join(tmp, "bad")], ok=False)
        err = p.stderr.strip().splitlines()
        print(f"{' '.join(extra)}: {err}", file=sys.stderr)
        check(p.returncode != 0 and len(err) == 1 and word in err[0], f"{extra}: exit {p.returncode}, {err}")
    shutil.rmtree(tmp)
    if vkd_cli.failures:
        sys.exit(f"test_train_draft_tv: {vkd_cli.failures} checks failed")
    print("test_train_draft_tv: OK", file=sys.stderr)


if __name__ == "__main__":
    main()
