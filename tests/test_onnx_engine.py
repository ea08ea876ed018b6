"""The torch-free ONNX engine (qa/models/onnx_engine.py) against sentence-transformers.

Most tests export a tiny random Gemma-3-style encoder built here (bidirectional, with
full and sliding-window layers, mean pooling, two Dense layers, normalize, prompts):
the same module chain as EmbeddingGemma, small enough to export in seconds. The
``model`` test needs the real EmbeddingGemma folder named by ``QA_GEMMA_ST_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qa.embedder import EmbedderError
from qa.models.onnx_engine import ENGINE_FILE, ONNX_FILE, EngineError, OnnxEmbedder
from qa.models.onnx_export import export_onnx

WORDS = ("rusia drone iran shahed membeli dari korea utara roket the quick brown fox jumps over "
         "lazy dog harga minyak naik turun pasar saham jakarta presiden menteri kata pejabat").split()
QUERY_PROMPT, PASSAGE_PROMPT = "task: search result | query: ", "title: none | text: "
SLIDING_WINDOW = 4

TEXTS = [
    "rusia membeli drone",
    "the quick brown fox jumps over the lazy dog " * 3,  # longer than the sliding window
    "harga minyak naik",
    "presiden",
]


def _tiny_st_folder(folder: Path) -> Path:
    """Save a tiny random sentence-transformers model shaped like EmbeddingGemma."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import Gemma3TextConfig, Gemma3TextModel, PreTrainedTokenizerFast

    torch.manual_seed(13)
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for word in WORDS + "task : search result | query title none text".split():
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")
    config = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
        sliding_window=SLIDING_WINDOW, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        use_bidirectional_attention=True, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )
    hf_dir = folder / "hf"
    Gemma3TextModel(config).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    model = SentenceTransformer(
        modules=[transformer, Pooling(32, pooling_mode="mean"), Dense(32, 48, bias=False,
                 activation_function=torch.nn.Identity()), Dense(48, 32, bias=False,
                 activation_function=torch.nn.Identity()), Normalize()],
        prompts={"query": QUERY_PROMPT, "document": PASSAGE_PROMPT}, device="cpu")
    st_dir = folder / "st"
    model.save(str(st_dir))
    return st_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's folder, its fp32 engine and its int8 engine."""
    folder = tmp_path_factory.mktemp("tiny-gemma")
    st_dir = _tiny_st_folder(folder)
    export_onnx(st_dir, folder / "fp32", None, quantize=False)
    messages: list[str] = []
    export_onnx(st_dir, folder / "int8", messages.append)
    return st_dir, folder / "fp32", folder / "int8", messages


def _reference(st_dir: Path, texts: list[str], prompt_name: str) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(st_dir), device="cpu")
    return model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.slow  # loads torch (sentence-transformers) for the reference
