#!/bin/bash
# exit-sweep.sh: seed 003's "immediate next run" (coarse layer sweep): train early-exit heads at
# layers 3, 7, 11, 15 with a short fixed budget, then evaluate and plot them with exit-eval.
#
#   tools/exit-sweep.sh MODEL DATA PROMPTS OUT [extra exit-eval flags...]
#
# OUT/heads/layer<l>-T<T>/ holds the heads (exit-train), OUT/eval/ the evaluation (results.csv,
# summary.json, report.txt, layer_sweep / acceptance_sweep / pareto / accept_hist figures).
# Settings through the environment (defaults in brackets): LAYERS [3,7,11,15], TEMPS [2],
# STEPS [200], LR [1e-3], SEQ_LEN [256], HOLDOUT [0.1], SEED [0], GAMMA [4], MAX_NEW [64],
# VKDRAFT [build/apps/vkdraft]. Both steps resume: rerunning the script after an interruption
# continues where it stopped (exit-train --resume; exit-eval --resume skips finished heads).
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
MODEL=$1 DATA=$2 PROMPTS=$3 OUT=$4
shift 4
VK=${VKDRAFT:-build/apps/vkdraft}
mkdir -p "$OUT"
LAYERS=${LAYERS:-3,7,11,15} TEMPS=${TEMPS:-2} SEQ_LEN=${SEQ_LEN:-256} HOLDOUT=${HOLDOUT:-0.1} SEED=${SEED:-0}
split=(--seq-len "$SEQ_LEN" --holdout "$HOLDOUT" --seed "$SEED")
resume=()
[ -d "$OUT/heads" ] && resume=(--resume)
"$VK" exit-train --model "$MODEL" --data "$DATA" --layers "$LAYERS" --temperatures "$TEMPS" \
    --steps "${STEPS:-200}" --lr "${LR:-1e-3}" "${split[@]}" --out "$OUT/heads" "${resume[@]}"
heads=()
IFS=, read -ra ls <<<"$LAYERS"
IFS=, read -ra ts <<<"$TEMPS"
for l in "${ls[@]}"; do
    for t in "${ts[@]}"; do
        heads+=("$OUT/heads/layer$l-T$(printf '%g' "$t")")
    done
done
resume=()
[ -f "$OUT/eval/config.json" ] && resume=(--resume)
"$VK" exit-eval --model "$MODEL" --heads "${heads[@]}" --data "$DATA" --prompts "$PROMPTS" "${split[@]}" \
    --gamma "${GAMMA:-4}" --max-new-tokens "${MAX_NEW:-64}" --out "$OUT/eval" "${resume[@]}" "$@"
echo "exit-sweep: results in $OUT/eval (results.csv, report.txt, *.png, *.pdf)"
