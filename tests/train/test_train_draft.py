"""test_train_draft: `vkdraft train-draft` end to end on a generated pair (issue 15).

Pair: a tiny bigram-chain Qwen3 target (gen_model --chain 16, vocabulary 512, no
tokenizer: its greedy output falls into a cycle of 16 ids, so its responses are
predictable). Data: 14 prompts of random ids in a token-id file ({"prompt_ids": [..]});
--regenerate makes the target's own responses the training text; the last 2 prompts are
held out for tau. Draft: 1 layer, block 4, taps 1,2; 120 steps of 8 anchors, lr 5e-3.
  - the loss goes down (mean of the last 10 steps < 0.3 x the first step's);
  - held-out tau of greedy speculative decoding: the untrained draft ~1 (< 1.2), the
    trained one > 1.5;
  - the folder is z-lab's layout (config.json with dflash_config, block_size,
    target_layer_ids, mask_token_id; model.safetensors, bf16, with z-lab's names and no
    embeddings / lm_head) and loads in tools/reference (PyTorch float64): the same draft
    logits as vkdraft's (train_draft_logits) within 1e-3 relative to the largest logit;
  - resume: a second run killed after its checkpoint of step 30 and continued with
    --resume has the same log (every loss, every eval tau) and the same final weights, bit
    for bit, as the uninterrupted run;
  - bad input: --resume with a changed parameter is refused naming the field; an --out
    that holds a run is refused without --resume; a malformed id file is one line.
usage: test_train_draft.py TRAIN_DRAFT_LOGITS_EXE"""
import json
import random
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vkd_cli  # noqa: E402
from vkd_cli import PY, SRC, VK, check, run  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "tools", "reference"))

STEPS = 120


def log(path):
    with open(path) as f:
        return [json.loads(x) for x in f]


