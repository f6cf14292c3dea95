"""ref.py: independent PyTorch reference for vkdraft's targets and the DFlash draft.

Written from the semantics of transformers' modeling_qwen3.py / modeling_llama.py /
modeling_rope_utils.py and z-lab/dflash's DFlashDraftModel + dflash_generate (see
/work/shared/design.md sections 3-5), in plain torch, without transformers.

Precision: the weights are the values stored in the checkpoint (bf16/f16 widened
exactly), and every computation (matmuls, RMSNorm, RoPE angles and cos/sin, softmax) is
done in float64 by default (dtype=torch.float64). Fixtures are written as float32.
vkdraft computes in f32, so its outputs differ from these by f32 rounding only.

Conventions
  hidden state of layer i = output of decoder layer i (0-based), before the final norm,
  for every layer including the last (transformers' hidden_states[i+1], except that its
  last entry has the final norm applied; that quirk is not copied).
  KV cache rows hold K after k_norm (Qwen3) and RoPE, V as projected; crop(n) keeps the
  first n positions.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))


# ----------------------------------------------------------------------------- ops

def rms_norm(x, w, eps):
    # x is (..., n), w is (n,): x * rsqrt(mean(x^2) + eps) * w
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def default_inv_freq(theta, d, dtype=torch.float64):
    # inv_freq_j = theta^(-2j/d), j = 0..d/2-1
    return 1.0 / (float(theta) ** (torch.arange(0, d, 2, dtype=dtype) / d))


def llama3_inv_freq(theta, d, factor, low_freq_factor, high_freq_factor, orig_max_pos, dtype=torch.float64):
    # transformers' _compute_llama3_parameters: keep high frequencies, divide low ones by
    # `factor`, blend linearly (in 1/wavelength) between the two wavelength bounds
    inv_freq = default_inv_freq(theta, d, dtype)
    low_freq_wavelen = orig_max_pos / low_freq_factor
    high_freq_wavelen = orig_max_pos / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (orig_max_pos / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def inv_freq_from_config(cfg, dtype=torch.float64):
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", 10000.0)
    rs = cfg.get("rope_scaling")
    if rs is None and isinstance(cfg.get("rope_parameters"), dict):
        rs = cfg["rope_parameters"]
        theta = rs.get("rope_theta", theta)
    rtype = (rs or {}).get("rope_type", (rs or {}).get("type", "default"))
    if rtype in (None, "default"):
        return default_inv_freq(theta, d, dtype)
    if rtype == "llama3":
        return llama3_inv_freq(theta, d, float(rs["factor"]), float(rs["low_freq_factor"]),
                               float(rs["high_freq_factor"]), float(rs["original_max_position_embeddings"]), dtype)
    raise ValueError(f"rope_type {rtype} not supported by the reference")


def rope(x, pos, inv_freq):
    # x is (heads, T, d), pos is (T,) absolute positions; rotate-half pairs (j, j + d/2)
    ang = pos.to(inv_freq.dtype)[:, None] * inv_freq[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rot * sin


def attention(q, k, v, mask):
    # q is (n_q, Tq, d), k/v are (n_kv, Tk, d), mask is (Tq, Tk) bool (True = visible) or
    # None (all visible). GQA: q head h reads kv head h // (n_q / n_kv).
    g = q.shape[-3] // k.shape[-3]
    k = k.repeat_interleave(g, dim=-3)
    v = v.repeat_interleave(g, dim=-3)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v        # (n_q, Tq, d)


def heads(x, n, d):
    # (..., T, n*d) -> (..., n, T, d)
    return x.view(*x.shape[:-1], n, d).transpose(-2, -3)


def unheads(x):
    # (..., n, T, d) -> (..., T, n*d)
    x = x.transpose(-2, -3)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def mlp(x, p):
    g = x @ p["mlp.gate_proj.weight"].T
    u = x @ p["mlp.up_proj.weight"].T
    return (torch.nn.functional.silu(g) * u) @ p["mlp.down_proj.weight"].T


# ----------------------------------------------------------------------------- target

class KVCache:
    """Per-layer K (after norm and RoPE) and V, each (n_kv, T, d)."""

    def __init__(self, n_layers):
        self.k = [None] * n_layers
        self.v = [None] * n_layers

    def __len__(self):
        return 0 if self.k[0] is None else self.k[0].shape[-2]

    def append(self, i, k, v):
        self.k[i] = k if self.k[i] is None else torch.cat([self.k[i], k], dim=-2)
        self.v[i] = v if self.v[i] is None else torch.cat([self.v[i], v], dim=-2)
        return self.k[i], self.v[i]

    def crop(self, n):
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i] = self.k[i][..., :n, :]
                self.v[i] = self.v[i][..., :n, :]


def load_config(folder):
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def to_torch(weights, dtype):
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)).to(dtype) for k, v in weights.items()}


class Target:
    """Qwen3ForCausalLM / LlamaForCausalLM forward with a KV cache."""

    def __init__(self, cfg, weights, dtype=torch.float64):
        self.cfg = cfg
        self.dtype = dtype
        self.arch = cfg["model_type"]
        self.H = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.nq = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        self.d = cfg.get("head_dim") or self.H // self.nq
        self.eps = cfg["rms_norm_eps"]
        w = to_torch(weights, dtype)
        self.embed = w["model.embed_tokens.weight"]
        self.lm_head = self.embed if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
        self.norm = w["model.norm.weight"]
        self.layers = []
        for i in range(self.L):
            pre = f"model.layers.{i}."
            self.layers.append({k[len(pre):]: v for k, v in w.items() if k.startswith(pre)})
        self.inv_freq = inv_freq_from_config(cfg, dtype)

    @classmethod
    def load(cls, folder, dtype=torch.float64):
        return cls(load_config(folder), st.read_model(folder), dtype)

    def new_cache(self):
        return KVCache(self.L)

    def forward(self, ids, cache=None):
        """ids (T,) long at positions len(cache)..len(cache)+T-1; cache is appended to.
        Returns logits (T, V) and hidden (L, T, H): output of every decoder layer.
        ids may have leading batch dimensions (..., T) (data generation only): then
        logits are (..., T, V) and hidden (L, ..., T, H)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        if cache is None:
            cache = self.new_cache()
        p0, T = len(cache), ids.shape[-1]
        pos = torch.arange(p0, p0 + T)
        mask = torch.arange(p0 + T)[None, :] <= pos[:, None]          # causal, (T, p0+T)
        x = self.embed[ids]
        hidden = []
        for i, p in enumerate(self.layers):
            a = rms_norm(x, p["input_layernorm.weight"], self.eps)
            q = heads(a @ p["self_attn.q_proj.weight"].T, self.nq, self.d)
            k = heads(a @ p["self_attn.k_proj.weight"].T, self.nkv, self.d)
            v = heads(a @ p["self_attn.v_proj.weight"].T, self.nkv, self.d)
            if self.arch == "qwen3":
                q = rms_norm(q, p["self_attn.q_norm.weight"], self.eps)
                k = rms_norm(k, p["self_attn.k_norm.weight"], self.eps)
            q = rope(q, pos, self.inv_freq)
            k = rope(k, pos, self.inv_freq)
            K, V = cache.append(i, k, v)
            o = unheads(attention(q, K, V, mask))
            x = x + o @ p["self_attn.o_proj.weight"].T
            x = x + mlp(rms_norm(x, p["post_attention_layernorm.weight"], self.eps), p)
            hidden.append(x)
        logits = rms_norm(x, self.norm, self.eps) @ self.lm_head.T
        return logits, torch.stack(hidden)

    def greedy(self, prompt, n_new, stop=None):
        """Greedy autoregressive continuation: n_new ids (fewer if a stop id is produced)."""
        cache = self.new_cache()
        logits, _ = self.forward(prompt, cache)
        out = []
        for _ in range(n_new):
            t = int(torch.argmax(logits[-1]))
            out.append(t)
            if stop and t in stop:
                break
            logits, _ = self.forward([t], cache)
        return out


