"""``qa serve``: the bot as a local web chat page and an HTTP API (FastAPI, served by uvicorn).

Routes (every error is a 4xx or 503 with a one-line ``{"error": "..."}``, never a traceback):

    GET  /                          the chat page (qa/web/index.html: one file, nothing from the network)
    POST /api/ask                   {"question", "top_k", "conversation"} -> exactly ``qa ask --json``'s object
    GET  /api/sources               the indexed documents, each as ``qa sources --json`` prints it
    GET  /api/health                index generation, document and passage counts, model
    DELETE /api/conversations/{id}  forget a conversation
    GET  /openapi.json              the OpenAPI schema of the above

Conversations: a client that wants follow-up questions (as in ``qa chat``) sends the
same ``conversation`` id (1-64 letters, digits, ``-`` or ``_``, chosen by the client; the
page makes a random one) with each question. Without one, a question stands alone.

Safety: the server listens on loopback unless ``--host`` says otherwise, and then every
``/api`` and ``/openapi.json`` request needs ``Authorization: Bearer TOKEN``. On loopback
it answers only requests addressed to a loopback name (``Host`` header), so a web page
elsewhere can't reach it through DNS rebinding; ``POST`` bodies must be JSON (a form on
another site can't post one without the browser asking first) and at most 64 KiB.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import socket
from base64 import b64encode
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Callable, Literal, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa import __version__
from qa.retriever import QuestionError
from qa.service import ServiceUnavailable

if TYPE_CHECKING:
    from qa.service import AnswerService

TOKEN_ENV = "QA_SERVE_TOKEN"
MAX_QUESTION_CHARS = 10_000
MAX_BODY_BYTES = 64 * 1024
CONVERSATION_ID = r"^[A-Za-z0-9_-]{1,64}$"
LOOPBACK_NAMES = {"localhost", "localhost.", "127.0.0.1", "::1"}


class ServeError(Exception):
    """The server can't start as asked (address in use, bad host); one line for the user."""


# --------------------------------------------------------------------------- request and response shapes


class AskRequest(BaseModel):
    """The body of ``POST /api/ask``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(max_length=MAX_QUESTION_CHARS, description="The question, in any language.")
    top_k: int = Field(1, ge=1, le=100, description="How many passages to return, best first.")
    conversation: Optional[str] = Field(
        None, pattern=CONVERSATION_ID,
        description="An id the client chooses for its conversation: questions sent with the same id "
        "may be follow-ups of the earlier ones, as in `qa chat`. Without it the question stands alone.",
    )


class Highlight(BaseModel):
    """The sentence that best answers, as code-point offsets within the passage's text."""

    start: int
    end: int


class PassageOut(BaseModel):
    """One passage of an answer (see the README's `qa ask --json`)."""

    text: str
    score: float
    source: str
    start: int
    end: int
    line: Optional[int] = None
    page: Optional[int] = None
    highlight: Optional[Highlight] = None


class AnswerOut(BaseModel):
    """Exactly `qa ask --json`'s object. Optional keys are left out, never null."""

    question: str
    found: bool
    margin: float
    passages: list[PassageOut]
    answer: Optional[str] = Field(None, description="An answer a reader wrote from the passages (qa.reader); "
                                  "absent with the default reader, whose answer is the best passage.")
    context: Optional[str] = Field(None, description="The earlier question a follow-up was read with.")
    truncated: Optional[bool] = None


class SourceOut(BaseModel):
    """One indexed document, as a line of `qa sources --json`."""

    source: Optional[str]
    kind: Optional[str]
    passages: Optional[int]
    added: Optional[str]
    sha256: Optional[str]
    title: Optional[str]
    note: Optional[str]


class HealthOut(BaseModel):
    """The index in use and the model."""

    status: Literal["ok"]
    generation: str
    documents: int
    passages: int
    model: str


class ErrorOut(BaseModel):
    """Every error: one line."""

    error: str


ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 404, 413, 415, 422, 503)}


# --------------------------------------------------------------------------- errors as one line


