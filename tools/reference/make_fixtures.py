#!/usr/bin/python3
"""make_fixtures.py: regenerate the golden fixtures under tests/models/fixtures/.

  /usr/bin/python3 tools/reference/make_fixtures.py [--out tests/models/fixtures] [--only NAME]

Each fixture is a folder <name>/ with model/ (a Hugging Face model folder) and
expected.safetensors (float32 outputs of ref.py computed in float64, int32 ids). The
layout of every expected file is described in tools/reference/README.md. For each
target the seed is the first one (from a fixed base) whose greedy continuation has
no stop id, at least 8 distinct ids in its first 16 (5 for the DFlash target), and top-1/top-2 logit gaps >=
MIN_GAP at every compared position, so a correct f32 implementation reproduces the
argmaxes exactly.
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_dflash  # noqa: E402
import gen_model  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402

MIN_GAP = 0.05
PROMPT_LEN = 20
N_GREEDY = 16
N_CACHED = 5        # cached check: last 5 prompt tokens against a cache of the first T-5
CROP_TO = 12        # crop check: prefill T, crop to 12, feed CROP_NEW other ids
CROP_NEW = 6

TARGETS = {
    # name: gen_model arguments (seed added by the search)
    "qwen3-tied-f32": ["--arch", "qwen3", "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                       "--head-dim", "16", "--ffn", "128", "--vocab", "512", "--tie", "--dtype", "f32",
                       "--max-pos", "512"],
    "qwen3-untied-bf16-2shards": ["--arch", "qwen3", "--hidden", "64", "--layers", "3", "--heads", "4",
                                  "--kv-heads", "2", "--head-dim", "16", "--ffn", "128", "--vocab", "512",
                                  "--no-tie", "--dtype", "bf16", "--shards", "2", "--max-pos", "512"],
    "llama3-f16": ["--arch", "llama", "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                   "--head-dim", "16", "--ffn", "128", "--vocab", "512", "--tie", "--dtype", "f16",
                   "--rope-theta", "500000", "--llama3-scaling", "8,1,4,256", "--max-pos", "2048"],
}
# DFlash: an 8-layer f32 Qwen3 bigram-chain target (taps 1..5; gen_model --chain: the greedy
# next token is mostly the successor of the current token in a 16-token cycle, and the
# context, through residual updates of scale 0.3, makes it leave the cycle now and then),
# and 2-layer bf16 drafts trained on it (gen_dflash.train): acceptance lengths 1..B
DFLASH_TARGET = ["--arch", "qwen3", "--hidden", "64", "--layers", "8", "--heads", "4", "--kv-heads", "2",
                 "--head-dim", "16", "--ffn", "128", "--vocab", "512", "--no-tie", "--dtype", "f32",
                 "--max-pos", "512", "--resid-scale", "0.3", "--chain", "16"]
DFLASH_LEAVES = (4, 10)      # the fixture's greedy run leaves the chain this many times (min, max)
DFLASH_DRAFTS = {
    # name: (block size, where block_size goes in config.json, training steps)
    "draft-b16": (16, "top", 800),
    "draft-b4": (4, "dflash_config", 400),
}
SPEC_MAX_NEW = 48


def i32(x):
    return np.asarray(x, dtype=np.int32)


def f32(x):
    return x.detach().to(torch.float32).numpy() if torch.is_tensor(x) else np.asarray(x, np.float32)


def build_target(args, seed, folder):
    a = gen_model.parse(args + ["--seed", str(seed), "--out", folder])
    weights = {k: st.round_to_dtype(v.fn(), gen_model.ST_DTYPE[a.dtype]) for k, v in gen_model.target_tensors(a).items()}
    bos, eos, gen_eos, pad = gen_model.special_ids(a.arch, a.vocab)
    cfg = gen_model.target_config(a, bos, eos)
    return a, cfg, weights, gen_eos


def stop_ids(gen_eos):
    return set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}


def prompt_for(seed, vocab):
    return [int(t) for t in np.random.default_rng(1000 + seed).integers(0, vocab - 8, PROMPT_LEN)]


def greedy_ok(T, prompt, n, stops, min_distinct):
    g = T.greedy(prompt, n)
    logits, _ = T.forward(prompt + g)
    top2 = torch.topk(logits[len(prompt) - 1: len(prompt) - 1 + n], 2, dim=-1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    varied = len(set(g[:N_GREEDY])) >= min_distinct       # not a run of one token
    return g, gap, not (set(g) & stops) and gap >= MIN_GAP and varied


def chain_leaves(a, g):
    """How many times the greedy run g leaves the chain of a --chain target."""
    chain = gen_model.chain_of(a)
    nxt = {t: chain[(i + 1) % len(chain)] for i, t in enumerate(chain)}
    return sum(1 for x, y in zip(g, g[1:]) if nxt.get(x) != y)


def pick_target(args, base_seed, n_greedy, min_distinct=N_GREEDY // 2, leaves=None):
    for seed in range(base_seed, base_seed + 200):
        a, cfg, w, gen_eos = build_target(args, seed, "/nonexistent")
        T = ref.Target(cfg, w)
        prompt = prompt_for(seed, a.vocab)
        g, gap, ok = greedy_ok(T, prompt, n_greedy, stop_ids(gen_eos), min_distinct)
        if ok and leaves:
            ok = leaves[0] <= chain_leaves(a, g) <= leaves[1]
        if ok:
            return seed, a, cfg, w, T, prompt, g, gap
    raise SystemExit(f"make_fixtures: no seed in {base_seed}..{base_seed + 199} gives a robust greedy continuation "
                     f"for {' '.join(args)}")


def target_expected(T, prompt, g, gap, seed):
    """The tensors of a target's expected.safetensors."""
    P = len(prompt)
    logits, hidden = T.forward(prompt)
    out = {"input_ids": i32(prompt), "logits": f32(logits), "greedy": i32(g)}
    for i in range(T.L):
        out[f"hidden.{i}"] = f32(hidden[i])
    cache = T.new_cache()
    T.forward(prompt[: P - N_CACHED], cache)
    cl, ch = T.forward(prompt[P - N_CACHED:], cache)
    out["cached.logits"] = f32(cl)
    out[f"cached.hidden.{T.L - 1}"] = f32(ch[-1])
    new = [int(t) for t in np.random.default_rng(7 + seed).integers(0, T.embed.shape[0] - 8, CROP_NEW)]
    cache = T.new_cache()
    T.forward(prompt, cache)
    cache.crop(CROP_TO)
    kl, kh = T.forward(new, cache)
    out["crop.input_ids"] = i32(new)
    out["crop.logits"] = f32(kl)
    out[f"crop.hidden.{T.L - 1}"] = f32(kh[-1])
    meta = {"seed": seed, "precision": "reference computed in float64 on the stored weights; stored as float32",
            "min_top2_gap_greedy": f"{gap:.4f}", "cached_prefix_len": P - N_CACHED, "crop_to": CROP_TO}
    return out, meta