def test_fp32_engine_gives_the_sentence_transformers_vectors(tiny):
    st_dir, fp32, _, _ = tiny
    engine = OnnxEmbedder(fp32)
    passages = engine.embed_passages(TEXTS)  # batched: padding and masks must not leak
    queries = engine.embed_queries(TEXTS)
    assert passages.shape == (len(TEXTS), 32) and passages.dtype == np.float32
    for got, want in ((passages, _reference(st_dir, TEXTS, "document")),
                      (queries, _reference(st_dir, TEXTS, "query"))):
        cosines = np.sum(got * want, axis=1)
        assert cosines.min() >= 0.9999, cosines
    # One text alone gives the same vector as in a padded batch.
    alone = engine.embed_passages([TEXTS[0]])[0]
    assert float(alone @ passages[0]) >= 0.9999


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_sliding_window_layers_see_only_near_tokens(tiny):
    """A long text's vector matches the reference only if sliding layers are masked right."""
    st_dir, fp32, _, _ = tiny
    long_text = " ".join(WORDS)  # far longer than the 4-token window
    got = OnnxEmbedder(fp32).embed_passages([long_text])[0]
    want = _reference(st_dir, [long_text], "document")[0]
    assert float(got @ want) >= 0.9999


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_int8_engine_is_close_small_and_memory_mapped(tiny):
    st_dir, _, int8, messages = tiny
    got = OnnxEmbedder(int8).embed_passages(TEXTS)
    want = _reference(st_dir, TEXTS, "document")
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.sum(got * want, axis=1).min() >= 0.9
    # The weights lie in a separate file that ONNX Runtime memory-maps.
    assert (int8 / (ONNX_FILE + ".data")).exists()
    assert json.loads((int8 / ENGINE_FILE).read_text())["quantized"] is True
    assert any("int8" in m for m in messages)
    assert sorted(p.name for p in int8.iterdir()) == sorted(
        [ENGINE_FILE, ONNX_FILE, ONNX_FILE + ".data", "tokenizer.json"])


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_prompts_and_window_come_from_the_model(tiny):
    _, fp32, _, _ = tiny
    engine = OnnxEmbedder(fp32)
    assert (engine.query_prompt, engine.passage_prompt) == (QUERY_PROMPT, PASSAGE_PROMPT)
    assert engine.max_tokens == 64
    # prompt (4 words) + bos + eos + the text's words
    assert engine.count_tokens("rusia membeli drone") == 4 + 2 + 3
    assert engine.count_tokens("rusia " * 100) == 4 + 2 + 100


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_texts_over_the_window_are_cut_keeping_the_end_token(tiny):
    st_dir, fp32, _, _ = tiny
    too_long = "rusia drone " * 60  # 120 words, window 64
    got = OnnxEmbedder(fp32).embed_passages([too_long])[0]
    want = _reference(st_dir, [too_long], "document")[0]
    assert float(got @ want) >= 0.9999


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_matryoshka_dimension_is_the_renormalised_prefix(tiny):
    _, fp32, _, _ = tiny
    full = OnnxEmbedder(fp32).embed_passages(TEXTS)
    short = OnnxEmbedder(fp32, dim=16).embed_passages(TEXTS)
    assert short.shape == (len(TEXTS), 16)
    prefix = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert np.allclose(short, prefix, atol=1e-6)
    with pytest.raises(EngineError):
        OnnxEmbedder(fp32, dim=33)


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_a_failed_export_leaves_nothing_behind(tmp_path, tiny):
    st_dir, _, _, _ = tiny
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in st_dir.iterdir():
        if item.name != "tokenizer.json":
            os.symlink(item, broken / item.name)
    out = tmp_path / "engine"
    with pytest.raises(EngineError, match="tokenizer.json"):
        export_onnx(broken, out, None, quantize=False)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["broken"]


def test_a_missing_or_foreign_engine_is_one_line_error(tmp_path):
    with pytest.raises(EmbedderError) as missing:
        OnnxEmbedder(tmp_path / "nowhere")
    assert "\n" not in str(missing.value)
    (tmp_path / ENGINE_FILE).write_text(json.dumps({"format": 999}))
    with pytest.raises(EngineError, match="rebuild"):
        OnnxEmbedder(tmp_path)


def test_engine_import_keeps_torch_out():
    import subprocess
    import sys

    code = ("import sys; from qa.models.onnx_engine import OnnxEmbedder; "
            "print('torch' in sys.modules or 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.model
def test_real_embeddinggemma_int8_engine_matches_sentence_transformers(tmp_path):
    """The real export: SentencePiece ids equal the model's, and int8 cosine >= 0.99."""
    folder = os.environ.get("QA_GEMMA_ST_DIR")
    if not folder:
        pytest.skip("set QA_GEMMA_ST_DIR to an EmbeddingGemma sentence-transformers folder")
    export_onnx(Path(folder), tmp_path / "engine", None)
    meta = json.loads((tmp_path / "engine" / ENGINE_FILE).read_text())
    assert meta["sentencepiece"] == {"prefix": [2], "suffix": [1]}
    texts = ["Drone apa yang diimpor Rusia dari Iran?", "Rusia membeli drone Shahed dan Mohajer-6 dari Iran."]
    engine = OnnxEmbedder(tmp_path / "engine")
    got = engine.embed_passages(texts)
    want = _reference(Path(folder), texts, "document")
    assert np.sum(got * want, axis=1).min() >= 0.99


@pytest.mark.slow  # the tiny model is built and exported with torch: over 10 s
def test_int8_keeps_the_outlier_prone_matmuls_in_fp32(tiny):
    """The MLP down projections and the Dense layers stay fp32 in the int8 engine."""
    import onnx

    from qa.models.onnx_export import _sensitive_matmuls

    _, fp32, int8, _ = tiny
    kept = _sensitive_matmuls(fp32 / ONNX_FILE)
    assert len([n for n in kept if "down_proj" in n]) == 3 and len([n for n in kept if "/dense." in n]) == 2
    graph = onnx.load(str(int8 / ONNX_FILE), load_external_data=False).graph
    integer_nodes = [n.name for n in graph.node if "Integer" in n.op_type or "Quant" in n.op_type]
    assert integer_nodes, "nothing was quantized"
    assert not any("down_proj" in name or "/dense." in name for name in integer_nodes)
