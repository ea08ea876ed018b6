"""A torch-free engine for sentence-transformers encoders: ONNX Runtime + ``tokenizers``.

At model-build time, :func:`export_onnx` turns a sentence-transformers folder
(transformer + mean pooling + optional Dense layers + normalize, e.g.
EmbeddingGemma-300M) into one ONNX graph that maps token ids to the final unit
vector, and quantizes its weights to int8. At question time, :class:`OnnxEmbedder`
runs that graph with ``onnxruntime`` and tokenizes with ``tokenizers``: no torch,
so a one-shot ``qa ask`` pays for neither importing torch nor loading 1.2 GB of
fp32 weights.

The engine folder it reads (``out_dir`` of :func:`export_onnx`):
    model.onnx        the int8 graph (or fp32 with ``quantize=False``)
    tokenizer.json    the model's tokenizer, copied
    engine.json       prompts, dimension, window, pooling: what the engine needs

Only the standard library and numpy are imported at module level; torch and
sentence-transformers only inside :func:`export_onnx`, onnxruntime and tokenizers
only when an :class:`OnnxEmbedder` is created.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.embedder import EmbedderError, PromptedEmbedder
from qa.token_offsets import TokenizerOffsets

ENGINE_FILE = "engine.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
PROBE = "Rusia membeli 2.000 drone Shahed dari Iran, kata pejabat AS. Ça coûte 3,5 € ﬁn."
# Bump when the exported graph or engine.json change meaning, so builds are redone.
ENGINE_FORMAT_VERSION = 1

Progress = Callable[[str], None]
BatchProgress = Callable[[int, int], None]


class EngineError(EmbedderError):
    """The ONNX engine can't be built or loaded; the message is one line for the user."""


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- export


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


# --------------------------------------------------------------------------- run


