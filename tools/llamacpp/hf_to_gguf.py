#!/usr/bin/python3
"""hf_to_gguf.py: Hugging Face Qwen3ForCausalLM / LlamaForCausalLM folder -> GGUF v3 for llama.cpp.

Python 3 stdlib + numpy only (no `gguf`, `transformers`, `safetensors`, `torch`).

Follows llama.cpp's own converter (convert_hf_to_gguf.py / conversion/{base,llama,qwen}.py
and gguf-py/gguf/{constants,gguf_writer,vocab}.py of the llama.cpp release that
node-llama-cpp 3.22.1 ships, tag v0.5.0):

  * container: "GGUF", version 3, tensor count, KV count (u64), KVs, tensor infos
    (name, n_dims, ne[] innermost first = PyTorch shape reversed, ggml type, offset),
    data section aligned to general.alignment = 32, every tensor padded to 32 bytes.
  * hparams: general.architecture (qwen3 | llama), <arch>.block_count, context_length,
    embedding_length, feed_forward_length, attention.head_count, attention.head_count_kv,
    rope.freq_base, attention.layer_norm_rms_epsilon, attention.key_length / value_length
    (when config has head_dim), vocab_size, rope.dimension_count, general.file_type,
    general.quantization_version = 2.
  * llama3 RoPE scaling: no KV; a "rope_freqs.weight" F32 tensor of head_dim/2 factors
    computed exactly as LlamaModel.generate_extra_tensors (in float32 like torch there).
  * Llama q_proj / k_proj rows are permuted (LlamaModel.permute, undo_permute = True):
    llama.cpp's LLAMA arch uses the interleaved ("normal") RoPE, HF the rotate-half one.
    Qwen3 uses NEOX RoPE in llama.cpp: no permutation.
  * tokenizer: tokenizer.ggml.model "gpt2", pre "qwen2" (Qwen3) / "llama-bpe" (Llama 3)
    (what llama.cpp's hash detection gives for the real tokenizers), tokens for ids
    0..vocab_size-1 ([PAD<i>] with type UNUSED for holes), token_type (NORMAL 1,
    CONTROL 3, USER_DEFINED 4, UNUSED 5), merges, special ids and add_*_token as
    gguf.SpecialVocab derives them (tokenizer_config.json strings, then config.json ids,
    then the TemplateProcessing post-processor), chat template.
    Without tokenizer.json: tokenizer.ggml.model "none" (ids only).
  * tensors: dtype kept (BF16 -> GGML_TYPE_BF16 30, F16 -> 1, F32 -> 0); 1-D tensors
    (norm weights) stored as F32 like llama.cpp's converter; --outtype f16 converts BF16
    / F32 matrices to F16 (round to nearest even), --outtype f32 to F32.

Streaming: weights are memory-mapped from the safetensors files and written one tensor at
a time (only one tensor is in memory at a time when it must be converted or permuted).

Usage: hf_to_gguf.py MODEL_DIR [--out FILE] [--outtype auto|bf16|f16|f32]
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGN = 32

# gguf value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

# ggml tensor types
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
# llama_ftype
FTYPE = {"f32": 0, "f16": 1, "bf16": 32}

# token types (gguf.TokenType)
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_USER_DEFINED, TOK_UNUSED, TOK_BYTE = 1, 2, 3, 4, 5, 6

ARCHS = {"Qwen3ForCausalLM": "qwen3", "LlamaForCausalLM": "llama"}
TOKENIZER_PRE = {"qwen3": "qwen2", "llama": "llama-bpe"}


# --------------------------------------------------------------------------- safetensors

class STTensor:
    def __init__(self, path, dtype, shape, begin, end):
        self.path, self.dtype, self.shape, self.begin, self.end = path, dtype, shape, begin, end

    def raw(self):
        """numpy memmap of the raw elements (uint16 for BF16, float16, float32)."""
        npdt = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}[self.dtype]
        hlen = struct.unpack("<Q", open(self.path, "rb").read(8))[0]
        n = int(np.prod(self.shape)) if self.shape else 1
        assert (self.end - self.begin) == n * np.dtype(npdt).itemsize, self.path
        return np.memmap(self.path, dtype=npdt, mode="r", offset=8 + hlen + self.begin,
                         shape=tuple(self.shape))


def read_safetensors_header(path):
    with open(path, "rb") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(hlen))
    out = {}
    for name, v in hdr.items():
        if name == "__metadata__":
            continue
        if v["dtype"] not in ("BF16", "F16", "F32"):
            raise SystemExit(f"hf_to_gguf: {name}: unsupported dtype {v['dtype']}")
        out[name] = STTensor(path, v["dtype"], v["shape"], *v["data_offsets"])
    return out


def index_tensors(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(idx):
        with open(idx, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for fn in files:
        tensors.update(read_safetensors_header(os.path.join(model_dir, fn)))
    return tensors


# --------------------------------------------------------------------------- numerics

def bf16_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    # round to nearest even (what torch / gguf-py do), NaN kept quiet
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        r[nan] = ((b[nan] >> 16) | 64).astype(np.uint16)
    return r


def llama_permute(w, n_head, n_head_kv):
    """LlamaModel.permute on the row axis (works on any element type)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(cfg, rs):
    base = float(cfg.get("rope_theta", 10000.0))
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    # torch: 1.0 / (base ** (arange(0, dim, 2, float32) / dim)) in float32
    exps = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float32)
    freqs = (np.float32(1.0) / np.power(np.float32(base), exps, dtype=np.float32)).astype(np.float32)
    factor = rs.get("factor", 8.0)
    low = rs.get("low_freq_factor", 1.0)
    high = rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    low_wl, high_wl = old / low, old / high
    out = []
    for fr in freqs:
        wl = 2 * math.pi / float(fr)
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# --------------------------------------------------------------------------- tokenizer

