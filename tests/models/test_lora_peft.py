#!/usr/bin/env python3
"""test_lora_peft: the adapter vkdraft saves is what a PyTorch/PEFT user reads. Runs
`test_lora DIR` (which saves its reference adapter: targets fc, k_proj, v_proj of a 2-layer
draft with hidden 24, 4/2 heads of 8, 3 taps; r 4, alpha 16, seed 1234, B[k] = sin(0.37 k +
0.5 i) / 8 for module i) and checks with tools/reference (st.py, lora_ref.py, no vkdraft code):
the config fields PEFT's LoraConfig needs, exactly the PEFT tensor names and shapes, A equal
to the Philox/Kaiming-uniform initialisation recomputed in Python, B equal to the formula.
usage: test_lora_peft.py TEST_LORA_BINARY"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("VKDRAFT_SOURCE_ROOT", "."), "tools", "reference"))
import numpy as np  # noqa: E402

import lora_ref  # noqa: E402
import st  # noqa: E402

CFG = {"hidden_size": 24, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
       "intermediate_size": 40, "num_hidden_layers": 2, "dflash_config": {"target_layer_ids": [1, 2, 3]}}


def main():
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "adapter")
        if subprocess.run([sys.argv[1], d]).returncode != 0:
            print("test_lora failed", file=sys.stderr)
            return 1
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        want = {"peft_type": "LORA", "r": 4, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
                "task_type": None, "base_model_name_or_path": "tiny-draft", "fan_in_fan_out": False,
                "use_rslora": False, "use_dora": False, "modules_to_save": None}
        for k, v in want.items():
            if cfg.get(k, "<absent>") != v:
                fails.append(f"adapter_config.json: {k} = {cfg.get(k, '<absent>')!r}, want {v!r}")
        if sorted(cfg.get("target_modules", [])) != ["fc", "k_proj", "v_proj"]:
            fails.append(f"target_modules = {cfg.get('target_modules')}")
        dtypes = st.read_dtypes(os.path.join(d, "adapter_model.safetensors"))
        tensors = st.read(os.path.join(d, "adapter_model.safetensors"))
        mods = [m for m in lora_ref.draft_linears(CFG)
                if any(lora_ref.matches(t, m[0]) for t in ("fc", "k_proj", "v_proj"))]
        names = set()
        for i, (path, fin, fout) in enumerate(mods):
            na = f"base_model.model.{path}.lora_A.weight"
            nb = f"base_model.model.{path}.lora_B.weight"
            names |= {na, nb}
            if na not in tensors or nb not in tensors:
                fails.append(f"missing {na} or {nb}")
                continue
            a, b = tensors[na], tensors[nb]
            if a.shape != (4, fin) or b.shape != (fout, 4) or dtypes[na] != "F32" or dtypes[nb] != "F32":
                fails.append(f"{path}: A {a.shape} {dtypes[na]}, B {b.shape} {dtypes[nb]}")
                continue
            a_ref = lora_ref.init_a(1234, path, 4, fin)
            if not np.array_equal(a, a_ref):
                fails.append(f"{path}: A differs from the Philox Kaiming-uniform init, max "
                             f"{np.abs(a - a_ref).max():.3g}")
            bound = 1 / math.sqrt(fin)
            if np.abs(a).max() > bound:
                fails.append(f"{path}: |A| above 1/sqrt(in)")
            k = np.arange(fout * 4, dtype=np.float64)
            b_ref = (np.sin(0.37 * k + 0.5 * i) / 8.0).astype(np.float32).reshape(fout, 4)
            if np.abs(b - b_ref).max() > 1e-7:
                fails.append(f"{path}: B differs from the formula by {np.abs(b - b_ref).max():.3g}")
        extra = set(tensors) - names
        if extra:
            fails.append(f"unexpected tensors {sorted(extra)}")
        # the same folder read through the generic reader the TTT reference uses
        _, read, scale = lora_ref.read_adapter(d)
        if set(read) != {m[0] for m in mods} or scale != 4.0:
            fails.append(f"lora_ref.read_adapter: modules {sorted(read)}, scale {scale}")
    for f in fails:
        print("FAIL", f, file=sys.stderr)
    print(f"test_lora_peft: {len(mods)} modules, names/shapes/values checked, {len(fails)} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
