#!/usr/bin/python3
"""test_diagnose: `vkdraft diagnose` end to end against an independent float64 reference.

A tiny Qwen3 target with the real Qwen3 tokenizer and an untrained 1-layer DFlash draft
(random weights: its logits depend on the features, so the three modes differ) are
generated; prompts are rendered by hand in Qwen3's chat format and encoded with Hugging
Face's own tokenizer (npm `tokenizers`), answers likewise. tools/reference/ref.py computes the
target logits, the features, and the draft's blocks in gold / mask / random mode with the
same KV-cached context layout; random mode's noise is rebuilt here from a Python port of
Philox4x32-10 + Box-Muller and scaled to the reference's own feature norms. Every CSV row's
p and rank is checked (ranks within the interval that near-ties allow), the summary against
the CSV, --resume, and bad input.
"""
import csv
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import check, hf, hf_encode, make_pair, require_tokenizer, run  # noqa: E402
import ref  # noqa: E402
import torch  # noqa: E402









# --- Philox4x32-10 and the noise rows (vkd_tf_noise_rows), written from the algorithm ---
philox = vkd_cli._philox  # Philox-4x32-10, as base/philox


def noise_like(F, seed, key, row0):
    """Gaussian rows with the norms of F's rows (F: float64 rows x cols)."""
    rows, cols = F.shape
    out = torch.zeros_like(F)
    for i in range(rows):
        z = []
        for j in range(0, cols, 4):
            w = philox(seed, key << 32 | (row0 + i), j // 4)
            for p in range(2):
                u1 = ((w[2 * p] >> 8) + 1.0) / 16777217.0
                u2 = (w[2 * p + 1] >> 8) / 16777216.0
                rad = math.sqrt(-2.0 * math.log(u1))
                z += [rad * math.cos(2 * math.pi * u2), rad * math.sin(2 * math.pi * u2)]
        z = torch.tensor(z[:cols], dtype=torch.float64)
        n = float(z.norm())
        out[i] = z * (float(F[i].norm()) / n) if n > 0 else 0
    return out


def stats(logits, gold):
    """p, and the interval of ranks near-ties allow (entries within 1e-4 relative of the gold
    logit may fall on either side in float32)."""
    lp = torch.log_softmax(logits, -1)
    g = float(logits[gold])
    eps = 1e-4 * max(1.0, float(logits.abs().max()))
    lo = 1 + int((logits > g + eps).sum())
    hi = 1 + int((logits > g - eps).sum()) - 1  # the gold entry itself is not counted
    return math.exp(float(lp[gold])), lo, max(lo, hi)


def reference(T, D, seq, P, B, seed, key):
    """Per compared token: (answer position, block, block_pos, gold, target stats, {mode: stats})."""
    logits, hidden = T.forward(seq)
    F = D.features(hidden)                      # (n, taps*H), float64
    n = len(seq)
    mask = D.mask_token_id
    res = {}
    for mode in ("gold", "mask", "random"):
        feats = noise_like(F, seed, key, 0) if mode == "random" else F
        cache = D.new_cache()
        for k, s in enumerate(range(P, n, B)):
            r = min(B, n - s)
            block = [seq[s]] + ([mask] * (B - 1) if mode == "mask" else seq[s + 1:s + r] + [mask] * (B - r))
            ctx = feats[:P] if k == 0 else feats[s - B:s]
            dl, _ = D.forward(ctx, block, s, cache)
            for i in range(r - 1):
                gold = seq[s + i + 1]
                row = res.setdefault(s - P + i + 1, {"block": k, "block_pos": i + 1, "gold_id": gold,
                                                     "target": stats(logits[s + i], gold)})
                row[mode] = stats(dl[i], gold)
    return res


def only_wrong(tgt, drf, tmp, data, seed, T, summ_full):
    """--only-target-wrong: the target's greedy answers (ids against ref.py's float64 greedy,
    graded by tools/reference/answer_ref.py); a record whose gold answer is made the target's
    own answer is skipped as correct, the others walked as in the full run. Also the warnings
    and compute budget fields of the full run's summary."""
    import answer_ref
    check(summ_full["warnings"] == [] and set(summ_full["one_hot_fraction"]) == {"gold", "mask", "random"},
          f"no warning for a draft that reads its features: {summ_full['warnings']}")
    cb = summ_full["compute_budget"]
    check(cb["prompts"] == 3 and cb["target_kv_bytes_per_token"] > 0 and cb["draft_calls"] == cb["verify_steps"] > 0
          and cb["target_kv_bytes"] == cb["target_kv_bytes_per_token"] * cb["max_len"], f"compute budget {cb}")
    judge = 24
    ds = os.path.join(tmp, "judge_gsm8k.jsonl")
    rows = [dict(r) for r in data[:2]]
    base = ["diagnose", "--target", tgt, "--draft", drf, "--dataset", ds, "--seed", str(seed), "--quiet",
            "--only-target-wrong", "--judge-tokens", str(judge)]
    prompts = ["<|im_start|>user\n" + r["question"] + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
               for r in rows]
    enc = hf_encode(prompts)
    stops = set()
    for name in ("generation_config.json", "config.json"):
        path = os.path.join(tgt, name)
        if os.path.exists(path) and not stops:
            eos = json.load(open(path)).get("eos_token_id")
            stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    greedy = [T.greedy(e, judge, stop=stops) for e in enc]
    texts = [hf("decode", {"ids": g}) for g in greedy]
    answers = [answer_ref.extract("gsm8k", t) for t in texts]
    # make example 0 correct when the target's text holds a number (else every record is wrong)
    if answers[0] is not None:
        rows[0]["answer"] = "#### " + answers[0]
    with open(ds, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, "out_wrong")
    p = run(base + ["--out", out])
    journal = [json.loads(x) for x in open(os.path.join(out, "examples.jsonl"))]
    for k, rec in enumerate(journal):
        tg = rec["target_greedy"]
        same = tg["ids"] == greedy[k][:len(tg["ids"])]
        check(same, f"record {k}: target greedy ids {tg['ids'][:8]} vs reference {greedy[k][:8]}")
        want = answer_ref.equal("gsm8k", answer_ref.extract("gsm8k", tg["text"]), answer_ref.gold("gsm8k", rows[k]["answer"]))
        check(tg["correct"] == want, f"record {k}: graded {tg['correct']}, answer_ref says {want}")
        check(("tokens" in rec) == (not want) and (rec.get("skipped") == "target greedy answer correct") == want,
              f"record {k}: walked iff wrong: {sorted(rec)}")
    summ = json.load(open(os.path.join(out, "summary.json")))
    nskip = sum(1 for r in journal if r.get("skipped") == "target greedy answer correct")
    check(summ["target_correct_skipped"] == nskip and summ["examples"] == len(journal) - nskip,
          f"summary counts: {summ['target_correct_skipped']} skipped, {summ['examples']} examples")
    check("--only-target-wrong" in p.stdout, "report names the skipped count")
    # the generated target writes no number in 24 tokens, so the skip-as-correct path is only
    # exercised when a later model does: say so rather than pass silently
    print(f"diagnose --only-target-wrong: {nskip} of {len(journal)} skipped as correct (answers {answers})"
          + ("" if nskip else "; the correct-answer skip path was NOT exercised (no number in the target's text)"))
    # a dataset that cannot be graded is refused before --out is touched
    ng = os.path.join(tmp, "plain.jsonl")
    with open(ng, "w") as f:
        f.write(json.dumps(rows[0]) + "\n")
    p = run(["diagnose", "--target", tgt, "--draft", drf, "--dataset", ng, "--prompt-field", "question",
             "--answer-field", "answer", "--out", os.path.join(tmp, "o_ng"), "--only-target-wrong"], ok=False)
    check(p.returncode != 0 and "--only-target-wrong" in p.stderr and not os.path.exists(os.path.join(tmp, "o_ng")),
          f"ungradable dataset: {p.returncode} {p.stderr!r}")


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-diag-")
    tgt, drf = make_pair(tmp)
    data = [
        {"question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3 + 4 = 7 apples.\n#### 7"},
        {"question": "What is 12 times 3?", "answer": "12 * 3 = 36, so 36.\n#### 36"},
        {"question": "Say hi.", "answer": "Hi"},                       # one token: reported skip
    ]
    ds = os.path.join(tmp, "tiny_gsm8k.jsonl")
    with open(ds, "w") as f:
        for r in data:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, "out")
    seed = 3
    p = run(["diagnose", "--target", tgt, "--draft", drf, "--dataset", ds, "--out", out, "--seed", str(seed),
             "--quiet"])
    check("Causal decomposition" in p.stdout and "By target confidence" in p.stdout, "report tables printed")
    check("skipped" in p.stderr and "tiny_gsm8k.jsonl:3" in p.stderr, f"one-token answer reported as a skip: {p.stderr}")
    for name in ("tokens.csv", "summary.json", "report.txt", "config.json", "examples.jsonl"):
        check(os.path.exists(os.path.join(out, name)), f"{name} written")
    for name in ("fig_bucket_rank_comparison", "fig_signal_decomposition", "fig_block_rank_decay",
                 "fig_draft_advantage_heatmap"):
        path = os.path.join(out, name + ".png")
        check(os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"{name}.png written")
        pdf = os.path.join(out, name + ".pdf")
        check(os.path.exists(pdf) and open(pdf, "rb").read(5) == b"%PDF-", f"{name}.pdf written")

    # reference
    T = ref.Target.load(tgt)
    D = ref.Draft.load(drf, T)
    B = D.block_size
    prompts = ["<|im_start|>user\n" + r["question"] + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
               for r in data]
    enc = hf_encode(prompts + [r["answer"] for r in data])
    rows = list(csv.DictReader(open(os.path.join(out, "tokens.csv"), newline="")))
    worst_p, nchecked = 0.0, 0
    for k in range(2):
        P = len(enc[k])
        seq = enc[k] + enc[3 + k]
        want = reference(T, D, seq, P, B, seed, k)
        got = [r for r in rows if r["example"] == str(k)]
        check(len(got) == 3 * len(want), f"example {k}: {len(got)} CSV rows, expected {3 * len(want)}")
        for r in got:
            w = want.get(int(r["position"]))
            if w is None:
                check(False, f"example {k}: unexpected position {r['position']}")
                continue
            check(int(r["gold_id"]) == w["gold_id"] and int(r["block"]) == w["block"]
                  and int(r["block_pos"]) == w["block_pos"], f"example {k} pos {r['position']}: layout {r} vs {w}")
            for col, st_ in (("target", w["target"]), ("draft", w[r["mode"]])):
                pv, lo, hi = st_
                got_p, got_rank = float(r["p_" + col]), int(r["rank_" + col])
                err = abs(got_p - pv) / max(pv, 1e-30)
                if pv > 1e-30:
                    worst_p = max(worst_p, err)
                check(err < 2e-3 or abs(got_p - pv) < 1e-9, f"ex {k} pos {r['position']} {r['mode']} p_{col} {got_p} vs {pv}")
                check(lo <= got_rank <= hi, f"ex {k} pos {r['position']} {r['mode']} rank_{col} {got_rank} not in [{lo}, {hi}]")
                nchecked += 1
    modes_differ = any(r1["p_draft"] != r2["p_draft"] for r1 in rows for r2 in rows
                       if r1["example"] == r2["example"] and r1["position"] == r2["position"]
                       and r1["mode"] == "mask" and r2["mode"] == "random")
    check(modes_differ, "random mode differs from mask mode (features matter to this draft)")
    print(f"diagnose: {nchecked} p/rank values checked, worst relative p error {worst_p:.2e}")

    # the summary agrees with the CSV
    summ = json.load(open(os.path.join(out, "summary.json")))
    for mode in ("gold", "mask", "random"):
        rr = [r for r in rows if r["mode"] == mode]
        o = summ["overall"][mode]
        check(o["tokens"] == len(rr), f"summary {mode} tokens")
        mr = sum(float(r["rank_draft"]) for r in rr) / len(rr)
        check(abs(o["mean_rank_draft"] - mr) < 1e-6 * mr, f"summary {mode} mean_rank_draft {o['mean_rank_draft']} vs {mr}")
        wins = sum(int(r["rank_draft"]) < int(r["rank_target"]) for r in rr) / len(rr)
        check(abs(o["rank_draft_wins"] - wins) < 1e-12, f"summary {mode} rank wins")
        low = [r for r in rr if float(r["p_target"]) < 0.01]
        if low:
            b = summ["buckets"]["p<0.01"][mode]
            check(b["tokens"] == len(low), f"bucket p<0.01 {mode} count")
    # bootstrap CI of the mean draft rank: resample examples (Philox, stream "BS" 0x42530001,
    # counter r * n + i, methods/vkd_bootstrap.h) and pool their tokens; numpy-style percentiles
    exs = list(dict.fromkeys(r["example"] for r in rows))
    for mode in ("gold", "mask", "random"):
        ci = summ["overall"][mode]["mean_rank_draft_ci"]
        check(ci["n_examples"] == len(exs), f"{mode} CI over {ci['n_examples']} examples, expected {len(exs)}")
        sums = [sum(float(r["rank_draft"]) for r in rows if r["mode"] == mode and r["example"] == e) for e in exs]
        cnts = [sum(1 for r in rows if r["mode"] == mode and r["example"] == e) for e in exs]
        want = vkd_cli.boot_ci(seed, sums, cnts)
        check(all(abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, w in zip(ci["ci95"], want)),
              f"{mode} mean_rank_draft CI {ci['ci95']} vs Python {want}")
    dec = summ["decomposition_low_confidence"]
    if "rank_mask" in dec and "rank_random" in dec:
        check(abs(dec["factor_layer_signal"] - dec["rank_random"] / dec["rank_mask"]) < 1e-9, "decomposition factor")
    cfg = json.load(open(os.path.join(out, "config.json")))
    check(cfg["models"]["target"]["tensors"] > 0 and cfg["params"]["modes"] == "gold,mask,random", "config.json")

    # resume: one example, an interrupted write, then --resume without --limit adds the rest
    out2 = os.path.join(tmp, "out2")
    base = ["diagnose", "--target", tgt, "--draft", drf, "--dataset", ds, "--out", out2, "--seed", str(seed), "--quiet"]
    run(base + ["--limit", "1"])
    with open(os.path.join(out2, "examples.jsonl"), "a") as f:
        f.write('{"id": "torn')
    run(base + ["--resume"])
    lines = open(os.path.join(out2, "examples.jsonl")).read().splitlines()
    # --limit 1 ran the seed-0 draw's first record; the resume adds the others in file order
    first = str(vkd_cli.limit_order(3, 1)[0])
    want = [first] + [i for i in ("0", "1", "2") if i != first]
    check(first != "0", "the draw's first record should not be the file's first on this data")
    check(len(lines) == 3 and [json.loads(x)["id"] for x in lines] == want,
          f"resume drops the torn line and adds the rest: {lines!r:.200}, want ids {want}")
    rows2 = list(csv.DictReader(open(os.path.join(out2, "tokens.csv"), newline="")))
    key = lambda r: (r["example"], r["mode"], r["position"], r["p_draft"], r["rank_draft"])  # noqa: E731
    check(list(map(key, rows2)) == list(map(key, rows)), "resumed results equal a full run, in its (file) order")
    p = run(base + ["--resume", "--modes", "gold"], ok=False)
    check(p.returncode != 0 and "params.modes" in p.stderr, f"resume with other parameters refused: {p.stderr}")
    # a folder with results is never emptied by a new run: refused, or moved aside with --overwrite
    p = run(base + ["--limit", "2"], ok=False)
    check(p.returncode != 0 and "--overwrite" in p.stderr, f"a run without --resume is refused: {p.stderr}")
    check(len(open(os.path.join(out2, "examples.jsonl")).read().splitlines()) == 3, "a refused run keeps the journal")
    run(base + ["--limit", "2", "--overwrite"])
    lines = open(os.path.join(out2, "examples.jsonl")).read().splitlines()
    check(len(lines) == 2, f"a run with --overwrite starts a new journal: {len(lines)} lines")
    old = open(os.path.join(out2 + ".old-1", "examples.jsonl")).read().splitlines()
    check(len(old) == 3, f"--overwrite moved the earlier journal to {out2}.old-1: {len(old)} lines")

    only_wrong(tgt, drf, tmp, data, seed, T, summ)

    # bad input: one clear line, non-zero exit
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps(data[0]) + "\n" + json.dumps({"question": "no answer here"}) + "\n")
    for args, want in (
        (["--dataset", bad], "bad.jsonl:2"),
        (["--dataset", os.path.join(tmp, "missing.jsonl")], "missing.jsonl"),
        (["--dataset", ds, "--modes", "gold,oops"], "oops"),
    ):
        p = run(["diagnose", "--target", tgt, "--draft", drf, "--out", os.path.join(tmp, "o_bad")] + args, ok=False)
        err = p.stderr.strip().splitlines()
        check(p.returncode != 0 and len(err) == 1 and want in err[0], f"bad input {args}: {p.returncode} {p.stderr!r}")
    if vkd_cli.failures:
        raise SystemExit(f"{vkd_cli.failures} check(s) failed")
    print("test_diagnose: all checks passed")


if __name__ == "__main__":
    main()
