"""The manifest of an index generation: its schema, checked once, where it is read.

A manifest is JSON that the index directory's owner could have rewritten, checksums
included (see ``docs/RELIABILITY.md``). :func:`validate_manifest` checks every key the
rest of qa reads against the types below, so that code downstream can rely on them:
a forged manifest of the right checksums but wrong types (``"source": 5``,
``"roots": null``, ``"probe": "abc"``) is a damaged index, said in one line, never a
traceback deep in the indexer. The types are ``TypedDict``s: the manifest stays the
JSON object it is on disk, and the keys are named and typed in one place.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ManifestError(ValueError):
    """A manifest does not follow the schema; the message names the first wrong key."""


class ModelRecord(TypedDict):
    name: str
    probe: list[float]
    max_tokens: int


class DocumentRecord(TypedDict, total=False):
    source: str  # required
    bundled: bool
    kind: str
    sha256: str
    size: int | None
    mtime_ns: int | None
    passages: int
    title: str | None
    note: str
    added: str
    updated: str


class PassedOver(TypedDict):
    key: str
    size: int
    mtime_ns: int


class Manifest(TypedDict, total=False):
    format_version: int
    dim: int
    files: dict[str, dict[str, Any]]
    vectors: dict[str, Any]
    created: str
    updated: str
    model: ModelRecord
    chunking: dict[str, Any]
    background: str
    roots: list[str]
    excluded: list[str]
    documents: list[DocumentRecord]
    n_passages: int
    terms: int
    passed_over: list[PassedOver]
    skipped: list[list[str]]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, where: str) -> None:
    if not ok:
        raise ManifestError(f"{where} has the wrong type")


def _check_strings(value: object, where: str) -> None:
    _check(isinstance(value, list) and all(isinstance(item, str) for item in value), where)


def _check_document(record: object, where: str) -> None:
    _check(isinstance(record, dict) and isinstance(record.get("source"), str) and record["source"] != "", where)
    for key, check in (
        ("bundled", lambda v: isinstance(v, bool)),
        ("kind", lambda v: isinstance(v, str)),
        ("sha256", lambda v: isinstance(v, str)),
        ("size", lambda v: v is None or _is_int(v)),
        ("mtime_ns", lambda v: v is None or _is_int(v)),
        ("passages", lambda v: _is_int(v) and v >= 0),
        ("title", lambda v: v is None or isinstance(v, str)),
        ("note", lambda v: v is None or isinstance(v, str)),
        ("added", lambda v: isinstance(v, str)),
        ("updated", lambda v: isinstance(v, str)),
    ):
        if key in record:
            _check(check(record[key]), f"{where}.{key}")


def validate_manifest(raw: object) -> Manifest:
    """Return ``raw`` (parsed JSON) as a :class:`Manifest` once every key qa reads has its type.

    Keys may be absent (older indexes lack some; readers have defaults), but a key that is
    present has the schema's type, documents have a ``source`` and ``passages`` sum to
    ``n_passages``. Raises :class:`ManifestError` naming the first key that doesn't.
    """
    _check(isinstance(raw, dict), "the manifest")
    _check(isinstance(raw.get("files"), dict) and all(
        isinstance(name, str) and isinstance(entry, dict) for name, entry in raw["files"].items()), "files")
    for key in ("format_version", "dim", "n_passages", "terms"):
        if key in raw:
            _check(_is_int(raw[key]) and raw[key] >= 0, key)
    for key in ("created", "updated", "background"):
        if key in raw:
            _check(isinstance(raw[key], str), key)
    for key in ("vectors", "chunking"):
        if key in raw:
            _check(isinstance(raw[key], dict), key)
    if "model" in raw:
        model = raw["model"]
        _check(isinstance(model, dict) and isinstance(model.get("name"), str), "model")
        _check(isinstance(model.get("probe", []), list) and all(_is_number(x) for x in model.get("probe", [])),
               "model.probe")
        _check(_is_int(model.get("max_tokens", 0)) and model.get("max_tokens", 0) >= 0, "model.max_tokens")
    for key in ("roots", "excluded"):
        if key in raw:
            _check_strings(raw[key], key)
    if "documents" in raw:
        _check(isinstance(raw["documents"], list), "documents")
        for number, record in enumerate(raw["documents"]):
            _check_document(record, f"documents[{number}]")
        sources = [record["source"] for record in raw["documents"]]
        _check(len(set(sources)) == len(sources), "documents (a source twice)")
        if "n_passages" in raw and all("passages" in record for record in raw["documents"]):
            _check(sum(record["passages"] for record in raw["documents"]) == raw["n_passages"], "n_passages")
    if "passed_over" in raw:
        _check(isinstance(raw["passed_over"], list) and all(
            isinstance(item, dict) and isinstance(item.get("key"), str) and _is_int(item.get("size"))
            and _is_int(item.get("mtime_ns")) for item in raw["passed_over"]), "passed_over")
    if "skipped" in raw:
        _check(isinstance(raw["skipped"], list) and all(
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
            for item in raw["skipped"]), "skipped")
    return raw  # type: ignore[return-value]
