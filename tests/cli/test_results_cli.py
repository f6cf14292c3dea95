#!/usr/bin/python3
"""test_results_cli: results are never lost or mixed up (docs/results.md), end to end on a
generated Qwen3-shaped pair with the real Qwen3 tokenizer (tests/vkd_cli.py).

Each check names the case it guards. A results folder is validated before it is touched
(a draft that is not a draft, a prompt that does not fit: the earlier sweep is byte-for-byte
intact); a folder with results is refused without --resume, --overwrite moves it aside whole;
a second writer is refused by the folder's lock; guide keys cells by exact values and
examples by full ids; every journal record read back is checked (file:line: field) for
guide, diagnose, probe and power; --out "" and output paths are checked before any work;
a failed write to stdout (> /dev/full) fails the command; 64-bit seeds are exact; and the
smaller ones (ignored flags, --ids without a tokenizer, NUL in a dataset, messages).
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.environ["VKDRAFT_SOURCE_ROOT"], "tests"))
import vkd_cli  # noqa: E402
from vkd_cli import VK, check, make_pair, require_tokenizer, run  # noqa: E402


def snapshot(d):
    """Every file of a folder (but the lock file) with its bytes."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            if f != ".vkdraft.lock":
                p = os.path.join(root, f)
                out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


def refused(p, *needles):
    err = p.stderr.strip().splitlines()
    return p.returncode not in (0, -11) and p.returncode > 0 and len(err) == 1 and all(n in err[0] for n in needles)


def journal(d):
    with open(os.path.join(d, "examples.jsonl")) as f:
        return [json.loads(x) for x in f]


def corrupt(d, edit):
    """Rewrites record 1 of the journal with edit(record) (a dict)."""
    p = os.path.join(d, "examples.jsonl")
    lines = open(p).read().splitlines()
    lines[0] = json.dumps(edit(json.loads(lines[0])), separators=(",", ":"))
    open(p, "w").write("\n".join(lines) + "\n")


