"""test_train_draft_batch: `vkdraft train-draft --batch-tokens N` (issue 15) on a tiny pair.

Pair: the bigram-chain Qwen3 target of test_train_draft.py (vocabulary 512), a 1-layer
draft, block 4. Data: 4 token-id records with their responses (no --regenerate), of
distinct lengths, the last held out; --anchors-per-seq 64 exceeds every response, so every
response position is an anchor and a sequence's rows and position weights follow from its
length alone. --lr 1e-12: the weights do not move, so a sequence's loss does not depend on
the step that takes it.
  - --batch-tokens 1 (every step one sequence, as without the flag): 3 steps per epoch, and
    the same log, bit for bit, as a run without --batch-tokens;
  - --batch-tokens 10000 (the whole epoch in one step), --epochs 2: 2 steps, each with the
    rows of all 3 sequences, its loss the position-weighted mean of the 3 one-sequence
    losses (sum_i W_i L_i / sum_i W_i, W_i the sequence's sum of exp(-(k-1)/7) over its
    rows), within 1e-5 relative;
  - every one-sequence step (blocks of all its anchors in one block-sparse pass) against
    tools/reference in float64 (PyTorch autograd, one draft call per anchor on the f32
    checkpoint): the loss and the gradient norm (before clipping) within 1e-6 relative;
  - --batch-tokens 0 is refused in one line.
  - --init DIR: a run with another --seed (other random weights) started from the bf16
    export of the first run has, step by step, the float64 reference's loss of that export;
    one started from its f32 checkpoint repeats the first run's losses; the plain run with
    that seed does not (the seed moves the initial weights); a draft of another block size or
    a missing folder is refused in one line naming it, and leaves no --out folder behind.
usage: test_train_draft_batch.py"""
import json
import math
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vkd_cli  # noqa: E402
from vkd_cli import check, run  # noqa: E402

B = 4


def log(path):
    with open(path) as f:
        return [json.loads(x) for x in f if "loss" in x]


def rows_weight(n, resp):
    """trained rows and position-weight sum of a sequence of n tokens, response from resp,
    every position resp..n-2 an anchor"""
    rows, w = 0, 0.0
    for a in range(max(resp, 1), n - 1):
        for k in range(1, B):
            if a + k <= n - 1:
                rows += 1
                w += math.exp(-(k - 1) / 7.0)
    return rows, w


def reference(tgt, draft_dir, seqs):
    """float64 loss and gradient norm of a one-sequence step, per sequence (rows -> values)"""
    import torch
    import ref
    T = ref.Target.load(tgt, dtype=torch.float64)
    out = {}
    for p, r in seqs:
        D = ref.Draft.load(draft_dir, T, dtype=torch.float64)
        params = [x.requires_grad_(True) for x in D.p.values()]
        ids, resp = p + r, len(p)
        with torch.no_grad():
            _, hidden = T.forward(ids)
        feats = D.features(hidden)
        terms, wsum, rows = [], 0.0, 0
        for a in range(max(resp, 1), len(ids) - 1):
            k = min(B - 1, len(ids) - 1 - a)
            logits, _ = D.forward(feats[:a], [ids[a]] + [D.mask_token_id] * (B - 1), a)
            w = torch.tensor([math.exp(-(j - 1) / 7.0) for j in range(1, k + 1)], dtype=torch.float64)
            ce = torch.nn.functional.cross_entropy(logits[:k], torch.tensor(ids[a + 1: a + 1 + k]), reduction="none")
            terms.append((ce * w).sum())
            wsum += float(w.sum())
            rows += k
        loss = sum(terms) / wsum
        loss.backward()
        gn = math.sqrt(sum(float((x.grad ** 2).sum()) for x in params))
        out[rows] = (float(loss), gn)
    return out


def log_of(base, extra, out):
    run(base + extra + ["--out", out])
    return log(os.path.join(out, "train", "log.jsonl"))


