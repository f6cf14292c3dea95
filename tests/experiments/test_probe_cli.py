#!/usr/bin/python3
"""test_probe_cli: `vkdraft probe` end to end.

A tiny Qwen3 target with the real Qwen3 tokenizer and an untrained 1-layer DFlash draft are
generated; a 3-line MATH-500-style dataset (one prompt too long for the context) is probed.
Checked: the outputs exist and the tables are printed; the long prompt is a reported skip
naming file:line; the reference generation equals the float64 reference's greedy decode (up
to the first near-tie); every positions.csv distance against tools/reference/probe_ref.py on
the same sequence (prompts encoded by Hugging Face's tokenizers); every aggregate of
summary.json recomputed from the CSV files (numpy percentiles); --resume after an
interrupted write equals a full run; bad input fails with one clear line.
"""
import csv
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import check, hf_encode, make_pair, require_tokenizer, run  # noqa: E402
import numpy as np

import probe_ref  # noqa: E402
import ref  # noqa: E402









def rows_of(path):
    return list(csv.DictReader(open(path, newline="")))


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_summary(out, temps):
    """summary.json recomputed from positions.csv / blocks.csv."""
    summ = json.load(open(os.path.join(out, "summary.json")))
    pos, blk = rows_of(os.path.join(out, "positions.csv")), rows_of(os.path.join(out, "blocks.csv"))
    check(summ["positions"] == len(pos) and summ["blocks"] == len(blk), "summary counts")
    f = lambda rows, k: np.array([float(r[k]) for r in rows])  # noqa: E731
    check(close(summ["baseline_token_accept"], f(pos, "baseline_accept").mean(), 1e-6), "baseline")
    for ti, T in enumerate(temps):
        s, tag = summ["temperatures"][ti], f"T{T:g}"
        check(s["temperature"] == T, "temperature order")
        sim, acc = f(blk, "sim_accept_" + tag), f(pos, "accept_" + tag)
        pairs = (("kl", f(pos, "kl_" + tag).mean()), ("tvd", f(pos, "tvd_" + tag).mean()), ("token_accept", acc.mean()),
                 ("sim_accept_mean", sim.mean()), ("sim_accept_median", np.percentile(sim, 50)),
                 ("block_product", f(blk, "product_" + tag).mean()), ("logw_mean", f(blk, "logw_mean_" + tag).mean()),
                 ("logw_std", f(blk, "logw_std_" + tag).mean()))
        for k, want in pairs:
            check(close(s[k], want, 1e-6), f"{tag} {k}: {s[k]} vs {want}")
        for q in (5, 10, 25, 50, 75, 90, 95):
            check(close(s["sim_accept_percentiles"][f"P{q}"], np.percentile(sim, q), 1e-6), f"{tag} sim P{q}")
        for q in (5, 25, 50, 75, 95):
            check(close(s["token_accept_percentiles"][f"P{q}"], np.percentile(acc, q), 1e-6), f"{tag} token P{q}")
        for th in (0.01, 0.05, 0.1, 0.2, 0.5, 0.7):
            check(close(s["fraction_blocks_above"][f"{th:.2f}"], (sim > th).mean()), f"{tag} above {th}")
        for g, (lo, hi) in (("early_0_9", (0, 9)), ("mid_10_29", (10, 29)), ("late_30_plus", (30, 10 ** 9))):
            sel = [r for r in blk if lo <= int(r["block"]) <= hi]
            check(s["by_block_position"][g]["blocks"] == len(sel), f"{tag} {g} count")
            if sel:
                check(close(s["by_block_position"][g]["sim_accept_mean"], f(sel, "sim_accept_" + tag).mean(), 1e-6),
                      f"{tag} {g} sim mean")
                kl = f([r for r in pos if lo <= int(r["block"]) <= hi], "kl_" + tag).mean()
                check(close(s["by_block_position"][g]["kl_mean"], kl, 1e-6), f"{tag} {g} kl mean")
        # block product = product of the block's token accepts
        for b in blk[:20]:
            toks = [r for r in pos if r["example"] == b["example"] and r["block"] == b["block"]]
            check(int(b["positions"]) == len(toks), "block positions")
            check(close(float(b["product_" + tag]), float(np.prod([float(r["accept_" + tag]) for r in toks])), 1e-6),
                  f"product of block {b['example']}/{b['block']}")
    return summ


