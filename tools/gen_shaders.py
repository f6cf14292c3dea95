#!/usr/bin/env python3
"""gen_shaders.py: compile every GLSL compute shader variant to SPIR-V, embed it, and generate
the C functions that select a variant.

A shaders/*.comp declares its variants in one of two ways:
  //! axes AXIS=V1,V2 AXIS=V ...   the product of the values listed (several lines: their union)
  //! variant NAME [DEFINE[=VALUE] ...]   one variant by hand (kernels without axes)
(neither: one variant named after the file). The axes and their values are the table AXES
below: each value sets GLSL defines and stands for one C value of a field of struct
vkd_variant. An axes variant is named FILE_STEM plus its value of every axis that takes more
than one value in the file (matmul_gemv.comp, dtype=bf16 vec=vec reduce=sg: MATMUL_GEMV_BF16_VEC_SG).
`//! family NAME` (default: the file stem) puts the file's axes variants into the selection
function vkd_select_NAME(const vkd_variant *key); several files may share a family (matmul:
gemv, gemm, blocks and grad). A variant matches a key when every axis its line names has the
key's value (an axis it does not name is free: matmul_blocks serves any shape); two variants
of one family that one key could match are an error here, at build time.
`//! texel B ...` marks uniform texel buffer bindings (the others are storage buffers).

Outputs: vkd_shaders.h/.c (enum vkd_shader_id, one entry per variant, and the SPIR-V words:
the runtime library) and vkd_variants.h/.c (struct vkd_variant, the selection functions and
vkd_variant_table listing every axes variant with its key: the ops library). Every module is
checked with spirv-val.
usage: gen_shaders.py SHADER_DIR OUT_C OUT_H VARIANTS_C VARIANTS_H DEPFILE GLSLC SPIRV_VAL
"""
import concurrent.futures as cf
import itertools
import os
import re
import subprocess
import sys
import tempfile

# axis -> (C field, C type, doc, [(value, C constant, GLSL defines)]); the first value of each
# axis is the C zero value, so a zero-initialised vkd_variant means f32, row-major, forward,
# streaming shape, scalar loads, shared-memory reduction. C types named vkd_variant_* are
# generated as enums here; vkd_dtype and vkd_layout come from vkd_runtime.h.
AXES = {
    "dtype": ("dtype", "vkd_dtype", "element type of the weight (table, norm weight) read",
              [("f32", "VKD_DTYPE_F32", ["DT_F32=1"]), ("f16", "VKD_DTYPE_F16", ["DT_F16=1"]),
               ("bf16", "VKD_DTYPE_BF16", ["DT_BF16=1"])]),
    "layout": ("layout", "vkd_layout", "layout of the weight in device memory",
               [("rows", "VKD_LAYOUT_ROWS", []), ("blocks", "VKD_LAYOUT_BLOCKS", [])]),
    "trans": ("trans", "vkd_variant_trans",
              "the forward (n) or a gradient: of the input (dx; matmul: dx = dy W) or of the weight "
              "(dw; matmul: dw = dy^T x)",
              [("n", "VKD_TRANS_N", []), ("dx", "VKD_TRANS_DX", ["DX=1"]),
               ("dw", "VKD_TRANS_DW", ["DW=1"])]),
    "shape": ("shape", "vkd_variant_shape",
              "few rows of x streaming W once (GEMV), tiles for many rows (GEMM), or register tiles fed by subgroup broadcasts (BCAST: CPU drivers)",
              [("gemv", "VKD_SHAPE_GEMV", []), ("gemm", "VKD_SHAPE_GEMM", []),
               ("bcast", "VKD_SHAPE_BCAST", [])]),
    "vec": ("vec", "bool", "16-byte loads of W and x (rows a multiple of 8 elements)",
            [("scalar", "false", []), ("vec", "true", ["VEC=1"])]),
    "reduce": ("sg", "bool", "reduction across the workgroup by subgroupAdd (else shared memory)",
               [("shm", "false", []), ("sg", "true", ["SG=1"])]),
}
ENUM_TYPES = {"vkd_variant_trans": "trans", "vkd_variant_shape": "shape"}


def fail(msg):
    sys.exit(f"gen_shaders: {msg}")


