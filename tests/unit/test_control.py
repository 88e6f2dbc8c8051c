"""Operator commands, the pure part: which rows each command touches, the
cancel fold, the background switch, redrive selection, building commands."""

from __future__ import annotations

import orjson
import pytest

from regen.agents.deadletter_fit import CUT_HEADER as FIT_CUT_HEADER
from regen.projections import control, folds
from regen.projections.control import (
    BackgroundSwitch,
    DeadLetter,
    TargetFacts,
    background_switched,
    build_command,
    cancel_matches,
    cancelled,
    partition_quota,
    redrive_destination,
    redriven_headers,
    retry_marker,
    retry_matches,
    select_retries,
)
from regen.projections.state import JobState
from regen.schemas.events import (
    BACKGROUND_KEY,
    BackgroundPaused,
    BackgroundResumed,
    CancelRequested,
    DeadLettersRedriven,
    RetryFailed,
)
from regen.schemas.exceptions import SchemaError
from regen.streams.codec import decode, encode
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import CONTROL, CONTROL_PARTITIONS, partition_for

AT = "2026-11-22T10:00:00.000Z"


def job(job_id: str = "thumbnail:a1:h400.jpg:r1", status: str = "failed", revision: int = 1,
        finished_at: str | None = AT, request_ids: tuple[str, ...] = (), kind: str = "thumbnail") -> JobState:
    target = job_id.split(":")[1]
    return JobState(job_id=job_id, target_kind=kind, target_id=target, variant="h400.jpg", revision=revision,
                    lane="background", status=status, created_at=AT, updated_at=AT, attempts=1,
                    finished_at=finished_at, request_ids=request_ids)


def retry(**fields) -> RetryFailed:
    return RetryFailed(command_id=fields.pop("command_id", "c1"), requested_at=AT, requested_by="ops", **fields)


FACTS = TargetFacts(revision=1, batch="b1", video=None, group="g1")


# --- retry ---------------------------------------------------------------------------

def test_a_failed_job_of_the_current_revision_matches_with_no_filters():
    assert retry_matches(job(), FACTS, retry())


@pytest.mark.parametrize("status", ["pending", "running", "retrying", "completed", "superseded", "cancelled"])
def test_only_failed_jobs_are_retried(status):
    assert not retry_matches(job(status=status), FACTS, retry())


def test_a_failure_of_an_older_revision_is_not_retried():
    assert not retry_matches(job(revision=1), TargetFacts(revision=2, batch="b1"), retry())
    assert not retry_matches(job(), None, retry())  # the target is unknown here


@pytest.mark.parametrize("filters, matches", [
    ({"batch_id": "b1"}, True), ({"batch_id": "b2"}, False),
    ({"group_id": "g1"}, True), ({"group_id": "g2"}, False),
    ({"video_id": "v1"}, False),  # a thumbnail has no video
    ({"kind": "thumbnail"}, True), ({"kind": "composite"}, False),
    ({"since": "2026-11-22T09:59:59Z"}, True), ({"since": AT}, True), ({"since": "2026-11-22T10:00:01Z"}, False),
    ({"batch_id": "b1", "group_id": "g2"}, False),  # every filter must hold
])
def test_filters_all_must_hold(filters, matches):
    assert retry_matches(job(), FACTS, retry(**filters)) is matches


def test_since_compares_instants_not_text():
    # 11:00+01:00 is 10:00Z: the same instant written differently.
    assert retry_matches(job(finished_at="2026-11-22T11:00:00+01:00"), FACTS, retry(since=AT))


@pytest.mark.parametrize("limit, partitions", [(1, 4), (5, 4), (8, 4), (3, 12), (1000, 7)])
def test_partition_quotas_add_up_to_the_limit(limit, partitions):
    assert sum(partition_quota(limit, p, partitions) for p in range(partitions)) == limit
    assert partition_quota(None, 0, partitions) is None


def test_selection_takes_oldest_failures_first_up_to_the_quota():
    jobs = [job(f"thumbnail:a{i}:h400.jpg:r1", finished_at=f"2026-11-22T10:00:0{9 - i}Z") for i in range(5)]
    chosen = select_retries(jobs, lambda j: FACTS, retry(limit=8), partition=0, partitions=4)  # quota 2
    assert [j.target_id for j in chosen] == ["a4", "a3"]


def test_a_redelivered_retry_changes_nothing():
    """Jobs carrying the command's marker were retried already: they are not
    retried again, and they count against the quota."""
    marker = retry_marker("c1")
    retried = job("thumbnail:a1:h400.jpg:r1", status="failed", request_ids=(marker,))  # failed again since
    fresh = job("thumbnail:a2:h400.jpg:r1")
    assert select_retries([retried, fresh], lambda j: FACTS, retry(), 0, 1) == [fresh]
    assert select_retries([retried, fresh], lambda j: FACTS, retry(limit=1), 0, 1) == []
    # Another command retries it again.
    assert len(select_retries([retried, fresh], lambda j: FACTS, retry(command_id="c2"), 0, 1)) == 2


