#!/usr/bin/env bash
# bench.sh: llama.cpp peer figures for vkdraft's benchmarks, on the same weights.
#
#   bash tools/llamacpp/bench.sh MODEL_DIR
#
# Converts MODEL_DIR (Hugging Face Qwen3 / Llama 3 folder) to GGUF once, cached next to the
# model (MODEL_DIR/model.gguf keeping the checkpoint dtype, or MODEL_DIR/model-f16.gguf with
# OUTTYPE=f16), then runs llama_peer_bench (tools/llamacpp/llama_peer_bench.c, linked to
# the prebuilt llama.cpp of node-llama-cpp) with
#   (a) the CPU backend, THREADS threads (default 2), no offload;
#   (b) the Vulkan backend (GGML_VK_VISIBLE_DEVICES=${VK_DEVICE:-0}: lavapipe on the project's
#       machine), all layers offloaded (-ngl 99), THREADS threads for the host side.
# Prompt: PROMPT synthetic ids (default 128) on the CPU; PROMPT_VK (default 16) on Vulkan,
# because llama.cpp's Vulkan backend on lavapipe prefills a 0.6B model at only ~0.15-0.3
# tok/s (measured: 16 tokens in 100 s at load average 8.6), so 128 tokens (x2 with the
# warm-up) would not fit a 10-minute bound; the CPU is then also run at PROMPT_VK for a
# same-length comparison. GEN_CPU generated tokens (default 32) on the CPU and GEN_VK
# (default 4) on Vulkan (decode ~0.15-0.25 tok/s there). Every run is bounded by TIMEOUT_CPU / TIMEOUT_VK seconds (default 300 / 570).
# Output, one line per backend (a timed-out or failed run prints status=timeout|error):
#   llamacpp backend=cpu threads=2 ngl=0 prompt=128 gen=32 prefill_tok_s=.. decode_tok_s=.. ...
# preceded by '# ...' lines: model, GGUF size, device, load average (the figures are only as
# good as the machine is idle: other processes on a 2-core machine halve them).
# Env: BACKENDS="cpu vulkan", OUTTYPE=auto|f16|bf16|f32, PROMPT, GEN_CPU, GEN_VK, THREADS,
#      CPU_THREADS (list of thread counts for the CPU backend, default $THREADS, e.g. "1 2"),
#      REPS (timed prefill repetitions, default 1).
# Note: llama.cpp's CPU threads busy-wait at every graph node barrier; on a 2-core machine
# with other runnable processes, 2 threads can be 10-100x slower than 1 (a tiny model measured
# 2.9 vs 300 decode tok/s at load average 8). Compare figures only at a low load average.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
model="${1:?usage: bench.sh MODEL_DIR}"
model="$(cd "$model" && pwd)"
PROMPT="${PROMPT:-128}"; PROMPT_VK="${PROMPT_VK:-16}"; GEN_CPU="${GEN_CPU:-32}"; GEN_VK="${GEN_VK:-4}"; THREADS="${THREADS:-2}"
CPU_THREADS="${CPU_THREADS:-$THREADS}"
TIMEOUT_CPU="${TIMEOUT_CPU:-300}"; TIMEOUT_VK="${TIMEOUT_VK:-570}"; REPS="${REPS:-1}"
OUTTYPE="${OUTTYPE:-auto}"; BACKENDS="${BACKENDS:-cpu vulkan}"

eval "$(bash "$here/setup.sh" | sed 's/ /\n/g' | grep '^LLAMACPP_')"

if [ "$OUTTYPE" = auto ]; then gguf="$model/model.gguf"; else gguf="$model/model-$OUTTYPE.gguf"; fi
stale=0
[ -f "$gguf" ] || stale=1
for f in "$model"/config.json "$model"/*.safetensors "$here/hf_to_gguf.py"; do
    [ "$f" -nt "$gguf" ] && stale=1
done
if [ $stale = 1 ]; then
    /usr/bin/python3 "$here/hf_to_gguf.py" --outtype "$OUTTYPE" --out "$gguf" "$model" >/dev/null
fi
echo "# model $model gguf $(basename "$gguf") $(stat -c %s "$gguf") bytes; llama.cpp $LLAMACPP_RELEASE (node-llama-cpp $LLAMACPP_VERSION)"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"

run() { # backend prompt gen timeout cmd...
    local be=$1 prompt=$2 gen=$3 to=$4; shift 4
    local out rc=0
    out=$(timeout "$to" "$@" -m "$gguf" -t "$THREADS" -p "$prompt" -n "$gen" -r "$REPS" 2>"/tmp/llamacpp-bench-$be.err") || rc=$?
    local line
    line=$(echo "$out" | grep '^llamacpp ' || true)
    if [ -n "$line" ]; then
        echo "$line"
    elif [ $rc = 124 ]; then
        echo "llamacpp backend=$be threads=$THREADS prompt=$prompt gen=$gen status=timeout timeout_s=$to"
    else
        echo "llamacpp backend=$be threads=$THREADS prompt=$prompt gen=$gen status=error rc=$rc (see /tmp/llamacpp-bench-$be.err)"
        tail -3 "/tmp/llamacpp-bench-$be.err" | sed 's/^/#   /'
    fi
}

for be in $BACKENDS; do
    case $be in
    cpu)
        prompts=$PROMPT
        case " $BACKENDS " in *" vulkan "*) [ "$PROMPT_VK" != "$PROMPT" ] && prompts="$PROMPT $PROMPT_VK" ;; esac
        for THREADS in $CPU_THREADS; do
            for p in $prompts; do
                run cpu "$p" "$GEN_CPU" "$TIMEOUT_CPU" "$LLAMACPP_BENCH_CPU" --backend cpu -ngl 0 \
                    --backend-dir "$LLAMACPP_CPU_LIB"
            done
        done
        THREADS=${CPU_THREADS%% *} ;;
    vulkan)
        dev=$(GGML_VK_VISIBLE_DEVICES="${VK_DEVICE:-0}" timeout 60 "$LLAMACPP_BENCH_VK" -m "$gguf" \
              --backend-dir "$LLAMACPP_VK_LIB" -ngl 0 --text x --tokenize-only -v 2>&1 |
              sed -n 's/^ggml_vulkan: [0-9]* = \(.*\) | uma.*/\1/p' | head -1) ||
            true # the probe tokenizes: a GGUF without a vocabulary aborts it after the device line
        echo "# vulkan device: ${dev:-?}; PROMPT_VK=$PROMPT_VK GEN_VK=$GEN_VK (small: lavapipe runs a 0.6B model at ~0.15-0.25 tok/s, prefill included; the CPU line with prompt=$PROMPT_VK is the same-length comparison)"
        GGML_VK_VISIBLE_DEVICES="${VK_DEVICE:-0}" run vulkan "$PROMPT_VK" "$GEN_VK" "$TIMEOUT_VK" "$LLAMACPP_BENCH_VK" \
            --backend vulkan -ngl 99 --backend-dir "$LLAMACPP_VK_LIB" ;;
    *) echo "bench.sh: unknown backend $be" >&2; exit 2 ;;
    esac
done
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
