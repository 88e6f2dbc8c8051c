"""A real webhook receiver for tests and the demo: an HTTP server on a free
loopback port that records every POST (headers, body, time) and answers
with the status it is told to (``answer``: 200, or 503 to play a receiver
that is down)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class WebhookReceiver:
    answer: int = 200
    posts: list[Post] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append(Post(self.path, dict(self.headers.items()), body, time.time()))
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}{path}"

    def of(self, event_type: str, path: str | None = None) -> list[Post]:
        return [p for p in self.posts if p.headers.get("X-Regen-Event") == event_type
                and (path is None or p.path == path)]
