"""Kafka clients back off while the broker is away (streams/paced_clients.py).

Without a broker: a real aiokafka client whose only broker is a closed port,
driven the way aiokafka's own loops drive it. Pacing wraps private methods
of aiokafka's client and hooks into Faust's driver, so both are pinned here
as tests/unit/test_faust_tripwire.py pins Faust: a changed upstream method
fails a test, and the upgrade starts by reading it.
"""

from __future__ import annotations

import asyncio
import socket
from importlib.metadata import version

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.structs import BrokerMetadata

from regen.streams.backoff import Backoff
from regen.streams.broker_watch import BrokerWatch
from regen.streams.paced_clients import Pacing
from tests.helpers import source_digest

PINNED_AIOKAFKA = "0.14.0"

# Upstream method -> the first 16 hex digits of the SHA-256 of its source.
WATCHED = {
    # wrapped: called as self._get_conn / self._metadata_update, with these arguments
    "aiokafka.client.AIOKafkaClient._get_conn": "68ce5d8391719d33",
    "aiokafka.client.AIOKafkaClient._metadata_update": "06dc51ed3e0d38b8",
    # the loops that call them
    "aiokafka.client.AIOKafkaClient._md_synchronizer": "e0421bffa9a7735a",
    "aiokafka.client.AIOKafkaClient.ready": "79d9637f40fc070e",
    "aiokafka.client.AIOKafkaClient.force_metadata_update": "cb7befef21c8f3f9",
    # the loop that spins without pacing (it may be fixed upstream one day)
    "aiokafka.producer.sender.Sender._sender_routine": "2380dc5e333d9ebd",
    # where Faust builds its clients: PacedProducer and PacedTransport hook in here
    "faust.transport.drivers.aiokafka.Producer._new_producer": "e72355c3430ed02f",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.on_start": "38b4e8bd1e10723a",
    "faust.transport.base.Transport.create_consumer": "46cc2bf5ab14acfa",
}


def test_the_installed_aiokafka_is_the_pinned_release():
    assert version("aiokafka") == PINNED_AIOKAFKA, (
        "aiokafka moved: re-read the methods in WATCHED against streams/paced_clients.py, "
        "then update PINNED_AIOKAFKA, the hashes and pyproject.toml's pin together")


@pytest.mark.parametrize("name", sorted(WATCHED))
def test_a_watched_upstream_method_is_unchanged(name):
    digest = source_digest(name)
    assert digest == WATCHED[name], f"{name} changed upstream: compare it with streams/paced_clients.py"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens there once the socket is closed


async def drive(loop_body, paced: bool, seconds: float = 1.0) -> tuple[int, int, BrokerWatch]:
    """Run ``loop_body(client)`` for ``seconds`` against a broker that is not
    there; count connection attempts and metadata updates that reached aiokafka."""
    port = closed_port()
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=1000)
    client.cluster._brokers = {1: BrokerMetadata(1, "127.0.0.1", port, None)}  # as if bootstrapped
    counts = {"connects": 0, "updates": 0}
    get_conn, metadata_update = client._get_conn, client._metadata_update

    async def counted_get_conn(*args, **kwargs):
        counts["connects"] += 1
        return await get_conn(*args, **kwargs)

    async def counted_update(*args, **kwargs):
        counts["updates"] += 1
        return await metadata_update(*args, **kwargs)

    client._get_conn, client._metadata_update = counted_get_conn, counted_update
    watch = BrokerWatch(f"127.0.0.1:{port}", Backoff(0.1, 5.0))
    if paced:
        Pacing.install(client, watch)
    client._sync_task = asyncio.create_task(client._md_synchronizer())
    task = asyncio.create_task(loop_body(client))
    await asyncio.sleep(seconds)
    task.cancel()
    await client.close()
    return counts["connects"], counts["updates"], watch


async def sender_waiting_for_a_leader(client):
    """Producer's _sender_routine while a partition's leader is unknown."""
    while True:
        await client.force_metadata_update()


async def fetchers(client):
    """Three loops retrying requests to node 1 every 100 ms (retry_backoff_ms),
    as aiokafka's fetcher, coordinator and heartbeat do."""
    async def retry():
        while True:
            if not await client.ready(1):
                await asyncio.sleep(0.1)

    await asyncio.gather(retry(), retry(), retry())


def test_without_pacing_the_sender_spins_on_metadata_updates():
    connects, updates, _ = asyncio.run(drive(sender_waiting_for_a_leader, paced=False))
    assert updates > 100, "aiokafka fixed its sender? then pacing may be simpler now"


def test_paced_metadata_updates_back_off():
    connects, updates, watch = asyncio.run(drive(sender_waiting_for_a_leader, paced=True, seconds=1.5))
    # at 0 s, then after about 0.1, 0.2, 0.4 and 0.8 s (less with jitter)
    assert 3 <= updates <= 6
    assert watch.unreachable_s() is not None


def test_paced_reconnects_back_off_for_every_loop_that_retries_requests():
    unpaced, _, _ = asyncio.run(drive(fetchers, paced=False))
    paced, _, _ = asyncio.run(drive(fetchers, paced=True))
    assert unpaced >= 25
    assert paced <= 8  # metadata updates' own attempts included
