#!/usr/bin/python3
"""test_shard_cli: sharded sweeps (--shard I/N) and `vkdraft merge` end to end on a generated
Qwen3-shaped pair with the real Qwen3 tokenizer (tests/vkd_cli.py make_pair).

Checks, for diagnose, probe and guide: the shards together hold every record exactly once, and
merging them (folders given in any order) writes what one unsharded run writes: config.json,
the CSV files, responses.jsonl and every figure byte-identical; the journal in the same order
with the same records; report.txt and summary.json identical up to what measures time (the
report's time line, summary timing fields, guide's ms_per_token column), which differs
between any two runs. Bad input gives one clear stderr line and a non-zero exit: a bad
--shard value, a missing shard, the same shard twice, shards of different parameters or
partitions or commands, a folder that is no shard, an unfinished shard and a shard holding a
record of another shard. --subset-frac F takes round(F * records) records drawn as spec's
--limit draws them (a seed-0 xorshift64 Fisher-Yates permutation, recomputed here in Python)
and runs them in file order.
"""
import json
import os
import shutil
import sys
import re
import tempfile

sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import check, make_pair, require_tokenizer, run, seed0_permutation  # noqa: E402

TIME_KEYS = ("decode_s", "prefill_s", "gen_s", "prompt_s", "blocks_s", "mc_s", "ms_per_token", "timing",
             "compute_budget", "wall_s_per_effective_token")
# report.txt lines that carry this invocation's measured times (the merge's own, near zero)
TIME_LINES = ("Time", "| target prefill", "| draft calls", "| verification")


def report_lines(text):
    """report.txt without the lines and cells that hold measured times: the time line, the
    compute budget's times, probe's chain rows' last cell (wall seconds per effective token),
    guide's ms/token column."""
    out = []
    for l in text.decode().splitlines():
        if l.startswith(TIME_LINES):
            continue
        if re.match(r"^\| (all|easy|hard) \| T=", l):
            l = l.rstrip(" |").rsplit("|", 1)[0]
        if re.match(r"^(guided|null|plain|adaptive|topk) +(on|off) ", l):  # guide's table: drop ms/token
            f = l.split()
            l = " ".join(f[:9] + f[10:])
        out.append(l)
    return out


def untimed(o):
    if isinstance(o, dict):
        return {k: untimed(v) for k, v in o.items() if k not in TIME_KEYS}
    if isinstance(o, list):
        return [untimed(x) for x in o]
    return o


