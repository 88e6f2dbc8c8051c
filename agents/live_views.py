"""Live progress over server-sent events (projections/sse.py has the format).

- ``GET /events/batches/{id}`` (``?expect=N``: not finished before N items),
  ``/events/groups/{id}``, ``/events/videos/{id}``: the row's whole state
  whenever the owner writes it, ``finished`` (then the end) when a batch
  or group is done. Videos never finish.
- ``GET /events/overview``: the dashboard's overview of the whole group,
  whenever it changed.
- ``GET /events/ticket?path=/events/...``: a short-lived signed URL of one
  stream, for browsers (``EventSource`` sends no headers; the token never
  goes in a URL). See projections/stream_urls.py.

Any worker answers any stream. A key's row lives on the worker owning its
partition (agents/routing.py); another worker relays the owner's stream
byte for byte (the FORWARDED_BY header stops a second hop). Why a relay and
not a 307 to the owner: the owner's advertised URL is what workers reach
each other by (a container name, an internal address), often not what a
browser or a laptop can reach; a redirect to another origin needs CORS for
``EventSource``, and HTTP clients drop the Authorization header on a
redirect to another host. When the owner changes (a rebalance, a worker
that stops or dies) the stream says ``moved`` and ends; the client
reconnects with Last-Event-ID and gets the current state from the new
owner (every event is the whole state; projections/sse.py, ``should_send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson
from aiohttp import web
from faust.web import Request, Response, View
from yarl import URL

from regen.agents.context import WorkerContext
from regen.agents.live_hub import LiveHub, TableWatch, Wake
from regen.agents.routing import (
    ANSWERED_BY,
    FORWARD_TIMEOUT_S,
    FORWARDED_BY,
    MEMBER_TIMEOUT_S,
    RETRY_UNREACHABLE_S,
    Forward,
    Local,
    decide,
    forward,
    group_view,
    normalize_url,
)
from regen.projections import sse
from regen.projections.groups import GroupState, group_answer
from regen.projections.progress import BatchState, batch_view, video_view
from regen.projections.queries import MemberOverview, group_overview, overview
from regen.projections.signed_urls import image_url_key
from regen.projections.state import VideoState
from regen.projections.stream_urls import STREAM_PATH, stream_signature_valid, stream_url, stream_url_key
from regen.streams.topics import partition_for

log = logging.getLogger(__name__)

# Timing, each with its reason:
# - Proxies close a connection that is quiet for long (nginx: 60 s by
#   default); a comment this often keeps it, and a write is also how a
#   stream notices that its client went away (aiohttp does not cancel a
#   handler when the client disconnects).
HEARTBEAT_S = 15.0
# - How long a client waits before reconnecting after ``moved``: about a
#   rebalance (agents/routing.py RETRY_REBALANCE_S), in milliseconds.
RETRY_MS = 2000
# - While this worker cannot vouch for its tables (rebalancing) it looks
#   again this often, and keeps the stream this long before it gives up
#   and says ``moved``: a rebalance that keeps the partition here should
#   not cost every client a reconnection.
UNSURE_CHECK_S = 1.0
MAX_UNSURE_S = 30.0
# - The overview is computed (asking every member) at most this often, once
#   for every dashboard this worker serves, and sent only when it changed.
OVERVIEW_EVERY_S = 1.0
# - A relayed stream whose owner sent nothing, not even a heartbeat, for
#   this long is dead: the client is told ``moved``.
RELAY_READ_TIMEOUT_S = 2 * HEARTBEAT_S + 5
# One relayed event may not be bigger than this (a group's row with a
# thousand members is well under 1 MB); the owner's answer is not trusted more.
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
OVERVIEW_KEY = ("overview", "")
WATCHED_TABLES = frozenset({"batches", "groups", "videos"})
# The last event of a stream that ended as it should (projections/sse.py).
ENDING_EVENT = re.compile(rb"(?:^|\n)event: (?:finished|moved)\n[^\n]*(?:\n[^\n]+)*\n\n$")


@dataclass(frozen=True)
class Followed:
    """One kind of row a stream follows: how to show it and when it is over."""

    table: str
    show: Callable[[str, Any, float], dict | None]  # key, row, now -> the body of a state event
    finished: Callable[[dict, int], bool]  # body, expected items -> final?


def _show_batch(key: str, row: Any, now: float) -> dict | None:
    state = BatchState.from_dict(row)
    return None if state is None else batch_view(state, now)


def _show_group(key: str, row: Any, now: float) -> dict | None:
    state = GroupState.from_dict(row)
    return None if state is None else group_answer(state)


def _show_video(key: str, row: Any, now: float) -> dict | None:
    video = VideoState.from_dict(row)
    return None if video is None else video_view(video, now)


FOLLOWED = {
    "batches": Followed("batches", _show_batch,
                        lambda body, expect: bool(body["done"]) and body["total"] >= expect),
    "groups": Followed("groups", _show_group, lambda body, expect: body["finished_at"] is not None),
    "videos": Followed("videos", _show_video, lambda body, expect: False),
}


def register_live(ctx: WorkerContext) -> LiveHub:
    app, tables, settings = ctx.app, ctx.tables, ctx.settings
    hub = LiveHub(settings.live_max_streams)
    app.sensors.add(TableWatch(hub, WATCHED_TABLES))
    closed = asyncio.Event()
    self_url = settings.advertised_web_url()
    token = settings.web_token
    stream_key = stream_url_key(token) if token else None
    image_key = image_url_key(token) if token else None

    async def on_shutdown(_: web.Application) -> None:
        # aiohttp waits for every open handler before it stops; open streams
        # would hold a stopping worker for a minute.
        hub.close("this worker is stopping")
        closed.set()

    app.web.web_app.on_shutdown.append(on_shutdown)  # type: ignore[attr-defined]  # the aiohttp driver's app

    def bearer_ok(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def allowed(request: Request) -> bool:
        if bearer_ok(request):
            return True
        path, query = cast(web.Request, request).path, request.query
        return stream_key is not None and stream_signature_valid(stream_key, path, query.get("exp", ""),
                                                                 query.get("sig", ""), time.time())

    def refused(view: View) -> Response:
        return view.json({"error": "missing or wrong bearer token (see REGEN_WEB_TOKEN), or an expired stream "
                                   "URL: ask /events/ticket for a new one"}, status=401,
                         headers={"WWW-Authenticate": 'Bearer realm="regen"'})

    def unavailable(view: View, reason: str, retry_after: int) -> Response:
        return view.json({"error": f"try again in {retry_after} s: {reason}", "retry_after_s": retry_after},
                         status=503, headers={"Retry-After": str(retry_after)})

    def http_client() -> aiohttp.ClientSession:
        return cast(aiohttp.ClientSession, app.http_client)

    async def open_stream(request: Request, answered_by: str) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={
            "Content-Type": f"{sse.CONTENT_TYPE}; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            ANSWERED_BY: answered_by})
        await response.prepare(cast(web.Request, request))
        return response

    async def say_moved(response: web.StreamResponse, reason: str, retry_ms: int = RETRY_MS) -> None:
        with contextlib.suppress(ConnectionError):
            await response.write(sse.retry_frame(retry_ms) + sse.event_frame(sse.MOVED, {
                "reason": reason, "retry_after_s": round(retry_ms / 1000, 1)}))

    def decision_for(followed: Followed, key: str, forwarded_by: str | None):
        table = tables.of(followed.table)
        return decide(group_view(app, self_url), table.name, table.changelog_topic.get_topic_name(),
                      partition_for(key, settings.partitions), forwarded_by)

    async def serve_local(request: Request, followed: Followed, key: str, expect: int) -> web.StreamResponse:
        """The owner's stream: states as the rows are written."""
        table = tables.of(followed.table)
        with hub.subscribe((followed.table, key)) as subscription:  # before the first read: no write slips by
            response = await open_stream(request, self_url)
            sent = sse.resume_id(request.headers.get("Last-Event-ID"))
            last_write = time.monotonic()

            async def send(row: Any) -> bool:
                """Write ``row`` if the client lacks it; True when it was final."""
                nonlocal sent, last_write
                body = followed.show(key, row, time.time())
                if body is None:
                    return False
                state, final = sse.state_id(row), followed.finished(body, expect)
                if sse.should_send(sent, state, final):
                    await response.write(sse.event_frame(sse.FINISHED if final else sse.STATE, body, state))
                    sent, last_write = state, time.monotonic()
                return final

            try:
                await response.write(sse.retry_frame(RETRY_MS))
                row = table.get(key)
                if row is None:
                    await response.write(sse.comment_frame(f"no {followed.table} row {key[:100]} yet: waiting"))
                elif await send(row):
                    return response
                unsure_since: float | None = None
                while True:
                    item = await subscription.next(UNSURE_CHECK_S if unsure_since is not None else HEARTBEAT_S)
                    if isinstance(item, Wake) and item.final:
                        await say_moved(response, item.reason)
                        return response
                    if item is not None and not isinstance(item, Wake):
                        if await send(item):
                            return response
                        continue
                    # A timeout or a rebalance: is the key still ours?
                    decision = decision_for(followed, key, request.headers.get(FORWARDED_BY))
                    if isinstance(decision, Forward):
                        await say_moved(response, f"{followed.table} partition of {key[:100]} moved to another "
                                                  "worker")
                        return response
                    if isinstance(decision, Local):
                        if unsure_since is not None:  # back from a rebalance: the row may have changed meanwhile
                            unsure_since = None
                            row = table.get(key)
                            if row is not None and await send(row):
                                return response
                    else:
                        unsure_since = unsure_since or time.monotonic()
                        if time.monotonic() - unsure_since > MAX_UNSURE_S:
                            await say_moved(response, decision.reason, decision.retry_after * 1000)
                            return response
                    if time.monotonic() - last_write >= HEARTBEAT_S:
                        await response.write(sse.comment_frame())
                        last_write = time.monotonic()
            except ConnectionError:  # the client went away
                return response

    async def relay(view: View, request: Request, owner: str, what: str) -> Any:
        """The owner's stream, passed on whole event by whole event."""
        headers = {FORWARDED_BY: self_url, "Accept": sse.CONTENT_TYPE}
        for name in ("Authorization", "Last-Event-ID"):
            if request.headers.get(name):
                headers[name] = request.headers[name]
        url = URL(owner.rstrip("/") + str(request.rel_url), encoded=True)
        timeout = aiohttp.ClientTimeout(total=None, connect=FORWARD_TIMEOUT_S, sock_read=RELAY_READ_TIMEOUT_S)
        try:
            upstream = await http_client().get(url, headers=headers, allow_redirects=False, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as e:
            return unavailable(view, f"{owner}, which owns {what}, did not answer ({type(e).__name__}: {e})",
                               RETRY_UNREACHABLE_S)
        async with upstream:
            if upstream.status != 200 or not upstream.headers.get("Content-Type", "").startswith(sse.CONTENT_TYPE):
                body = await upstream.content.read(MAX_ERROR_BYTES)
                passed = {k: upstream.headers[k] for k in ("Content-Type", "Retry-After", "WWW-Authenticate",
                                                           ANSWERED_BY) if k in upstream.headers}
                return view.bytes(body, status=upstream.status, headers=passed)
            response = await open_stream(request, upstream.headers.get(ANSWERED_BY, owner))
            pending = b""
            ended = False  # the last event passed on was ``finished`` or ``moved``
            stopping = asyncio.ensure_future(closed.wait())
            try:
                while True:
                    chunk = asyncio.ensure_future(upstream.content.readany())
                    await asyncio.wait({chunk, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not chunk.done():
                        chunk.cancel()
                        await say_moved(response, "this worker is stopping")
                        return response
                    data = chunk.result()
                    if not data:  # the owner ended the stream: so do we, saying why if it did not
                        if not ended:
                            await say_moved(response, f"{owner} ended the stream (it stopped or crashed)")
                        return response
                    pending += data
                    cut = pending.rfind(b"\n\n")
                    if cut >= 0:  # whole events only: a cut-off one would reach the client as garbage
                        whole, pending = pending[:cut + 2], pending[cut + 2:]
                        await response.write(whole)
                        ended = ENDING_EVENT.search(whole) is not None
                    if len(pending) > MAX_EVENT_BYTES:
                        raise ValueError(f"{owner} sent an event of more than {MAX_EVENT_BYTES} bytes")
            except ConnectionError:  # the client went away
                return response
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                await say_moved(response, f"{owner} went away ({type(e).__name__}: {e})"[:300])
                return response
            finally:
                stopping.cancel()

    async def stream(view: View, request: Request, followed: Followed, key: str) -> Any:
        if not allowed(request):
            return refused(view)
        expect = _expected(request.query.get("expect"))
        if expect is None:
            return view.json({"error": "expect must be a whole number of items, 0..10000000"}, status=400)
        with hub.slot() as admitted:
            if not admitted:
                return unavailable(view, f"this worker serves its maximum of {hub.max_streams} live streams "
                                         f"(REGEN_LIVE_MAX_STREAMS)", RETRY_UNREACHABLE_S)
            decision = decision_for(followed, key, request.headers.get(FORWARDED_BY))
            if isinstance(decision, Local):
                return await serve_local(request, followed, key, expect)
            if isinstance(decision, Forward):
                return await relay(view, request, decision.url, f"{followed.table} {key[:100]}")
            return unavailable(view, decision.reason, decision.retry_after)

    @app.page("/events/batches/{batch_id}")
    class BatchEvents(View):
        async def get(self, request: Request, batch_id: str) -> Any:
            return await stream(self, request, FOLLOWED["batches"], batch_id)

    @app.page("/events/groups/{group_id}")
    class GroupEvents(View):
        async def get(self, request: Request, group_id: str) -> Any:
            return await stream(self, request, FOLLOWED["groups"], group_id)

    @app.page("/events/videos/{video_id}")
    class VideoEvents(View):
        async def get(self, request: Request, video_id: str) -> Any:
            return await stream(self, request, FOLLOWED["videos"], video_id)

    @app.page("/events/ticket")
    class StreamTicket(View):
        """A signed URL of one stream, for a client that cannot send the header (EventSource)."""

        async def get(self, request: Request) -> Response:
            if not bearer_ok(request):  # a signed URL cannot get another: only the token can
                return refused(self)
            path = request.query.get("path", "")
            expect = request.query.get("expect")
            if not STREAM_PATH.fullmatch(path) or (expect is not None and _expected(expect) is None):
                return self.json({"error": "path must be /events/overview, /events/batches/ID, /events/groups/ID "
                                           "or /events/videos/ID; expect a whole number"}, status=400)
            return self.json({"url": stream_url(stream_key, path, time.time(), _expected(expect) if expect else None)},
                             headers={"Cache-Control": "no-store"})

    feed = OverviewFeed(ctx, hub, image_key, self_url)

    @app.page("/events/overview")
    class OverviewEvents(View):
        async def get(self, request: Request) -> Any:
            if not allowed(request):
                return refused(self)
            with hub.slot() as admitted:
                if not admitted:
                    return unavailable(self, f"this worker serves its maximum of {hub.max_streams} live streams "
                                             f"(REGEN_LIVE_MAX_STREAMS)", RETRY_UNREACHABLE_S)
                return await feed.serve(request, open_stream, say_moved)

    return hub


def _expected(value: str | None) -> int | None:
    """``?expect=``: absent is 0; anything but a plain small number is refused (None)."""
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 8:
        return None
    return int(value)


class OverviewFeed:
    """The group overview, computed once a second for all of this worker's
    dashboards together while any is open, and sent when it changed."""

    def __init__(self, ctx: WorkerContext, hub: LiveHub, image_key: bytes | None, self_url: str) -> None:
        self._ctx, self._hub, self._image_key, self._self_url = ctx, hub, image_key, self_url
        self._task: asyncio.Task | None = None
        self.latest: tuple[str, dict] | None = None

    async def serve(self, request: Request, open_stream, say_moved) -> web.StreamResponse:
        with self._hub.subscribe(OVERVIEW_KEY) as subscription:
            self._ensure_running()
            response = await open_stream(request, self._self_url)
            sent = sse.resume_id(request.headers.get("Last-Event-ID"))
            last_write = time.monotonic()
            try:
                await response.write(sse.retry_frame(RETRY_MS))
                item: Any = self.latest
                while True:
                    if isinstance(item, Wake) and item.final:
                        await say_moved(response, item.reason)
                        return response
                    if isinstance(item, tuple) and sse.should_send(sent, item[0], False):
                        await response.write(sse.event_frame(sse.STATE, item[1], item[0]))
                        sent, last_write = item[0], time.monotonic()
                    elif time.monotonic() - last_write >= HEARTBEAT_S:
                        await response.write(sse.comment_frame())
                        last_write = time.monotonic()
                    item = await subscription.next(HEARTBEAT_S)
            except ConnectionError:
                return response

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while self._hub.followed(OVERVIEW_KEY) and not self._hub.closing:
                try:
                    body = await self._gather()
                except Exception:  # a bad tick must not end every dashboard's stream
                    log.exception("computing the live overview failed; trying again in %.0f s", OVERVIEW_EVERY_S)
                else:
                    state = sse.state_id({k: v for k, v in body.items() if k != "now"})
                    if self.latest is None or self.latest[0] != state:
                        self.latest = (state, body)
                        self._hub.publish(OVERVIEW_KEY, self.latest)
                await asyncio.sleep(OVERVIEW_EVERY_S)
        finally:
            self.latest = None  # stale by the time anyone follows again

    async def _gather(self) -> dict:
        ctx = self._ctx
        now = time.time()
        local = overview(ctx.tables, ctx.activity, now, self._image_key)
        group = group_view(ctx.app, self._self_url)
        token = ctx.settings.web_token
        parts = await asyncio.gather(*(self._member(url, partitions, local, f"Bearer {token}" if token else None)
                                       for url, partitions in group.members().items()))
        return group_overview(parts, now, group.state, ctx.background_state())

    async def _member(self, url: str, partitions: tuple[int, ...], local: dict,
                      authorization: str | None) -> MemberOverview:
        """Like /api/overview's: this worker's part from its tables, another's over HTTP."""
        if url == normalize_url(self._self_url):
            return MemberOverview(url, partitions, local, is_self=True)
        try:
            reply = await forward(cast(aiohttp.ClientSession, self._ctx.app.http_client), url,
                                  "/api/overview?scope=local", authorization, self._self_url,
                                  timeout=MEMBER_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError) as e:
            return MemberOverview(url, partitions, None, error=f"{type(e).__name__}: {e}".rstrip(": "))
        if reply.status != 200:
            return MemberOverview(url, partitions, None, error=f"HTTP {reply.status}")
        try:
            return MemberOverview(url, partitions, orjson.loads(reply.body))
        except orjson.JSONDecodeError:
            return MemberOverview(url, partitions, None, error="not JSON")