VKD_TEXEL_BINDINGS = 3  # runtime/internal.h: VKD_TEXEL_BINDINGS


def texel_mask_of(path):
    """Bindings declared `//! texel B ...` are uniform texel buffers (the rest storage buffers)."""
    mask = 0
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\s*//!\s*texel\s+(.*)$", line)
        if m:
            for b in m.group(1).split():
                mask |= 1 << int(b)
    if mask >= 1 << VKD_TEXEL_BINDINGS:
        fail(f"{path}: only bindings 0..{VKD_TEXEL_BINDINGS - 1} may be texel buffers (runtime/pipeline.c)")
    return mask


def parse_axes(path, words):
    """One `//! axes` line -> [(axis, [values])] in the order written."""
    out = []
    for w in words:
        if "=" not in w:
            fail(f"{path}: '//! axes' expects AXIS=V1,V2,..., got '{w}'")
        axis, vals = w.split("=", 1)
        if axis not in AXES:
            fail(f"{path}: unknown axis '{axis}' (axes: {', '.join(AXES)})")
        known = [v for v, _, _ in AXES[axis][3]]
        vals = vals.split(",")
        for v in vals:
            if v not in known:
                fail(f"{path}: axis {axis} has no value '{v}' (values: {', '.join(known)})")
        if any(a == axis for a, _ in out):
            fail(f"{path}: axis {axis} named twice on one line")
        out.append((axis, vals))
    return out


def variants_of(path):
    """[(name, defines, key or None)], family; key: {axis: value} of an axes variant."""
    stem = os.path.splitext(os.path.basename(path))[0]
    plain, lines, family = [], [], stem
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\s*//!\s*(variant|axes|family)\b(.*)$", line)
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).split()
        if kind == "variant":
            if not rest:
                fail(f"{path}: '//! variant' needs a name")
            plain.append((rest[0], rest[1:], None))
        elif kind == "family":
            if len(rest) != 1 or not re.fullmatch(r"[a-z0-9_]+", rest[0]):
                fail(f"{path}: '//! family' takes one lower-case name")
            family = rest[0]
        else:
            lines.append(parse_axes(path, rest))
    varying = set()
    for ax in AXES:
        vals = {v for line in lines for a, vs in line if a == ax for v in vs}
        if len(vals) > 1:
            varying.add(ax)
    out = []
    for line in lines:
        names = [a for a, _ in line]
        for combo in itertools.product(*[vs for _, vs in line]):
            key = dict(zip(names, combo))
            suffix = [key[a].upper() for a in names if a in varying]
            defines = []
            for a in names:
                defines += next(d for v, _, d in AXES[a][3] if v == key[a])
            out.append(("_".join([stem.upper()] + suffix), defines, key))
    if not plain and not lines:
        out.append((stem, [], None))
    return plain + out, family


def compile_one(job):
    name, src, defines, glslc, spirv_val, shader_dir, tmp = job
    spv = os.path.join(tmp, name + ".spv")
    dep = os.path.join(tmp, name + ".d")
    if os.path.basename(glslc).startswith("glslangValidator"):
        cmd = [glslc, "-V", "-S", "comp", "--target-env", "vulkan1.2", "-I" + shader_dir,
               "--depfile", dep, "-o", spv, src] + ["-D" + d for d in defines]
    else:
        cmd = [glslc, "-fshader-stage=compute", "--target-env=vulkan1.2", "-O", "-I", shader_dir,
               "-MD", "-MF", dep, "-o", spv, src] + ["-D" + d for d in defines]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return name, None, f"{src} ({name}):\n{r.stderr}", []
    v = subprocess.run([spirv_val, "--target-env", "vulkan1.2", spv], capture_output=True, text=True)
    if v.returncode != 0:
        return name, None, f"spirv-val {name}:\n{v.stderr}{v.stdout}", []
    deps = []
    if os.path.exists(dep):
        txt = open(dep).read().replace("\\\n", " ")
        deps = txt.split(":", 1)[1].split() if ":" in txt else []
    return name, open(spv, "rb").read(), None, deps


