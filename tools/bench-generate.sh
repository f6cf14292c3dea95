#!/usr/bin/env bash
# bench-generate.sh MODEL_DIR [prompt_tokens] [gen_tokens]
# vkdraft's decode and prefill against llama.cpp on the same weights and machine, in one run:
#   vkdraft (Vulkan, selected device) | llama.cpp CPU (same thread count) | llama.cpp Vulkan
# Prints each backend's line and the ratios. A benchmark: it never fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: tools/bench-generate.sh MODEL_DIR [prompt_tokens] [gen_tokens]}
prompt=${2:-128}
gen=${3:-32}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
build/apps/vkdraft bench generate --model "$model" --prompt-tokens "$prompt" --gen-tokens "$gen" | tee -a "$out"
if [ -f tools/llamacpp/bench.sh ]; then
    bash tools/llamacpp/bench.sh "$model" | tee -a "$out"
else
    echo "tools/llamacpp/bench.sh not found: no llama.cpp peer" >&2
fi
python3 - "$out" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(vkdraft|llamacpp) backend=(\S+).*?prefill_tok_s=([\d.]+) decode_tok_s=([\d.]+)", line)
    if m:
        rows[f"{m.group(1)}-{m.group(2)}"] = (float(m.group(3)), float(m.group(4)))
vk = rows.get("vkdraft-vulkan")
if vk:
    for name, (pre, dec) in rows.items():
        if name != "vkdraft-vulkan" and dec > 0 and pre > 0:
            print(f"ratio vkdraft / {name}: decode {vk[1] / dec:.2f}x, prefill {vk[0] / pre:.2f}x")
PY
