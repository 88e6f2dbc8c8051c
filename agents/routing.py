"""Which worker answers a query, and how the query gets there.

Tables are sharded by Kafka partition: a key's row lives only on the worker
that owns the key's partition. A query may arrive at any worker; this module
decides whether to answer it here, forward it to the owner, or say 503 with
``Retry-After`` because nobody can answer truthfully right now (a false 404
would tell a client that an asset does not exist while it merely moves).

The decision (:func:`decide`) is pure and reads a :class:`GroupView`, a
snapshot of what this worker knows of its group, taken from Faust's public
API by :func:`group_view`. Forwarding (:func:`forward`) is a plain aiohttp GET.

Why not Faust's ``app.router.route_req``: it finds the partition by hashing
the key as the table's changelog serializes it (JSON, with quotes, for our
tables), not as the entity's Kafka messages are keyed, so it sent half the
asset queries and most batch queries to a worker that does not hold them;
it sends every header of the original request on (Host included), drops the
answer's headers (Retry-After), has no timeout of its own, and cannot tell a
forwarded request from a fresh one, so two workers that disagree about an
owner during a rebalance would pass a query back and forth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

# Set on a request one worker forwards to another, naming the sender. A
# worker that receives a forwarded query for a partition it does not own
# answers 503 instead of forwarding again: no loops.
FORWARDED_BY = "X-Regen-Forwarded-By"
# Set on every answer to a routed query: the member whose tables answered.
ANSWERED_BY = "X-Regen-Answered-By"

# Timeouts and retry hints, each with its reason:
# - A table read takes milliseconds. An owner that has not answered in this
#   long is stuck or gone; the client is better told so (503) than left to
#   run into its own, usually longer, timeout.
FORWARD_TIMEOUT_S = 3.0
# - The dashboard asks every member for its overview once a second: one dead
#   member must not hold the page, so each gets this long, all at once.
MEMBER_TIMEOUT_S = 1.5
# - A rebalance of this group takes a few seconds (heartbeat 2 s, streams/app.py),
#   then the tables recover: ask again soon.
RETRY_REBALANCE_S = 2
# - A member that does not answer is busy or dead; the group notices a dead
#   member after the session timeout (10 s, streams/app.py) and moves its
#   partitions: by then the answer comes from the new owner.
RETRY_UNREACHABLE_S = 5


@dataclass(frozen=True)
class GroupView:
    """What this worker knows of its group when a query arrives."""

    self_url: str
    # "ok", or why this worker cannot vouch for its tables right now:
    # "starting" (no assignment or recovery yet), "rebalancing" (partitions
    # are moving and tables recovering), "crashed".
    state: str
    # changelog topic -> partition -> URL of the member that owns it (actives only)
    owners: Mapping[str, Mapping[int, str]]
    # Every member's URL, those that own no partition too (more workers than
    # partitions, or standbys only).
    member_urls: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.state == "ok"

    def owner(self, topic: str, partition: int) -> str | None:
        """The member that owns ``partition`` of the changelog ``topic``.

        Every table and its source topics are co-partitioned (Faust requires
        it), so partition N of every table belongs to one member. A changelog
        missing from the metadata has been seen: a group leader whose
        metadata did not list a changelog created a moment earlier left it
        unassigned (aiokafka refreshes metadata every 5 minutes). Its rows are
        still written by the member that handles partition N of the source
        topic, the owner of partition N of the other tables: asked there when
        they agree on one member."""
        owner = self.owners.get(topic, {}).get(partition)
        if owner is not None:
            return owner
        others = {url for by_partition in self.owners.values() if (url := by_partition.get(partition)) is not None}
        return others.pop() if len(others) == 1 else None

    def members(self) -> dict[str, tuple[int, ...]]:
        """URL -> the partitions it owns (the tables are co-partitioned, so
        one set per member), this worker included even before its first
        assignment."""
        found: dict[str, set[int]] = {normalize_url(url): set() for url in (self.self_url, *self.member_urls)}
        for by_partition in self.owners.values():
            for partition, url in by_partition.items():
                found.setdefault(normalize_url(url), set()).add(partition)
        return {url: tuple(sorted(partitions)) for url, partitions in sorted(found.items())}


@dataclass(frozen=True)
class Local:
    """Answer from this worker's tables."""


@dataclass(frozen=True)
class Forward:
    url: str  # the owner's advertised URL