def check_families(families):
    """No key may match two variants of one family: two variants conflict when they agree on
    every axis both name."""
    for fam, members in families.items():
        for (n1, k1), (n2, k2) in itertools.combinations(members, 2):
            if all(k1[a] == k2[a] for a in k1.keys() & k2.keys()):
                fail(f"family {fam}: one key selects both {n1} and {n2} (they differ in no axis "
                     "both name)")


def c_value(axis, value):
    return next(c for v, c, _ in AXES[axis][3] if v == value)


def write_variants(out_c, out_h, families, order):
    with open(out_h, "w") as h:
        h.write("/* generated by tools/gen_shaders.py from the `//! axes` lines of the shaders:\n"
                " * the key of a shader variant and one selection function per family. */\n")
        h.write("#ifndef VKD_VARIANTS_H\n#define VKD_VARIANTS_H\n#include <stdbool.h>\n"
                "#include \"vkd_runtime.h\"\n\n")
        for ctype, axis in ENUM_TYPES.items():
            h.write(f"/* axis {axis}: {AXES[axis][2]} */\ntypedef enum {ctype} {{\n")
            for i, (v, c, _) in enumerate(AXES[axis][3]):
                h.write(f"    {c} = {i}, /* {axis}={v} */\n")
            h.write(f"}} {ctype};\n\n")
        h.write("/* Axis bits (vkd_variant_entry.axes: the axes a variant names). */\n")
        for i, axis in enumerate(AXES):
            h.write(f"#define VKD_AXIS_{axis.upper()} (1u << {i})\n")
        h.write("\n/* What a kernel is specialised for; zero-initialised: the first value of each "
                "axis. */\ntypedef struct vkd_variant {\n")
        for axis, (field, ctype, doc, vals) in AXES.items():
            h.write(f"    {ctype} {field}; /* {axis}: {doc} ({', '.join(v for v, _, _ in vals)}) */\n")
        h.write("} vkd_variant;\n\n")
        h.write("typedef struct vkd_variant_entry {\n    const char *family;\n"
                "    vkd_shader_id shader;\n    uint32_t axes; /* VKD_AXIS_* bits: the axes this "
                "variant names; the others are free */\n    vkd_variant key;\n} vkd_variant_entry;\n\n")
        n = sum(len(m) for m in families.values())
        h.write(f"#define VKD_VARIANT_COUNT {n}u\n")
        h.write("/* Every axes variant of every family, family by family. */\n"
                "extern const vkd_variant_entry vkd_variant_table[VKD_VARIANT_COUNT];\n\n")
        h.write("/* The variant of a family matching key (every axis the variant names equal), or\n"
                " * VKD_SHADER_COUNT where the family has none. */\n")
        for fam in order:
            h.write(f"vkd_shader_id vkd_select_{fam}(const vkd_variant *key);\n")
        h.write("/* The same by family name (tests, tools); VKD_SHADER_COUNT for an unknown family. */\n"
                "vkd_shader_id vkd_select_family(const char *family, const vkd_variant *key);\n")
        h.write("\n#endif\n")
    with open(out_c, "w") as c:
        c.write("/* generated by tools/gen_shaders.py */\n#include \"vkd_variants.h\"\n\n"
                "#include <string.h>\n\n")
        c.write("const vkd_variant_entry vkd_variant_table[VKD_VARIANT_COUNT] = {\n")
        first, i = {}, 0
        for fam in order:
            first[fam] = i
            for name, key in families[fam]:
                bits = " | ".join(f"VKD_AXIS_{a.upper()}" for a in AXES if a in key) or "0u"
                fields = ", ".join(f".{AXES[a][0]} = {c_value(a, key[a])}" for a in AXES if a in key)
                c.write(f"    {{\"{fam}\", VKD_SHADER_{name}, {bits}, {{{fields}}}}},\n")
                i += 1
        c.write("};\n\n")
        c.write("static vkd_shader_id select_in(uint32_t first, uint32_t count, const vkd_variant *k) {\n"
                "    for (uint32_t i = first; i < first + count; i++) {\n"
                "        const vkd_variant_entry *e = &vkd_variant_table[i];\n")
        for axis, (field, _, _, _) in AXES.items():
            c.write(f"        if ((e->axes & VKD_AXIS_{axis.upper()}) && e->key.{field} != k->{field}) continue;\n")
        c.write("        return e->shader;\n    }\n    return VKD_SHADER_COUNT;\n}\n")
        for fam in order:
            c.write(f"\nvkd_shader_id vkd_select_{fam}(const vkd_variant *key) {{\n"
                    f"    return select_in({first[fam]}u, {len(families[fam])}u, key);\n}}\n")
        c.write("\nvkd_shader_id vkd_select_family(const char *family, const vkd_variant *key) {\n")
        for fam in order:
            c.write(f"    if (!strcmp(family, \"{fam}\")) return vkd_select_{fam}(key);\n")
        c.write("    return VKD_SHADER_COUNT;\n}\n")


