"""Outputs' bytes kept in memory once read and checked, for image URLs.

A hit of ``/images/{kind}/{id}/{variant}`` must answer the bytes whose
sha256 the tables record (that sha256 is the ETag). Reading and hashing the
file costs little (about 40 µs for a 50 KB thumbnail) but has to leave the
event loop, and that hop is what cost the time: measured with 8 concurrent
viewers, a thread per hit gave 1,400 requests/s and a p99 of 14 ms
(bench/image_urls.py), the hand-offs of the GIL between the loop and the
reading threads being most of it. Bytes checked against their sha256 are
the right answer for as long as the tables name that sha256, so they are
kept here, keyed by (uri, sha256), least recently used first out, within a
byte budget. Each entry is checked against the store again after
``recheck_s``: a file deleted or damaged since is noticed within that time
(the view then asks for it to be rendered again), not only by `regen repair`.
"""

from __future__ import annotations

import time
from collections import OrderedDict

# The budget: hundreds of thumbnails, the ones being viewed now.
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
DEFAULT_RECHECK_S = 30.0


class VerifiedBytes:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES, recheck_s: float = DEFAULT_RECHECK_S) -> None:
        self._budget = budget_bytes
        self._recheck_s = recheck_s
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()
        self._total = 0

    def get(self, uri: str, sha256: str, now: float | None = None) -> bytes | None:
        """The bytes of ``uri`` checked to hash to ``sha256`` less than
        ``recheck_s`` ago, or None (read and check the file, then ``put``)."""
        key = (uri, sha256)
        entry = self._entries.get(key)
        if entry is None:
            return None
        data, checked_at = entry
        if (time.monotonic() if now is None else now) - checked_at >= self._recheck_s:
            return None
        self._entries.move_to_end(key)
        return data

    def put(self, uri: str, sha256: str, data: bytes, now: float | None = None) -> None:
        """Keep ``data``, which the caller checked hashes to ``sha256``. One
        bigger than an eighth of the budget is not kept (a full-size PNG
        would push out a hundred thumbnails)."""
        if len(data) > self._budget // 8:
            return
        key = (uri, sha256)
        old = self._entries.pop(key, None)
        if old is not None:
            self._total -= len(old[0])
        self._entries[key] = (data, time.monotonic() if now is None else now)
        self._total += len(data)
        while self._total > self._budget:
            _, (dropped, _) = self._entries.popitem(last=False)
            self._total -= len(dropped)

    def forget(self, uri: str, sha256: str) -> None:
        old = self._entries.pop((uri, sha256), None)
        if old is not None:
            self._total -= len(old[0])

    @property
    def total_bytes(self) -> int:
        return self._total
