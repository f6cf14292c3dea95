#!/usr/bin/env bash
# render-figures.sh: the sample figures of docs/experiments.md. Runs diagnose, probe, power,
# guide and ttt on the demo pair (tools/demo.sh builds demo/; run it first) over a few records
# each and copies every figure (PNG and PDF) to docs/figures/<command>_<name>. The demo pair
# has random weights: the figures show the drawing, not a finding.
#   bash tools/render-figures.sh [OUT]     work folder (default /tmp/vkdraft-figures)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f demo/target/config.json ] && [ -f demo/draft/config.json ] || { echo "render-figures: run tools/demo.sh first (no demo/)" >&2; exit 1; }
work=${1:-/tmp/vkdraft-figures}
V=build/apps/vkdraft
M=(--target demo/target --draft demo/draft --quiet --overwrite)
D=../shared/datasets
mkdir -p "$work" docs/figures
$V diagnose "${M[@]}" --dataset $D/gsm8k_test.jsonl --limit 4 --out "$work/diagnose" >/dev/null
$V probe "${M[@]}" --dataset $D/math500.json --limit 3 --max-new-tokens 24 --samples 20 --out "$work/probe" >/dev/null
$V power "${M[@]}" --dataset $D/gsm8k_test.jsonl --limit 3 --max-new-tokens 16 --block-tokens 8 --mcmc-steps 3 \
    --proposal dflash --out "$work/power" >/dev/null
$V guide "${M[@]}" --dataset $D/gsm8k_test.jsonl --limit 3 --max-new-tokens 8 --alphas 0,0.3 --temperatures 0,1 \
    --conditions guided,null --out "$work/guide" >/dev/null
$V guide "${M[@]}" --dataset $D/mt_bench_questions.jsonl --limit 6 --max-new-tokens 8 --alphas 0,0.3 --temperatures 0 \
    --conditions guided,null --group-by category --out "$work/guide-grouped" >/dev/null
$V ttt "${M[@]}" --dataset $D/gsm8k_test.jsonl --limit 2 --steps 2,4 --lr 0.0005,0.002 --max-new-tokens 16 \
    --out "$work/ttt" >/dev/null
for cmd in diagnose probe power guide guide-grouped ttt; do
    for f in "$work/$cmd"/*.png "$work/$cmd"/*.pdf; do
        [ -e "$f" ] && cp "$f" "docs/figures/${cmd}_$(basename "$f")"
    done
done
ls docs/figures
