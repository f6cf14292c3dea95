#!/usr/bin/python3
"""test_exit_train.py: generates two tiny odd-sized targets (tools/reference/gen_model.py:
hidden 36, 3 layers, 3 query heads over 1 kv head of 12, ffn 52, vocab 97; one untied f32,
one tied bf16), computes the float64 reference of exit-head distillation with
tools/reference/exit_ref.py, and runs test_exit_train against it:
  untied, layer 1, T = 2, KL only, 3 AdamW steps (lr 1e-2, clip 1.0);
  tied bf16, layer 0, T = 1, CE + KL, 2 AdamW steps (lr 5e-3, no clipping);
  untied f32 with vocabulary 40001 (a head of 1.44M values: gradients must be rewritten
  whole each step, which a zeroing pass with vkd_op_axpby did not do past ~1M values);
and with --ft-last-block's copy of the exit block trained too (exit_ref.py --ft-block):
  untied f32, layer 1, T = 2, KL, 3 steps; tied bf16, layer 0 (the block reads the
  embeddings), CE + KL, 2 steps.
Under AddressSanitizer meson runs it with quarantine_size_mb=1 (tests/meson.build,
test_env_small_quarantine): lavapipe's many small aligned allocations otherwise fill
ASan's quarantine until the vocabulary-40001 case is OOM-killed.
usage: test_exit_train.py TEST_EXIT_TRAIN_EXE"""
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
PY = "/usr/bin/python3"
SEQS = "5,9,13,2,77,40,3,8,19,60,1,0,96;4,4,51,23,88,7,31,15,2"
# last column: 1 = the target's weights in the device's preferred layout (texel blocks on lavapipe), as
# `vkdraft exit-train` loads them; 0 = all row-major
CASES = [("--no-tie", "f32", 1, 2.0, 0, 3, 0.01, 1.0, 97, 0, 0), ("--tie", "bf16", 0, 1.0, 1, 2, 0.005, 0.0, 97, 0, 1),
         ("--no-tie", "f32", 1, 2.0, 0, 2, 0.01, 1.0, 40001, 0, 1),
         ("--no-tie", "f32", 1, 2.0, 0, 3, 0.01, 1.0, 97, 1, 0), ("--tie", "bf16", 0, 1.0, 1, 2, 0.005, 0.0, 97, 1, 1)]

rc = 0
with tempfile.TemporaryDirectory() as tmp:
    for i, (tie, dt, layer, T, ce, steps, lr, clip, vocab, block, dev) in enumerate(CASES):
        tgt, exp = os.path.join(tmp, f"t{i}"), os.path.join(tmp, f"e{i}.safetensors")
        subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "36",
                        "--layers", "3", "--heads", "3", "--kv-heads", "1", "--head-dim", "12", "--ffn", "52",
                        "--vocab", str(vocab), tie, "--dtype", dt, "--max-pos", "256", "--seed", str(11 + i), "--out", tgt],
                       check=True, capture_output=True)
        ref = [PY, os.path.join(SRC, "tools/reference/exit_ref.py"), "--target", tgt, "--layer", str(layer),
               "--temperature", str(T), "--seqs", SEQS, "--steps", str(steps), "--lr", str(lr), "--clip", str(clip),
               "--out", exp] + (["--ce"] if ce else []) + (["--ft-block"] if block else [])
        subprocess.run(ref, check=True)
        print(f"case {i}: {tie} {dt} vocab {vocab} layer {layer} T {T} ce {ce} block {block} device layout {dev}",
              flush=True)
        rc |= subprocess.run([sys.argv[1], tgt, exp, str(layer), str(T), str(ce), str(steps), str(lr), str(clip),
                              SEQS, str(block), str(dev)]).returncode
sys.exit(rc)
