#!/usr/bin/python3
"""test_exit_eval_cli: `vkdraft exit-eval` end to end on a generated 4-layer Qwen3-shaped target
with a 300-token byte-level BPE tokenizer trained here (tools/train_bpe.py), so that a test
of two heads fits well within the CI budget.

Two heads (layers 1 and 2, T = 2) come from a 2-step exit-train. exit-eval's held-out split is
rebuilt here independently (Hugging Face tokenizers for the ids, the split hash re-implemented
in Python), and every per-sequence quality sum (KL at the training T and at T = 1, CE, top-1,
top-k) and every per-prompt overlap sum in the journal is compared with the float64 PyTorch
reference tools/reference/exit_eval_ref.py (sampling with temperature 0.8 and top-k 40); the
worst relative error is printed. Artifacts: results.csv (one row per head, metrics equal to
the journal's pooled sums), summary.json (the speed-ups' paired bootstrap CIs recomputed with
numpy on the tests' own Philox port), report.txt, the figures as PNG and PDF. Greedy: the
self-speculative output equals the target's own greedy output and the overlap (one-hot
warps) equals the reference's argmax agreement. A run whose
last head record was lost resumes to the same quality numbers and outputs; a corrupted record is refused naming its line
and field. Bad input: a head
of another target, a missing head folder, a data file without usable text, a missing prompts
file: one error line, non-zero exit, --out not created."""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests", "figure"))
from check_bootstrap import uniform  # noqa: E402  (the tests' own Philox port)
from vkd_cli import NM, PY, SRC, check, run  # noqa: E402

M64 = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def held(seed, i, holdout):
    return (mix64(seed ^ mix64(i)) % 1000000) < holdout * 1e6


def encode(tok_json, texts):
    js = ("const {Tokenizer}=require('tokenizers');"
          f"const t=Tokenizer.fromFile({json.dumps(tok_json)});"
          "const a=JSON.parse(process.argv[1]);(async()=>{const o=[];for(const s of a){"
          "const e=await t.encode(s,null,{addSpecialTokens:true});o.push(e.getIds());}"
          "console.log(JSON.stringify(o));})();")
    p = subprocess.run(["node", "-e", js, json.dumps(texts)], capture_output=True, text=True, cwd=NM,
                       env=dict(os.environ, NODE_PATH=NM), timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"tokenizers reference failed: {p.stderr} (run tools/npm-deps.sh)")
    return json.loads(p.stdout)


def one_error(p, *needles):
    err = p.stderr.strip().splitlines()
    ok = p.returncode > 0 and len(err) == 1 and all(n in err[0] for n in needles)
    check(ok, f"expected one error line with {needles}, got rc {p.returncode}: {p.stderr!r}")


def speedup_ci(van, r, pfx, reps, seed):
    """Speed-up and its paired percentile bootstrap CI over prompts, recomputed with numpy."""
    import numpy as np
    vt, vd = np.array(van["tokens"], float), np.array(van["decode_s"], float)
    st, sd = np.array(r[pfx + "_tokens"], float), np.array(r[pfx + "_decode_s"], float)
    n = len(vt)
    stats = []
    for k in range(reps):
        idx = np.array([min(int(uniform(seed, k * n + i) * n), n - 1) for i in range(n)])
        stats.append((st[idx].sum() / sd[idx].sum()) / (vt[idx].sum() / vd[idx].sum()))
    return ((st.sum() / sd.sum()) / (vt.sum() / vd.sum()), np.percentile(stats, 2.5), np.percentile(stats, 97.5))


def rel(a, b):
    return abs(a - b) / max(1.0, abs(b))


t_start = time.time()
words = ("the cat sat on a mat and dog ran to big red house with small blue car it was good day "
         "when we go home after rain").split()
