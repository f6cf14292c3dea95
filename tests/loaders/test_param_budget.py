#!/usr/bin/python3
"""test_param_budget: `vkdraft inspect --json`'s parameter_budget (seed 000 section 4.1)
against the safetensors headers read here with the standard library, each tensor put in its
component by the rules of loaders/param_budget.h written again as regular expressions:
tied / untied / sharded targets, a DFlash draft (fc, hidden_norm), and a generated model
with a tensor no rule names ("other") and a bad layer index (a problem, exit 1)."""
import json
import os
import re
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
from vkd_cli import SRC, check, run  # noqa: E402
import vkd_cli  # noqa: E402

FX = os.path.join(SRC, "tests", "models", "fixtures")


def headers(folder):
    out = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            with open(os.path.join(folder, f), "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                h = json.loads(fh.read(n))
            out.update({k: v["shape"] for k, v in h.items() if k != "__metadata__"})
    return out


def expected(folder):
    b = {"total": 0, "embed_tokens": 0, "lm_head": 0, "fc": 0, "norms": 0, "layers": 0, "other": 0, "layer": {}}
    fc_shape = None
    for name, shape in headers(folder).items():
        n = 1
        for d in shape:
            n *= d
        b["total"] += n
        s = name[6:] if name.startswith("model.") else name
        m = re.match(r"layers\.(\d+)\.", s)
        if s.startswith("embed_tokens."):
            b["embed_tokens"] += n
        elif s.startswith("lm_head."):
            b["lm_head"] += n
        elif s.startswith("fc."):
            b["fc"] += n
            if s == "fc.weight":
                fc_shape = shape
        elif re.search(r"norm\.weight$", s):
            b["norms"] += n
        elif m:
            b["layer"][int(m.group(1))] = b["layer"].get(int(m.group(1)), 0) + n
            b["layers"] += n
        else:
            b["other"] += n
    nl = 1 + max(b["layer"]) if b["layer"] else 0
    b["layer"] = [b["layer"].get(i, 0) for i in range(nl)]
    b["fc_shape"] = fc_shape
    return b


def compare(folder, tied):
    p = run(["inspect", folder, "--json"], ok=False)
    got = json.loads(p.stdout)["parameter_budget"]
    want = expected(folder)
    want["lm_head_tied"] = tied
    check(got == want, f"{folder}: budget {got} vs {want}")
    parts = got["embed_tokens"] + got["lm_head"] + got["fc"] + got["norms"] + got["layers"] + got["other"]
    check(parts == got["total"] == json.loads(p.stdout)["parameters"], f"{folder}: components do not add up")
    return got


def main():
    compare(os.path.join(FX, "qwen3-tied-f32", "model"), True)
    compare(os.path.join(FX, "qwen3-untied-bf16-2shards", "model"), False)
    t = compare(os.path.join(FX, "dflash", "target", "model"), False)
    d = compare(os.path.join(FX, "dflash", "draft-b4", "model"), False)
    check(d["fc_shape"] and d["fc_shape"][1] == 5 * d["fc_shape"][0] and t["fc"] == 0, f"draft fc {d['fc_shape']}")
    txt = run(["inspect", os.path.join(FX, "dflash", "draft-b4", "model")], ok=False).stdout
    check("320 -> 64, 5.0:1 compression" in txt and "layer 1" in txt, "text budget:\n" + txt)

    # a tensor outside every rule, and a layer index that is not a number
    with tempfile.TemporaryDirectory(prefix="vkd-budget-") as tmp:
        src = os.path.join(FX, "qwen3-tied-f32", "model")
        for name, extra in (("other", "rotary.inv_freq"), ("bad", "model.layers.x.mlp.up_proj.weight")):
            dst = os.path.join(tmp, name)
            shutil.copytree(src, dst)
            path = os.path.join(dst, "model.safetensors")
            with open(path, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                h = json.loads(fh.read(n))
                data = fh.read()
            h[extra] = {"dtype": "F32", "shape": [3], "data_offsets": [len(data), len(data) + 12]}
            hb = json.dumps(h).encode()
            hb += b" " * (-len(hb) % 8)
            with open(path, "wb") as fh:
                fh.write(struct.pack("<Q", len(hb)) + hb + data + b"\0" * 12)
            p = run(["inspect", dst, "--json"], ok=False)
            doc = json.loads(p.stdout)
            if name == "other":
                check(doc["parameter_budget"]["other"] == 3, f"other: {doc['parameter_budget']}")
                check(doc["parameter_budget"] == dict(expected(dst), lm_head_tied=True), "other: budget differs")
            else:
                check(p.returncode == 1 and "parameter_budget" not in doc and
                      any("model.layers.x.mlp.up_proj.weight" in q and "layer index" in q for q in doc["problems"]),
                      f"bad layer index: rc {p.returncode}, problems {doc['problems']}")
    print(f"test_param_budget: {vkd_cli.failures} failure(s)", file=sys.stderr)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
