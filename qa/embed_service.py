"""A per-user warm embedding service, so that a one-shot ``qa ask`` doesn't load the model.

EmbeddingGemma's engine takes 0.3-0.5 s to import and open, more than half of a
one-shot question's budget. So the first ``qa ask`` also starts this service in the
background: one process per user and engine that keeps the engine open and embeds
the texts it is sent over a Unix socket; it exits after ``QA_SERVICE_IDLE`` seconds
(default 600) without a request. Later questions connect, send the question and get
its vector in a few milliseconds more than the model's own time.

What it may do is narrow on purpose: it embeds texts and counts their tokens, nothing
else. It never reads a file a request names. The socket lives in a folder only its
user can enter (``$XDG_RUNTIME_DIR/qa``, or ``/tmp/qa-UID``: created 0700, refused
when it is a link, another user's, or open to others), and each side checks the other's
user id on the socket (``SO_PEERCRED``). Anything wrong with the service (missing,
dead, slow, another version) makes the client embed in-process instead, silently:
the service is a shortcut, never a dependency. ``QA_SERVICE=0`` turns it off.

Wire format, both ways: a 4-byte big-endian length, then a JSON header, then for
vectors the raw float32 rows the header's ``shape`` describes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

SERVICE_ENV = "QA_SERVICE"
IDLE_ENV = "QA_SERVICE_IDLE"
DEFAULT_IDLE_S = 600.0
PROTOCOL = 1
MAX_MESSAGE = 64 << 20
CONNECT_TIMEOUT_S = 0.5
REPLY_TIMEOUT_S = 30.0
_LENGTH = struct.Struct(">I")


class ServiceError(Exception):
    """The service can't be reached or answered wrongly; the caller embeds in-process."""


def service_enabled() -> bool:
    """Return False when ``QA_SERVICE=0`` turns the warm service off."""
    return os.environ.get(SERVICE_ENV, "1").strip() not in ("0", "false", "no", "off")


