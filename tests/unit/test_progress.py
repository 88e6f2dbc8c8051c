"""Batch progress: per-partition shards that replace each other, rate and ETA."""

from __future__ import annotations

from regen.projections.progress import BatchState, BatchTracker, batch_shard_reported, batch_view
from regen.projections.state import AssetState

VARIANTS = ("h400.jpg", "h400.webp")
PLACED: dict[str, int] = {}  # asset id -> the partition its events are in, as a test places it


def observe(tracker: BatchTracker, state: AssetState, partition: int) -> None:
    PLACED[state.asset_id] = partition
    tracker.observe(state.asset_id, state)


def asset(asset_id: str, batch: str = "b1", revision: int = 1, **statuses: str) -> AssetState:
    variants = {name.replace("_", "."): {"status": status, "job_id": "j", "revision": revision, "updated_at": "t",
                                         "error": "boom" if status == "failed" else None}
                for name, status in statuses.items()}
    return AssetState(asset_id=asset_id, uri="x.jpg", media_type="image", sha256="0" * 64, size_bytes=1,
                      imported_at="t", revision=revision, batch_id=batch, variants=variants)


def test_the_tracker_reports_only_changed_shards_with_counts_and_failures():
    tracker = BatchTracker(VARIANTS, PLACED.__getitem__)
    observe(tracker, asset("a"), 0)
    observe(tracker, asset("b", h400_jpg="completed", h400_webp="failed"), 1)
    shards = {s.partition: s for s in tracker.take_changed(at=10.0)}
    assert (shards[0].total, shards[0].pending) == (2, 2)
    assert (shards[1].completed, shards[1].failed) == (1, 1)
    assert shards[1].failures == ({"asset_id": "b", "variant": "h400.webp", "error": "boom"},)
    assert tracker.take_changed(at=11.0) == []
    observe(tracker, asset("b", h400_jpg="completed", h400_webp="failed"), 1)  # the same again
    assert tracker.take_changed(at=12.0) == []
    observe(tracker, asset("a", h400_jpg="running"), 0)  # still pending: no change to report
    assert tracker.take_changed(at=13.0) == []


def test_an_asset_without_a_batch_is_not_tracked():
    tracker = BatchTracker(VARIANTS, PLACED.__getitem__)
    observe(tracker, asset("a", batch=None), 0)
    assert tracker.take_changed(at=1.0) == []


def test_shards_replace_each_other_so_repeats_never_count_twice():
    tracker = BatchTracker(VARIANTS, PLACED.__getitem__)
    observe(tracker, asset("a", h400_jpg="completed"), 0)
    observe(tracker, asset("b"), 3)
    state = None
    for shard in tracker.take_changed(at=100.0):
        state = batch_shard_reported(state, shard)
        state = batch_shard_reported(state, shard)  # redelivered
    view = batch_view(state, now=100.0)
    assert (view["total"], view["completed"], view["pending"], view["done"]) == (4, 1, 3, False)
    older = tracker.shard("b1", 0, at=50.0)
    assert batch_shard_reported(state, older) is state, "a late, older shard changes nothing"


def progress_over_time(done_per_second: list[int], total: int = 10) -> BatchState:
    tracker = BatchTracker(("v.jpg",), PLACED.__getitem__)
    state: BatchState | None = None
    for second, done in enumerate(done_per_second):
        for i in range(total):
            observe(tracker, asset(f"a{i}", **({"v_jpg": "completed"} if i < done else {})), 0)
        for shard in tracker.take_changed(at=1000.0 + second):
            state = batch_shard_reported(state, shard)
    return state


def test_rate_and_eta_come_from_recent_progress():
    halfway = batch_view(progress_over_time([0, 1, 2, 3, 4, 5]), now=1005.0)
    assert halfway["pending"] == 5 and 0.9 <= halfway["rate_per_s"] <= 1.1
    assert 4.5 <= halfway["eta_s"] <= 5.5

    finished = batch_view(progress_over_time(list(range(11))), now=1010.0)
    assert finished["done"] and finished["eta_s"] == 0.0 and finished["percent"] == 100.0


def test_a_stalled_batch_has_no_rate_and_no_made_up_eta():
    stalled = batch_view(progress_over_time([0, 1, 2, 3]), now=1003.0 + 120)
    assert stalled["rate_per_s"] == 0.0 and stalled["eta_s"] is None


def test_activity_counts_events_per_second_and_keeps_the_latest_items():
    from regen.projections.activity import Activity

    activity = Activity()
    for t in (100.1, 100.5, 101.2, 103.9):
        activity.event_in(t)
    assert activity.rates(now=104.0, seconds=5) == [2, 1, 0, 1, 0]
    for i in range(20):
        activity.generated(f"thumbnail:a{i}", "h400.jpg", f"u{i}", 10, 10, "t")
    assert len(activity.recent_images) == 12 and activity.recent_images[0]["target"] == "thumbnail:a19"


def test_an_assets_partition_is_computed_as_the_producer_places_its_events():
    from aiokafka.partitioner import DefaultPartitioner

    from regen.streams.topics import partition_for

    for key in ("a1", "photo-42", "x" * 300, "ünïcode", ""):
        for partitions in (1, 4, 7):
            everything = list(range(partitions))
            assert partition_for(key, partitions) == DefaultPartitioner()(key.encode(), everything, everything)


def test_a_partition_that_moved_away_reports_nothing_not_an_empty_shard():
    """Its unreported change, reported as an empty shard newer than the new
    owner's report, would replace that report: a batch that never finishes."""
    tracker = BatchTracker(VARIANTS, PLACED.__getitem__)
    observe(tracker, asset("kept"), 0)
    observe(tracker, asset("moved"), 1)
    tracker.forget_partitions({0})
    assert [(s.partition, s.total) for s in tracker.take_changed(at=10.0)] == [(0, 2)]
