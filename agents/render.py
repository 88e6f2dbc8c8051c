"""Render agents: one per lane, each taking jobs in batches into the process pool.

Commit order for one batch, which is what makes a killed worker lose nothing:

1. take up to ``render_batch_size`` jobs (agents/lanes.py: the lane's own
   consumer, which commits nothing yet);
2. mark each running in the jobs table, under the job's own event so the
   changelog record lands in the job's partition;
3. render them all in the pool, at most one per render process at a time;
4. emit each ImageGenerated/ImageFailed as its render ends (or, for a
   retriable failure with attempts left, the next attempt to the retry topic)
   and wait for the broker's ack (the outcome is folded into the jobs table
   first, so a request arriving now is answered from it, not joined);
5. only then does the lane commit the batch's offsets (rule 9 of
   streams/checkpoint.py). A crash anywhere before 5 redelivers the whole batch;
   deterministic output paths make the second render write the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from regen.agents.context import WorkerContext
from regen.agents.deadletter import send_to_deadletter
from regen.agents.faults import HangIf, SwapAfterOpen
from regen.agents.generation import GenerationServices
from regen.agents.generation_lane import GenerationFollower
from regen.agents.handling import as_current_event, register_event_agent
from regen.agents.job_lanes import lane_topic
from regen.agents.lanes import LaneEvent, PartitionFollower, start_followers
from regen.agents.render_pool import TaskFailed, TaskTimedOut, WorkerDied
from regen.imaging.render import RenderOutcome
from regen.kinds import KINDS
from regen.kinds.base import Completion, GatherFailed
from regen.projections import folds
from regen.projections.planning import generated_event, stored_outcome
from regen.projections.state import JobState
from regen.schemas.events import Event, FailureReason, ImageFailed, ImageGenerated
from regen.schemas.jobs import RenderJob
from regen.streams.codec import decode, now_iso
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import (
    IMAGES_RESULTS,
    RENDER_BACKGROUND,
    RENDER_GENERATION,
    RENDER_INTERACTIVE,
    RENDER_RETRY,
    TopicSpec,
)

log = logging.getLogger(__name__)

# How a render process dies when its input exhausts it: the OOM killer's
# SIGKILL, or a decoder's SIGSEGV/SIGBUS/SIGABRT on a failed allocation.
KILLED_FOR_RESOURCES = frozenset({signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT})
# A batch running this much longer than the render timeout is reported.
SLOW_BATCH_GRACE_S = 30.0


def register_render(ctx: WorkerContext, bootstrap: str) -> list[PartitionFollower]:
    """Each lane read by a consumer of its own (agents/lanes.py); retries
    wait out their delay in an agent of their own. Jobs that call an image
    model first have a lane of their own with several jobs in flight
    (agents/generation_lane.py). Returns the interactive and background lanes."""
    lanes = [PartitionFollower(ctx, spec, bootstrap, render_batch, name=spec.suffix.rsplit(".", 1)[1],
                               batch_size=ctx.settings.render_batch_size, paced=spec is RENDER_BACKGROUND)
             for spec in (RENDER_INTERACTIVE, RENDER_BACKGROUND)]
    services = ctx.services = GenerationServices(ctx.settings, ctx.metrics)
    generation = GenerationFollower(ctx, RENDER_GENERATION, bootstrap, render_batch, name="generation",
                                    concurrency=ctx.settings.generation_concurrency, on_share=services.set_share)
    start_followers(ctx, [*lanes, generation])
    ctx.app.before_stopping.append(services.close)  # type: ignore[attr-defined]  # RegenApp's; after the lanes'
    register_event_agent(ctx, RENDER_RETRY, "render-retry", forward_when_due)
    return lanes


async def render_batch(ctx: WorkerContext, batch: list[LaneEvent]) -> None:
    accepted: list[tuple[Any, RenderJob]] = []
    retold: list[tuple[Any, Completion]] = []
    for event in batch:
        try:
            decoded, _ = decode(event.message.value, event.message.headers, (RenderJob,))
            assert isinstance(decoded, RenderJob)  # the one type the lanes accept
            job = decoded
            ctx.metrics.events_in.labels("RenderJob").inc()
            ctx.activity.event_in(time.time())
            with as_current_event(event):
                decision = _start(ctx, job)
            if decision == "render":
                accepted.append((event, job))
            elif isinstance(decision, (ImageGenerated, ImageFailed)):
                retold.append((event, decision))
        except Exception as e:  # noqa: BLE001 - the batch is acked whatever happens: record why
            if not isinstance(e, PoisonEvent):
                log.exception("starting a render job failed")
            await send_to_deadletter(ctx, event.message, e)
    for event, completion in retold:
        await _emit_or_deadletter(ctx, event, IMAGES_RESULTS, completion)
    # Each completion is emitted as soon as its render ends, so emitting one
    # overlaps rendering the others and no render process idles on the broker.
    stages: dict[str, str] = {job.job_id: "waiting for a render process" for _, job in accepted}
    watchdog = asyncio.create_task(_report_if_slow(ctx, stages))
    try:
        await asyncio.gather(*(_render_and_emit(ctx, event, job, stages) for event, job in accepted))
    finally:
        watchdog.cancel()


async def _report_if_slow(ctx: WorkerContext, stages: dict[str, str]) -> None:
    """A batch is bounded by the render timeout plus a few sends: if it
    takes far longer, say what each unfinished job is waiting for."""
    patience = ctx.settings.render_timeout + SLOW_BATCH_GRACE_S
    started = time.monotonic()
    while True:
        await asyncio.sleep(patience)
        left = {job_id: stage for job_id, stage in stages.items() if stage != "done"}
        log.error("render batch unfinished after %.0f s: %s; pool: %s", time.monotonic() - started,
                  "; ".join(f"{job_id}: {stage}" for job_id, stage in sorted(left.items())[:10]),
                  ctx.pool.describe())


async def _render_and_emit(ctx: WorkerContext, event: LaneEvent, job: RenderJob, stages: dict[str, str]) -> None:
    try:
        outcome = await _render_one(ctx, job, stages)
    except Exception as e:  # a bug, not a render error: keep it visible
        log.exception("render of %s raised", job.job_id)
        stages[job.job_id] = "dead-lettering"
        await send_to_deadletter(ctx, event.message, e)
        stages[job.job_id] = "done"
        event.finished()
        return
    with as_current_event(event):
        if isinstance(outcome, Retry):
            current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
            ctx.tables.jobs[job.job_id] = folds.job_retrying(current, outcome.job, outcome.code,
                                                             outcome.message, now_iso()).to_dict()
        else:
            outcome = _finish(ctx, job, outcome)
    _count(ctx, outcome)
    stages[job.job_id] = "sending its outcome"
    if isinstance(outcome, Retry):
        await _emit_or_deadletter(ctx, event, RENDER_RETRY, outcome.job)
    else:
        await _emit_or_deadletter(ctx, event, IMAGES_RESULTS, outcome)
    stages[job.job_id] = "done"
    event.finished()  # a long batch whose renders keep finishing is not stalled (projections/stalls.py rule 5)


async def _emit_or_deadletter(ctx: WorkerContext, event: Any, spec: TopicSpec, outcome: Event) -> None:
    """A send no retry can cure (send_durably raises it) dead-letters the
    job's message instead of crashing the lane."""
    try:
        await ctx.emit(spec, outcome)
    except KafkaError as e:
        await send_to_deadletter(ctx, event.message, e)


