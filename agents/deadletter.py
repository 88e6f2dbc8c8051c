"""The dead-letter topic: what could not be processed, with why.

The original key, value and headers are kept byte for byte; the reason and
origin ride in headers named as Spring Kafka names them
(``kafka_dlt-original-topic``, ``kafka_dlt-exception-message`` …), so existing
DLQ tooling can read them. A letter over the maximum message size is cut
(agents/deadletter_fit.py): provenance always kept, the value summarised.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.errors import KafkaError

from regen.agents.context import WorkerContext
from regen.agents.deadletter_fit import fit_letter, fit_letter_hard
from regen.streams.topics import DEADLETTER, topic_name

log = logging.getLogger(__name__)


def original_headers(message: Any) -> list[tuple[str, bytes]]:
    return list(message.headers.items() if isinstance(message.headers, dict) else (message.headers or []))


def provenance_headers(message: Any, group: str, exc: BaseException) -> list[tuple[str, bytes]]:
    return [
        ("kafka_dlt-original-topic", str(message.topic).encode()),
        ("kafka_dlt-original-partition", str(message.partition).encode()),
        ("kafka_dlt-original-offset", str(message.offset).encode()),
        ("kafka_dlt-original-timestamp", str(int((message.timestamp or 0) * 1000)).encode()),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
        ("kafka_dlt-exception-message", str(exc).encode("utf-8", "replace")[:4000]),
    ]


async def send_to_deadletter(ctx: WorkerContext, message: Any, exc: BaseException) -> None:
    """Never raises a Kafka error: a poison message that cannot even be
    recorded is logged and passed over, never left to wedge its partition."""
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, exc)
    ctx.metrics.deadletters.inc()
    topic = topic_name(ctx.settings, DEADLETTER)
    original, provenance = original_headers(message), provenance_headers(message, ctx.settings.app_id, exc)
    letter = fit_letter(message.key, message.value, original, provenance, ctx.app.conf.producer_max_request_size)
    try:
        await ctx.send_durably(topic, letter.key, letter.value, letter.headers)
        return
    except KafkaError as e:
        log.warning("dead letter for %s[%s]@%s refused (%s): sending it cut to the minimum", message.topic,
                    message.partition, message.offset, e)
    hard = fit_letter_hard(message.key, message.value, original, provenance)
    try:
        await ctx.send_durably(topic, hard.key, hard.value, hard.headers)
    except KafkaError as e:
        log.error("dead letter for %s[%s]@%s could not be written (%s); passed over: %s", message.topic,
                  message.partition, message.offset, e, exc)
