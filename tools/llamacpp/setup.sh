#!/usr/bin/env bash
# setup.sh: install llama.cpp's prebuilt CPU and Vulkan builds (npm packages of node-llama-cpp)
# into .cache/llamacpp (never committed), build the peer benchmark tools/llamacpp/llama_peer_bench.c
# against them and print the paths.
#
# The packages ship no CLI binaries (no llama-cli / llama-bench): only the shared libraries
# (libllama.*.so, libggml*.so, dynamically loaded CPU variants libggml-cpu-<isa>.so and
# libggml-vulkan.so) and node-llama-cpp's N-API addon. node-llama-cpp itself ships the exact
# llama.cpp source it was built from as a git bundle (llama/gitRelease.bundle), which gives us
# the matching llama.h / ggml headers. So we compile a small C program against the libraries.
#
# Output (stdout, one per line, machine-readable):
#   LLAMACPP_VERSION=<node-llama-cpp version> LLAMACPP_RELEASE=<llama.cpp release tag>
#   LLAMACPP_SRC=<checkout of the matching llama.cpp source>
#   LLAMACPP_CPU_LIB=<dir with the CPU build's .so files>
#   LLAMACPP_VK_LIB=<dir with the Vulkan build's .so files>
#   LLAMACPP_BENCH_CPU=<llama_peer_bench linked to the CPU build>
#   LLAMACPP_BENCH_VK=<llama_peer_bench linked to the Vulkan build>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ver="${NODE_LLAMA_CPP_VERSION:-3.22.1}"
dir="$root/.cache/llamacpp"
mkdir -p "$dir"
stamp="$dir/.installed-$ver"
if [ ! -f "$stamp" ]; then
    [ -f "$dir/package.json" ] || echo '{"name":"vkdraft-llamacpp-peer","private":true}' > "$dir/package.json"
    # --ignore-scripts: node-llama-cpp's postinstall would try to download / build llama.cpp.
    (cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts --omit=optional \
        "node-llama-cpp@$ver" "@node-llama-cpp/linux-x64@$ver" "@node-llama-cpp/linux-x64-vulkan@$ver" >&2)
    touch "$stamp"
fi
nm="$dir/node_modules"
cpu="$nm/@node-llama-cpp/linux-x64/bins/linux-x64"
vk="$nm/@node-llama-cpp/linux-x64-vulkan/bins/linux-x64-vulkan"
for d in "$cpu" "$vk"; do [ -d "$d" ] || { echo "setup.sh: missing $d" >&2; exit 1; }; done
rel=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$nm/node-llama-cpp/llama/llama.cpp.info.json")
src="$dir/llama.cpp-$rel"
if [ ! -f "$src/include/llama.h" ]; then
    rm -rf "$src"
    git clone -q "$nm/node-llama-cpp/llama/gitRelease.bundle" "$src" 2>/dev/null
fi
# The libraries have versioned names (libllama.v0.5.0.so, libllama.vulkan.v0.5.0.so, ...):
# link against them by full path; RUNPATH $ORIGIN inside them finds libggml-base.so.
libllama_cpu=$(ls "$cpu"/libllama.v*.so | head -1)
libggml_cpu=$(ls "$cpu"/libggml.v*.so | head -1)
libllama_vk=$(ls "$vk"/libllama.vulkan.v*.so | head -1)
libggml_vk=$(ls "$vk"/libggml.vulkan.v*.so | head -1)
build() { # out libllama libggml libdir
    local out=$1 ll=$2 lg=$3 ld=$4
    if [ ! -x "$out" ] || [ "$here/llama_peer_bench.c" -nt "$out" ]; then
        gcc -O2 -std=c11 -Wall -Wextra -o "$out" "$here/llama_peer_bench.c" \
            -I"$src/include" -I"$src/ggml/include" \
            "$ll" "$lg" "$ld/libggml-base.so" -Wl,-rpath,"$ld" -lm
    fi
}
build "$dir/llama_peer_bench_cpu" "$libllama_cpu" "$libggml_cpu" "$cpu"
build "$dir/llama_peer_bench_vk" "$libllama_vk" "$libggml_vk" "$vk"
echo "LLAMACPP_VERSION=$ver LLAMACPP_RELEASE=$rel"
echo "LLAMACPP_SRC=$src"
echo "LLAMACPP_CPU_LIB=$cpu"
echo "LLAMACPP_VK_LIB=$vk"
echo "LLAMACPP_BENCH_CPU=$dir/llama_peer_bench_cpu"
echo "LLAMACPP_BENCH_VK=$dir/llama_peer_bench_vk"
