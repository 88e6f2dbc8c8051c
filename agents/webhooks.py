"""Webhooks: each group's progress and completion POSTed to its receivers.

Receivers: every URL in REGEN_WEBHOOK_URLS, and the group's own
(GroupDeclared.webhook_url), each only if its host is in
REGEN_WEBHOOK_HOSTS. Bodies are the events' JSON, signed
(``regen.webhook_signature``), with ``X-Regen-Event`` naming the type.

- A completion (GroupFinished) is delivered before its offset is committed:
  retried with backoff (REGEN_WEBHOOK_RETRIES), and on final failure the
  event goes to the dead-letter topic with the reason, from where
  ``regen deadletters`` shows it. A worker killed mid-delivery delivers it
  again on restart (at least once: receivers dedupe by group and
  finished_at).
- Progress is rate-limited per group: at most one post per
  REGEN_WEBHOOK_PROGRESS_INTERVAL; progress arriving sooner replaces the one
  waiting, which is posted when the interval has passed (only the latest
  counts matter). Waiting progress lives in memory: a restart can drop one,
  never a completion. A failed progress post is not retried (the next
  progress or the completion says more).

Deliveries run one group at a time per partition (this agent), so a
receiver that is down delays the next groups' posts by its retries, never
other agents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from regen.agents.context import WorkerContext
from regen.agents.deadletter import send_to_deadletter
from regen.agents.timers import guarded_timer
from regen.projections.groups import GroupState
from regen.schemas.events import GroupFinished, GroupProgress
from regen.streams.backoff import Backoff
from regen.streams.codec import decode
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import GROUP_PROGRESS
from regen.webhook_signature import SIGNATURE_HEADER, WebhookUrlError, check_webhook_url, sign

log = logging.getLogger(__name__)

RETRY = Backoff(first_s=1.0, cap_s=30.0)


class DeliveryFailed(Exception):
    pass


@dataclass
class Waiting:
    """Progress posts held back by the rate limit, the latest per group."""

    last_sent: dict[str, float] = field(default_factory=dict)  # group -> monotonic time of its last post
    latest: dict[str, GroupProgress] = field(default_factory=dict)


def register_webhooks(ctx: WorkerContext) -> None:
    waiting = Waiting()

    async def agent(stream):
        async for event in stream.events():
            await _deliver_message(ctx, waiting, event.message)

    agent.__name__ = agent.__qualname__ = "webhooks"
    ctx.app.agent(ctx.topic(GROUP_PROGRESS), name="webhooks")(agent)

    @guarded_timer(ctx, 1.0, "webhook-progress")
    async def webhook_progress():
        await _post_waiting(ctx, waiting, time.monotonic())


def receivers(ctx: WorkerContext, group_id: str) -> list[str]:
    """Where a group's posts go: the global URLs and the group's own, each
    checked against the allowed hosts (a refused one is logged, not called)."""
    urls = list(ctx.settings.webhook_urls)
    group = GroupState.from_dict(ctx.tables.groups.get(group_id))
    if group is not None and group.webhook_url:
        try:
            check_webhook_url(group.webhook_url, ctx.settings.webhook_hosts)
            urls.append(group.webhook_url)
        except WebhookUrlError as e:
            log.warning("group %s: webhook not called: %s", group_id, e)
    return list(dict.fromkeys(urls))


async def _deliver_message(ctx: WorkerContext, waiting: Waiting, message: Any) -> None:
    try:
        event, _ = decode(message.value, message.headers, GROUP_PROGRESS.event_types)
    except PoisonEvent as e:
        await send_to_deadletter(ctx, message, e)
        return
    assert isinstance(event, (GroupProgress, GroupFinished))
    urls = receivers(ctx, event.group_id)
    if not urls:
        return
    if isinstance(event, GroupProgress):
        waiting.latest[event.group_id] = event
        await _post_waiting(ctx, waiting, time.monotonic(), only=event.group_id)
        return
    waiting.latest.pop(event.group_id, None)  # the completion says all the progress would
    try:
        await deliver(ctx, event, urls, attempts=1 + ctx.settings.webhook_retries)
    except DeliveryFailed as e:
        await send_to_deadletter(ctx, message, e)


async def _post_waiting(ctx: WorkerContext, waiting: Waiting, now: float, only: str | None = None) -> None:
    interval = ctx.settings.webhook_progress_interval
    for group_id in [only] if only is not None else list(waiting.latest):
        progress = waiting.latest.get(group_id)
        if progress is None or now - waiting.last_sent.get(group_id, -interval) < interval:
            continue
        del waiting.latest[group_id]
        waiting.last_sent[group_id] = now
        try:
            await deliver(ctx, progress, receivers(ctx, group_id), attempts=1)
        except DeliveryFailed as e:
            log.info("progress of group %s not delivered (the next one will say more): %s", group_id, e)
    if len(waiting.last_sent) > 10_000:  # forget groups long quiet: bounded memory
        cutoff = now - 10 * max(interval, 1.0)
        waiting.last_sent = {g: t for g, t in waiting.last_sent.items() if t >= cutoff}


async def deliver(ctx: WorkerContext, event: GroupProgress | GroupFinished, urls: list[str], attempts: int) -> None:
    """POST to every receiver; DeliveryFailed naming those that never took it."""
    body = orjson.dumps(event.to_dict())
    failed = []
    for url in urls:
        error = await _post_with_retries(ctx, url, body, type(event).__name__, attempts)
        ctx.metrics.webhooks.labels("failed" if error else "delivered").inc()
        if error:
            failed.append(f"{url}: {error}")
    if failed:
        raise DeliveryFailed(f"{type(event).__name__} of group {event.group_id} not delivered after "
                             f"{attempts} attempt(s): " + "; ".join(failed))


async def _post_with_retries(ctx: WorkerContext, url: str, body: bytes, event_type: str, attempts: int) -> str | None:
    """None once a receiver answers 2xx; else the last error."""
    settings = ctx.settings
    error = "not tried"
    for attempt in range(1, attempts + 1):
        headers = {"Content-Type": "application/json", "X-Regen-Event": event_type,
                   SIGNATURE_HEADER: sign(settings.webhook_secret, body, int(time.time()))}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout)) as http, \
                    http.post(url, data=body, headers=headers, allow_redirects=False) as reply:
                await reply.read()
                if 200 <= reply.status < 300:
                    return None
                error = f"HTTP {reply.status}"
                if 400 <= reply.status < 500 and reply.status not in (408, 429):
                    return error  # the receiver refuses this body: asking again will not change its mind
        except (aiohttp.ClientError, TimeoutError) as e:
            error = f"{type(e).__name__}: {e}".rstrip(": ")
        if attempt < attempts:
            delay = RETRY.delay(attempt)
            log.info("webhook %s: %s (attempt %d of %d); again in %.1f s", url, error, attempt, attempts, delay)
            await asyncio.sleep(delay)
    return error
