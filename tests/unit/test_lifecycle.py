"""The store's lifecycle, pure parts and the disk: the reference fold, the
grace decision, what a change of a target's state tells, deleting confined
to the store, walking it per kind, and what `regen gc` would remove."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from regen.agents.lifecycle import Lifecycle, collect, fold_reference
from regen.imaging.store_files import StoreFileRefused
from regen.imaging.store_walk import StoreFile, remove_store_file, usage, walk_store
from regen.kinds import KINDS
from regen.projections import output_refs
from regen.projections.generations import generation_requested
from regen.projections.output_refs import OutputRow, collectable, referenced, released
from regen.projections.state import AssetState
from regen.projections.store_gc import parse_duration, plan_collection, referenced_uris, waiting_for_timer
from regen.schemas.events import AssetImported, BoundaryChanged, GenerationRequested, ImageGenerated, Target
from regen.schemas.outputs import OutputCollectDue, OutputReferenced, OutputReleased
from regen.settings import Settings

SHA_A, SHA_B = "a" * 64, "b" * 64
AT = "2026-11-21T10:00:00.000Z"
URI = "thumbnails/aa/aaaa/h400.jpg"
FOLDERS = output_refs.kind_folders()


def ref(holder: str, at: float = 100.0, uri: str = URI) -> OutputReferenced:
    return OutputReferenced(uri, holder, at)


def rel(holder: str, at: float = 200.0, uri: str = URI) -> OutputReleased:
    return OutputReleased(uri, holder, at)


def fold(*events, row: OutputRow | None = None) -> OutputRow | None:
    for event in events:
        row = referenced(row, event) if isinstance(event, OutputReferenced) else released(row, event)
    return row


# --- the reference fold ------------------------------------------------------------

def test_holders_are_a_set_so_duplicates_and_replays_change_nothing():
    once = fold(ref("thumbnail:a1/h400.jpg"), ref("thumbnail:a2/h400.jpg"))
    twice = fold(ref("thumbnail:a1/h400.jpg"), ref("thumbnail:a1/h400.jpg"), ref("thumbnail:a2/h400.jpg"),
                 ref("thumbnail:a2/h400.jpg"))
    assert once == twice and set(once.holders) == {"thumbnail:a1/h400.jpg", "thumbnail:a2/h400.jpg"}
    # The whole stream folded again over its own result: the same row.
    assert fold(ref("thumbnail:a1/h400.jpg"), ref("thumbnail:a2/h400.jpg"), row=once) == once


def test_a_shared_file_stays_held_until_its_last_holder_lets_go():
    row = fold(ref("thumbnail:a1/h400.jpg"), ref("thumbnail:a2/h400.jpg"), rel("thumbnail:a1/h400.jpg", 200.0))
    assert row.held and row.released_at is None
    assert not collectable(row, now=10_000.0, grace=1.0)
    # A release said twice is still one release.
    again = fold(rel("thumbnail:a1/h400.jpg", 300.0), row=row)
    assert again == row
    last = fold(rel("thumbnail:a2/h400.jpg", 400.0), row=row)
    assert not last.held and last.released_at == 400.0


def test_held_again_after_a_release_is_not_collectable():
    row = fold(ref("composite:n1/full.png"), rel("composite:n1/full.png", 200.0), ref("composite:n2/full.png", 300.0))
    assert row.held and row.released_at is None


def test_a_release_of_a_uri_nobody_recorded_creates_no_row():
    # A file referenced before references were kept may have other holders
    # nobody told: only `regen gc`, which reads the projections, may take it.
    assert released(None, rel("thumbnail:a1/h400.jpg")) is None


def test_a_flood_of_holders_never_makes_a_file_collectable():
    row = OutputRow(URI, {f"h{i}": 1.0 for i in range(output_refs.MAX_HOLDERS)})
    full = referenced(row, ref("one-more"))
    assert full.overflowed and "one-more" not in full.holders
    emptied = full
    for holder in list(full.holders):
        emptied = released(emptied, rel(holder))
    assert not collectable(emptied, now=1e12, grace=1.0)


def test_the_grace_decision():
    row = fold(ref("thumbnail:a1/h400.jpg", 100.0), rel("thumbnail:a1/h400.jpg", 200.0))
    assert not collectable(row, now=200.0 + 59.9, grace=60.0)
    assert collectable(row, now=200.0 + 60.0, grace=60.0)
    assert output_refs.untouched_for(mtime=100.0, now=160.0, grace=60.0)
    assert not output_refs.untouched_for(mtime=100.0, now=159.0, grace=60.0)


def test_a_row_round_trips_and_a_malformed_one_is_none():
    row = fold(ref("a"), ref("b"), rel("a"))
    assert OutputRow.from_dict(row.to_dict()) == row
    for bad in (None, [], {"uri": 3}, {"uri": "x", "holders": []}, {"uri": "x", "holders": {"a": "soon"}},
                {"uri": "x", "holders": {}, "released_at": "yesterday"}):
        assert OutputRow.from_dict(bad) is None


# --- what a change of a target's state tells -------------------------------------------

def generated(target: Target, variant: str, revision: int, uri: str) -> ImageGenerated:
    return ImageGenerated(target, variant, revision, f"{target.kind}:{target.id}:{variant}:r{revision}", uri,
                          SHA_A, 10, 10, 99, 1.0, 1, False, AT)


def test_a_new_composite_of_a_new_span_releases_the_old_one():
    settings = Settings()
    kind = KINDS["composite"]
    variant = settings.composite_variant
    state = kind.fold_source(None, BoundaryChanged("n1", "v1", 0, 20, 1, "clip.mp4"), AT)
    first = kind.completed(state, generated(Target("composite", "n1"), variant, 1, "composites/aa/aaaa/x"))
    edited = kind.fold_source(first, BoundaryChanged("n1", "v1", 5, 20, 2, "clip.mp4"), AT)
    assert output_refs.reference_changes(kind, "n1", first, edited, settings, 1.0) == [], \
        "the old composite is kept until the new span's is rendered"
    second = kind.completed(edited, generated(Target("composite", "n1"), variant, 2, "composites/bb/bbbb/x"))
    holder = f"composite:n1/{variant}"
    assert output_refs.reference_changes(kind, "n1", edited, second, settings, 1.0) == [
        OutputReferenced("composites/bb/bbbb/x", holder, 1.0), OutputReleased("composites/aa/aaaa/x", holder, 1.0)]


def test_an_asset_imported_with_new_content_releases_its_thumbnails():
    settings = Settings()
    kind = KINDS["thumbnail"]
    state = kind.fold_source(None, AssetImported("a1", "x.jpg", "image", SHA_A, 10, AT), AT)
    done = kind.completed(state, generated(Target("thumbnail", "a1"), "h400.jpg", 1, URI))
    assert output_refs.reference_changes(kind, "a1", state, done, settings, 1.0) == [
        OutputReferenced(URI, "thumbnail:a1/h400.jpg", 1.0)]
    reimported = kind.fold_source(done, AssetImported("a1", "x.jpg", "image", SHA_B, 10, AT), AT)
    assert output_refs.reference_changes(kind, "a1", done, reimported, settings, 1.0) == [
        OutputReleased(URI, "thumbnail:a1/h400.jpg", 1.0)]
    # Unchanged: nothing to tell.
    assert output_refs.reference_changes(kind, "a1", done, done, settings, 1.0) == []


def test_a_new_prompt_releases_the_old_answer():
    settings = Settings()
    kind = KINDS["generated"]
    first = generation_requested(None, GenerationRequested("g1", 1, "local", "a kite", {}), AT)
    second = generation_requested(first, GenerationRequested("g1", 2, "local", "a red kite", {}), AT)
    changes = output_refs.reference_changes(kind, "g1", first, second, settings, 1.0)
    assert [type(c).__name__ for c in changes] == ["OutputReferenced", "OutputReleased"]
    assert all(c.holder == "generated:g1/answer" and c.uri.startswith("generated/answers/") for c in changes)
    assert changes[0].uri != changes[1].uri


# --- deleting, confined to the store -------------------------------------------------------

def put(store: Path, uri: str, data: bytes = b"x" * 10, age_s: float = 0.0) -> Path:
    path = store / uri
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_removing_a_file_takes_the_folders_it_empties_but_not_the_kinds_folder(tmp_path: Path):
    store = tmp_path / "store"
    put(store, "thumbnails/aa/aaaa/h400.jpg")
    put(store, "thumbnails/aa/abab/h400.jpg")
    assert remove_store_file(store, "thumbnails/aa/aaaa/h400.jpg") == 10
    assert not (store / "thumbnails/aa/aaaa").exists() and (store / "thumbnails/aa/abab/h400.jpg").exists()
    assert remove_store_file(store, "thumbnails/aa/abab/h400.jpg") == 10
    assert (store / "thumbnails").is_dir() and not (store / "thumbnails/aa").exists()
    assert remove_store_file(store, "thumbnails/aa/abab/h400.jpg") is None  # gone already


@pytest.mark.parametrize("uri", ["../outside.txt", "/etc/passwd", "thumbnails/../../outside.txt", "a\x00b", ""])
def test_a_uri_that_could_leave_the_store_is_refused(tmp_path: Path, uri: str):
    store = tmp_path / "store"
    store.mkdir()
    outside = put(tmp_path, "outside.txt")
    with pytest.raises(StoreFileRefused):
        remove_store_file(store, uri)
    assert outside.exists()


def test_no_symlink_leads_a_deletion_out_of_the_store(tmp_path: Path):
    store = tmp_path / "store"
    elsewhere = tmp_path / "elsewhere"
    victim = put(elsewhere, "aa/victim.jpg")
    (store / "thumbnails").mkdir(parents=True)
    (store / "thumbnails/aa").symlink_to(elsewhere / "aa")  # a folder link
    (store / "thumbnails/link.jpg").symlink_to(victim)  # a file link
    with pytest.raises(StoreFileRefused):
        remove_store_file(store, "thumbnails/aa/victim.jpg")
    with pytest.raises(StoreFileRefused):
        remove_store_file(store, "thumbnails/link.jpg")
    (store / "thumbnails/folder").mkdir()
    with pytest.raises(StoreFileRefused):
        remove_store_file(store, "thumbnails/folder")
    assert victim.exists() and (store / "thumbnails/link.jpg").is_symlink() and (store / "thumbnails/folder").is_dir()


# --- walking the store per kind ----------------------------------------------------------------

def test_usage_counts_files_and_bytes_per_kind_and_follows_no_symlink(tmp_path: Path):
    store = tmp_path / "store"
    put(store, "thumbnails/aa/aaaa/h400.jpg", b"1" * 100)
    put(store, "thumbnails/bb/bbbb/h400.jpg", b"1" * 50)
    put(store, "composites/cc/cccc/full.png", b"2" * 7)
    put(store, "generated/answers/dd/dddd", b"3" * 3)
    put(store, "generated/ee/eeee/h400.jpg", b"3" * 4)
    put(store, "stray.txt", b"4")
    big = put(tmp_path, "big/elsewhere.bin", b"5" * 1000)
    (store / "overlays").mkdir()
    (store / "overlays/link").symlink_to(big.parent)
    found = usage(store, FOLDERS)
    assert found.files == {"thumbnail": 2, "composite": 1, "generated": 2, "overlay": 0, "other": 1}
    assert found.bytes == {"thumbnail": 150, "composite": 7, "generated": 7, "overlay": 0, "other": 1}
    assert {f.uri for f in walk_store(store)} >= {"generated/answers/dd/dddd", "stray.txt"}


def test_gc_plan_keeps_referenced_young_and_foreign_files():
    now = 10_000.0
    files = [StoreFile("thumbnails/aa/a/h400.jpg", 5, 0.0), StoreFile("thumbnails/bb/b/h400.jpg", 6, 0.0),
             StoreFile("thumbnails/cc/c/h400.jpg", 7, now - 10), StoreFile("lost+found/x", 8, 0.0)]
    plan = plan_collection(files, {"thumbnails/aa/a/h400.jpg"}, FOLDERS, now, older_than=60.0)
    assert [f.uri for f in plan.remove] == ["thumbnails/bb/b/h400.jpg"] and plan.bytes == 6
    assert (plan.walked, plan.referenced, plan.young, plan.outside) == (4, 1, 1, 1)


def test_the_referenced_set_spans_every_kind_and_the_outputs_table():
    settings = Settings()
    thumb = KINDS["thumbnail"]
    state = thumb.fold_source(None, AssetImported("a1", "x.jpg", "image", SHA_A, 10, AT), AT)
    done = thumb.completed(state, generated(Target("thumbnail", "a1"), "h400.jpg", 1, URI))
    rows = {"assets": {"a1": done.to_dict(), "bad": {"junk": 1}}}
    outputs = {"u1": OutputRow("composites/x", {"composite:n1/full.png": 1.0}).to_dict(),
               "u2": OutputRow("composites/y", {}, released_at=1.0).to_dict()}
    assert referenced_uris(rows, outputs, settings) == {URI, "composites/x"}
    assert waiting_for_timer(outputs, now=100.0, grace=50.0).due == 1


def test_durations():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "2h", "1d", "0.5h")] == [90, 90, 900, 7200, 86400, 1800]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


# --- the collecting agent's decision, on a table and a real folder -------------------------------

def lifecycle_for(store: Path, grace: float = 60.0) -> tuple[SimpleNamespace, Lifecycle]:
    ctx = SimpleNamespace(settings=Settings(image_store=store, gc_grace=grace))
    return ctx, Lifecycle(table={})  # type: ignore[arg-type]  # a dict is table enough here


def test_collect_deletes_once_and_only_what_is_still_due(tmp_path: Path):
    store = tmp_path / "store"
    ctx, lifecycle = lifecycle_for(store)
    old = time.time() - 3600
    kept = put(store, "thumbnails/aa/kept/h400.jpg", age_s=3600)
    gone = put(store, "thumbnails/aa/gone/h400.jpg", age_s=3600)
    for uri in ("thumbnails/aa/kept/h400.jpg", "thumbnails/aa/gone/h400.jpg"):
        fold_reference(lifecycle, OutputReferenced(uri, "thumbnail:a1/h400.jpg", old - 10))
        fold_reference(lifecycle, OutputReleased(uri, "thumbnail:a1/h400.jpg", old))
    # Held again after the timer asked: the request is stale, nothing goes.
    fold_reference(lifecycle, OutputReferenced("thumbnails/aa/kept/h400.jpg", "thumbnail:a2/h400.jpg", old + 5))
    assert asyncio.run(collect(ctx, lifecycle, OutputCollectDue("thumbnails/aa/kept/h400.jpg", old))) is None
    assert asyncio.run(collect(ctx, lifecycle, OutputCollectDue("thumbnails/aa/gone/h400.jpg", old))) == 10
    assert kept.exists() and not gone.exists()
    assert "thumbnails/aa/gone/h400.jpg" not in lifecycle.table
    # The same request again (a redelivery): the row is gone, nothing happens.
    assert asyncio.run(collect(ctx, lifecycle, OutputCollectDue("thumbnails/aa/gone/h400.jpg", old))) is None


def test_collect_spares_a_file_touched_within_the_grace_period(tmp_path: Path):
    store = tmp_path / "store"
    ctx, lifecycle = lifecycle_for(store)
    old = time.time() - 3600
    uri = "composites/aa/fresh/full.png"
    fresh = put(store, uri)  # a render's cache hit just touched it
    fold_reference(lifecycle, OutputReferenced(uri, "composite:n1/full.png", old - 10))
    fold_reference(lifecycle, OutputReleased(uri, "composite:n1/full.png", old))
    assert asyncio.run(collect(ctx, lifecycle, OutputCollectDue(uri, old))) is None
    assert fresh.exists()
    row = OutputRow.from_dict(lifecycle.table[uri])
    assert row.released_at >= fresh.stat().st_mtime - 1 and not collectable(row, time.time(), 60.0)


def test_a_collect_request_for_a_uri_outside_the_store_deletes_nothing(tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    ctx, lifecycle = lifecycle_for(store)
    outside = put(tmp_path, "outside.txt", age_s=3600)
    (store / "thumbnails").mkdir()
    (store / "thumbnails/out").symlink_to(tmp_path)
    uri = "thumbnails/out/outside.txt"
    lifecycle.table[uri] = OutputRow(uri, {}, released_at=time.time() - 3600).to_dict()
    assert asyncio.run(collect(ctx, lifecycle, OutputCollectDue(uri, lifecycle.table[uri]["released_at"]))) is None
    assert outside.exists() and uri not in lifecycle.table


# --- the agents' side: what intake and the projector tell, in memory ----------------------------

class Recording:
    """Enough of a worker's context for intake and the projector: tables are
    dicts, sends are kept; ``during_send`` runs at each send, as another
    handler would while this one awaits the broker."""

    def __new__(cls, tmp_path: Path):
        from regen.agents.context import WorkerContext
        from regen.agents.tables import Tables

        class InMemory(WorkerContext):
            async def emit(self, spec, event) -> None:
                self.sent.append((spec.suffix, event))
                await asyncio.sleep(0)
                if self.during_send is not None:
                    self.during_send()

        media = tmp_path / "media"
        media.mkdir()
        settings = Settings(media_roots=(media,), image_store=tmp_path / "store", state_dir=tmp_path / "state",
                            render_processes=1, pregenerate_variants=("h400.jpg",))
        tables = Tables(jobs={}, videos={}, batches={}, groups={}, by_kind={k.table: {} for k in KINDS.values()})
        recovered = SimpleNamespace(tables=SimpleNamespace(recovery=SimpleNamespace(
            completed=SimpleNamespace(is_set=lambda: True))))
        ctx = InMemory(app=recovered, settings=settings, tables=tables, pool=None)  # type: ignore[arg-type]
        ctx.sent = []  # type: ignore[attr-defined]
        ctx.during_send = None  # type: ignore[attr-defined]
        return ctx


def references_sent(ctx) -> list:
    return [(type(e).__name__, e.uri, e.holder) for suffix, e in ctx.sent if suffix == "outputs.references"]


def test_intake_and_projector_tell_what_a_target_takes_and_lets_go(tmp_path: Path):
    from regen.agents.intake import on_source_event
    from regen.agents.projector import on_completion

    ctx = Recording(tmp_path)
    thumbnail = KINDS["thumbnail"]
    imported = thumbnail.example_source(ctx.settings.media_roots[0], "a1", 1)
    asyncio.run(on_source_event(ctx, imported))
    assert references_sent(ctx) == [], "nothing rendered, nothing held"

    done = generated(Target("thumbnail", "a1"), "h400.jpg", 1, URI)
    asyncio.run(on_completion(ctx, done))
    assert references_sent(ctx) == [("OutputReferenced", URI, "thumbnail:a1/h400.jpg")]
    # Redelivered (a crash may have lost the send after the state was written): said again.
    ctx.sent.clear()
    asyncio.run(on_completion(ctx, done))
    assert references_sent(ctx) == [("OutputReferenced", URI, "thumbnail:a1/h400.jpg")]

    # The same import again (a redelivery after a crash that lost intake's sends): said again.
    ctx.sent.clear()
    asyncio.run(on_source_event(ctx, imported))
    assert references_sent(ctx) == [("OutputReferenced", URI, "thumbnail:a1/h400.jpg")]
    ctx.sent.clear()
    # New content under the same id: the old thumbnail is let go.
    asyncio.run(on_source_event(ctx, thumbnail.example_source(ctx.settings.media_roots[0], "a1", 2)))
    assert references_sent(ctx) == [("OutputReleased", URI, "thumbnail:a1/h400.jpg")]


def test_no_state_written_meanwhile_is_lost_while_references_are_sent(tmp_path: Path):
    """The projector writes the state before it awaits any send: a re-import
    folded while the send waits for the broker is kept, not overwritten
    with the state read before it."""
    from regen.agents.intake import on_source_event
    from regen.agents.projector import on_completion

    ctx = Recording(tmp_path)
    thumbnail = KINDS["thumbnail"]
    media = ctx.settings.media_roots[0]
    asyncio.run(on_source_event(ctx, thumbnail.example_source(media, "a1", 1)))
    reimport = thumbnail.example_source(media, "a1", 2)

    def reimported_meanwhile() -> None:
        ctx.during_send = None
        state = thumbnail.read(ctx.tables.assets["a1"])
        ctx.tables.assets["a1"] = thumbnail.fold_source(state, reimport, AT).to_dict()

    ctx.during_send = reimported_meanwhile
    asyncio.run(on_completion(ctx, generated(Target("thumbnail", "a1"), "h400.jpg", 1, URI)))
    assert AssetState.from_dict(ctx.tables.assets["a1"]).sha256 == reimport.sha256


def test_seeding_tells_every_file_every_target_holds():
    from regen.projections.store_gc import held_references

    settings = Settings()
    thumb = KINDS["thumbnail"]
    state = thumb.fold_source(None, AssetImported("a1", "x.jpg", "image", SHA_A, 10, AT), AT)
    done = thumb.completed(state, generated(Target("thumbnail", "a1"), "h400.jpg", 1, URI))
    rows = {"assets": {"a1": done.to_dict(), "a2": done.evolve(asset_id="a2").to_dict(), "bad": {"x": 1}}}
    assert held_references(rows, settings, 5.0) == [OutputReferenced(URI, "thumbnail:a1/h400.jpg", 5.0),
                                                    OutputReferenced(URI, "thumbnail:a2/h400.jpg", 5.0)]


def test_the_gc_report_and_store_status_say_what_was_kept_and_why():
    from regen.cli.gc import GcReport, StoreStatus
    from regen.projections.store_gc import GcPlan, Waiting

    plan = GcPlan(remove=[StoreFile("thumbnails/aa/a/h400.jpg", 2048, 0.0)], walked=5, referenced=3, young=1)
    dry = GcReport(plan, older_than=3600.0).describe(dry_run=True)
    assert "thumbnails/aa/a/h400.jpg" in dry and "would remove 1 file(s), 2.0 KiB" in dry
    assert "3 referenced, 1 unreferenced but younger than 3600 s" in dry
    done = GcReport(plan, 3600.0, removed=1, removed_bytes=2048).to_json(dry_run=False)
    assert (done["removed"], done["unreferenced_bytes"], done["items"]) == (1, 2048, [
        {"uri": "thumbnails/aa/a/h400.jpg", "bytes": 2048}])
    status = StoreStatus({"thumbnail": (2, 300), "composite": (0, 0)}, Waiting(unheld=3, due=1), plan)
    text = status.describe()
    assert "thumbnail" in text and "300" in text and "3 file(s), 1 past the grace period" in text
    assert status.to_json()["kinds"]["thumbnail"] == {"files": 2, "bytes": 300}


def test_the_grace_and_scan_interval_are_validated():
    from regen.streams.exceptions import ConfigError

    assert Settings.from_env({"REGEN_GC_GRACE": "7200"}).gc_grace == 7200.0
    for name in ("REGEN_GC_GRACE", "REGEN_STORE_SCAN_INTERVAL"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "0"})