def main():
    import numpy as np
    import ref
    import st
    tmp = tempfile.mkdtemp(prefix="vkd_train_draft_")
    tgt = os.path.join(tmp, "target")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "64",
                    "--layers", "4", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--ffn", "128",
                    "--no-tie", "--dtype", "f32", "--max-pos", "512", "--seed", "3", "--resid-scale", "0.3",
                    "--vocab", "512", "--chain", "16", "--out", tgt], check=True, capture_output=True)
    rng = random.Random(5)
    prompts = [[rng.randrange(0, 500) for _ in range(rng.randrange(4, 10))] for _ in range(14)]
    data = os.path.join(tmp, "ids.jsonl")
    with open(data, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
    out = os.path.join(tmp, "draft")
    args = ["train-draft", "--target", tgt, "--data", data, "--regenerate", "--max-new-tokens", "32",
            "--block-size", "4", "--layers", "1", "--target-layers", "1,2", "--anchors-per-seq", "8",
            "--steps", str(STEPS), "--lr", "5e-3", "--eval-every", "60", "--save-every", "30",
            "--eval-prompts", "2", "--eval-tokens", "24", "--seed", "7", "--quiet"]
    t0 = time.time()
    run(args + ["--out", out])
    train_s = time.time() - t0
    L = log(os.path.join(out, "train", "log.jsonl"))
    losses = [x["loss"] for x in L if "loss" in x]
    taus = [(x["step"], x["eval_tau"]) for x in L if "eval_tau" in x]
    check(len(losses) == STEPS, f"{len(losses)} loss lines, expected {STEPS}")
    last = sum(losses[-10:]) / 10
    print(f"loss {losses[0]:.3f} -> {last:.3f} (mean of the last 10); eval tau {taus}; {train_s:.0f}s",
          file=sys.stderr)
    check(last < 0.3 * losses[0], f"loss does not go down: {losses[0]:.3f} -> {last:.3f}")
    check([s for s, _ in taus] == [0, 60, STEPS], f"eval steps {taus}")
    check(taus[0][1] < 1.2, f"untrained tau {taus[0][1]:.3f}, expected ~1")
    check(taus[-1][1] > 1.5, f"trained tau {taus[-1][1]:.3f}, expected > 1.5")

    # z-lab layout
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    check(cfg["architectures"] == ["DFlashDraftModel"] and cfg["block_size"] == 4 and cfg["dtype"] == "bfloat16",
          f"config.json: {cfg.get('architectures')} block {cfg.get('block_size')} dtype {cfg.get('dtype')}")
    check(cfg["dflash_config"]["target_layer_ids"] == [1, 2], f"target_layer_ids {cfg['dflash_config']}")
    check(0 <= cfg["dflash_config"]["mask_token_id"] < cfg["vocab_size"], "mask_token_id outside the vocabulary")
    W = st.read_model(out)
    names = sorted(W)
    want = sorted(["fc.weight", "hidden_norm.weight", "norm.weight"] +
                  [f"layers.0.{s}.weight" for s in ["input_layernorm", "post_attention_layernorm",
                                                    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                    "self_attn.o_proj", "self_attn.q_norm", "self_attn.k_norm",
                                                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]])
    check(names == want, f"tensors {names}")
    dts = st.read_dtypes(os.path.join(out, "model.safetensors"))
    check(set(dts.values()) == {"BF16"}, f"weight dtypes {set(dts.values())}, expected BF16")

    # the reference's draft logits on a chain context
    T = ref.Target.load(tgt)
    D = ref.Draft.load(out, T)
    ids = prompts[-1] + [rng.randrange(0, 500) for _ in range(9)]
    lpath = os.path.join(tmp, "logits.safetensors")
    subprocess.run([sys.argv[1], tgt, out, lpath, ",".join(map(str, ids))], check=True)
    got = st.read(lpath)["logits"]
    n = len(ids)
    _, hidden = T.forward(ids[:-1])
    feats = D.features(hidden)
    want_l, _ = D.forward(feats, [ids[-1]] + [D.mask_token_id] * (D.block_size - 1), n - 1)
    want_l = want_l.numpy()
    err = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want_l)) / max(1e-9, np.max(np.abs(want_l))))
    print(f"draft logits vs tools/reference (float64): worst {err:.2e} relative to the largest", file=sys.stderr)
    check(err < 1e-3, f"draft logits differ from the reference: {err:.3g}")
    check(int(np.argmax(want_l[0])) == int(np.argmax(got[0])), "argmax of the first row differs")

    # resume after a kill == uninterrupted
    out2 = os.path.join(tmp, "draft2")
    p = subprocess.Popen([VK] + args + ["--out", out2], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = os.path.join(out2, "train", "ckpt", "state.json")
    deadline = time.time() + 1500
    while time.time() < deadline and p.poll() is None:
        try:
            with open(state) as f:
                if json.load(f)["step"] >= 30:
                    break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.wait()
    check(killed, "the run ended before it could be killed")
    with open(state) as f:
        at = json.load(f)["step"]
    print(f"killed after the checkpoint of step {at}", file=sys.stderr)
    run(args + ["--out", out2, "--resume"])
    L2 = log(os.path.join(out2, "train", "log.jsonl"))
    strip = [[{k: v for k, v in x.items() if k != "seconds"} for x in y] for y in (L, L2)]
    diff = [(a, b) for a, b in zip(*strip) if a != b]
    check(len(L2) == len(L) and not diff,
          f"the resumed run's log differs from the uninterrupted run's: {len(L2)} vs {len(L)} lines, "
          f"first difference {diff[:1]}")
    with open(os.path.join(out, "model.safetensors"), "rb") as a, open(os.path.join(out2, "model.safetensors"), "rb") as b:
        check(a.read() == b.read(), "the resumed run's weights differ from the uninterrupted run's")

    # bad input
    changed = [("1e-3" if i > 0 and args[i - 1] == "--lr" else x) for i, x in enumerate(args)]
    r = run(changed + ["--out", out2, "--resume"], ok=False)
    check(r.returncode != 0 and "'lr'" in r.stderr, f"changed --lr on resume: {r.returncode} {r.stderr!r}")
    r = run(args + ["--out", out2], ok=False)
    check(r.returncode != 0 and "--resume" in r.stderr, f"used --out without --resume: {r.stderr!r}")
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps({"prompt_ids": [1, 2, 600]}) + "\n")
    r = run(["train-draft", "--target", tgt, "--data", bad, "--regenerate", "--out", os.path.join(tmp, "o_bad")],
            ok=False)
    check(r.returncode != 0 and "bad.jsonl:1: field 'prompt_ids'" in r.stderr and len(r.stderr.splitlines()) == 1,
          f"bad id file: {r.stderr!r}")
    check(not os.path.exists(os.path.join(tmp, "o_bad")), "a refused run created its --out")
    shutil.rmtree(tmp)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
