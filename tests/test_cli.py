import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa.cli import app
from qa.paths import BUNDLED_ARTICLE

from conftest import FAKE_MODEL, FakeEmbedder

runner = CliRunner()
TESTS = Path(__file__).parent


def qa(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def index_state(index_dir: Path) -> dict:
    return {p.relative_to(index_dir).as_posix(): p.read_bytes() for p in sorted(index_dir.rglob("*")) if p.is_file()}


def assert_one_line_error(result, fragment: str):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]


@pytest.fixture
def indexed(fake_model, isolated_dirs):
    result = qa("index", "--model", FAKE_MODEL)
    assert result.exit_code == 0, result.output
    return isolated_dirs / "index"


def test_version_and_help():
    assert qa("--version").stdout.startswith("qa ")
    result = qa("--help")
    assert result.exit_code == 0
    for command in ("ask", "chat", "index"):
        assert command in result.stdout


def test_ask_json_contract(indexed):
    result = qa("ask", "--json", "Mohajer-6 Shahed drone Iran")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == "Mohajer-6 Shahed drone Iran"
    assert isinstance(data["found"], bool)
    assert len(data["passages"]) == 1
    top = data["passages"][0]
    assert set(top) >= {"text", "score", "source", "start", "end"}
    assert "Mohajer-6" in top["text"]
    assert isinstance(top["score"], float)
    source_text = Path(top["source"]).read_text(encoding="utf-8")
    assert source_text[top["start"]:top["end"]] == top["text"]


