"""qa serve's HTTP API, in process (FastAPI's TestClient) with the fake model.

Every endpoint, every kind of bad input (each a 4xx with a one-line {"error": ...}),
conversations, freshness, the host check and the token. The server as a process
(Ctrl-C, ports, qa index beside it) is tests/test_serve_process.py; the page in a
real browser is tests/test_serve_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import FAKE_MODEL
from qa.cli import Status, _answer_service, app as cli_app
from qa.indexer import update_index
from qa.server import MAX_BODY_BYTES, MAX_QUESTION_CHARS, AnswerOut, create_app
from qa.service import current_generation

runner = CliRunner()
DRONES = "Mohajer-6 Shahed drone Iran"


@pytest.fixture
def index_dir(fake_model, isolated_dirs):
    result = runner.invoke(cli_app, ["index", "--model", FAKE_MODEL])
    assert result.exit_code == 0, result.output
    return isolated_dirs / "index"


@pytest.fixture
def service(index_dir):
    return _answer_service(None, None, Status())


@pytest.fixture
def client(service):
    with TestClient(create_app(service), base_url="http://127.0.0.1:8000") as client:
        yield client


def ask(client, **body):
    return client.post("/api/ask", json=body)


def assert_one_line_error(response, status: int, fragment: str = ""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert list(data) == ["error"], data
    assert "\n" not in data["error"] and "Traceback" not in data["error"]
    assert fragment.lower() in data["error"].lower(), data["error"]


# --------------------------------------------------------------------------- the endpoints


def test_ask_returns_exactly_the_qa_ask_json_object(client):
    response = ask(client, question=DRONES, top_k=3)
    assert response.status_code == 200
    cli = runner.invoke(cli_app, ["ask", "--json", "--top-k", "3", DRONES])
    assert cli.exit_code == 0, cli.output
    assert response.json() == json.loads(cli.stdout)
    assert response.text == cli.stdout.strip()  # byte for byte, unicode unescaped as the CLI prints it
    assert len(response.json()["passages"]) == 3 and "Mohajer-6" in response.json()["passages"][0]["text"]


def test_top_k_defaults_to_one_passage(client):
    assert len(ask(client, question=DRONES).json()["passages"]) == 1


def test_the_answer_matches_the_documented_schema(client):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/ask", "/api/sources", "/api/health", "/api/conversations/{conversation}"} <= set(paths)
    assert "AnswerOut" in json.dumps(paths["/api/ask"]["post"]["responses"]["200"])
    assert set(paths["/api/ask"]["post"]["responses"]) >= {"200", "415", "422"}
    AnswerOut.model_validate(ask(client, question=DRONES, top_k=5).json())


def test_sources_are_qa_sources_json(client):
    response = client.get("/api/sources")
    assert response.status_code == 200
    cli = runner.invoke(cli_app, ["sources", "--json"])
    assert response.json() == [json.loads(line) for line in cli.stdout.splitlines()]
    assert response.json()[0]["title"]


def test_health_names_the_generation_documents_and_model(client, index_dir):
    data = client.get("/api/health").json()
    assert data == {"status": "ok", "generation": current_generation(index_dir), "documents": 1,
                    "passages": data["passages"], "model": FAKE_MODEL}
    assert data["passages"] > 1


def test_the_page_is_one_offline_file_whose_only_script_the_policy_allows(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page loads something from the network"
    assert "@import" not in html and "url(" not in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    assert "connect-src 'self'" in policy


# --------------------------------------------------------------------------- conversations


def test_a_conversation_reads_a_follow_up_with_its_topic(client):
    first = ask(client, question=DRONES, conversation="tab-1").json()
    assert first["found"] and "context" not in first
    follow_up = ask(client, question="What will they be used for?", conversation="tab-1").json()
    assert follow_up["context"] == DRONES
    alone = ask(client, question="What will they be used for?").json()
    assert "context" not in alone  # without an id a question stands alone, as with qa ask
    other = ask(client, question="What will they be used for?", conversation="tab-2").json()
    assert "context" not in other  # conversations don't mix


def test_a_forgotten_conversation_starts_over(client):
    ask(client, question=DRONES, conversation="c1")
    assert client.delete("/api/conversations/c1").status_code == 204
    assert client.delete("/api/conversations/never-seen").status_code == 204
    assert "context" not in ask(client, question="What will they be used for?", conversation="c1").json()


def test_conversations_are_bounded_least_recently_used_first(service):
    service.conversations.limit = 3
    for name in ("a", "b", "c"):
        service.ask(DRONES, conversation=name)
    service.ask("What will they be used for?", conversation="a")  # a is now the most recent
    service.ask(DRONES, conversation="d")  # b goes
    assert len(service.conversations) == 3
    assert service.ask("What will they be used for?", conversation="a").context == DRONES
    assert service.ask("What will they be used for?", conversation="b").context is None


# --------------------------------------------------------------------------- bad input


BAD_BODIES = {
    "empty question": ({"question": ""}, 422, "the question is empty"),
    "blank question": ({"question": " \n\t "}, 422, "the question is empty"),
    "question without words": ({"question": "?!"}, 422, "no words"),
    "oversized question": ({"question": "drone " * (MAX_QUESTION_CHARS // 6 + 1)}, 422, "question"),
    "question a number": ({"question": 5}, 422, "'question'"),
    "question a list": ({"question": ["a"]}, 422, "'question'"),
    "question null": ({"question": None}, 422, "'question'"),
    "question with a lone surrogate": ({"question": "drone \ud800"}, 422, "'question'"),
    "question missing": ({"top_k": 2}, 422, "'question' is required"),
    "top_k a string": ({"question": DRONES, "top_k": "3"}, 422, "'top_k'"),
    "top_k a boolean": ({"question": DRONES, "top_k": True}, 422, "'top_k'"),
    "top_k a float": ({"question": DRONES, "top_k": 1.5}, 422, "'top_k'"),
    "top_k zero": ({"question": DRONES, "top_k": 0}, 422, "'top_k'"),
    "top_k too big": ({"question": DRONES, "top_k": 101}, 422, "'top_k'"),
    "top_k huge": ({"question": DRONES, "top_k": 10**30}, 422, "'top_k'"),
    "conversation with spaces": ({"question": DRONES, "conversation": "a b"}, 422, "'conversation' must be"),
    "conversation too long": ({"question": DRONES, "conversation": "a" * 65}, 422, "'conversation' must be"),
    "conversation a number": ({"question": DRONES, "conversation": 7}, 422, "'conversation'"),
    "unknown field": ({"question": DRONES, "topk": 3}, 422, "unknown field 'topk'"),
    "a list, not an object": ([DRONES], 422, "JSON object"),
    "a string, not an object": (DRONES, 422, "JSON object"),
    "null": (None, 422, "JSON object"),
}


@pytest.mark.parametrize("body,status,fragment", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_json_bodies_get_a_one_line_error(client, body, status, fragment):
    response = client.post("/api/ask", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_one_line_error(response, status, fragment)


BAD_REQUESTS = {
    "not JSON": (b"{question: drones", "application/json", 422, "not valid JSON"),
    "truncated JSON": (b'{"question": "drones', "application/json", 422, "not valid JSON"),
    "empty body": (b"", "application/json", 422, "JSON object"),
    "not UTF-8": (b'{"question": "\xff\xfe"}', "application/json", 400, "UTF-8"),
    "plain text": (b"Which drones?", "text/plain", 415, "Content-Type: application/json"),
    "a form": (b"question=drones", "application/x-www-form-urlencoded", 415, "JSON"),
    "no content type": (b'{"question": "drones"}', None, 415, "JSON"),
}


@pytest.mark.parametrize("body,kind,status,fragment", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_bodies_get_a_one_line_error(client, body, kind, status, fragment):
    headers = {"Content-Type": kind} if kind else {}
    response = client.post("/api/ask", content=body, headers=headers)
    assert_one_line_error(response, status, fragment)


def test_a_body_over_the_limit_is_refused_with_or_without_its_length(client):
    big = json.dumps({"question": "x" * MAX_BODY_BYTES}).encode()
    assert_one_line_error(client.post("/api/ask", content=big, headers={"Content-Type": "application/json"}),
                          413, "larger than")

    def chunks():  # no Content-Length: the guard counts what arrives
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]

    response = client.post("/api/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert_one_line_error(response, 413, "larger than")


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/ask", 405), ("PUT", "/api/ask", 405), ("POST", "/api/health", 405),
    ("DELETE", "/api/sources", 405), ("GET", "/api/nothing", 404), ("GET", "/docs", 404),
    ("GET", "/index.html", 404), ("GET", "/api/conversations/x", 405),
])
def test_wrong_methods_and_paths_get_a_one_line_error(client, method, path, status):
    kwargs = {"json": {"question": DRONES}} if method in {"POST", "PUT"} else {}
    assert_one_line_error(client.request(method, path, **kwargs), status)


@pytest.mark.parametrize("question", ["drone\u0000Iran", "\u202edrone Iran", "drone " * 400])
def test_odd_but_valid_questions_are_answered(client, question):
    response = client.post("/api/ask", content=json.dumps({"question": question}),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["passages"]


# --------------------------------------------------------------------------- the index on disk


def test_a_changed_document_is_indexed_before_the_answer(client, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("The lighthouse keeper feeds seven cats every morning.\n", encoding="utf-8")
    assert runner.invoke(cli_app, ["index", str(doc)]).exit_code == 0
    before = client.get("/api/health").json()["generation"]
    doc.write_text("The lighthouse keeper feeds eleven parrots every evening.\n", encoding="utf-8")
    answer = ask(client, question="lighthouse keeper parrots").json()
    assert "eleven parrots" in answer["passages"][0]["text"]
    assert client.get("/api/health").json()["generation"] != before


def test_an_index_written_by_another_process_is_picked_up(client, index_dir, tmp_path):
    doc = tmp_path / "harbour.txt"
    doc.write_text("The harbour master counts the fishing boats at dawn.\n", encoding="utf-8")
    assert len(client.get("/api/sources").json()) == 1
    update_index(index_dir, [str(doc)], model=FAKE_MODEL)  # as `qa index` beside the server would
    assert [d["source"] for d in client.get("/api/sources").json()][-1] == str(doc)
    assert client.get("/api/health").json()["generation"] == current_generation(index_dir)
    assert "harbour master" in ask(client, question="harbour master fishing boats").json()["passages"][0]["text"]


@pytest.mark.slow  # over 2 s
def test_a_damaged_index_is_a_one_line_503_naming_the_repair(client, index_dir):
    (index_dir / "CURRENT").write_text("gen-garbage 0000\n", encoding="ascii")
    for response in (ask(client, question=DRONES), client.get("/api/sources"), client.get("/api/health")):
        assert_one_line_error(response, 503, "damaged")
        assert "`qa index" in response.json()["error"]


# --------------------------------------------------------------------------- who may ask


@pytest.mark.parametrize("host,allowed", [
    ("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True), ("127.0.0.2", True),
    ("evil.example:8000", False), ("127.0.0.1.evil.example", False), ("", False),
])
def test_a_loopback_server_answers_only_requests_to_a_loopback_name(client, host, allowed):
    response = client.get("/api/health", headers={"Host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert_one_line_error(response, 400, "127.0.0.1 or localhost")


def test_a_token_guards_the_api_but_not_the_page(service):
    app = create_app(service, token="s3cret-token", loopback=False)
    with TestClient(app, base_url="http://192.0.2.10:8000") as client:
        assert client.get("/").status_code == 200  # the page holds no data; it sends the token
        for path in ("/api/health", "/api/sources", "/openapi.json"):
            assert_one_line_error(client.get(path), 401, "Authorization: Bearer")
            assert_one_line_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
            assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert_one_line_error(client.post("/api/ask", json={"question": DRONES}), 401)
        ok = client.post("/api/ask", json={"question": DRONES}, headers={"Authorization": "bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["passages"]


def test_the_server_answers_through_the_reader_seam(index_dir, monkeypatch):
    import dataclasses

    from qa import reader

    class Shouting:
        name = reader.DEFAULT_READER

        def read(self, answer):
            return dataclasses.replace(answer, written=answer.passages[0].passage.text[:20].upper())

    monkeypatch.setitem(reader._READERS, reader.DEFAULT_READER, Shouting)
    with TestClient(create_app(_answer_service(None, None, Status())), base_url="http://127.0.0.1") as client:
        plain = ask(client, question=DRONES).json()
        follow_up = ask(client, question="What will they be used for?", conversation="c").json()
    assert plain["answer"] == plain["passages"][0]["text"][:20].upper()
    assert follow_up["answer"] == follow_up["passages"][0]["text"][:20].upper()
    AnswerOut.model_validate(plain)


def test_serve_takes_the_store_the_index_uses_and_refuses_another_in_one_line(index_dir):
    assert _answer_service(None, None, Status(), "faiss") is not None
    result = runner.invoke(cli_app, ["serve", "--port", "0", "--store", "milvus:elsewhere.db"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "keeps its vectors in 'faiss'" in lines[0] and "qa index --store milvus:elsewhere.db" in lines[0]
