#!/usr/bin/python3
"""test_power: power sampling (methods/power.c) against tools/reference/power_ref.py.

A tiny Qwen3 target (vocabulary 6 with stop ids 4 and 3, 2 layers, hidden 32; final norm
scaled down so that p^alpha is spread over many answers) and a random DFlash draft (block 3)
are generated into a temporary folder. Then:

1. Replay: test_power --run logs every move (position, proposal, log r, u, decision) for
   several chains, proposals, MH variants, top-k/top-p; power_ref.power_samp runs the
   reference algorithm independently in float64 on the same Philox numbers (its own
   positions, token draws, log p / log q, bookkeeping). Positions, proposals and decisions
   must agree exactly, log r to 1e-4 (f32 device logits vs float64).
2. alpha = 1, naive proposal without filtering: every step accepted.
3. Exact enumeration: every answer of at most 3 tokens (ending at a stop id or full) is
   enumerated with its exact p^alpha; the final answers of many independent chains (seeds
   1..K, exact MH, one block, enough steps to mix) are compared with a chi-square test
   (bins with expected count < 5 merged; critical value at p = 1e-3, Wilson-Hilferty) and
   their total variation distance is reported. The same counts must be rejected against the
   distribution the proposal alone produces (no MCMC), which shows the test can tell.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

SRC = os.environ["VKDRAFT_SOURCE_ROOT"]
EXE = sys.argv[1]
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(SRC, "tools", "reference"))
import power_ref  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402
import torch  # noqa: E402

failures = 0
STOPS = (4, 3)
PROMPT = [0, 1, 2]


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def make_models(tmp):
    tgt, drf = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "32",
                    "--layers", "2", "--heads", "2", "--kv-heads", "1", "--head-dim", "16", "--ffn", "64",
                    "--vocab", "6", "--tie", "--dtype", "f32", "--max-pos", "128", "--seed", "3", "--out", tgt],
                   check=True, capture_output=True)
    # soften the logits (they scale with the final norm's weight): p^alpha spread over many answers
    path = os.path.join(tgt, "model.safetensors")
    w = st.read(path)
    w["model.norm.weight"] = w["model.norm.weight"] * 0.3
    st.write(path, w)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", tgt, "--out", drf,
                    "--layers", "1", "--block-size", "3", "--target-layer-ids", "0,1", "--dtype", "f32",
                    "--seed", "5", "--train-steps", "0"], check=True, capture_output=True)
    return tgt, drf


def run_c(tgt, drf, tmp, **kw):
    args = [EXE, "--run", "--target", tgt, "--prompt", ",".join(map(str, PROMPT))]
    if kw.get("proposal") == "dflash":
        args += ["--draft", drf]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    log, fin = os.path.join(tmp, "log.jsonl"), os.path.join(tmp, "finals.jsonl")
    args += ["--log", log, "--finals", fin]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"test_power --run failed: {p.stderr}")
    moves = [json.loads(x) for x in open(log)]
    finals = [json.loads(x) for x in open(fin)]
    return moves, finals


def replay(m, tgt, drf, tmp, name, chains, **kw):
    moves, finals = run_c(tgt, drf, tmp, chains=chains, **kw)
    worst, n, acc, totals = 0.0, 0, 0, [0, 0]
    for k in range(chains):
        cm = [x for x in moves if x["chain"] == k]
        ans, stopped, pm = power_ref.power_samp(
            m, PROMPT, kw["alpha"], kw["max_new"], kw["block"], kw["steps"], seed=1 + k, mh=kw.get("mh", "reference"),
            proposal=kw.get("proposal", "naive"), top_k=kw.get("top_k", 0), top_p=kw.get("top_p", 1.0), stops=STOPS,
            draft_temp=kw.get("draft_temp") or None)
        check(len(cm) == len(pm), f"{name} chain {k}: {len(cm)} moves, reference {len(pm)}")
        for a, b in zip(cm, pm):
            where = f"{name} chain {k} block {a['block']} step {a['step']}"
            same = (a["idx"], a["t"], a["s"], a["prop"], a["accepted"]) == (b["idx"], b["t"], b["s"], b["prop"], b["accepted"])
            check(same, f"{where}: (idx t s prop accepted) {(a['idx'], a['t'], a['s'], a['prop'], a['accepted'])} vs "
                  f"reference {(b['idx'], b['t'], b['s'], b['prop'], b['accepted'])}")
            if not same:
                break
            if a["step"] >= 0:
                err = abs(a["log_r"] - b["log_r"])
                if math.isfinite(b["log_r"]):
                    worst = max(worst, err / (1 + 1e-2 * abs(b["log_r"])))
                    check(err <= 1e-4 * (1 + 1e-2 * abs(b["log_r"])), f"{where}: log r {a['log_r']} vs {b['log_r']}")
                else:
                    check(a["log_r"] == b["log_r"], f"{where}: log r {a['log_r']} vs {b['log_r']}")
                check(a["u"] == b["u"], f"{where}: u {a['u']} vs {b['u']}")
                n += 1
                acc += a["accepted"]
        check(finals[k]["ids"] == ans and finals[k]["stopped"] == stopped,
              f"{name} chain {k}: answer {finals[k]['ids']} vs reference {ans}")
        want = move_stats(pm)
        got = {x: finals[k][x] for x in want}
        check(got == want, f"{name} chain {k}: move statistics {got} vs reference {want}")
        totals = [t + g for t, g in zip(totals, (want["changes"], want["accepts"]))]
    print(f"replay {name}: {chains} chains, {n} MCMC steps ({acc} accepted, {totals[0]} of them changed the answer), "
          f"worst log r error {worst:.2e}")
    return moves


def move_stats(log):
    """From the reference's move log alone: accepted steps that changed the answer, the
    positions they changed (replaced, added or removed tokens) and, per block, the distinct
    answers its MCMC steps proposed (summed)."""
    cur, out, seen = [], {"accepts": 0, "changes": 0, "tokens_changed": 0, "distinct_proposals": 0}, {}
    for mv in log:
        prop = list(mv["prop"])
        if mv["step"] >= 0:
            seen.setdefault(mv["block"], set()).add(tuple(prop))
            if mv["accepted"]:
                d = sum(1 for q in range(max(len(prop), len(cur)))
                        if q >= len(prop) or q >= len(cur) or prop[q] != cur[q])
                out["accepts"] += 1
                out["changes"] += d > 0
                out["tokens_changed"] += d
        if mv["accepted"]:
            cur = prop
    out["distinct_proposals"] = sum(len(v) for v in seen.values())
    return out


def wilson_hilferty(df, z=3.090):  # chi-square critical value, upper tail p = 1e-3
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts, dist, K):
    """Pearson statistic over bins with expected >= 5 (the rest merged into one bin)."""
    big = [a for a, p in dist.items() if p * K >= 5]
    stat, rest_o, rest_e = 0.0, K, 0.0
    for a in big:
        o, e = counts.get(a, 0), dist[a] * K
        stat += (o - e) ** 2 / e
        rest_o -= o
    rest_e = K - sum(dist[a] * K for a in big)
    df = len(big) - 1
    if rest_e > 0:
        stat += (rest_o - rest_e) ** 2 / max(rest_e, 1e-9)
        df += 1
    return stat, df


def proposal_dist(m, alpha, max_new):
    """Distribution of the answer drawn by the naive proposal alone (no MCMC steps)."""
    out = {}

    def rec(seq, lq):
        n = len(seq) - len(PROMPT)
        q = power_ref.warp_logq(m.target_row(seq + [0], len(seq)), 1 / alpha, 0, 1.0)
        for tok in range(6):
            v = lq + float(q[tok])
            if tok in STOPS or n + 1 == max_new:
                out[tuple(seq[len(PROMPT):] + [tok])] = math.exp(v)
            else:
                rec(seq + [tok], v)
    rec(list(PROMPT), 0.0)
    return out


def enumeration(m, tgt, drf, tmp, name, K, long_steps, **kw):
    """Final answers of K chains vs the exact distribution of the chain's answer after kw['steps']
    (chi-square), and that distribution's limit (long_steps) vs p^alpha."""
    alpha, N = kw["alpha"], kw["max_new"]
    exact = power_ref.power_dist(power_ref.enumerate_answers(m, PROMPT, N, STOPS, 6), alpha)
    ref_kw = dict(mh=kw.get("mh", "exact"), proposal=kw.get("proposal", "naive"), top_k=kw.get("top_k", 0),
                  top_p=kw.get("top_p", 1.0), stops=STOPS, draft_temp=kw.get("draft_temp"))
    chain = power_ref.chain_distribution(m, PROMPT, alpha, N, kw["block"], kw["steps"], **ref_kw)
    limit = power_ref.chain_distribution(m, PROMPT, alpha, N, kw["block"], long_steps, **ref_kw)
    _, finals = run_c(tgt, drf, tmp, chains=K, **kw)
    counts = {}
    for f in finals:
        counts[tuple(f["ids"])] = counts.get(tuple(f["ids"]), 0) + 1
    check(abs(sum(chain.values()) - 1) < 1e-9, f"{name}: chain distribution sums to {sum(chain.values())}")
    check(all(a in chain and chain[a] > 0 for a in counts), f"{name}: an answer the chain cannot produce")
    tv = 0.5 * sum(abs(counts.get(a, 0) / K - p) for a, p in chain.items())
    stat, df = chi_square(counts, chain, K)
    crit = wilson_hilferty(df)
    stat_p, df_p = chi_square(counts, exact, K)
    tv_chain_p = 0.5 * sum(abs(chain.get(a, 0) - p) for a, p in exact.items())
    tv_limit = 0.5 * sum(abs(limit.get(a, 0) - p) for a, p in exact.items())
    top = sorted(exact.items(), key=lambda kv: -kv[1])[:4]
    print(f"enumeration {name}: {len(exact)} answers, {K} chains of {kw['steps']} steps/block; "
          "p^alpha / chain / empirical: "
          + ", ".join(f"{list(a)} {p:.3f}/{chain.get(a, 0):.3f}/{counts.get(a, 0) / K:.3f}" for a, p in top)
          + f"; empirical vs chain: TV {tv:.4f}, chi2 {stat:.1f} (df {df}, critical {crit:.1f} at p=1e-3); "
          f"TV(chain, p^alpha) {tv_chain_p:.4f} after {kw['steps']} steps, {tv_limit:.2e} after {long_steps}; "
          f"empirical vs p^alpha chi2 {stat_p:.1f} (df {df_p})")
    check(stat < crit, f"{name}: chi-square {stat:.1f} >= {crit:.1f}: the chains do not follow the algorithm")
    if kw.get("mh", "exact") == "exact":
        check(tv_limit < 2e-3, f"{name}: TV(chain after {long_steps} steps, p^alpha) = {tv_limit:.2e}")


def main():
    tmp = tempfile.mkdtemp(prefix="vkd-power-")
    tgt, drf = make_models(tmp)
    T = ref.Target.load(tgt)
    D = ref.Draft.load(drf, T)
    m = power_ref.Models(T, D, 3)

    replays(m, tgt, drf, tmp)
    enum_part(m, tgt, drf, tmp)
    print(f"test_power.py: {failures} failures")
    return 1 if failures else 0


def replays(m, tgt, drf, tmp):
    # 1. replay on the same random numbers
    replay(m, tgt, drf, tmp, "naive reference top-k 3 top-p 0.9", 6, alpha=4, max_new=6, block=3, steps=4,
           top_k=3, top_p=0.9)
    replay(m, tgt, drf, tmp, "naive exact", 4, alpha=3, max_new=6, block=3, steps=4, mh="exact")
    replay(m, tgt, drf, tmp, "dflash reference T=0.7", 6, alpha=4, max_new=7, block=7, steps=5,
           proposal="dflash", draft_temp=0.7)
    replay(m, tgt, drf, tmp, "dflash exact top-k 4", 4, alpha=2, max_new=6, block=3, steps=4, mh="exact",
           proposal="dflash", draft_temp=1.0, top_k=4)
    # 2. alpha 1: the naive proposal is the target itself
    moves = replay(m, tgt, drf, tmp, "alpha 1", 3, alpha=1, max_new=6, block=2, steps=4)
    steps = [x for x in moves if x["step"] >= 0]
    check(steps and all(x["accepted"] and abs(x["log_r"]) < 1e-12 for x in steps), "alpha 1: a step was rejected")



def enum_part(m, tgt, drf, tmp):
    # 3. exact enumeration: the chain's answer distribution, and its limit p^alpha
    K = int(os.environ.get("VKD_POWER_CHAINS", "300"))
    enumeration(m, tgt, drf, tmp, "naive_temp exact", K, 300, alpha=2, max_new=3, block=3, steps=6, mh="exact")
    enumeration(m, tgt, drf, tmp, "dflash exact T=4", K, 3000, alpha=2, max_new=3, block=3, steps=6, mh="exact",
                proposal="dflash", draft_temp=4.0)
    enumeration(m, tgt, drf, tmp, "naive reference 2 blocks top-k 4", K, 10, alpha=3, max_new=4, block=2, steps=3,
                mh="reference", top_k=4)


if __name__ == "__main__":
    sys.exit(main())
