#!/usr/bin/python3
"""test_probe_ref: every metric of a probe walk against tools/reference/probe_ref.py.

argv[1] is the test_probe executable: `test_probe --dump FILE` runs the walk of
methods/probe.c on the committed fixture pair (tests/models/fixtures/dflash: target +
draft-b4) over the fixture's prompt + the target's greedy continuation and dumps per
position KL/TVD at each temperature and the baseline, per block the product, log w
mean/std, MH acceptance, and per block and temperature the drawn tokens, the uniforms that
drew them, log w of every sample and the MH uniforms. The reference recomputes everything
from its own float64 logits: distances, products, the inverse-CDF draws (a draw must fall
inside the interval its uniform selects), log w for the drawn tokens, and the MH chain over
its own weights with the dumped uniforms (chains with a decision within 1e-3 of its
threshold are counted as ambiguous, not compared); the chain statistics beside the
acceptance (moves that changed the tokens, distinct samples, the S-step windows of seed 002
section 4.3) from the reference's weights and the dumped tokens (probe_ref.chain_stats)."""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ["VKDRAFT_SOURCE_ROOT"]
sys.path.insert(0, os.path.join(SRC, "tools", "reference"))
import probe_ref  # noqa: E402


def main():
    exe = sys.argv[1]
    fx = os.path.join(SRC, "tests", "models", "fixtures", "dflash")
    with tempfile.TemporaryDirectory(prefix="vkd-probe-") as tmp:
        path = os.path.join(tmp, "dump.json")
        p = subprocess.run([exe, "--dump", path], capture_output=True, text=True, timeout=240)
        if p.returncode != 0:
            raise SystemExit(f"test_probe --dump failed ({p.returncode}): {p.stderr}")
        dump = json.load(open(path))
    fails, worst = probe_ref.compare(dump, os.path.join(fx, "target", "model"), os.path.join(fx, "draft-b4", "model"))
    print("probe vs float64 reference:", json.dumps(worst))
    if worst["mh_checked"] < 0.8 * (worst["mh_checked"] + worst["mh_ambiguous"]):
        fails.append(f"too many ambiguous MH chains: {worst}")
    if worst["chains_checked"] < 0.5 * worst["mh_checked"]:
        fails.append(f"too few chain statistics compared: {worst}")
    if not worst["chains_changed_lt_accepts"] and not any(t["chain"][1] < t["chain"][0] for t in dump["traces"]):
        print("note: no chain accepted a move to an identical sample")
    sims = [s for b in dump["blocks"] for s in b["sim_accept"]]
    if not any(0 < s < 1 for s in sims):
        fails.append("every block's MH acceptance is 0 or 1: the comparison would be weak")
    for f in fails[:30]:
        print("FAIL:", f, file=sys.stderr)
    if fails:
        raise SystemExit(f"{len(fails)} check(s) failed")
    print("test_probe_ref: all checks passed")


if __name__ == "__main__":
    main()
