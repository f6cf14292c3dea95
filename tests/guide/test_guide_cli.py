#!/usr/bin/python3
"""test_guide_cli: `vkdraft guide` end to end on a generated Qwen3-shaped model with the real
Qwen3 tokenizer and a random DFlash draft (tools/reference/gen_model.py, gen_dflash.py).

Checks: the evaluation matrix (matrix.csv, summary.json, heatmap.png), the rubric export
(responses.jsonl: context, question, response, condition), config.json, that alpha 0 and the
plain condition produce the same tokens (greedy and sampled) and plain greedy equals
`vkdraft generate`; --resume after a torn journal and after a SIGKILL gives the same records
as an uninterrupted run; a resume with other parameters is refused naming the parameter;
bad flags give one clear stderr line and a non-zero exit; no temporary files are left;
report.txt and its CI lines; --limit's seed-0 draw order; --group-by and --keep-fields on
CL-bench-style records (grouped()).
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import QWEN_TOK, SRC, VK, check, run  # noqa: E402







def journal(d):
    with open(os.path.join(d, "examples.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


STABLE = ("id", "example", "cell", "condition", "alpha", "temperature", "ttt", "tokens", "response", "ids",
          "kl_sum", "changed", "target_forwards", "draft_calls", "stopped", "correct", "predicted")


def stable(rec):
    return {k: rec.get(k) for k in STABLE}


def new_conditions(target, draft, ds, tmp):
    """adaptive and topk cells, tokens.jsonl and compare.md. Expected values independent of the
    command: tokens.jsonl against the journal's ids and changed counts; softmax facts (the
    target's argmax has the largest target probability; a token that is the argmax has
    p_target == p_target_pref); adaptive alpha in [0, alpha]; alpha 0 adaptive == plain (its
    rows are the target's); topk with k = 1 at alpha 0.9 picks the target's argmax every time
    (greedy)."""
    out = os.path.join(tmp, "out_new")
    run(["guide", "--target", target, "--draft", draft, "--dataset", ds, "--limit", "2", "--max-new-tokens", "6",
         "--alphas", "0,0.9", "--temperatures", "0", "--conditions", "guided,adaptive,topk,plain", "--guide-top-k", "1",
         "--seed", "4", "--quiet", "--out", out])
    J = {r["id"]: r for r in journal(out)}
    cfg = json.load(open(os.path.join(out, "config.json")))
    check(cfg["params"]["conditions"] == ["guided", "plain", "adaptive", "topk"] and cfg["params"]["guide_top_k"] == 1,
          f"config conditions {cfg['params']}")
    toks = [json.loads(x) for x in open(os.path.join(out, "tokens.jsonl"))]
    drafted = [r for r in J.values() if r["condition"] != "plain"]
    check(len(toks) == sum(r["tokens"] for r in drafted), f"tokens.jsonl: {len(toks)} lines")
    for r in drafted:
        mine = [t for t in toks if t["id"] == r["id"]]
        check([t["token"] for t in mine] == r["ids"], f"{r['id']}: tokens.jsonl ids differ from the journal")
        check(sum(t["changed"] for t in mine) == r["changed"], f"{r['id']}: changed count")
        for t in mine:
            ok = 0 <= t["p_target"] <= t["p_target_pref"] + 1e-6 <= 1 + 1e-6 and 0 <= t["p_draft"] <= 1
            ok = ok and (t["token"] != t["target_argmax"] or abs(t["p_target"] - t["p_target_pref"]) < 1e-6)
            ok = ok and t["changed"] == (t["target_argmax"] != t["guided_argmax"])
            if r["condition"] == "adaptive":
                ok = ok and 0 <= t["alpha_applied"] <= r["alpha"] + 1e-6
            else:
                ok = ok and abs(t["alpha_applied"] - r["alpha"]) < 1e-6
            if r["condition"] == "topk":
                ok = ok and t["token"] == t["target_argmax"]
            check(ok, f"{r['id']} token {t['index']}: {t}")
    for e in map(str, vkd_cli.limit_order(3, 2)):  # --limit 2: the seed-0 draw's first two records
        plain = J[f"plain/T0/ttt-off/{e}"]["ids"]
        check(J[f"adaptive/a0/T0/ttt-off/{e}"]["ids"] == plain, f"adaptive alpha 0 != plain (example {e})")
        check(J[f"topk/a0.9/T0/ttt-off/{e}"]["ids"] == plain, f"topk k=1 != plain greedy (example {e})")
    md = open(os.path.join(out, "compare.md")).read()
    check(md.count("\n## Example ") == 2 and md.count("\n### ") == len(J), f"compare.md sections: {md[:300]!r}")
    for r in J.values():
        check(f"### {r['cell']}" in md and r["response"] in md, f"compare.md lacks {r['id']}")
    print(f"new conditions: {len(toks)} token lines, {len(J)} records", file=sys.stderr)


def grouped(target, draft, tmp):
    """CL-bench-style records (system + user messages, rubrics, metadata) with --group-by
    metadata.context_category and --keep-fields rubrics,metadata. Expected values from the
    journal, recomputed here: per group, examples and KL per token (sum kl_sum / sum tokens)."""
    ds = os.path.join(tmp, "cl-bench_mini.jsonl")
    cats = ["Rule System Application", "Domain Knowledge Reasoning", "Rule System Application",
            "Empirical Discovery & Simulation"]
    recs = []
    for i, cat in enumerate(cats):
        recs.append({"messages": [{"role": "system", "content": f"Follow rule {i}."},
                                  {"role": "user", "content": f"Context {i}: a blip is {i + 2} blops. How many blops?"}],
                     "rubrics": [f"Says {i + 2}", "Is brief"][: 1 + i % 2],
                     "metadata": {"task_id": f"t{i}", "context_id": f"c{i // 2}", "context_category": cat,
                                  "sub_category": "x"}})
    with open(ds, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    out = os.path.join(tmp, "out_grouped")
    base = ["guide", "--target", target, "--draft", draft, "--dataset", ds, "--max-new-tokens", "4", "--alphas", "0.5",
            "--temperatures", "0", "--conditions", "guided,plain", "--quiet"]
    run(base + ["--group-by", "metadata.context_category", "--keep-fields", "rubrics,metadata", "--out", out])
    J = journal(out)
    check(sorted({r["example"] for r in J}) == ["t0", "t1", "t2", "t3"], "ids from metadata.task_id (cl-bench preset)")
    names = sorted(set(cats))
    rows = list(csv.DictReader(open(os.path.join(out, "matrix.csv"))))
    check([r["group"] for r in rows] == ["all"] * 2 + [g for g in names for _ in range(2)], f"group rows {rows}")
    summ = json.load(open(os.path.join(out, "summary.json")))
    check([g["group"] for g in summ["groups"]] == names and summ["group_by"] == "metadata.context_category", "groups")
    for r in rows:
        mine = [x for x in J if r["group"] == "all" or cats[int(x["example"][1:])] == r["group"]]
        mine = [x for x in mine if x["condition"] == r["condition"]]
        want_n = len(mine)
        kl = sum(x["kl_sum"] for x in mine) / sum(x["tokens"] for x in mine)
        check(int(r["examples"]) == want_n and want_n == (4 if r["group"] == "all" else cats.count(r["group"])),
              f"examples in {r}")
        check(r["accuracy"] == "" and abs(float(r["kl_mean"]) - kl) <= 5e-5, f"{r}: KL {kl}")
    for g in summ["groups"]:
        check(g["examples"] == cats.count(g["group"]), f"group {g['group']} examples")
        for c in g["cells"]:
            ci = c["kl_mean_ci"]
            check(ci["n_examples"] == g["examples"] and ci["ci95"][0] <= c["kl_mean"] + 1e-12 and
                  c["kl_mean"] <= ci["ci95"][1] + 1e-12, f"group {g['group']} {c['cell']} CI {ci}")
        fig = os.path.join(out, g["figure"])
        check(os.path.exists(fig) and open(fig, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"figure {g['figure']}")
        check(os.path.getsize(fig[:-4] + ".pdf") > 500, f"{g['figure']} has no PDF")
    rt = open(os.path.join(out, "report.txt")).read()
    check(all(f"==== group metadata.context_category = {n} (" in rt for n in names), "report.txt group sections")
    check(rt.count("bootstrap CIs over examples") == 1 + len(names), "report.txt CI sections")
    X = [json.loads(l) for l in open(os.path.join(out, "responses.jsonl"))]
    check(len(X) == 8, f"responses.jsonl: {len(X)} lines")
    for x in X:
        i = int(x["example"][1:])
        check(x["rubrics"] == recs[i]["rubrics"] and x["metadata"] == recs[i]["metadata"], f"kept fields {x}")
        check(x["context"] == f"system: Follow rule {i}." and x["question"] == recs[i]["messages"][1]["content"],
              f"context and question {x}")
    # bad input: one clear line, non-zero exit, nothing written
    bad = [(base + ["--group-by", "metadata.nope", "--out", os.path.join(tmp, "g2")], "metadata.nope"),
           (base + ["--keep-fields", "rubrics,id", "--out", os.path.join(tmp, "g3")], "'id'"),
           (base + ["--keep-fields", "rubrics,rubrics", "--out", os.path.join(tmp, "g4")], "twice")]
    for args, needle in bad:
        p = run(args, ok=False)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode != 0 and len(lines) == 1 and needle in lines[0], f"{args[-3:]}: {p.stderr!r}")
        check(not os.path.exists(args[-1]), f"{args[-1]} was created")
    print(f"grouped: {len(names)} groups, {len(J)} records", file=sys.stderr)


def main():
    if not os.path.exists(os.path.join(QWEN_TOK, "tokenizer.json")):
        print(f"{QWEN_TOK}/tokenizer.json missing (run tools/npm-deps.sh): skipped", file=sys.stderr)
        return 77
    tmp = tempfile.mkdtemp(prefix="vkd-guide-")
    target, draft = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3",
                    "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
                    "--ffn", "128", "--tie", "--dtype", "bf16", "--max-pos", "512", "--seed", "0",
                    "--tokenizer-from", QWEN_TOK, "--out", target], check=True, capture_output=True)
    subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", target,
                    "--out", draft, "--layers", "1", "--block-size", "4", "--target-layer-ids", "0,1",
                    "--train-steps", "0"], check=True, capture_output=True)
    ds = os.path.join(tmp, "gsm8k_mini.jsonl")
    qs = [("What is 2 + 1?", "2 + 1 = 3\n#### 3"), ("A robe takes 2 bolts and half that much. Total?", "#### 3"),
          ("Tom has 5 apples and eats 2. How many are left?", "#### 3")]
    with open(ds, "w") as f:
        for q, a in qs:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")

    base = ["guide", "--target", target, "--draft", draft, "--dataset", ds, "--limit", "3", "--max-new-tokens", "6",
            "--alphas", "0,0.5", "--temperatures", "0,0.8", "--conditions", "guided,null,plain", "--seed", "4",
            "--quiet"]
    out1 = os.path.join(tmp, "out1")
    t0 = time.time()
    p = run(base + ["--out", out1])
    full_s = time.time() - t0
    print(p.stdout, file=sys.stderr)
    for name in ("config.json", "examples.jsonl", "matrix.csv", "summary.json", "responses.jsonl"):
        check(os.path.exists(os.path.join(out1, name)), f"missing {name}")
    check(not [n for n in os.listdir(out1) if "tmp" in n], f"temporary files left: {os.listdir(out1)}")
    hp = os.path.join(out1, "heatmap.png")
    check(os.path.exists(hp) and open(hp, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "heatmap.png written")

    # the matrix: 2 plain cells + 2 conditions x 2 temperatures x 2 alphas
    rows = list(csv.DictReader(open(os.path.join(out1, "matrix.csv"))))
    check(len(rows) == 10, f"matrix.csv has {len(rows)} rows, expected 10")
    for r in rows:
        check(r["ttt"] == "off" and r["examples"] == "3", f"matrix row {r}")
        check(r["accuracy"] != "" and 0 <= float(r["accuracy"]) <= 1, f"accuracy scored (GSM8K preset) in {r}")
        if r["condition"] != "plain" and r["alpha"] == "0":
            check(float(r["kl_mean"]) == 0 and float(r["changed_frac"]) == 0, f"alpha 0 row {r}")
        if r["condition"] == "guided" and r["alpha"] == "0.5" and r["temperature"] == "0":
            check(float(r["kl_mean"]) > 0, f"guided alpha 0.5 has zero KL: {r}")
        check(float(r["target_forwards_per_token"]) > 0, f"target forwards in {r}")
    for key in ("condition", "ttt", "temperature", "alpha", "accuracy", "kl_mean", "changed_frac", "ms_per_token",
                "target_forwards_per_token"):
        check(key in rows[0], f"matrix.csv lacks {key}")
    summ = json.load(open(os.path.join(out1, "summary.json")))
    check(len(summ["cells"]) == 10, "summary cells")
    check(summ.get("alpha0_plain_compared") == 6 and summ.get("alpha0_plain_differ") == 0,
          f"alpha 0 vs plain: {summ.get('alpha0_plain_compared')} compared, {summ.get('alpha0_plain_differ')} differ")
    cfg = json.load(open(os.path.join(out1, "config.json")))
    check(cfg["params"]["alphas"] == [0, 0.5] and cfg["params"]["temperatures"] == [0, 0.8] and
          cfg["params"]["conditions"] == ["guided", "null", "plain"] and cfg["common"]["seed"] == 4,
          f"config.json params {cfg.get('params')}")

    # journal: one record per (cell, example); alpha 0 == plain token for token, also sampled
    J = journal(out1)
    check(len(J) == 30 and len({r["id"] for r in J}) == 30, f"journal has {len(J)} records")
    by = {r["id"]: r for r in J}
    for T in ("0", "0.8"):
        for e in ("0", "1", "2"):
            a, b = by[f"guided/a0/T{T}/ttt-off/{e}"], by[f"plain/T{T}/ttt-off/{e}"]
            check(a["ids"] == b["ids"], f"T {T} example {e}: alpha 0 {a['ids']} != plain {b['ids']}")
            check(by[f"null/a0/T{T}/ttt-off/{e}"]["ids"] == b["ids"], f"T {T} example {e}: null alpha 0 != plain")
    # plain greedy == vkdraft generate through the same chat template
    g = json.loads(run(["generate", "--model", target, "--chat", qs[0][0], "--max-new-tokens", "6",
                        "--temperature", "0", "--json"]).stdout)
    check(g["ids"] == by["plain/T0/ttt-off/0"]["ids"], f"plain greedy {by['plain/T0/ttt-off/0']['ids']} != "
          f"vkdraft generate {g['ids']}")

    # rubric export
    X = [json.loads(l) for l in open(os.path.join(out1, "responses.jsonl"))]
    check(len(X) == 30, f"responses.jsonl has {len(X)} lines")
    for x in X:
        for k in ("context", "question", "response", "condition", "alpha", "temperature", "ttt", "reference_answer"):
            check(k in x, f"responses.jsonl record lacks {k}")
    first = vkd_cli.limit_order(3, 3)[0]  # --limit 3 of 3: every record, in the seed-0 draw's order
    check(X[0]["question"] == qs[first][0] and X[0]["reference_answer"] == qs[first][1], f"export record {X[0]}")
    check([r["example"] for r in J[:3]] == [str(i) for i in vkd_cli.limit_order(3, 3)], "work order is the draw's")

    # report.txt: the table, the matrix and a CI line per cell whose numbers are summary.json's
    rt = open(os.path.join(out1, "report.txt")).read()
    check(p.stdout.startswith(rt), "report.txt is what guide printed")
    for c in summ["cells"]:
        ci = c["accuracy_ci"]
        line = [l for l in rt.splitlines() if l.strip().startswith(c["cell"] + " accuracy:")]
        check(len(line) == 1 and f"n = {ci['n_examples']} examples" in line[0], f"report.txt CI line of {c['cell']}")
        check(ci["ci95"][0] <= c["accuracy"] <= ci["ci95"][1] and ci["n_examples"] == 3, f"accuracy CI {ci}")
        check(abs(ci["value"] - c["accuracy"]) < 1e-12, f"{c['cell']}: CI value {ci['value']} vs {c['accuracy']}")

    # resume after a torn journal: keep 13 records and half a line
    out2 = os.path.join(tmp, "out2")
    shutil.copytree(out1, out2)
    lines = open(os.path.join(out2, "examples.jsonl")).read().splitlines(True)
    with open(os.path.join(out2, "examples.jsonl"), "w") as f:
        f.writelines(lines[:13])
        f.write(lines[13][: len(lines[13]) // 2])
    run(base + ["--out", out2, "--resume"])
    J2 = journal(out2)
    check(len(J2) == 30, f"resumed journal has {len(J2)} records")
    check(J2[:13] == J[:13], "resume rewrote finished records")
    check(sorted(map(json.dumps, map(stable, J2))) == sorted(map(json.dumps, map(stable, J))),
          "resumed records differ from the uninterrupted run")
    X2 = open(os.path.join(out2, "responses.jsonl")).read()
    check(X2 == open(os.path.join(out1, "responses.jsonl")).read(), "resumed responses.jsonl differs")

    # resume after SIGKILL in the middle of the sweep
    out3 = os.path.join(tmp, "out3")
    proc = subprocess.Popen([VK] + base + ["--out", out3], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jp = os.path.join(out3, "examples.jsonl")
    deadline = time.time() + max(30, 3 * full_s)
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(jp) and sum(1 for _ in open(jp)) >= 5:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = sum(1 for _ in open(jp)) if os.path.exists(jp) else 0
    check(not os.path.exists(os.path.join(out3, "matrix.csv")) or not killed, "a killed run left matrix.csv")
    run(base + ["--out", out3, "--resume"])
    J3 = journal(out3)
    check(sorted(map(json.dumps, map(stable, J3))) == sorted(map(json.dumps, map(stable, J))),
          "records after kill + resume differ from the uninterrupted run")
    print(f"kill test: killed {killed} with {n_before} records journaled", file=sys.stderr)

    # resume with other parameters is refused, naming the parameter
    p = run([a if a != "0,0.5" else "0,0.4" for a in base] + ["--out", out1, "--resume"], ok=False)
    check(p.returncode != 0 and "alphas" in p.stderr, f"resume with other alphas: {p.stderr!r}")

    # bad input: one clear line, non-zero exit
    def without(flag, args):
        i = args.index(flag)
        return args[:i] + args[i + 2:]
    bad = [
        ([a if a != "0,0.5" else "0,abc" for a in base] + ["--out", out1], "--alphas"),
        ([a if a != "0,0.8" else "0,-1" for a in base] + ["--out", out1], "--temperatures"),
        ([a if a != "guided,null,plain" else "guided,foo" for a in base] + ["--out", out1], "foo"),
        ([a if a != "0,0.5" else "0,0.5,0" for a in base] + ["--out", out1], "--alphas"),
        (without("--draft", base) + ["--out", out1], "--draft"),
        (base + ["--out", out1, "--top-p", "2"], "--top-p"),
        (base, "--out"),
        ([a if a != ds else os.path.join(tmp, "missing.jsonl") for a in base] + ["--out", os.path.join(tmp, "o4")],
         "missing.jsonl"),
    ]
    for args, needle in bad:
        p = run(args, ok=False)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode != 0, f"{args}: exit 0")
        check(len(lines) == 1 and needle in lines[0], f"{args}: stderr {p.stderr!r} should be one line naming {needle!r}")

    new_conditions(target, draft, ds, tmp)
    grouped(target, draft, tmp)

    h = run(["guide", "--help"]).stdout
    check("--ttt off|on|both" in h and "std(draft - target)" in h, "--help lacks the ttt flag or the null definition")
    print(f"test_guide_cli: {vkd_cli.failures} failure(s)", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
