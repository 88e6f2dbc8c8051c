"""The in-process broadcaster behind the live streams (agents/live_views.py).

Rows change where agents write them (batch progress, groups, video pending
counts). A Faust sensor (:class:`TableWatch`, Faust's public monitoring
hook) sees every write to the watched tables on this worker — the owner's
writes only: changelog recovery and standby replicas write the store
directly, not through the table — and hands the new row to the hub, which
offers it to every stream following that key. Nothing polls per client.

Bounds, each with its reason:
- open streams per worker (REGEN_LIVE_MAX_STREAMS): every stream holds a
  connection and a task; beyond the bound a client gets 503, not a worker
  that slows down for everyone;
- per stream, at most QUEUE_LIMIT pending states. Each state is whole, so a
  client that does not keep up loses nothing by skipping: when its queue is
  full, it is cut to the newest state only (``dropped`` counts the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Hashable, Iterator
from typing import Any

from faust import Sensor

# States waiting for one stream's writer. A client that keeps up sees every
# step (the CLI's progress bar moves in steps); one that does not is cut to
# the latest. Small: each state is a whole row, up to tens of kB.
QUEUE_LIMIT = 16


class Wake:
    """Put in a stream's queue to make it look around (ownership moved, the worker stops)."""

    def __init__(self, reason: str, final: bool = False) -> None:
        self.reason = reason
        self.final = final  # the worker stops: end the stream


class Subscription:
    """One stream's queue of states, bounded, newest kept."""

    def __init__(self, key: Hashable, limit: int = QUEUE_LIMIT) -> None:
        self.key = key
        self._limit = limit
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def offer(self, item: Any) -> None:
        if len(self._items) >= self._limit:
            # Whole states: the newest says everything the dropped ones did.
            wakes = [i for i in self._items if isinstance(i, Wake)]
            self.dropped += len(self._items) - len(wakes)
            self._items = deque(wakes[-1:])
        self._items.append(item)
        self._ready.set()

    def pending(self) -> int:
        return len(self._items)

    async def next(self, timeout: float) -> Any | None:
        """The next item, or None after ``timeout`` seconds without one."""
        if not self._items:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        return self._items.popleft() if self._items else None


class LiveHub:
    """Streams by key, and the count of open streams (proxied ones too)."""

    def __init__(self, max_streams: int, queue_limit: int = QUEUE_LIMIT) -> None:
        self.max_streams = max_streams
        self._queue_limit = queue_limit
        self._by_key: dict[Hashable, set[Subscription]] = {}
        self.open_streams = 0
        self.refused = 0
        self.closing = False

    @contextlib.contextmanager
    def slot(self) -> Iterator[bool]:
        """One open stream, if the bound allows (yields False if not, or if
        the worker is stopping)."""
        if self.closing or self.open_streams >= self.max_streams:
            self.refused += 1
            yield False
            return
        self.open_streams += 1
        try:
            yield True
        finally:
            self.open_streams -= 1

    @contextlib.contextmanager
    def subscribe(self, key: Hashable) -> Iterator[Subscription]:
        subscription = Subscription(key, self._queue_limit)
        self._by_key.setdefault(key, set()).add(subscription)
        try:
            yield subscription
        finally:
            followers = self._by_key.get(key)
            if followers is not None:
                followers.discard(subscription)
                if not followers:
                    del self._by_key[key]

    def followed(self, key: Hashable) -> bool:
        return bool(self._by_key.get(key))

    def publish(self, key: Hashable, item: Any) -> None:
        for subscription in self._by_key.get(key, ()):
            subscription.offer(item)

    def wake_all(self, reason: str, final: bool = False) -> None:
        for followers in self._by_key.values():
            for subscription in followers:
                subscription.offer(Wake(reason, final))

    def close(self, reason: str) -> None:
        """The worker stops: refuse new streams, end the open ones."""
        self.closing = True
        self.wake_all(reason, final=True)


class TableWatch(Sensor):
    """Hands every write to the watched tables to the hub, keyed (table, key)."""

    def __init__(self, hub: LiveHub, tables: frozenset[str]) -> None:
        super().__init__()
        self._hub = hub
        self._tables = tables

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        name = getattr(table, "name", None)
        if name in self._tables:
            self._hub.publish((name, key), value)

    def on_rebalance_start(self, app: Any) -> dict:
        # Partitions may be leaving: every stream checks whether it still
        # owns its key (and says ``moved`` if not) at once, not at its next
        # heartbeat.
        self._hub.wake_all("rebalance")
        return {}
