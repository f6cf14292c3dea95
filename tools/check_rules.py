#!/usr/bin/env python3
"""check_rules.py: house rules over the product folders that a grep can hold.

    python3 tools/check_rules.py [SOURCE_ROOT]

  - no file over 1000 lines in the product folders (apps/ included);
  - library code (every product folder but apps/) neither aborts nor exits: no abort(),
    exit(), _Exit() or assert() (errors are vkd_result codes);
  - library code holds no mutable static state: every static variable, at file scope or in
    a function, is const all the way down (`static const char *const names[]`, not
    `static const char *names[]`, whose pointers could be reassigned).

EXEMPT lists findings that are known and owned by a piece of work in progress, each with
the reason; an exemption that no longer matches anything is itself reported, so the list
only shrinks. Prints one line per finding and exits 1 if there was any.
"""
import os
import re
import sys

PRODUCT = ["base", "loaders", "text", "runtime", "ops", "models", "methods", "apps", "shaders"]
LIBRARY = [f for f in PRODUCT if f != "apps"]
MAX_LINES = 1000
# (file, rule) -> why; the rule names are those printed below
EXEMPT = {}

CALL = re.compile(r"\b(abort|exit|_Exit|assert)\s*\(")
STATIC = re.compile(r"\bstatic\b")


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def mutable_static(decl):
    """decl: what follows 'static' on the line. True for a variable that is not const."""
    if re.match(r"\s*inline\b", decl) or re.match(r"\s*_?[Aa]ssert", decl):
        return False
    decl = re.sub(r"\{[^{}]*\}", "", decl)          # struct { ... } members are the type's
    head = re.split(r"[=;\[]", decl, maxsplit=1)[0]
    if "(" in head:                                 # a function (or function pointer)
        return False
    m = re.match(r"\s*(.*?)\b(\w+)\s*$", head)
    if not m:
        return False
    before = m.group(1)
    if "*" in before:                               # pointer: const must follow the last '*'
        return not re.search(r"\*\s*const\s*$", before)
    return not re.search(r"\bconst\b", before)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found, used = [], set()

    def report(path, rule, msg):
        if (path, rule) in EXEMPT:
            used.add((path, rule))
            return
        found.append(f"{path}: {msg}")

    files = 0
    for folder in PRODUCT:
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h", ".comp", ".glsl", ".py")):
                continue
            path = f"{folder}/{name}"
            with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            files += 1
            n = text.count("\n")
            if n > MAX_LINES:
                report(path, "lines", f"{n} lines, more than {MAX_LINES}")
            if folder not in LIBRARY or not name.endswith((".c", ".h")):
                continue
            code = strip_comments_and_strings(text)
            for ln, line in enumerate(code.split("\n"), 1):
                m = CALL.search(line)
                if m:
                    report(path, "abort", f"line {ln}: {m.group(1)}() in library code")
                for m in STATIC.finditer(line):
                    if mutable_static(line[m.end():]):
                        report(path, "static", f"line {ln}: mutable static state: {line.strip()}")
                        break
    for key, why in EXEMPT.items():
        if key not in used:
            found.append(f"{key[0]}: exemption '{key[1]}' no longer needed ({why}): remove it "
                         "from tools/check_rules.py")
    for p in found:
        print(p)
    print(f"rules: {len(found)} finding(s) in {files} files"
          + (f", {len(used)} exempt" if used else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
