#!/usr/bin/env bash
# run-tests.sh: run every test suite (normal build, then the ASan+UBSan build) and end with
# one plain line "N passed, N failed[, N skipped]" counting test programs.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${XDG_RUNTIME_DIR:=$(mktemp -d /tmp/vkdraft-xdg.XXXXXX)}"
export XDG_RUNTIME_DIR
jobs=${VKDRAFT_TEST_JOBS:-2}

summ=()
broken=0   # build directories that failed to configure or build count as one failure each
run_suite() { # build-dir "suite args" extra-meson-args...
    local dir=$1 suites=$2; shift 2
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null || { echo "meson setup $dir failed" >&2; broken=$((broken + 1)); return 1; }
    fi
    ninja -C "$dir" $targets >/dev/null || { ninja -C "$dir" $targets | tail -30; broken=$((broken + 1)); return 1; }
    echo "== $dir" >&2
    meson test -C "$dir" --num-processes "$jobs" --print-errorlogs --no-rebuild -q $suites
    local rc=$?
    summ+=("$dir/meson-logs/testlog.json")
    return $rc
}

rc=0
targets=""
run_suite build "" --buildtype=release || rc=1
if [ "${VKDRAFT_SKIP_ASAN:-0}" != 1 ]; then
    # ASan + UBSan: every suite but the end-to-end CLI tests (they run the same library code
    # through the binary, several minutes longer under the sanitizers); of the experiment
    # suites, the tests marked 'unit'; not the ops tests' 16-lane reruns ('wg16': the same host
    # code as their 8-lane runs, other shader geometry, which the sanitizers do not see)
    # (VKDRAFT_TEST_SWEEP=short: the long op sweeps take every other case, no vocabulary-sized
    # ones; tests/vkd_test.h)
    # (-Dtest_validation=false: without the validation layer, whose allocations through ASan's
    # allocator made these tests 3-4x slower; step 1 ran every one of them with the layer on)
    VKDRAFT_TEST_SWEEP=short ASAN_OPTIONS=detect_leaks=0 run_suite build-asan "--suite loaders --suite tokenizer --suite runtime --suite ops --suite models --suite figure --suite answer --suite unit --no-suite wg16" \
        --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dtest_validation=false || rc=1
fi
if [ "${VKDRAFT_SKIP_FUZZ:-0}" != 1 ]; then
    # a short bounded libFuzzer run of every loader (docs/fuzzing.md for long runs)
    targets=$(sed -n "s/^ *\['\(fuzz_[a-z_]*\)'.*/tests\/fuzz\/\1/p" tests/fuzz/meson.build | tr '\n' ' ')
    CC=clang run_suite build-fuzz "--suite fuzz" --buildtype=debug -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false || rc=1
    targets=""
fi

python3 - "$broken" "${summ[@]}" <<'PY'
import json, sys
p = s = 0
f = int(sys.argv[1])
for path in sys.argv[2:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r == "OK" or r == "EXPECTEDFAIL": p += 1
        elif r == "SKIP": s += 1
        else: f += 1
print(f"{p} passed, {f} failed" + (f", {s} skipped" if s else ""))
sys.exit(1 if f else 0)
PY
[ $? -eq 0 ] && [ $rc -eq 0 ]
