#!/usr/bin/python3
"""test_power_cli: `vkdraft power` end to end on a tiny generated Qwen3 target with the real
Qwen3 tokenizer (and a random DFlash draft): outputs (answers.jsonl, acceptance.csv,
summary.json, report.txt, config.json, the journal), GSM8K scoring, determinism by seed,
--resume after a torn journal write (equal to the uninterrupted run), a resume with changed
parameters refused, and bad input (one clear error line, non-zero exit)."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import check, hf, make_pair, require_tokenizer, run  # noqa: E402


def lines(path):
    return [json.loads(x) for x in open(path).read().splitlines()]


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-power-cli-")
    tgt, drf = make_pair(tmp, hidden=32, heads=2, kv_heads=1, ffn=64, dtype="bf16", seed=7)
    data = [{"question": "What is 2+3?", "answer": "2+3=5\n#### 5"},
            {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "#### 7"},
            {"question": "Half of 10?", "answer": "#### 5"}]
    ds = os.path.join(tmp, "gsm8k_tiny.jsonl")
    with open(ds, "w") as f:
        for r in data:
            f.write(json.dumps(r) + "\n")
    base = ["power", "--target", tgt, "--dataset", ds, "--seed", "3", "--alpha", "4", "--max-new-tokens", "12",
            "--block-tokens", "6", "--mcmc-steps", "2", "--baselines", "greedy,sample,lowtemp", "--quiet"]
    out = os.path.join(tmp, "out")
    p = run(base + ["--out", out])
    for name in ("answers.jsonl", "acceptance.csv", "summary.json", "report.txt", "config.json", "examples.jsonl"):
        check(os.path.exists(os.path.join(out, name)), f"{name} written")
    check("accuracy" in p.stdout and "power" in p.stdout, f"report printed: {p.stdout[:300]}")
    cfg = json.load(open(os.path.join(out, "config.json")))
    pr = cfg["params"]
    check(pr["alpha"] == 4 and pr["block_tokens"] == 6 and pr["mcmc_steps"] == 2 and pr["max_new_tokens"] == 12
          and pr["proposal"] == "naive_temp" and pr["mh"] == "reference" and pr["top_k"] == 20
          and abs(pr["top_p"] - 0.95) < 1e-6 and pr["answer_kind"] == "gsm8k" and cfg["common"]["seed"] == 3,
          f"config.json params: {pr}")
    journal = lines(os.path.join(out, "examples.jsonl"))
    check(len(journal) == 3, f"{len(journal)} journal records")
    for rec in journal:
        pw = rec["power"]
        check(pw["tokens"] <= 12 and pw["attempts"] == 2 * pw["blocks"] and len(pw["step_attempts"]) == 2,
              f"power record {rec['id']}: {pw['tokens']} tokens, {pw['attempts']} attempts, {pw['blocks']} blocks")
        check(sum(pw["block_accepts"]) == pw["accepts"] == sum(pw["step_accepts"]), "accept counters")
        check(pw["tokens_proposed"] >= pw["tokens"] and pw["target_forwards"] >= pw["tokens"], "work counters")
        for mth in ("power", "greedy", "sample", "lowtemp"):
            check(isinstance(rec[mth].get("correct"), bool) and "text" in rec[mth], f"{mth} scored")
    ans = lines(os.path.join(out, "answers.jsonl"))
    check(len(ans) == 12 and {a["method"] for a in ans} == {"power", "greedy", "sample", "lowtemp"}
          and all(a["gold"] for a in ans), f"answers.jsonl: {len(ans)} lines")
    summ = json.load(open(os.path.join(out, "summary.json")))
    check(summ["answer_kind"] == "gsm8k" and summ["power"]["scored"] == 3 and 0 <= summ["power"]["accuracy"] <= 1
          and summ["power"]["attempts"] > 0 and len(summ["acceptance_by_step"]) == 2
          and summ["power"]["forwards_per_token"] > summ["greedy"]["forwards_per_token"], f"summary: {summ}")
    # moves beside the acceptance and the easy / hard split, recomputed from the journal
    for rec in journal:
        pw = rec["power"]
        check(0 <= pw["changes"] <= pw["accepts"] and pw["tokens_changed"] >= pw["changes"]
              and (pw["changes"] == 0) == (pw["tokens_changed"] == 0) and 1 <= pw["distinct_proposals"] <= pw["attempts"],
              f"power record {rec['id']}: moves {pw['changes']} / {pw['accepts']}, {pw['tokens_changed']} tokens, "
              f"{pw['distinct_proposals']} distinct")
    P = [r["power"] for r in journal]
    eff = sum(x["tokens_changed"] for x in P)
    want = {"changes": sum(x["changes"] for x in P), "distinct_proposals": sum(x["distinct_proposals"] for x in P),
            "tokens_changed": eff}
    got = {k: summ["power"][k] for k in want}
    check(got == want, f"summary moves {got} vs journal {want}")
    if eff:
        fw, wall = sum(x["target_forwards"] for x in P), sum(x["wall_s"] for x in P)
        check(abs(summ["power"]["forwards_per_effective_token"] - fw / eff) < 1e-9 * fw and
              abs(summ["power"]["wall_s_per_effective_token"] - wall / eff) < 1e-9 * (1 + wall),
              f"per effective token: {summ['power']}")
    groups = {"easy": [r for r in journal if r["greedy"]["correct"]], "hard": [r for r in journal if not r["greedy"]["correct"]]}
    for g, recs in groups.items():
        if not recs:
            check(g not in summ["by_difficulty"], f"empty group {g} reported")
            continue
        for mth in ("power", "greedy", "sample", "lowtemp"):
            s_ = summ["by_difficulty"][g][mth]
            xs = [r[mth] for r in recs]
            check(s_["examples"] == len(xs) and abs(s_["accuracy"] - sum(x["correct"] for x in xs) / len(xs)) < 1e-12
                  and s_["target_forwards"] == sum(x["target_forwards"] for x in xs), f"{g} {mth}: {s_}")
        s_ = summ["by_difficulty"][g]["power"]
        check(s_["accepts"] == sum(r["power"]["accepts"] for r in recs) and
              s_["changes"] == sum(r["power"]["changes"] for r in recs), f"{g} power moves: {s_}")
    check("by difficulty" in p.stdout and "changed the answer" in p.stdout, "report: moves and difficulty tables")
    print(f"power moves: {want}, groups easy {len(groups['easy'])} hard {len(groups['hard'])}", file=sys.stderr)
    png = os.path.join(out, "fig_acceptance.png")
    check(os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "fig_acceptance.png written")
    pdf = os.path.join(out, "fig_acceptance.pdf")
    check(os.path.exists(pdf) and open(pdf, "rb").read(5) == b"%PDF-", "fig_acceptance.pdf written")
    # bootstrap CI of the accuracy: over the 3 examples' 0/1 scores, so it lies in [min, max]
    # of them and brackets the mean; the forwards per token CI brackets its pooled value
    ci = summ["power"]["accuracy_ci"]
    check(ci["n_examples"] == 3 and ci["value"] == summ["power"]["accuracy"]
          and 0 <= ci["ci95"][0] <= ci["value"] <= ci["ci95"][1] <= 1, f"accuracy CI {ci}")
    fc = summ["power"]["forwards_per_token_ci"]
    check(abs(fc["value"] - summ["power"]["forwards_per_token"]) < 1e-12 and fc["ci95"][0] <= fc["value"] <= fc["ci95"][1],
          f"forwards per token CI {fc}")
    check(summ["bootstrap"]["reps"] == 1000 and summ["bootstrap"]["level"] == 0.95, f"bootstrap {summ['bootstrap']}")
    rep = open(os.path.join(out, "report.txt")).read()
    check("95% bootstrap CIs over examples" in rep and "power accuracy:" in rep, "report.txt CI section")
    csv = open(os.path.join(out, "acceptance.csv")).read().splitlines()
    check(csv[0] == "kind,index,attempts,accepts,rate,examples,ci_lo,ci_hi" and
          sum(r.startswith("step,") for r in csv) == 2, "acceptance.csv")
    # each index's rate and its CI over examples, recomputed from the journal's counters
    # (vkd_cli.boot_ci: a Python reimplementation of the seeded bootstrap)
    for row in csv[1:]:
        kind, i, att, acc, rate, n, lo, hi = row.split(",")
        i = int(i)
        pairs = [(pw[f"{kind}_accepts"][i], pw[f"{kind}_attempts"][i]) for pw in (r["power"] for r in journal)
                 if i < len(pw[f"{kind}_attempts"]) and pw[f"{kind}_attempts"][i] > 0]
        sums, cnts = [a for a, _ in pairs], [b for _, b in pairs]
        check(int(n) == len(pairs) and float(att) == sum(cnts) and float(acc) == sum(sums), f"acceptance.csv {row}")
        want = vkd_cli.boot_ci(3, sums, cnts)
        check(abs(float(rate) - sum(sums) / sum(cnts)) < 1e-6 and abs(float(lo) - want[0]) < 1e-6 and
              abs(float(hi) - want[1]) < 1e-6, f"acceptance.csv {row}: CI vs Python {want}")

    # same seed, same answers; another seed differs somewhere
    out_b = os.path.join(tmp, "out_b")
    run(base + ["--out", out_b])
    check(lines(os.path.join(out_b, "answers.jsonl")) == ans, "same seed, different answers")

    # resume after a torn write equals the full run
    out2 = os.path.join(tmp, "out2")
    run(base + ["--out", out2, "--limit", "1"])
    with open(os.path.join(out2, "examples.jsonl"), "a") as f:
        f.write('{"id": "2", "pow')
    run(base + ["--out", out2, "--resume"])
    check(lines(os.path.join(out2, "answers.jsonl")) == ans, "resumed run differs from the uninterrupted one")
    p = run(base[:-1] + ["--alpha", "2", "--out", out2, "--resume", "--quiet"], ok=False)
    check(p.returncode != 0 and "alpha" in p.stderr, f"resume with another alpha: {p.returncode} {p.stderr}")

    # the DFlash proposal
    out3 = os.path.join(tmp, "out3")
    run(["power", "--target", tgt, "--draft", drf, "--proposal", "dflash", "--dataset", ds, "--limit", "1",
         "--max-new-tokens", "12", "--block-tokens", "6", "--mcmc-steps", "3", "--draft-temp", "0.5",
         "--baselines", "none", "--quiet", "--out", out3])
    rec = lines(os.path.join(out3, "examples.jsonl"))[0]
    check(rec["power"]["draft_calls"] > 0 and "greedy" not in rec, f"dflash record: {rec['power']}")
    check(json.load(open(os.path.join(out3, "config.json")))["params"]["draft_block"] == 4, "draft block in config")

    # ids past the tokenizer (padding rows of the 151936-row embedding; this seed samples one at
    # temperature 100) have no text: the commands leave them out as HF's decode does instead
    # of ending the run (decode_generated, shared by generate, spec, power and guide)
    p = run(["generate", "--model", tgt, "--chat", "hi", "--temperature", "100", "--top-k", "0",
             "--max-new-tokens", "80", "--seed", "4", "--json"])
    g = json.loads(p.stdout)
    check(any(i >= 151669 for i in g["ids"]), f"seed 4 samples an id past the tokenizer: {g['ids']}")
    check(g["text"] == hf("decode", {"ids": g["ids"]}), "text of ids past the tokenizer equals HF's decode")

    # bad input: one clear line, non-zero exit
    bad = [
        (["--alpha", "-1"], "--alpha"),
        (["--proposal", "beam"], "--proposal"),
        (["--proposal", "dflash"], "--draft"),
        (["--block-tokens", "20"], "--block-tokens"),
        (["--mh", "approx"], "--mh"),
        (["--baselines", "greedy,best"], "--baselines"),
        (["--mcmc-steps", "x"], "--mcmc-steps"),
        (["--draft-temp", "0.5"], "--draft-temp"),
    ]
    for extra, word in bad:
        p = run(base + extra + ["--out", os.path.join(tmp, "bad")], ok=False)
        check(p.returncode != 0 and word in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              f"{extra}: exit {p.returncode}, stderr {p.stderr!r}")
    p = run(["power", "--target", tgt, "--dataset", os.path.join(tmp, "missing.jsonl"), "--out",
             os.path.join(tmp, "bad")], ok=False)
    check(p.returncode != 0 and "missing.jsonl" in p.stderr, f"missing dataset: {p.stderr!r}")
    print(f"test_power_cli: {vkd_cli.failures} failures")
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
