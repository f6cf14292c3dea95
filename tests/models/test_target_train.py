#!/usr/bin/python3
"""test_target_train.py: generates a tiny tied Qwen3 with odd sizes (tools/reference: 2
layers, hidden 36, 3 query heads over 1 kv head of 12, ffn 52, vocab 97, f32), runs
test_target_train (one step on a batch of two sequences) and checks the loss and the
gradient of every tensor against float64 PyTorch autograd of the reference forward
(tools/reference/ref.py, the tied embedding receiving both its lookup and its head
gradient). Prints the worst error per tensor; bound 2.1e-6 on max|g - ref| / (1 + max|ref|).
usage: test_target_train.py TEST_TARGET_TRAIN_EXE"""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools", "reference"))
import torch  # noqa: E402

import ref  # noqa: E402
import st  # noqa: E402

PY = "/usr/bin/python3"
# the sequences test_target_train.c trains on
SEQS = [[5, 17, 88, 3, 3, 41, 96, 0, 17, 62, 7, 29, 54], [12, 5, 5, 70, 33, 91, 8]]
BOUND = 2.1e-6

with tempfile.TemporaryDirectory() as tmp:
    model, out = os.path.join(tmp, "target"), os.path.join(tmp, "grads.safetensors")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "36",
                    "--layers", "2", "--heads", "3", "--kv-heads", "1", "--head-dim", "12", "--ffn", "52",
                    "--vocab", "97", "--tie", "--dtype", "f32", "--max-pos", "256", "--seed", "11", "--out", model],
                   check=True, capture_output=True)
    rc = subprocess.run([sys.argv[1], model, out]).returncode
    if rc:
        sys.exit(rc)
    got = st.read(out)
    t = ref.Target.load(model, torch.float64)
    params = {"model.embed_tokens.weight": t.embed, "model.norm.weight": t.norm}
    for i, p in enumerate(t.layers):
        for k, v in p.items():
            params[f"model.layers.{i}.{k}"] = v
    for v in params.values():
        v.requires_grad_(True)
    rows = sum(len(s) - 1 for s in SEQS)
    loss = 0
    for s in SEQS:
        logits, _ = t.forward(s)
        loss = loss + torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(s[1:]), reduction="sum") / rows
    loss.backward()
    fails = 0
    el = abs(float(got["loss"][0]) - float(loss)) / (1 + abs(float(loss)))
    print(f"loss: vkdraft {float(got['loss'][0]):.7f} torch {float(loss):.7f} err {el:.2g}")
    fails += el > BOUND
    missing = set(params) - set(got)
    if missing:
        print("missing gradients:", sorted(missing))
        fails += 1
    worst = 0
    for name, p in params.items():
        if name not in got:
            continue
        r = p.grad.numpy()
        g = got[name].astype("float64").reshape(r.shape)
        e = float(abs(g - r).max()) / (1 + float(abs(r).max()))
        worst = max(worst, e)
        print(f"{name}: max|ref| {float(abs(r).max()):.3g} err {e:.2g}")
        fails += not (e <= BOUND)
    print(f"test_target_train.py: {len(params)} tensors, worst {worst:.2g} (bound {BOUND}), {fails} failures")
    sys.exit(1 if fails else 0)
