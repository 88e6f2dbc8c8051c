"""Operator commands: every worker obeys the ``control`` topic.

Retry, cancel and redrive touch rows (jobs, dead letters) spread over every
partition, so each such command is applied per partition, by the partition's
owner, to its own rows:

1. ``control-fanout`` (any worker: whoever owns the command's partition)
   copies the command, bytes and headers unchanged, to every partition of
   ``control.partitions`` and waits for the acks; only then is its offset
   committed (a crash before redelivers it: copies may then arrive twice,
   which step 2 makes harmless).
2. ``control-apply`` reads ``control.partitions``, which has as many
   partitions as the tables, so Faust gives partition p to the worker that
   owns the tables' partition p, also after a rebalance. It applies the copy
   in partition p to the rows of partition p (jobs are written in their
   target id's partition), with table writes under that record, so their
   changelog records land in partition p too. Applying a copy twice changes
   nothing more than applying it once (see each ``_apply_*``).

Pause and resume are global: every worker reads the ``control`` partition
their constant key lands in from the beginning, with a small consumer of
its own (:class:`BackgroundWatch`), and holds its background render lane
while the latest says paused. A worker that joins later reads the same
history, so it agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from regen.agents.context import WorkerContext
from regen.agents.handling import handle_message
from regen.agents.lanes import PartitionFollower
from regen.kinds import KINDS
from regen.projections import folds
from regen.projections.control import (
    BackgroundSwitch,
    DeadLetter,
    TargetFacts,
    background_switched,
    cancel_matches,
    cancelled,
    redrive_destination,
    redriven_headers,
    retry_marker,
    select_retries,
)
from regen.projections.state import JobState
from regen.schemas.events import (
    BACKGROUND_KEY,
    BackgroundPaused,
    BackgroundResumed,
    CancelRequested,
    DeadLettersRedriven,
    Event,
    ImageRequested,
    RetryFailed,
    Target,
)
from regen.streams.codec import decode, now_iso
from regen.streams.connection import kafka_security, start_client
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import (
    ALL_TOPICS,
    CONTROL,
    CONTROL_PARTITIONS,
    DEADLETTER,
    IMAGES_REQUESTED,
    IMAGES_RESULTS,
    partition_for,
    topic_name,
)

log = logging.getLogger(__name__)

# How long the background watch waits for a record before looking again.
WATCH_FETCH_S = 0.5
# A failed background watch starts again after this (doubling to the cap).
WATCH_RESTART_FIRST_S, WATCH_RESTART_MAX_S = 0.5, 15.0
# Rows a cancel looks at: those it may cancel, and those it cancelled (a copy delivered again).
CANCEL_ROWS = frozenset({"pending", "retrying", "cancelled"})
# Sends of one command that are in flight at once (retries, cancels, redriven records).
SEND_CHUNK = 200


def register_control(ctx: WorkerContext, bootstrap: str, background: PartitionFollower) -> BackgroundWatch:
    """The two agents, and the background watch holding ``background``."""
    watch = BackgroundWatch(ctx, bootstrap)
    background.held = watch.held
    ctx.background_state = watch.describe
    ctx.app.task(watch.run_forever)
    ctx.app.before_stopping.append(watch.stop)  # type: ignore[attr-defined]  # RegenApp's

    async def control_fanout(stream: Any) -> None:
        async for event in stream.events():
            message = event.message

            async def fan_out(c: WorkerContext, command: Event, message: Any = message) -> None:
                await _fan_out(c, message, command)

            await handle_message(ctx, message, CONTROL.event_types, fan_out)

    async def control_apply(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition

            async def apply(c: WorkerContext, command: Event, partition: int = partition) -> None:
                await apply_command(c, command, partition, bootstrap)

            await handle_message(ctx, event.message, CONTROL_PARTITIONS.event_types, apply)

    ctx.app.agent(ctx.topic(CONTROL), name="control-fanout")(control_fanout)
    ctx.app.agent(ctx.topic(CONTROL_PARTITIONS), name="control-apply")(control_apply)
    return watch


# --- step 1: one copy per partition -------------------------------------------------

async def _fan_out(ctx: WorkerContext, message: Any, command: Event) -> None:
    if isinstance(command, (BackgroundPaused, BackgroundResumed)):
        return  # every worker's BackgroundWatch reads these itself
    topic = topic_name(ctx.settings, CONTROL_PARTITIONS)
    headers = [(k, bytes(v)) for k, v in _headers(message)]
    await asyncio.gather(*(ctx.send_durably(topic, message.key, message.value, headers, partition=p)
                           for p in range(ctx.settings.partitions)))
    log.info("%s %s (by %s) handed to all %d partitions", type(command).__name__,
             getattr(command, "command_id", "?"), getattr(command, "requested_by", "?"), ctx.settings.partitions)


def _headers(message: Any) -> list[tuple[str, Any]]:
    headers = message.headers
    return list(headers.items() if isinstance(headers, dict) else (headers or []))


# --- step 2: applied by each partition's owner ----------------------------------------

async def apply_command(ctx: WorkerContext, command: Event, partition: int, bootstrap: str) -> None:
    if not 0 <= partition < ctx.settings.partitions:
        log.warning("command copy in partition %d ignored: only %d partitions are configured", partition,
                    ctx.settings.partitions)
        return
    if isinstance(command, RetryFailed):
        await _apply_retry(ctx, command, partition)
    elif isinstance(command, CancelRequested):
        await _apply_cancel(ctx, command, partition)
    elif isinstance(command, DeadLettersRedriven):
        await _apply_redrive(ctx, command, partition, bootstrap)


def _jobs_of_partition(ctx: WorkerContext, partition: int, wanted: Callable[[dict], bool]) -> list[JobState]:
    """This partition's jobs whose raw row ``wanted`` picks (a cheap look at
    the row first: most jobs are completed and need no typed decoding)."""
    found = []
    for _, row in list(ctx.tables.jobs.items()):
        if not isinstance(row, dict) or not wanted(row):
            continue
        job = JobState.from_dict(row)
        if job is not None and partition_for(job.target_id, ctx.settings.partitions) == partition:
            found.append(job)
    return found


def _facts(ctx: WorkerContext, job: JobState) -> TargetFacts | None:
    kind = KINDS.get(job.target_kind)
    if kind is None:
        return None
    state = kind.read(ctx.tables.of(kind.table).get(job.target_id))
    if state is None:
        return None
    scope = kind.scope(state)
    return TargetFacts(revision=kind.revision(state), batch=scope.get("batch"), video=scope.get("video"),
                       group=kind.group(state))


async def _apply_retry(ctx: WorkerContext, command: RetryFailed, partition: int) -> None:
    """Each chosen job gets an ordinary forced ImageRequested (the intake
    and every check of a request apply), in the background lane so a mass
    retry never delays a person's request. Sent first, then the job row
    notes the command's request id: a crash in between retries a job twice
    (an identical render), never zero times."""
    marker = retry_marker(command.command_id)
    # Failed jobs, and any that carry the marker (they count against the quota).
    rows = _jobs_of_partition(ctx, partition, lambda row: row.get("status") == "failed"
                              or marker in (row.get("request_ids") or ()))
    chosen = select_retries(rows, lambda job: _facts(ctx, job), command, partition, ctx.settings.partitions)
    for chunk in _chunks(chosen):
        await asyncio.gather(*(ctx.emit(IMAGES_REQUESTED, ImageRequested(
            target=Target(job.target_kind, job.target_id), variant=job.variant, request_id=marker,
            priority="background", force=True)) for job in chunk))
        for job in chunk:
            # Read again: the intake may have folded the request meanwhile.
            current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
            if current is not None and marker not in current.request_ids:
                ctx.tables.jobs[job.job_id] = current.evolve(
                    request_ids=(*current.request_ids, marker)[-folds.MAX_REQUEST_IDS:]).to_dict()
    if chosen:
        log.info("retry %s (by %s): %d failed job(s) of partition %d requested again", command.command_id,
                 command.requested_by, len(chosen), partition)


async def _apply_cancel(ctx: WorkerContext, command: CancelRequested, partition: int) -> None:
    """Each matching job is marked cancelled at once (no await between the
    decision and the write, so a lane cannot start it meanwhile), then its
    ImageFailed(cancelled) is sent. A redelivered copy sends again the
    failures of the jobs this command cancelled (the folds ignore a repeat)."""
    at = now_iso()
    tag = f"(command {command.command_id})"
    if command.scope == "job":
        row = JobState.from_dict(ctx.tables.jobs.get(command.id))
        rows = [row] if row is not None and partition_for(row.target_id, ctx.settings.partitions) == partition \
            else []
    else:
        rows = _jobs_of_partition(ctx, partition, lambda row: row.get("status") in CANCEL_ROWS)
    outcomes = []
    for job in rows:
        if job.status == "cancelled" and tag in (job.error or ""):
            outcomes.append(cancelled(job, command, job.finished_at or at))  # cancelled by this command already
        elif cancel_matches(job, _facts(ctx, job), command):
            outcome = cancelled(job, command, at)
            ctx.tables.jobs[job.job_id] = folds.job_failed(job, outcome).to_dict()
            outcomes.append(outcome)
    for chunk in _chunks(outcomes):
        await asyncio.gather(*(ctx.emit(IMAGES_RESULTS, outcome) for outcome in chunk))
    if outcomes:
        log.info("cancel %s of %s %s (by %s): %d job(s) of partition %d cancelled", command.command_id,
                 command.scope, command.id, command.requested_by, len(outcomes), partition)


# Commands this process redrove, per partition: a copy delivered twice
# (a fan-out redone after a crash) is not redriven twice while the worker
# lives. Across a crash, redrive is at-least-once (see README).
_redriven: set[tuple[str, int]] = set()


async def _apply_redrive(ctx: WorkerContext, command: DeadLettersRedriven, partition: int, bootstrap: str) -> None:
    """Publish again the matching dead letters of dead-letter partition
    ``partition``, below the command's end offset for it. Offsets of this
    copy are committed only after every republished record is acked."""
    end = command.up_to.get(str(partition), 0)
    if end <= 0 or (command.command_id, partition) in _redriven:
        return
    redrivable = frozenset(topic_name(ctx.settings, spec) for spec in ALL_TOPICS
                           if spec.consumed and spec not in (DEADLETTER, CONTROL_PARTITIONS))
    sent = 0
    async for letters in _read_dead_letters(ctx, bootstrap, partition, end):
        sends = []
        for letter in letters:
            destination = redrive_destination(letter, command, partition, redrivable)
            if destination is not None:
                sends.append(ctx.send_durably(destination, letter.key, letter.value,
                                              redriven_headers(letter, command.command_id)))
        await asyncio.gather(*sends)
        sent += len(sends)
    _redriven.add((command.command_id, partition))
    log.info("redrive %s (by %s): %d dead letter(s) of partition %d published again", command.command_id,
             command.requested_by, sent, partition)


async def _read_dead_letters(ctx: WorkerContext, bootstrap: str, partition: int, end: int):
    """Dead-letter partition ``partition`` from its start up to ``end``, in chunks."""
    settings = ctx.settings
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **kafka_security(settings))
    await start_client(consumer, settings, bootstrap)
    try:
        tp = TopicPartition(topic_name(settings, DEADLETTER), partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=SEND_CHUNK)
            records = [r for r in fetched.get(tp, []) if r.offset < end]
            if records:
                yield [DeadLetter(r.offset, r.timestamp or 0, r.key, r.value, tuple(r.headers or ()))
                       for r in records]
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def _chunks(items: list) -> list[list]:
    return [items[i:i + SEND_CHUNK] for i in range(0, len(items), SEND_CHUNK)]


# --- pause and resume ---------------------------------------------------------------

class BackgroundWatch:
    """Every worker's view of the background switch, folded from the
    ``control`` partition that pause and resume are keyed to."""

    def __init__(self, ctx: WorkerContext, bootstrap: str) -> None:
        self.ctx, self.bootstrap = ctx, bootstrap
        self.state = BackgroundSwitch()
        # Until the history read at start is folded, background work is held:
        # a worker joining during a pause must not render a batch first.
        self.caught_up = False
        self._stopping = False

    def held(self) -> bool:
        return self.state.paused or not self.caught_up

    def describe(self) -> dict:
        return {**self.state.to_dict(), "known": self.caught_up}

    async def stop(self) -> None:
        self._stopping = True

    async def run_forever(self) -> None:
        delay = WATCH_RESTART_FIRST_S
        while not self._stopping:
            try:
                await self._run()
            except Exception as e:  # noqa: BLE001 - the broker went away, or a bug: start again, visibly
                log.warning("background watch stopped (%s: %s); starting again in %.1f s (background work "
                            "is held until it has read the control topic)", type(e).__name__, e, delay)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(WATCH_RESTART_MAX_S, delay * 2)

    async def _run(self) -> None:
        settings = self.ctx.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                    **kafka_security(settings))
        await start_client(consumer, settings, self.bootstrap)
        try:
            tp = TopicPartition(topic_name(settings, CONTROL), partition_for(BACKGROUND_KEY, settings.partitions))
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            state, history_end = BackgroundSwitch(), (await consumer.end_offsets([tp]))[tp]
            self.caught_up = False  # a restart reads the history again
            while not self._stopping:
                if not self.caught_up and await consumer.position(tp) >= history_end:
                    self.state, self.caught_up = state, True
                    log.info("background rendering is %s", "PAUSED" if state.paused else "running")
                fetched = await consumer.getmany(tp, timeout_ms=int(WATCH_FETCH_S * 1000))
                for record in fetched.get(tp, []):
                    state = self._fold(state, record)
                if self.caught_up and state != self.state:
                    self.state = state
                    log.warning("background rendering %s by %s (command %s)%s",
                                "PAUSED" if state.paused else "resumed", state.by, state.command_id,
                                f": {state.reason}" if state.reason else "")
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _fold(self, state: BackgroundSwitch, record: Any) -> BackgroundSwitch:
        try:
            event, _ = decode(record.value, record.headers, CONTROL.event_types)
        except PoisonEvent:
            return state  # the fan-out agent dead-letters it; here it is simply not a switch
        if isinstance(event, (BackgroundPaused, BackgroundResumed)):
            return background_switched(state, event)
        return state
