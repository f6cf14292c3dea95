#!/usr/bin/python3
"""guide_ref: an independent float64 implementation of draft-guided decoding (seeds 001/004).

    guided_logits = target + alpha * (draft - target)

token by token, greedy. The draft predicts position p + 1 from a DFlash block of two rows
[token p, MASK] at start p, its KV cache holding the target's tapped hidden states of the
positions < p (ref.Draft.forward with a cache); the target runs with its KV cache
(ref.Target.forward). alpha = 0 is plain greedy decoding of the target, alpha = 1 greedy
decoding from the draft's logits alone.

Writes the fixture of tests/guide (expected.safetensors):
  input_ids [P] I32                     the prompt (the DFlash fixtures' 20 ids)
  greedy [N] I32                        ref.Target.greedy (must equal alpha0.ids)
  alpha<A>.ids [N] I32                  guided greedy output for each alpha
  alpha<A>.kl [N] F32                   KL(softmax(guided) || softmax(target)) per token
  alpha<A>.changed [N] I32              argmax(guided) != argmax(target)
  alpha<A>.target, alpha<A>.draft [N, V] F32   the rows (only for --rows-alpha)
  __metadata__: alphas, min top-1/top-2 gap of the guided rows per alpha (the margin that
  makes f32 vs f64 unable to flip a greedy choice)

  /usr/bin/python3 tools/reference/guide_ref.py \
      --target tests/models/fixtures/dflash/target/model \
      --draft tests/models/fixtures/dflash/draft-b4/model --out tests/guide/fixtures/expected.safetensors
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402
import st  # noqa: E402


def guided_generate(T, D, prompt, max_new, alpha, stop=None):
    """Returns dict(ids, target rows, draft rows, kl, changed, gaps)."""
    prompt = list(prompt)
    n = len(prompt)
    tcache, dcache = T.new_cache(), D.new_cache()
    tlogits, hidden = T.forward(prompt, tcache)
    feats = D.features(hidden)               # (n, taps*H)
    new_ctx = feats[: n - 1]                 # positions 0..n-2 join the draft context
    pending = feats[n - 1:]                  # position n-1: row 0 of the first block
    seq = prompt[:]
    out = dict(ids=[], target=[], draft=[], kl=[], changed=[], gaps=[])
    tl = tlogits[-1]
    for _ in range(max_new):
        p = len(seq) - 1
        dl, _ = D.forward(new_ctx, [seq[p], D.mask_token_id], p, dcache)
        dl = dl[0]
        g = tl + alpha * (dl - tl)
        lp_g = torch.log_softmax(g, -1)
        lp_t = torch.log_softmax(tl, -1)
        kl = float((lp_g.exp() * (lp_g - lp_t)).sum())
        tok = int(torch.argmax(g))
        top2 = torch.topk(g, 2).values
        out["ids"].append(tok)
        out["target"].append(tl.clone())
        out["draft"].append(dl.clone())
        out["kl"].append(kl)
        out["changed"].append(int(torch.argmax(g)) != int(torch.argmax(tl)))
        out["gaps"].append(float(top2[0] - top2[1]))
        seq.append(tok)
        if stop and tok in stop:
            break
        tlogits, hidden = T.forward([tok], tcache)
        tl = tlogits[-1]
        new_ctx = pending
        pending = D.features(hidden)         # position p + 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-from", dest="prompt_from", help="expected.safetensors whose input_ids are the prompt "
                    "(default: the target folder's ../expected.safetensors)")
    ap.add_argument("--alphas", default="0,0.3,1")
    ap.add_argument("--rows-alpha", dest="rows_alpha", type=float, default=0.3)
    ap.add_argument("--max-new", dest="max_new", type=int, default=20)
    a = ap.parse_args()
    T = ref.Target.load(a.target)
    D = ref.Draft.load(a.draft, T)
    src = a.prompt_from or os.path.join(os.path.dirname(os.path.abspath(a.target)), "expected.safetensors")
    prompt = [int(x) for x in st.read(src)["input_ids"]]
    tensors = {"input_ids": np.array(prompt, dtype=np.int32),
               "greedy": np.array(T.greedy(prompt, a.max_new), dtype=np.int32)}
    meta = {"alphas": a.alphas, "rows_alpha": a.rows_alpha, "max_new": a.max_new}
    for alpha in [float(x) for x in a.alphas.split(",")]:
        r = guided_generate(T, D, prompt, a.max_new, alpha)
        tag = f"alpha{alpha:g}"
        tensors[tag + ".ids"] = np.array(r["ids"], dtype=np.int32)
        tensors[tag + ".kl"] = np.array(r["kl"], dtype=np.float32)
        tensors[tag + ".changed"] = np.array(r["changed"], dtype=np.int32)
        if alpha == a.rows_alpha:
            tensors[tag + ".target"] = torch.stack(r["target"]).float().numpy()
            tensors[tag + ".draft"] = torch.stack(r["draft"]).float().numpy()
        meta[tag + ".min_gap"] = min(r["gaps"])
        meta[tag + ".changed"] = int(sum(r["changed"]))
        print(f"{tag}: ids {r['ids']}, changed {sum(r['changed'])}, min gap {min(r['gaps']):.4f}, "
              f"mean KL {np.mean(r['kl']):.4f}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    st.write(a.out, tensors, metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})


if __name__ == "__main__":
    main()
