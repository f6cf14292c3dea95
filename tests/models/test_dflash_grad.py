#!/usr/bin/python3
"""test_dflash_grad.py: generates a tiny DFlash pair with odd sizes (tools/reference:
hidden 36, 3 query heads over 1 kv head of 12, ffn 52, vocab 97; a 2-layer bf16 draft with
block 5 reading target layers 0 and 2) and runs test_dflash_grad on it.
usage: test_dflash_grad.py TEST_DFLASH_GRAD_EXE"""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
PY = "/usr/bin/python3"

with tempfile.TemporaryDirectory() as tmp:
    tgt, drf = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "36",
                    "--layers", "3", "--heads", "3", "--kv-heads", "1", "--head-dim", "12", "--ffn", "52",
                    "--vocab", "97", "--dtype", "f32", "--max-pos", "256", "--seed", "7", "--out", tgt],
                   check=True, capture_output=True)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", tgt, "--out", drf,
                    "--layers", "2", "--block-size", "5", "--target-layer-ids", "0,2", "--dtype", "bf16",
                    "--seed", "3", "--train-steps", "0"], check=True, capture_output=True)
    sys.exit(subprocess.run([sys.argv[1], tgt, drf]).returncode)
