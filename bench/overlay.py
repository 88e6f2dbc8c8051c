"""Overlay render time against the thumbnail of the same image (target: at most 1.3 x).

On the thumbnail benchmark's 8.6 MP photos (the corpus upscaled, EXIF
orientations kept), each with a segmentation of ``--polygons`` polygons of
``--points`` points (every fourth with a hole):

- thumbnail: regen's render function for h400.webp (``run_thumbnail_task``)
  in a loop: decode (DCT-scaled), resize, orient, encode, atomic write;
- overlay:   the overlay's (``run_overlay_task``) for the same variant: the
  same decode, plus the polygons scaled to the output and drawn there;
- with ``--pipeline``, both through a real broker and one `regen worker`
  (AssetImported in, and SegmentationChanged with REGEN_IDLE_DELAY=0; worker
  start-up not counted).

Every figure is the median of ``--repeats`` runs, the two loops alternating;
ratios are against the thumbnail measured in this run.

    python -m bench.overlay [--copies 3] [--repeats 5] [--polygons 20] [--points 60] [--pipeline]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import broker, worker
from bench.thumbnails import SIZE, make_photos
from regen.cli.importer import scan
from regen.imaging.render import OverlayTask, ThumbnailTask, run_overlay_task, run_thumbnail_task
from regen.schemas.events import Polygon, SegmentationChanged
from regen.settings import Settings
from regen.streams.publisher import Publisher
from regen.streams.results import wait_for

VARIANT = "h400.webp"


def segmentation(width: int, height: int, polygons: int, points: int) -> tuple[Polygon, ...]:
    """``polygons`` roundish cells spread over the displayed image."""
    cells = []
    for n in range(polygons):
        cx, cy = width * (0.1 + 0.8 * ((n * 37) % 100) / 100), height * (0.1 + 0.8 * ((n * 61) % 100) / 100)
        radius = min(width, height) * 0.08
        ring = tuple((cx + radius * (1 + 0.2 * math.sin(5 * a)) * math.cos(a),
                      cy + radius * (1 + 0.2 * math.sin(5 * a)) * math.sin(a))
                     for a in (2 * math.pi * k / points for k in range(points)))
        holes = ((tuple((cx + radius * 0.3 * math.cos(2 * math.pi * k / 12),
                         cy + radius * 0.3 * math.sin(2 * math.pi * k / 12)) for k in range(12)),)
                 if n % 4 == 0 else ())
        cells.append(Polygon(f"class{n % 5}", ring, holes))
    return tuple(cells)


def displayed(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).size


def thumbnail_loop(paths: list[Path], root: Path) -> float:
    store = Path(tempfile.mkdtemp(prefix="regen-bench-store-"))
    started = time.perf_counter()
    for path in paths:
        run_thumbnail_task(ThumbnailTask(path.relative_to(root).as_posix(), "", VARIANT, (root,), store))
    return (time.perf_counter() - started) / len(paths)


def overlay_loop(paths: list[Path], root: Path, shapes: dict[Path, tuple]) -> float:
    store = Path(tempfile.mkdtemp(prefix="regen-bench-store-"))
    started = time.perf_counter()
    for path in paths:
        run_overlay_task(OverlayTask(path.relative_to(root).as_posix(), "", VARIANT, shapes[path], None, (root,),
                                     store))
    return (time.perf_counter() - started) / len(paths)


def pipeline(paths: list[Path], root: Path, bootstrap: str, cells: dict[Path, tuple[Polygon, ...]],
             overlays: bool) -> float:
    """Images a second through one worker with 2 render processes."""
    state = Path(tempfile.mkdtemp(prefix="regen-bench-state-"))
    extra = {"REGEN_PREGENERATE_VARIANTS": VARIANT, "REGEN_OVERLAY_VARIANTS": VARIANT, "REGEN_IDLE_DELAY": "0"}
    with worker(bootstrap, state, root, 2, **extra) as settings:
        if overlays:
            events = [SegmentationChanged(asset_id=f"s{i}", revision=1, source=p.relative_to(root).as_posix(),
                                          polygons=cells[p]) for i, p in enumerate(paths)]
        else:
            events = [s.event for s in scan(paths, [root], batch_id=state.name)]
        asyncio.run(_publish_and_wait(settings, bootstrap, events[:1]))  # warm up: start-up is not timed
        started = time.perf_counter()
        asyncio.run(_publish_and_wait(settings, bootstrap, events[1:]))
        return (len(events) - 1) / (time.perf_counter() - started)


async def _publish_and_wait(settings: Settings, bootstrap: str, events) -> None:
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)
    await wait_for(settings, bootstrap, lambda c: c.target.id, {e.key for e in events}, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="copies of each corpus photo (18 photos each)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--polygons", type=int, default=20)
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--pipeline", action="store_true", help="also through a broker and a worker")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="regen-bench-media-"))
    paths = make_photos(root, args.copies)
    cells = {p: segmentation(*displayed(p), args.polygons, args.points) for p in paths}
    shapes = {p: tuple((c.label, (c.points, *c.holes)) for c in cells[p]) for p in paths}
    print(f"{len(paths)} photos of {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.1f} MP), variant {VARIANT}, "
          f"{args.polygons} polygons of {args.points} points each, median of {args.repeats}", flush=True)

    thumbnail_times, overlay_times = [], []
    for _ in range(args.repeats):  # alternating, so a busy moment on the machine hits both
        thumbnail_times.append(thumbnail_loop(paths, root))
        overlay_times.append(overlay_loop(paths, root, shapes))
    thumbnail, overlay = statistics.median(thumbnail_times), statistics.median(overlay_times)
    print(f"thumbnail render   {thumbnail * 1000:6.1f} ms/image  {1 / thumbnail:6.1f} images/s", flush=True)
    print(f"overlay render     {overlay * 1000:6.1f} ms/image  {1 / overlay:6.1f} images/s   "
          f"{overlay / thumbnail:4.2f} x the thumbnail's time (target <= 1.30)", flush=True)

    if args.pipeline:
        with broker(Path(tempfile.mkdtemp(prefix="regen-bench-broker-"))) as bootstrap:
            rates = {kind: statistics.median(pipeline(paths, root, bootstrap, cells, kind == "overlays")
                                             for _ in range(args.repeats))
                     for kind in ("thumbnails", "overlays")}
        print(f"pipeline thumbnails {rates['thumbnails']:6.1f} images/s", flush=True)
        print(f"pipeline overlays   {rates['overlays']:6.1f} images/s   "
              f"{rates['thumbnails'] / rates['overlays']:4.2f} x the thumbnails' time", flush=True)


if __name__ == "__main__":
    main()
