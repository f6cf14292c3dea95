#!/usr/bin/env python3
"""test_rules.py: tools/check_rules.py passes on the tree and catches each rule when broken
(a mutable static, a static pointer array whose pointers are not const, abort() in library
code, a file over 1000 lines), on copies of the product folders."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("VKDRAFT_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
CHECK = os.path.join(SRC, "tools", "check_rules.py")
FOLDERS = ["base", "loaders", "text", "runtime", "ops", "models", "methods", "apps", "shaders"]
fails = 0


def expect(cond, what):
    global fails
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        fails += 1


p = subprocess.run([sys.executable, CHECK, SRC], capture_output=True, text=True)
expect(p.returncode == 0, "check_rules on the tree: " + (p.stdout.strip().splitlines() or ["?"])[-1])
if p.returncode:
    print(p.stdout)

plants = [  # (file, text appended, words the report must contain)
    ("loaders/config.c", "static int calls_so_far;\n", "mutable static state"),
    ("runtime/memory.c", "static const char *names[] = {\"a\"};\n", "mutable static state"),
    ("models/target.c", "void vkd_never(void) { static double cache[4]; (void)cache; }\n", "mutable static state"),
    ("text/answer.c", "void vkd_never2(void) { abort(); }\n", "abort() in library code"),
    ("ops/ops_basic.c", "\n" * 1000, "more than 1000"),
]
for f, text, words in plants:
    with tempfile.TemporaryDirectory() as tmp:
        for d in FOLDERS:
            shutil.copytree(os.path.join(SRC, d), os.path.join(tmp, d))
        with open(os.path.join(tmp, f), "a") as fh:
            fh.write(text)
        p = subprocess.run([sys.executable, CHECK, tmp], capture_output=True, text=True)
        expect(p.returncode == 1 and f in p.stdout and words in p.stdout,
               f"planted in {f}: reported as '{words}'")
# allowed forms stay quiet
with tempfile.TemporaryDirectory() as tmp:
    for d in FOLDERS:
        shutil.copytree(os.path.join(SRC, d), os.path.join(tmp, d))
    with open(os.path.join(tmp, "loaders/config.c"), "a") as fh:
        fh.write("static const char *const vkd_ok_names[] = {\"a\"};\nstatic const int vkd_ok_k = 3;\n"
                 "static inline int vkd_ok_f(void) { return 1; }\n/* static int in_a_comment; abort() */\n")
    p = subprocess.run([sys.executable, CHECK, tmp], capture_output=True, text=True)
    expect(p.returncode == 0, "const tables, inline functions and comments are not findings")

print(f"rules: {fails} failure(s)")
sys.exit(1 if fails else 0)
