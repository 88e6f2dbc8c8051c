"""Group folds: members announced from their targets, folded by group, the
status a person reads, and what a change tells the world."""

from __future__ import annotations

from regen.kinds import KINDS
from regen.projections import groups
from regen.projections.groups import GroupState
from regen.projections.state import AssetState
from regen.schemas.events import GroupDeclared, GroupFinished, GroupProgress, ImageFailed, ImageGenerated, Target
from regen.schemas.jobs import GroupMemberChanged
from regen.settings import Settings

SHA = "0f" * 32
AT = "2026-11-22T10:00:00Z"
LATER = "2026-11-22T10:05:00Z"
SETTINGS = Settings(pregenerate_variants=("h400.jpg",))
THUMBNAIL = KINDS["thumbnail"]


def change(target_id: str, status: str, revision: int = 1, at: str = AT, **extra) -> GroupMemberChanged:
    return GroupMemberChanged("case", Target("thumbnail", target_id), "h400.jpg", revision, status, at, **extra)


def fold(*changes: GroupMemberChanged, state: GroupState | None = None, max_members: int = 100) -> GroupState:
    for c in changes:
        state = groups.member_changed(state, c, max_members)
    assert state is not None
    return state


def test_status_moves_from_pending_through_generating_to_completed():
    state = fold(change("a", "pending"), change("b", "pending"))
    assert state.status == "pending" and state.counts() == {"total": 2, "completed": 0, "failed": 0, "pending": 2}
    state = fold(change("a", "completed", uri="x/a.jpg"), state=state)
    assert state.status == "generating" and state.finished_at is None
    state = fold(change("b", "completed", uri="x/b.jpg", at=LATER), state=state)
    assert state.status == "completed" and state.finished_at == LATER


def test_some_failed_is_partial_and_all_failed_is_failed():
    partial = fold(change("a", "completed", uri="x/a.jpg"), change("b", "failed", error="corrupt: truncated"))
    assert partial.status == "partial"
    answer = groups.group_answer(partial)
    assert answer["outputs"] == {"thumbnail:a/h400.jpg": "x/a.jpg"}
    assert answer["failures"] == [{"member": "thumbnail:b/h400.jpg", "target": "thumbnail:b", "variant": "h400.jpg",
                                   "error": "corrupt: truncated"}]
    assert fold(change("a", "failed", error="e"), change("b", "failed", error="e")).status == "failed"


def test_a_declared_total_keeps_the_group_open_until_every_member_finished():
    declared = groups.group_declared(None, GroupDeclared("case", AT, total=3))
    state = fold(change("a", "completed", uri="x/a.jpg"), change("b", "completed", uri="x/b.jpg"), state=declared)
    assert state.status == "generating" and state.counts()["pending"] == 1
    state = fold(change("c", "failed", error="e"), state=state)
    assert state.status == "partial" and state.finished_at == AT


def test_a_redelivered_pending_never_undoes_a_finish_and_an_older_revision_is_ignored():
    done = fold(change("a", "pending", revision=2), change("a", "completed", revision=2, uri="x/a2.jpg"))
    assert groups.member_changed(done, change("a", "pending", revision=2), 100) is done
    assert groups.member_changed(done, change("a", "failed", revision=1, error="old"), 100) is done
    reopened = groups.member_changed(done, change("a", "pending", revision=3, at=LATER), 100)
    assert reopened.status == "pending" and reopened.finished_at is None


def test_a_failed_member_rendered_later_counts_as_completed():
    state = fold(change("a", "failed", error="e"), change("a", "completed", uri="x/a.jpg"))
    assert state.status == "completed" and state.counts()["failed"] == 0


def test_members_past_the_maximum_are_counted_not_kept():
    state = fold(change("a", "pending"), change("b", "pending"), change("c", "pending"), max_members=2)
    assert len(state.members) == 2 and state.refused == 1