def json_response(content, status: int = 200, headers: dict | None = None) -> Response:
    """Return ``content`` as JSON encoded as ``qa ... --json`` prints it (:func:`qa.terminal.json_safe`):
    file names that are not valid UTF-8 (lone surrogates) and control characters escaped,
    never a failure to encode."""
    from qa.terminal import json_safe

    text = json_safe(json.dumps(content, ensure_ascii=False, allow_nan=False))
    return Response(text, status_code=status, headers=headers, media_type="application/json")


def error(status: int, message: str, headers: dict | None = None) -> Response:
    """Return the one-line ``{"error": message}`` response every failure gets."""
    return json_response({"error": " ".join(message.split())}, status, headers)


def validation_message(exc: RequestValidationError) -> str:
    """Return a request's validation errors as one line that names the fields at fault."""
    messages = []
    for item in exc.errors():
        kind = item.get("type", "")
        field = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        if kind == "json_invalid":
            text = "the request body is not valid JSON"
        elif kind == "extra_forbidden":
            text = f"unknown field '{field}' (the fields are: question, top_k, conversation)"
        elif kind == "missing":
            text = f"'{field}' is required" if field else "the request needs a JSON object as its body"
        elif not field:
            text = "the request body must be a JSON object"
        elif kind == "string_pattern_mismatch" and field == "conversation":
            text = "'conversation' must be 1-64 letters, digits, '-' or '_'"
        else:
            text = f"'{field}': {item.get('msg', 'is not valid')}"
        if text not in messages:
            messages.append(text)
    return "; ".join(messages) or "the request is not valid"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error(422, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(404, f"no such page: {request.url.path}")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}",
                         headers=getattr(exc, "headers", None))
        if exc.status_code == 400:  # FastAPI could not decode the body at all
            return error(400, "the request body is not valid JSON in UTF-8")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError) -> Response:
        return error(422, str(exc))

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable) -> Response:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug: still one line for the client; uvicorn logs the traceback on the server.
        return error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


# --------------------------------------------------------------------------- the guard in front of the app


def is_loopback(host: str) -> bool:
    """Return True when ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback: ``localhost``, 127.0.0.0/8 or ``::1``."""
    host = host.strip().lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """Return the host part of a ``Host`` header (``[::1]:8000`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware in front of the app: host check, token, JSON bodies of bounded size.

    Takes the app, the API token (None: no token needed) and whether the server
    listens on loopback only (then requests must name a loopback host).
    """

    def __init__(self, app, token: str | None, loopback: bool):
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        path, method = scope["path"], scope["method"]
        refusal = self._refusal(path, method, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        if method in {"POST", "PUT", "PATCH"}:
            body = b""
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > MAX_BODY_BYTES:
                    return await _too_large()(scope, receive, send)
                if not message.get("more_body", False):
                    break
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _refusal(self, path: str, method: str, headers: dict) -> Response | None:
        if self.loopback and not is_loopback(_host_of(headers.get("host", ""))):
            return error(400, "this server answers only requests to 127.0.0.1 or localhost")
        protected = path.startswith("/api/") or path == "/openapi.json"
        if protected and self.token is not None:
            given = headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode(), self.token.encode()):
                return error(401, "this server needs its token: send 'Authorization: Bearer TOKEN' "
                             "(qa serve printed it at start)", headers={"WWW-Authenticate": "Bearer"})
        if method in {"POST", "PUT", "PATCH"} and path.startswith("/api/"):
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return error(415, "send the request body as JSON (Content-Type: application/json)")
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
                return _too_large()
        return None


