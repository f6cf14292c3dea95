#!/usr/bin/python3
"""test_ref.py: self-checks of the reference (plain asserts; /usr/bin/python3 test_ref.py).

Internal consistency only (the reference is the thing the C side is compared with):
cached == uncached forward, crop + recompute == never computed, greedy speculative
decoding == autoregressive greedy, draft call through its cache == from scratch,
llama3 inv_freq == the formula written out independently, safetensors round trips,
and the committed fixtures == what the reference computes from the committed models.
"""
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_dflash  # noqa: E402
import gen_model  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402

FIX = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "models", "fixtures"))
worst = {}


def close(name, a, b, tol):
    err = float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())
    worst[name] = max(worst.get(name, 0.0), err)
    assert err <= tol, f"{name}: max abs error {err:.3g} > {tol:.3g}"


def small_target(arch, seed, layers=3, extra=()):
    a = gen_model.parse(["--arch", arch, "--layers", str(layers), "--seed", str(seed), "--out", "-"] + list(extra))
    w = {k: v.fn() for k, v in gen_model.target_tensors(a).items()}
    return ref.Target(gen_model.target_config(a, 0, 1), w), a


def test_safetensors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    t = {"f32": x, "f16": x.astype(np.float16), "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
         "i64": np.arange(4, dtype=np.int64), "bf16": x}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        st.write(p, t, {"f32": "F32", "f16": "F16", "i32": "I32", "i64": "I64", "bf16": "BF16"})
        r = st.read(p)
        assert st.read_dtypes(p) == {"f32": "F32", "f16": "F16", "i32": "I32", "i64": "I64", "bf16": "BF16"}
        assert (r["f32"] == x).all() and (r["f16"] == x.astype(np.float16)).all()
        assert (r["i32"] == t["i32"]).all() and (r["i64"] == t["i64"]).all()
        ref_bf16 = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
        assert (r["bf16"] == ref_bf16).all(), "bf16 rounding differs from torch's round-to-nearest-even"
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        assert n % 8 == 0
        big = {f"w{i}": rng.standard_normal((3, 4)).astype(np.float32) for i in range(5)}
        st.write_model(d, big, "BF16", shards=2)
        back = st.read_model(d)
        assert set(back) == set(big)
        for k in big:
            assert (back[k] == st.round_to_dtype(big[k], "BF16")).all()


