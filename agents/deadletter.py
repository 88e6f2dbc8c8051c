"""The dead-letter topic: what could not be processed, with why.

The original key, value and headers are kept byte for byte; the reason and
origin ride in headers named as Spring Kafka names them
(``kafka_dlt-original-topic``, ``kafka_dlt-exception-message`` …), so existing
DLQ tooling can read them.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.context import WorkerContext
from streams.topics import DEADLETTER, topic_name

log = logging.getLogger(__name__)


def deadletter_headers(message: Any, group: str, exc: BaseException) -> list[tuple[str, bytes]]:
    original = list(message.headers.items() if isinstance(message.headers, dict) else (message.headers or []))
    return original + [
        ("kafka_dlt-original-topic", str(message.topic).encode()),
        ("kafka_dlt-original-partition", str(message.partition).encode()),
        ("kafka_dlt-original-offset", str(message.offset).encode()),
        ("kafka_dlt-original-timestamp", str(int((message.timestamp or 0) * 1000)).encode()),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
        ("kafka_dlt-exception-message", str(exc).encode("utf-8", "replace")[:4000]),
    ]


async def send_to_deadletter(ctx: WorkerContext, message: Any, exc: BaseException) -> None:
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, exc)
    ctx.metrics.deadletters.inc()
    await ctx.send_durably(topic_name(ctx.settings, DEADLETTER), message.key, message.value,
                           deadletter_headers(message, ctx.settings.app_id, exc))
