"""A small HTTP server of a test's own, on 127.0.0.1 at a port of the system's choosing.

The tests that stand in for an outside HTTP API (a price API, Alchemy, a relay in front of Anvil) only
say how to answer; this module does the rest once: the ``ThreadingHTTPServer`` served from a daemon
thread, the record of every request it got, the quiet log, and the shutdown.

Answer with a callable, or subclass and override :meth:`FakeHttpServer.respond`::

    with FakeHttpServer(lambda request: (500, '{"error": "internal"}')) as server:
        ...  # point the code under test at server.url
    assert server.requests[0].headers["x-api-key"] == KEY

``respond`` gets a :class:`Request` (already appended to ``server.requests``) and returns
``(status, body)`` or ``(status, body, headers)`` (extra response headers, e.g. ``Retry-After``); the body, bytes or text (sent as UTF-8), goes out with ``content-type``
(``application/json`` unless told) and its ``content-length``, and the connection is closed after it.
A handler that should be slow calls :meth:`FakeHttpServer.wait`, which :meth:`FakeHttpServer.release`
and the end of the ``with`` block cut short.  If ``respond`` raises, the client gets no answer and the
traceback is printed; a client that gave up and left before its answer (a timeout test) is not an error.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeHttpServer", "Reply", "Request"]

#: What a handler returns: the HTTP status and the body, and optionally extra response headers.
Reply = tuple[int, bytes | str] | tuple[int, bytes | str, dict[str, str]]


@dataclass(frozen=True)
class Request:
    """One request as the server got it."""

    method: str
    target: str  #: the request target, exactly as sent: path and query string
    headers: dict[str, str]  #: names in lower case
    body: bytes

    @cached_property
    def path(self) -> str:
        """The path of ``target``, without its query string."""
        return urlsplit(self.target).path

    @cached_property
    def query(self) -> dict[str, list[str]]:
        """The query string of ``target``, parsed (``urllib.parse.parse_qs``)."""
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeHttpServer:
    """Serves on ``127.0.0.1`` from entering the ``with`` block until its end; see the module's docstring."""

    def __init__(self, handler: Callable[[Request], Reply] | None = None, *,
                 content_type: str = "application/json") -> None:
        self._handler = handler
        self.content_type = content_type
        self.requests: list[Request] = []
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def respond(self, request: Request) -> Reply:
        """The answer to ``request``: the handler's, unless a subclass says otherwise."""
        if self._handler is None:
            raise NotImplementedError("give FakeHttpServer a handler, or override respond()")
        return self._handler(request)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running: use it in a with block")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (in a handler); :meth:`release`, or the server's end, wakes it sooner."""
        self._released.wait(seconds)

    def release(self) -> None:
        """Wake the handlers in :meth:`wait` now; later waits sleep again."""
        self._released.set()
        self._released.clear()

    def __enter__(self) -> FakeHttpServer:
        self._released.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True, name=f"fake-http-{self.port}")
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._released.set()  # no handler left sleeping
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping or writing to a gone client does not hold up the end

    def __init__(self, fake: FakeHttpServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and left: expected
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _dispatch(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        fake.requests.append(request)
        status, answer, *extra = fake.respond(request)
        data = answer.encode() if isinstance(answer, str) else answer
        self.send_response(status)
        for name, value in (extra[0] if extra else {}).items():
            self.send_header(name, value)
        self.send_header("content-type", fake.content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass
