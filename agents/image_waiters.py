"""Renders asked for by viewers of an image URL, and the views waiting on them.

One request per image, however many viewers: the first view of a missing
image publishes an ImageRequested and leaves a future here; every other
view of it awaits the same future. The projector resolves it when it folds
a completion for that image (``completed``, a hook in agents/projector.py),
so a waiting view wakes as soon as the tables say the image is there, with
no polling.

Also kept here: when a view last tried a failed image again (``force``), so
each failed image is retried on view at most once per
REGEN_IMAGE_RETRY_ON_VIEW_S. All of this is in memory on the worker that
owns the image's partition: after a restart or a rebalance the new owner
starts with none, which costs at most one extra request or retry per image.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from regen.schemas.events import ImageFailed, ImageGenerated, ImageRequested, Target

# (kind, target id, variant)
ImageKey = tuple[str, str, str]
# Renders asked for and not yet completed, at most: past it, a view of yet
# another missing image is told to come back (503), never left to grow memory.
MAX_PENDING = 10_000
MAX_RETRIES_KEPT = 10_000


class TooManyPending(Exception):
    """MAX_PENDING images are being rendered on view already."""


@dataclass
class _Pending:
    future: asyncio.Future
    asked_at: float  # monotonic
    force: bool


class ViewRenders:
    def __init__(self, publish: Callable[[ImageRequested], Awaitable[None]], stale_after_s: float) -> None:
        self._publish = publish
        # A request whose completion never came (lost with a worker that
        # died mid-render and was replaced by a re-delivery that joined
        # another job...) is asked again after this long, not awaited forever.
        self._stale_after_s = stale_after_s
        self._pending: dict[ImageKey, _Pending] = {}
        self._retried_at: dict[ImageKey, float] = {}  # unix seconds
        self.published = 0  # requests published (what a test of the one-request rule reads)

    def last_retry(self, key: ImageKey) -> float | None:
        return self._retried_at.get(key)

    async def requested(self, key: ImageKey, *, force: bool) -> tuple[asyncio.Future, bool]:
        """A future resolved with the next completion of ``key`` (or None:
        look again, the request was given up), and whether
        this call published the request (False: it joined a view's earlier one).
        A ``force`` request (a retry on view) is never folded into a plain one."""
        now = time.monotonic()
        pending = self._pending.get(key)
        if (pending is not None and not pending.future.done() and now - pending.asked_at < self._stale_after_s
                and (pending.force or not force)):
            return pending.future, False
        if len(self._pending) >= MAX_PENDING:
            self._drop_stale(now)
            if len(self._pending) >= MAX_PENDING:
                raise TooManyPending(f"{MAX_PENDING} images are being rendered on view already")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        # Registered before publishing: the completion may be folded before the send returns.
        self._pending[key] = _Pending(future, now, force)
        kind, target_id, variant = key
        event = ImageRequested(target=Target(kind, target_id), variant=variant,
                               request_id=f"view-{uuid.uuid4().hex[:16]}", priority="interactive", force=force)
        try:
            await self._publish(event)
        except BaseException:
            if self._pending.get(key) is not None and self._pending[key].future is future:
                del self._pending[key]
            future.set_result(None)  # views that joined meanwhile look again (and ask themselves)
            raise
        self.published += 1
        if force:
            self._note_retry(key)
        return future, True

    def completed(self, event: ImageGenerated | ImageFailed) -> None:
        """The projector folded a completion: wake the views waiting for it."""
        pending = self._pending.pop((event.target.kind, event.target.id, event.variant), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(event)

    def _note_retry(self, key: ImageKey) -> None:
        now = time.time()
        if len(self._retried_at) >= MAX_RETRIES_KEPT:
            # Forget the oldest half: at worst one of them is retried once more than the interval allows.
            for old, _ in sorted(self._retried_at.items(), key=lambda item: item[1])[:MAX_RETRIES_KEPT // 2]:
                del self._retried_at[old]
        self._retried_at[key] = now

    def _drop_stale(self, now: float) -> None:
        for key, pending in list(self._pending.items()):
            if pending.future.done() or now - pending.asked_at >= self._stale_after_s:
                del self._pending[key]
                if not pending.future.done():
                    pending.future.set_result(None)  # its views look again
