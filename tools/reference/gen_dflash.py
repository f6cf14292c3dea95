#!/usr/bin/python3
"""gen_dflash.py: write a DFlash draft (z-lab DFlashDraftModel layout) for a target folder.

  gen_dflash.py --target DIR --out DIR [--block-size 16] [--layers 2] [--train-steps 600]
                [--target-layer-ids 1,9,17,25,33] [--mask-token-id ID] [--dtype bf16]
                [--block-size-in top|dflash_config] [--seed S] [--eval 8]

config.json follows z-lab/Qwen3-4B-DFlash-b16's: a Qwen3 config (architectures
["DFlashDraftModel"], auto_map AutoModel -> dflash.DFlashDraftModel, num_target_layers,
dflash_config {mask_token_id, target_layer_ids}, block_size at top level; with
--block-size-in dflash_config it moves into dflash_config as newer checkpoints have it).
Tensors: layers.N.{input_layernorm, post_attention_layernorm}.weight,
layers.N.self_attn.{q,k,v,o}_proj.weight, layers.N.self_attn.{q,k}_norm.weight,
layers.N.mlp.{gate,up,down}_proj.weight, fc.weight (H x n_taps*H), hidden_norm.weight,
norm.weight; no embed_tokens / lm_head (the target's are used).

Alignment knob: --train-steps N. 0 leaves the draft random (acceptance length ~1).
N > 0 trains it honestly with torch (Adam, f32, CPU) on the target's own greedy
continuations of random prompts, exactly in the inference setting: context features of
positions < a, block [token a, MASK x (B-1)], targets = the target's next-token
distributions at positions a..a+B-2 (top-32, renormalised; soft labels carry far more
signal per example than the argmax), cross-entropy weighted exp(-(k-1)/gamma) by block
offset k (gamma = 7 at B = 16, as the DFlash recipe). More steps -> longer acceptance; see README.md for measured
histograms. --eval N runs the reference greedy spec loop on N fresh prompts and prints
the acceptance-length histogram.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402


def draft_config(tcfg, n_layers, block_size, layer_ids, mask_token_id, dtype, block_size_in="top"):
    """config.json of a DFlash draft for target config `tcfg` (draft widths = target's)."""
    d = tcfg.get("head_dim") or tcfg["hidden_size"] // tcfg["num_attention_heads"]
    dflash = {"mask_token_id": int(mask_token_id), "target_layer_ids": [int(i) for i in layer_ids]}
    cfg = {
        "architectures": ["DFlashDraftModel"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {"AutoModel": "dflash.DFlashDraftModel"},
        "bos_token_id": tcfg.get("bos_token_id"),
        "dflash_config": dflash,
        "dtype": gen_model.TORCH_DTYPE[dtype],
        "eos_token_id": tcfg.get("eos_token_id"),
        "head_dim": d,
        "hidden_act": "silu",
        "hidden_size": tcfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": tcfg["intermediate_size"],
        "layer_types": ["full_attention"] * n_layers,
        "max_position_embeddings": tcfg["max_position_embeddings"],
        "max_window_layers": n_layers,
        "model_type": "qwen3",
        "num_attention_heads": tcfg["num_attention_heads"],
        "num_hidden_layers": n_layers,
        "num_key_value_heads": tcfg["num_key_value_heads"],
        "num_target_layers": tcfg["num_hidden_layers"],
        "rms_norm_eps": tcfg["rms_norm_eps"],
        "rope_scaling": tcfg.get("rope_scaling"),
        "rope_theta": tcfg.get("rope_theta", 1000000),
        "sliding_window": None,
        "tie_word_embeddings": False,
        "transformers_version": "4.57.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": tcfg["vocab_size"],
    }
    if block_size_in == "top":
        cfg["block_size"] = int(block_size)
    else:
        dflash["block_size"] = int(block_size)
    cfg["dflash_config"] = dict(sorted(dflash.items()))
    return dict(sorted(cfg.items()))


def draft_shapes(cfg, n_taps):
    H, nq, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, F = cfg["head_dim"], cfg["intermediate_size"]
    s = gen_model.target_shapes("qwen3", H, cfg["num_hidden_layers"], nq, nkv, d, F, 1, True, prefix="")
    del s["embed_tokens.weight"]
    s["fc.weight"] = (H, n_taps * H)
    s["hidden_norm.weight"] = (H,)
    return s


def random_draft(cfg, n_taps, seed):
    H, nq, d, F = cfg["hidden_size"], cfg["num_attention_heads"], cfg["head_dim"], cfg["intermediate_size"]
    out = {}
    for name, shape in draft_shapes(cfg, n_taps).items():
        if name == "fc.weight":
            mean, std = 0.0, 1.0 / math.sqrt(shape[1])
        else:
            mean, std = gen_model.init_std(name, H, nq, d, F, False)
        out[name] = gen_model.gaussian(seed, "draft." + name, shape, mean, std)
    return out


def as_f32_target(T):
    """A float32 copy of a ref.Target (for fast data generation)."""
    T32 = copy.copy(T)
    T32.dtype = torch.float32
    T32.embed = T.embed.float()
    T32.lm_head = T.lm_head.float()
    T32.norm = T.norm.float()
    T32.layers = [{k: v.float() for k, v in p.items()} for p in T.layers]
    T32.inv_freq = T.inv_freq.float()
    return T32


def teacher_data(T32, n_seq, total_len, vocab_hi, seed, topk=32, min_prompt=4, max_prompt=20, vocab_ids=None):
    """The target's greedy continuations of random prompts: ids (n, total_len), prompt
    lengths (n,), hidden states of every layer (n, total_len, L, H), and the target's
    next-token distribution at every position truncated to its top-k (values, indices;
    renormalised), for distillation. Sequences with the same prompt length are decoded
    as one batch (the reference forward takes leading batch dimensions), so prompt
    lengths are drawn from a grid of 5 values in [min_prompt, max_prompt]. vocab_ids: T32's
    lm_head holds only these rows (a vocabulary subset); its argmax is mapped back
    through them, and the returned top-k indices are into the subset."""
    rng = np.random.default_rng(seed)
    grid = sorted(set(int(round(x)) for x in np.linspace(min_prompt, max_prompt, 5)))
    plens = [int(rng.choice(grid)) for _ in range(n_seq)]
    prompts = [[int(t) for t in rng.integers(0, vocab_hi, P)] for P in plens]
    seqs = [None] * n_seq
    with torch.no_grad():
        for P in sorted(set(plens)):
            rows = [i for i in range(n_seq) if plens[i] == P]
            cache = T32.new_cache()
            cur = torch.tensor([prompts[i] for i in rows])
            logits, _ = T32.forward(cur, cache)
            out = [cur]
            for _ in range(total_len - P):
                nxt = torch.argmax(logits[:, -1], dim=-1)[:, None]
                if vocab_ids is not None:
                    nxt = vocab_ids[nxt]
                out.append(nxt)
                logits, _ = T32.forward(nxt, cache)
            full = torch.cat(out, dim=1)
            for j, i in enumerate(rows):
                seqs[i] = full[j]
        ids = torch.stack(seqs)
        logits, h = T32.forward(ids)                       # (n, total, V), (L, n, total, H)
        v, i = torch.topk(torch.softmax(logits, -1), topk, dim=-1)
    return ids, torch.tensor(plens), h.permute(1, 2, 0, 3).contiguous(), v / v.sum(-1, keepdim=True), i


def train(D, T32, steps, seed, batch=16, lr=3e-3, n_seq=128, verbose=True, vocab_ids=None):
    """Train draft D (float32 params in D.p) to reproduce the target's next-token
    distributions (top-k soft cross-entropy, i.e. KL up to a constant) on the target's own
    greedy continuations, in the inference setting (see the module docstring).
    vocab_ids (LongTensor): train (and generate the data) over these LM-head rows only, for
    a target whose greedy output stays inside them (gen_model --chain), so that a
    151936-row head costs nothing."""
    B = D.block_size
    gamma = 7.0 * B / 16.0
    total = 20 + 40 + B
    V = T32.embed.shape[0]
    torch.manual_seed(seed)
    t0 = time.time()
    head = None
    if vocab_ids is not None:
        Tsub = copy.copy(T32)
        Tsub.lm_head = T32.lm_head[vocab_ids]
        head = Tsub.lm_head
        ids, plens, hid, pv, pi = teacher_data(Tsub, n_seq, total, max(8, V - 8), seed,
                                               topk=min(32, len(vocab_ids)), vocab_ids=vocab_ids)
    else:
        # a big vocabulary trains on a sampled softmax over the teacher's top-k rows: keep k small
        ids, plens, hid, pv, pi = teacher_data(T32, n_seq, total, max(8, V - 8), seed, topk=32 if V <= 4096 else 4)
    if verbose:
        print(f"    teacher data: {n_seq} sequences of {total} ({time.time() - t0:.1f}s)")
    feats = torch.cat([hid[:, :, i] for i in D.layer_ids], dim=-1)      # (n, total, taps*H)
    if V > 4096 and vocab_ids is None:
        # big vocabulary: train against the LM-head rows the teacher ever puts in its
        # top-k (a sampled softmax); the full-vocabulary matmul would dominate on a CPU
        used = torch.unique(pi)
        remap = torch.full((V,), -1, dtype=torch.long)
        remap[used] = torch.arange(used.numel())
        pi = remap[pi]
        head = T32.lm_head[used]
    # small matmuls: one thread is as fast, and does not stall on a machine shared with other jobs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    params = [p.requires_grad_(True) for p in D.p.values()]
    opt = torch.optim.Adam(params, lr=lr)
    w_k = torch.exp(-torch.arange(B - 1, dtype=torch.float32) / gamma)  # offsets k = 1..B-1
    rng = np.random.default_rng(seed + 1)
    t0 = time.time()
    for step in range(steps):
        a = int(rng.integers(3, total - B + 1))
        rows = torch.as_tensor(rng.choice(n_seq, size=min(batch, n_seq), replace=False))
        block = torch.full((len(rows), B), D.mask_token_id, dtype=torch.long)
        block[:, 0] = ids[rows, a]
        # target distribution for position j+1 is read at position j = a .. a+B-2
        tv, ti = pv[rows, a: a + B - 1], pi[rows, a: a + B - 1]
        valid = (torch.arange(a + 1, a + B)[None, :] >= plens[rows][:, None]).float()
        logits, _ = D.forward(feats[rows, :a], block, a, None, head=head)
        logq = torch.log_softmax(logits, dim=-1).gather(-1, ti)
        ce = -(tv * logq).sum(-1)                                           # (batch, B-1)
        wts = valid * w_k[None, :]
        loss = (ce * wts).sum() / wts.sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.step()
        if verbose and (step % 100 == 0 or step == steps - 1):
            print(f"    step {step:4d} loss {loss.item():.3f} ({time.time() - t0:.1f}s)")
    for p in params:
        p.requires_grad_(False)
    torch.set_num_threads(threads)


def build_draft(T, tcfg, n_layers, block_size, layer_ids, mask_token_id, dtype, seed, train_steps,
                block_size_in="top", verbose=True, vocab_ids=None):
    """Returns (config, {name: float32 array of the values as stored in `dtype`})."""
    cfg = draft_config(tcfg, n_layers, block_size, layer_ids, mask_token_id, dtype, block_size_in)
    w = random_draft(cfg, len(layer_ids), seed)
    if train_steps > 0:
        T32 = as_f32_target(T)
        D = ref.Draft(cfg, w, T32, dtype=torch.float32)
        train(D, T32, train_steps, seed, verbose=verbose, vocab_ids=vocab_ids)
        w = {k: v.detach().numpy().copy() for k, v in D.p.items()}
    sd = gen_model.ST_DTYPE[dtype]
    return cfg, {k: st.round_to_dtype(v, sd) for k, v in w.items()}


def write_draft(folder, cfg, weights, dtype):
    os.makedirs(folder, exist_ok=True)
    gen_model.write_json(os.path.join(folder, "config.json"), cfg)
    st.write_model(folder, weights, gen_model.ST_DTYPE[dtype])


def evaluate(T, D, n_prompts, max_new, seed, prompt_len=20, stop=None):
    """Greedy spec decoding on fresh random prompts; asserts spec == autoregressive greedy.
    Returns the list of acceptance lengths."""
    rng = np.random.default_rng(seed)
    V = T.embed.shape[0]
    acc = []
    for _ in range(n_prompts):
        prompt = [int(t) for t in rng.integers(0, V - 8, prompt_len)]
        out, a, _ = ref.spec_generate(T, D, prompt, max_new, stop=stop)
        ar = T.greedy(prompt, max_new, stop=stop)
        assert out == ar, "spec greedy differs from autoregressive greedy"
        acc += a
    return acc


def main():
    p = argparse.ArgumentParser(description="write a DFlash draft for a target folder")
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--block-size", dest="block_size", type=int, default=16)
    p.add_argument("--block-size-in", dest="block_size_in", choices=["top", "dflash_config"], default="top")
    p.add_argument("--target-layer-ids", dest="layer_ids")
    p.add_argument("--mask-token-id", dest="mask_token_id", type=int)
    p.add_argument("--dtype", choices=sorted(gen_model.ST_DTYPE), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-steps", dest="train_steps", type=int, default=600)
    p.add_argument("--eval", type=int, default=0, metavar="N", help="measure acceptance on N prompts")
    a = p.parse_args()
    T = ref.Target.load(a.target)
    tcfg = T.cfg
    L = tcfg["num_hidden_layers"]
    if a.layer_ids:
        layer_ids = [int(x) for x in a.layer_ids.split(",")]
    else:
        layer_ids = ref.dflash_target_layer_ids({"num_hidden_layers": 5, "num_target_layers": L}) if L >= 8 \
            else list(range(1, L))[:5]
    if any(i < 0 or i >= L for i in layer_ids):
        raise SystemExit(f"gen_dflash: --target-layer-ids {layer_ids}: the target has {L} layers")
    V = tcfg["vocab_size"]
    mask = a.mask_token_id if a.mask_token_id is not None else (151669 if V == 151936 else V - 1)
    t0 = time.time()
    cfg, w = build_draft(T, tcfg, a.layers, a.block_size, layer_ids, mask, a.dtype, a.seed, a.train_steps,
                         a.block_size_in)
    write_draft(a.out, cfg, w, a.dtype)
    print(f"gen_dflash: wrote {a.out} (B={a.block_size}, taps {layer_ids}, {a.train_steps} steps, "
          f"{time.time() - t0:.1f}s)")
    if a.eval:
        D = ref.Draft(cfg, w, T)
        acc = evaluate(T, D, a.eval, 64, a.seed + 99)
        print(f"gen_dflash: acceptance lengths over {len(acc)} steps: {ref.histogram(acc, a.block_size)}, "
              f"tau {sum(acc) / len(acc):.2f}")


if __name__ == "__main__":
    main()