def write_target_fixture(folder, a, w, T, prompt, g, gap, seed):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    gen_model.write_target(a, os.path.join(folder, "model"), tensors=w)
    out, meta = target_expected(T, prompt, g, gap, seed)
    st.write(os.path.join(folder, "expected.safetensors"), out, metadata=meta)
    return meta


def make_dflash(root, verbose=True):
    seed, a, cfg, w, T, prompt, g, gap = pick_target(DFLASH_TARGET, 100, SPEC_MAX_NEW, min_distinct=5,
                                                     leaves=DFLASH_LEAVES)
    base = os.path.join(root, "dflash")
    if os.path.exists(base):
        shutil.rmtree(base)
    meta = write_target_fixture(os.path.join(base, "target"), a, w, T, prompt, g[:N_GREEDY], gap, seed)
    if verbose:
        print(f"  dflash/target: seed {seed}, min gap {meta['min_top2_gap_greedy']}, "
              f"leaves the chain {chain_leaves(a, g)} times in {len(g)} tokens")
    for name, (B, where, steps) in DFLASH_DRAFTS.items():
        t0 = time.time()
        # trained honestly on the target's greedy continuations of random prompts (not on
        # the fixture prompt's); the spec run below measures what it learnt
        dcfg, dw = gen_dflash.build_draft(T, cfg, n_layers=2, block_size=B, layer_ids=[1, 2, 3, 4, 5],
                                          mask_token_id=a.vocab - 1, dtype="bf16", seed=seed + B,
                                          train_steps=steps, block_size_in=where, verbose=False)
        folder = os.path.join(base, name)
        gen_dflash.write_draft(os.path.join(folder, "model"), dcfg, dw, "bf16")
        D = ref.Draft(dcfg, dw, T)
        out, dmeta = draft_expected(T, D, prompt, g)
        st.write(os.path.join(folder, "expected.safetensors"), out, metadata=dmeta)
        if verbose:
            print(f"  dflash/{name}: trained {steps} steps in {time.time() - t0:.1f}s, "
                  f"acceptance {dmeta['acceptance_histogram']}, tau {dmeta['tau']}, "
                  f"min proposal gap {dmeta['min_top2_gap_proposals']}")


