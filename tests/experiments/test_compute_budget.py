#!/usr/bin/python3
"""test_compute_budget: the compute budget table of `vkdraft bench spec` (seeds 001/004 item
0.4) on the committed DFlash fixture pair. Bytes per token recomputed here from the two
config.json files (layers x 2 x kv heads x head_dim x 4 bytes for f32 KV caches; taps x
hidden x 4), totals for the prompt + one block; times positive and finite."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
from vkd_cli import SRC, check, run  # noqa: E402
import vkd_cli  # noqa: E402


def main():
    fx = os.path.join(SRC, "tests", "models", "fixtures", "dflash")
    tgt, drf = os.path.join(fx, "target", "model"), os.path.join(fx, "draft-b4", "model")
    tc, dc = (json.load(open(os.path.join(d, "config.json"))) for d in (tgt, drf))

    def kv(c):
        hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        return c["num_hidden_layers"] * 2 * c["num_key_value_heads"] * hd * 4
    taps = len(dc["dflash_config"]["target_layer_ids"]) if "dflash_config" in dc else len(dc["target_layer_ids"])
    want = {"target KV cache": kv(tc), "draft KV cache": kv(dc), "hidden-state taps": taps * tc["hidden_size"] * 4}
    P, B = 37, dc["dflash_config"]["block_size"] if "dflash_config" in dc else dc["block_size"]
    out = run(["bench", "spec", "--target", tgt, "--draft", drf, "--prompt-tokens", str(P), "--reps", "3"]).stdout
    check(f"{P} prompt tokens, longest sequence {P + B}" in out, "budget header:\n" + out)
    for item, per in want.items():
        m = re.search(r"\| " + re.escape(item) + r" \| ([0-9.]+) MiB \| (\d+) B/token \|", out)
        check(m is not None, f"no '{item}' row:\n{out}")
        if m:
            check(int(m.group(2)) == per, f"{item}: {m.group(2)} B/token, expected {per}")
            check(abs(float(m.group(1)) - per * (P + B) / 2**20) < 1e-3, f"{item}: {m.group(1)} MiB")
    for item in ("target prefill", "draft calls (1)", "verification (1)"):
        m = re.search(r"\| " + re.escape(item) + r" \| ([0-9.]+) s \| ([0-9.]+) ms/", out)
        check(m is not None and float(m.group(1)) > 0, f"'{item}' time:\n{out}")
    # spec's summary: the same sizes, the run's counts
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    doc = json.loads(run(["spec", "--target", tgt, "--draft", drf, "--ids", ",".join(map(str, ids)),
                          "--max-new-tokens", "12", "--json"]).stdout)
    cb, tot = doc["total"]["compute_budget"], doc["total"]
    n = len(doc["prompts"][0]["ids"])
    check(cb["target_kv_bytes_per_token"] == want["target KV cache"] and cb["draft_kv_bytes_per_token"] ==
          want["draft KV cache"] and cb["taps_bytes_per_token"] == want["hidden-state taps"], f"spec sizes {cb}")
    check(cb["prompts"] == 1 and cb["prompt_tokens"] == len(ids) and cb["max_len"] == len(ids) + n and
          cb["draft_calls"] == cb["verify_steps"] == tot["steps"] and abs(cb["verify_s"] - tot["verify_s"]) < 1e-9 and
          cb["target_kv_bytes"] == cb["target_kv_bytes_per_token"] * cb["max_len"], f"spec budget {cb} vs {tot}")
    print(f"test_compute_budget: {want}; {vkd_cli.failures} failure(s)", file=sys.stderr)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
