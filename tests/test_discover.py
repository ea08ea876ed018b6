import os
from pathlib import Path

import pytest

from qa.discover import Discovery, Skipped, find_documents
from qa.documents import DocumentError
from qa.extract import read_document
from qa.extract import MAX_FILE_BYTES

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"
as_root = pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                             reason="root reads everything; the simulated test covers this")


def make(root: Path, files: dict[str, bytes | str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def names(found: Discovery, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in found.files]


def reasons(found: Discovery, root: Path) -> dict[str, str]:
    return {Path(s.path).relative_to(root).as_posix(): s.reason for s in found.skipped}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make(tmp_path, {
        "b.md": "# B", "a.txt": "A", "c.html": "<p>C</p>", "sub/d.pdf": b"%PDF", "sub/e.docx": b"PK",
        "sub/deeper/f.TXT": "F", "g.htm": "<p>G</p>", "h.markdown": "H", "i.text": "I",
        "image.png": PNG, "notes": "text without a suffix", "data.csv": "a,b\n1,2",
        ".hidden.txt": "secret", ".git/config.txt": "x", "sub/.cache/j.txt": "x",
    })
    return tmp_path


def test_directories_are_walked_recursively_in_sorted_order(tree):
    found = find_documents([tree])
    assert names(found, tree) == [
        "a.txt", "b.md", "c.html", "g.htm", "h.markdown", "i.text",
        "sub/d.pdf", "sub/deeper/f.TXT", "sub/e.docx",
    ]
    assert found.files[0] == tree / "a.txt"  # paths as spelled from the input


def test_an_index_inside_a_walked_folder_is_passed_over_silently(tmp_path):
    make(tmp_path, {"a.txt": "A", "idx/CURRENT": "gen-1-1 abc\n", "idx/gen-1-1/manifest.json": "{}",
                    "idx/gen-1-1/notes.txt": "looks like a document", "not-index/CURRENT": "x",
                    "not-index/b.txt": "B", "notes/CURRENT": "x", "notes/gen-notes.txt": "C"})
    found = find_documents([tmp_path])
    assert names(found, tmp_path) == ["a.txt", "not-index/b.txt", "notes/gen-notes.txt"]
    # a CURRENT without generation folders is no index
    assert set(reasons(found, tmp_path)) == {"not-index/CURRENT", "notes/CURRENT"}
    for pattern in ("**/*.txt", "*/*", "idx/**/*.txt"):
        globbed = find_documents([str(tmp_path / pattern)])
        assert not any("idx" in name for name in names(globbed, tmp_path)), pattern
        assert not any("idx" in name for name in reasons(globbed, tmp_path) if name != "idx/**/*.txt"), pattern
    named = find_documents([tmp_path / "idx"])
    assert names(named, tmp_path) == [] and reasons(named, tmp_path) == {"idx": "a qa index, not documents"}


def test_unsupported_files_are_listed_and_hidden_ones_passed_over_silently(tree):
    assert reasons(find_documents([tree]), tree) == {
        "data.csv": "unsupported format '.csv'",
        "image.png": "unsupported format '.png'",
        "notes": "unsupported format (no file name extension)",
    }


def test_an_explicit_file_is_taken_when_it_is_text_whatever_its_suffix(tree):
    found = find_documents([tree / "notes", tree / "data.csv", tree / "image.png", tree / ".hidden.txt"])
    assert names(found, tree) == ["notes", "data.csv", ".hidden.txt"]
    assert found.skipped == [Skipped(str(tree / "image.png"), "unsupported format '.png'")]


def test_a_file_passed_over_in_a_walk_is_taken_when_named(tree):
    found = find_documents([tree, tree / "notes", tree / "image.png"])
    assert names(found, tree)[-1] == "notes"
    assert reasons(found, tree) == {"data.csv": "unsupported format '.csv'", "image.png": "unsupported format '.png'"}


def test_inputs_keep_their_order_and_each_file_comes_once(tree):
    found = find_documents([tree / "sub", tree / "b.md", tree, tree / "sub" / "e.docx"])
    assert names(found, tree) == [
        "sub/d.pdf", "sub/deeper/f.TXT", "sub/e.docx", "b.md",
        "a.txt", "c.html", "g.htm", "h.markdown", "i.text",
    ]
    assert [s.reason for s in found.skipped].count("unsupported format '.png'") == 1


def test_missing_inputs_and_globs_that_match_nothing_are_skipped(tree):
    found = find_documents([tree / "nope.txt", tree / "*.xyz", tree / "nope" / "**" / "*.md"])
    assert found.files == []
    assert found.skipped == [
        Skipped(str(tree / "nope.txt"), "no such file or directory"),
        Skipped(str(tree / "*.xyz"), "no file matches"),
        Skipped(str(tree / "nope" / "**" / "*.md"), "no file matches"),
    ]


def test_globs_expand_like_the_shell(tree, monkeypatch):
    assert names(find_documents([tree / "*.md"]), tree) == ["b.md"]
    assert names(find_documents([tree / "?.txt"]), tree) == ["a.txt"]
    assert names(find_documents([tree / "[ab].*"]), tree) == ["a.txt", "b.md"]
    assert names(find_documents([str(tree) + "/*/*.pdf"]), tree) == ["sub/d.pdf"]
    # A glob's matches count as given by hand: a text file without a suffix is taken.
    assert names(find_documents([tree / "no*"]), tree) == ["notes"]
    monkeypatch.chdir(tree)
    assert find_documents(["*.htm*"]).files == [Path("c.html"), Path("g.htm")]


def test_double_star_matches_any_depth_including_none(tree, monkeypatch):
    assert names(find_documents([tree / "**" / "*.txt"]), tree) == ["a.txt"]  # case-sensitive, like the shell
    assert names(find_documents([tree / "**" / "*.[tT][xX][tT]"]), tree) == ["a.txt", "sub/deeper/f.TXT"]
    assert names(find_documents([tree / "sub" / "**"]), tree) == ["sub/d.pdf", "sub/deeper/f.TXT", "sub/e.docx"]
    monkeypatch.chdir(tree)
    assert find_documents(["**/*.pdf"]).files == [Path("sub/d.pdf")]
    assert find_documents(["**/.*.txt"]).files == [Path(".hidden.txt")]  # hidden only when asked for


def test_a_file_whose_name_looks_like_a_glob_is_taken_literally(tmp_path):
    make(tmp_path, {"report[1].txt": "one", "report1.txt": "other"})
    assert find_documents([tmp_path / "report[1].txt"]).files == [tmp_path / "report[1].txt"]


def test_symbolic_link_loops_end(tmp_path):
    make(tmp_path, {"docs/a.txt": "A", "docs/inner/b.txt": "B"})
    (tmp_path / "docs" / "inner" / "up").symlink_to(tmp_path / "docs")
    (tmp_path / "docs" / "inner" / "again").symlink_to("..")
    (tmp_path / "docs" / "self").symlink_to(".")
    found = find_documents([tmp_path / "docs"])
    assert names(found, tmp_path) == ["docs/a.txt", "docs/inner/b.txt"]
    assert found.skipped == []
    by_glob = find_documents([tmp_path / "docs" / "**" / "*.txt"])
    assert names(by_glob, tmp_path) == ["docs/a.txt", "docs/inner/b.txt"]


def test_a_link_to_itself_is_a_loop_not_a_hang(tmp_path):
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    found = find_documents([tmp_path / "a.txt"])
    assert found.skipped == [Skipped(str(tmp_path / "a.txt"), "symbolic link loop")]


def test_symlinked_directories_and_files_are_followed_once(tmp_path):
    make(tmp_path, {"elsewhere/x.md": "X", "docs/a.txt": "A"})
    (tmp_path / "docs" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "docs" / "z.txt").symlink_to(tmp_path / "docs" / "a.txt")
    found = find_documents([tmp_path / "docs", tmp_path / "elsewhere"])
    assert names(found, tmp_path) == ["docs/a.txt", "docs/linked/x.md"]


def test_hard_links_are_one_file(tmp_path):
    make(tmp_path, {"a/one.txt": "same", "b/two.txt": "other"})
    os.link(tmp_path / "a" / "one.txt", tmp_path / "b" / "again.txt")
    assert names(find_documents([tmp_path / "a", tmp_path / "b"]), tmp_path) == ["a/one.txt", "b/two.txt"]


def test_broken_symbolic_links_are_skipped(tmp_path):
    make(tmp_path, {"docs/a.txt": "A"})
    (tmp_path / "docs" / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    found = find_documents([tmp_path / "docs", tmp_path / "docs" / "dangling.txt"])
    assert names(found, tmp_path) == ["docs/a.txt"]
    assert found.skipped == [Skipped(str(tmp_path / "docs" / "dangling.txt"), "broken symbolic link")] * 2


def test_huge_and_empty_files_are_skipped(tmp_path):
    make(tmp_path, {"empty.txt": "", "ok.txt": "fine"})
    sizes = {"limit.pdf": MAX_FILE_BYTES, "bigger.txt": 123 * 1024 * 1024, "under.txt": MAX_FILE_BYTES - 1}
    for name, size in sizes.items():
        with (tmp_path / name).open("wb") as handle:
            handle.truncate(size)  # sparse: no disk space, nothing to read
    found = find_documents([tmp_path])
    assert names(found, tmp_path) == ["ok.txt", "under.txt"]
    assert reasons(found, tmp_path) == {
        "bigger.txt": "100 MB or larger",
        "empty.txt": "empty file",
        "limit.pdf": "100 MB or larger",
    }
    assert find_documents([tmp_path / "empty.txt"]).skipped == [Skipped(str(tmp_path / "empty.txt"), "empty file")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipes_are_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    found = find_documents([tmp_path, tmp_path / "pipe.txt"])
    assert found.files == []
    assert found.skipped == [Skipped(str(tmp_path / "pipe.txt"), "not a regular file")]


@as_root
def test_unreadable_files_and_directories_are_skipped(tmp_path):
    make(tmp_path, {"locked/a.txt": "A", "secret.txt": "S", "open.txt": "O"})
    (tmp_path / "secret.txt").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        found = find_documents([tmp_path])
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert names(found, tmp_path) == ["open.txt"]
    assert reasons(found, tmp_path) == {"locked": "permission denied", "secret.txt": "permission denied"}


def test_permission_errors_are_skipped_not_raised(tmp_path, monkeypatch):
    make(tmp_path, {"locked/a.txt": "A", "secret.txt": "S", "secret-notes": "S", "open.txt": "O"})
    import qa.discover

    real_listdir, real_access, real_open = os.listdir, os.access, qa.discover.open_regular

    def listdir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    def access(path, mode, **kwargs):
        return Path(path).name != "secret.txt" and real_access(path, mode, **kwargs)

    def open_(path):  # a file without suffix is opened to tell text from binary
        if Path(path).name == "secret-notes":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(qa.discover, "open_regular", open_)
    found = find_documents([tmp_path])
    assert names(found, tmp_path) == ["open.txt"]
    assert reasons(found, tmp_path) == {
        "locked": "permission denied", "secret.txt": "permission denied",
        "secret-notes": "unsupported format (no file name extension)"}
    secret = tmp_path / "secret-notes"
    assert find_documents([secret]) == Discovery([], [Skipped(str(secret), "permission denied")])


def test_a_file_that_disappears_is_skipped(tmp_path, monkeypatch):
    make(tmp_path, {"a.txt": "A", "b.txt": "B"})
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: [*real_listdir(path), "ghost.txt"])
    found = find_documents([tmp_path])
    assert names(found, tmp_path) == ["a.txt", "b.txt"]
    assert reasons(found, tmp_path) == {"ghost.txt": "disappeared while indexing"}
    monkeypatch.undo()
    (tmp_path / "b.txt").unlink()  # gone between discovery and reading
    with pytest.raises(DocumentError, match=r"b.txt: disappeared while indexing"):
        read_document(found.files[1])


def test_nothing_raises_for_odd_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    found = find_documents([tmp_path / ("x" * 300), tmp_path / "a.txt" / "below-a-file.txt"])
    assert [s.reason for s in found.skipped] == ["file name too long", "no such file or directory"]
