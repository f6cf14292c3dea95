#!/usr/bin/env python3
"""check_layering.py: every #include "..." in the product folders against the layering table.

    python3 tools/check_layering.py [SOURCE_ROOT]

A folder may include headers of its own folder and of the folders listed for it below (the
table of docs/architecture.md). Headers are named by bare file name (no "../", no folder
prefix); each bare name must belong to exactly one product folder. Internal headers (those
listed in INTERNAL) are for their own folder only. Prints one line per violation naming the
file, line, header and rule, and exits 1 if there was any; prints a one-line summary
otherwise. The build enforces the same table through per-library include directories (see
the top-level meson.build); this script also catches an include that the build would let
through transitively, e.g. ops/ naming a loader header that a runtime header happened to
include.
"""
import os
import re
import sys

# folder -> folders whose headers it may include (besides its own)
ALLOWED = {
    "base": [],
    "loaders": ["base"],
    "text": ["base"],
    "runtime": ["base", "shaders"],
    "ops": ["runtime", "base", "shaders"],
    "models": ["ops", "runtime", "base", "loaders"],
    "methods": ["models", "ops", "runtime", "base", "loaders", "text"],
    "apps": ["methods", "models", "ops", "runtime", "base", "loaders", "text"],
    "shaders": [],
}
# headers private to their folder
INTERNAL = {"internal.h", "ops_internal.h", "tok_internal.h", "chat_template_internal.h",
            "chat_template_value.h", "answer_internal.h", "answer_str.h",
            "vkd_push.h", "vkd_variants.h"}
# vkd_push.h is shared by ops/*.c and the GLSL of shaders/ (the push-constant layouts)
INTERNAL_ALSO = {"vkd_push.h": ["ops"]}
# generated at build time into the build tree of the folder named
GENERATED = {"vkd_shaders.h": "shaders", "vkd_variants.h": "ops"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    owner, problems, files = {}, [], 0
    for folder in ALLOWED:
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            problems.append(f"{folder}/: product folder missing")
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".h") or name.endswith(".glsl"):
                if name in owner:
                    problems.append(f"{folder}/{name}: header name also in {owner[name]}/ "
                                    "(bare-name includes need unique names)")
                owner[name] = folder
    for name, folder in GENERATED.items():
        owner.setdefault(name, folder)
    for folder, allowed in ALLOWED.items():
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            files += 1
            with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                for ln, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    hdr = m.group(1)
                    where = f"{folder}/{name}:{ln}: \"{hdr}\""
                    if "/" in hdr:
                        problems.append(f"{where}: include by bare file name, not a path")
                        continue
                    home = owner.get(hdr)
                    if home is None:
                        problems.append(f"{where}: no product folder holds this header")
                    elif home != folder and home not in allowed:
                        problems.append(f"{where}: {folder}/ may not include {home}/ "
                                        f"(allowed: {', '.join(allowed) or 'nothing'})")
                    elif hdr in INTERNAL and home != folder and folder not in INTERNAL_ALSO.get(hdr, []):
                        problems.append(f"{where}: internal header of {home}/")
    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} violation(s) in {files} files")
        return 1
    print(f"layering: {files} files in {len(ALLOWED)} folders follow the table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