def load_tokenizer(model_dir, cfg, vocab_size):
    """Returns dict of gguf KVs for the tokenizer (list of (key, type, value))."""
    tj = os.path.join(model_dir, "tokenizer.json")
    tcj = os.path.join(model_dir, "tokenizer_config.json")
    kv = []
    if not os.path.isfile(tj):
        kv.append(("tokenizer.ggml.model", T_STRING, "none"))
        return kv
    with open(tj, encoding="utf-8") as f:
        tok = json.load(f)
    tcfg = None
    if os.path.isfile(tcj):
        with open(tcj, encoding="utf-8") as f:
            tcfg = json.load(f)
    model = tok["model"]
    if model.get("type") != "BPE":
        raise SystemExit("hf_to_gguf: only byte-level BPE tokenizers (Qwen3, Llama 3) are supported")
    vocab = dict(model["vocab"])
    added = tok.get("added_tokens", [])
    added_by_id = {}
    for a in added:
        vocab[a["content"]] = a["id"]
        added_by_id[a["id"]] = a
    rev = {i: s for s, i in vocab.items()}
    if max(rev) >= vocab_size:
        raise SystemExit(f"hf_to_gguf: tokenizer id {max(rev)} >= vocab_size {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(TOK_UNUSED)
            continue
        s = rev[i]
        a = added_by_id.get(i)
        if a is not None:
            # llama.cpp re-normalizes non-normalized added tokens via decode(encode(tok)),
            # the identity for these byte-level tokenizers' added tokens.
            if a.get("special") or (s.startswith("<|") and s.endswith("|>")) or \
                    s in ("<pad>", "<mask>", "<2mass>", "[@BOS@]"):
                types.append(TOK_CONTROL)
            else:
                s = s.replace("\u2581", " ")
                types.append(TOK_USER_DEFINED)
        else:
            types.append(TOK_NORMAL)
        tokens.append(s)

    merges = model.get("merges") or []
    if merges and isinstance(merges[0], list):
        merges = [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
                  for pair in merges]

    # special ids, the way gguf.SpecialVocab derives them
    types_special = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
    ids, add = {}, {}
    tc = dict(tcfg) if tcfg else None
    special_bos = (tc or {}).get("bos_token")
    special_eos = (tc or {}).get("eos_token")
    special_cls = (tc or {}).get("cls_token")
    pp = tok.get("post_processor")
    if pp:
        for proc in pp.get("processors", [pp]):
            if proc.get("type") == "TemplateProcessing":
                single = proc.get("single", [])
                if len(single) > 1:
                    first = single[0].get("SpecialToken", {}).get("id")
                    if first:
                        if not tc:
                            special_bos = first
                        elif first not in (special_bos, special_cls) and not special_bos:
                            tc["bos_token"] = special_bos = first
                        add["bos"] = first in (special_bos, special_cls)
                    last = single[-1].get("SpecialToken", {}).get("id")
                    if last:
                        add["eos"] = last == special_eos
    if tc:
        for typ in types_special:
            v = tc.get(f"add_{typ}_token")
            if isinstance(v, bool):
                add[typ] = v
            e = tc.get(f"{typ}_token")
            if isinstance(e, dict):
                e = e.get("content")
            if not isinstance(e, str):
                continue
            tid = next((a["id"] for a in added if a.get("content") == e), None)
            if isinstance(tid, int) and typ not in ids:
                ids[typ] = tid
    for typ in types_special:
        v = cfg.get(f"{typ}_token_id")
        if isinstance(v, int) and typ not in ids and 0 <= v:
            ids[typ] = v

    arch = ARCHS[cfg["architectures"][0]]
    kv.append(("tokenizer.ggml.model", T_STRING, "gpt2"))
    kv.append(("tokenizer.ggml.pre", T_STRING, TOKENIZER_PRE[arch]))
    kv.append(("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)))
    kv.append(("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types)))
    if arch == "llama" and tcfg and isinstance(tcfg.get("add_prefix_space"), bool):
        kv.append(("tokenizer.ggml.add_space_prefix", T_BOOL, tcfg["add_prefix_space"]))
    if merges:
        kv.append(("tokenizer.ggml.merges", T_ARRAY, (T_STRING, merges)))
    keyname = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
               "sep": "seperator_token_id", "pad": "padding_token_id", "cls": "cls_token_id",
               "mask": "mask_token_id"}
    for typ in types_special:
        if typ in ids:
            kv.append((f"tokenizer.ggml.{keyname[typ]}", T_UINT32, ids[typ]))
    for typ in ("bos", "eos", "sep"):
        if typ in add:
            kv.append((f"tokenizer.ggml.add_{typ}_token", T_BOOL, bool(add[typ])))
    ct = (tcfg or {}).get("chat_template")
    if ct is None and os.path.isfile(os.path.join(model_dir, "chat_template.jinja")):
        with open(os.path.join(model_dir, "chat_template.jinja"), encoding="utf-8") as f:
            ct = f.read()
    if isinstance(ct, str):
        kv.append(("tokenizer.chat_template", T_STRING, ct))
    return kv


# --------------------------------------------------------------------------- gguf writing

def w_str(f, s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    f.write(struct.pack("<Q", len(b)))
    f.write(b)


SCALAR_FMT = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
              T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
              T_FLOAT64: "<d"}


def w_value(f, typ, val):
    if typ == T_STRING:
        w_str(f, val)
    elif typ == T_ARRAY:
        et, items = val
        f.write(struct.pack("<IQ", et, len(items)))
        if et == T_STRING:
            buf = bytearray()
            for s in items:
                b = s.encode("utf-8")
                buf += struct.pack("<Q", len(b))
                buf += b
            f.write(buf)
        else:
            f.write(np.asarray(items, dtype=np.dtype(SCALAR_FMT[et])).tobytes())
    else:
        f.write(struct.pack(SCALAR_FMT[typ], val))


def pad_to(f, pos, align=ALIGN):
    n = (-pos) % align
    if n:
        f.write(b"\0" * n)
    return pos + n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out", help="output file (default MODEL_DIR/model.gguf, model-f16.gguf for --outtype f16)")
    ap.add_argument("--outtype", choices=["auto", "bf16", "f16", "f32"], default="auto",
                    help="type of the matrices: auto keeps the checkpoint dtype (default)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    d = args.model_dir
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    hf_arch = (cfg.get("architectures") or [None])[0]
    if hf_arch not in ARCHS:
        raise SystemExit(f"hf_to_gguf: unsupported architecture {hf_arch}")
    arch = ARCHS[hf_arch]
    out = args.out or os.path.join(d, "model.gguf" if args.outtype in ("auto",) else f"model-{args.outtype}.gguf")

    tensors = index_tensors(d)
    H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    nq, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or H // nq
    vocab_size = cfg["vocab_size"]
    tied = bool(cfg.get("tie_word_embeddings", False))

    # ---- tensor plan: (gguf name, source STTensor or ndarray, ggml type, transform)
    mat_dtypes = {t.dtype for n, t in tensors.items() if len(t.shape) == 2}
    if args.outtype == "auto":
        if len(mat_dtypes) != 1:
            raise SystemExit(f"hf_to_gguf: mixed matrix dtypes {mat_dtypes}: pass --outtype")
        outtype = {"BF16": "bf16", "F16": "f16", "F32": "f32"}[mat_dtypes.pop()]
    else:
        outtype = args.outtype
    mat_ggml = {"bf16": GGML_BF16, "f16": GGML_F16, "f32": GGML_F32}[outtype]

    plan = []
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(L):
        for k, v in per_layer.items():
            names[f"model.layers.{i}.{k}"] = f"blk.{i}.{v}"

    rs = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rope_type = (rs.get("rope_type") or rs.get("type") or "").lower()
    if arch == "llama" and rope_type == "llama3":
        rf = llama3_rope_factors(cfg, rs)
        plan.append(("rope_freqs.weight", rf, GGML_F32, None))

    order = ["model.embed_tokens.weight"]
    for i in range(L):
        order += [f"model.layers.{i}.{k}" for k in per_layer]
    order += ["model.norm.weight", "lm_head.weight"]
    seen = set()
    for src in order:
        if src not in tensors:
            continue
        if src == "lm_head.weight" and tied:
            continue   # llama.cpp uses token_embd for the output when output.weight is absent
        t = tensors[src]
        seen.add(src)
        if len(t.shape) == 1:
            typ = GGML_F32
        else:
            typ = mat_ggml
        perm = None
        if arch == "llama" and src.endswith("q_proj.weight"):
            perm = (nq, nq)
        elif arch == "llama" and src.endswith("k_proj.weight"):
            perm = (nq, nkv)
        plan.append((names[src], t, typ, perm))
    unused = sorted(set(tensors) - seen - ({"lm_head.weight"} if tied else set()))
    unused = [n for n in unused if "rotary_emb.inv_freq" not in n]
    if unused:
        raise SystemExit(f"hf_to_gguf: unmapped tensors: {unused[:8]}")
    for req in ("model.embed_tokens.weight", "model.norm.weight"):
        if req not in tensors:
            raise SystemExit(f"hf_to_gguf: missing {req}")

    # ---- metadata
    kv = [("general.architecture", T_STRING, arch),
          ("general.type", T_STRING, "model"),
          ("general.name", T_STRING, os.path.basename(os.path.abspath(d))),
          ("general.quantization_version", T_UINT32, 2),
          ("general.alignment", T_UINT32, ALIGN)]
    A = arch
    kv += [(f"{A}.block_count", T_UINT32, L)]
    if cfg.get("max_position_embeddings") is not None:
        kv.append((f"{A}.context_length", T_UINT32, cfg["max_position_embeddings"]))
    kv += [(f"{A}.embedding_length", T_UINT32, H),
           (f"{A}.feed_forward_length", T_UINT32, cfg["intermediate_size"]),
           (f"{A}.attention.head_count", T_UINT32, nq),
           (f"{A}.attention.head_count_kv", T_UINT32, nkv),
           (f"{A}.rope.freq_base", T_FLOAT32, float(cfg.get("rope_theta", rs.get("rope_theta", 10000.0)))),
           (f"{A}.attention.layer_norm_rms_epsilon", T_FLOAT32, float(cfg["rms_norm_eps"]))]
    if rope_type == "linear" and rs.get("factor") is not None:
        kv += [(f"{A}.rope.scaling.type", T_STRING, "linear"),
               (f"{A}.rope.scaling.factor", T_FLOAT32, float(rs["factor"]))]
    elif rope_type not in ("", "default", "llama3"):
        raise SystemExit(f"hf_to_gguf: unsupported rope_scaling {rs}")
    if cfg.get("head_dim") is not None:
        kv += [(f"{A}.attention.key_length", T_UINT32, head_dim),
               (f"{A}.attention.value_length", T_UINT32, head_dim)]
    kv += [("general.file_type", T_UINT32, FTYPE[outtype]),
           (f"{A}.vocab_size", T_UINT32, vocab_size),
           (f"{A}.rope.dimension_count", T_UINT32, head_dim)]
    kv += load_tokenizer(d, cfg, vocab_size)

    # ---- tensor infos
    infos = []
    off = 0
    for name, src, typ, perm in plan:
        shape = list(src.shape)
        esz = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}[typ]
        nbytes = int(np.prod(shape)) * esz
        infos.append((name, shape, typ, off, nbytes))
        off += nbytes + ((-nbytes) % ALIGN)

    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(GGUF_MAGIC)
        f.write(struct.pack("<IQQ", GGUF_VERSION, len(infos), len(kv)))
        for key, typ, val in kv:
            w_str(f, key)
            f.write(struct.pack("<I", typ))
            w_value(f, typ, val)
        for name, shape, typ, o, _ in infos:
            w_str(f, name)
            f.write(struct.pack("<I", len(shape)))
            for n in reversed(shape):
                f.write(struct.pack("<Q", n))
            f.write(struct.pack("<IQ", typ, o))
        pos = pad_to(f, f.tell())
        data_start = pos
        for (name, src, typ, perm), (_, shape, _, o, nbytes) in zip(plan, infos):
            assert f.tell() == data_start + o, name
            if isinstance(src, np.ndarray):
                arr = src
                srcdt = "F32"
            else:
                arr = src.raw()
                srcdt = src.dtype
            if perm is not None:
                arr = llama_permute(np.asarray(arr), *perm)
            # write in row chunks to bound memory for large matrices
            rows = arr.shape[0] if arr.ndim > 1 else 1
            step = max(1, (64 << 20) // max(1, (arr.nbytes // rows)))
            for r0 in range(0, rows, step):
                part = arr[r0:r0 + step] if arr.ndim > 1 else arr
                if typ == GGML_F32:
                    b = bf16_to_f32(part) if srcdt == "BF16" else np.asarray(part, dtype=np.float32)
                elif typ == GGML_F16:
                    b = (bf16_to_f32(part) if srcdt == "BF16" else np.asarray(part)).astype(np.float16)
                elif typ == GGML_BF16:
                    b = part if srcdt == "BF16" else f32_to_bf16(np.asarray(part, dtype=np.float32))
                f.write(np.ascontiguousarray(b).tobytes())
            pad_to(f, nbytes)
        size = f.tell()
    os.replace(tmp, out)
    if not args.quiet:
        print(f"hf_to_gguf: {out}: arch {arch}, {len(infos)} tensors, {len(kv)} KVs, "
              f"matrices {outtype}, {size / 1e6:.1f} MB", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