def main():
    require_tokenizer()
    tmp = tempfile.mkdtemp(prefix="vkd-results-")
    tgt, drf = make_pair(tmp)
    ds = os.path.join(tmp, "gsm8k_mini.jsonl")
    with open(ds, "w") as f:
        for q in ("What is 2 + 1?", "Tom has 5 apples and eats 2. How many are left?", "What is 3 * 3?"):
            f.write(json.dumps({"question": q, "answer": "#### 3"}) + "\n")
    G = ["guide", "--target", tgt, "--draft", drf, "--dataset", ds, "--max-new-tokens", "2", "--alphas", "0.5",
         "--temperatures", "0", "--conditions", "guided", "--quiet"]

    # ---- case 1: validate models, dataset, parameters before touching --out ----
    g1 = os.path.join(tmp, "g1")
    run(G + ["--out", g1])
    before = snapshot(g1)
    check(set(before) >= {"config.json", "examples.jsonl", "matrix.csv", "summary.json"}, f"guide wrote {set(before)}")
    p = run([a if a != drf else tgt for a in G] + ["--out", g1, "--resume"], ok=False)
    check(p.returncode != 0 and snapshot(g1) == before, f"case 1: --draft not a draft leaves the folder: {p.stderr}")
    p = run([a if a != "2" else "600" for a in G] + ["--out", g1, "--overwrite"], ok=False)
    check(p.returncode != 0 and "max_position_embeddings" in p.stderr and snapshot(g1) == before,
          f"case 1: a prompt that does not fit leaves the folder (even with --overwrite): {p.stderr}")
    check(not os.path.exists(g1 + ".old-1"), "case 1: nothing moved aside by a failed run")
    p = run([a if a != "0.5" else "0.4" for a in G] + ["--out", g1], ok=False)
    check(refused(p, "params.alphas", "--overwrite") and snapshot(g1) == before,
          f"case 1: other parameters without --resume refused: {p.stderr}")
    p = run(G + ["--out", g1], ok=False)
    check(refused(p, "already holds results", "--resume") and snapshot(g1) == before,
          f"case 1: the same run without --resume refused: {p.stderr}")
    p = run(G + ["--out", g1, "--resume", "--overwrite"], ok=False)
    check(p.returncode == 2 and "exclude" in p.stderr, f"--resume with --overwrite: {p.stderr}")
    stray = os.path.join(tmp, "stray")
    os.makedirs(stray)
    open(os.path.join(stray, "notes.txt"), "w").write("mine")
    p = run(G + ["--out", stray, "--resume"], ok=False)
    check(refused(p, "no readable config.json") and open(os.path.join(stray, "notes.txt")).read() == "mine",
          f"a folder that is not a results folder is refused: {p.stderr}")

    # ---- case 4 and --overwrite: the old run moves aside whole, the folder holds one run ----
    p = run([a if a != "0.5" else "0.4" for a in G] + ["--out", g1, "--overwrite"])
    check(snapshot(g1 + ".old-1") == before, "--overwrite moved the earlier run, whole, to g1.old-1")
    check(f"{g1}.old-1" in p.stderr, f"--overwrite says where: {p.stderr}")
    J = journal(g1)
    cfg = json.load(open(os.path.join(g1, "config.json")))
    summ = json.load(open(os.path.join(g1, "summary.json")))
    check(cfg["params"]["alphas"] == [0.4] and all(r["alpha"] == 0.4 for r in J) and len(J) == 3
          and [c["alpha"] for c in summ["cells"]] == [0.4], "case 4: the folder is one consistent run")

    # ---- case 3: one writer at a time ----
    with open(os.path.join(g1, ".vkdraft.lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        snap = snapshot(g1)
        p = run([a if a != "0.5" else "0.4" for a in G] + ["--out", g1, "--resume"], ok=False)
        check(refused(p, "another vkdraft run") and snapshot(g1) == snap, f"case 3: a second writer: {p.stderr}")
    run([a if a != "0.5" else "0.4" for a in G] + ["--out", g1, "--resume"])
    check(len(journal(g1)) == 3, "case 3: the lock is released with its process")
    # a journal two writers did fill before the lock: refused, never counted twice
    jp = os.path.join(g1, "examples.jsonl")
    lines = open(jp).read().splitlines(True)
    open(jp, "a").write(lines[0])
    p = run([a if a != "0.5" else "0.4" for a in G] + ["--out", g1, "--resume"], ok=False)
    check(refused(p, "examples.jsonl:4", "repeats line 1"), f"case 3: a repeated record: {p.stderr}")
    open(jp, "w").write("".join(lines))

    # ---- case 2: exact keys (parsed values, full ids) ----
    long_ds = os.path.join(tmp, "long_ids.jsonl")
    with open(long_ds, "w") as f:
        f.write(json.dumps({"id": "A" * 600 + "1", "question": "What is 2 + 1?", "answer": "#### 3"}) + "\n")
        f.write(json.dumps({"id": "A" * 600 + "2", "question": "Name a colour of the sky at noon.",
                            "answer": "#### 3"}) + "\n")
    g2 = os.path.join(tmp, "g2")
    run(["guide", "--target", tgt, "--draft", drf, "--dataset", long_ds, "--max-new-tokens", "4", "--alphas",
         "0.3,0.3000001", "--temperatures", "0", "--conditions", "guided", "--quiet", "--out", g2])
    J = journal(g2)
    check(len(J) == 4 and len({r["id"] for r in J}) == 4, f"case 2: 2 cells x 2 examples, distinct ids: {len(J)}")
    check(sorted({r["alpha"] for r in J}) == [0.3, 0.3000001], "case 2: both alphas ran")
    rows = open(os.path.join(g2, "matrix.csv")).read().splitlines()[1:]
    check(len(rows) == 2 and rows[0].split(",")[3] == "0.3" and rows[1].split(",")[3] == "0.3000001",
          f"case 2: matrix rows {rows}")
    byid = {r["id"]: r for r in J}
    X = [json.loads(x) for x in open(os.path.join(g2, "responses.jsonl"))]
    check(len(X) == 4 and all(x["response"] == byid[x["id"]]["response"] and x["id"].endswith("/" + x["example"])
                              and byid[x["id"]]["example"] == x["example"] for x in X),
          "case 2: responses.jsonl pairs each example with its own response")

    # ---- case 5: every record read back is checked (guide, diagnose, probe, power) ----
    g5 = os.path.join(tmp, "g5")
    shutil.copytree(g1, g5)
    os.remove(os.path.join(g5, ".vkdraft.lock"))
    G4 = [a if a != "0.5" else "0.4" for a in G]
    corrupt(g5, lambda r: {k: v for k, v in r.items() if k != "ids"})
    p = run(G4 + ["--out", g5, "--resume"], ok=False)
    check(refused(p, "examples.jsonl:1: field 'ids'"), f"case 5: guide record without ids: {p.returncode} {p.stderr}")
    d1 = os.path.join(tmp, "d1")
    D = ["diagnose", "--target", tgt, "--draft", drf, "--dataset", ds, "--limit", "1", "--quiet", "--out", d1]
    run(D)

    def neg_block(r):
        r["tokens"][0][1] = -5
        return r
    corrupt(d1, neg_block)
    p = run(D + ["--resume"], ok=False)
    check(refused(p, "examples.jsonl:1: field 'tokens'"), f"case 5: diagnose negative block: {p.returncode} {p.stderr}")
    p1 = os.path.join(tmp, "p1")
    P = ["probe", "--target", tgt, "--draft", drf, "--dataset", ds, "--limit", "1", "--max-new-tokens", "6",
         "--samples", "2", "--quiet", "--out", p1]
    run(P)

    def neg_pos(r):
        r["positions"][0][0] = -1
        return r
    corrupt(p1, neg_pos)
    p = run(P + ["--resume"], ok=False)
    check(refused(p, "examples.jsonl:1: field 'positions'"), f"case 5: probe negative block: {p.returncode} {p.stderr}")
    w1 = os.path.join(tmp, "w1")
    W = ["power", "--target", tgt, "--dataset", ds, "--limit", "1", "--max-new-tokens", "4", "--block-tokens", "2",
         "--mcmc-steps", "1", "--baselines", "greedy", "--quiet", "--out", w1]
    run(W)

    def neg_tokens(r):
        r["greedy"]["tokens"] = -3
        return r
    corrupt(w1, neg_tokens)
    p = run(W + ["--resume"], ok=False)
    check(refused(p, "examples.jsonl:1: field 'greedy'"), f"case 5: power negative count: {p.returncode} {p.stderr}")

    # ---- case 6: --out "" ----
    p = run(G + ["--out", ""], ok=False)
    check(p.returncode == 2 and "--out needs a folder name" in p.stderr, f"case 6: --out '': {p.stderr}")

    # ---- case 7: forward --layers ----
    fo = os.path.join(tmp, "f.safetensors")
    p = run(["forward", "--model", tgt, "--ids", "1,2", "--out", fo, "--layers", "0,0"], ok=False)
    check(p.returncode == 2 and "appears twice" in p.stderr and not os.path.exists(fo), f"case 7: {p.stderr}")
    p = run(["forward", "--model", tgt, "--ids", "1,2", "--out", fo, "--layers", "-1"], ok=False)
    check(p.returncode == 2 and "layer indices" in p.stderr and "token" not in p.stderr, f"--layers -1: {p.stderr}")

    # ---- case 8: output paths before any work ----
    for args in (["spec", "--target", tgt, "--draft", drf, "--ids", "1,2,3", "--max-new-tokens", "2"],
                 ["forward", "--model", tgt, "--ids", "1,2"]):
        p = run(args + ["--out", os.path.join(tmp, "missing", "x.out")], ok=False)
        check(refused(p, "does not exist", "nothing was run") and not p.stdout, f"case 8: {args[0]}: {p.stderr}")

    # ---- case 9: stdout write errors ----
    d9 = os.path.join(tmp, "d9")
    for args in (["devices", "--json"], ["inspect", tgt, "--json"], ["tokenize", "--model", tgt, "hello"],
                 ["generate", "--model", tgt, "--ids", "1,2", "--max-new-tokens", "2"],
                 ["spec", "--target", tgt, "--draft", drf, "--ids", "1,2,3", "--max-new-tokens", "2", "--json"],
                 D[:-1] + [d9]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([VK] + args, stdout=full, stderr=subprocess.PIPE, text=True, timeout=600)
        check(p.returncode == 1 and "writing to stdout failed" in p.stderr, f"case 9: {args[0]} > /dev/full: "
              f"{p.returncode} {p.stderr!r:.300}")

    # ---- case 11: 64-bit seeds exact ----
    s1 = os.path.join(tmp, "s1")
    run(G + ["--out", s1, "--limit", "1", "--seed", "9007199254740993"])
    check(re.search(r'"seed":\s*9007199254740993\b', open(os.path.join(s1, "config.json")).read()),
          "case 11: seed written exactly")
    p = run(G + ["--out", s1, "--limit", "1", "--seed", "9007199254740992", "--resume"], ok=False)
    check(refused(p, "common.seed", "9007199254740992"), f"case 11: another seed resumes: {p.stderr}")
    run(G + ["--out", s1, "--limit", "1", "--seed", "9007199254740993", "--resume"])

    # ---- smaller ones ----
    p = run(["generate", "--model", tgt, "--ids", "1,2", "--max-new-tokens", "2", "--json"])
    check(isinstance(json.loads(p.stdout)["text"], str), f"generate --ids --json has text: {p.stdout}")
    notok = os.path.join(tmp, "notok")
    os.makedirs(notok)
    for f in os.listdir(tgt):
        if not f.startswith("tokenizer"):
            shutil.copy(os.path.join(tgt, f), notok)
    p = run(["generate", "--model", notok, "--ids", "1,2", "--max-new-tokens", "2"])
    ids = p.stdout.strip().split(",")
    check(len(ids) == 2 and all(x.isdigit() for x in ids), f"generate --ids without a tokenizer prints ids: {p.stdout!r}")
    for args, want in ((["generate", "--model", tgt, "--prompt", "hi", "--system", "s"], "--system"),
                       (["generate", "--model", tgt, "--prompt", "hi", "--think"], "--think"),
                       (["spec", "--target", tgt, "--draft", drf, "--ids", "1,2", "--limit", "3"], "--dataset only"),
                       (["spec", "--target", tgt, "--draft", drf, "--ids", "1,2", "--turn", "1"], "--dataset only"),
                       (["power", "--target", tgt, "--out", os.path.join(tmp, "x"), "--baselines", "none,greedy"],
                        "stands alone"),
                       (["probe", "--target", tgt, "--draft", drf, "--out", os.path.join(tmp, "x"), "--draft-temps",
                         "1,1.0"], "appears twice")):
        p = run(args, ok=False)
        check(p.returncode == 2 and want in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              f"{args[0]} {args[-2:]}: {p.stderr}")
    nul = os.path.join(tmp, "nul.jsonl")
    open(nul, "w").write('{"question": "fine", "answer": "1"}\n{"question": "cut\\u0000here", "answer": "1"}\n')
    p = run([a if a != ds else nul for a in G] + ["--out", os.path.join(tmp, "gnul")], ok=False)
    check(refused(p, "nul.jsonl:2", "NUL") and not os.path.exists(os.path.join(tmp, "gnul")), f"NUL: {p.stderr}")
    p = subprocess.run([VK, "devices"], capture_output=True, text=True, env=dict(os.environ,
                       VKDRAFT_DEVICE="99999999999999999999"))
    check(p.returncode != 0 and "expected a device index" in p.stderr, f"VKDRAFT_DEVICE overflow: {p.stderr}")
    pn = os.path.join(tmp, "pn")
    p = run(P[:P.index("--max-new-tokens") + 1] + ["500", "--samples", "2", "--quiet", "--out", pn], ok=False)
    check(refused(p, "no example fits") and not os.path.exists(pn), f"probe with nothing that fits: {p.stderr}")

    if vkd_cli.failures:
        raise SystemExit(f"{vkd_cli.failures} check(s) failed")
    shutil.rmtree(tmp)
    print("test_results_cli: all checks passed")


if __name__ == "__main__":
    main()
