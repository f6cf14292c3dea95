"""st.py: a small, dependency-free safetensors reader/writer (numpy only).

Format (https://github.com/huggingface/safetensors): 8-byte little-endian header
length N, then N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {...}}, then the raw little-endian tensor bytes; offsets are relative to
the end of the header. The header is padded with spaces to a multiple of 8 bytes, as
the Rust writer does.

bf16 has no numpy dtype: a bf16 tensor is handled as its raw uint16 words. write()
accepts float arrays for BF16 and rounds them to bf16 (round to nearest, ties to
even); read() returns BF16 tensors widened to float32 unless raw=True.
"""
import json
import os
import struct

import numpy as np

# safetensors dtype name -> numpy dtype (little-endian). BF16 is stored as uint16 words.
NP_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def f32_to_bf16_bits(x):
    """float array -> uint16 bf16 words, round to nearest even (NaN stays NaN)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32)
    # uint32 wraps only for u >= 0xFFFF8000, which are NaNs, fixed below
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits):
    """uint16 bf16 words -> float32 (exact)."""
    b = np.asarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(x, dtype):
    """The float32 values a float array takes once stored as `dtype` (F32/F16/BF16)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.copy()
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    raise ValueError(f"round_to_dtype: unsupported dtype {dtype}")


def _encode(arr, dtype):
    """Array -> (bytes, shape) stored as `dtype`."""
    a = np.asarray(arr)
    if dtype == "BF16":
        if a.dtype == np.uint16:
            bits = a
        else:
            bits = f32_to_bf16_bits(a)
        return np.ascontiguousarray(bits, dtype="<u2").tobytes(), list(a.shape)
    if dtype not in NP_DTYPES:
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    return np.ascontiguousarray(a, dtype=NP_DTYPES[dtype]).tobytes(), list(a.shape)


def _default_dtype(a):
    a = np.asarray(a)
    for name, dt in NP_DTYPES.items():
        if name != "BF16" and a.dtype == dt:
            return name
    raise ValueError(f"no safetensors dtype for numpy dtype {a.dtype}")


class Lazy:
    """A tensor produced on demand: shape known up front, data made by fn() when
    written, so that multi-GB models never sit in memory whole."""

    def __init__(self, shape, fn):
        self.shape = tuple(int(s) for s in shape)
        self.fn = fn
        self.size = int(np.prod(self.shape)) if self.shape else 1


def _dtype_for(name, arr, dtypes):
    if isinstance(dtypes, str):
        if isinstance(arr, Lazy) or np.issubdtype(np.asarray(arr).dtype, np.floating):
            return dtypes
        return _default_dtype(arr)
    if dtypes and name in dtypes:
        return dtypes[name]
    if isinstance(arr, Lazy):
        raise ValueError(f"lazy tensor {name} needs an explicit dtype")
    return _default_dtype(arr)


def write(path, tensors, dtypes=None, metadata=None):
    """Write {name: array or Lazy} to `path`. dtypes: {name: "BF16"|...} or one string
    for all floating tensors; default keeps each array's own dtype. Tensors are stored
    in sorted name order (as the Rust/Python writers do). Returns bytes of data."""
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    header = {"__metadata__": meta}
    plan = []
    offset = 0
    for name in sorted(tensors):
        arr = tensors[name]
        dt = _dtype_for(name, arr, dtypes)
        if dt not in NP_DTYPES:
            raise ValueError(f"unsupported safetensors dtype {dt}")
        shape = list(arr.shape) if isinstance(arr, Lazy) else list(np.asarray(arr).shape)
        nbytes = (int(np.prod(shape)) if shape else 1) * NP_DTYPES[dt].itemsize
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        plan.append((name, arr, dt, nbytes))
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for name, arr, dt, nbytes in plan:
            a = arr.fn() if isinstance(arr, Lazy) else arr
            data, shape = _encode(a, dt)
            if len(data) != nbytes:
                raise ValueError(f"tensor {name}: produced {len(data)} bytes, planned {nbytes}")
            f.write(data)
    os.replace(tmp, path)
    return offset


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
    return header, 8 + n


def read(path, raw=False):
    """Read a file -> {name: array}. BF16 -> float32 unless raw (then uint16 words)."""
    header, base = read_header(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = NP_DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if e - b != count * dt.itemsize:
            raise ValueError(f"{path}: tensor {name}: data_offsets span {e - b} bytes, shape needs {count * dt.itemsize}")
        a = np.frombuffer(buf[base + b: base + e].tobytes(), dtype=dt).reshape(info["shape"]).copy()
        if info["dtype"] == "BF16" and not raw:
            a = bf16_bits_to_f32(a)
        out[name] = a
    return out


def read_dtypes(path):
    header, _ = read_header(path)
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def write_model(folder, tensors, dtype, shards=1, base="model"):
    """Write a model's weights as HF does: one `model.safetensors`, or `shards` files
    `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`
    (metadata.total_size = bytes of tensor data, weight_map name -> file).
    Tensors are split in name order into shards of roughly equal byte size."""
    os.makedirs(folder, exist_ok=True)
    if shards <= 1:
        write(os.path.join(folder, f"{base}.safetensors"), tensors, dtype)
        return
    itemsize = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    names = sorted(tensors)
    sizes = [(tensors[n].size if isinstance(tensors[n], Lazy) else int(np.asarray(tensors[n]).size)) * itemsize
             for n in names]
    total = sum(sizes)
    groups = [[] for _ in range(shards)]
    acc = 0
    for n, s in zip(names, sizes):
        idx = min(shards - 1, acc * shards // max(total, 1))
        groups[idx].append(n)
        acc += s
    # a shard must not be empty: move names from the fullest neighbour if needed
    for i in range(shards):
        if not groups[i]:
            donor = max(range(shards), key=lambda j: len(groups[j]))
            groups[i].append(groups[donor].pop())
    weight_map = {}
    for i, g in enumerate(groups):
        fname = f"{base}-{i + 1:05d}-of-{shards:05d}.safetensors"
        write(os.path.join(folder, fname), {n: tensors[n] for n in g}, dtype)
        for n in g:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(folder, f"{base}.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def read_model(folder, raw=False):
    """Read all weights of a model folder (single file or index + shards)."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for fname in sorted(set(wm.values())):
            out.update(read(os.path.join(folder, fname), raw=raw))
        missing = set(wm) - set(out)
        if missing:
            raise ValueError(f"{folder}: index names tensors not in any shard: {sorted(missing)[:5]}")
        return out
    return read(os.path.join(folder, "model.safetensors"), raw=raw)
