"""lora_ref.py: LoRA adapters in PyTorch PEFT's folder layout, read and written without PEFT
(numpy + st.py), and vkdraft's seeded initialisation of A, restated independently of the C
code (models/vkd_lora.h):

  A[e] of module `path` (r x in, row-major element e) = (2u - 1) / sqrt(in),
  u = (w >> 8) * 2^-24, w = word e % 4 of Philox4x32-10(key = seed,
  counter = (FNV-1a-64(path), e // 4));   B = 0.

This is the distribution of PEFT's nn.init.kaiming_uniform_(A, a=sqrt(5)):
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with fan_in = in_features.
Tensor names: base_model.model.<module path>.lora_A.weight / .lora_B.weight."""
import json
import os

import numpy as np

import st
from power_ref import philox4x32

PREFIX = "base_model.model."
LINEARS = ["fc", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for ch in s.encode():
        h = ((h ^ ch) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def init_a(seed, path, r, fan_in):
    n = r * fan_in
    hi = fnv1a64(path)
    out = np.empty(n, dtype=np.float32)
    bound = 1.0 / np.sqrt(float(fan_in))
    for e in range(0, n, 4):
        w = philox4x32(seed, hi, e // 4)
        for k in range(min(4, n - e)):
            u = (w[k] >> 8) * (1.0 / 16777216.0)
            out[e + k] = np.float32((2.0 * u - 1.0) * bound)
    return out.reshape(r, fan_in)


def draft_linears(cfg):
    """[(module path, in, out)] of a DFlash draft config.json dict, in vkdraft's order."""
    h = cfg["hidden_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nq
    ffn = cfg["intermediate_size"]
    taps = len(cfg["dflash_config"]["target_layer_ids"])
    out = [("fc", taps * h, h)]
    for i in range(cfg["num_hidden_layers"]):
        a = f"layers.{i}.self_attn."
        m = f"layers.{i}.mlp."
        out += [(a + "q_proj", h, nq * hd), (a + "k_proj", h, nkv * hd), (a + "v_proj", h, nkv * hd),
                (a + "o_proj", nq * hd, h), (m + "gate_proj", h, ffn), (m + "up_proj", h, ffn),
                (m + "down_proj", ffn, h)]
    return out


def matches(target, path):
    return path == target or path.endswith("." + target)


def read_adapter(folder):
    """(config dict, {module path: (A float64 [r, in], B float64 [out, r])}), scale."""
    with open(os.path.join(folder, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["peft_type"] == "LORA", "not a LoRA adapter"
    t = st.read(os.path.join(folder, "adapter_model.safetensors"))
    mods = {}
    for name, arr in t.items():
        assert name.startswith(PREFIX), name
        rest = name[len(PREFIX):]
        for kind in ("lora_A", "lora_B"):
            suf = "." + kind + ".weight"
            if rest.endswith(suf):
                p = rest[: -len(suf)]
                mods.setdefault(p, [None, None])[0 if kind == "lora_A" else 1] = arr.astype(np.float64)
    r = cfg["r"]
    scale = cfg["lora_alpha"] / (np.sqrt(r) if cfg.get("use_rslora") else r)
    return cfg, {p: (ab[0], ab[1]) for p, ab in mods.items()}, float(scale)


def write_adapter(folder, mods, r, alpha, targets, base_model=None, dtype="F32"):
    """mods: {path: (A, B)}; writes adapter_config.json and adapter_model.safetensors."""
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for p, (a, b) in mods.items():
        tensors[PREFIX + p + ".lora_A.weight"] = np.asarray(a, dtype=np.float32)
        tensors[PREFIX + p + ".lora_B.weight"] = np.asarray(b, dtype=np.float32)
    st.write(os.path.join(folder, "adapter_model.safetensors"), tensors, dtype)
    cfg = {"base_model_name_or_path": base_model, "bias": "none", "fan_in_fan_out": False,
           "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
           "layers_to_transform": None, "lora_alpha": alpha, "lora_dropout": 0.0,
           "modules_to_save": None, "peft_type": "LORA", "r": r, "rank_pattern": {},
           "revision": None, "target_modules": list(targets), "task_type": None,
           "use_dora": False, "use_rslora": False}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
