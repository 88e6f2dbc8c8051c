"""Asking regen for an image and waiting for it, from Python.

    async with ImageClient(settings, bootstrap) as client:
        completion = await client.request(Target("thumbnail", "photo-42"), "h400.jpg")

or, for one image, ``await request_image("thumbnail", "photo-42")``.

A request is an ImageRequested event with a fresh ``request_id``; its answer
is the ImageGenerated or ImageFailed on the results topic whose
``request_ids`` names it (a render that served several requests names them
all). The client follows the results topic from its end *before* it
publishes, so no answer can slip past, and without a consumer group, so it
never takes partitions from workers. One client serves any number of
concurrent requests with one producer and one follower.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition

from regen.schemas.events import ImageFailed, ImageGenerated, ImageRequested, Target
from regen.settings import Settings
from regen.streams.codec import decode
from regen.streams.connection import bootstrap_servers, kafka_security, start_client
from regen.streams.exceptions import PoisonEvent, RegenError
from regen.streams.publisher import Publisher
from regen.streams.results import topic_partitions
from regen.streams.topics import IMAGES_RESULTS, topic_name

log = logging.getLogger(__name__)

Completion = ImageGenerated | ImageFailed


class RequestTimeout(RegenError):
    """No completion named the request within the time given."""


def default_variant(settings: Settings, kind: str) -> str:
    """The kind's first standing variant (for thumbnails the first
    pre-generated one, the one most likely to be a cache hit; for composites
    the composite variant)."""
    from regen.kinds import kind_named

    return (kind_named(kind).standing_variants(settings) or settings.variants)[0]


class ImageClient:
    def __init__(self, settings: Settings, bootstrap: str, source: str = "regen/client"):
        self.settings = settings
        self.bootstrap = bootstrap
        # No linger: a request is one small event and someone is waiting.
        self._publisher = Publisher(settings, bootstrap, source=source, linger_ms=0)
        self._consumer: AIOKafkaConsumer | None = None
        self._waiting: dict[str, asyncio.Future[Completion]] = {}
        self._follower: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ImageClient:
        await self._publisher.__aenter__()
        try:
            await self._start_following()
        except BaseException:
            await self._publisher.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        await self._publisher.__aexit__(exc_type, exc, tb)

    async def _start_following(self) -> None:
        name = topic_name(self.settings, IMAGES_RESULTS)
        # fetch_max_wait_ms: how long the broker may hold a fetch that has no
        # data yet; short, because a completion is waited for by a person.
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=50, **kafka_security(self.settings))
        await start_client(consumer, self.settings, self.bootstrap)
        self._consumer = consumer
        tps = [TopicPartition(name, p) for p in await topic_partitions(self._consumer, name)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is published
            await self._consumer.position(tp)
        self._follower = asyncio.create_task(self._follow(), name="regen-client-follower")

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        completion, _ = decode(record.value, record.headers, IMAGES_RESULTS.event_types)
                    except PoisonEvent:
                        continue
                    assert isinstance(completion, (ImageGenerated, ImageFailed))  # what the topic carries
                    for request_id in completion.request_ids:
                        waiter = self._waiting.get(request_id)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(completion)  # type: ignore[arg-type]

    async def request(self, target: Target, variant: str | None = None, *, force: bool = False,
                      timeout: float = 30.0, priority: str = "interactive") -> Completion:
        """Publish an ImageRequested and return its completion; RequestTimeout if none comes."""
        request = self.make_request(target, variant, force=force, priority=priority)
        (waiter,) = await self.submit([request])
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            self._check_follower()
            raise RequestTimeout(
                f"no answer to request {request.request_id} for {target} {request.variant} within {timeout:g} s: "
                "is a worker running (`regen worker`) and caught up (`regen status`)?") from None
        finally:
            self.forget(request.request_id)

    def make_request(self, target: Target, variant: str | None = None, *, force: bool = False,
                     priority: str = "interactive") -> ImageRequested:
        return ImageRequested(target=target, variant=variant or default_variant(self.settings, target.kind),
                              request_id=uuid.uuid4().hex, priority=priority, force=force)  # type: ignore[arg-type]

    async def submit(self, requests: list[ImageRequested]) -> list[asyncio.Future[Completion]]:
        """Publish many requests at once (one round trip); each future
        resolves with its completion. Call :meth:`forget` for the ones you
        stop waiting for."""
        loop = asyncio.get_running_loop()
        waiters = []
        for request in requests:
            waiter: asyncio.Future[Completion] = loop.create_future()
            self._waiting[request.request_id] = waiter
            waiters.append(waiter)
        await self._publisher.publish_many(list(requests))
        return waiters

    async def request_all(self, requests: list[ImageRequested], on_answer: Callable[[Completion], None], *,
                          timeout: float, window: int = 500) -> int:
        """Publish ``requests`` keeping up to ``window`` in flight, call
        ``on_answer`` with each completion as it comes, and return how many
        were still unanswered after ``timeout`` seconds."""
        pending: dict[asyncio.Future[Completion], str] = {}
        queue = list(reversed(requests))
        deadline = time.monotonic() + timeout
        try:
            while queue or pending:
                if queue and len(pending) < window:
                    batch = [queue.pop() for _ in range(min(window - len(pending), len(queue)))]
                    pending.update(zip(await self.submit(batch), (r.request_id for r in batch), strict=True))
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(pending, timeout=min(left, 5.0), return_when=asyncio.FIRST_COMPLETED)
                for waiter in done:
                    self.forget(pending.pop(waiter))
                    on_answer(waiter.result())
        finally:
            for waiter, request_id in pending.items():
                self.forget(request_id)
                waiter.cancel()
        return len(pending) + len(queue)

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def _check_follower(self) -> None:
        if self._follower is not None and self._follower.done() and self._follower.exception():
            raise RegenError(f"following the results topic failed: {self._follower.exception()}")


async def request_image(kind: str, target_id: str, variant: str | None = None, *, force: bool = False,
                        timeout: float = 30.0, settings: Settings | None = None) -> Completion:
    """One request, one answer: ImageGenerated or ImageFailed. For many
    requests, keep one :class:`ImageClient` open instead."""
    settings = settings or Settings.from_env()
    started = time.monotonic()
    async with ImageClient(settings, bootstrap_servers(settings)) as client:
        log.debug("client ready in %.0f ms", (time.monotonic() - started) * 1000)
        return await client.request(Target(kind, target_id), variant, force=force, timeout=timeout)
