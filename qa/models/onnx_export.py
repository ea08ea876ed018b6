"""Exporting a sentence-transformers encoder to the ONNX engine of :mod:`qa.models.onnx_engine`.

:func:`export_onnx` turns a sentence-transformers folder (transformer + mean pooling +
optional Dense layers + normalize, e.g. EmbeddingGemma-300M) into one ONNX graph that
maps token ids to the final unit vector, quantizes its weights to int8, saves it with
ONNX Runtime's graph optimizations applied, and writes ``engine.json`` beside it. It
runs once per model, at build time: torch, sentence-transformers and onnx are imported
only inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from qa.models.onnx_engine import (
    ENGINE_FILE,
    ENGINE_FORMAT_VERSION,
    ONNX_FILE,
    PROBE,
    SENTENCEPIECE_FILE,
    TOKENIZER_FILE,
    EngineError,
    Progress,
)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _encoder_module(st_model):
    """Wrap a loaded SentenceTransformer as one ``torch.nn.Module``: ids, mask -> unit vectors.

    Mean pooling over the attention mask, then the Dense layers in order, then L2
    normalisation, exactly as sentence-transformers chains its modules.
    """
    import torch

    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    modules = list(st_model)
    if not modules or not isinstance(modules[0], Transformer):
        raise EngineError("the model's first module is not a Transformer")
    transformer = modules[0].auto_model
    dense_layers = []
    for module in modules[1:]:
        if isinstance(module, Pooling):
            mode = module.get_config_dict().get("pooling_mode")
            if mode != "mean":
                raise EngineError(f"only mean pooling is supported, not {mode}")
        elif isinstance(module, Dense):
            dense_layers.append(module)
        elif not isinstance(module, Normalize):
            raise EngineError(f"unsupported sentence-transformers module {type(module).__name__}")

    config = transformer.config
    layer_types = set(getattr(config, "layer_types", None) or [])

    def _attention_masks(attention_mask):
        """Additive masks built from plain tensor ops, which trace into ONNX.

        transformers builds its masks with vmap, which the exporter can't trace. Models
        whose layers differ in attention (Gemma 3: full and sliding-window layers) take
        a dict of masks, one per layer type; bidirectional models see every unpadded
        token, sliding layers only those less than ``sliding_window`` positions away.
        Other models get the plain padding mask.
        """
        if not layer_types:
            return attention_mask
        if not getattr(config, "use_bidirectional_attention", False):
            raise EngineError("only bidirectional encoders with per-layer masks are supported")
        keep = attention_mask[:, None, None, :].to(torch.bool)
        minimum = torch.finfo(torch.float32).min
        masks = {"full_attention": torch.where(keep, 0.0, minimum)}
        if "sliding_attention" in layer_types:
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            near = (positions[:, None] - positions[None, :]).abs() < int(config.sliding_window)
            masks["sliding_attention"] = torch.where(keep & near[None, None], 0.0, minimum)
        return masks

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer
            self.dense = torch.nn.ModuleList(dense_layers)

        def forward(self, input_ids, attention_mask):
            hidden = self.transformer(input_ids=input_ids, attention_mask=_attention_masks(attention_mask),
                                      use_cache=False).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            for layer in self.dense:
                pooled = layer({"sentence_embedding": pooled})["sentence_embedding"]
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Encoder().eval()


def _st_prompts(st_model) -> tuple[str, str]:
    prompts = dict(getattr(st_model, "prompts", {}) or {})
    return prompts.get("query", ""), prompts.get("passage", prompts.get("document", ""))


def export_onnx(st_model_dir: Path, out_dir: Path, progress: Progress | None = None,
                quantize: bool = True) -> None:
    """Export the sentence-transformers model in ``st_model_dir`` to an ONNX engine in ``out_dir``.

    Writes ``model.onnx`` (int8 dynamic quantization of every MatMul and of the token
    embedding table unless ``quantize`` is False), ``tokenizer.json`` and
    ``engine.json``. The folder appears atomically: it is built beside ``out_dir``
    and renamed into place, so an interrupted export leaves no half engine. Needs
    torch, sentence-transformers, onnx and onnxruntime; called once, by the model
    build. ``progress`` receives one-line messages. Raises :class:`EngineError`.
    """
    st_model_dir, out_dir = Path(st_model_dir), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and quantizer advice, not the user's business
            _export_into(st_model_dir, work, progress, quantize)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _export_into(st_model_dir: Path, work: Path, progress: Progress | None, quantize: bool) -> None:
    import logging

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # The user sees qa's own progress lines, not the libraries' bars and advice.
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    logging.getLogger().setLevel(logging.ERROR)

    if not (st_model_dir / TOKENIZER_FILE).exists():
        raise EngineError(f"{st_model_dir} has no {TOKENIZER_FILE}")
    _say(progress, f"loading {st_model_dir.name} for export")
    # Eager attention traces into plain ops; sdpa's masking helpers don't export cleanly.
    st_model = SentenceTransformer(str(st_model_dir), device="cpu",
                                   model_kwargs={"attn_implementation": "eager"})
    encoder = _encoder_module(st_model)
    tokenizer_json = st_model_dir / TOKENIZER_FILE
    sample = st_model.tokenizer(["a short one", "a somewhat longer sample text to export with"],
                                padding=True, return_tensors="pt")
    fp32 = work / "model-fp32.onnx"
    _say(progress, "exporting the encoder to ONNX")
    with torch.no_grad():
        torch.onnx.export(
            encoder, (sample["input_ids"], sample["attention_mask"]), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    if quantize:
        _say(progress, "quantizing the ONNX weights to int8")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        plain = work / "model-int8.onnx"
        quantize_dynamic(str(fp32), str(plain), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"], per_channel=False,
                         nodes_to_exclude=_sensitive_matmuls(fp32))
        fp32.unlink()
    else:
        plain = fp32
    _say(progress, "optimizing the ONNX graph")
    _save_optimized(plain, work / ONNX_FILE)
    plain.unlink()
    shutil.copyfile(tokenizer_json, work / TOKENIZER_FILE)
    query_prompt, passage_prompt = _st_prompts(st_model)
    specials = _sentencepiece_specials(st_model, st_model_dir, [query_prompt + PROBE, passage_prompt + PROBE])
    if specials is not None:
        shutil.copyfile(st_model_dir / SENTENCEPIECE_FILE, work / SENTENCEPIECE_FILE)
    meta = {
        "format": ENGINE_FORMAT_VERSION,
        "source": st_model_dir.name,
        "dim": int(st_model.get_sentence_embedding_dimension()),
        "max_tokens": int(st_model.max_seq_length or 512),
        "query_prompt": query_prompt,
        "passage_prompt": passage_prompt,
        "quantized": bool(quantize),
        "pad_id": int(st_model.tokenizer.pad_token_id or 0),
        "sentencepiece": specials,
    }
    (work / ENGINE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _sensitive_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMuls kept in fp32 when the rest is quantized to int8.

    The MLP's down projection reads the widest-ranging activations (gate x up), which
    one int8 scale per tensor can't hold; the Dense layers after pooling run once per
    text and cost nothing. Keeping them fp32 took EmbeddingGemma's cosine with
    sentence-transformers from 0.93-0.97 to 0.988-0.994 (bench/onnx_fidelity.py).
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and ("down_proj" in node.name or node.name.startswith("/dense."))]


def _save_optimized(source: Path, target: Path) -> None:
    """Save ``source`` with ONNX Runtime's portable graph optimizations already applied.

    Loading then skips optimization (seconds for a 24-layer model), and the weights go
    to ``<target>.data``, which ONNX Runtime memory-maps: the pages of the 262k-row
    token table a question never touches are never read, so they cost no memory.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    # EXTENDED fusions are portable; ENABLE_ALL adds layouts tied to this CPU.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                     target.name + ".data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    for leftover in source.parent.glob(source.name + "*.data"):
        leftover.unlink()


def _sentencepiece_specials(st_model, st_model_dir: Path, samples: list[str]) -> dict | None:
    """Return the special ids to wrap SentencePiece's ids with, or None to use tokenizer.json.

    The ``tokenizers`` file of a 262k-piece vocabulary (EmbeddingGemma) takes seconds and
    ~350 MB to load; its SentencePiece model, 50 ms and ~40 MB. It is used only when it
    gives the very ids of the model's own tokenizer on ``samples``.
    """
    if not (st_model_dir / SENTENCEPIECE_FILE).exists():
        return None
    try:
        import sentencepiece
    except ImportError:
        return None
    processor = sentencepiece.SentencePieceProcessor(model_file=str(st_model_dir / SENTENCEPIECE_FILE))
    specials = None
    for text in samples:
        reference = list(st_model.tokenizer(text, add_special_tokens=True)["input_ids"])
        pieces = processor.encode(text)
        start = reference.index(pieces[0]) if pieces and pieces[0] in reference else -1
        if start < 0 or reference[start : start + len(pieces)] != pieces:
            return None
        found = {"prefix": reference[:start], "suffix": reference[start + len(pieces) :]}
        if specials not in (None, found):
            return None
        specials = found
    return specials