def _count(ctx: WorkerContext, outcome: Event | Retry) -> None:
    if isinstance(outcome, Retry):
        ctx.metrics.retries.inc()
    elif isinstance(outcome, ImageGenerated):
        ctx.metrics.renders.labels("cache_hit" if outcome.cache_hit else "generated").inc()
    elif isinstance(outcome, ImageFailed):
        ctx.metrics.renders.labels(f"failed_{outcome.reason}").inc()


def _finish(ctx: WorkerContext, job: RenderJob, completion: Completion) -> Completion:
    """Name every request that joined the job, and fold the outcome into the
    jobs table in the same step (no await in between): from here on a new
    request for the target is answered from the finished job instead of
    joining one whose completion has already been written."""
    current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
    joined = current.request_ids if current is not None else ()
    completion = replace(completion, request_ids=tuple(dict.fromkeys((*job.request_ids, *joined))))
    folded = folds.job_generated(current, completion) if isinstance(completion, ImageGenerated) \
        else folds.job_failed(current, completion)
    ctx.tables.jobs[job.job_id] = folded.to_dict()
    return completion


def _start(ctx: WorkerContext, job: RenderJob) -> str | Completion | None:
    """"render" to mark the job running and render it; None if it needs no
    render (superseded); or the completion a finished job already had, to
    emit again: its lane message came back after a crash or a rebalance, and
    its completion may never have reached the results topic."""
    at = now_iso()
    current = JobState.from_dict(ctx.tables.jobs.get(job.job_id))
    if current is not None and current.status == "cancelled":
        # An operator cancelled it (agents/control.py), which already said so
        # on the results topic: skipped like a superseded job, forced or not.
        log.info("job %s was cancelled: not rendered", job.job_id)
        return None
    if current is not None and current.status in ("completed", "failed") and not job.force:
        return stored_outcome(current, request_ids=current.request_ids, at=current.finished_at or at,
                              cache_hit=False)
    if _superseded(ctx, job):
        ctx.tables.jobs[job.job_id] = (current or folds.job_queued(None, job, at)).evolve(
            status="superseded", updated_at=at).to_dict()
        log.info("job %s superseded by a newer revision: not rendered", job.job_id)
        return None
    # The job's own record says it runs (the sweeper and /jobs read it); the
    # target's state is written again only when the outcome is known, which
    # is all its projections need: one changelog record per variant fewer.
    ctx.tables.jobs[job.job_id] = folds.job_started(current, job, at).to_dict()
    return "render"


