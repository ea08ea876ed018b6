"""The manifest of an index generation, as typed data: parsed and checked once, where it is read.

A manifest is JSON that the index directory's owner could have rewritten, checksums
included (see ``docs/RELIABILITY.md``). :meth:`Manifest.from_json` checks every key qa
reads and turns the JSON into frozen dataclasses, so that code downstream reads
attributes of known types: a forged manifest of the right checksums but wrong types
(``"source": 5``, ``"roots": null``, ``"probe": "abc"``) is a damaged index, said in one
line, never a traceback deep in the indexer. :meth:`Manifest.to_json` gives the JSON
object written to disk. Nothing else in qa reads a manifest's raw keys, except
:class:`CarriedLibrary`, what an index that can't be loaded (an older format, a
damaged one) still says about its documents, read leniently here too.

The vector store's record (``vectors``) and the chunk settings (``chunking``) stay
JSON objects: the first belongs to the vector store (:mod:`qa.vectorstore`), the
second is compared whole with :meth:`qa.documents.ChunkSettings.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from qa.roots import BUNDLED_ROOT


class ManifestError(ValueError):
    """A manifest does not follow the schema; the message names the first wrong key."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, where: str) -> None:
    if not ok:
        raise ManifestError(f"{where} has the wrong type")


def _strings(value: object, where: str) -> tuple[str, ...]:
    _check(isinstance(value, list) and all(isinstance(item, str) for item in value), where)
    return tuple(value)  # type: ignore[arg-type]


def _optional(raw: Mapping[str, Any], key: str, ok, where: str, default: Any = None) -> Any:
    """Return ``raw[key]`` when present (checked with ``ok``), else ``default``."""
    if key not in raw:
        return default
    _check(ok(raw[key]), where)
    return raw[key]


@dataclass(frozen=True)
class FileRecord:
    """A data file of the generation: its SHA-256 and size (None when the manifest lacks
    one, which no file then matches)."""

    sha256: str | None
    bytes: int | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "FileRecord":
        """Return the record of a ``files`` entry (its values may be of any type: a wrong one
        is a checksum that nothing matches)."""
        sha, size = raw.get("sha256"), raw.get("bytes")
        return cls(sha if isinstance(sha, str) else None, size if _is_int(size) else None)

    def to_json(self) -> dict:
        """Return the entry as written."""
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class ModelRecord:
    """The model whose vectors the index holds: its name, a probe vector (to tell whether
    the model still embeds alike) and its window in tokens (None when not recorded)."""

    name: str
    probe: tuple[float, ...] = ()
    max_tokens: int | None = None

    @classmethod
    def from_json(cls, raw: object) -> "ModelRecord":
        """Return the checked record of the manifest's ``model``; raises :class:`ManifestError`."""
        _check(isinstance(raw, dict) and isinstance(raw.get("name"), str), "model")
        probe = raw.get("probe", [])
        _check(isinstance(probe, list) and all(_is_number(x) for x in probe), "model.probe")
        max_tokens = raw.get("max_tokens")
        _check(max_tokens is None or (_is_int(max_tokens) and max_tokens >= 0), "model.max_tokens")
        return cls(raw["name"], tuple(probe), max_tokens)

    def to_json(self) -> dict:
        """Return the record as written."""
        out: dict[str, Any] = {"name": self.name, "probe": list(self.probe)}
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out


_DOCUMENT_CHECKS = {
    "bundled": lambda v: isinstance(v, bool),
    "kind": lambda v: isinstance(v, str),
    "sha256": lambda v: isinstance(v, str),
    "size": lambda v: v is None or _is_int(v),
    "mtime_ns": lambda v: v is None or _is_int(v),
    "passages": lambda v: _is_int(v) and v >= 0,
    "title": lambda v: v is None or isinstance(v, str),
    "note": lambda v: v is None or isinstance(v, str),
    "added": lambda v: isinstance(v, str),
    "updated": lambda v: isinstance(v, str),
}


