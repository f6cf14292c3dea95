#!/usr/bin/env bash
# demo.sh: the README's main job. Generates the demo pair (a small Qwen3 target with the real
# Qwen3 tokenizer and a DFlash draft trained on it: tools/reference/make_demo.py) into demo/
# once, then runs speculative decoding with the plain-decoding baseline over the built-in
# prompt set: tau, the acceptance-length histogram and the speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f demo/draft/config.json ] || [ ! -f demo/target/config.json ]; then
    echo "demo: generating the demo target + DFlash draft in demo/ ..." >&2
    rm -rf demo.tmp
    /usr/bin/python3 tools/reference/make_demo.py --out demo.tmp >&2
    rm -rf demo
    mv demo.tmp demo
fi
build/apps/vkdraft devices
echo
exec build/apps/vkdraft spec --target demo/target --draft demo/draft --baseline --max-new-tokens 64 "$@"