def _superseded(ctx: WorkerContext, job: RenderJob) -> bool:
    """A job whose revision is older than the one wanted now is never rendered."""
    kind = KINDS[job.target.kind]
    return kind.superseded(kind.read(ctx.tables.of(kind.table).get(job.target.id)), job)


@dataclass(frozen=True)
class Retry:
    """A retriable failure with attempts left: the job goes to the retry topic."""

    job: RenderJob  # the next attempt, with its not_before time
    code: str
    message: str


async def _render_one(ctx: WorkerContext, job: RenderJob, stages: dict[str, str]) -> Completion | Retry:
    settings = ctx.settings
    kind = KINDS[job.target.kind]
    final_reason: FailureReason  # set by whichever retriable failure happens
    retry_after: float | None = None
    try:
        if kind.calls_out:
            stages[job.job_id] = "waiting for its generator"
            await kind.gather_input(job, settings, ctx.services)  # I/O on the loop, never in a render process
            stages[job.job_id] = "waiting for a render process"
        fn, task = kind.render_call(job, settings)
        if settings.fault_hang_pattern:
            fn = HangIf(settings.fault_hang_pattern, fn)
        if settings.fault_swap_to:
            fn = SwapAfterOpen(settings.fault_swap_to, fn)
        with ctx.metrics.render_seconds.labels(job.target.kind).time():
            outcome: RenderOutcome = await ctx.pool.run(fn, task, lane=job.lane,
                                                        on_start=lambda: stages.__setitem__(job.job_id, "rendering"))
        return generated_event(job, outcome, Path(ctx.settings.image_store), job.attempt, now_iso())
    except GatherFailed as e:
        if e.permanent:
            return _failed(job, "permanent", e.code, e.message, job.attempt)
        code, message, final_reason = e.code, e.message, "timeout" if e.timeout else "exhausted"
        retry_after = e.retry_after
    except TaskFailed as e:
        if e.permanent:
            return _failed(job, "permanent", e.code, e.message, job.attempt)  # no retry can help
        code, message, final_reason = e.code, e.message, "exhausted"
    except TaskTimedOut as e:
        code, message, final_reason = "timeout", str(e), "timeout"
    except WorkerDied as e:
        if e.signal_number in KILLED_FOR_RESOURCES and job.attempt >= 2:
            # Killed again on its retry: the input, not bad luck, is the
            # cause (an OOM kill, a decoder crashing on it). Never a third try.
            return _failed(job, "permanent", "resource_limit",
                           f"{e}: killed by signal {e.signal_number} on attempt {job.attempt} too; "
                           f"the source needs more than a render process may use", job.attempt)
        code, message, final_reason = "worker_died", str(e), "exhausted"
    if job.attempt >= settings.max_attempts:
        return _failed(job, final_reason, code, f"{message} (after {job.attempt} attempts)", job.attempt)
    # A service's Retry-After is honoured (agents/http_generator.py bounds it).
    delay = max(retry_delay(settings, job.attempt), retry_after or 0.0)
    log.info("job %s attempt %d failed (%s); retry in %.1f s", job.job_id, job.attempt, message, delay)
    return Retry(replace(job, attempt=job.attempt + 1, not_before=time.time() + delay, last_error=message),
                 code, message)


def retry_delay(settings, attempt: int) -> float:
    """Exponential backoff with +-20 % jitter, so jobs that failed together
    (a full disk, a share that went away) do not all come back at once."""
    base = min(settings.retry_max_delay, settings.retry_first_delay * settings.retry_factor ** (attempt - 1))
    return min(settings.retry_max_delay, base * random.uniform(0.8, 1.2))


async def forward_when_due(ctx: WorkerContext, job: RenderJob) -> None:
    """The retry agent: wait out the job's delay, then put it back in its lane.
    Waiting here holds up only the retry topic, never a render lane."""
    wait = (job.not_before or 0) - time.time()
    if wait > 0:
        await asyncio.sleep(min(wait, ctx.settings.retry_max_delay * 1.5))
    await ctx.emit(lane_topic(job), job)


def _failed(job: RenderJob, reason: FailureReason, code: str, message: str, attempt: int) -> ImageFailed:
    log.warning("job %s failed (%s, %s): %s", job.job_id, reason, code, message)
    return ImageFailed(target=job.target, variant=job.variant, revision=job.revision, job_id=job.job_id,
                       reason=reason, error_code=code, error=message, attempts=attempt, failed_at=now_iso())