def draft_expected(T, D, prompt, greedy):
    """Two draft calls (the first two steps of spec decoding), the second through the
    cache and from scratch, and the whole greedy spec run."""
    B, P = D.block_size, len(prompt)
    out = {"input_ids": i32(prompt)}
    tcache, dcache = T.new_cache(), D.new_cache()
    logits, hidden = T.forward(prompt, tcache)
    t0 = int(torch.argmax(logits[-1]))
    F1 = D.features(hidden)
    block1 = [t0] + [D.mask_token_id] * (B - 1)
    l1, _ = D.forward(F1, block1, P, dcache)
    props = [int(x) for x in torch.argmax(l1, -1)]
    vl, vh = T.forward([t0] + props, tcache)
    post = [int(x) for x in torch.argmax(vl, -1)]
    n = 0
    while n < B - 1 and props[n] == post[n]:
        n += 1
    start2 = P + n + 1
    F2 = D.features(vh)[: n + 1]
    block2 = [post[n]] + [D.mask_token_id] * (B - 1)
    l2, _ = D.forward(F2, block2, start2, dcache)
    ls, _ = D.forward(torch.cat([F1, F2]), block2, start2, None)
    out.update({
        "call1.features": f32(F1), "call1.block": i32(block1), "call1.start": i32([P]), "call1.logits": f32(l1),
        "call2.features": f32(F2), "call2.block": i32(block2), "call2.start": i32([start2]),
        "call2.logits": f32(l2), "call2.scratch_logits": f32(ls),
    })
    spec, acc, trace = ref.spec_generate(T, D, prompt, SPEC_MAX_NEW)
    assert spec == greedy[:SPEC_MAX_NEW], "spec greedy != autoregressive greedy"
    out["greedy"] = i32(greedy[:SPEC_MAX_NEW])
    out["spec.output"] = i32(spec)
    out["spec.accept"] = i32(acc)
    out["spec.proposals"] = i32([tr[1] for tr in trace])
    out["spec.starts"] = i32([tr[0] for tr in trace])
    hist = ref.histogram(acc, B)
    meta = {"block_size": B, "max_new_tokens": SPEC_MAX_NEW, "call1_accepted": n,
            "acceptance_histogram": " ".join(f"{k}:{v}" for k, v in hist.items()),
            "tau": f"{sum(acc) / len(acc):.3f}",
            "min_top2_gap_proposals": f"{min(x for tr in trace for x in tr[3]):.4f}",
            "precision": "reference computed in float64 on the stored weights; stored as float32"}
    return out, meta


def main():
    p = argparse.ArgumentParser(description="regenerate tests/models/fixtures")
    p.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "models", "fixtures"))
    p.add_argument("--only", choices=sorted(TARGETS) + ["dflash"])
    a = p.parse_args()
    root = os.path.normpath(a.out)
    os.makedirs(root, exist_ok=True)
    for name, args in TARGETS.items():
        if a.only and a.only != name:
            continue
        seed, ga, cfg, w, T, prompt, g, gap = pick_target(args, 0, N_GREEDY)
        meta = write_target_fixture(os.path.join(root, name), ga, w, T, prompt, g, gap, seed)
        print(f"  {name}: seed {seed}, min gap {meta['min_top2_gap_greedy']}")
    if not a.only or a.only == "dflash":
        make_dflash(root)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)
    print(f"make_fixtures: {root}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