with tempfile.TemporaryDirectory() as tmp:
    paras = []
    for i in range(60):
        paras.append(" ".join(words[(i * 7 + k * (i % 5 + 1)) % len(words)] for k in range(10 + i % 7)) + ".")
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n\n".join(paras) + "\n")
    tokdir = os.path.join(tmp, "tok")
    subprocess.run([PY, os.path.join(SRC, "tools/train_bpe.py"), "--corpus", corpus, "--vocab", "300", "--out", tokdir],
                   check=True, capture_output=True)

    def gen(name, seed):
        d = os.path.join(tmp, name)
        subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "32",
                        "--layers", "4", "--heads", "2", "--kv-heads", "1", "--head-dim", "16", "--ffn", "48", "--tie",
                        "--vocab", "300", "--dtype", "f32", "--max-pos", "512", "--seed", str(seed),
                        "--tokenizer-from", tokdir, "--out", d], check=True, capture_output=True)
        return d
    tgt, other = gen("target", 31), gen("other", 32)
    heads = os.path.join(tmp, "heads")
    run(["exit-train", "--model", tgt, "--data", corpus, "--layers", "1,2", "--temperatures", "2", "--steps", "2",
         "--warmup", "0", "--lr", "0.01", "--seq-len", "32", "--holdout", "0.3", "--seed", "5", "--quiet", "--out", heads])
    h1, h2 = os.path.join(heads, "layer1-T2"), os.path.join(heads, "layer2-T2")
    out = os.path.join(tmp, "eval")
    common = ["--data", corpus, "--prompts", corpus, "--seq-len", "32", "--holdout", "0.3", "--seed", "5",
              "--max-sequences", "5", "--max-prompts", "3", "--max-new-tokens", "12", "--gamma", "3", "--bootstrap",
              "200", "--quiet"]
    args = ["exit-eval", "--model", tgt, "--heads", h1, h2] + common + ["--temperature", "0.8", "--top-k", "40"]
    t0 = time.time()
    run(args + ["--out", out])
    print(f"exit-eval: {time.time() - t0:.1f} s")
    recs = {r["id"]: r for r in map(json.loads, open(os.path.join(out, "examples.jsonl")))}
    check(set(recs) == {"vanilla", h1, h2}, f"journal ids {sorted(recs)}")

    # the split, rebuilt: paragraphs (all shorter than --seq-len), held out by the hash
    ids = encode(os.path.join(tokdir, "tokenizer.json"), paras)
    seqs = [s for s in ids if len(s) >= 3]
    heldout = [s for i, s in enumerate(seqs) if held(5, i, 0.3)]
    qseqs, prompts = heldout[:5], [s[:max(len(s) // 2, 1)] for s in heldout[:3]]
    worst = 0.0
    for h in (h1, h2):
        r = recs[h]
        job = {"quality": qseqs, "overlap": [[p + o, len(p) - 1] for p, o in zip(prompts, r["outputs"])]}
        p = subprocess.run([PY, os.path.join(SRC, "tools/reference/exit_eval_ref.py"), "--target", tgt, "--head", h,
                            "--kl-temperature", "2", "--topk", "5", "--temperature", "0.8", "--top-k", "40"],
                           input=json.dumps(job), capture_output=True, text=True, check=True)
        want = json.loads(p.stdout)
        for j, q in enumerate(want["quality"]):
            for k in ("kl_t", "kl_1", "ce"):
                e = rel(r["q_" + k][j], q[k])
                worst = max(worst, e)
                check(e < 1e-4, f"{h}: sequence {j}: {k} {r['q_' + k][j]} vs reference {q[k]}")
            for k in ("top1", "topk", "rows"):
                check(r["q_" + k][j] == q[k], f"{h}: sequence {j}: {k} {r['q_' + k][j]} vs reference {q[k]}")
        for j, o in enumerate(want["overlap"]):
            e = rel(r["overlap"][j], o["sum"])
            worst = max(worst, e)
            check(e < 1e-4 and r["overlap_rows"][j] == o["rows"],
                  f"{h}: prompt {j}: overlap {r['overlap'][j]} over {r['overlap_rows'][j]} vs {o}")
        check(all(len(o) == 12 for o in r["outputs"]) and r["reuse_tokens"] == [12] * 3 == r["plain_tokens"],
              f"{h}: every decoding makes --max-new-tokens tokens: {r['reuse_tokens']} {r['plain_tokens']}")
        check(sum(r["hist"]) == sum(r["reuse_steps"]) and sum(k * c for k, c in enumerate(r["hist"])) ==
              sum(r["reuse_accepted"]), f"{h}: histogram {r['hist']} vs steps/accepted")
        check(all(s >= math.ceil(12 / 4) for s in r["reuse_steps"]), f"{h}: verifications {r['reuse_steps']}")
    print(f"metrics vs float64 reference: worst relative error {worst:.2e}")
    check(any(recs[h]["q_rows"][0] > 0 for h in (h1, h2)), "no row scored")

    # greedy: the self-speculative output is the target's own greedy output, the overlap the
    # argmax agreement (one-hot warps in the reference too)
    gout = os.path.join(tmp, "greedy")
    run(["exit-eval", "--model", tgt, "--heads", h2] + common + ["--temperature", "0", "--out", gout])
    grecs = {r["id"]: r for r in map(json.loads, open(os.path.join(gout, "examples.jsonl")))}
    check(grecs[h2]["outputs"] == grecs["vanilla"]["outputs"],
          f"greedy: reuse outputs {grecs[h2]['outputs']} differ from the target's {grecs['vanilla']['outputs']}")
    job = {"overlap": [[p + o, len(p) - 1] for p, o in zip(prompts, grecs[h2]["outputs"])]}
    p = subprocess.run([PY, os.path.join(SRC, "tools/reference/exit_eval_ref.py"), "--target", tgt, "--head", h2,
                        "--kl-temperature", "2", "--temperature", "0"],
                       input=json.dumps(job), capture_output=True, text=True, check=True)
    gwant = [o["sum"] for o in json.loads(p.stdout)["overlap"]]
    check(grecs[h2]["overlap"] == gwant, f"greedy overlap {grecs[h2]['overlap']} vs reference {gwant}")
    print(f"greedy: outputs equal the target's; overlap {grecs[h2]['overlap']} (argmax agreements)")

    # artifacts
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    check([r["layer"] for r in rows] == ["1", "2"], f"results.csv layers {[r['layer'] for r in rows]}")
    for row, h in zip(rows, (h1, h2)):
        r = recs[h]
        kl = sum(r["q_kl_t"]) / sum(r["q_rows"])
        acc = sum(r["reuse_accepted"]) / sum(r["reuse_steps"])
        ov = sum(r["overlap"]) / sum(r["overlap_rows"])
        check(rel(float(row["kl_train_t"]), kl) < 1e-6 and rel(float(row["e_accepted"]), acc) < 1e-6 and
              rel(float(row["accept_rate"]), acc / 3) < 1e-6 and rel(float(row["tv"]), 1 - ov) < 1e-6 and
              rel(float(row["perplexity"]), math.exp(sum(r["q_ce"]) / sum(r["q_rows"]))) < 1e-6,
              f"results.csv row {row}")
        check(float(row["reuse_speedup"]) > 0 and float(row["plain_speedup"]) > 0, f"speed-ups {row}")
    summ = json.load(open(os.path.join(out, "summary.json")))
    check(len(summ["heads"]) == 2 and summ["heads"][0]["kl_train_t"]["ci95"][0] <= summ["heads"][0]["kl_train_t"]["value"]
          <= summ["heads"][0]["kl_train_t"]["ci95"][1], "summary.json heads / CIs")
    for sh, h in zip(summ["heads"], (h1, h2)):
        for pfx in ("reuse", "plain"):
            want = speedup_ci(recs["vanilla"], recs[h], pfx, 200, 5)
            got = (sh[pfx]["speedup"]["value"], *sh[pfx]["speedup"]["ci95"])
            check(all(rel(a, b) < 1e-9 for a, b in zip(got, want)), f"{h} {pfx}: speed-up {got} vs numpy {want}")
    check("KL at training T" in open(os.path.join(out, "report.txt")).read(), "report.txt")
    for fig in ("layer_sweep", "layer_sweep_top1", "acceptance_sweep", "pareto", "accept_hist"):
        png = open(os.path.join(out, fig + ".png"), "rb").read(8)
        pdf = open(os.path.join(out, fig + ".pdf"), "rb").read(5)
        check(png == b"\x89PNG\r\n\x1a\n" and pdf == b"%PDF-", f"{fig}: PNG/PDF")

    # a folder with results: refused without --resume; a lost last record is redone on --resume
    one_error(run(args + ["--out", out], ok=False), "--resume")
    lines = open(os.path.join(out, "examples.jsonl")).read().splitlines(True)
    with open(os.path.join(out, "examples.jsonl"), "w") as f:
        f.writelines(lines[:-1])
    lost = json.loads(lines[-1])
    run(args + ["--out", out, "--resume"])
    again = {r["id"]: r for r in map(json.loads, open(os.path.join(out, "examples.jsonl")))}
    keys = [k for k in lost if k.startswith("q_") or k in ("outputs", "overlap", "hist", "reuse_accepted")]
    check(all(again[lost["id"]][k] == lost[k] for k in keys), "the resumed head's metrics differ")
    rows2 = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    check([r["kl_train_t"] for r in rows2] == [r["kl_train_t"] for r in rows], "results.csv after --resume")

    # a record that does not read back is refused, naming line and field
    lines = open(os.path.join(out, "examples.jsonl")).read().splitlines(True)
    rec = json.loads(lines[1])
    rec["hist"] = "many"
    with open(os.path.join(out, "examples.jsonl"), "w") as f:
        f.writelines([lines[0], json.dumps(rec) + "\n"] + lines[2:])
    one_error(run(args + ["--out", out, "--resume"], ok=False), "examples.jsonl:2", "'hist'")

    # bad input
    bad = os.path.join(tmp, "bad")
    base = ["--data", corpus, "--prompts", corpus, "--seq-len", "32", "--holdout", "0.3", "--seed", "5",
            "--quiet", "--out", bad]
    one_error(run(["exit-eval", "--model", other, "--heads", h1] + base, ok=False), "trained for target")
    one_error(run(["exit-eval", "--model", tgt, "--heads", os.path.join(tmp, "nohead")] + base, ok=False), "nohead")
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").write("\n\n  \n")
    one_error(run(["exit-eval", "--model", tgt, "--heads", h1, "--data", empty, "--prompts", corpus, "--out", bad],
                  ok=False), "empty.txt", "no usable text")
    one_error(run(["exit-eval", "--model", tgt, "--heads", h1, "--data", corpus, "--prompts",
                   os.path.join(tmp, "none.jsonl"), "--out", bad], ok=False), "none.jsonl")
    check(not os.path.exists(bad), "a failed run created its --out folder")
print(f"test_exit_eval_cli: {time.time() - t_start:.1f} s")
sys.exit(1 if vkd_cli.failures else 0)
