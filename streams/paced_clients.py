"""Kafka clients that back off while the broker is away, and say so.

aiokafka 0.14 has a fixed ``retry_backoff_ms`` and no reconnect backoff at
all, and one of its loops does not wait even that: while a partition's
leader is unknown, the producer's sender asks for a metadata update and
waits for it; with the broker gone the update fails at once (connection
refused), so the sender asks again. Measured on a worker whose broker was
stopped under load: about 2,000 metadata updates a second, each logging two
errors ("Unable connect to node with id 1", "Unable to update metadata"):
a core at 97 % and 260,000 log lines (27 MB) a minute.

So every aiokafka client of a worker gets, on its instance:

1. a reconnect backoff per broker: after a failed connection, the next
   attempt to that broker waits a capped exponential delay with jitter
   (Kafka's ``reconnect.backoff.max.ms``). A request for that broker waits
   for its turn, one attempt per delay, so every loop that retries requests
   after aiokafka's fixed 100 ms (the fetcher, the group coordinator, the
   heartbeat, the sender) backs off with it instead of failing ten times a
   second;
2. a metadata backoff: after a failed metadata update, the next one waits
   the same kind of delay. Everything waiting for metadata (the sender
   above) waits with it, so no loop spins. A metadata update itself always
   tries to connect: it is the paced probe that notices the broker is back
   (were it held by the reconnect backoff too, two independent delays would
   have to expire together and the retries would drift apart);
3. reports to the app's :class:`~regen.streams.broker_watch.BrokerWatch`.

Both wrap private methods of aiokafka's client, pinned by
tests/unit/test_paced_clients.py (aiokafka version and signatures, and the
spinning loop reproduced without a broker).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.client import ConnectionGroup
from faust.transport.drivers import aiokafka as faust_aiokafka

from regen.streams.broker_watch import BrokerWatch, watch_of_app

# Set in the task running a metadata update, for the connections it makes (rule 2).
_updating_metadata: contextvars.ContextVar[bool] = contextvars.ContextVar("regen_updating_metadata", default=False)


class Pacing:
    """Installed on one aiokafka client (AIOKafkaClient) with :meth:`install`."""

    def __init__(self, client: Any, watch: BrokerWatch) -> None:
        self._client = client
        self._watch = watch
        self._get_conn = client._get_conn
        self._metadata_update = client._metadata_update
        self._node_failures: dict[Any, tuple[int, float]] = {}  # node id -> (failures, no attempt before)
        self._node_locks: dict[Any, asyncio.Lock] = {}
        self._metadata_failures = 0
        self._metadata_not_before = 0.0

    @classmethod
    def install(cls, client: Any, watch: BrokerWatch) -> Pacing:
        pacing = cls(client, watch)
        # Instance attributes: aiokafka calls both as self._get_conn(...) and
        # self._metadata_update(...), so these take the place of its methods.
        client._get_conn = pacing.get_conn
        client._metadata_update = pacing.metadata_update
        return pacing

    async def get_conn(self, node_id: Any, *, group: Any = ConnectionGroup.DEFAULT, no_hint: bool = False) -> Any:
        if node_id not in self._node_failures or _updating_metadata.get():
            return await self._connect(node_id, group, no_hint)
        # Rule 1. The lock: waiters take turns, each after the delay the
        # previous attempt set, instead of all trying when one delay ends.
        async with self._node_locks.setdefault(node_id, asyncio.Lock()):
            while (wait := self._node_failures.get(node_id, (0, 0.0))[1] - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            return await self._connect(node_id, group, no_hint)

    async def _connect(self, node_id: Any, group: Any, no_hint: bool) -> Any:
        before = self._client._conns.get((node_id, group))
        conn = await self._get_conn(node_id, group=group, no_hint=no_hint)
        if conn is None:
            failures = self._node_failures.get(node_id, (0, 0.0))[0] + 1
            self._node_failures[node_id] = (failures, time.monotonic() + self._watch.backoff.delay(failures))
            self._watch.failed()
        elif conn is not before:  # a new connection: the broker is there
            self._node_failures.pop(node_id, None)
            self._watch.succeeded()
        return conn

    async def metadata_update(self, cluster_metadata: Any, topics: Any) -> bool:
        wait = self._metadata_not_before - time.monotonic()
        if self._metadata_failures and wait > 0:
            await asyncio.sleep(wait)
        token = _updating_metadata.set(True)
        try:
            updated = await self._metadata_update(cluster_metadata, topics)
        finally:
            _updating_metadata.reset(token)
        if updated:
            self._metadata_failures = 0
            self._watch.succeeded()
        else:
            self._metadata_failures += 1
            self._metadata_not_before = time.monotonic() + self._watch.backoff.delay(self._metadata_failures)
        return bool(updated)


def pace(kafka: Any, watch: BrokerWatch) -> Pacing:
    """Pace the client inside an AIOKafkaProducer, AIOKafkaConsumer or AIOKafkaAdminClient."""
    client = kafka.client if isinstance(kafka, AIOKafkaProducer) else kafka._client
    return Pacing.install(client, watch)


class PacedProducer(faust_aiokafka.Producer):
    """Faust's producer with a paced aiokafka client."""

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        Pacing.install(producer.client, watch_of_app(self.app))
        return producer


class PacedTransport(faust_aiokafka.Transport):
    """Faust's Kafka transport whose producer and consumer clients are paced.

    The consumer's aiokafka client is built by the consumer's thread when it
    starts (``_create_consumer``); the consumer class is left to subclasses
    (streams/consumer.py), so the thread is told here, as it is created."""

    Producer = PacedProducer

    def create_consumer(self, callback: Any, **kwargs: Any) -> Any:
        consumer = super().create_consumer(callback, **kwargs)
        thread = consumer._thread  # type: ignore[attr-defined]  # Faust's thread-delegating consumers have it
        create = thread._create_consumer

        def create_paced(loop: asyncio.AbstractEventLoop) -> Any:
            client = create(loop)
            Pacing.install(client._client, watch_of_app(self.app))
            return client

        thread._create_consumer = create_paced
        return consumer

