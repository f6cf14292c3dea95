#!/usr/bin/python3
"""test_dflash_blocks.py: generates a tiny DFlash pair with odd sizes (tools/reference:
hidden 44, 6 query heads over 2 kv heads of 12 (GQA), ffn 60, vocab 101; a 2-layer f32 draft
with block 5 reading target layers 0 and 2) and runs test_dflash_blocks on it: the one-pass
block-sparse training forward/backward against the per-block path.
usage: test_dflash_blocks.py TEST_DFLASH_BLOCKS_EXE"""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
PY = "/usr/bin/python3"

with tempfile.TemporaryDirectory() as tmp:
    tgt, drf = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "44",
                    "--layers", "3", "--heads", "6", "--kv-heads", "2", "--head-dim", "12", "--ffn", "60",
                    "--vocab", "101", "--dtype", "f32", "--max-pos", "256", "--seed", "11", "--out", tgt],
                   check=True, capture_output=True)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", tgt, "--out", drf,
                    "--layers", "2", "--block-size", "5", "--target-layer-ids", "0,2", "--dtype", "f32",
                    "--seed", "5", "--train-steps", "0"], check=True, capture_output=True)
    sys.exit(subprocess.run([sys.argv[1], tgt, drf]).returncode)
