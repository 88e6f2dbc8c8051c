"""Operator commands, the pure part: which rows a command touches, what it
makes of them, and the background switch. No Kafka, no clock.

Agents (agents/control.py) apply each command to one partition's rows at a
time; everything here takes that partition's rows and returns decisions, so
the filters the CLI and README document are exactly these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regen.projections.instants import instant
from regen.projections.state import JobState
from regen.schemas.events import (
    BackgroundPaused,
    BackgroundResumed,
    CancelRequested,
    DeadLettersRedriven,
    Event,
    ImageFailed,
    RetryFailed,
    Target,
)
from regen.schemas.exceptions import SchemaError
from regen.schemas.validation import parse_event

# Statuses a cancel reaches: a job already rendering finishes (its render
# cannot be taken back), a finished one stays as it ended.
CANCELLABLE = frozenset({"pending", "retrying"})
# The header a redriven record carries: which command published it again.
REDRIVE_HEADER = "regen_redriven-by"
ORIGINAL_TOPIC_HEADER = "kafka_dlt-original-topic"
CUT_HEADER = "regen_dlt-cut"  # agents/deadletter_fit.py: such a letter no longer has the original value


@dataclass(frozen=True)
class TargetFacts:
    """What the filters read of a job's target (from its kind's state)."""

    revision: int  # the target's current (wanted) revision
    batch: str | None = None
    video: str | None = None
    group: str | None = None


# --- retry ------------------------------------------------------------------------

def retry_marker(command_id: str) -> str:
    """The request id a retry carries. The job keeps it among its request
    ids (and its completion names it), which is how a command delivered
    twice knows which jobs it already retried."""
    return f"retry.{command_id}"


def retry_matches(job: JobState, facts: TargetFacts | None, command: RetryFailed) -> bool:
    """Failed, of its target's current revision, and every given filter holds."""
    if job.status != "failed" or facts is None or job.revision != facts.revision:
        return False
    if command.kind is not None and job.target_kind != command.kind:
        return False
    if command.batch_id is not None and facts.batch != command.batch_id:
        return False
    if command.video_id is not None and facts.video != command.video_id:
        return False
    if command.group_id is not None and facts.group != command.group_id:
        return False
    if command.since is not None:
        failed_at, since = instant(job.finished_at), instant(command.since)
        if failed_at is None or since is None or failed_at < since:
            return False
    return True


def partition_quota(limit: int | None, partition: int, partitions: int) -> int | None:
    """A partition's share of ``limit``: the shares add up to ``limit``
    exactly, so a command never retries more than it says. None: no limit."""
    if limit is None:
        return None
    return limit // partitions + (1 if partition < limit % partitions else 0)


def select_retries(jobs: Iterable[JobState], facts_of: Callable[[JobState], TargetFacts | None],
                   command: RetryFailed, partition: int, partitions: int) -> list[JobState]:
    """The jobs of one partition to retry now, oldest failure first. Jobs
    this command retried already count against its quota and are not
    retried again (a redelivered command changes nothing)."""
    marker = retry_marker(command.command_id)
    done = 0
    candidates: list[JobState] = []
    for job in jobs:
        if marker in job.request_ids:
            done += 1
        elif retry_matches(job, facts_of(job), command):
            candidates.append(job)
    candidates.sort(key=lambda j: (instant(j.finished_at) or datetime.max.replace(tzinfo=UTC), j.job_id))
    quota = partition_quota(command.limit, partition, partitions)
    return candidates if quota is None else candidates[:max(0, quota - done)]


# --- cancel -----------------------------------------------------------------------

def cancel_matches(job: JobState, facts: TargetFacts | None, command: CancelRequested) -> bool:
    if job.status not in CANCELLABLE:
        return False
    if command.scope == "job":
        return job.job_id == command.id
    if facts is None:
        return False
    return (facts.batch if command.scope == "batch" else facts.group) == command.id