def test_the_retry_marker_is_a_valid_request_id():
    from regen.schemas.events import ImageRequested, Target

    marker = retry_marker("x" * 100)
    ImageRequested.from_dict(ImageRequested(Target("thumbnail", "a1"), "h400.jpg", marker).to_dict())


# --- cancel --------------------------------------------------------------------------

def cancel(scope: str = "batch", id: str = "b1", reason: str | None = "wrong folder") -> CancelRequested:
    return CancelRequested(command_id="k1", requested_at=AT, requested_by="ops", scope=scope, id=id, reason=reason)


@pytest.mark.parametrize("status, matches", [("pending", True), ("retrying", True), ("running", False),
                                             ("completed", False), ("failed", False), ("cancelled", False)])
def test_only_jobs_not_yet_rendering_are_cancelled(status, matches):
    assert cancel_matches(job(status=status), FACTS, cancel()) is matches


def test_cancel_scopes():
    pending = job(status="pending")
    assert cancel_matches(pending, FACTS, cancel("group", "g1"))
    assert not cancel_matches(pending, FACTS, cancel("group", "b1"))
    assert cancel_matches(pending, None, cancel("job", pending.job_id))
    assert not cancel_matches(pending, FACTS, cancel("job", "thumbnail:a2:h400.jpg:r1"))


def test_a_cancelled_job_folds_to_cancelled_and_stays_done():
    pending = job(status="pending", finished_at=None, request_ids=("req-1",))
    outcome = cancelled(pending, cancel(), AT)
    assert (outcome.reason, outcome.error_code, outcome.request_ids) == ("cancelled", "cancelled", ("req-1",))
    assert "ops" in outcome.error and "k1" in outcome.error and "wrong folder" in outcome.error
    folded = folds.job_failed(pending, outcome)
    assert folded.status == "cancelled" and folded.terminal and folded.reason == "cancelled"
    assert folds.job_failed(folded, outcome) == folded  # the same cancel again: nothing changes
    # A later forced request reopens it, like any finished job.
    from regen.schemas.jobs import RenderJob

    forced = RenderJob(pending.job_id, outcome.target, "h400.jpg", 1, "interactive", "x.jpg", "", "image", AT,
                       force=True)
    assert folds.job_queued(folded, forced, AT).status == "pending"


def test_a_cancel_counts_as_failed_in_the_targets_variant():
    """Batch and group progress count a cancelled job as done (among the failed, with its reason)."""
    from regen.projections.state import AssetState, VariantState
    from regen.projections.variant_folds import variant_failed

    asset = AssetState("a1", "x.jpg", "image", "ab" * 32, 1, AT, batch_id="b1", variants={
        "h400.jpg": VariantState("pending", "thumbnail:a1:h400.jpg:r1", 1, AT).to_dict()})
    after = variant_failed(asset, cancelled(job(status="pending"), cancel(), AT))
    entry = after.variant("h400.jpg")
    assert entry.status == "failed" and entry.error.startswith("cancelled: cancelled by ops")


# --- pause and resume ----------------------------------------------------------------

def paused(command_id: str, at: str = AT) -> BackgroundPaused:
    return BackgroundPaused(command_id=command_id, requested_at=at, requested_by="ops", lane="background",
                            reason="maintenance")


def resumed(command_id: str) -> BackgroundResumed:
    return BackgroundResumed(command_id=command_id, requested_at=AT, requested_by="ops2", lane="background")


def test_the_latest_switch_wins():
    state = BackgroundSwitch()
    state = background_switched(state, paused("p1"))
    assert state.paused and (state.by, state.reason, state.command_id) == ("ops", "maintenance", "p1")
    state = background_switched(state, resumed("r1"))
    assert not state.paused and state.by == "ops2"
    assert background_switched(state, paused("p2")).paused


def test_a_second_pause_keeps_the_first_ones_since():
    state = background_switched(BackgroundSwitch(), paused("p1"))
    assert background_switched(state, paused("p2", "2026-11-22T11:00:00Z")) == state


def test_pause_and_resume_share_one_key_and_so_one_partition():
    assert paused("p").key == resumed("r").key == BACKGROUND_KEY
    partitions = {partition_for(paused("p").key, 12), partition_for(resumed("r").key, 12)}
    assert partitions == {partition_for("background", 12)}


# --- redrive -------------------------------------------------------------------------

REDRIVABLE = frozenset({"regen.images.requested", "regen.assets.imported"})


def letter(offset: int = 3, topic: str = "regen.images.requested", ce_type: str = "dev.regen.ImageRequested.v1",
           at_ms: int = 1_763_805_600_000, extra: tuple = ()) -> DeadLetter:
    headers = (("ce_id", b"e1"), ("ce_type", ce_type.encode()), ("kafka_dlt-original-topic", topic.encode()),
               ("kafka_dlt-exception-message", b"unknown variant"), *extra)
    return DeadLetter(offset, at_ms, b"a1", b"{}", headers)


