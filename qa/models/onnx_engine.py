"""A torch-free engine for sentence-transformers encoders: ONNX Runtime + SentencePiece or ``tokenizers``.

At model-build time, :func:`qa.models.onnx_export.export_onnx` turns a
sentence-transformers folder (e.g. EmbeddingGemma-300M) into one ONNX graph that maps
token ids to the final unit vector. At question time, :class:`OnnxEmbedder` runs that
graph with ``onnxruntime``: no torch, so a one-shot ``qa ask`` pays for neither
importing torch nor loading 1.2 GB of fp32 weights.

The engine folder it reads (``out_dir`` of ``export_onnx``):
    model.onnx        the int8 graph (or fp32 with ``quantize=False``)
    tokenizer.json    the model's tokenizer, copied
    engine.json       prompts, dimension, window, pooling: what the engine needs

Only the standard library and numpy are imported at module level; onnxruntime and
the tokenizer only when an :class:`OnnxEmbedder` is created.
"""

from __future__ import annotations

import json
import os
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


def default_threads() -> int:
    """Threads for one ONNX session: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEmbedder(PromptedEmbedder):
    """An :class:`qa.embedder.Embedder` on an engine folder written by :func:`qa.models.onnx_export.export_onnx`.

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
