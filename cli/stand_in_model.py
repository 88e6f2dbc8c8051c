"""A stand-in for an image model, for tests, benchmarks and the demo: a real
local HTTP server, not a model (it draws a flat colour from the prompt).

``POST /v1/images`` with ``{"prompt": ..., "parameters": {...}}`` answers
``{"data": [{"b64_json": <PNG>}]}`` (or ``{"url": ...}`` with ``[url]`` in the
prompt or ``"response_format": "url"``): an image of ``width`` x ``height``
(parameters; default 640x480) in a colour derived from the prompt's hash, so
the same prompt draws the same image.

Behaviour, per prompt (directives inside the prompt) or for every call
(``POST /control`` with a JSON object, or ``ModelServer.configure``):

- ``[slow:S]`` / ``{"delay": S}``: answer after S seconds;
- ``[hang]`` / ``{"hang": true}``: never answer (the server notes when the client gives up);
- ``[429:N:R]``: the first N calls with this prompt get 429 with ``Retry-After: R``;
- ``[500:N]``: the first N calls get 500;
- ``[garbage]``: 200 with base64 of bytes that are no image; ``[notjson]``: 200 with text;
- ``[url]``: the image as a URL on this server (``GET /files/<name>``).

Every call is logged with its start time and outcome (``calls``; ``GET /calls``).
A token given to the server is required as ``Authorization: Bearer <token>``.

Run it alone: ``python -m regen.cli.stand_in_model [--port N] [--delay S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

DIRECTIVE = re.compile(r"\[(slow|hang|429|500|garbage|notjson|url)(?::([0-9.]+))?(?::([0-9.]+))?\]")


@dataclass
class Call:
    started_at: float  # time.time()
    prompt: str
    status: int = 0  # 0: never answered
    outcome: str = "pending"  # ok, hang, rate_limited, server_error, garbage, notjson, unauthorized
    ended_at: float | None = None
    abandoned_at: float | None = None  # a hung call whose client went away


@dataclass
class ModelServer:
    token: str = ""
    port: int = 0
    delay: float = 0.0
    hang: bool = False
    calls: list[Call] = field(default_factory=list)
    _attempts: dict[str, int] = field(default_factory=dict)
    _files: dict[str, bytes] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- running it ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/images"

    def start(self) -> ModelServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="model-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the model server did not start")
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes([web.post("/v1/images", self._generate), web.get("/files/{name}", self._file),
                        web.post("/control", self._control), web.get("/calls", self._calls)])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configure(self, *, delay: float | None = None, hang: bool | None = None) -> None:
        with self._lock:
            if delay is not None:
                self.delay = delay
            if hang is not None:
                self.hang = hang

    def generator(self, name: str = "local", **settings: Any) -> dict[str, Any]:
        """A REGEN_GENERATORS entry for this server (merge into the JSON object)."""
        entry = {"url": self.url, "request": {"prompt": "{prompt}", "parameters": "{parameters}"},
                 "image_base64": "data.0.b64_json", "timeout_s": 10, "calls_per_minute": 600}
        if self.token:
            entry["auth_env"] = "REGEN_TEST_MODEL_TOKEN"
        entry.update(settings)
        return {name: entry}

    def calls_for(self, needle: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if needle in c.prompt]

    # --- handlers ------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        call = Call(started_at=time.time(), prompt="")
        with self._lock:
            self.calls.append(call)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._end(call, 401, "unauthorized", web.json_response({"error": "unauthorized"}, status=401))
        try:
            body = await request.json()
            prompt = str(body["prompt"])
            parameters = body.get("parameters") or {}
        except Exception:  # noqa: BLE001 - a bad request is the client's problem: say so
            return self._end(call, 400, "bad_request", web.json_response({"error": "bad request"}, status=400))
        call.prompt = prompt
        directives = {m[1]: (m[2], m[3]) for m in DIRECTIVE.finditer(prompt)}
        with self._lock:
            attempt = self._attempts[prompt] = self._attempts.get(prompt, 0) + 1
            delay, hang = self.delay, self.hang
        if "hang" in directives or hang:
            return await self._hang(request, call)
        if "slow" in directives:
            delay = float(directives["slow"][0] or 1)
        if delay:
            await asyncio.sleep(delay)
        if "429" in directives and attempt <= int(directives["429"][0] or 1):
            retry_after = directives["429"][1] or "1"
            return self._end(call, 429, "rate_limited", web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": retry_after}))
        if "500" in directives and attempt <= int(directives["500"][0] or 1):
            return self._end(call, 500, "server_error", web.json_response({"error": "oops"}, status=500))
        if "notjson" in directives:
            return self._end(call, 200, "notjson", web.Response(text="<html>surprise</html>"))
        if "garbage" in directives:
            junk = base64.b64encode(hashlib.sha512(prompt.encode()).digest() * 16).decode()
            return self._end(call, 200, "garbage", web.json_response({"data": [{"b64_json": junk}]}))
        png = draw(prompt, parameters)
        if "url" in directives or parameters.get("response_format") == "url":
            name = hashlib.sha256(png).hexdigest()[:16] + ".png"
            with self._lock:
                self._files[name] = png
            return self._end(call, 200, "ok", web.json_response(
                {"data": [{"url": f"http://127.0.0.1:{self.port}/files/{name}"}]}))
        return self._end(call, 200, "ok", web.json_response({"data": [{"b64_json": base64.b64encode(png).decode()}]}))

    async def _hang(self, request: web.Request, call: Call) -> web.StreamResponse:
        call.outcome = "hang"
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.05)
        call.abandoned_at = time.time()
        raise asyncio.CancelledError  # nobody to answer

    def _end(self, call: Call, status: int, outcome: str, response: web.StreamResponse) -> web.StreamResponse:
        call.status, call.outcome, call.ended_at = status, outcome, time.time()
        return response

    async def _file(self, request: web.Request) -> web.StreamResponse:
        data = self._files.get(request.match_info["name"])
        if data is None:
            return web.json_response({"error": "no such file"}, status=404)
        return web.Response(body=data, content_type="image/png")

    async def _control(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.configure(delay=body.get("delay"), hang=body.get("hang"))
        return web.json_response({"delay": self.delay, "hang": self.hang})

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            return web.json_response([asdict(c) for c in self.calls])


def colour_of(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def draw(prompt: str, parameters: dict[str, Any]) -> bytes:
    width = _side(parameters.get("width"), 640)
    height = _side(parameters.get("height"), 480)
    image = Image.new("RGB", (width, height), colour_of(prompt))
    # A lighter band in the middle third: a cover crop and a fit differ visibly.
    band = Image.new("RGB", (max(1, width // 3), height), tuple(min(255, c + 60) for c in colour_of(prompt)))
    image.paste(band, (width // 3, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _side(value: Any, default: int) -> int:
    return value if isinstance(value, int) and 1 <= value <= 4096 else default


def main() -> None:
    parser = argparse.ArgumentParser(description="A local image model for regen's tests and demo.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--token", default="", help="require this bearer token")
    args = parser.parse_args()
    server = ModelServer(token=args.token, port=args.port, delay=args.delay).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
