#!/usr/bin/env bash
# make-demo-pair.sh OUT_DIR: the English demo pair of issue 15 (committed in demo/), trained by
# vkdraft itself from public-domain text in Debian packages:
#   1. tools/demo-corpus.sh       Jane Austen's novels + the King James Bible
#   2. tools/train_bpe.py         a byte-level BPE tokenizer.json of 2048 ids, ChatML template
#   3. tools/demo-docs.py         documents: Austen's paragraphs, runs of four verses; every
#                                 second one a ChatML turn (the user gives the first words,
#                                 the assistant continues)
#   4. vkdraft train-target       a tied Qwen3 (hidden 128, 4 layers, 2 heads over 1 kv head of
#                                 64, ffn 384, vocab 2112: room past the tokenizer for the
#                                 draft's mask token), windows of 256 tokens, bf16
#   5. vkdraft train-draft        a DFlash draft (block 16) on the target's own greedy
#                                 continuations (--regenerate) of prompts cut from the corpus
#                                 (passage openings and questions asked in the books), in three
#                                 stages of one epoch each: 2416 prompts, then (--init from the
#                                 first stage's checkpoint) 2416 other ones, then (--init from the
#                                 second's) the first 2416 again at a lower learning rate
# Output: OUT_DIR/target, OUT_DIR/draft (and OUT_DIR/work: corpus, tokenizer, prompts).
# Sizes can be overridden for a smoke run, e.g.
#   TARGET_STEPS=1 BATCH_TOKENS=256 HELD_OUT=1 DRAFT_STEPS=1 PROMPTS=12 EVAL_PROMPTS=2 \
#       tools/make-demo-pair.sh /tmp/pair
# The full run takes about 2.5 hours on 2 CPU cores with lavapipe (docs/benchmarks.md); it is
# not part of CI.
set -euo pipefail
out=${1:?usage: tools/make-demo-pair.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
vk=${VKDRAFT:-$here/build/apps/vkdraft}
target_steps=${TARGET_STEPS:-1000}
batch_tokens=${BATCH_TOKENS:-2048}
draft_steps=${DRAFT_STEPS:-}
draft_layers=${DRAFT_LAYERS:-3}
prompts=${PROMPTS:-2416}
eval_prompts=${EVAL_PROMPTS:-16}
held_out=${HELD_OUT:-16}
work=$out/work
mkdir -p "$work"
[ -f "$work/corpus/kjv.txt" ] || "$here/tools/demo-corpus.sh" "$work/corpus"
[ -f "$work/tok/tokenizer.json" ] ||
    python3 "$here/tools/train_bpe.py" --corpus "$work/corpus/austen.txt" "$work/corpus/kjv.txt" \
        --vocab 2048 --out "$work/tok"
python3 "$here/tools/demo-docs.py" "$work/corpus/austen.txt" "$work/corpus/kjv.txt" > "$work/corpus.jsonl"
for part in 1 2; do
    python3 "$here/tools/demo-docs.py" --prompts "$prompts" --part $part "$work/corpus/austen.txt" \
        "$work/corpus/kjv.txt" > "$work/prompts$part.jsonl"
done
cat > "$work/config.json" <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 128,
 "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 2,
 "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 2112, "max_position_embeddings": 1024,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "silu",
 "attention_bias": false, "torch_dtype": "float32"}
JSON
[ -f "$out/target/model.safetensors" ] ||
    "$vk" train-target --config "$work/config.json" --tokenizer "$work/tok" \
        --data "$work/corpus.jsonl" --out "$out/target" --seq-len 256 --batch-tokens "$batch_tokens" \
        --steps "$target_steps" --lr 2e-3 --seed 0 --held-out "$held_out" --eval-every 100
common=(--target "$out/target" --regenerate --max-new-tokens 64 --block-size 16 --layers "$draft_layers"
        --anchors-per-seq 32 ${draft_steps:+--steps "$draft_steps"} --eval-prompts "$eval_prompts")
[ -f "$work/draft1/config.json" ] ||
    "$vk" train-draft "${common[@]}" --data "$work/prompts1.jsonl" --out "$work/draft1" --lr 1.5e-3 --seed 0 \
        --eval-every 500
[ -f "$work/draft2/config.json" ] ||
    "$vk" train-draft "${common[@]}" --data "$work/prompts2.jsonl" --out "$work/draft2" --lr 1e-3 --seed 1 \
        --eval-every 600 --init "$work/draft1/train/ckpt"
"$vk" train-draft "${common[@]}" --data "$work/prompts1.jsonl" --out "$out/draft" --lr 7e-4 --seed 2 \
    --eval-every 600 --init "$work/draft2/train/ckpt"
echo "make-demo-pair: target in $out/target, draft in $out/draft"