def runtime_dir() -> Path | None:
    """Return this user's private folder for sockets, creating it 0700; None if unsafe.

    ``$XDG_RUNTIME_DIR/qa`` when that variable names a folder, else ``/tmp/qa-UID``.
    The folder must be a real directory (not a link), owned by this user, with no
    access for group or others: a folder someone else could enter could hold their
    socket pretending to be ours.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "qa" if base and Path(base).is_dir() else Path(tempfile.gettempdir()) / f"qa-{os.getuid()}"
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def socket_path(key: str) -> Path | None:
    """Return the socket of the service for engine ``key`` (None without a safe folder)."""
    folder = runtime_dir()
    return folder / f"embed-{key}.sock" if folder is not None else None


# --------------------------------------------------------------------------- wire


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The process id and user id of the other end of ``conn``, as the kernel knows them."""
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def _peer_uid(conn: socket.socket) -> int:
    return _peer(conn)[1]


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ServiceError("the connection closed mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_message(conn: socket.socket, header: dict, payload: bytes = b"") -> None:
    """Send one message: ``header`` as JSON, then ``payload`` (raw float32 rows or nothing)."""
    body = json.dumps(header, allow_nan=False).encode("utf-8")
    conn.sendall(_LENGTH.pack(len(body)) + body + _LENGTH.pack(len(payload)) + payload)


def receive_message(conn: socket.socket) -> tuple[dict, bytes]:
    """Receive one message sent by :func:`send_message`; raises ServiceError when malformed."""
    sizes = []
    parts = []
    for _ in range(2):
        (size,) = _LENGTH.unpack(_receive_exactly(conn, _LENGTH.size))
        if size > MAX_MESSAGE:
            raise ServiceError(f"a message of {size} bytes is over the limit")
        sizes.append(size)
        parts.append(_receive_exactly(conn, size))
    try:
        header = json.loads(parts[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ServiceError("a message header is not JSON") from None
    if not isinstance(header, dict):
        raise ServiceError("a message header is not an object")
    return header, parts[1]


# --------------------------------------------------------------------------- client


class ServiceEmbedder:
    """An :class:`qa.embedder.Embedder` whose work is done by the warm service.

    Built by :func:`connect`. When the service goes away between two questions (it
    exited idle during a long chat), the embedder loads ``fallback()`` once and goes on
    in-process, so a question never fails because of the service.
    """

    def __init__(self, path: Path, hello: dict, fallback: Callable[[], object]):
        self._path = path
        self._fallback_factory = fallback
        self._fallback = None
        self.name = str(hello["name"])
        self.dim = int(hello["dim"])
        self.max_tokens = int(hello["max_tokens"])

    def _call(self, op: str, texts: Sequence[str]) -> tuple[dict, bytes]:
        with _connect(self._path, REPLY_TIMEOUT_S) as conn:
            send_message(conn, {"op": op, "texts": list(texts)})
            header, payload = receive_message(conn)
        if not header.get("ok"):
            raise ServiceError(str(header.get("error", "the service refused the request")))
        return header, payload

    def _vectors(self, op: str, texts: Sequence[str]) -> np.ndarray:
        header, payload = self._call(op, texts)
        rows, dim = header.get("shape", (None, None))
        if rows != len(texts) or dim != self.dim or len(payload) != rows * dim * 4:
            raise ServiceError("the service sent vectors of the wrong shape")
        return np.frombuffer(payload, dtype=np.float32).reshape(rows, dim).copy()

    def _local(self):
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage (counted by the service)."""
        if self._fallback is None:
            try:
                counts = self._call("tokens", [text])[0].get("counts")
                if isinstance(counts, list) and len(counts) == 1 and isinstance(counts[0], int):
                    return counts[0]
            except (OSError, ServiceError):
                pass
        return self._local().count_tokens(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions; unit float32 rows, as the engine itself gives them."""
        if self._fallback is None:
            try:
                return self._vectors("queries", texts)
            except (OSError, ServiceError):
                pass
        return self._local().embed_queries(texts)

    def embed_passages(self, texts: Sequence[str], progress=None) -> np.ndarray:
        """Embed passages; unit float32 rows, as the engine itself gives them."""
        if self._fallback is None:
            try:
                vectors = self._vectors("passages", texts)
                if progress:
                    progress(len(texts), len(texts))
                return vectors
            except (OSError, ServiceError):
                pass
        return self._local().embed_passages(texts, progress)


def _connect(path: Path, timeout: float) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(str(path))
        if _peer_uid(conn) != os.getuid():
            raise ServiceError("the socket belongs to another user")
        conn.settimeout(timeout)
        return conn
    except BaseException:
        conn.close()
        raise


def connect(key: str, fallback: Callable[[], object]) -> ServiceEmbedder | None:
    """Return a client of the running service for engine ``key``, or None when there is
    none (or it is off, unsafe, of another protocol, or doesn't answer in time)."""
    if not service_enabled():
        return None
    path = socket_path(key)
    if path is None:
        return None
    try:
        with _connect(path, REPLY_TIMEOUT_S) as conn:
            send_message(conn, {"op": "hello"})
            hello, _ = receive_message(conn)
    except (OSError, ServiceError):
        return None
    if hello.get("protocol") != PROTOCOL or hello.get("key") != key or not hello.get("ok"):
        return None
    try:
        return ServiceEmbedder(path, hello, fallback)
    except (KeyError, TypeError, ValueError):
        return None


def start_in_background(key: str, engine_dir: Path, name: str) -> bool:
    """Start the service for ``engine_dir`` as a detached process; return False when off
    or impossible. It outlives this process and exits on its own when idle."""
    if not service_enabled() or socket_path(key) is None:
        return False
    command = [sys.executable, "-m", "qa.embed_service", key, str(engine_dir), name]
    try:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        return False
    return True


def stop_services(folder: Path) -> int:
    """Ask every service whose socket is in ``folder`` to leave now; return how many were.

    For benchmarks and tests that start services, and for a user who wants the memory
    back before the idle exit. Each is a service of this user (checked by
    :func:`_connect`) that answers a hello; it gets SIGTERM at the process id the kernel
    gives for its socket, not one it claims, and removes its socket as it leaves.
    """
    import signal

    stopped = 0
    for path in sorted(Path(folder).glob("embed-*.sock")):
        try:
            with _connect(path, REPLY_TIMEOUT_S) as conn:
                send_message(conn, {"op": "hello"})
                hello, _ = receive_message(conn)
                pid = _peer(conn)[0]
            if hello.get("protocol") == PROTOCOL and pid > 0:
                os.kill(pid, signal.SIGTERM)
                stopped += 1
        except (OSError, ServiceError):
            pass
    return stopped


# --------------------------------------------------------------------------- server


def serve(key: str, embedder, idle_s: float | None = None) -> None:
    """Serve ``embedder`` on the socket of engine ``key`` until idle for ``idle_s`` seconds.

    One service per key: a second one finds the lock held and returns at once. Returns
    too when no safe socket folder exists. Requests are answered one at a time (the
    engine uses every core for each); peers of another user id are hung up on.
    """
    import fcntl

    idle_s = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S)) if idle_s is None else idle_s
    path = socket_path(key)
    if path is None:
        return
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another service holds this engine
        if path.is_socket() or path.is_symlink():
            path.unlink()  # a dead service's socket: ours to remove under the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        listener.listen(16)
        listener.settimeout(idle_s)
        hello = {"ok": True, "protocol": PROTOCOL, "key": key, "pid": os.getpid(),
                 "name": embedder.name, "dim": int(embedder.dim), "max_tokens": int(embedder.max_tokens)}
        try:
            while True:
                try:
                    conn, _ = listener.accept()
                except socket.timeout:
                    return
                with conn:
                    _answer(conn, embedder, hello)
        finally:
            listener.close()
            try:
                path.unlink()
            except OSError:
                pass
    finally:
        os.close(lock_fd)


def _answer(conn: socket.socket, embedder, hello: dict) -> None:
    """Answer one request on ``conn``; any failure is the client's to handle."""
    try:
        conn.settimeout(REPLY_TIMEOUT_S)
        if _peer_uid(conn) != os.getuid():
            return
        request, _ = receive_message(conn)
        op, texts = request.get("op"), request.get("texts", [])
        if op == "hello":
            send_message(conn, hello)
            return
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            send_message(conn, {"ok": False, "error": "texts must be a list of strings"})
            return
        if op == "tokens":
            send_message(conn, {"ok": True, "counts": [int(embedder.count_tokens(t)) for t in texts]})
        elif op in ("queries", "passages"):
            embed = embedder.embed_queries if op == "queries" else embedder.embed_passages
            vectors = np.ascontiguousarray(embed(texts), dtype=np.float32) if texts else \
                np.zeros((0, embedder.dim), dtype=np.float32)
            send_message(conn, {"ok": True, "shape": list(vectors.shape)}, vectors.tobytes())
        else:
            send_message(conn, {"ok": False, "error": f"unknown op {op!r}"})
    except (OSError, ServiceError, ValueError):
        pass


def run_service(key: str, embedder) -> None:
    """:func:`serve` as the main thread of a process of its own: SIGTERM (see
    :func:`stop_services`) leaves through serve()'s cleanup, so the socket is removed."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(key, embedder)


def main(argv: list[str]) -> None:
    """``python -m qa.embed_service KEY ENGINE_DIR NAME``: serve that ONNX engine."""
    key, engine_dir, name = argv
    from qa.models.onnx_engine import OnnxEmbedder

    run_service(key, OnnxEmbedder(Path(engine_dir), name=name))


if __name__ == "__main__":
    main(sys.argv[1:])
