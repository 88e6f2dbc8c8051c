"""Overlays: the segmentation folds (newer wins, older superseded), the
event's limits, repair's view of overlays never rendered, and the drawing,
checked pixel by pixel against a reference drawn independently on each
corpus photo in its EXIF orientation."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from PIL import Image

from regen.imaging.errors import InvalidOverlay, SourceChanged
from regen.imaging.overlay import DEFAULT_FILL_ALPHA, label_color, parse_color
from regen.imaging.render import OverlayTask, run_overlay_task
from regen.kinds import KINDS
from regen.projections.repair import find_damage
from regen.projections.segmentations import segmentation_changed
from regen.schemas.events import MAX_TOTAL_POINTS, ImageFailed, ImageGenerated, Polygon, SegmentationChanged, Target
from regen.settings import Settings
from regen.streams.codec import decode, encode
from regen.streams.exceptions import PoisonEvent
from tests.helpers import OVERLAY_MAGENTA, display_polygon, displayed_size, overlay_errors

AT = "2026-01-01T00:00:00Z"
SHA = "ab" * 32
overlay = KINDS["overlay"]
TRIANGLE = Polygon("cell", ((10.0, 10.0), (90.0, 10.0), (50.0, 80.0)))


def change(revision: int, polygons=(TRIANGLE,), **fields) -> SegmentationChanged:
    return SegmentationChanged(asset_id="a1", revision=revision, source="a1.jpg", polygons=polygons, **fields)


def generated(revision: int, variant: str = "h400.webp", sha: str = SHA) -> ImageGenerated:
    return ImageGenerated(target=Target("overlay", "a1"), variant=variant, revision=revision,
                          job_id=f"overlay:a1:{variant}:r{revision}", uri=f"overlays/x/{revision}", sha256=sha,
                          width=10, height=10, bytes=10, render_ms=1.0, attempts=1, cache_hit=False, generated_at=AT)


def failed(revision: int, variant: str = "h400.webp") -> ImageFailed:
    return ImageFailed(target=Target("overlay", "a1"), variant=variant, revision=revision,
                       job_id=f"overlay:a1:{variant}:r{revision}", reason="exhausted", error_code="source_missing",
                       error="not there", attempts=3, failed_at=AT)


# --- folds and planning ----------------------------------------------------------

def test_the_newest_revision_wins_in_any_order():
    newest = change(5, polygons=(Polygon("tumour", ((0.0, 0.0), (5.0, 0.0), (0.0, 5.0))),))
    state = segmentation_changed(None, newest, AT)
    for late in (change(3), change(5), change(1)):  # older or equal: changes nothing
        assert segmentation_changed(state, late, AT) is state
    assert state.revision == 5 and state.polygons == newest.polygons
    assert segmentation_changed(state, change(6), AT).polygons == (TRIANGLE,)


def test_a_job_of_an_older_revision_is_superseded_and_a_late_overlay_never_current():
    settings = Settings()
    old = overlay.fold_source(None, change(1), AT)
    old_job = overlay.plan(old, "h400.webp", "background", AT)
    newer = overlay.fold_source(old, change(2), AT)
    assert overlay.superseded(newer, old_job)
    assert not overlay.superseded(newer, overlay.plan(newer, "h400.webp", "background", AT))
    late = overlay.completed(newer, generated(1))
    assert overlay.current_output(late, "h400.webp") is None
    assert overlay.needs_render(late, settings)


def test_the_job_carries_the_wanted_segmentation_and_reads_it_back():
    state = overlay.fold_source(None, change(3, colors={"cell": "#00ff0080"}, source_sha256=SHA), AT)
    job = overlay.plan(state, "h400.webp", "interactive", AT, request_ids=("r1",))
    assert (job.job_id, job.revision, job.source_sha256) == ("overlay:a1:h400.webp:r3", 3, SHA)
    decoded, _ = decode(encode(job, "t").value, [], (type(job),))  # across the render lane
    fn, task = overlay.render_call(decoded, Settings())
    assert fn is run_overlay_task
    assert task.shapes == (("cell", (TRIANGLE.points,)),) and task.colors == {"cell": "#00ff0080"}


@pytest.mark.parametrize("detail", [
    None, {"polygons": "x"}, {"polygons": [{"label": "c", "points": [[0, 0], [1, 1]]}]},
    {"polygons": [], "colors": {"c": "red"}},
    {"polygons": [{"label": "c", "points": [[0, 0], [1e7, 0], [0, 1]]}]},
])
def test_a_forged_job_fails_for_good_in_the_render_process(detail):
    state = overlay.fold_source(None, change(1), AT)
    job = replace(overlay.plan(state, "h400.webp", "background", AT), detail=detail)
    fn, task = overlay.render_call(job, Settings())
    with pytest.raises(InvalidOverlay) as raised:
        fn(task)
    assert raised.value.permanent and "malformed" in str(raised.value)


def test_needs_render_until_every_standing_variant_has_an_outcome_of_the_wanted_revision():
    settings = Settings(overlay_variants=("h400.webp", "h200.jpg"))
    state = overlay.fold_source(None, change(1), AT)
    assert overlay.needs_render(state, settings)
    one = overlay.completed(state, generated(1))
    assert overlay.needs_render(one, settings)
    both = overlay.completed(one, failed(1, "h200.jpg"))
    assert not overlay.needs_render(both, settings), "a failure for good waits for a new edit (or repair)"
    assert overlay.completed(both, failed(1)) == both, "a late failure never hides a good overlay"
    assert overlay.needs_render(overlay.fold_source(both, change(2), AT), settings)


def test_repair_finds_overlays_never_rendered_or_failed_and_leaves_rendered_ones():
    settings = Settings()
    rows = {
        "never": overlay.fold_source(None, change(1), AT),
        "failed": overlay.completed(overlay.fold_source(None, change(1), AT), failed(1)),
        "done": overlay.completed(overlay.fold_source(None, change(1), AT), generated(1)),
        "stale": overlay.fold_source(overlay.completed(overlay.fold_source(None, change(1), AT), generated(1)),
                                     change(2), AT),
    }
    table = {"segmentations": {key: state.to_dict() for key, state in rows.items()}}
    found = find_damage(table, lambda uri, size, sha: None, settings)
    assert {(d.target.id, d.variant, d.problem, d.force) for d in found} == {
        ("never", "h400.webp", "not rendered", False), ("failed", "h400.webp", "failed", True),
        ("stale", "h400.webp", "not rendered", False)}
    assert len(find_damage(table, lambda uri, size, sha: None, settings, limit=2)) == 2
    deleted = find_damage(table, lambda uri, size, sha: "missing", settings)
    assert ("done", "missing") in {(d.target.id, d.problem) for d in deleted}
    # Thumbnails and composites report nothing they never recorded.
    assert find_damage({"assets": {}, "annotations": {}}, lambda *a: None, settings) == []


def test_the_event_is_bounded_in_points_and_colours():
    ring = tuple((float(i), float(i % 7)) for i in range(MAX_TOTAL_POINTS // 2 + 1))
    too_many = change(1, polygons=(Polygon("a", ring), Polygon("b", ring)))
    with pytest.raises(PoisonEvent, match="points in all"):
        decode(encode(too_many, "t").value, [], (SegmentationChanged,))
    body = {**change(1).to_dict(), "colors": {f"l{i}": "#000000" for i in range(300)}}
    with pytest.raises(PoisonEvent, match="colors"):
        decode(orjson.dumps(body), [], (SegmentationChanged,))
    body = {**change(1).to_dict(), "polygons": [{"label": "x", "points": [[0, 0], [1, 1]]}]}
    with pytest.raises(PoisonEvent, match="points"):
        decode(orjson.dumps(body), [], (SegmentationChanged,))
    body = {**change(1).to_dict(), "polygons": [{"label": "x", "points": [[0, 0], [1, 1], [1, 2e6]]}]}
    with pytest.raises(PoisonEvent, match="<= 1000000"):
        decode(orjson.dumps(body), [], (SegmentationChanged,))


# --- drawing ---------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "photos"
PHOTOS = sorted(p.name for p in CORPUS.glob("*.jpg"))
VARIANT = "h300.png"  # lossless, so the comparison measures the drawing, not an encoder


@pytest.mark.parametrize("name", PHOTOS)
def test_polygons_land_where_a_reference_drawing_puts_them(name: str, tmp_path: Path):
    points = display_polygon(*displayed_size(CORPUS / name))
    task = OverlayTask(source_uri=name, source_sha256="", variant=VARIANT, shapes=(("cell", (points,)),),
                       colors={"cell": OVERLAY_MAGENTA}, media_roots=(CORPUS,), image_store=tmp_path)
    inside, outside, tint = overlay_errors(CORPUS / name, points, run_overlay_task(task).path)
    assert inside < 6 and outside < 6, (name, inside, outside)
    assert tint > 25, "the tint is really there: inside differs from the untinted photo"


def test_holes_stay_clear_and_the_outline_is_opaque(tmp_path: Path):
    media = tmp_path / "media"
    media.mkdir()
    Image.new("RGB", (400, 200), (0, 0, 255)).save(media / "flat.png")
    outer = ((40.0, 40.0), (360.0, 40.0), (360.0, 160.0), (40.0, 160.0))
    hole = ((150.0, 70.0), (250.0, 70.0), (250.0, 130.0), (150.0, 130.0))
    task = OverlayTask("flat.png", "", "h200.png", (("roi", (outer, hole)),), {"roi": "#ff000080"}, (media,),
                       tmp_path / "store")
    with Image.open(run_overlay_task(task).path) as out:
        image = out.convert("RGB")
    assert image.getpixel((10, 10)) == (0, 0, 255)  # outside
    assert image.getpixel((200, 100)) == (0, 0, 255)  # in the hole
    r, g, b = image.getpixel((100, 100))  # filled: half red over blue
    assert abs(r - 128) <= 2 and g == 0 and abs(b - 127) <= 2
    # The outline (1 px here) lies on the boundary, between pixels 39 and 40: opaque.
    assert (255, 0, 0) in {image.getpixel((39, 100)), image.getpixel((40, 100))}
    assert (255, 0, 0) in {image.getpixel((149, 100)), image.getpixel((150, 100))}  # the hole's


def test_an_overlay_is_named_by_what_it_draws(tmp_path: Path):
    media = tmp_path / "media"
    media.mkdir()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(media / "p.jpg")
    sha = hashlib.sha256((media / "p.jpg").read_bytes()).hexdigest()
    shapes = (("a", (((0.0, 0.0), (100.0, 0.0), (0.0, 100.0)),)),)
    task = OverlayTask("p.jpg", sha, "h100.jpg", shapes, None, (media,), tmp_path / "store")
    first = run_overlay_task(task)
    again = run_overlay_task(task)
    assert again.cache_hit and again.path == first.path and again.sha256 == first.sha256
    moved = run_overlay_task(replace(task, shapes=(("a", (((5.0, 0.0), (100.0, 0.0), (0.0, 100.0)),)),)))
    recoloured = run_overlay_task(replace(task, colors={"a": "#123456"}))
    assert len({first.path, moved.path, recoloured.path}) == 3
    with pytest.raises(SourceChanged):
        run_overlay_task(replace(task, source_sha256="0" * 64))


def test_colours():
    assert parse_color("#FF8000") == (255, 128, 0, DEFAULT_FILL_ALPHA)
    assert parse_color("#ff800040") == (255, 128, 0, 64)
    assert label_color("tumour") == label_color("tumour") != label_color("stroma")
    with pytest.raises(ValueError, match="rrggbb"):
        parse_color("red")


def test_rebuilt_projections_fold_segmentations_and_compare_them():
    from regen.projections.rebuild import compare, rebuild

    events = [change(1), change(2), generated(2)]
    rebuilt = rebuild(events, AT)
    row = overlay.read(rebuilt.segmentations["a1"])
    assert row.revision == 2 and overlay.current_output(row, "h400.webp")["sha256"] == SHA
    assert compare(rebuilt, rebuild(events, AT)).equal
    differences = compare(rebuild(events[:2], AT), rebuilt).differences
    assert [(d.table, d.key) for d in differences] == [("jobs", "overlay:a1:h400.webp:r2"), ("segmentations", "a1")]


def test_unknown_fields_are_refused_and_polygons_checked_by_the_typed_reader():
    """Polygons skip JSON Schema (80 ms an event for thousands of points);
    everything else is still validated by it."""
    with pytest.raises(PoisonEvent, match="Additional properties"):
        decode(orjson.dumps({**change(1).to_dict(), "extra": 1}), [], (SegmentationChanged,))
    with pytest.raises(PoisonEvent, match="polygons"):
        decode(orjson.dumps({**change(1).to_dict(), "polygons": {"not": "a list"}}), [], (SegmentationChanged,))
    with pytest.raises(PoisonEvent, match="label"):
        decode(orjson.dumps({**change(1).to_dict(), "polygons": [{"label": "", "points": [[0, 0]] * 3}]}), [],
               (SegmentationChanged,))
