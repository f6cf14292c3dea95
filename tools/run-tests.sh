#!/usr/bin/env bash
# run-tests.sh: run every test suite (normal build, then the ASan+UBSan build) and end with
# one plain line "N passed, N failed[, N skipped]" counting test programs.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${XDG_RUNTIME_DIR:=$(mktemp -d /tmp/vkdraft-xdg.XXXXXX)}"
export XDG_RUNTIME_DIR
jobs=${VKDRAFT_TEST_JOBS:-2}

summ=()
run_suite() { # build-dir extra-meson-args...
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null || { echo "meson setup $dir failed" >&2; return 1; }
    fi
    ninja -C "$dir" >/dev/null || { ninja -C "$dir" | tail -30; return 1; }
    meson test -C "$dir" --num-processes "$jobs" --print-errorlogs --no-rebuild -q
    summ+=("$dir/meson-logs/testlog.json")
}

rc=0
run_suite build --buildtype=release || rc=1
if [ "${VKDRAFT_SKIP_ASAN:-0}" != 1 ]; then
    ASAN_OPTIONS=detect_leaks=0 run_suite build-asan --buildtype=debug -Db_sanitize=address,undefined \
        -Db_lundef=false || rc=1
fi

python3 - "${summ[@]}" <<'PY'
import json, sys
p = f = s = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r == "OK" or r == "EXPECTEDFAIL": p += 1
        elif r == "SKIP": s += 1
        else: f += 1
print(f"{p} passed, {f} failed" + (f", {s} skipped" if s else ""))
sys.exit(1 if f else 0)
PY
[ $? -eq 0 ] && [ $rc -eq 0 ]
