"""A tiny threaded HTTP server on 127.0.0.1 for provider stand-ins.

Real sockets and real HTTP/1.1 with keep-alive, so the client under test does exactly what it
does against the internet, only nowhere but loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

SHUTDOWN_POLL_SECONDS = 0.005  # stop() waits up to this per server: a few ms of select() calls while serving


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Faults of a misbehaving server: send only this many bytes of the body, then close the
    # connection (the Content-Length still announces all of it); or send it a byte at a time.
    truncate_to: int | None = None
    seconds_per_byte: float = 0.0
    hang_up: bool = False  # close the connection without answering: the request arrived, its answer is lost

    @classmethod
    def lost(cls) -> "Response":
        return cls(hang_up=True)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> "Response":
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request], Response]


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets connections when dozens of clients connect at once
    # (two processes submitting 16 each), which no real provider's server does.
    request_queue_size = 128


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 on a free port and records every request it saw."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.handler_seconds = 0.0  # wall time spent answering, all requests together (the bench subtracts it)
        self._lock = threading.Lock()
        self._server = _Server((host, 0), self._make_handler_class())
        self._server.daemon_threads = True
        # A short poll interval makes stop() return at once instead of after up to 0.5 s per server.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _make_handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                owner._record(request)
                started = time.perf_counter()
                response = owner.handler(request)
                with owner._lock:
                    owner.handler_seconds += time.perf_counter() - started
                if response.hang_up:
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if response.truncate_to is not None:
                    self.wfile.write(response.body[: response.truncate_to])
                    self.close_connection = True
                elif response.seconds_per_byte:
                    self._trickle(response)
                else:
                    self.wfile.write(response.body)

            def _trickle(self, response: Response) -> None:
                try:
                    for index in range(len(response.body)):
                        self.wfile.write(response.body[index : index + 1])
                        self.wfile.flush()
                        time.sleep(response.seconds_per_byte)
                except OSError:  # the client gave up: what a trickle test wants
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        return _Handler


class LoopbackFake:
    """A provider stand-in made of loopback servers: started and stopped together, the first one
    answering the API. Subclasses list theirs in `servers`.

    Every stand-in accepts one `api_key`, takes the plans of its next tasks from `plans` (a plan
    type of its own; none queued means the default plan) and answers submits from
    `submit_script` first, in order, once the key is checked.
    """

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.plans: deque[Any] = deque()
        self.submit_script: deque[Response] = deque()
        self._lock = threading.Lock()

    def next_plan(self, default: Callable[[], Any]) -> Any:
        """The plan queued for the next task, else the stand-in's default one."""
        return self.plans.popleft() if self.plans else default()

    def count_poll(self, task: Any) -> tuple[int, Response | None]:
        """Count a poll of `task` (its `polls`); return which poll it is and, when its plan's
        `poll_http_errors` scripts one for it, the gateway error page to answer instead."""
        with self._lock:
            index = task.polls
            task.polls += 1
        status = task.plan.poll_http_errors.get(index)
        return index, Response(status, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}) if status else None

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        raise NotImplementedError

    def __enter__(self):
        for server in self.servers:
            server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()

    @property
    def api_url(self) -> str:
        return self.servers[0].url

    @property
    def submits(self) -> list[Request]:
        return [r for r in self.servers[0].requests if r.method == "POST"]

    @property
    def metadata_reads(self) -> list[Request]:
        """Requests for free public metadata (OpenRouter's endpoint record), sent without the key."""
        return []

    def all_requests(self) -> list[Request]:
        return [request for server in self.servers for request in server.requests]
