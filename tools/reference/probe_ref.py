"""probe_ref.py: independent float64 reference for `vkdraft probe` (methods/probe.c, seed 002).

Written from the protocol (vkd_probe.h, design.md section 6), not from the C code:
  walk        teacher forcing over seq with prompt P: target logits at every position (one
              forward), the DFlash draft in mask mode block by block with the KV-cached
              context (block 0 sees the prompt's features, block k those of block k-1)
  metrics     p^alpha = softmax(alpha l_t), q_T = softmax(l_d / T): KL(p^alpha || q_T), TVD,
              and the baseline TVD(softmax(l_t), softmax(l_d))
  log_w       alpha * sum_i log p_i(x_i) - sum_i log q_T,i(x_i), p = softmax(l_t)
  mh          independence Metropolis-Hastings over K weights with given uniforms
  draw        inverse CDF of q_T in index order for a uniform u

compare(dump, target_dir, draft_dir) checks a JSON dump of tests/experiments/test_probe.c
(`test_probe --dump FILE`) against all of the above and returns a list of failures.

Usage: probe_ref.py --target DIR --draft DIR --dump FILE
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402

# f32 (vkdraft) vs float64 (here) on the same stored weights: the fixture pair's logits agree
# to ~1e-6 absolute (bounded by 2e-4 * (1 + max |l|) in tests/models). A logit error e moves
# log-probabilities by at most 2e (2 alpha e under p^alpha, 2e/T under q_T) and a TVD or KL
# by about as much (KL also by KL-sized relative rounding of its f32 accumulation). The
# bounds sit ~30x above the errors seen on the fixtures (KL 1.5e-5, TVD 1.8e-6, log w 3.9e-5
# over 3 positions) and far below any difference a wrong formula makes (>= 1e-2).
TOL_DIST = 5e-4
TOL_LOGW_PER_POS = 2e-3
TOL_CDF = 1e-4          # a uniform closer than this to a CDF boundary may land either side
TOL_MH = 1e-3           # an MH decision this close to its threshold may go either way


def walk(T, D, seq, P, B=None):
    """[(k, s, c, lt (c, V), ld (c, V))] over the blocks with c >= 1 predicted positions."""
    B = B or D.block_size
    logits, hidden = T.forward(seq)
    F = D.features(hidden)
    n, mask = len(seq), D.mask_token_id
    cache = D.new_cache()
    out = []
    for k, s in enumerate(range(P, n, B)):
        r = min(B, n - s)
        if r < 2:
            break
        ctx = F[:P] if k == 0 else F[s - B:s]
        dl, _ = D.forward(ctx, [seq[s]] + [mask] * (B - 1), s, cache)
        out.append((k, s, r - 1, logits[s:s + r - 1], dl[:r - 1]))
    return out


def metrics(lt, ld, alpha, T):
    """KL(p^alpha || q_T) and TVD per row (float64)."""
    lp = torch.log_softmax(alpha * lt, -1)
    lq = torch.log_softmax(ld / T, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    tvd = 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)
    return kl, tvd


def log_w(lt, ld, tokens, alpha, T):
    """tokens (K, c): log w per sample."""
    lp = torch.log_softmax(lt, -1)
    lq = torch.log_softmax(ld / T, -1)
    idx = torch.as_tensor(tokens, dtype=torch.long)
    rows = torch.arange(lt.shape[0])[None, :].expand_as(idx)
    return (alpha * lp[rows, idx] - lq[rows, idx]).sum(-1)


def mh(logw, u):
    """(accepts, smallest |u_j - acceptance probability| over the chain's decisions)."""
    state, acc, margin = 0, 0, math.inf
    for j in range(1, len(logw)):
        a = min(1.0, math.exp(min(0.0, logw[j] - logw[state])))
        if a < 1.0:
            margin = min(margin, abs(u[j] - a))
        if u[j] < a:
            state, acc = j, acc + 1
    return acc, margin


CHAIN_FIELDS = ("accepts", "changes", "distinct", "windows", "moved1", "moved3", "changed1")


def chain_stats(logw, u, rows, steps):
    """The statistics of vkd_probe_chain, written from the seed's definitions: rows[j] is
    sample j's token tuple. Returns (dict, smallest decision margin as in mh())."""
    def run(start, stop):
        state, moves, changes, margin = start, 0, 0, math.inf
        for j in range(start + 1, stop):
            a = min(1.0, math.exp(min(0.0, logw[j] - logw[state])))
            if a < 1.0:
                margin = min(margin, abs(u[j] - a))
            if u[j] < a:
                moves += 1
                changes += rows[j] != rows[state]
                state = j
        return moves, changes, margin
    K = len(logw)
    acc, chg, margin = run(0, K)
    out = {"accepts": acc, "changes": chg, "distinct": len(set(rows)), "windows": K // (steps + 1),
           "moved1": 0, "moved3": 0, "changed1": 0}
    for w in range(out["windows"]):
        m, c, mg = run(w * (steps + 1), w * (steps + 1) + steps + 1)
        margin = min(margin, mg)
        out["moved1"] += m >= 1
        out["moved3"] += m >= 3
        out["changed1"] += c >= 1
    return out, margin


def draw_interval(ld_row, T, x):
    """[cdf before x, cdf through x] of q_T in index order."""
    q = torch.softmax(ld_row / T, -1)
    c = torch.cumsum(q, 0)
    return (float(c[x - 1]) if x > 0 else 0.0), float(c[x])


def compare(dump, target_dir, draft_dir):
    T = ref.Target.load(target_dir)
    D = ref.Draft.load(draft_dir, T)
    alpha, temps, K = dump["alpha"], dump["temps"], dump["samples"]
    blocks = walk(T, D, dump["seq"], dump["P"], dump["block"])
    fails, worst = [], {"kl": 0.0, "tvd": 0.0, "base": 0.0, "product": 0.0, "logw": 0.0}
    pos = dump["positions"]
    want_pos = sum(c for _, _, c, _, _ in blocks)
    if len(pos) != want_pos or len(dump["blocks"]) != len(blocks):
        return [f"layout: {len(pos)} positions / {len(dump['blocks'])} blocks, reference {want_pos} / {len(blocks)}"], worst
    traces = {(t["block"], t["ti"]): t for t in dump["traces"]}
    at = 0
    stats = {"mh_checked": 0, "mh_ambiguous": 0, "draws": 0, "draws_near_boundary": 0, "chains_checked": 0,
             "chains_changed_lt_accepts": 0}
    for (k, s, c, lt, ld), bj in zip(blocks, dump["blocks"]):
        if bj["block"] != k or bj["start"] != s or bj["npos"] != c:
            fails.append(f"block {k}: layout {bj}")
            continue
        _, btvd = metrics(lt, ld, 1.0, 1.0)
        for ti, Tt in enumerate(temps):
            kl, tvd = metrics(lt, ld, alpha, Tt)
            for i in range(c):
                row = pos[at + i]
                if row[0] != k or row[1] != i + 1 or row[2] != s + i + 1 or row[3] != dump["seq"][s + i + 1]:
                    fails.append(f"position row {at + i}: layout {row[:4]}")
                for name, got, want in (("kl", row[4 + ti], float(kl[i])), ("tvd", row[7 + ti], float(tvd[i])),
                                        ("base", row[10], float(btvd[i]))):
                    e = abs(got - want)
                    worst[name] = max(worst[name], e)
                    if not e <= TOL_DIST * max(1.0, abs(want)):
                        fails.append(f"block {k} row {i} T={Tt}: {name} {got} vs {want}")
            prod = float(torch.prod(1 - tvd))
            e = abs(bj["product"][ti] - prod)
            worst["product"] = max(worst["product"], e)
            if not e <= TOL_DIST * c:
                fails.append(f"block {k} T={Tt}: product {bj['product'][ti]} vs {prod}")
            tr = traces.get((k, ti))
            if tr is None:
                fails.append(f"block {k} T={Tt}: no trace")
                continue
            toks = torch.tensor(tr["tokens"]).reshape(K, c)
            us = torch.tensor(tr["u_sample"], dtype=torch.float64).reshape(K, c)
            for j in range(K):
                for i in range(c):
                    lo, hi = draw_interval(ld[i], Tt, int(toks[j, i]))
                    u = float(us[j, i])
                    stats["draws"] += 1
                    if not (lo - TOL_CDF <= u < hi + TOL_CDF):
                        fails.append(f"block {k} T={Tt} sample {j} row {i}: token {int(toks[j, i])} for u={u} "
                                     f"outside [{lo}, {hi})")
                    elif not (lo + TOL_CDF <= u < hi - TOL_CDF):
                        stats["draws_near_boundary"] += 1
            lw = log_w(lt, ld, toks, alpha, Tt)
            got_lw = torch.tensor(tr["logw"], dtype=torch.float64)
            e = float((got_lw - lw).abs().max())
            worst["logw"] = max(worst["logw"], e)
            if not e <= TOL_LOGW_PER_POS * alpha * c:
                fails.append(f"block {k} T={Tt}: log w error {e}")
            m, sd = float(lw.mean()), float(lw.std(unbiased=False))
            if abs(bj["logw_mean"][ti] - m) > TOL_LOGW_PER_POS * alpha * c or \
               abs(bj["logw_std"][ti] - sd) > 2 * TOL_LOGW_PER_POS * alpha * c:
                fails.append(f"block {k} T={Tt}: log w mean/std {bj['logw_mean'][ti]}/{bj['logw_std'][ti]} vs {m}/{sd}")
            acc, margin = mh(lw.tolist(), tr["u_mh"])
            if margin < TOL_MH:
                stats["mh_ambiguous"] += 1
            else:
                stats["mh_checked"] += 1
                if acc != tr["accepts"]:
                    fails.append(f"block {k} T={Tt}: MH accepts {tr['accepts']} vs reference {acc}")
                if abs(bj["sim_accept"][ti] - acc / (K - 1)) > 1e-12:
                    fails.append(f"block {k} T={Tt}: sim accept {bj['sim_accept'][ti]} vs {acc / (K - 1)}")
            if "chain" in tr:
                rows = [tuple(r) for r in toks.tolist()]
                want, margin = chain_stats(lw.tolist(), tr["u_mh"], rows, tr["steps"])
                if margin >= TOL_MH:
                    stats["chains_checked"] += 1
                    got = dict(zip(CHAIN_FIELDS, tr["chain"]))
                    if got != want:
                        fails.append(f"block {k} T={Tt}: chain {got} vs reference {want}")
                    stats["chains_changed_lt_accepts"] += want["changes"] < want["accepts"]
        at += c
    worst.update(stats)
    return fails, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--dump", required=True)
    a = ap.parse_args()
    fails, worst = compare(json.load(open(a.dump)), a.target, a.draft)
    print(json.dumps(worst))
    for f in fails[:20]:
        print("FAIL:", f, file=sys.stderr)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