def journal(d):
    with open(os.path.join(d, "examples.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def drop_csv_column(text, name):
    rows = [l.split(",") for l in text.decode().splitlines()]
    k = rows[0].index(name)
    return [r[:k] + r[k + 1:] for r in rows]


def compare(cmd, full, merged):
    """merged must hold what the unsharded run `full` wrote."""
    names = sorted(n for n in os.listdir(full) if not n.startswith("."))
    check(names == sorted(n for n in os.listdir(merged) if not n.startswith(".")),
          f"{cmd}: files {names} vs {sorted(os.listdir(merged))}")
    for n in names:
        a, b = read(full, n), read(merged, n)
        if n == "examples.jsonl":
            ja, jb = journal(full), journal(merged)
            check([r["id"] for r in ja] == [r["id"] for r in jb], f"{cmd}: journal order differs")
            check(untimed(ja) == untimed(jb), f"{cmd}: journal records differ beyond timings")
        elif n == "summary.json":
            check(untimed(json.loads(a)) == untimed(json.loads(b)), f"{cmd}: summary.json differs beyond timings")
        elif n == "report.txt":
            la, lb = report_lines(a), report_lines(b)
            check(la == lb, f"{cmd}: report.txt differs beyond its time line")
        elif n == "matrix.csv":
            check(drop_csv_column(a, "ms_per_token") == drop_csv_column(b, "ms_per_token"),
                  f"{cmd}: matrix.csv differs beyond ms_per_token")
        else:
            check(a == b, f"{cmd}: {n} is not byte-identical")
        check(n != "summary.json" or len(a) > 10, f"{cmd}: empty summary")


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-shard-")
    target, draft = make_pair(tmp)
    ds = os.path.join(tmp, "gsm8k_mini.jsonl")
    qs = [("What is 2 + 1?", "2 + 1 = 3\n#### 3"), ("A robe takes 2 bolts and half that much. Total?", "#### 3"),
          ("Tom has 5 apples and eats 2. How many are left?", "#### 3"), ("What is 7 times 6?", "7*6=42\n#### 42"),
          ("Name a colour.", "Blue is one.\n#### 4")]
    with open(ds, "w") as f:
        for q, a in qs:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    common = ["--target", target, "--draft", draft, "--dataset", ds, "--quiet"]
    sweeps = {
        "diagnose": (["diagnose"] + common, 2),
        "probe": (["probe"] + common + ["--limit", "3", "--max-new-tokens", "8", "--samples", "16",
                                         "--draft-temps", "1,0.5"], 2),
        "guide": (["guide"] + common + ["--max-new-tokens", "5", "--alphas", "0,0.5", "--temperatures", "0,0.8",
                                         "--conditions", "guided,null,plain", "--seed", "4"], 3),
    }
    shards = {}
    for cmd, (args, n) in sweeps.items():
        full = os.path.join(tmp, f"{cmd}-full")
        run(args + ["--out", full])
        dirs = [os.path.join(tmp, f"{cmd}-shard{i}") for i in range(n)]
        for i, d in enumerate(dirs):
            run(args + ["--shard", f"{i}/{n}", "--out", d])
        ids = [r["id"] for d in dirs for r in journal(d)]
        check(sorted(ids) == sorted(r["id"] for r in journal(full)) and len(set(ids)) == len(ids),
              f"{cmd}: the shards do not hold every record exactly once")
        check(all(journal(d) for d in dirs), f"{cmd}: a shard did no work")
        merged = os.path.join(tmp, f"{cmd}-merged")
        p = run(["merge", merged] + dirs[::-1])
        check(p.returncode == 0, f"{cmd}: merge failed")
        compare(cmd, full, merged)
        shards[cmd] = (args, dirs, full)

    # --subset-frac: 2 of 5 records, the first two of the seed-0 permutation, in file order
    args, dirs, full = shards["diagnose"]
    sub = os.path.join(tmp, "diag-subset")
    run(args + ["--subset-frac", "0.4", "--out", sub])
    want = [str(i) for i in sorted(seed0_permutation(len(qs))[:2])]
    check([r["id"] for r in journal(sub)] == want, f"--subset-frac 0.4: ids {[r['id'] for r in journal(sub)]} vs {want}")
    check(want != ["0", "1"], "the draw should differ from the file-order prefix on this data")

    # bad input
    s0, s1 = dirs
    other = os.path.join(tmp, "diag-seed9")
    run(args + ["--seed", "9", "--shard", "1/2", "--out", other])
    third = os.path.join(tmp, "diag-of3")
    run(args + ["--shard", "1/3", "--out", third])
    unfinished = os.path.join(tmp, "diag-unfinished")
    shutil.copytree(s1, unfinished)
    lines = read(unfinished, "examples.jsonl").decode().splitlines(keepends=True)
    with open(os.path.join(unfinished, "examples.jsonl"), "w") as f:
        f.writelines(lines[:-1])
    foreign = os.path.join(tmp, "diag-foreign")
    shutil.copytree(s0, foreign)
    with open(os.path.join(foreign, "examples.jsonl"), "a") as f:
        f.write(read(s1, "examples.jsonl").decode().splitlines(keepends=True)[0])
    bad = [
        (["diagnose"] + common + ["--shard", "2/2", "--out", os.path.join(tmp, "x")], "--shard"),
        (["diagnose"] + common + ["--shard", "1", "--out", os.path.join(tmp, "x")], "--shard"),
        (["merge", os.path.join(tmp, "m1"), s0], "shard 1/2 is missing"),
        (["merge", os.path.join(tmp, "m2"), s0, s0], "overlapping shards"),
        (["merge", os.path.join(tmp, "m3"), s0, other], "common.seed"),
        (["merge", os.path.join(tmp, "m4"), s0, third], "different partitions"),
        (["merge", os.path.join(tmp, "m5"), s0, shards["probe"][1][1]], "one sweep's shards"),
        (["merge", os.path.join(tmp, "m6"), s0, full], "not a shard"),
        (["merge", os.path.join(tmp, "m7"), s0, unfinished], "has no record"),
        (["merge", os.path.join(tmp, "m8"), foreign, s1], "no work item"),
        (["merge", os.path.join(tmp, "m9")], "SHARD_DIR"),
        (args + ["--subset-frac", "0", "--out", os.path.join(tmp, "x")], "--subset-frac"),
        (args + ["--subset-frac", "0.5", "--limit", "2", "--out", os.path.join(tmp, "x")], "--subset-frac"),
    ]
    for a, needle in bad:
        p = run(a, ok=False)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode != 0, f"{a}: exit 0")
        check(len(lines) == 1 and needle in lines[0], f"{a}: stderr {p.stderr!r} should be one line naming {needle!r}")
    for m in ("m1", "m2", "m3", "m4", "m5", "m6"):  # refused before OUT is touched
        check(not os.path.exists(os.path.join(tmp, m)), f"merge {m}: OUT was created for a refused merge")
    h = run(["merge", "--help"]).stdout
    check("SHARD_DIR" in h and "--shard I/N" in h, "merge --help lacks its usage")
    check("--shard I/N" in run(["guide", "--help"]).stdout, "guide --help lacks --shard")
    print(f"test_shard_cli: {vkd_cli.failures} failure(s)", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