def main():
    if len(sys.argv) != 9:
        fail("usage: gen_shaders.py SHADER_DIR OUT_C OUT_H VARIANTS_C VARIANTS_H DEPFILE GLSLC SPIRV_VAL")
    shader_dir, out_c, out_h, var_c, var_h, depfile, glslc, spirv_val = sys.argv[1:9]
    srcs = sorted(os.path.join(shader_dir, f) for f in os.listdir(shader_dir) if f.endswith(".comp"))
    jobs, seen, masks, families, order = [], {}, {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for src in srcs:
            variants, family = variants_of(src)
            for name, defines, key in variants:
                if name in seen:
                    fail(f"variant '{name}' declared in {seen[name]} and {src}")
                seen[name] = src
                jobs.append((name, src, defines, glslc, spirv_val, shader_dir, tmp))
                masks[name] = texel_mask_of(src)
                if key is not None:
                    if family not in families:
                        families[family] = []
                        order.append(family)
                    families[family].append((name, key))
        check_families(families)
        with cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
            results = list(ex.map(compile_one, jobs))
    errors = [e for _, _, e, _ in results if e]
    if errors:
        sys.stderr.write("\n".join(errors))
        sys.exit(1)
    deps = {os.path.abspath(shader_dir)} | {os.path.abspath(s) for s in srcs}
    for _, _, _, d in results:
        deps.update(os.path.abspath(x) for x in d)
    with open(out_h, "w") as h:
        h.write("/* generated by tools/gen_shaders.py: one entry per shader variant */\n")
        h.write("#ifndef VKD_SHADERS_H\n#define VKD_SHADERS_H\n#include <stddef.h>\n#include <stdint.h>\n\n")
        h.write("typedef enum vkd_shader_id {\n")
        for name, _, _, _ in results:
            h.write(f"    VKD_SHADER_{name.upper()},\n")
        h.write("    VKD_SHADER_COUNT\n} vkd_shader_id;\n\n")
        h.write("typedef struct vkd_shader_spirv {\n    const char *name;\n    const uint32_t *code;\n"
                "    size_t bytes;\n    uint32_t texel_mask; /* bit b: binding b is a uniform texel buffer */\n"
                "} vkd_shader_spirv;\n\n")
        h.write("extern const vkd_shader_spirv vkd_shader_table[VKD_SHADER_COUNT];\n\n#endif\n")
    with open(out_c, "w") as c:
        c.write("/* generated by tools/gen_shaders.py */\n#include \"vkd_shaders.h\"\n\n")
        for name, spv, _, _ in results:
            words = [int.from_bytes(spv[i:i + 4], "little") for i in range(0, len(spv), 4)]
            c.write(f"static const uint32_t spv_{name}[{len(words)}] = {{\n")
            for i in range(0, len(words), 8):
                c.write("    " + ", ".join(f"0x{w:08x}u" for w in words[i:i + 8]) + ",\n")
            c.write("};\n")
        c.write("\nconst vkd_shader_spirv vkd_shader_table[VKD_SHADER_COUNT] = {\n")
        for name, spv, _, _ in results:
            c.write(f"    {{\"{name}\", spv_{name}, sizeof spv_{name}, {masks[name]}u}},\n")
        c.write("};\n")
    write_variants(var_c, var_h, families, order)
    with open(depfile, "w") as d:
        d.write(out_c.replace(" ", "\\ ") + ": " + " ".join(x.replace(" ", "\\ ") for x in sorted(deps)) + "\n")


if __name__ == "__main__":
    main()