def main():
    tmp = tempfile.mkdtemp(prefix="vkd_train_batch_")
    tgt, data, seqs = vkd_cli.chain_target_data(tmp)
    base = ["train-draft", "--target", tgt, "--data", data, "--block-size", str(B), "--layers", "1",
            "--target-layers", "1,2", "--anchors-per-seq", "64", "--lr", "1e-12", "--eval-prompts", "1",
            "--seed", "3", "--quiet"]

    def train(name, extra):
        out = os.path.join(tmp, name)
        run(base + extra + ["--out", out])
        return log(os.path.join(out, "train", "log.jsonl"))

    one = train("one", ["--batch-tokens", "1"])
    plain = train("plain", [])
    whole = train("whole", ["--batch-tokens", "10000", "--epochs", "2"])
    check(len(one) == 3, f"--batch-tokens 1: {len(one)} steps, expected 3")
    check([(x["loss"], x["rows"]) for x in one] == [(x["loss"], x["rows"]) for x in plain],
          f"--batch-tokens 1 differs from the default: {one} vs {plain}")
    rw = {}
    for p, r in seqs[:3]:
        rows, w = rows_weight(len(p) + len(r), len(p))
        rw[rows] = w
    check(sorted(x["rows"] for x in one) == sorted(rw), f"rows per step {[x['rows'] for x in one]}, "
          f"expected {sorted(rw)}")
    check(len(whole) == 2, f"--batch-tokens 10000 --epochs 2: {len(whole)} steps, expected 2")
    want = sum(rw[x["rows"]] * x["loss"] for x in one if x["rows"] in rw) / sum(rw.values())
    for x in whole:
        e = abs(x["loss"] - want) / abs(want)
        print(f"packed step {x['step']}: {x['rows']} rows, loss {x['loss']:.7f}, weighted mean of the "
              f"one-sequence steps {want:.7f} (rel err {e:.2g})", file=sys.stderr)
        check(x["rows"] == sum(rw), f"packed step rows {x['rows']}, expected {sum(rw)}")
        check(e < 1e-5, f"packed step loss {x['loss']} vs weighted mean {want} (rel err {e:.3g})")
    R = reference(tgt, os.path.join(tmp, "one", "train", "ckpt"), seqs[:3])
    for x in one:
        if x["rows"] not in R:
            continue
        rl, rg = R[x["rows"]]
        el, eg = abs(x["loss"] - rl) / abs(rl), abs(x["grad_norm"] - rg) / abs(rg)
        print(f"one-pass step of {x['rows']} rows vs float64 reference: loss {x['loss']:.8f} / {rl:.8f} "
              f"(rel err {el:.2g}), grad norm {x['grad_norm']:.8f} / {rg:.8f} (rel err {eg:.2g})", file=sys.stderr)
        check(el < 1e-6 and eg < 1e-6, f"step of {x['rows']} rows vs float64 reference: loss rel err {el:.3g}, "
              f"grad norm rel err {eg:.3g}")
    # --init: the bf16 export and the f32 checkpoint of run "one" as starting points
    other = [a if a != "3" else "5" for a in base]
    seeded = log_of(other, [], os.path.join(tmp, "seed5"))
    from_ck = log_of(other, ["--init", os.path.join(tmp, "one", "train", "ckpt")], os.path.join(tmp, "init_ck"))
    from_bf = log_of(other, ["--init", os.path.join(tmp, "one")], os.path.join(tmp, "init_bf"))
    by_rows = {x["rows"]: x["loss"] for x in one}
    check(any(abs(x["loss"] - by_rows[x["rows"]]) > 1e-4 * abs(by_rows[x["rows"]]) for x in seeded),
          "--seed 5 gives the losses of --seed 3: the seed does not move the initial weights")
    for x in from_ck:
        e = abs(x["loss"] - by_rows[x["rows"]]) / abs(by_rows[x["rows"]])
        check(e < 1e-6, f"--init from the f32 checkpoint: step of {x['rows']} rows, loss {x['loss']} vs "
              f"{by_rows[x['rows']]} (rel err {e:.3g})")
    R = reference(tgt, os.path.join(tmp, "one"), seqs[:3])
    for x in from_bf:
        rl = R[x["rows"]][0]
        e = abs(x["loss"] - rl) / abs(rl)
        print(f"--init from the bf16 export: step of {x['rows']} rows, loss {x['loss']:.8f} vs float64 "
              f"reference {rl:.8f} (rel err {e:.2g})", file=sys.stderr)
        check(e < 1e-6, f"--init from the bf16 export: step of {x['rows']} rows, loss rel err {e:.3g}")
    five = [a if a != str(B) else "5" for a in base]
    p = run(five + ["--init", os.path.join(tmp, "one"), "--out", os.path.join(tmp, "init_b5")], ok=False)
    err = p.stderr.strip().splitlines()
    check(p.returncode != 0 and len(err) == 1 and "block_size" in err[0] and "one" in err[0],
          f"--init of a block-4 draft into a block-5 run: exit {p.returncode}, {err}")
    check(not os.path.exists(os.path.join(tmp, "init_b5")), "a refused --init left its --out folder behind")
    p = run(base + ["--init", os.path.join(tmp, "nothing"), "--out", os.path.join(tmp, "init_none")], ok=False)
    err = p.stderr.strip().splitlines()
    check(p.returncode != 0 and len(err) == 1 and "nothing" in err[0], f"--init of a missing folder: {err}")
    check(not os.path.exists(os.path.join(tmp, "init_none")), "a missing --init folder left --out behind")
    p = run(base + ["--batch-tokens", "0", "--out", os.path.join(tmp, "bad")], ok=False)
    err = p.stderr.strip().splitlines()
    check(p.returncode != 0 and len(err) == 1 and "--batch-tokens" in err[0],
          f"--batch-tokens 0: exit {p.returncode}, {err}")
    shutil.rmtree(tmp)
    if vkd_cli.failures:
        sys.exit(f"test_train_draft_batch: {vkd_cli.failures} checks failed")
    print("test_train_draft_batch: OK", file=sys.stderr)


if __name__ == "__main__":
    main()
