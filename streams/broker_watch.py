"""Whether this worker can reach its Kafka broker, and since when not.

The worker's Kafka clients (streams/paced_clients.py) report every
connection attempt that fails and every connection or metadata update that
succeeds. A failure that no success has followed for ``GRACE_S`` is an
outage: ``/health`` answers ``broker_unreachable``, timers skip their ticks,
and the log says so once when it starts and once when it ends, instead of
once per reconnect attempt.

The clients run on two event loops (Faust's consumer has a thread of its
own), so the state is guarded by a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from regen.settings import ENVIRONMENT, Settings
from regen.streams.backoff import Backoff

log = logging.getLogger(__name__)

# A single failed connection followed by a good one (a broker of a cluster
# going away while its partitions move, a connection reset) is no outage.
GRACE_S = 1.0
# First reconnect delay: Kafka's Java client starts at 50 ms and aiokafka
# retries requests after 100 ms; the cap comes from the settings.
FIRST_RECONNECT_S = 0.1


class BrokerWatch:
    def __init__(self, address: str, backoff: Backoff, clock: Callable[[], float] = time.time) -> None:
        self.address = address
        self.backoff = backoff
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None  # first failure after the last success
        self._announced = False  # the outage was logged

    @classmethod
    def from_settings(cls, settings: Settings, address: str) -> BrokerWatch:
        return cls(address, Backoff(FIRST_RECONNECT_S, settings.broker_backoff_max))

    def failed(self) -> None:
        """A connection to the broker could not be made."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._announce_if_due()

    def succeeded(self) -> None:
        """A connection was made, or the broker answered a metadata request."""
        with self._lock:
            since, announced = self._failing_since, self._announced
            self._failing_since, self._announced = None, False
        if announced and since is not None:
            log.warning("broker at %s back after %.0f s", self.address, self._clock() - since)

    def unreachable_s(self) -> float | None:
        """Seconds the broker has been unreachable, or None while it is reachable."""
        with self._lock:
            self._announce_if_due()
            if not self._announced or self._failing_since is None:
                return None
            return self._clock() - self._failing_since

    @property
    def reachable(self) -> bool:
        return self.unreachable_s() is None

    def _announce_if_due(self) -> None:
        since = self._failing_since
        if since is None or self._announced or self._clock() - since < GRACE_S:
            return
        self._announced = True
        log.error("broker at %s unreachable since %s; reconnecting with backoff up to %.0f s (%s)",
                  self.address, time.strftime("%H:%M:%S", time.localtime(since)), self.backoff.cap_s,
                  ENVIRONMENT["broker_backoff_max"])


# One watch per broker address in a process: a worker's Faust clients and
# the consumers regen builds itself (render lanes) report to the same one.
_watches: dict[tuple[str, ...], BrokerWatch] = {}
_watches_lock = threading.Lock()


def watch_broker(address: str, settings: Settings | None = None) -> BrokerWatch:
    """The watch of the broker at ``address`` ("host:port[,host:port…]"),
    made with ``settings`` (default: the defaults) the first time it is asked for."""
    key = servers(address)
    with _watches_lock:
        watch = _watches.get(key)
        if watch is None:
            watch = _watches[key] = BrokerWatch.from_settings(settings or Settings(), ",".join(key))
        return watch


def watch_of_app(app: Any) -> BrokerWatch:
    """The watch of the broker a Faust app talks to."""
    return watch_broker(",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker))


def servers(address: str) -> tuple[str, ...]:
    """``host:port`` of each server, as Faust spells them (9092 when no port is given)."""
    return tuple(sorted(item if ":" in item else f"{item}:9092"
                        for item in (part.strip() for part in address.split(",")) if item))