def _replay(body: bytes, receive):
    """Return an ASGI ``receive`` that gives ``body`` (read in full by the guard) once, then
    whatever ``receive`` gives (a disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _too_large() -> Response:
    return error(413, f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB")


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Page:
    """The chat page and the Content-Security-Policy that lets only its own inline script run."""

    html: bytes
    policy: str


def load_page() -> Page:
    """Return qa/web/index.html and a CSP naming the SHA-256 of its one inline script.

    The policy allows nothing from elsewhere (``default-src 'none'``; requests only to
    this server), so even text that slipped past the page's escaping could not run.
    """
    html = resources.files("qa").joinpath("web/index.html").read_bytes()
    scripts = re.findall(rb"<script>(.*?)</script>", html, re.S)
    if len(scripts) != 1:
        raise RuntimeError("qa/web/index.html must hold exactly one inline <script>")
    digest = b64encode(hashlib.sha256(scripts[0]).digest()).decode()
    policy = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return Page(html, policy)


# --------------------------------------------------------------------------- the app


def create_app(service: AnswerService, token: str | None = None, loopback: bool = True):
    """Return the ASGI app answering from ``service``.

    ``token`` (None: none needed) is required as a Bearer token on ``/api`` and
    ``/openapi.json``; ``loopback`` means the server listens on loopback, and then
    requests must be addressed to a loopback host. Handlers that use the model are
    plain functions, run in FastAPI's thread pool; :class:`qa.service.AnswerService`
    serializes what must be.
    """
    app = FastAPI(
        title="qa", version=__version__, docs_url=None, redoc_url=None,  # both load their UI from a CDN
        description="Ask questions, in any language, about your documents. Runs entirely on this machine.",
    )
    _install_error_handlers(app)
    page = load_page()
    no_store = {"Cache-Control": "no-store"}

    @app.get("/", include_in_schema=False)
    def chat_page() -> Response:
        return Response(page.html, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": page.policy, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", **no_store,
        })

    @app.post("/api/ask", responses={200: {"model": AnswerOut}, **ERRORS}, response_class=Response)
    def ask(body: AskRequest) -> Response:
        """Answer one question: exactly the object `qa ask --json` prints."""
        from qa.render import answer_json

        answer = service.ask(body.question, top_k=body.top_k, conversation=body.conversation)
        return Response(answer_json(answer), media_type="application/json", headers=no_store)

    @app.get("/api/sources", responses={200: {"model": list[SourceOut]}, **ERRORS}, response_class=Response)
    def sources() -> Response:
        """The indexed documents, each as a line of `qa sources --json`."""
        return json_response(service.sources(), headers=no_store)

    @app.get("/api/health", responses={200: {"model": HealthOut}, **ERRORS}, response_class=Response)
    def health() -> Response:
        """The index generation in use, its document and passage counts, and the model."""
        return json_response(service.health().to_dict(), headers=no_store)

    @app.delete("/api/conversations/{conversation}", status_code=204, responses=ERRORS,
                response_class=Response)
    def forget(conversation: str) -> Response:
        """Forget a conversation: its next question stands alone. Unknown ids are fine."""
        service.conversations.forget(conversation)
        return Response(status_code=204)

    return Guard(app, token, loopback)


# --------------------------------------------------------------------------- running it


def bind(host: str, port: int) -> socket.socket:
    """Return a TCP socket listening on ``host``:``port`` (0: any free port).

    Binding here, before uvicorn starts, turns "address in use" and unknown hosts
    into one-line :class:`ServeError`\\ s instead of uvicorn's log lines.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f"cannot listen on {host}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ServeError(f"cannot listen on {host} port {port}: {reason}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


def url_of(sock: socket.socket) -> str:
    """Return the ``http://host:port/`` address a bound socket answers on."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def choose_token(loopback: bool, environ: dict) -> str | None:
    """Return the API token: ``$QA_SERVE_TOKEN`` if set, else a new random one for a
    non-loopback server, else None (loopback needs none)."""
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV]
    return None if loopback else secrets.token_urlsafe(24)


def run(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until Ctrl-C (SIGINT) or SIGTERM.

    uvicorn finishes the requests in flight (for up to 5 s) and then hands the
    signal back, as a KeyboardInterrupt (for both), which the caller turns into a
    clean exit.
    """
    import signal

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False)
    # SIGTERM (kill, systemd) stops it as cleanly as Ctrl-C, instead of killing it after the shutdown.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


def announce(url: str, token: str | None, echo: Callable[[str], None]) -> None:
    """Print where the page is, and the token when one is needed."""
    if token is None:
        echo(f"qa serve: the chat page is at {url} (the API under {url}api/); Ctrl-C stops it")
        return
    echo(f"qa serve: the chat page is at {url}#token={token} (the API under {url}api/); Ctrl-C stops it")
    echo(f"API token: {token} (send 'Authorization: Bearer {token}'; set {TOKEN_ENV} to choose it)")
