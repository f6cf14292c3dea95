#!/usr/bin/python3
"""power_ref.py: an independent float64 implementation of power sampling (Karan & Du 2025,
aakaran/reasoning-with-sampling, llm_experiments/power_samp_utils.py: mcmc_power_samp) on the
same Philox4x32-10 random numbers as methods/power.c, plus the exact enumeration of p^alpha.

Written from the reference's code, not from vkdraft: the sequence is a Python list, log
probabilities are recomputed from scratch (no KV cache) with ref.Target / ref.Draft, and the
two lists the reference keeps are mirrored: `lq` (log_probs_norm: log q after temperature,
top-k, top-p) and `lp` (log_probs_unnorm: alpha * log_softmax(raw logits)). log r is
    sum(lp_prop) + sum(lq_cur[idx-c:s-c]) - sum(lp_cur[idx-c:s-c]) - sum(lq_prop)
in the reference variant; the exact variant (vkd_power.h) regenerates to the block's end, sums
the whole old suffix and adds log(t-c) - log(s-c). The DFlash proposal's q(old) is recomputed
under the blocking anchored at idx-1. Random numbers (vkd_power.h): Philox keyed by the seed,
counter (stream, move << 32 | x): stream 1 tokens (x = position), 2 the position, 3 the
acceptance uniform.

Used by tests/power/test_power.py. As a command:
  power_ref.py --target DIR --prompt 0,1,2 --alpha 2 --max-new 3 --enumerate
prints p^alpha over every answer of at most --max-new tokens (ending at a stop id or full).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402

M32 = 0xFFFFFFFF


def philox4x32(seed, hi, lo):
    c = [lo & M32, (lo >> 32) & M32, hi & M32, (hi >> 32) & M32]
    k0, k1 = seed & M32, (seed >> 32) & M32
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & M32
            k1 = (k1 + 0xBB67AE85) & M32
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        hi0, lo0 = p0 >> 32, p0 & M32
        hi1, lo1 = p1 >> 32, p1 & M32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def uniform(seed, stream, pos):
    w = philox4x32(seed, stream, pos)
    return (w[0] >> 8) * (1.0 / 16777216.0) + (w[1] >> 8) * (1.0 / 281474976710656.0)


def warp_logq(logits, temp, top_k, top_p):
    """log q as transformers' sampling sees it: scores = logits / temp, TopK (keeps values >=
    the k-th), TopP (ascending sort, drop the tokens whose ascending cumulative probability is
    <= 1 - top_p, keep the largest), then log_softmax."""
    x = logits.to(torch.float64) / temp
    V = x.shape[-1]
    if top_k and 0 < top_k < V:
        kth = torch.topk(x, top_k).values[-1]
        x = torch.where(x < kth, torch.tensor(-math.inf, dtype=x.dtype), x)
    if top_p is not None and 0 < top_p < 1:
        sx, si = torch.sort(x, descending=False, stable=True)
        # ties: vkdraft keeps the lower index first when walking down, i.e. drops higher index first
        cum = torch.softmax(sx, -1).cumsum(-1)
        remove = cum <= 1 - top_p
        remove[-1] = False
        x = x.clone()
        x[si[remove]] = -math.inf
    return torch.log_softmax(x, -1)


def draw(logq, u):
    """Inverse CDF in index order over exp(logq)."""
    p = torch.exp(logq).tolist()
    total = sum(p)
    target, acc, last = u * total, 0.0, -1
    for i, pi in enumerate(p):
        if pi <= 0:
            continue
        acc += pi
        last = i
        if target < acc:
            return i
    return last


class Models:
    """Target (and draft) logits by prefix, cached."""

    def __init__(self, target, draft=None, block=None):
        self.t, self.d = target, draft
        self.B = block or (draft.block_size if draft else None)
        self._t, self._d = {}, {}

    def target_row(self, seq, pos):
        """Target logits predicting position pos from seq[:pos]."""
        key = tuple(seq[:pos])
        if key not in self._t:
            logits, _ = self.t.forward(list(key))
            for i in range(len(key)):
                self._t.setdefault(key[:i + 1], logits[i])
        return self._t[key]

    def draft_rows(self, seq, A):
        """Draft logits (B-1 rows) for positions A+1..A+B-1: block [seq[A], MASK...] at start A,
        context = the target's tapped hidden states of positions < A."""
        key = tuple(seq[:A + 1])
        if key not in self._d:
            _, hidden = self.t.forward(list(key[:A]))
            feats = self.d.features(hidden)
            block = [key[A]] + [self.d.mask_token_id] * (self.B - 1)
            logits, _ = self.d.forward(feats, block, A)
            self._d[key] = logits
        return self._d[key]