# ----------------------------------------------------------------------------- DFlash draft

def dflash_target_layer_ids(cfg, n_target_layers=None):
    """dflash_config.target_layer_ids, or z-lab's build_target_layer_ids fallback."""
    dc = cfg.get("dflash_config") or {}
    ids = dc.get("target_layer_ids", cfg.get("target_layer_ids"))
    if ids is not None:
        return list(ids)
    L = n_target_layers or cfg["num_target_layers"]
    n = cfg["num_hidden_layers"]
    if n == 1:
        return [L // 2]
    return [int(round(1 + i * (L - 4) / (n - 1))) for i in range(n)]


def dflash_value(cfg, name, default=None):
    dc = cfg.get("dflash_config") or {}
    return dc.get(name, cfg.get(name, default))


class Draft:
    """DFlashDraftModel: layers, fc, hidden_norm, norm; embedding and lm_head from the target."""

    def __init__(self, cfg, weights, target, dtype=torch.float64, params=None):
        self.cfg = cfg
        self.target = target
        self.dtype = dtype
        self.H = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.nq = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        self.d = cfg.get("head_dim") or self.H // self.nq
        self.eps = cfg["rms_norm_eps"]
        self.layer_ids = dflash_target_layer_ids(cfg, target.L)
        self.block_size = int(dflash_value(cfg, "block_size", 16))
        self.mask_token_id = int(dflash_value(cfg, "mask_token_id"))
        self.inv_freq = inv_freq_from_config(cfg, dtype)
        self.p = params if params is not None else to_torch(weights, dtype)

    @classmethod
    def load(cls, folder, target, dtype=torch.float64):
        return cls(load_config(folder), st.read_model(folder), target, dtype)

    def new_cache(self):
        return KVCache(self.L)

    def features(self, hidden):
        # hidden (L_target, T, H) -> F (T, n_taps*H): taps concatenated in target_layer_ids order
        return torch.cat([hidden[i] for i in self.layer_ids], dim=-1)

    def forward(self, feats, block_ids, start, cache=None, head=None):
        """One draft call (head: rows of the LM head to use instead of the whole target
        lm_head; training on a vocabulary subset only). feats (..., n, n_taps*H): features of the new context positions
        len(cache)..start-1 (cache None: all positions 0..start-1). block_ids (..., B) at
        positions start..start+B-1 (leading batch dims are for training only). Appends
        the new context rows' K/V to cache, never the block rows' (so the cache is left
        cropped to `start`). Returns logits (..., B-1, V) for positions start+1..
        start+B-1, and the final-normed hidden (..., B, H)."""
        p = self.p
        block_ids = torch.as_tensor(block_ids, dtype=torch.long)
        c0 = 0 if cache is None else len(cache)
        n, B = feats.shape[-2], block_ids.shape[-1]
        if c0 + n != start:
            raise ValueError(f"draft: cache {c0} + {n} new context rows != start {start}")
        c = rms_norm(feats.to(self.dtype) @ p["fc.weight"].T, p["hidden_norm.weight"], self.eps)
        h = self.target.embed[block_ids].to(self.dtype)
        ctx_pos = torch.arange(c0, start)
        blk_pos = torch.arange(start, start + B)
        for i in range(self.L):
            pre = f"layers.{i}."
            a = rms_norm(h, p[pre + "input_layernorm.weight"], self.eps)
            q = rms_norm(heads(a @ p[pre + "self_attn.q_proj.weight"].T, self.nq, self.d),
                         p[pre + "self_attn.q_norm.weight"], self.eps)
            ca = torch.cat([c, a], dim=-2)
            k = rms_norm(heads(ca @ p[pre + "self_attn.k_proj.weight"].T, self.nkv, self.d),
                         p[pre + "self_attn.k_norm.weight"], self.eps)
            v = heads(ca @ p[pre + "self_attn.v_proj.weight"].T, self.nkv, self.d)
            q = rope(q, blk_pos, self.inv_freq)
            k = rope(k, torch.cat([ctx_pos, blk_pos]), self.inv_freq)
            if cache is not None:
                Kc, Vc = cache.append(i, k[..., :n, :], v[..., :n, :])
                K = torch.cat([Kc, k[..., n:, :]], dim=-2)
                V = torch.cat([Vc, v[..., n:, :]], dim=-2)
            else:
                K, V = k, v
            h = h + unheads(attention(q, K, V, None)) @ p[pre + "self_attn.o_proj.weight"].T
            m = rms_norm(h, p[pre + "post_attention_layernorm.weight"], self.eps)
            h = h + (torch.nn.functional.silu(m @ p[pre + "mlp.gate_proj.weight"].T)
                     * (m @ p[pre + "mlp.up_proj.weight"].T)) @ p[pre + "mlp.down_proj.weight"].T
        hn = rms_norm(h, p["norm.weight"], self.eps)
        W = self.target.lm_head if head is None else head
        logits = hn[..., 1:, :] @ W.to(self.dtype).T
        return logits, hn


# ----------------------------------------------------------------------------- spec decoding

def spec_generate(target, draft, prompt, max_new, block_size=None, stop=None):
    """Greedy DFlash speculative decoding (design.md section 5 / z-lab dflash_generate).

    Every step drafts a full block of B rows. Returns (generated ids, acceptance lengths,
    trace) where acceptance length = tokens committed by the step (n accepted + 1 bonus;
    the last step may commit fewer because of max_new or a stop id) and trace lists per
    step (start, proposals, n)."""
    B = block_size or draft.block_size
    prompt = list(prompt)
    P = len(prompt)
    tcache, dcache = target.new_cache(), draft.new_cache()
    logits, hidden = target.forward(prompt, tcache)
    seq = prompt + [int(torch.argmax(logits[-1]))]
    F = draft.features(hidden)
    start = P
    acc, trace = [], []
    stopped = bool(stop) and seq[-1] in stop
    while len(seq) - P < max_new and not stopped:
        block = [seq[start]] + [draft.mask_token_id] * (B - 1)
        dlogits, _ = draft.forward(F, block, start, dcache)
        props = [int(t) for t in torch.argmax(dlogits, dim=-1)]
        vlogits, vhidden = target.forward([seq[start]] + props, tcache)
        post = [int(t) for t in torch.argmax(vlogits, dim=-1)]
        n = 0
        while n < B - 1 and props[n] == post[n]:
            n += 1
        new = props[:n] + [post[n]]
        room = max_new - (len(seq) - P)
        new = new[:room]
        if stop:
            for j, t in enumerate(new):
                if t in stop:
                    new = new[:j + 1]
                    stopped = True
                    break
        top2 = torch.topk(dlogits, 2, dim=-1).values
        gaps = [float(x) for x in (top2[:, 0] - top2[:, 1])[: n + 1]]
        trace.append((start, props, n, gaps))
        seq += new
        acc.append(len(new))
        F = draft.features(vhidden)[: n + 1]
        start += n + 1
        tcache.crop(start)
    return seq[P:P + max_new], acc, trace


def histogram(acc, B):
    h = [0] * (B + 1)
    for a in acc:
        h[a] += 1
    return {i: h[i] for i in range(1, B + 1) if h[i]}
