"""A damaged ``CURRENT`` or current manifest: the library is recovered, never replaced.

When the current generation's manifest can't be trusted, or ``CURRENT`` is missing
or damaged, qa rebuilds from the document list of the newest generation whose
manifest is intact, and says which. With no intact manifest anywhere it refuses to
guess (and never indexes the bundled article in the library's place), except from
paths the user names. A regular file given as the index directory is "not a directory".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL, FakeEmbedder
from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa.cli import app
from qa.indexer import IndexingError, update_index
from qa.paths import BUNDLED_ARTICLE
from qa.store import CURRENT, MANIFEST, MANIFEST_SHA, VECTORS_NPY, generations, read_index

runner = CliRunner()
NAMES = ["kangaroo.txt", "owl.txt", "penguin.md", "zebra.txt"]


def qa(*args):
    return runner.invoke(app, [str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def names(index_dir: Path) -> list[str]:
    return sorted(Path(r["source"]).name for r in read_index(index_dir).manifest.to_json()["documents"])


def index_state(index_dir: Path) -> dict:
    return {p.relative_to(index_dir).as_posix(): p.read_bytes() for p in sorted(index_dir.rglob("*")) if p.is_file()}


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def current_gen(index_dir: Path) -> Path:
    return index_dir / (index_dir / CURRENT).read_text().split()[0]


@pytest.fixture
def library(tmp_path):
    """A folder of notes indexed in two runs (the second adds a file to the folder), so
    that the index holds two generations: the current one (4 documents) and the one
    before it (3 documents of the same folder)."""
    folder = tmp_path / "notes"
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Africa.\n\nIt eats grass all day.\n")
    write(folder / "penguin.md", "# Penguins\n\nPenguins live in Antarctica.\n\nThey eat fish.\n")
    write(folder / "sub" / "kangaroo.txt", "Kangaroos\n\nKangaroos live in Australia.\n")
    index_dir = tmp_path / "library-index"  # not the default: hints name it
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    older = read_index(index_dir).directory
    write(folder / "owl.txt", "Owls\n\nOwls hunt mice at night.\n")
    update_index(index_dir, [], embedder=FakeEmbedder())
    assert generations(index_dir) == [read_index(index_dir).directory.name, older.name]
    return folder, index_dir, older


# --------------------------------------------------------------------------- an intact older generation


def test_flipped_byte_in_the_manifest_keeps_every_document_of_the_library(fake_model, library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / MANIFEST)
    result = qa("index", "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    assert f"from the document list of {older.name}" in result.stderr
    assert "does not match its checksum" in result.stderr
    assert names(index_dir) == NAMES  # the folder is scanned again: the newest file is back too
    sources = qa("sources", "--json", "--index-dir", index_dir)
    assert sources.exit_code == 0 and len(sources.stdout.splitlines()) == 4
    assert BUNDLED_ARTICLE.name not in sources.stdout


def test_recovery_embeds_only_what_the_intact_generation_does_not_hold(library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / MANIFEST)
    embedder, messages = FakeEmbedder(), []
    report = update_index(index_dir, [], embedder=embedder, notify=messages.append)
    assert report.written and report.added == [str((folder / "owl.txt").resolve())] and report.unchanged == 3
    texts = [t for t in embedder.embedded if not t.startswith("qa model probe")]
    assert texts and all("Owls" in text or "mice" in text for text in texts), texts
    assert sum(older.name in m for m in messages) == 1
    assert names(index_dir) == NAMES


def test_recovery_with_nothing_changed_makes_the_intact_generation_current(library):
    folder, index_dir, older = library
    (folder / "owl.txt").unlink()  # the library is what the older generation holds
    flip_byte(current_gen(index_dir) / MANIFEST)
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert not report.written and report.embedded == 0
    assert read_index(index_dir).directory == older and names(index_dir) == ["kangaroo.txt", "penguin.md", "zebra.txt"]


def test_recovery_keeps_the_exclusions_of_the_library(library):
    folder, index_dir, _ = library
    update_index(index_dir, remove=[folder / "penguin.md"])  # now excluded from its folder
    write(folder / "owl.txt", "Owls\n\nOwls hunt voles at night.\n")
    update_index(index_dir, [], embedder=FakeEmbedder())  # the generation before this one has the exclusion
    flip_byte(current_gen(index_dir) / MANIFEST)
    update_index(index_dir, [], embedder=FakeEmbedder())
    assert names(index_dir) == ["kangaroo.txt", "owl.txt", "zebra.txt"]


def test_ask_with_a_flipped_manifest_answers_from_the_recovered_library(fake_model, library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / MANIFEST)
    result = qa("ask", "--json", "where do kangaroos live", "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    assert older.name in result.stderr and "bundled article" not in result.stderr
    assert "kangaroo" in json.loads(result.stdout)["passages"][0]["source"]
    assert names(index_dir) == NAMES


def test_deleted_current_is_not_replaced_by_the_bundled_article(fake_model, library):
    folder, index_dir, _ = library
    newest = current_gen(index_dir)
    (index_dir / CURRENT).unlink()
    result = qa("ask", "--json", "where do owls hunt", "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    assert "bundled article" not in result.stderr and "CURRENT is missing" in result.stderr
    assert newest.name in result.stderr  # its manifest is intact: nothing is lost
    assert "owl" in json.loads(result.stdout)["passages"][0]["source"]
    assert names(index_dir) == NAMES


def test_deleted_current_on_index_keeps_the_library(library):
    folder, index_dir, _ = library
    (index_dir / CURRENT).unlink()
    messages = []
    update_index(index_dir, [], embedder=FakeEmbedder(), notify=messages.append)
    assert names(index_dir) == NAMES and not any("bundled" in m for m in messages)


@pytest.mark.parametrize("damage", ["garbage", "missing generation"])
def test_damaged_current_is_recovered_from_the_generations(library, damage):
    folder, index_dir, older = library
    newest = current_gen(index_dir).name
    if damage == "garbage":
        (index_dir / CURRENT).write_bytes(b"\x00\xff garbage")
        expected = newest
    else:
        (index_dir / CURRENT).write_text(f"gen-1-1 {'0' * 64}\n")
        expected = newest
    messages = []
    update_index(index_dir, [], embedder=FakeEmbedder(), notify=messages.append)
    assert names(index_dir) == NAMES and any(expected in m for m in messages), messages


def test_older_generation_with_damaged_data_still_gives_its_document_list(library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / MANIFEST)
    flip_byte(older / VECTORS_NPY, at=-5)
    embedder = FakeEmbedder()
    report = update_index(index_dir, [], embedder=embedder)
    assert report.written and names(index_dir) == NAMES
    assert any("Kangaroos" in text for text in embedder.embedded)  # its vectors were not trusted


def test_a_generation_whose_manifest_does_not_match_its_own_checksum_is_not_trusted(library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / MANIFEST)
    manifest = older / MANIFEST
    # Still valid JSON: only its recorded checksum tells that a path is now wrong.
    manifest.write_bytes(manifest.read_bytes().replace(b"zebra.txt", b"zebrb.txt"))
    json.loads(manifest.read_bytes())
    assert (older / MANIFEST_SHA).exists()
    with pytest.raises(IndexingError, match="no intact list of its documents"):
        update_index(index_dir, [], embedder=FakeEmbedder())


# --------------------------------------------------------------------------- no intact manifest anywhere


@pytest.fixture
def hopeless(library):
    """The library with every generation's manifest damaged."""
    folder, index_dir, _ = library
    for name in generations(index_dir):
        flip_byte(index_dir / name / MANIFEST)
    return folder, index_dir