def cancelled(job: JobState, command: CancelRequested, at: str) -> ImageFailed:
    """The completion a cancelled job ends with: everything that waits for
    the job (its requests, batch and group progress) sees it done."""
    who = command.requested_by or "an operator"
    why = f": {command.reason}" if command.reason else ""
    return ImageFailed(target=Target(job.target_kind, job.target_id), variant=job.variant, revision=job.revision,
                       job_id=job.job_id, reason="cancelled", error_code="cancelled",
                       error=f"cancelled by {who} (command {command.command_id}){why}"[:2000],
                       attempts=job.attempts, failed_at=at, request_ids=job.request_ids)


# --- pause and resume -------------------------------------------------------------

@dataclass(frozen=True)
class BackgroundSwitch:
    """Whether background rendering is paused: the latest command wins."""

    paused: bool = False
    since: str | None = None
    by: str | None = None
    reason: str | None = None
    command_id: str | None = None

    def to_dict(self) -> dict:
        return {"paused": self.paused, "since": self.since, "by": self.by, "reason": self.reason,
                "command_id": self.command_id}


def background_switched(state: BackgroundSwitch, event: BackgroundPaused | BackgroundResumed) -> BackgroundSwitch:
    """Records of one partition arrive in order, so the latest is the one
    that counts; a repeat of the state it is in keeps the original 'since'."""
    paused = isinstance(event, BackgroundPaused)
    if paused == state.paused and state.command_id is not None:
        return state
    return BackgroundSwitch(paused=paused, since=event.requested_at, by=event.requested_by, reason=event.reason,
                            command_id=event.command_id)


# --- redrive ----------------------------------------------------------------------

@dataclass(frozen=True)
class DeadLetter:
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def header_text(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name and isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", "replace")
    return None


def redrive_destination(letter: DeadLetter, command: DeadLettersRedriven, partition: int,
                        redrivable: frozenset[str]) -> str | None:
    """The topic to publish ``letter`` to again, or None to leave it.

    Left: letters at or past the command's end offset for the partition
    (newer than the command); letters dead-lettered before ``since``; of
    another ``event_type``; cut to fit (their value is a summary, not the
    event); and any whose original topic is not one regen consumes (a
    forged header must not make regen write to a topic of its choosing)."""
    end = command.up_to.get(str(partition))
    if end is None or letter.offset >= end:
        return None
    if command.since is not None:
        since = instant(command.since)
        if since is None or letter.timestamp_ms < since.timestamp() * 1000:
            return None
    if command.event_type is not None and header_text(letter.headers, "ce_type") != command.event_type:
        return None
    if header_text(letter.headers, CUT_HEADER) is not None:
        return None
    topic = header_text(letter.headers, ORIGINAL_TOPIC_HEADER)
    return topic if topic in redrivable else None


def redriven_headers(letter: DeadLetter, command_id: str) -> list[tuple[str, bytes]]:
    """The original headers (its ce_id among them: the same event again),
    without the dead-letter provenance, plus the command that redrove it."""
    kept = [(k, bytes(v)) for k, v in letter.headers
            if isinstance(v, (bytes, bytearray)) and not k.startswith("kafka_dlt-") and not k.startswith("regen_dlt-")
            and k != REDRIVE_HEADER]
    return [*kept, (REDRIVE_HEADER, command_id.encode())]


# --- time -------------------------------------------------------------------------

# --- making a command -------------------------------------------------------------

# The fields the publisher fills in (a body may name command_id, to make a
# repeated POST the same command; never the time or, for a redrive, its end offsets).
SET_BY_PUBLISHER = ("requested_at", "up_to")


def build_command(event_type: str, body: Any, *, command_id: str, requested_by: str, at: str,
                  up_to: dict[int, int] | None = None) -> Event:
    """A command from an operator's fields, checked like any event on the
    topic (JSON Schema, then the record); SchemaError says what is wrong."""
    if not isinstance(body, dict):
        raise SchemaError(f"{event_type}: the body must be a JSON object of its fields, not {type(body).__name__}")
    for name in SET_BY_PUBLISHER:
        if name in body:
            raise SchemaError(f"{event_type}.{name} is set by regen when it publishes the command; leave it out")
    fields = {**body, "requested_at": at}
    fields.setdefault("command_id", command_id)
    fields.setdefault("requested_by", requested_by)
    if event_type == "DeadLettersRedriven":
        fields["up_to"] = {str(p): o for p, o in (up_to or {}).items()}
    return parse_event(event_type, fields)
