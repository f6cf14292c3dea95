#!/usr/bin/python3
"""st_testgen.py: writes safetensors test data for tests/loaders/test_safetensors.c.

  st_testgen.py OUT_DIR

Python stdlib only (struct, json), written from the format description
(https://github.com/huggingface/safetensors), independently of the C parser under test.

OUT_DIR/manifest.json describes what was written:
  "valid":    {file: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "values"}}}}
              values: every element in row-major order; floats as JSON numbers (exact:
              they are the float64 value of the stored word), integers as decimal strings
              (64-bit values do not fit a double)
  "models":   {folder: {"shards": [file...], "tensors": {name: {..., "shard": file}}}}
  "hostile":  [{"file", "expect"}]        each file must be rejected, the message must
                                          contain "expect"
  "hostile_models": [{"dir", "expect", "stage"}]   stage "open" or "load": when it fails
"""
import json
import os
import random
import struct
import sys

# dtype -> (struct code, element size, kind)
DTYPES = {
    "BF16": ("H", 2, "bf16"), "F16": ("e", 2, "float"), "F32": ("f", 4, "float"),
    "F64": ("d", 8, "float"), "I8": ("b", 1, "int"), "U8": ("B", 1, "int"),
    "I16": ("h", 2, "int"), "U16": ("H", 2, "int"), "I32": ("i", 4, "int"),
    "U32": ("I", 4, "int"), "I64": ("q", 8, "int"), "U64": ("Q", 8, "int"),
    "BOOL": ("?", 1, "bool"),
}
INT_RANGE = {"I8": (-128, 127), "U8": (0, 255), "I16": (-32768, 32767), "U16": (0, 65535),
             "I32": (-2**31, 2**31 - 1), "U32": (0, 2**32 - 1), "I64": (-2**63, 2**63 - 1),
             "U64": (0, 2**64 - 1)}


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def make_values(rng, dtype, n):
    """(python values to pack, manifest values)"""
    code, size, kind = DTYPES[dtype]
    if kind == "bf16":
        words = []
        for _ in range(n):
            f = struct.unpack("<f", struct.pack("<f", rng.uniform(-4, 4)))[0]
            words.append(struct.unpack("<I", struct.pack("<f", f))[0] >> 16)  # truncate: exact word
        vals = [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
        return words, vals
    if kind == "float":
        raw = [rng.uniform(-1000, 1000) for _ in range(n)]
        vals = [struct.unpack("<" + code, struct.pack("<" + code, v))[0] for v in raw]
        return vals, vals
    if kind == "bool":
        vals = [rng.random() < 0.5 for _ in range(n)]
        return vals, [str(int(v)) for v in vals]
    lo, hi = INT_RANGE[dtype]
    vals = [rng.randint(lo, hi) for _ in range(n)]
    if n > 1:  # the extremes catch sign and width mistakes
        vals[0], vals[-1] = lo, hi
    return vals, [str(v) for v in vals]


def write_st(path, tensors, metadata=None, order=None):
    """tensors: {name: (dtype, shape, packed_bytes)}; data laid out in `order` (default
    sorted names); header padded with spaces to a multiple of 8."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    chunks = []
    for name in (order or sorted(tensors)):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def tensor(rng, dtype, shape):
    n = numel(shape)
    raw, vals = make_values(rng, dtype, n)
    code = DTYPES[dtype][0]
    data = struct.pack("<%d%s" % (n, code), *raw) if n else b""
    return (dtype, shape, data), {"dtype": dtype, "shape": shape, "values": vals}


def raw_file(path, header_bytes, data=b"", hlen=None):
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes) if hlen is None else hlen))
        f.write(header_bytes + data)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1234)
    man = {"valid": {}, "models": {}, "hostile": [], "hostile_models": []}

    # one file with every dtype, a scalar, an empty tensor, odd shapes, rank 8
    ts, desc = {}, {}
    shapes = [[3, 5], [7], [2, 3, 4], [1, 1, 1, 2], [13]]
    for i, dt in enumerate(DTYPES):
        name = "t.%s" % dt.lower()
        ts[name], desc[name] = tensor(rng, dt, shapes[i % len(shapes)])
    for name, dt, shape in [("scalar.f32", "F32", []), ("empty.bf16", "BF16", [0, 4]),
                            ("empty2.i32", "I32", [5, 0]), ("rank8.u8", "U8", [1, 2, 1, 2, 1, 2, 1, 3])]:
        ts[name], desc[name] = tensor(rng, dt, shape)
    meta = {"format": "pt", "note": "vkdraft test \u00e9"}
    write_st(os.path.join(out, "all_dtypes.safetensors"), ts, meta)
    man["valid"]["all_dtypes.safetensors"] = {"metadata": meta, "tensors": desc}

    # data not in name order, no metadata
    ts2, desc2 = {}, {}
    for name, dt, shape in [("b", "F32", [4]), ("a", "F16", [2, 2]), ("c", "BF16", [3])]:
        ts2[name], desc2[name] = tensor(rng, dt, shape)
    write_st(os.path.join(out, "reordered.safetensors"), ts2, None, order=["c", "a", "b"])
    man["valid"]["reordered.safetensors"] = {"metadata": {}, "tensors": desc2}

    # models: single file and three shards with an index
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] + \
            ["model.layers.%d.mlp.up_proj.weight" % i for i in range(4)]
    weights = {}
    wdesc = {}
    for n in names:
        weights[n], wdesc[n] = tensor(rng, "BF16", [3, 5] if "proj" in n or "embed" in n else [5])
    single = os.path.join(out, "model_single")
    os.makedirs(single, exist_ok=True)
    write_st(os.path.join(single, "model.safetensors"), weights, {"format": "pt"})
    man["models"]["model_single"] = {
        "shards": ["model.safetensors"],
        "tensors": {n: dict(wdesc[n], shard="model.safetensors") for n in names}}

    def sharded(folder, groups, index_map=None, extra=None):
        d = os.path.join(out, folder)
        os.makedirs(d, exist_ok=True)
        wm = {}
        files = []
        for k, g in enumerate(groups):
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, len(groups))
            files.append(fn)
            write_st(os.path.join(d, fn), {n: weights[n] for n in g}, {"format": "pt"})
            for n in g:
                wm[n] = fn
        if index_map is not None:
            wm = index_map(wm)
        idx = {"metadata": {"total_size": 0}, "weight_map": wm}
        if extra:
            idx = extra(idx)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            f.write(idx if isinstance(idx, str) else json.dumps(idx, indent=2))
        return files, wm

    groups = [names[:3], names[3:5], names[5:]]
    files, wm = sharded("model_sharded", groups)
    man["models"]["model_sharded"] = {
        "shards": files, "tensors": {n: dict(wdesc[n], shard=wm[n]) for n in names}}

    # a complete tiny Qwen3 folder (config.json, generation_config.json, one shard) for the
    # inspect command's tests
    H, L, nq, nkv, d, F, V = 8, 2, 2, 1, 4, 12, 32
    shapes = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
    for i in range(L):
        p = "model.layers.%d." % i
        shapes.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                       p + "self_attn.q_proj.weight": [nq * d, H], p + "self_attn.k_proj.weight": [nkv * d, H],
                       p + "self_attn.v_proj.weight": [nkv * d, H], p + "self_attn.o_proj.weight": [H, nq * d],
                       p + "self_attn.q_norm.weight": [d], p + "self_attn.k_norm.weight": [d],
                       p + "mlp.gate_proj.weight": [F, H], p + "mlp.up_proj.weight": [F, H],
                       p + "mlp.down_proj.weight": [H, F]})
    tiny = os.path.join(out, "model_qwen3_tiny")
    os.makedirs(tiny, exist_ok=True)
    write_st(os.path.join(tiny, "model.safetensors"),
             {n: tensor(rng, "BF16", s)[0] for n, s in shapes.items()}, {"format": "pt"})
    with open(os.path.join(tiny, "config.json"), "w") as f:
        json.dump({"architectures": ["Qwen3ForCausalLM"], "hidden_size": H, "num_hidden_layers": L,
                   "num_attention_heads": nq, "num_key_value_heads": nkv, "head_dim": d,
                   "intermediate_size": F, "vocab_size": V, "tie_word_embeddings": True,
                   "torch_dtype": "bfloat16", "eos_token_id": V - 1, "bos_token_id": V - 2}, f, indent=2)
    with open(os.path.join(tiny, "generation_config.json"), "w") as f:
        json.dump({"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                   "eos_token_id": [V - 1, V - 2]}, f)

    # ---- hostile model folders ----
    hm = man["hostile_models"]

    def missing_shard(wm):
        wm = dict(wm)
        wm["model.norm.weight"] = "model-00009-of-00009.safetensors"
        return wm
    sharded("bad_missing_shard", groups, missing_shard)
    hm.append({"dir": "bad_missing_shard", "stage": "open",
               "expect": "'model.norm.weight' is mapped to shard 'model-00009-of-00009.safetensors', which does not exist"})

    def ghost(wm):
        wm = dict(wm)
        wm["model.layers.9.mlp.up_proj.weight"] = "model-00002-of-00003.safetensors"
        return wm
    sharded("bad_tensor_not_in_shard", groups, ghost)
    hm.append({"dir": "bad_tensor_not_in_shard", "stage": "load",
               "expect": "maps tensor 'model.layers.9.mlp.up_proj.weight' to 'model-00002-of-00003.safetensors', which does not contain it"})

    # the same tensor written into two shards, the index mapping it to the second
    sharded("bad_two_shards", [names[:3], names[3:5] + [names[0]], names[5:]],
            lambda wm: wm)
    hm.append({"dir": "bad_two_shards", "stage": "load",
               "expect": "tensor 'model.embed_tokens.weight' is also in this shard"})

    def drop(wm):
        wm = dict(wm)
        del wm["model.norm.weight"]
        return wm
    sharded("bad_not_in_index", groups, drop)
    hm.append({"dir": "bad_not_in_index", "stage": "load",
               "expect": "tensor 'model.norm.weight' is not listed in model.safetensors.index.json"})

    sharded("bad_index_json", groups, None, lambda idx: '{"weight_map": {"a": "x.safetensors",}')
    hm.append({"dir": "bad_index_json", "stage": "open", "expect": "invalid JSON"})
    sharded("bad_index_path", groups, lambda wm: dict(wm, **{"model.norm.weight": "../etc/passwd"}))
    hm.append({"dir": "bad_index_path", "stage": "open", "expect": "expected a shard file name"})
    sharded("bad_index_dup", groups, None,
            lambda idx: '{"weight_map": {"a": "model-00001-of-00003.safetensors", '
                        '"a": "model-00002-of-00003.safetensors"}}')
    hm.append({"dir": "bad_index_dup", "stage": "open", "expect": "tensor 'a' is listed twice"})
    os.makedirs(os.path.join(out, "bad_empty_dir"), exist_ok=True)
    hm.append({"dir": "bad_empty_dir", "stage": "open", "expect": "no model.safetensors"})

    # ---- hostile files ----
    H = man["hostile"]

    def bad(name, expect, header=None, data=b"", hlen=None, raw=None):
        p = os.path.join(out, "hostile_" + name + ".safetensors")
        if raw is not None:
            with open(p, "wb") as f:
                f.write(raw)
        else:
            hb = header if isinstance(header, bytes) else json.dumps(header).encode()
            raw_file(p, hb, data, hlen)
        H.append({"file": os.path.basename(p), "expect": expect})

    ok = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    bad("empty", "empty file", raw=b"")
    bad("7bytes", "too short for the 8-byte header length", raw=b"\x10\0\0\0\0\0\0")
    bad("truncated_header", "runs past the end of the file", raw=struct.pack("<Q", 64) + b'{"a":')
    bad("hlen_past_eof", "runs past the end of the file", {"a": ok}, b"\0" * 8, hlen=4096)
    bad("huge_hlen", "exceeds the 100000000-byte limit", raw=struct.pack("<Q", 2**63 + 5) + b"{}")
    bad("hlen_101mb", "exceeds the 100000000-byte limit", raw=struct.pack("<Q", 101_000_000) + b"{}")
    bad("not_json", "invalid JSON", b"{not json at all}   ")
    bad("not_object", "must start with '{'", b"[1, 2, 3]")
    bad("trailing_garbage", "unexpected data after the JSON value", b'{"a": 1} xx')
    bad("entry_not_object", "tensor 'a': expected an object, got an integer", {"a": 1})
    bad("offsets_out_of_range", "data_offsets [0, 16] run past the data section (8 bytes)",
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    bad("begin_gt_end", "data_offsets [8, 0]: begin > end",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8)
    bad("overlap", "overlap",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    bad("overlap_after_empty", "overlap",
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
         "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\0" * 16)
    bad("size_mismatch", "tensor 'model.norm.weight': data_offsets [0, 20] do not match shape [64] x BF16 (128 bytes)",
        {"model.norm.weight": {"dtype": "BF16", "shape": [64], "data_offsets": [0, 20]}}, b"\0" * 20)
    bad("shape_overflow", "shape [1099511627776, 1099511627776] x F32 overflows",
        {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\0" * 8)
    bad("shape_overflow_bytes", "overflows",
        {"a": {"dtype": "F64", "shape": [2**31, 2**31], "data_offsets": [0, 8]}}, b"\0" * 8)
    bad("negative_shape", "field 'shape': entry 0: expected a non-negative integer, got a negative integer",
        {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8)
    bad("float_shape", "field 'shape': entry 1: expected a non-negative integer, got a non-integer number",
        {"a": {"dtype": "F32", "shape": [1, 2.5], "data_offsets": [0, 8]}}, b"\0" * 8)
    bad("negative_offset", "expected two non-negative integers",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8)
    bad("three_offsets", "expected an array of two integers",
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}}, b"\0" * 8)
    bad("unknown_dtype", "unknown dtype 'F8_E4M3'",
        {"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2)
    bad("dtype_not_string", "field 'dtype': expected a string, got an integer",
        {"a": {"dtype": 5, "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2)
    bad("rank9", "rank 9 exceeds 8",
        {"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, b"\0")
    bad("duplicate_name", "tensor 'w' appears twice",
        b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8)
    bad("metadata_not_string", "field '__metadata__': key 'n': expected a string, got an integer",
        {"__metadata__": {"n": 3}, "a": ok}, b"\0" * 8)
    bad("missing_shape", "field 'shape': expected an array, got nothing",
        {"a": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
