#!/usr/bin/env bash
# make-demo-pair.sh OUT_DIR: the English demo pair of issue 15, trained by vkdraft itself
# from public-domain text in Debian packages:
#   1. tools/demo-corpus.sh       Jane Austen's novels + the King James Bible, one line each
#   2. tools/train_bpe.py         a byte-level BPE tokenizer.json of 4096 ids, ChatML template
#   3. vkdraft train-target       a tied Qwen3 (hidden 256, 4 layers, 4 heads over 2 kv heads
#                                 of 64, ffn 768, vocab 4160: room past the tokenizer for the
#                                 draft's mask token), windows of 256 tokens, bf16
#   4. vkdraft train-draft        a DFlash draft (block 16) on the target's own continuations
#                                 (--regenerate) of prompts cut from the corpus
# Output: OUT_DIR/target, OUT_DIR/draft (and OUT_DIR/work: corpus, tokenizer, prompts).
# Step counts and sizes can be overridden for a smoke run, e.g.
#   TARGET_STEPS=1 BATCH_TOKENS=256 HELD_OUT=1 DRAFT_STEPS=1 PROMPTS=3 tools/make-demo-pair.sh /tmp/pair
# The full run takes hours on a CPU (docs/benchmarks.md); it is not part of CI.
set -euo pipefail
out=${1:?usage: tools/make-demo-pair.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
vk=${VKDRAFT:-$here/build/apps/vkdraft}
target_steps=${TARGET_STEPS:-3000}
batch_tokens=${BATCH_TOKENS:-4096}
draft_steps=${DRAFT_STEPS:-2000}
prompts=${PROMPTS:-2000}
held_out=${HELD_OUT:-64}
work=$out/work
mkdir -p "$work"
[ -f "$work/corpus/kjv.txt" ] || "$here/tools/demo-corpus.sh" "$work/corpus"
[ -f "$work/tok/tokenizer.json" ] ||
    python3 "$here/tools/train_bpe.py" --corpus "$work/corpus/austen.txt" "$work/corpus/kjv.txt" \
        --vocab 4096 --out "$work/tok"
cat > "$work/config.json" <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 256,
 "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
 "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 4160, "max_position_embeddings": 1024,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "silu",
 "attention_bias": false, "torch_dtype": "float32"}
JSON
"$vk" train-target --config "$work/config.json" --tokenizer "$work/tok" \
    --data "$work/corpus/austen.txt" "$work/corpus/kjv.txt" --out "$out/target" \
    --seq-len 256 --batch-tokens "$batch_tokens" --steps "$target_steps" --lr 1e-3 --seed 0 \
    --held-out "$held_out"
# prompts: the first words (up to 12) of every 7th corpus line of at least 12 words
python3 - "$work/corpus/austen.txt" "$work/corpus/kjv.txt" "$prompts" > "$work/prompts.jsonl" <<'PY'
import json, sys
lines = [l.split() for f in sys.argv[1:3] for l in open(f, encoding="utf-8")]
picked = [l[:12] for l in lines[::7] if len(l) >= 12][: int(sys.argv[3])]
for words in picked:
    print(json.dumps({"prompt": " ".join(words)}))
PY
"$vk" train-draft --target "$out/target" --data "$work/prompts.jsonl" --out "$out/draft" \
    --regenerate --max-new-tokens 64 --block-size 16 --steps "$draft_steps" --seed 0 \
    --eval-prompts "${EVAL_PROMPTS:-4}"
echo "make-demo-pair: target in $out/target, draft in $out/draft"