def power_samp(m, prompt, alpha, max_new, block_tokens, steps, seed, mh="reference", proposal="naive",
               top_k=0, top_p=1.0, stops=(), draft_temp=None):
    c = len(prompt)
    gen = list(prompt)
    lp, lq = [], []
    temp = (draft_temp or 1.0 / alpha) if proposal == "dflash" else 1.0 / alpha
    state = {"move": 0}
    log = []

    def unnorm(seq, pos):
        return alpha * float(torch.log_softmax(m.target_row(seq, pos).to(torch.float64), -1)[seq[pos]])

    def propose(context, seq_len):
        prop = list(context)
        norm, un = [], []
        mv = state["move"]
        if proposal == "naive":
            for pos in range(len(context), seq_len):
                q = warp_logq(m.target_row(prop, pos), temp, top_k, top_p)
                tok = draw(q, uniform(seed, 1, (mv << 32) | pos))
                prop.append(tok)
                norm.append(float(q[tok]))
                un.append(unnorm(prop, pos))
                if tok in stops:
                    break
            return prop, norm, un
        A, done = len(context) - 1, False
        while not done and len(prop) < seq_len:
            rows = m.draft_rows(prop, A)
            for i in range(m.B - 1):
                pos = A + 1 + i
                if pos >= seq_len:
                    break
                q = warp_logq(rows[i], temp, top_k, top_p)
                tok = draw(q, uniform(seed, 1, (mv << 32) | pos))
                prop.append(tok)
                norm.append(float(q[tok]))
                if tok in stops:
                    done = True
                    break
            A = len(prop) - 1
        un = [unnorm(prop, pos) for pos in range(len(context), len(prop))]
        return prop, norm, un

    def old_q(cur, idx, t):
        if proposal == "naive":
            return lq[idx - c:t - c]
        out, A = [], idx - 1
        while A + 1 < t:
            rows = m.draft_rows(cur, A)
            for i in range(m.B - 1):
                pos = A + 1 + i
                if pos >= t:
                    break
                out.append(float(warp_logq(rows[i], temp, top_k, top_p)[cur[pos]]))
            A += m.B - 1
        return out

    nblocks = -(-max_new // block_tokens)
    stopped = False
    for b in range(nblocks):
        end = min(len(gen) + block_tokens, c + max_new)
        t0 = len(gen)
        gen, n_, u_ = propose(gen, end)
        log.append(dict(block=b, step=-1, idx=t0, t=t0, s=len(gen), prop=gen[c:], accepted=True))
        lq.extend(n_)
        lp.extend(u_)
        state["move"] += 1
        for k in range(steps):
            mv = state["move"]
            t = len(gen)
            idx = c + int(math.floor(uniform(seed, 2, mv << 32) * (t - c)))
            idx = min(idx, t - 1)
            prop, plq, plp = propose(gen[:idx], end if mh == "exact" else t)
            s = len(prop)
            oq = old_q(gen, idx, t)
            if mh == "exact":
                log_r = (sum(plp) + sum(oq) - sum(lp[idx - c:t - c]) - sum(plq)
                         + (math.log(t - c) - math.log(s - c)))
            else:
                log_r = sum(plp) + sum(oq[:s - idx]) - sum(lp[idx - c:s - c]) - sum(plq)
            u = uniform(seed, 3, mv << 32)
            acc = u < math.exp(log_r) if log_r < 700 else True
            log.append(dict(block=b, step=k, idx=idx, t=t, s=s, prop=prop[c:], log_r=log_r, u=u, accepted=acc))
            if acc:
                gen = prop
                lq[idx - c:] = plq
                lp[idx - c:] = plp
            state["move"] += 1
        ans = gen[c:]
        first = next((i for i, x in enumerate(ans) if x in stops), None)
        if first is not None:
            gen = gen[:c + first + 1]
            stopped = True
            break
    return gen[c:], stopped, log


def enumerate_answers(m, prompt, max_new, stops, vocab):
    """{answer tuple: log p(answer)} over every answer of 1..max_new tokens that ends at its
    first stop id or has exactly max_new tokens (the sequences a run can end with)."""
    out = {}

    def rec(seq, logp):
        n = len(seq) - len(prompt)
        row = torch.log_softmax(m.target_row(seq + [0], len(seq)).to(torch.float64), -1)
        for tok in range(vocab):
            lp = logp + float(row[tok])
            if tok in stops or n + 1 == max_new:
                out[tuple(seq[len(prompt):] + [tok])] = lp
            else:
                rec(seq + [tok], lp)
    rec(list(prompt), 0.0)
    return out


def power_dist(logp, alpha):
    """p^alpha normalised over the given answers."""
    mx = max(alpha * v for v in logp.values())
    w = {k: math.exp(alpha * v - mx) for k, v in logp.items()}
    z = sum(w.values())
    return {k: x / z for k, x in w.items()}


def chain_distribution(m, prompt, alpha, max_new, block_tokens, steps, mh="exact", proposal="naive",
                       top_k=0, top_p=1.0, stops=(), draft_temp=None):
    """The exact distribution of power_samp's answer (same algorithm, every random choice
    summed over instead of drawn): {answer: probability}. Transitions are enumerated from
    the proposal's kernel (naive: token by token; dflash: blocks anchored at idx-1)."""
    c, P = len(prompt), list(prompt)
    temp = (draft_temp or 1.0 / alpha) if proposal == "dflash" else 1.0 / alpha
    lp_cache = {}

    def alpha_logp(ans):
        if ans not in lp_cache:
            full = P + list(ans)
            lp_cache[ans] = alpha * sum(float(torch.log_softmax(m.target_row(full, c + i).to(torch.float64), -1)[full[c + i]])
                                        for i in range(len(ans)))
        return lp_cache[ans]

    def kernel(prefix, e):
        """{suffix: log q} for every proposal from len(prefix) up to position e (or a stop)."""
        out = {}

        def rec(suf, lq, A, rows):
            pos = len(prefix) + len(suf)
            if pos >= e:
                out[tuple(suf)] = lq
                return
            seq = prefix + suf
            if proposal == "naive":
                row = m.target_row(seq + [0], pos)
            else:
                if pos - 1 - A >= m.B - 1:  # the block is used up: anchor a new one at the last token
                    A, rows = pos - 1, m.draft_rows(seq, pos - 1)
                row = rows[pos - 1 - A]
            q = warp_logq(row, temp, top_k, top_p)
            for tok in range(q.shape[-1]):
                v = float(q[tok])
                if v == -math.inf:
                    continue
                if tok in stops:
                    out[tuple(suf + [tok])] = lq + v
                else:
                    rec(suf + [tok], lq + v, A, rows)
        A0 = len(prefix) - 1
        rec([], 0.0, A0, m.draft_rows(prefix, A0) if proposal == "dflash" else None)
        return out

    def transition(x, e):
        out = {}
        t = c + len(x)
        for idx in range(c, t):
            pre = P + list(x[:idx - c])
            end = e if mh == "exact" else t
            ker = kernel(pre, end)
            old = tuple(x[idx - c:])
            if mh == "exact":
                lq_old = ker.get(old, -math.inf)
            for suf, lq in ker.items():
                y = tuple(pre[c:]) + suf
                s = c + len(y)
                if mh == "exact":
                    lr = alpha_logp(y) - alpha_logp(x) + lq_old - lq + math.log(t - c) - math.log(s - c)
                else:  # old sums over idx .. s-1 only
                    short = tuple(x[:s - c])
                    lq_short = sum_old_q(pre, x, idx, s)
                    lr = alpha_logp(y) - alpha_logp(short) + lq_short - lq
                a = 1.0 if lr >= 0 else math.exp(lr)
                pr = math.exp(lq) / (t - c)
                out[y] = out.get(y, 0.0) + pr * a
                out[x] = out.get(x, 0.0) + pr * (1 - a)
        return out

    def sum_old_q(pre, x, idx, s):
        """log q of x[idx-c .. s-c) under the kernel anchored at idx-1 (reference variant)."""
        total, A, rows = 0.0, idx - 1, None
        full = P + list(x)
        for pos in range(idx, s):
            if proposal == "naive":
                row = m.target_row(full, pos)
            else:
                if rows is None or pos - 1 - A >= m.B - 1:
                    A = pos - 1 if rows is not None else A
                    rows = m.draft_rows(full, A)
                row = rows[pos - 1 - A]
            total += float(warp_logq(row, temp, top_k, top_p)[full[pos]])
        return total

    final, dist = {}, {(): 1.0}
    nblocks = -(-max_new // block_tokens)
    for b in range(nblocks):
        nxt = {}
        for x, px in dist.items():
            e = min(c + len(x) + block_tokens, c + max_new)
            for suf, lq in kernel(P + list(x), e).items():
                nxt[x + suf] = nxt.get(x + suf, 0.0) + px * math.exp(lq)
        dist, memo = nxt, {}
        end = c + min((b + 1) * block_tokens, max_new)
        for _ in range(steps):
            nd = {}
            for x, px in dist.items():
                if x not in memo:
                    memo[x] = transition(x, end)
                for y, pr in memo[x].items():
                    nd[y] = nd.get(y, 0.0) + px * pr
            dist = nd
        cont = {}
        for x, px in dist.items():
            first = next((i for i, v in enumerate(x) if v in stops), None)
            if first is not None:
                k = x[:first + 1]
                final[k] = final.get(k, 0.0) + px
            else:
                cont[x] = px
        dist = cont
    for x, px in dist.items():
        final[x] = final.get(x, 0.0) + px
    return final


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--prompt", default="0")
    p.add_argument("--alpha", type=float, default=4.0)
    p.add_argument("--max-new", dest="max_new", type=int, default=3)
    p.add_argument("--enumerate", action="store_true")
    a = p.parse_args()
    T = ref.Target.load(a.target)
    cfg = json.load(open(os.path.join(a.target, "generation_config.json")))
    stops = cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]]
    prompt = [int(x) for x in a.prompt.split(",")]
    m = Models(T)
    dist = power_dist(enumerate_answers(m, prompt, a.max_new, stops, T.embed.shape[0]), a.alpha)
    for k, v in sorted(dist.items(), key=lambda kv: -kv[1]):
        print(json.dumps({"answer": list(k), "p_alpha": v}))


if __name__ == "__main__":
    main()
