"""What a worker does while its Kafka broker is away.

- Its Kafka clients back off (streams/paced_clients.py) and report to the
  broker's watch (streams/broker_watch.py), which ``/health`` reads
  (``broker_unreachable``) and which logs one line when the broker goes
  away and one when it is back.
- Its log is bounded (regen/log_limits.py): whatever loop repeats itself,
  each kind of line is written at most ten times a minute, then counted.
- Its timers skip their ticks (agents/timers.py): a tick would only wait on
  the broker, and the next one after the outage does the work.
"""

from __future__ import annotations

from typing import Any

from mode import Service

from regen.log_limits import limit_repeats
from regen.settings import Settings
from regen.streams.broker_watch import BrokerWatch, watch_broker


class BoundedLog(Service):
    """Bounds the log once the app starts: the worker configures logging
    (replacing the root logger's handlers) just before that."""

    async def on_start(self) -> None:
        limit_repeats()


def guard_broker_outages(app: Any, settings: Settings, bootstrap: str) -> BrokerWatch:
    """Call while building the worker, before it starts."""
    app.add_dependency(BoundedLog())
    return watch_broker(bootstrap, settings)