def test_ask_without_an_intact_manifest_is_a_one_line_error_and_changes_nothing(fake_model, hopeless):
    folder, index_dir = hopeless
    before = index_state(index_dir)
    line = assert_one_line_error(qa("ask", "where do owls hunt", "--index-dir", index_dir),
                                 "damaged", f"qa index PATH... --replace --index-dir {index_dir}")
    assert "bundled" not in line
    assert index_state(index_dir) == before


def test_chat_without_an_intact_manifest_is_a_one_line_error(fake_model, hopeless):
    folder, index_dir = hopeless
    result = runner.invoke(app, ["chat", "--index-dir", str(index_dir)], input="where do owls hunt\n")
    assert_one_line_error(result, "damaged", "--replace")


def test_index_without_paths_and_without_an_intact_manifest_is_a_one_line_error(fake_model, hopeless):
    folder, index_dir = hopeless
    before = index_state(index_dir)
    assert_one_line_error(qa("index", "--index-dir", index_dir), "damaged", "qa index PATH... --replace")
    assert index_state(index_dir) == before


def test_index_with_paths_and_without_an_intact_manifest_builds_from_them(fake_model, hopeless):
    folder, index_dir = hopeless
    result = qa("index", folder / "zebra.txt", folder / "owl.txt", "--model", FAKE_MODEL, "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "damaged" in line]
    assert len(notes) == 1 and "building a new index from the paths given" in notes[0]
    assert names(index_dir) == ["owl.txt", "zebra.txt"]


def test_new_index_still_gets_the_bundled_article(fake_model, tmp_path):
    result = qa("ask", "--model", FAKE_MODEL, "drone", "--index-dir", tmp_path / "fresh")
    assert result.exit_code == REFUSED_EXIT and "indexing the bundled article" in result.stderr


# --------------------------------------------------------------------------- a file as the index directory


@pytest.mark.parametrize("command", [["ask", "drone"], ["index"], ["sources"], ["chat"],
                                     ["index", str(BUNDLED_ARTICLE)]])
def test_a_regular_file_as_the_index_dir_is_not_a_directory(fake_model, tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("not an index")
    result = runner.invoke(app, [*command, "--index-dir", str(afile), "--model", FAKE_MODEL][: None if command[0] != "sources" else -2],
                           input="")
    assert_one_line_error(result, f"{afile} is not a directory")
    assert afile.read_text() == "not an index"


# --------------------------------------------------------------------------- what each command says


def test_sources_on_a_damaged_index_names_the_command_that_repairs_it(fake_model, library):
    folder, index_dir, older = library
    flip_byte(current_gen(index_dir) / VECTORS_NPY)
    before = index_state(index_dir)
    assert_one_line_error(qa("sources", "--index-dir", index_dir), "damaged",
                          f"`qa index --index-dir {index_dir}` rebuilds it from its documents")
    assert_one_line_error(qa("ask", "where do owls hunt", "--index-dir", index_dir), "damaged",
                          f"`qa index --index-dir {index_dir}` rebuilds it from its documents")
    (index_dir / CURRENT).unlink()
    assert_one_line_error(qa("sources", "--index-dir", index_dir), "CURRENT is missing",
                          f"`qa index --index-dir {index_dir}` recovers it from its newest intact generation")
    for name in generations(index_dir):
        flip_byte(index_dir / name / MANIFEST)
    assert_one_line_error(qa("sources", "--index-dir", index_dir), "no intact list of its documents",
                          f"`qa index PATH... --replace --index-dir {index_dir}`")
    del before[CURRENT]
    assert {k: v for k, v in index_state(index_dir).items() if not k.endswith(MANIFEST)} == {
        k: v for k, v in before.items() if not k.endswith(MANIFEST)}