def redrive(up_to=None, **fields) -> DeadLettersRedriven:
    return DeadLettersRedriven(command_id="r1", requested_at=AT, requested_by="ops", up_to=up_to or {"0": 10},
                               **fields)


def test_a_letter_below_the_end_offset_goes_back_to_its_topic():
    assert redrive_destination(letter(), redrive(), 0, REDRIVABLE) == "regen.images.requested"


def test_letters_newer_than_the_command_or_of_other_partitions_stay():
    assert redrive_destination(letter(offset=10), redrive(), 0, REDRIVABLE) is None
    assert redrive_destination(letter(), redrive(), 1, REDRIVABLE) is None  # the command names partition 0 only


def test_type_and_since_filters():
    assert redrive_destination(letter(), redrive(event_type="dev.regen.AssetImported.v1"), 0, REDRIVABLE) is None
    assert redrive_destination(letter(), redrive(event_type="dev.regen.ImageRequested.v1"), 0, REDRIVABLE)
    # 1_763_805_600_000 ms is 2025-11-22T10:00:00Z
    assert redrive_destination(letter(), redrive(since="2025-11-22T10:00:01Z"), 0, REDRIVABLE) is None
    assert redrive_destination(letter(), redrive(since="2025-11-22T10:00:00Z"), 0, REDRIVABLE)


def test_cut_letters_and_foreign_topics_are_never_redriven():
    assert control.CUT_HEADER == FIT_CUT_HEADER
    assert redrive_destination(letter(extra=((FIT_CUT_HEADER, b"value"),)), redrive(), 0, REDRIVABLE) is None
    assert redrive_destination(letter(topic="__consumer_offsets"), redrive(), 0, REDRIVABLE) is None


def test_a_redriven_record_keeps_its_event_and_names_the_command():
    headers = redriven_headers(letter(extra=((control.REDRIVE_HEADER, b"older"),)), "r1")
    assert ("ce_id", b"e1") in headers and (control.REDRIVE_HEADER, b"r1") in headers
    assert not [k for k, _ in headers if k.startswith("kafka_dlt-")]
    assert [k for k, _ in headers].count(control.REDRIVE_HEADER) == 1


@pytest.mark.parametrize("up_to", [{"x": 1}, {"-1": 1}, {"123456": 1}])
def test_a_forged_redrive_is_poison(up_to):
    envelope = encode(redrive(), "t")
    body = envelope.value.replace(b'{"0":10}', orjson.dumps(up_to))
    with pytest.raises(PoisonEvent, match="up_to"):  # by its JSON Schema
        decode(body, envelope.headers, CONTROL.event_types)
    with pytest.raises(PoisonEvent, match="not a partition number"):  # by the record's own rule too
        decode(body, envelope.headers, CONTROL.event_types, validate=False)


# --- building commands ---------------------------------------------------------------

def test_build_command_fills_in_what_the_publisher_sets():
    command = build_command("RetryFailed", {"batch_id": "b1"}, command_id="c9", requested_by="ops", at=AT)
    assert isinstance(command, RetryFailed) and (command.command_id, command.requested_at) == ("c9", AT)
    chosen = build_command("RetryFailed", {"command_id": "mine", "requested_by": "ann"}, command_id="c9",
                           requested_by="ops", at=AT)
    assert (chosen.command_id, chosen.requested_by) == ("mine", "ann")
    redriven = build_command("DeadLettersRedriven", {}, command_id="c9", requested_by="ops", at=AT,
                             up_to={0: 4, 1: 0})
    assert redriven.up_to == {"0": 4, "1": 0}


@pytest.mark.parametrize("event_type, body, problem", [
    ("RetryFailed", {"batch": "b1"}, "Additional properties"),
    ("RetryFailed", {"kind": "photo"}, "not a kind of image"),
    ("RetryFailed", {"limit": 0}, "limit"),
    ("RetryFailed", {"requested_at": AT}, "set by regen"),
    ("CancelRequested", {"scope": "video", "id": "v1"}, "scope"),
    ("CancelRequested", {"scope": "batch"}, "'id' is a required property"),
    ("DeadLettersRedriven", {"up_to": {"0": 1}}, "set by regen"),
    ("BackgroundPaused", [], "JSON object"),
])
def test_build_command_refuses_what_is_not_a_command(event_type, body, problem):
    with pytest.raises(SchemaError, match=problem):
        build_command(event_type, body, command_id="c9", requested_by="ops", at=AT)


def test_control_partitions_carries_only_commands_that_touch_rows():
    assert set(CONTROL_PARTITIONS.event_types) == {RetryFailed, CancelRequested, DeadLettersRedriven}
    assert set(CONTROL_PARTITIONS.event_types) < set(CONTROL.event_types)
