"""The per-user warm embedding service (qa/embed_service.py), served by the fake model.

The service runs in a thread of the test process on a socket in the test's own
runtime folder; the client must get the very vectors the model gives, refuse unsafe
folders and foreign services, and fall back to an in-process model whenever the
service is missing, wrong or gone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import FakeEmbedder
from qa import embed_service


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A private XDG_RUNTIME_DIR with the service switched on."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.setenv(embed_service.SERVICE_ENV, "1")
    return folder / "qa"


def start(key: str, embedder, idle_s: float = 30.0) -> threading.Thread:
    thread = threading.Thread(target=embed_service.serve, args=(key, embedder, idle_s), daemon=True)
    thread.start()
    path = embed_service.socket_path(key)
    deadline = time.monotonic() + 10
    while not (path and path.is_socket()):
        assert time.monotonic() < deadline, "the service never listened"
        time.sleep(0.01)
    return thread


def fallback_model(calls: list):
    def load():
        calls.append("loaded")
        return FakeEmbedder()
    return load


def test_the_client_gets_the_models_own_vectors_and_token_counts(runtime):
    model = FakeEmbedder()
    thread = start("k1", model, idle_s=2)
    calls = []
    client = embed_service.connect("k1", fallback_model(calls))
    assert client is not None
    assert (client.name, client.dim, client.max_tokens) == (model.name, model.dim, model.max_tokens)
    questions = ["Which drones did Russia import?", "Kapan Rusia menginvasi Ukraina?"]
    assert np.array_equal(client.embed_queries(questions), FakeEmbedder().embed_queries(questions))
    assert np.array_equal(client.embed_passages(["a passage"]), FakeEmbedder().embed_passages(["a passage"]))
    assert client.embed_passages([]).shape == (0, model.dim)
    assert client.count_tokens("three little words") == model.count_tokens("three little words")
    assert calls == []  # nothing was loaded in-process
    thread.join(timeout=10)
    assert not thread.is_alive(), "the service did not exit when idle"
    assert not embed_service.socket_path("k1").exists()


def test_socket_and_folder_are_private(runtime):
    thread = start("k2", FakeEmbedder(), idle_s=1)
    assert os.stat(runtime).st_mode & 0o777 == 0o700
    assert os.stat(embed_service.socket_path("k2")).st_mode & 0o077 == 0
    thread.join(timeout=10)


def test_no_service_means_no_client(runtime):
    assert embed_service.connect("nobody", fallback_model([])) is None


def test_switched_off_it_is_never_asked(runtime, monkeypatch):
    thread = start("k3", FakeEmbedder(), idle_s=1)
    monkeypatch.setenv(embed_service.SERVICE_ENV, "0")
    assert embed_service.connect("k3", fallback_model([])) is None
    assert embed_service.start_in_background("k3", runtime, "x") is False
    thread.join(timeout=10)


def test_a_service_for_another_engine_is_not_used(runtime):
    thread = start("k4", FakeEmbedder(), idle_s=1)
    other = embed_service.socket_path("other")
    os.symlink(embed_service.socket_path("k4"), other)  # answers, but with key k4
    assert embed_service.connect("other", fallback_model([])) is None
    thread.join(timeout=10)


@pytest.mark.parametrize("problem", ["open to others", "a symlink", "another file"])
def test_an_unsafe_runtime_folder_turns_the_service_off(tmp_path, monkeypatch, problem):
    base = tmp_path / "run"
    base.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    if problem == "open to others":
        (base / "qa").mkdir(mode=0o755)
        os.chmod(base / "qa", 0o755)
    elif problem == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        os.symlink(tmp_path / "elsewhere", base / "qa")
    else:
        (base / "qa").write_text("not a folder")
    assert embed_service.runtime_dir() is None
    assert embed_service.socket_path("k") is None
    assert embed_service.connect("k", fallback_model([])) is None
    embed_service.serve("k", FakeEmbedder(), idle_s=0.1)  # returns at once, binds nothing
    assert not (tmp_path / "elsewhere" / "embed-k.sock").exists()


def test_a_second_service_for_the_same_engine_leaves_at_once(runtime):
    thread = start("k5", FakeEmbedder(), idle_s=2)
    began = time.monotonic()
    embed_service.serve("k5", FakeEmbedder(), idle_s=30)
    assert time.monotonic() - began < 1
    assert embed_service.connect("k5", fallback_model([])) is not None
    thread.join(timeout=10)


def test_a_service_gone_mid_chat_falls_back_to_the_model_in_process(runtime):
    thread = start("k6", FakeEmbedder(), idle_s=0.5)
    calls = []
    client = embed_service.connect("k6", fallback_model(calls))
    first = client.embed_queries(["Which drones?"])
    thread.join(timeout=10)
    assert not thread.is_alive()
    again = client.embed_queries(["Which drones?"])
    assert calls == ["loaded"] and np.array_equal(first, again)
    assert client.count_tokens("two words") == FakeEmbedder().count_tokens("two words")
    client.embed_queries(["and again"])
    assert calls == ["loaded"]  # loaded once


def test_malformed_requests_get_an_error_and_the_service_goes_on(runtime):
    thread = start("k7", FakeEmbedder(), idle_s=2)
    path = embed_service.socket_path("k7")
    for request in ({"op": "queries", "texts": "not a list"}, {"op": "rm -rf", "texts": []},
                    {"op": "passages", "texts": [1, 2]}):
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(path))
            embed_service.send_message(conn, request)
            header, payload = embed_service.receive_message(conn)
        assert header["ok"] is False and payload == b""
    with socket.socket(socket.AF_UNIX) as conn:  # garbage, then a hang-up
        conn.connect(str(path))
        conn.sendall(b"\xff\xff\xff\xffjunk")
    assert embed_service.connect("k7", fallback_model([])).embed_queries(["still here"]).shape == (1, 64)
    thread.join(timeout=10)


def test_stop_services_ends_a_service_process_and_its_socket(runtime):
    serve = ("import sys; sys.path.insert(0, 'tests'); from conftest import FakeEmbedder; "
             "from qa import embed_service; embed_service.run_service('k8', FakeEmbedder())")
    process = subprocess.Popen([sys.executable, "-c", serve], env={**os.environ, "QA_SERVICE_IDLE": "60"})
    try:
        path = embed_service.socket_path("k8")
        deadline = time.monotonic() + 60
        while not path.is_socket():
            assert time.monotonic() < deadline and process.poll() is None, "the service never listened"
            time.sleep(0.05)
        assert embed_service.stop_services(runtime) == 1
        assert process.wait(timeout=30) == 0  # SIGTERM leaves through the cleanup
        assert not path.exists() and embed_service.stop_services(runtime) == 0
    finally:
        process.kill()