def test_ask_top_k_orders_best_first(indexed):
    data = json.loads(qa("ask", "--json", "--top-k", "4", "drone Iran Rusia").stdout)
    scores = [p["score"] for p in data["passages"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)


def test_ask_text_output_shows_passage_source_and_score(indexed):
    result = qa("ask", "Mohajer-6 Shahed drone Iran")
    assert result.exit_code == 0
    assert "Mohajer-6" in result.stdout
    assert BUNDLED_ARTICLE.name in result.stdout and "score" in result.stdout


def test_ask_builds_the_index_on_first_use(fake_model, isolated_dirs):
    result = qa("ask", "--model", FAKE_MODEL, "--json", "Mohajer-6 drone")
    assert result.exit_code == 0, result.output
    assert "indexing the bundled article" in result.stderr
    assert (isolated_dirs / "index" / "CURRENT").exists()


def test_status_lines_print_paths_as_written(fake_model, isolated_dirs):
    index_dir = isolated_dirs / "a[/b] [bold]x"
    result = qa("ask", "--model", FAKE_MODEL, "--index-dir", str(index_dir), "Mohajer-6 drone")
    assert result.exit_code == 0, result.output
    assert f"no index in {index_dir} yet" in result.stderr


@pytest.mark.parametrize("question", ["", "   ", "\t\n"])
def test_empty_question_is_a_one_line_error(indexed, question):
    before = index_state(indexed)
    assert_one_line_error(qa("ask", question), "question is empty")
    assert index_state(indexed) == before


def test_a_question_without_words_is_a_one_line_error(indexed):
    before = index_state(indexed)
    assert_one_line_error(qa("ask", "?"), "no words")
    assert index_state(indexed) == before


def test_index_missing_file_leaves_index_untouched(indexed, tmp_path):
    before = index_state(indexed)
    assert_one_line_error(qa("index", "--model", FAKE_MODEL, str(tmp_path / "nope.txt")), "no such file")
    assert index_state(indexed) == before


def test_latin1_file_is_decoded_and_the_run_says_so(indexed, tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Caf\xe9 cr\xe8me au caramel.".encode("latin-1"))
    result = qa("index", "--model", FAKE_MODEL, str(latin))
    assert result.exit_code == 0, result.output
    assert "latin1.txt" in result.stderr and "Latin-1" in result.stderr
    data = json.loads(qa("ask", "--json", "caf\xe9 cr\xe8me").stdout)
    assert data["passages"][0]["text"] == "Caf\xe9 cr\xe8me au caramel."
    assert "drone" in qa("ask", "--json", "drone").stdout.lower()  # the article is still there


def test_index_binary_file(indexed, tmp_path):
    bad = tmp_path / "image.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert_one_line_error(qa("index", "--model", FAKE_MODEL, str(bad)), "binary")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_index_unreadable_file(indexed, tmp_path):
    bad = tmp_path / "secret.txt"
    bad.write_text("x")
    bad.chmod(0)
    assert_one_line_error(qa("index", "--model", FAKE_MODEL, str(bad)), "permission denied")


def test_unwritable_index_dir(fake_model, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the index dir should go")
    result = qa("index", "--model", FAKE_MODEL, "--index-dir", str(blocker / "index"))
    assert_one_line_error(result, "cannot write the index directory")


def test_corrupted_index_is_a_one_line_error(indexed):
    gen = next(indexed.glob("gen-*"))
    vectors = gen / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:-7])
    before = index_state(indexed)
    assert_one_line_error(qa("ask", "drone"), "damaged")
    assert index_state(indexed) == before


def test_index_of_user_files_and_stale_document_is_rebuilt(fake_model, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("Notes\n\nThe zebra lives in Africa.\n\nPenguins live in Antarctica.\n", encoding="utf-8")
    assert qa("index", "--model", FAKE_MODEL, str(doc)).exit_code == 0
    data = json.loads(qa("ask", "--json", "where do penguins live").stdout)
    assert "Penguins" in data["passages"][0]["text"]

    doc.write_text("Notes\n\nThe zebra lives in Africa.\n\nKangaroos live in Australia.\n", encoding="utf-8")
    result = qa("ask", "--json", "where do kangaroos live")
    assert result.exit_code == 0, result.output
    assert "out of date" in result.stderr and "changed" in result.stderr
    assert "Kangaroos" in json.loads(result.stdout)["passages"][0]["text"]


def test_touched_but_unchanged_document_is_not_rebuilt(fake_model, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("The zebra lives in Africa.\n", encoding="utf-8")
    assert qa("index", "--model", FAKE_MODEL, str(doc)).exit_code == 0
    os.utime(doc, (1, 1))
    result = qa("ask", "zebra")
    assert result.exit_code == 0 and "out of date" not in result.stderr


def test_changed_model_weights_trigger_rebuild(fake_model, indexed, monkeypatch):
    from qa.embedder import register_embedder

    register_embedder(FAKE_MODEL, lambda: FakeEmbedder(salt="v2"))
    result = qa("ask", "--json", "drone")
    assert result.exit_code == 0, result.output
    assert "different vectors" in result.stderr


def test_other_model_than_the_index_is_a_clear_error(indexed):
    before = index_state(indexed)
    assert_one_line_error(qa("ask", "--model", "some/other-model", "drone"), "built with model 'fake-hash'")
    assert index_state(indexed) == before


def test_model_from_environment(indexed, monkeypatch):
    monkeypatch.setenv("QA_MODEL", "another-model")
    assert_one_line_error(qa("ask", "drone"), "not 'another-model'")


@pytest.mark.slow  # loads sentence-transformers (torch) to fail: seconds
def test_unknown_model_is_a_one_line_error(isolated_dirs):
    result = qa("index", "--model", str(isolated_dirs / "no-such-model-dir"))
    assert_one_line_error(result, "cannot load model")


def test_chat_with_piped_input_answers_each_line_without_prompts(indexed):
    result = qa("chat", input="Mohajer-6 drone Iran\n\nPutin Kim Jong-Un\n/sources\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Q: Mohajer-6 drone Iran" in out and "Q: Putin Kim Jong-Un" in out
    assert "Mohajer-6" in out and "Kim Jong-Un bahwa" in out
    assert "\x1b[" not in out and "?" not in out.splitlines()[0][:2]
    assert out.count("[5]") == 1  # /sources lists the top five of the last answer


def test_chat_commands(indexed):
    result = qa("chat", input="/help\n/bogus\n/sources\nquit\nnot asked\n")
    assert result.exit_code == 0
    assert "/sources" in result.stdout and "Unknown command /bogus" in result.stdout
    assert "No question asked yet" in result.stdout
    assert "Q: not asked" not in result.stdout


@pytest.mark.slow  # a real qa process: seconds
def test_chat_subprocess_with_piped_stdin(fake_model, isolated_dirs):
    env = {**os.environ, "QA_INDEX_DIR": str(isolated_dirs / "index")}
    subprocess.run([sys.executable, str(TESTS / "fake_qa.py"), "index", "--model", FAKE_MODEL],
                   env=env, check=True, capture_output=True)
    proc = subprocess.run(
        [sys.executable, str(TESTS / "fake_qa.py"), "chat"],
        input="Mohajer-6 drone Iran\nexit\nPutin\n", env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Mohajer-6" in proc.stdout and "Q: Putin" not in proc.stdout
    assert "\x1b[" not in proc.stdout


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from qa.cli import main; sys.argv=['qa','--help']\ntry: main()\nexcept SystemExit: pass\n" \
           "bad=[m for m in ('torch','sentence_transformers','faiss','transformers') if m in sys.modules]\n" \
           "print('HEAVY', bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_overlong_question_is_answered_with_a_note(indexed):
    result = qa("ask", "drone " * 200)
    assert result.exit_code == REFUSED_EXIT, result.output
    assert "longer than the model reads" in result.stdout
    assert json.loads(qa("ask", "--json", "drone " * 200).stdout)["truncated"] is True


def test_a_model_name_while_the_hub_is_unreachable_fails_at_once_with_why(monkeypatch):
    import sys
    import types

    from qa import embedder as embedder_module

    seen = {}

    def fake_sentence_transformer(name, device=None):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        types.SimpleNamespace(SentenceTransformer=fake_sentence_transformer))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(embedder_module, "_hub_reachable", lambda: False)
    with pytest.raises(embedder_module.EmbedderError, match="hub is unreachable and the model is not in the local"):
        embedder_module.SentenceTransformerEmbedder("nobody/no-such-model")
    assert seen["offline"] == "1"


def test_sources_without_an_index_names_the_command_that_makes_one(isolated_dirs):
    index_dir = isolated_dirs / "elsewhere"
    result = qa("sources", "--index-dir", str(index_dir))
    assert_one_line_error(result, f"no index in {index_dir} yet: `qa index PATH... --index-dir {index_dir}` makes one")


@pytest.mark.parametrize("args", [["ask", "-"], ["ask"]])
def test_ask_reads_the_question_from_standard_input(indexed, args):
    result = qa(*args, "--json", input="Mohajer-6 Shahed drone Iran\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == "Mohajer-6 Shahed drone Iran"
    assert "Mohajer-6" in data["passages"][0]["text"]


def test_ask_dash_with_empty_input_is_a_one_line_error(indexed):
    assert_one_line_error(qa("ask", "-", input=""), "the question is empty")


def test_ask_without_a_question_at_a_terminal_says_how(isolated_dirs):
    proc = subprocess.run([sys.executable, "-c", "import pty, sys; sys.exit(pty.spawn([sys.executable, '-m', 'qa.cli', 'ask']) >> 8)"],
                          capture_output=True, text=True, timeout=60)
    assert "give a question" in proc.stdout and "Traceback" not in proc.stdout


def test_ask_exit_codes_tell_an_answer_a_refusal_an_error_and_a_usage_error_apart(indexed):
    assert qa("ask", "Mohajer-6 Shahed drone Iran").exit_code == 0
    refused = qa("ask", "--json", "zzzz qqqq xxxx")
    assert refused.exit_code == REFUSED_EXIT == 3
    assert json.loads(refused.stdout)["found"] is False  # --json unchanged
    assert qa("ask", "?").exit_code == 1
    assert qa("ask", "--top-k", "0", "drones").exit_code == 2