def test_llama3_inv_freq():
    theta, d, factor, lo, hi, orig = 500000.0, 64, 32.0, 1.0, 4.0, 8192.0
    got = ref.llama3_inv_freq(theta, d, factor, lo, hi, orig)
    for j in range(d // 2):
        f = theta ** (-(2.0 * j) / d)
        wl = 2 * math.pi / f
        if wl < orig / hi:
            want = f
        elif wl > orig / lo:
            want = f / factor
        else:
            s = (orig / wl - lo) / (hi - lo)
            want = (1 - s) * f / factor + s * f
        assert abs(got[j].item() - want) <= 1e-12 * want, f"llama3 inv_freq[{j}]"
    # the regimes are all exercised at these settings
    wl = [2 * math.pi / (theta ** (-(2.0 * j) / d)) for j in range(d // 2)]
    assert min(wl) < orig / hi and max(wl) > orig / lo and any(orig / hi <= w <= orig / lo for w in wl)


def test_cache_and_crop():
    for arch, extra in (("qwen3", ()), ("llama", ("--llama3-scaling", "8,1,4,32", "--max-pos", "256"))):
        T, a = small_target(arch, 5, extra=extra)
        ids = [int(t) for t in np.random.default_rng(1).integers(0, 500, 24)]
        full_l, full_h = T.forward(ids)
        c = T.new_cache()
        l1, h1 = T.forward(ids[:10], c)
        l2, h2 = T.forward(ids[10:17], c)
        l3, h3 = T.forward(ids[17:], c)
        close("cached logits", torch.cat([l1, l2, l3]), full_l, 1e-10)
        close("cached hidden", torch.cat([h1, h2, h3], dim=1), full_h, 1e-10)
        other = [3, 1, 4, 1, 5]
        c = T.new_cache()
        T.forward(ids, c)
        c.crop(12)
        assert len(c) == 12
        lc, hc = T.forward(other, c)
        lf, hf = T.forward(ids[:12] + other)
        close("crop logits", lc, lf[12:], 1e-10)
        close("crop hidden", hc, hf[:, 12:], 1e-10)


def test_draft_cache_and_spec():
    T, a = small_target("qwen3", 11, layers=8, extra=("--resid-scale", "0.5"))
    for B in (4, 16):
        cfg = gen_dflash.draft_config(T.cfg, 2, B, [1, 2, 3, 4, 5], 511, "f32")
        D = ref.Draft(cfg, gen_dflash.random_draft(cfg, 5, 3), T)
        ids = [int(t) for t in np.random.default_rng(2).integers(0, 500, 30)]
        _, h = T.forward(ids)
        F = D.features(h)
        blk = [ids[20]] + [D.mask_token_id] * (B - 1)
        cache = D.new_cache()
        for s0, s1 in ((0, 9), (9, 10), (10, 17), (17, 20)):
            lc, hc = D.forward(F[s0:s1], [ids[s1]] + [D.mask_token_id] * (B - 1), s1, cache)
            ls, hs = D.forward(F[:s1], [ids[s1]] + [D.mask_token_id] * (B - 1), s1, None)
            close("draft cached vs scratch", lc, ls, 1e-10)
            assert len(cache) == s1
        assert lc.shape == (B - 1, T.embed.shape[0])
        # batched (training) path == one at a time
        lb, _ = D.forward(torch.stack([F[:20], F[:20]]), torch.tensor([blk, blk]), 20, None)
        close("draft batched", lb[1], D.forward(F[:20], blk, 20, None)[0], 1e-10)
        prompt = ids[:20]
        for D_ in (D,):
            out, acc, _ = ref.spec_generate(T, D_, prompt, 40)
            assert out == T.greedy(prompt, 40), f"spec != greedy at B={B}"
            assert sum(acc) == 39 and all(1 <= x <= B for x in acc)   # first token comes from the prefill
            stop = {out[25]}
            out_s, acc_s, _ = ref.spec_generate(T, D_, prompt, 40, stop=stop)
            assert out_s == T.greedy(prompt, 40, stop=stop), "spec with stop ids != greedy with stop ids"


def test_fixtures():
    """The committed expected files equal what the reference computes from the committed
    model folders (catches a stale regeneration)."""
    if not os.path.isdir(FIX):
        print("  (no fixtures directory; skipped)")
        return
    for name in ("qwen3-tied-f32", "qwen3-untied-bf16-2shards", "llama3-f16", "dflash/target"):
        folder = os.path.join(FIX, name)
        T = ref.Target.load(os.path.join(folder, "model"))
        e = st.read(os.path.join(folder, "expected.safetensors"))
        ids = [int(x) for x in e["input_ids"]]
        l, h = T.forward(ids)
        close("fixture logits", l, e["logits"], 1e-5)
        for i in range(T.L):
            close("fixture hidden", h[i], e[f"hidden.{i}"], 1e-5)
        assert T.greedy(ids, len(e["greedy"])) == [int(x) for x in e["greedy"]], name
    T = ref.Target.load(os.path.join(FIX, "dflash", "target", "model"))
    for name in ("draft-b4", "draft-b16"):
        folder = os.path.join(FIX, "dflash", name)
        D = ref.Draft.load(os.path.join(folder, "model"), T)
        e = st.read(os.path.join(folder, "expected.safetensors"))
        c = D.new_cache()
        s1, s2 = int(e["call1.start"][0]), int(e["call2.start"][0])
        l1, _ = D.forward(torch.from_numpy(e["call1.features"]).double(), e["call1.block"].astype(np.int64), s1, c)
        close("fixture draft call1", l1, e["call1.logits"], 1e-5)
        l2, _ = D.forward(torch.from_numpy(e["call2.features"]).double(), e["call2.block"].astype(np.int64), s2, c)
        close("fixture draft call2", l2, e["call2.logits"], 1e-5)
        close("fixture draft call2 scratch", e["call2.scratch_logits"], e["call2.logits"], 1e-5)
        ids = [int(x) for x in e["input_ids"]]
        out, acc, _ = ref.spec_generate(T, D, ids, len(e["spec.output"]))
        assert out == [int(x) for x in e["spec.output"]] == [int(x) for x in e["greedy"]], name
        assert acc == [int(x) for x in e["spec.accept"]], name


def main():
    t0 = time.time()
    for fn in (test_safetensors, test_llama3_inv_freq, test_cache_and_crop, test_draft_cache_and_spec,
               test_fixtures):
        fn()
        print(f"ok {fn.__name__}")
    print("worst errors: " + ", ".join(f"{k} {v:.2g}" for k, v in worst.items()))
    print(f"test_ref: all passed in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