def default_threads() -> int:
    """Threads for one ONNX session: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEmbedder(PromptedEmbedder):
    """An :class:`qa.embedder.Embedder` on an engine folder written by :func:`export_onnx`.

    Queries and passages get the model's own prompts; texts longer than the window
    are cut to it, as sentence-transformers does; passages are embedded longest
    first in batches of similar length, so little time goes to padding.
    """

    def __init__(self, engine_dir: Path, name: str | None = None, threads: int | None = None,
                 batch_tokens: int = 4096, dim: int | None = None, prepack: bool = True):
        """Load the engine in ``engine_dir``.

        ``threads`` defaults to :func:`default_threads`; ``batch_tokens`` bounds a batch's
        padded size (rows x longest row); ``dim`` keeps only the first ``dim`` coordinates
        of each vector, renormalised (Matryoshka truncation). ``prepack=False`` skips
        ONNX Runtime's weight prepacking: the session opens about 4x faster and each
        batch runs a little slower, the right trade for a one-shot question. Raises
        :class:`EngineError`.
        """
        engine_dir = Path(engine_dir)
        try:
            meta = json.loads((engine_dir / ENGINE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read the ONNX engine in {engine_dir}: {exc}") from None
        if meta.get("format") != ENGINE_FORMAT_VERSION:
            raise EngineError(f"the ONNX engine in {engine_dir} has format {meta.get('format')}, "
                              f"expected {ENGINE_FORMAT_VERSION}; rebuild it")
        self.name = name or meta.get("source", engine_dir.name)
        self.full_dim = int(meta["dim"])
        self.dim = int(dim or self.full_dim)
        if not 0 < self.dim <= self.full_dim:
            raise EngineError(f"dimension {self.dim} is outside 1..{self.full_dim}")
        self.max_tokens = int(meta["max_tokens"])
        self.query_prompt = meta.get("query_prompt", "")
        self.passage_prompt = meta.get("passage_prompt", "")
        self.batch_tokens = batch_tokens
        try:
            # Spinning OpenMP/ORT threads burn the other core on a shared 2-core machine.
            import onnxruntime as ort

            self._tokenizer = _load_tokenizer(engine_dir, meta.get("sentencepiece"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or default_threads()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # export_onnx saved the graph optimized; optimizing again costs seconds per start.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            if not prepack:
                options.add_session_config_entry("session.disable_prepacking", "1")
            self._session = ort.InferenceSession(str(engine_dir / ONNX_FILE), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any loading failure is one message
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"cannot load the ONNX engine in {engine_dir}: {first_line}") from None
        self._pad_id = int(meta.get("pad_id", 0))

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage, prompt and specials included."""
        return len(self._tokenizer.ids([self.passage_prompt + text])[0])

    def token_offsets(self, text: str) -> np.ndarray:
        """The ``(n, 2)`` character spans in ``text`` of the tokens the model makes of it as a
        passage (:data:`qa.token_packing.TokenOffsets`): ``text`` is tokenized after the
        passage prompt, as :meth:`count_tokens` does, and the prompt's tokens and the
        special ids are left out. The prompt's last space is the first word's, as a space
        before a word is in running text (its "▁" starts the first token, at 0). The
        chunker cuts by these offsets, treating as tied any two words a token spans
        (``>▁</`` is one of Gemma's pieces; a text's own "▁" beside a space makes a "▁▁"
        of both). With SentencePiece, words are tokenized once each and remembered
        when no piece can span a space of the text (:class:`_SentencePieceOffsets`).
        """
        offsets = getattr(self, "_offsets", None)
        if offsets is None:
            offsets = self._offsets = _offsets_for(self._tokenizer, self.passage_prompt)
        return offsets(text)

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        out = self._session.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]
        return out.astype(np.float32, copy=False)

    def _encode(self, texts: Sequence[str], prompt: str, progress: BatchProgress | None) -> np.ndarray:
        out = np.empty((len(texts), self.full_dim), dtype=np.float32)
        ids = self._tokenizer.ids([prompt + t.strip() for t in texts], limit=self.max_tokens)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        start = 0
        while start < len(order):
            width = len(ids[order[start]])
            rows = order[start : start + max(1, self.batch_tokens // max(1, width))]
            out[rows] = self._run([ids[i] for i in rows])
            start += len(rows)
            if progress:
                progress(start, len(texts))
        if self.dim != self.full_dim:
            out = out[:, : self.dim]
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
            out = np.ascontiguousarray(out)
        return out


class EngineTokenOffsets:
    """The ``token_offsets`` of the engine in ``engine_dir``, as :meth:`OnnxEmbedder.token_offsets`
    gives them, for an embedder whose session runs elsewhere (the warm service's client,
    :class:`qa.embed_service.ServiceEmbedder`): the tokenizer is loaded on first use, when a
    document is cut, so a question pays nothing for it. Raises :class:`EngineError`."""

    def __init__(self, engine_dir: Path):
        self._dir = Path(engine_dir)
        self._offsets: Callable[[str], np.ndarray] | None = None

    def __call__(self, text: str) -> np.ndarray:
        if self._offsets is None:
            try:
                meta = json.loads((self._dir / ENGINE_FILE).read_text(encoding="utf-8"))
                tokenizer = _load_tokenizer(self._dir, meta.get("sentencepiece"))
            except Exception as exc:  # noqa: BLE001 - any loading failure is one message
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise EngineError(f"cannot load the tokenizer of the ONNX engine in {self._dir}: "
                                  f"{first_line}") from None
            self._offsets = _offsets_for(tokenizer, meta.get("passage_prompt", ""))
        return self._offsets(text)


def _offsets_for(tokenizer, prompt: str) -> Callable[[str], np.ndarray]:
    if isinstance(tokenizer, _SentencePieceIds):
        return _SentencePieceOffsets(tokenizer, prompt)
    return lambda text: tokenizer.offsets(prompt, text)


class _SentencePieceIds:
    """Token ids from a SentencePiece model, wrapped in the model's special ids."""

    def __init__(self, path: Path, specials: dict):
        import sentencepiece

        self._processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self._prefix, self._suffix = list(specials["prefix"]), list(specials["suffix"])

    def ids(self, texts: list[str], limit: int | None = None) -> list[list[int]]:
        """Token ids of each text; with ``limit``, cut to that many, the specials kept."""
        room = None if limit is None else max(0, limit - len(self._prefix) - len(self._suffix))
        return [self._prefix + row[:room] + self._suffix for row in self._processor.encode(texts)]

    def offsets(self, prompt: str, text: str) -> np.ndarray:
        """Character spans in ``text`` of the pieces of ``prompt + text`` that end after the
        prompt. SentencePiece gives byte offsets into the UTF-8 text; a character it spells
        as bytes (byte fallback) gives empty spans but the last, each taken here as the
        whole character."""
        whole = prompt + text
        pieces = self._processor.encode(whole, out_type="proto").pieces
        count = len(pieces)
        begins = np.fromiter((piece.begin for piece in pieces), dtype=np.int64, count=count)
        ends = np.fromiter((piece.end for piece in pieces), dtype=np.int64, count=count)
        return _text_spans(_bytes_to_chars(whole, begins, ends), prompt)


class _SentencePieceOffsets(TokenizerOffsets):
    """``token_offsets`` by SentencePiece, each distinct word tokenized once and remembered.

    SentencePiece's BPE merges the best-scoring pair of neighbours, over the whole text: it
    does not cut text at spaces first. But a merge can cross the space before a word only
    into a piece that holds that space after some other character (Gemma's ``>▁</``, and
    its ``▁▁``... runs, which a text's own "▁" beside a space makes), and a tokenization
    no token crosses is made of its two sides' own (every merge on a side was the best on
    it). So a word that doesn't end in a character such a piece puts before a "▁" (``>``
    and ``▁`` for Gemma) ends a run of words that tokenizes as it does alone after a space:
    each distinct run (most are one word) is tokenized once and remembered (as
    :class:`qa.token_offsets.TokenizerOffsets` does for e5's words), and the chunker sees
    the tokens that span spaces inside runs.
    """

    def __init__(self, tokenizer: "_SentencePieceIds", prompt: str):
        super().__init__(None)
        self._ids, self._prompt = tokenizer, prompt
        processor = tokenizer._processor
        inner = [piece for piece in map(processor.id_to_piece, range(processor.get_piece_size())) if "▁" in piece[1:]]
        self._ties = {"▁"} | {piece[i - 1] for piece in inner for i in range(1, len(piece))
                              if piece[i] == "▁" and piece[i - 1] != "▁"}

    def __call__(self, text: str) -> np.ndarray:
        words = text.split(" ")
        if text.split() != words:
            return self._whole(text)
        if any(char in text for char in self._ties):
            words = self._runs(words)
        spans = self._by_words(words)
        if len(spans):  # the first word's "▁" (the prompt's space) starts at 0, as _whole has it
            spans[0, 0] = max(spans[0, 0], 0)
            spans[0, 1] = max(spans[0, 1], spans[0, 0] + 1)
        return spans

    def _runs(self, words: list[str]) -> list[str]:
        """``words`` with each word that ends in a character a piece may join to the next
        word's space (``>``, ``▁``) joined to the next: runs tokenized and remembered whole."""
        runs: list[str] = []
        current: list[str] = []
        for word in words:
            current.append(word)
            if word[-1] not in self._ties:
                runs.append(" ".join(current))
                current = []
        if current:
            runs.append(" ".join(current))
        return runs

    def _whole(self, text: str) -> np.ndarray:
        return self._ids.offsets(self._prompt, text)

    def _learn(self, words: list[str]) -> None:
        spaced = [" " + word for word in words]
        offsets = []
        for text, proto in zip(spaced, self._ids._processor.encode(spaced, out_type="proto")):
            pieces = proto.pieces
            begins = np.fromiter((piece.begin for piece in pieces), dtype=np.int64, count=len(pieces))
            ends = np.fromiter((piece.end for piece in pieces), dtype=np.int64, count=len(pieces))
            offsets.append(_bytes_to_chars(text, begins, ends) - 1)  # from the space before the word: -1
        self._remember(words, offsets)


def _bytes_to_chars(text: str, begins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``(n, 2)`` character spans of byte spans of ``text``'s UTF-8; an empty span (a
    byte-fallback piece) becomes the character it is in."""
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    starts = np.ones(len(data) + 1, dtype=bool)
    starts[:-1] = (data & 0xC0) != 0x80  # a byte that begins a character
    chars_before = np.concatenate([[0], np.cumsum(starts[:-1])])  # characters begun before each byte offset
    first = chars_before[begins] - (~starts[begins]).astype(np.int64)  # the character a begin falls in
    last = chars_before[ends]  # characters begun before the end: an end inside one counts it whole
    return np.stack([first, np.maximum(last, first + 1)], axis=1)


def _text_spans(spans: np.ndarray, prompt: str) -> np.ndarray:
    """The spans of the text's tokens, shifted to offsets in the text after ``prompt``.

    The prompt's closing spaces are the text's, as the space before a word is the word's
    in running text: a "▁" alone before a word (before ``<b>``, a piece of its own) is
    the first word's token, as it would be in the middle of a passage.
    """
    words_end = len(prompt.rstrip(" "))
    spans = spans[spans[:, 1] > words_end] - len(prompt)
    spans[:, 0] = np.maximum(spans[:, 0], 0)
    spans[:, 1] = np.maximum(spans[:, 1], spans[:, 0] + 1)
    return spans


class _TokenizersIds:
    """Token ids from a ``tokenizers`` tokenizer.json, specials included by its post-processor."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def ids(self, texts: list[str], limit: int | None = None) -> list[list[int]]:
        """Token ids of each text; with ``limit``, cut to that many, the specials kept."""
        if limit is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(limit)
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def offsets(self, prompt: str, text: str) -> np.ndarray:
        """Character spans in ``text`` of the tokens of ``prompt + text`` that end after the prompt."""
        self._tokenizer.no_truncation()
        encoding = self._tokenizer.encode(prompt + text, add_special_tokens=False)
        spans = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        spans[:, 1] = np.maximum(spans[:, 1], spans[:, 0] + 1)
        return _text_spans(spans, prompt)


def _load_tokenizer(engine_dir: Path, specials: dict | None):
    """The engine's tokenizer: SentencePiece when the export verified it, else tokenizer.json."""
    if specials is not None and (engine_dir / SENTENCEPIECE_FILE).exists():
        try:
            return _SentencePieceIds(engine_dir / SENTENCEPIECE_FILE, specials)
        except ImportError:
            pass
    return _TokenizersIds(engine_dir / TOKENIZER_FILE)