def test_announcements_tell_progress_on_every_count_change_and_finished_once():
    first = fold(change("a", "pending"), change("b", "pending"))
    one = fold(change("a", "completed", uri="x/a.jpg"), state=first)
    told = groups.announcements(first, one, AT)
    assert [type(t) for t in told] == [GroupProgress] and told[0].completed == 1 and told[0].status == "generating"
    both = fold(change("b", "failed", error="corrupt: bad"), state=one)
    told = groups.announcements(one, both, LATER)
    assert [type(t) for t in told] == [GroupProgress, GroupFinished]
    finished = told[1]
    assert isinstance(finished, GroupFinished) and finished.status == "partial"
    assert finished.outputs == {"thumbnail:a/h400.jpg": "x/a.jpg"}
    assert [f["member"] for f in finished.failures] == ["thumbnail:b/h400.jpg"]
    assert groups.announcements(both, both, LATER) == []


def _asset(group_id: str | None, revision: int = 1) -> AssetState:
    return AssetState(asset_id="a", uri="a.jpg", media_type="image", sha256=SHA, size_bytes=1, imported_at=AT,
                      revision=revision, group_id=group_id)


def test_a_target_of_a_group_announces_each_standing_variant_pending():
    settings = Settings(pregenerate_variants=("h400.jpg", "h400.webp"))
    changes = groups.member_changes(THUMBNAIL, "a", None, _asset("case"), settings, AT)
    assert [(c.group_id, c.variant, c.status, c.revision) for c in changes] == \
        [("case", "h400.jpg", "pending", 1), ("case", "h400.webp", "pending", 1)]
    assert groups.member_changes(THUMBNAIL, "a", None, _asset(None), settings, AT) == []


def test_only_standing_variants_of_a_member_finish_it():
    state = _asset("case")
    done = ImageGenerated(Target("thumbnail", "a"), "h400.jpg", 1, "j", "x/a.jpg", SHA, 1, 1, 1, 1.0, 1, False, AT)
    told = groups.member_finished(THUMBNAIL, state, done, SETTINGS)
    assert told is not None and told.status == "completed" and told.uri == "x/a.jpg"
    other = ImageGenerated(Target("thumbnail", "a"), "h200.jpg", 1, "j", "x/a2.jpg", SHA, 1, 1, 1, 1.0, 1, False, AT)
    assert groups.member_finished(THUMBNAIL, state, other, SETTINGS) is None
    failed = ImageFailed(Target("thumbnail", "a"), "h400.jpg", 1, "j", "permanent", "corrupt", "truncated", 1, AT)
    told = groups.member_finished(THUMBNAIL, state, failed, SETTINGS)
    assert told is not None and told.status == "failed" and told.error == "corrupt: truncated"


def test_stuck_groups_are_unfinished_ones_without_a_change_for_too_long():
    from datetime import datetime

    now = datetime.fromisoformat("2026-11-22T10:20:00+00:00").timestamp()
    waiting = fold(change("a", "pending"))
    done = fold(change("a", "completed", uri="x/a.jpg"))
    stuck = groups.stuck_groups([waiting, done], now, 600)
    assert [(g.group_id, round(s)) for g, s in stuck] == [("case", 1200)]
    assert groups.stuck_groups([waiting], now, 1500) == []


def test_a_segmented_image_of_a_group_announces_its_overlay_variants():
    from regen.projections.segmentations import segmentation_changed
    from regen.schemas.events import Polygon, SegmentationChanged

    overlay = KINDS["overlay"]
    settings = Settings(overlay_variants=("h400.webp",))
    event = SegmentationChanged("img-1", 2, "img-1.jpg", (Polygon("cell", ((0.0, 0.0), (9.0, 0.0), (4.0, 7.0))),),
                                group_id="slide-7")
    state = segmentation_changed(None, event, AT)
    changes = groups.member_changes(overlay, "img-1", None, state, settings, AT)
    assert [(c.group_id, str(c.target), c.variant, c.revision) for c in changes] == \
        [("slide-7", "overlay:img-1", "h400.webp", 2)]
    # The same revision folded again by an idle kind announces nothing new.
    assert groups.member_changes(overlay, "img-1", state, state, settings, AT) == []