@dataclass(frozen=True)
class DocumentRecord:
    """One indexed document: where it is, its content hash, size and modification time
    (as seen before it was read), its passage count, title and how it was read, and
    when it was added and last updated (ISO times; None before it is dated)."""

    source: str
    bundled: bool = False
    kind: str = "text"
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    passages: int = 0
    title: str | None = None
    note: str | None = None
    added: str | None = None
    updated: str | None = None

    @classmethod
    def from_json(cls, raw: object, where: str = "document") -> "DocumentRecord":
        """Return the checked record of one entry of ``documents``; raises :class:`ManifestError`."""
        _check(isinstance(raw, dict) and isinstance(raw.get("source"), str) and raw["source"] != "", where)
        values = {key: _optional(raw, key, check, f"{where}.{key}") for key, check in _DOCUMENT_CHECKS.items()
                  if key in raw}
        return cls(raw["source"], **values)

    def to_json(self) -> dict:
        """Return the record as written (``sha256``, ``note``, ``added`` and ``updated`` only when set)."""
        out = {name: getattr(self, name) for name in ("source", "bundled", "kind", "sha256", "size", "mtime_ns",
                                                      "passages", "title")}
        if self.sha256 is None:
            del out["sha256"]
        for name in ("note", "added", "updated"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class PassedOver:
    """A file under the roots that gave nothing to index, with the size and time it had:
    not new again until it changes."""

    key: str
    size: int
    mtime_ns: int

    def to_json(self) -> dict:
        """Return the entry as written."""
        return {"key": self.key, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True)
class Manifest:
    """A generation's manifest. ``files``, ``format_version``, ``dim`` and ``vectors`` are
    filled in by :func:`qa.store.write_index`; a manifest built for a write leaves them
    empty. ``terms`` is the BM25 rules' version (1 before it was recorded)."""

    format_version: int | None = None
    dim: int | None = None
    files: Mapping[str, FileRecord] = field(default_factory=dict)
    vectors: Mapping[str, Any] | None = None
    created: str | None = None
    updated: str | None = None
    model: ModelRecord | None = None
    chunking: Mapping[str, Any] | None = None
    background: str | None = None
    roots: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    documents: tuple[DocumentRecord, ...] = ()
    n_passages: int | None = None
    terms: int = 1
    passed_over: tuple[PassedOver, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, raw: object) -> "Manifest":
        """Return ``raw`` (parsed JSON) as a :class:`Manifest` once every key qa reads has its type.

        Keys may be absent (older indexes lack some; the fields have defaults), but a key
        that is present has the schema's type, documents have a ``source`` (each once)
        and their ``passages`` sum to ``n_passages``. Raises :class:`ManifestError`
        naming the first key that doesn't.
        """
        _check(isinstance(raw, dict), "the manifest")
        _check(isinstance(raw.get("files"), dict) and all(
            isinstance(name, str) and isinstance(entry, dict) for name, entry in raw["files"].items()), "files")
        counts = {key: _optional(raw, key, lambda v: _is_int(v) and v >= 0, key)
                  for key in ("format_version", "dim", "n_passages", "terms")}
        texts = {key: _optional(raw, key, lambda v: isinstance(v, str), key) for key in ("created", "updated", "background")}
        objects = {key: _optional(raw, key, lambda v: isinstance(v, dict), key) for key in ("vectors", "chunking")}
        documents = _documents(raw, counts["n_passages"])
        return cls(
            files={name: FileRecord.from_json(entry) for name, entry in raw["files"].items()},
            model=ModelRecord.from_json(raw["model"]) if "model" in raw else None,
            roots=_strings(raw["roots"], "roots") if "roots" in raw else (),
            excluded=_strings(raw["excluded"], "excluded") if "excluded" in raw else (),
            documents=documents,
            passed_over=_passed_over(raw.get("passed_over", [])),
            skipped=_skipped(raw.get("skipped", [])),
            **{**counts, "terms": 1 if counts["terms"] is None else counts["terms"]}, **texts, **objects,
        )

    def to_json(self) -> dict:
        """Return the JSON object written to disk (absent fields left out)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if item.name == "files":
                value = {name: record.to_json() for name, record in value.items()}
            elif item.name == "model":
                value = value.to_json()
            elif item.name in ("documents", "passed_over"):
                value = [record.to_json() for record in value]
            elif item.name in ("roots", "excluded"):
                value = list(value)
            elif item.name == "skipped":
                value = [list(pair) for pair in value]
            elif item.name in ("vectors", "chunking"):
                value = dict(value)
            out[item.name] = value
        return out

    def with_documents(self, documents: tuple[DocumentRecord, ...]) -> "Manifest":
        """Return a copy with other document records."""
        return replace(self, documents=documents)

    @property
    def model_name(self) -> str | None:
        """The name of the model that embedded the index (None: not recorded)."""
        return self.model.name if self.model else None


def _documents(raw: Mapping[str, Any], n_passages: int | None) -> tuple[DocumentRecord, ...]:
    if "documents" not in raw:
        return ()
    _check(isinstance(raw["documents"], list), "documents")
    documents = tuple(DocumentRecord.from_json(record, f"documents[{number}]")
                      for number, record in enumerate(raw["documents"]))
    sources = [record.source for record in documents]
    _check(len(set(sources)) == len(sources), "documents (a source twice)")
    if n_passages is not None and all("passages" in record for record in raw["documents"]):
        _check(sum(record.passages for record in documents) == n_passages, "n_passages")
    return documents


def _passed_over(raw: object) -> tuple[PassedOver, ...]:
    _check(isinstance(raw, list) and all(
        isinstance(item, dict) and isinstance(item.get("key"), str) and _is_int(item.get("size"))
        and _is_int(item.get("mtime_ns")) for item in raw), "passed_over")
    return tuple(PassedOver(item["key"], item["size"], item["mtime_ns"]) for item in raw)  # type: ignore[union-attr]


def _skipped(raw: object) -> tuple[tuple[str, str], ...]:
    _check(isinstance(raw, list) and all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item) for item in raw),
        "skipped")
    return tuple((item[0], item[1]) for item in raw)  # type: ignore[union-attr]


@dataclass(frozen=True)
class CarriedLibrary:
    """What an index that can't be loaded still says about its library: an index of an
    older format, or a damaged one whose manifest is intact but perhaps not of this
    schema. Its roots (with each document's source, so that none is lost), the name of
    its model, how many documents it lists, when it was written, and whether they are
    the bundled article alone; read leniently, every value of the wrong type passed over."""

    roots: tuple[str, ...] = ()
    model_name: str | None = None
    documents: int = 0
    written: str | None = None
    bundled_only: bool = False

    @classmethod
    def from_json(cls, raw: object) -> "CarriedLibrary":
        """Return what can be trusted of a manifest's document list (never raises)."""
        if not isinstance(raw, dict):
            return cls()
        roots = [r for r in raw["roots"] if isinstance(r, str)] if isinstance(raw.get("roots"), list) else []
        documents = raw.get("documents") if isinstance(raw.get("documents"), list) else []
        for record in documents:
            if isinstance(record, dict) and isinstance(record.get("source"), str):
                roots.append(BUNDLED_ROOT if record.get("bundled") else record["source"])
        model = raw.get("model")
        name = model.get("name") if isinstance(model, dict) and isinstance(model.get("name"), str) else None
        written = raw.get("updated") or raw.get("created")
        bundled_only = bool(documents) and all(isinstance(d, dict) and d.get("bundled") is True for d in documents)
        return cls(tuple(roots), name, len(documents), written if isinstance(written, str) else None, bundled_only)

    @classmethod
    def of(cls, manifest: Manifest) -> "CarriedLibrary":
        """Return the library of a manifest of this format (already checked)."""
        sources = (BUNDLED_ROOT if record.bundled else record.source for record in manifest.documents)
        bundled_only = bool(manifest.documents) and all(record.bundled for record in manifest.documents)
        return cls((*manifest.roots, *sources), manifest.model_name, len(manifest.documents),
                   manifest.updated or manifest.created, bundled_only)
