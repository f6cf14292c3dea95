#!/usr/bin/env python3
"""test_layering.py: the layering table holds, and breaking it fails.

1. tools/check_layering.py passes on the tree, and fails (naming file and rule) on a copy of
   the product folders into which a forbidden include was planted.
2. The compiler refuses forbidden includes: for each library, the exact compile command the
   build uses for one of its sources (build/compile_commands.json) is run on a probe file
   that includes a header of a higher or unrelated layer; the header must not be found.
   The same command with an allowed header must compile (so a probe cannot fail for an
   unrelated reason).
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("VKDRAFT_BUILD_ROOT") or os.path.join(SRC, "build")
CHECK = os.path.join(SRC, "tools", "check_layering.py")
FOLDERS = ["base", "loaders", "text", "runtime", "ops", "models", "methods", "apps", "shaders"]
fails = 0


def expect(cond, what):
    global fails
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        fails += 1


def run_check(root):
    p = subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)
    return p.returncode, p.stdout


# ---- 1. the include table over the sources ----
rc, out = run_check(SRC)
expect(rc == 0, f"check_layering on the tree: {out.strip().splitlines()[-1] if out.strip() else out!r}")
plants = [  # (file, header, words the report must contain)
    ("loaders/config.c", "vkd_runtime.h", "loaders/ may not include runtime/"),
    ("ops/ops_basic.c", "vkd_target.h", "ops/ may not include models/"),
    ("runtime/memory.c", "vkd_ops.h", "runtime/ may not include ops/"),
    ("text/answer.c", "tokenizer.h", "text/ may not include loaders/"),
    ("methods/spec.c", "internal.h", "internal header of runtime/"),
    ("models/target.c", "../runtime/internal.h", "bare file name"),
]
for f, hdr, words in plants:
    with tempfile.TemporaryDirectory() as tmp:
        for d in FOLDERS:
            shutil.copytree(os.path.join(SRC, d), os.path.join(tmp, d),
                            ignore=shutil.ignore_patterns("*.comp", "*.glsl", "meson.build"))
        # headers of shaders/ are looked up by name; keep the .glsl names present
        for name in os.listdir(os.path.join(SRC, "shaders")):
            if name.endswith(".glsl"):
                open(os.path.join(tmp, "shaders", name), "w").close()
        with open(os.path.join(tmp, f), "a") as fh:
            fh.write(f'\n#include "{hdr}"\n')
        rc, out = run_check(tmp)
        expect(rc == 1 and f in out and words in out, f"planted {f} -> {hdr}: check_layering reports '{words}'")

# ---- 2. the compiler, with each library's own include directories ----
ccdb_path = os.path.join(BUILD, "compile_commands.json")
if not os.path.exists(ccdb_path):
    print(f"FAIL  {ccdb_path} missing (meson writes it at setup)")
    sys.exit(1)
ccdb = json.load(open(ccdb_path))


def command_for(source):
    """The build's compile command for `source` (relative to SRC) as an argv list."""
    want = os.path.realpath(os.path.join(SRC, source))
    for e in ccdb:
        path = os.path.realpath(os.path.join(e["directory"], e["file"]))
        if path == want and ("fuzz" not in e["output"] if "output" in e else True):
            argv = e["arguments"] if "arguments" in e else shlex.split(e["command"])
            return e["directory"], argv
    return None, None


def compiles(source, header):
    directory, argv = command_for(source)
    if argv is None:
        return None, f"no compile command for {source}"
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MQ", "-MF", "-c"):
            skip = True
            continue
        if a == "-MD" or os.path.realpath(os.path.join(directory, a)) == os.path.realpath(os.path.join(SRC, source)):
            continue
        out.append(a)
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.c")
        with open(probe, "w") as fh:
            fh.write(f'#include "{header}"\nint vkd_layering_probe;\n')
        p = subprocess.run(out + ["-fsyntax-only", "-c", probe], cwd=directory,
                           capture_output=True, text=True)
        return p.returncode == 0, p.stderr


probes = [  # (a source of the library, header, may it be seen?)
    ("loaders/config.c", "vkd_base.h", True),
    ("loaders/config.c", "vkd_runtime.h", False),
    ("loaders/config.c", "vkd_answer.h", False),
    ("text/answer.c", "vkd_base.h", True),
    ("text/answer.c", "tokenizer.h", False),
    ("text/answer.c", "vkd_runtime.h", False),
    ("runtime/memory.c", "vkd_base.h", True),
    ("runtime/memory.c", "vkd_ops.h", False),
    ("runtime/memory.c", "config.h", False),
    ("ops/ops_basic.c", "vkd_runtime.h", True),
    ("ops/ops_basic.c", "vkd_target.h", False),
    ("ops/ops_basic.c", "safetensors.h", False),
    ("models/target.c", "vkd_ops.h", True),
    ("models/target.c", "safetensors.h", True),
    ("models/target.c", "vkd_generate.h", False),
    ("models/target.c", "vkd_answer.h", False),
    ("methods/spec.c", "vkd_target.h", True),
    ("methods/spec.c", "cli.h", False),
]
for src, hdr, visible in probes:
    ok, msg = compiles(src, hdr)
    if ok is None:
        expect(False, msg)
        continue
    if visible:
        expect(ok, f"{src.split('/')[0]}/ with its build flags compiles #include \"{hdr}\"" +
               ("" if ok else ": " + msg.strip().splitlines()[0]))
    else:
        refused = (not ok) and hdr in msg and ("No such file" in msg or "not found" in msg)
        expect(refused, f"{src.split('/')[0]}/ with its build flags cannot find \"{hdr}\"")

print(f"layering: {fails} failure(s)")
sys.exit(1 if fails else 0)
