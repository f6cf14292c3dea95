#!/usr/bin/env bash
# render-figures.sh: the sample figures of docs/experiments.md, from the English demo pair in
# demo/ (trained by vkdraft; tools/make-demo-pair.sh). English passages are cut from the
# pair's corpus (tools/demo-corpus.sh, tools/demo-docs.py --passages: the first words of an
# Austen paragraph or of four Bible verses as the question, the rest as the gold answer);
# spec --out over them gives the target's own (greedy) answers. diagnose runs on the passages
# (the document's protocol: gold text) and on those answers (diagnose-answers: the text the
# draft was trained to predict; its signal-decomposition figure is left out, as no token of a
# greedy answer has p_target < 0.01), probe, power, guide and ttt on the passages, guide
# --group-by over MT-Bench; every figure (PNG and PDF) is copied to
# docs/figures/<command>_<name>. The records are few, so the figures show the pair's
# structure, not a finding about real models.
#   bash tools/render-figures.sh [OUT]     work folder (default /tmp/vkdraft-figures)
set -euo pipefail
cd "$(dirname "$0")/.."
for f in demo/target/config.json demo/draft/config.json build/apps/vkdraft; do
    [ -e "$f" ] || { echo "render-figures: $f is missing (build first; demo/ is committed)" >&2; exit 1; }
done
work=${1:-/tmp/vkdraft-figures}
V=build/apps/vkdraft
M=(--target demo/target --draft demo/draft --quiet --overwrite)
D=../shared/datasets
mkdir -p "$work" docs/figures
[ -f "$work/corpus/kjv.txt" ] || tools/demo-corpus.sh "$work/corpus" >/dev/null
P=$work/passages.jsonl
python3 tools/demo-docs.py --passages 40 "$work/corpus/austen.txt" "$work/corpus/kjv.txt" > "$P"
$V spec --target demo/target --draft demo/draft --dataset "$P" --limit 16 --max-new-tokens 64 \
    --out "$work/answers.jsonl" >/dev/null
$V diagnose "${M[@]}" --dataset "$P" --limit 16 --out "$work/diagnose" >/dev/null
$V diagnose "${M[@]}" --dataset "$work/answers.jsonl" --prompt-field prompt --answer-field text \
    --out "$work/diagnose-answers" >/dev/null
$V probe "${M[@]}" --dataset "$P" --limit 8 --max-new-tokens 64 --samples 20 --out "$work/probe" >/dev/null
$V power "${M[@]}" --dataset "$P" --limit 4 --max-new-tokens 32 --block-tokens 8 --mcmc-steps 3 \
    --proposal dflash --out "$work/power" >/dev/null
$V guide "${M[@]}" --dataset "$P" --limit 4 --max-new-tokens 16 --alphas 0,0.3,1 --temperatures 0,1 \
    --conditions guided,null --out "$work/guide" >/dev/null
$V guide "${M[@]}" --dataset $D/mt_bench_questions.jsonl --limit 6 --max-new-tokens 8 --alphas 0,0.3 --temperatures 0 \
    --conditions guided,null --group-by category --out "$work/guide-grouped" >/dev/null
$V ttt "${M[@]}" --dataset "$P" --limit 4 --steps 4,8 --lr 0.0005,0.002 --max-new-tokens 32 \
    --out "$work/ttt" >/dev/null
for cmd in diagnose diagnose-answers probe power guide guide-grouped ttt; do
    for f in "$work/$cmd"/*.png "$work/$cmd"/*.pdf; do
        case "$cmd/$(basename "$f")" in diagnose-answers/fig_signal_decomposition.*) continue ;; esac
        [ -e "$f" ] && cp "$f" "docs/figures/${cmd}_$(basename "$f")"
    done
done
ls docs/figures