def check_kl_by_block(out, temps, seed):
    """kl_by_block.csv recomputed from positions.csv: per temperature and block index the pooled
    mean KL, the examples and positions behind it, and its bootstrap CI over examples
    (vkd_cli.boot_ci, a Python reimplementation)."""
    pos, kb = rows_of(os.path.join(out, "positions.csv")), rows_of(os.path.join(out, "kl_by_block.csv"))
    nblk = 1 + max(int(r["block"]) for r in pos)
    check(len(kb) == len(temps) * nblk, f"kl_by_block.csv: {len(kb)} rows for {len(temps)} x {nblk}")
    exs = list(dict.fromkeys(r["example"] for r in pos))
    for r in kb:
        T, k = float(r["temperature"]), int(r["block"])
        mine = [x for x in pos if int(x["block"]) == k]
        sums = [sum(float(x[f"kl_T{T:g}"]) for x in mine if x["example"] == e) for e in exs]
        cnts = [sum(1 for x in mine if x["example"] == e) for e in exs]
        sums, cnts = [a for a, c in zip(sums, cnts) if c], [c for c in cnts if c]
        check(int(r["examples"]) == len(cnts) and int(r["positions"]) == sum(cnts), f"kl_by_block counts {r}")
        check(close(float(r["kl_mean"]), sum(sums) / sum(cnts), 1e-6), f"kl_by_block mean {r}")
        lo, hi = vkd_cli.boot_ci(seed, sums, cnts)
        check(close(float(r["ci_lo"]), lo, 1e-6) and close(float(r["ci_hi"]), hi, 1e-6), f"kl_by_block CI {r} vs {lo} {hi}")
    print(f"kl_by_block.csv: {len(kb)} rows checked", file=sys.stderr)


