"""Creating regen's topics before anything produces to them.

The broker runs with ``auto.create.topics.enable=false``: a topic created by
accident on first produce would get the broker's default partition count, and
Faust refuses to start when a table's source topic and changelog disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from regen.settings import Settings
from regen.streams.connection import kafka_security, start_client
from regen.streams.topics import ALL_TOPICS, FOREVER, topic_name

log = logging.getLogger(__name__)


async def _connect(settings: Settings, bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000, **kafka_security(settings))
    await start_client(admin, settings, bootstrap)
    return admin


async def cluster_id(settings: Settings, bootstrap: str) -> str:
    """The Kafka cluster's id: a broker recreated from scratch has a new one."""
    admin = await _connect(settings, bootstrap)
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "unknown")
    finally:
        await admin.close()


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic Faust names for a table of the worker's app."""
    return f"{settings.app_id}-{table}-changelog"


async def ensure_topics(settings: Settings, bootstrap: str, tables: Sequence[str] = ()) -> list[str]:
    """Create every missing regen topic, and the changelogs of ``tables``
    (a worker's Faust tables). Returns the names it created.

    Changelogs are created here, before the worker joins its group, rather
    than by Faust as it starts: a group leader whose metadata does not list a
    changelog created a moment before leaves it unassigned until its next
    metadata refresh (minutes), and queries of that table have no owner."""
    admin = await _connect(settings, bootstrap)
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for spec in ALL_TOPICS:
            name = topic_name(settings, spec)
            if name in existing:
                continue
            config = {"retention.ms": str(spec.retention_ms if spec.retention_ms != FOREVER else -1)}
            wanted.append(NewTopic(name, settings.partitions, 1, topic_configs=config))
        for table in tables:
            name = changelog_name(settings, table)
            if name not in existing:
                wanted.append(NewTopic(name, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"}))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topics exist either way
            log.info("created topics: %s", ", ".join(t.name for t in wanted))
        return [t.name for t in wanted]
    finally:
        await admin.close()