@dataclass(frozen=True)
class Unavailable:
    reason: str
    retry_after: int


Decision = Local | Forward | Unavailable


def decide(view: GroupView, table: str, topic: str, partition: int, forwarded_by: str | None) -> Decision:
    """Where the query for a key in ``partition`` of ``table`` (whose changelog is ``topic``) is answered.

    1. This worker is starting, rebalancing or recovering its tables: 503.
       Ownership is moving, and even the partitions it keeps are not
       vouched for until their tables have caught up with the changelogs.
       (A rebalance involves every member, so forwarding would meet the same.)
    2. No member owns the partition (no assignment yet): 503.
    3. This worker owns it: answer here.
    4. Another worker forwarded the query here, yet the owner is someone
       else: the two disagree about ownership, which only happens while it
       moves. 503, never a second hop: a query cannot loop.
    5. Otherwise: forward to the owner.
    """
    if not view.ready:
        return Unavailable(f"this worker is {view.state}: the owner of {table} partition {partition} "
                           f"is not known for sure yet", RETRY_REBALANCE_S)
    owner = view.owner(topic, partition)
    if owner is None:
        return Unavailable(f"no member of the group owns {table} partition {partition} yet", RETRY_REBALANCE_S)
    if normalize_url(owner) == normalize_url(view.self_url):
        return Local()
    if forwarded_by:
        return Unavailable(f"{forwarded_by} forwarded this query here, but {table} partition {partition} belongs to "
                           f"{owner} as far as this worker knows: ownership is moving", RETRY_REBALANCE_S)
    return Forward(owner)


def normalize_url(url: str) -> str:
    """``scheme://host:port`` in one spelling, so that the URL a member
    advertises and the one another member reads from the metadata compare equal."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{host}:{port}"


def group_view(app: Any, self_url: str) -> GroupView:
    """Read the group from Faust's public API: the assignor's table metadata
    (each member's URL and active changelog partitions, shared with every
    member at each assignment), ``app.rebalancing`` (true from the start of a
    rebalance until table recovery ends) and the recovery's completion."""
    recovery = app.tables.recovery
    if recovery.crashed:
        state = "crashed"
    elif not recovery.completed.is_set():
        state = "starting"
    elif app.rebalancing:
        state = "rebalancing"
    else:
        state = "ok"
    owners: dict[str, dict[int, str]] = {}
    metadata = app.assignor.tables_metadata()
    for url, topics in metadata.items():
        for topic, partitions in topics.items():
            for partition in partitions:
                owners.setdefault(topic, {})[partition] = str(url)
    return GroupView(self_url=self_url, state=state, owners=owners, member_urls=tuple(str(u) for u in metadata))


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


# Set on an image answered with the placeholder: "pending" or "failed" (agents/image_views.py).
PLACEHOLDER = "X-Regen-Placeholder"
# Headers of the owner's answer handed on to the client (an image's caching
# headers too: a forwarded image must revalidate exactly like a local one).
PASSED_BACK = ("Content-Type", "Retry-After", "WWW-Authenticate", ANSWERED_BY, "ETag", "Cache-Control", "Vary",
               PLACEHOLDER)
# Headers of the client's request handed on to the owner, when present: what
# an image's answer depends on (its conditional request, its negotiation).
PASSED_ON = ("If-None-Match", "Accept")


async def forward(session: aiohttp.ClientSession, owner: str, path_qs: str, authorization: str | None,
                  self_url: str, timeout: float = FORWARD_TIMEOUT_S,
                  passed_on: Mapping[str, str] | None = None) -> Reply:
    """GET ``path_qs`` from ``owner`` as this worker, the client's bearer token
    included (and those of its headers named in PASSED_ON found in
    ``passed_on``); raises aiohttp.ClientError or TimeoutError when it does not answer."""
    headers = {FORWARDED_BY: self_url}
    if authorization:
        headers["Authorization"] = authorization
    for name in PASSED_ON:
        if passed_on is not None and (value := passed_on.get(name)) is not None:
            headers[name] = value
    # encoded=True: the path goes on exactly as the client spelled it.
    async with session.get(URL(owner.rstrip("/") + path_qs, encoded=True), headers=headers, allow_redirects=False,
                           timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        body = await response.read()
        return Reply(response.status, body, {k: response.headers[k] for k in PASSED_BACK if k in response.headers})