def check_chains(out, summ, temps, K, S):
    """summary.json's chains (seed 002 sections 4.3, 5) recomputed from the journal's chain rows
    and blocks.csv: sums, rates, windows, the binomial figures at the median acceptance, cost
    per effective token, and the easy / hard split by the graded reference."""
    journal = [json.loads(x) for x in open(os.path.join(out, "examples.jsonl"))]
    done = [r for r in journal if "blocks" in r]
    blk = rows_of(os.path.join(out, "blocks.csv"))
    keys = ("accepts", "changes", "distinct", "windows", "moved1", "moved3", "changed1")
    groups = {"all": done, "easy": [r for r in done if r.get("graded", {}).get("correct") is True],
              "hard": [r for r in done if r.get("graded", {}).get("correct") is False]}
    check(all("graded" in r for r in done), "every probed record graded (MATH-500 file name)")
    for g, recs in groups.items():
        if not recs:
            check(g not in summ["chains"], f"empty group {g} in summary")
            continue
        nb = sum(len(r["blocks"]) for r in recs)
        npos = sum(b[2] for r in recs for b in r["blocks"])
        bs = sum(r["blocks_s"] for r in recs)
        for ti, T in enumerate(temps):
            got = summ["chains"][g][ti]
            sums = {k: sum(row[1 + ti * 7 + q] for r in recs for row in r["chains"]) for q, k in enumerate(keys)}
            check(all(got[k] == v for k, v in sums.items()) and got["blocks"] == nb, f"{g} T{T}: {got} vs {sums}")
            check(sums["windows"] == nb * (K // (S + 1)) and sums["changes"] <= sums["accepts"]
                  and sums["moved3"] <= sums["moved1"] <= sums["windows"] and sums["changed1"] <= sums["moved1"]
                  and nb <= sums["distinct"] <= nb * K, f"{g} T{T}: counts inconsistent {sums}")
            props = nb * (K - 1)
            want = {"accept_rate": sums["accepts"] / props, "change_rate": sums["changes"] / props,
                    "distinct_fraction": sums["distinct"] / (nb * K), "p_moves_ge1": sums["moved1"] / sums["windows"],
                    "p_moves_ge3": sums["moved3"] / sums["windows"], "p_changed_ge1": sums["changed1"] / sums["windows"]}
            eff = want["change_rate"] * npos / nb
            if eff > 0:
                want["target_forwards_per_effective_token"] = 1 / eff
                want["wall_s_per_effective_token"] = bs / nb / eff
            for k, v in want.items():
                check(close(got[k], v, 1e-9), f"{g} T{T} {k}: {got[k]} vs {v}")
            if g == "all":
                sim = np.array([float(r["sim_accept_T%g" % T]) for r in blk])
                check(close(got["accept_rate"], sim.mean(), 1e-9), f"T{T}: accept rate vs blocks.csv mean")
                a = float(np.percentile(sim, 50))
                pk = [math.comb(S, i) * a ** i * (1 - a) ** (S - i) for i in range(3)]
                check(close(got["binomial_p_moves_ge1"], 1 - pk[0], 1e-9) and
                      close(got["binomial_p_moves_ge3"], 1 - sum(pk), 1e-9), f"T{T}: binomial {got}")
    print(f"probe chains: groups { {g: len(r) for g, r in groups.items()} }, T={temps[-1]}: "
          f"{ {k: summ['chains']['all'][-1][k] for k in ('accept_rate', 'change_rate', 'p_moves_ge1', 'p_moves_ge3')} }")


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-probe-cli-")
    tgt, drf = make_pair(tmp)
    data = [
        {"id": "p1", "prompt": "What is $2+3$?", "answer": "5"},
        {"id": "p2", "prompt": "Solve for x: 3x = 12. " + "Explain each step carefully. " * 90, "answer": "4"},
        {"id": "p3", "prompt": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "answer": "\\frac{5}{6}"},
    ]
    ds = os.path.join(tmp, "tiny_math500.jsonl")
    with open(ds, "w") as f:
        for r in data:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, "out")
    temps = [1.0, 0.5, 0.25]
    base = ["probe", "--target", tgt, "--draft", drf, "--dataset", ds, "--seed", "3", "--samples", "30",
            "--max-new-tokens", "40", "--mcmc-steps", "4", "--quiet"]
    p = run(base + ["--out", out])
    for t in ("Aggregate metrics", "Spec-decode baseline", "Distribution of block-level acceptance",
              "Fraction of blocks exceeding", "Acceptance by block position (T=0.25)", "Token-level acceptance"):
        check(t in p.stdout, f"table '{t}' printed")
    check("skipped" in p.stderr and "tiny_math500.jsonl:2" in p.stderr, f"long prompt reported as a skip: {p.stderr}")
    for name in ("positions.csv", "blocks.csv", "summary.json", "report.txt", "config.json", "examples.jsonl",
                 "fig_block_accept_hist.png", "fig_token_accept_hist.png", "fig_kl_by_block.png"):
        check(os.path.exists(os.path.join(out, name)), f"{name} written")
    cfg = json.load(open(os.path.join(out, "config.json")))
    check(cfg["params"]["alpha"] == 4 and cfg["params"]["draft_temps"] == temps and cfg["params"]["samples"] == 30
          and cfg["models"]["draft"]["tensors"] > 0 and cfg["common"]["seed"] == 3 and "vkdraft" in cfg, "config.json")
    summ = check_summary(out, temps)
    check_chains(out, summ, temps, 30, 4)
    check_kl_by_block(out, temps, 3)
    check("MCMC chains" in p.stdout, "chains table printed")
    check(summ["problems"] == 2 and summ["skipped"] == 1, f"2 problems, 1 skip: {summ['problems']}, {summ['skipped']}")

    # the reference generation and every distance against the float64 reference
    T = ref.Target.load(tgt)
    D = ref.Draft.load(drf, T)
    journal = [json.loads(x) for x in open(os.path.join(out, "examples.jsonl"))]
    enc = hf_encode(["<|im_start|>user\n" + r["prompt"] + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                     for r in data])
    pos = rows_of(os.path.join(out, "positions.csv"))
    worst, checked = 0.0, 0
    for k in (0, 2):
        rec = journal[k]
        prompt, refgen = enc[k], rec["reference"]
        check(rec["prompt_tokens"] == len(prompt), f"example {k}: prompt tokens {rec['prompt_tokens']} vs {len(prompt)}")
        # greedy: same ids up to the first step whose top-2 gap is below f32 noise
        import torch
        logits, _ = T.forward(prompt + refgen)
        for i, tok in enumerate(refgen):
            row = logits[len(prompt) - 1 + i]
            top = torch.topk(row, 2).values
            if float(top[0] - top[1]) < 1e-3:
                break
            check(int(torch.argmax(row)) == tok, f"example {k}: reference token {i} is not the greedy choice")
        blocks = probe_ref.walk(T, D, prompt + refgen, len(prompt))
        got = [r for r in pos if r["example"] == rec["id"]]
        check(len(got) == sum(c for _, _, c, _, _ in blocks), f"example {k}: {len(got)} rows")
        at = 0
        for kb, s, c, lt, ld in blocks:
            _, btvd = probe_ref.metrics(lt, ld, 1.0, 1.0)
            for Tt in temps:
                kl, tvd = probe_ref.metrics(lt, ld, 4.0, Tt)
                for i in range(c):
                    r = got[at + i]
                    check(int(r["block"]) == kb and int(r["position"]) == s - len(prompt) + i + 1, "row layout")
                    for name, want in ((f"kl_T{Tt:g}", float(kl[i])), (f"tvd_T{Tt:g}", float(tvd[i])),
                                       ("baseline_accept", 1 - float(btvd[i]))):
                        e = abs(float(r[name]) - want)
                        worst = max(worst, e)
                        check(e <= probe_ref.TOL_DIST * max(1, abs(want)), f"ex {k} block {kb} row {i} {name}: {r[name]} vs {want}")
                        checked += 1
            at += c
    print(f"probe cli: {checked} distances checked, worst abs error {worst:.2e}")

    # resume: two examples, a torn write, then --resume adds the rest; equal to the full run
    out2 = os.path.join(tmp, "out2")
    # (--limit 2: the seed-0 draw's first two records, p2 (too long: a skip) and p3; then p1)
    run(base + ["--out", out2, "--limit", "2"])
    with open(os.path.join(out2, "examples.jsonl"), "a") as f:
        f.write('{"id": "p1", "blo')
    p = run(base + ["--out", out2, "--resume"])
    lines = open(os.path.join(out2, "examples.jsonl")).read().splitlines()
    drawn = vkd_cli.limit_order(3, 2)
    want = [f"p{i + 1}" for i in drawn] + [f"p{i + 1}" for i in range(3) if i not in drawn]
    check(want == ["p2", "p3", "p1"], f"the draw on 3 records: {want}")
    check([json.loads(x)["id"] for x in lines] == want, f"resume: {lines!r:.200}, want ids {want}")
    for name in ("positions.csv", "blocks.csv"):
        check(open(os.path.join(out, name)).read() == open(os.path.join(out2, name)).read(), f"resumed {name} == full run")
    p = run(base + ["--out", out2, "--resume", "--alpha", "2"], ok=False)
    check(p.returncode != 0 and "params.alpha" in p.stderr, f"resume with another alpha refused: {p.stderr}")

    # bad input: one clear line naming file:line, non-zero exit
    bad = os.path.join(tmp, "bad_math500.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps(data[0]) + "\n" + json.dumps({"id": "x", "question_text": "no prompt field"}) + "\n")
    for args, want in ((["--dataset", bad], "bad_math500.jsonl:2"),
                       (["--dataset", os.path.join(tmp, "missing.jsonl")], "missing.jsonl"),
                       (["--dataset", ds, "--draft-temps", "1,oops"], "--draft-temps"),
                       (["--dataset", ds, "--samples", "1"], "--samples")):
        p = run(["probe", "--target", tgt, "--draft", drf, "--out", os.path.join(tmp, "o_bad")] + args, ok=False)
        err = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(err) == 1 and want in err[0], f"bad input {args}: {p.returncode} {p.stderr!r}")
    if vkd_cli.failures:
        raise SystemExit(f"{vkd_cli.failures} check(s) failed")
    print("test_probe_cli: all checks passed")


if __name__ == "__main__":
    main()
