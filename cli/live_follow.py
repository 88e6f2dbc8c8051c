"""`regen import --follow --batch ID` over a worker's live stream (SSE).

The batch's progress comes from ``GET /events/batches/{id}?expect=N`` of
the worker at REGEN_LIVE_URL (default: the local one), whichever worker
owns the batch (agents/live_views.py relays). Each event is the batch's
whole state, so the progress bar is set, never added to, and a
reconnection (after ``moved``: the batch's owner changed) loses nothing.

When no worker answers there, :func:`follow_batch_live` returns None and
the caller follows the completions on Kafka instead, as it did before.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson
from tqdm import tqdm

from regen.projections.sse import FINISHED, MOVED, STATE, EventParser
from regen.settings import ENVIRONMENT, Settings
from regen.streams.exceptions import RegenError

# Waiting for the first byte of a stream: a worker that accepts the
# connection but says nothing in this long (it sends its retry field at
# once) is stuck; the Kafka way is better than hanging.
CONNECT_TIMEOUT_S = 5.0
# The server sends a heartbeat every 15 s (agents/live_views.py): silence
# for much longer means the connection is dead; reconnect.
READ_TIMEOUT_S = 40.0
# Reconnect pause when the server gave none (``retry:``), and the bound on a server's.
DEFAULT_RETRY_S = 2.0
MAX_RETRY_S = 30.0


class Unreachable(Exception):
    """No worker answers at the live URL: follow on Kafka instead."""


async def follow_batch_live(settings: Settings, batch_id: str, expected: int, show_bar: bool,
                            idle_timeout: float) -> dict | None:
    """Follow ``batch_id`` until it has ``expected`` items and none is
    pending; the outcome (completed, failed, failures, unfinished), or None
    if no worker could be reached at all."""
    base = settings.live_base_url()
    headers = {"Accept": "text/event-stream"}
    if settings.web_token:
        headers["Authorization"] = f"Bearer {settings.web_token}"
    path = f"/events/batches/{batch_id}?expect={expected}"
    bar = tqdm(total=expected, unit="image", desc="rendering", disable=not show_bar, file=sys.stderr)
    latest: dict | None = None
    last_id: str | None = None
    changed_at = time.monotonic()
    connected_once = False
    try:
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - changed_at < idle_timeout:
                parser = EventParser()
                if last_id:
                    headers["Last-Event-ID"] = last_id
                try:
                    pause = DEFAULT_RETRY_S
                    async for event in _events(session, base + _quote(path), headers, parser):
                        connected_once = True
                        if event.event in (STATE, FINISHED):
                            state = _batch_state(event.data)
                            if state is None:
                                continue
                            if state != latest:
                                changed_at = time.monotonic()
                            latest, last_id = state, event.id
                            bar.n = min(expected, state["completed"] + state["failed"])
                            bar.refresh()
                            if event.event == FINISHED:
                                return _outcome(latest, expected, base)
                        elif event.event == MOVED:
                            break
                    pause = min(MAX_RETRY_S, (parser.retry_ms or DEFAULT_RETRY_S * 1000) / 1000)
                except Unreachable:
                    if not connected_once:
                        return None
                except _TryAgain as e:
                    pause = e.after_s
                await asyncio.sleep(pause)
    finally:
        bar.close()
    return _outcome(latest, expected, base, unfinished=True)


class _TryAgain(Exception):
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s


async def _events(session: aiohttp.ClientSession, url: str, headers: dict, parser: EventParser):
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    try:
        async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as response:
            if response.status in (401, 403):
                raise RegenError(f"{url} refused the token (HTTP {response.status}): set "
                                 f"{ENVIRONMENT['web_token']} to the workers' token")
            if response.status == 503:
                retry = response.headers.get("Retry-After", "")
                raise _TryAgain(min(MAX_RETRY_S, float(retry)) if retry.isdigit() else DEFAULT_RETRY_S)
            if response.status != 200 or not response.headers.get("Content-Type", "").startswith("text/event-stream"):
                # Not a worker with live streams (an older one, something else on the port).
                raise Unreachable(f"HTTP {response.status} from {url}")
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk):
                    yield event
    except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as e:
        raise Unreachable(str(e)) from e
    except (aiohttp.ClientError, TimeoutError):
        return  # a dropped stream: reconnect


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/?=&")


def _batch_state(data: str) -> dict | None:
    """The server's batch view, checked: the fields this uses, of the right types."""
    try:
        state = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict):
        return None
    counts = ("total", "completed", "failed", "pending")
    if not all(isinstance(state.get(k), int) and state[k] >= 0 for k in counts):
        return None
    if not isinstance(state.get("failures"), list):
        return None
    return state


def _outcome(state: dict | None, expected: int, base: str, unfinished: bool = False) -> dict:
    state = state or {"completed": 0, "failed": 0, "failures": [], "total": 0, "pending": expected}
    failures = [f"{f.get('asset_id')} {f.get('variant')}: {f.get('error')}" for f in state["failures"]
                if isinstance(f, dict)]
    left = max(state["pending"], expected - state["completed"] - state["failed"], 0)
    return {"completed": state["completed"], "failed": state["failed"], "failures": failures,
            "unfinished": left if unfinished else 0, "via": f"live stream at {base}"}
