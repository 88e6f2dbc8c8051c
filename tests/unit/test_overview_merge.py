"""The group's overview merged from each member's own (projections.queries.merge_overviews)."""

from __future__ import annotations

from regen.projections.activity import RECENT
from regen.projections.queries import MAX_ROWS, MemberOverview, merge_overviews, sum_rates

NOW = 1_000.0


def batch(batch_id: str, updated_at: float, done: bool = False, completed: int = 1) -> dict:
    return {"batch_id": batch_id, "updated_at": updated_at, "done": done, "completed": completed}


def local(batches=(), videos=(), images=(), failures=(), rates=(0, 0, 0)) -> dict:
    return {"now": NOW, "batches": list(batches), "videos": list(videos), "recent_images": list(images),
            "recent_failures": list(failures), "rates": list(rates)}


def test_lists_are_merged_and_each_row_kept_once_the_newest():
    parts = [
        MemberOverview("http://w1:6066", (0, 2), local(
            batches=[batch("b1", 10.0), batch("b2", 30.0, done=True)],
            videos=[{"video_id": "v1", "pending": 1}]), is_self=True),
        MemberOverview("http://w2:6066", (1, 3), local(
            batches=[batch("b3", 20.0), batch("b1", 5.0, completed=0)],  # b1 seen before it moved: older
            videos=[{"video_id": "v2", "pending": 4}, {"video_id": "v1", "pending": 0}])),
    ]
    merged = merge_overviews(parts, NOW)
    assert [b["batch_id"] for b in merged["batches"]] == ["b3", "b1", "b2"]  # running first, newest first
    assert next(b for b in merged["batches"] if b["batch_id"] == "b1")["completed"] == 1
    assert merged["videos"] == [{"video_id": "v2", "pending": 4}, {"video_id": "v1", "pending": 1}]
    assert merged["now"] == NOW and merged["missing"] == []


def test_rates_are_summed_second_by_second_aligned_on_the_latest():
    assert sum_rates([[1, 2, 3], [10, 20, 30]]) == [11, 22, 33]
    assert sum_rates([[1, 2, 3], [5]]) == [1, 2, 8]
    assert sum_rates([]) == []
    parts = [MemberOverview("http://w1:6066", (0,), local(rates=[1, 1, 4])),
             MemberOverview("http://w2:6066", (1,), local(rates=[0, 2, 2]))]
    assert merge_overviews(parts, NOW)["rates"] == [1, 3, 6]


def test_lists_stay_bounded_and_the_newest_images_and_failures_come_first():
    images = [{"uri": f"u{i}", "at": f"2026-01-01T00:00:{i:02d}Z"} for i in range(20)]
    parts = [MemberOverview("http://w1:6066", (0,), local(
                 batches=[batch(f"a{i}", float(i)) for i in range(MAX_ROWS)], images=images[::2],
                 failures=[{"target": "t", "at": f"2026-01-01T00:00:{i:02d}Z"} for i in range(30)])),
             MemberOverview("http://w2:6066", (1,), local(
                 batches=[batch(f"b{i}", float(i)) for i in range(MAX_ROWS)], images=images[1::2]))]
    merged = merge_overviews(parts, NOW)
    assert len(merged["batches"]) == MAX_ROWS
    assert [i["uri"] for i in merged["recent_images"]] == [f"u{i}" for i in range(19, 19 - RECENT, -1)]
    assert len(merged["recent_failures"]) == RECENT * 2
    assert merged["recent_failures"][0]["at"].endswith(":29Z")


def test_members_say_who_owns_which_partitions_and_who_did_not_answer():
    parts = [MemberOverview("http://w2:6066", (1, 3), None, error="TimeoutError"),
             MemberOverview("http://w1:6066", (0, 2), local(rates=[0] * 5 + [10] * 10), is_self=True),
             MemberOverview("http://w3:6066", (), local())]
    merged = merge_overviews(parts, NOW)
    assert merged["members"] == [
        {"url": "http://w1:6066", "partitions": [0, 2], "answered": True, "self": True, "error": "",
         "events_per_s": 10.0},
        {"url": "http://w2:6066", "partitions": [1, 3], "answered": False, "self": False,
         "error": "TimeoutError", "events_per_s": None},
        {"url": "http://w3:6066", "partitions": [], "answered": True, "self": False, "error": "",
         "events_per_s": 0.0},
    ]
    assert merged["missing"] == ["http://w2:6066"]


def test_a_group_of_one_is_its_own_overview_with_one_member():
    mine = local(batches=[batch("b1", 1.0)], images=[{"uri": "u", "at": "x"}], rates=[1, 2])
    merged = merge_overviews([MemberOverview("http://w1:6066", (0, 1, 2, 3), mine, is_self=True)], NOW)
    assert {k: merged[k] for k in ("batches", "recent_images", "rates")} == \
        {k: mine[k] for k in ("batches", "recent_images", "rates")}
    assert [m["url"] for m in merged["members"]] == ["http://w1:6066"]
