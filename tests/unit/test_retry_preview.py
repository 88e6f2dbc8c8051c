"""`regen retry --failed --dry-run`: the workers' retry rules, on read-model rows."""

from __future__ import annotations

from regen.projections.retry_preview import select_for_retry
from regen.schemas.events import RetryFailed


def job(target: str, revision: int = 1, finished_at: str | None = "2026-11-20T10:00:00Z", kind: str = "thumbnail",
        variant: str = "h400.jpg") -> dict:
    return {"job_id": f"{kind}:{target}:{variant}:r{revision}", "kind": kind, "target_id": target,
            "variant": variant, "revision": revision, "finished_at": finished_at}


def command(**fields) -> RetryFailed:
    return RetryFailed(command_id="c1", requested_at="2026-11-22T00:00:00Z", requested_by="op", **fields)


def test_only_failures_of_the_targets_current_revision_are_picked():
    jobs = [job("a", 1), job("b", 1), job("b", 2)]
    picked = select_for_retry(jobs, {("thumbnail", "a"): 1, ("thumbnail", "b"): 2}, command())
    assert [j["job_id"] for j in picked] == ["thumbnail:a:h400.jpg:r1", "thumbnail:b:h400.jpg:r2"]


def test_a_target_the_read_model_does_not_know_is_not_picked():
    assert select_for_retry([job("ghost")], {}, command()) == []


def test_since_keeps_failures_at_or_after_it_and_drops_those_without_a_time():
    jobs = [job("old", finished_at="2026-11-19T23:59:59Z"), job("edge", finished_at="2026-11-20T00:00:00+00:00"),
            job("new", finished_at="2026-11-21T08:00:00Z"), job("unknown", finished_at=None)]
    revisions = {("thumbnail", t): 1 for t in ("old", "edge", "new", "unknown")}
    picked = select_for_retry(jobs, revisions, command(since="2026-11-20T00:00:00Z"))
    assert [j["target_id"] for j in picked] == ["edge", "new"]


def test_oldest_failure_first_and_at_most_limit():
    jobs = [job("c", finished_at="2026-11-20T12:00:00Z"), job("a", finished_at="2026-11-20T09:00:00Z"),
            job("b", finished_at="2026-11-20T10:00:00+01:00")]  # 09:00 UTC, later id than "a"
    revisions = {("thumbnail", t): 1 for t in "abc"}
    assert [j["target_id"] for j in select_for_retry(jobs, revisions, command())] == ["a", "b", "c"]
    assert [j["target_id"] for j in select_for_retry(jobs, revisions, command(limit=2))] == ["a", "b"]
