#!/usr/bin/env bash
# demo.sh: the README's main job. Runs DFlash speculative decoding with the plain-decoding
# baseline on the committed demo pair (demo/target: a small Qwen3 that vkdraft trained on Jane
# Austen's novels and the King James Bible; demo/draft: a block-16 DFlash draft vkdraft
# trained for it; tools/make-demo-pair.sh rebuilds both) over the built-in prompt set, and
# prints the text, tau, the acceptance-length histogram and the measured speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in demo/target/config.json demo/target/model.safetensors demo/draft/config.json \
         demo/draft/model.safetensors; do
    [ -f "$f" ] || { echo "demo: $f is missing (it is committed; tools/make-demo-pair.sh rebuilds it)" >&2; exit 1; }
done
build/apps/vkdraft devices
echo
exec build/apps/vkdraft spec --target demo/target --draft demo/draft --baseline --max-new-tokens 64 "$@"
