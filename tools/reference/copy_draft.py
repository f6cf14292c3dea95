#!/usr/bin/python3
"""copy_draft.py: an aligned DFlash draft built in closed form (the fixtures' alignment knob).

The construction: a draft whose every block row proposes the block's first token (the last
committed one), for about half the vocabulary. Paired with a target whose greedy
continuations repeat tokens in runs (a tied target with small residual updates, e.g.
gen_model.py --resid-scale 0.3), a block is accepted for as long as the target's run lasts,
so acceptance lengths range from 1 (a token outside the copyable half, or a run ending) to
the full block. Nothing is fitted to the test answers: the weights follow from the target's
embedding of the mask token and a random direction.

Layer 0 (n_q = n_kv = hidden / head_dim heads, so V carries the whole hidden vector):
  q_proj: mask rows query along dim 7 of each head (the lowest RoPE frequency, so the score
          barely depends on the relative position); k_proj: r . a along dim 7 with r
          orthogonal to the mask token's normed embedding, so mask rows have a zero key
          (k_norm(0) = 0) and a token row a key of +-|k| (sign of r . a_t); context rows
          have zero keys and values (fc = 0). Mask rows therefore attend to the block's
          first row when r . a_t > 0 (score +4 g g'), else spread over zero-score keys.
  v_proj = identity, o_proj = alpha * identity: the attended row's normed embedding is
          added to the mask rows' residual, so the final norm and the target's tied LM head
          pick that token back.
Everything else is zero (MLPs, layer 1's projections) or one (norm weights). Stored in F32:
the mask rows' keys must stay (numerically) zero, which bf16 rounding of r would break.
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_dflash  # noqa: E402
import ref  # noqa: E402


def copy_draft(T, tcfg, block_size, layer_ids, mask_token_id, seed=0, block_size_in="top",
               n_layers=2, gain=3.0, alpha=30.0):
    H = tcfg["hidden_size"]
    d = tcfg.get("head_dim") or H // tcfg["num_attention_heads"]
    if H % d:
        raise ValueError("hidden size must be a multiple of head_dim")
    nh = H // d
    cfg = gen_dflash.draft_config(tcfg, n_layers, block_size, layer_ids, mask_token_id, "f32", block_size_in)
    cfg.update({"num_attention_heads": nh, "num_key_value_heads": nh, "head_dim": d,
                "rope_theta": 1000000.0, "rope_scaling": None})
    F = cfg["intermediate_size"]
    eps = tcfg["rms_norm_eps"]
    e_mask = T.embed[mask_token_id].double()
    a_m = e_mask / torch.sqrt(torch.mean(e_mask * e_mask) + eps)  # input_layernorm = 1
    a_hat = a_m / torch.linalg.norm(a_m)
    r = torch.as_tensor(np.random.default_rng(seed).standard_normal(H), dtype=torch.float64)
    r = r - (r @ a_hat) * a_hat
    r = r / torch.linalg.norm(r)
    w = {}
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    for i in range(n_layers):
        p = f"layers.{i}."
        q = z(nh * d, H)
        k = z(nh * d, H)
        if i == 0:
            for h in range(nh):
                q[h * d + d // 2 - 1] = a_hat.numpy()
                k[h * d + d // 2 - 1] = r.numpy()
        w[p + "input_layernorm.weight"] = np.ones(H, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(H, np.float32)
        w[p + "self_attn.q_proj.weight"] = q
        w[p + "self_attn.k_proj.weight"] = k
        w[p + "self_attn.v_proj.weight"] = np.eye(H, dtype=np.float32) if i == 0 else z(H, H)
        w[p + "self_attn.o_proj.weight"] = alpha * np.eye(H, dtype=np.float32) if i == 0 else z(H, H)
        w[p + "self_attn.q_norm.weight"] = np.full(d, gain, np.float32)
        w[p + "self_attn.k_norm.weight"] = np.full(d, gain, np.float32)
        w[p + "mlp.gate_proj.weight"] = z(F, H)
        w[p + "mlp.up_proj.weight"] = z(F, H)
        w[p + "mlp.down_proj.weight"] = z(H, F)
    w["fc.weight"] = z(H, len(layer_ids) * H)
    w["hidden_norm.weight"] = np.ones(H, np.float32)
    w["norm.weight"] = np.ones(H, np.float32)
    return cfg, w


def main():
    import argparse
    import gen_model
    p = argparse.ArgumentParser(description="write a closed-form copy DFlash draft for a target folder")
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--block-size", dest="block_size", type=int, default=16)
    p.add_argument("--target-layer-ids", dest="layer_ids", required=True, help="e.g. 0,1,2,3")
    p.add_argument("--mask-token-id", dest="mask", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    tcfg = ref.load_config(a.target)
    T = ref.Target.load(a.target, dtype=torch.float32)
    V = tcfg["vocab_size"]
    mask = a.mask if a.mask is not None else (151669 if V == 151936 else V - 1)
    ids = [int(x) for x in a.layer_ids.split(",")]
    cfg, w = copy_draft(T, tcfg, a.block_size, ids, mask, seed=a.seed)
    gen_dflash.write_draft(a.out, cfg, w, "f32")
    print(f"copy_draft: wrote {a.out} (B={a.block_size}, taps {ids}, mask {mask})")


if __name__ == "__main__":
    main()
