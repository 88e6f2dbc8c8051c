"""Thumbnail throughput: the whole pipeline against loops run in the same process.

Three figures on the same 8.6 MP photos (the corpus upscaled, EXIF orientations kept):

- naive:    open, ``ImageOps.exif_transpose``, LANCZOS resize, save — what
            scripts usually do;
- raw:      one process calling regen's render function (``run_thumbnail_task``)
            in a loop: decode, resize, encode, atomic write; and two such
            loops at once on halves of the photos, the most two render
            processes get out of this machine's cores with nothing else on them;
- pipeline: AssetImported events in, ImageGenerated events out, through a real
            broker and one `regen worker` with 1 and then 2 render processes
            (worker start-up not counted).

Each figure is the median of ``--repeats`` runs; ratios are printed against
the baselines measured in this run. Each pipeline figure also says where the
CPU went per image (bench/cpu.py): render processes, the worker's own
process, the broker. h400.jpg renders from a reduced JPEG decode in a few
tens of ms, about what the broker and the worker spend moving its events;
``--variant full.webp`` (a full-size decode and a WebP encode) shows the
pipeline where rendering dominates.

The pipeline's timed part must last long enough to be a rate: 3 copies (53
timed photos) took about a second and measured start-up (0.86 x raw where
9 copies measured 0.96 x on the same code); 9 copies take about 4 s.

    python -m bench.thumbnails [--copies 9] [--repeats 3] [--variant h400.jpg]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from bench.cpu import CpuSpent, sample
from bench.harness import broker, with_variant, worker
from regen.cli.importer import scan
from regen.imaging.render import ThumbnailTask, run_thumbnail_task
from regen.settings import Settings
from regen.streams.publisher import Publisher
from regen.streams.results import wait_for

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"
SIZE = (3600, 2400)  # 8.6 MP


def make_photos(folder: Path, copies: int) -> list[Path]:
    """Upscaled corpus photos with their EXIF kept; each copy at its own JPEG
    quality so every file has distinct content (no dedupe shortcuts)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted(CORPUS.glob("*.jpg")):
        with Image.open(source) as im:
            exif = im.info.get("exif", b"")
            big = im.resize(SIZE if im.width >= im.height else SIZE[::-1], Image.Resampling.BICUBIC)
        for copy in range(copies):
            path = folder / f"{source.stem}_{copy}.jpg"
            big.save(path, "JPEG", quality=88 + copy, exif=exif)
            paths.append(path)
    return paths


def naive_loop(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im)
            width = round(upright.width * 400 / upright.height)
            small = upright.resize((width, 400), Image.Resampling.LANCZOS)
            small.save(io.BytesIO(), "JPEG", quality=82)
    return len(paths) / (time.perf_counter() - started)


def raw_loop(paths: list[Path], root: Path, variant: str = "h400.jpg") -> float:
    store = Path(tempfile.mkdtemp(prefix="regen-bench-store-"))
    started = time.perf_counter()
    for path in paths:
        run_thumbnail_task(ThumbnailTask(path.relative_to(root).as_posix(), "", variant, (root,), store))
    return len(paths) / (time.perf_counter() - started)


def raw_loops_in_parallel(paths: list[Path], root: Path, variant: str, processes: int = 2) -> float:
    """``processes`` raw loops at once, each on its share of the photos and
    nothing else running: what this machine's cores allow render processes,
    before any broker or worker takes a share of them."""
    shares = [paths[n::processes] for n in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_warm_up, range(processes))  # imports done before the clock starts
        started = time.perf_counter()
        pool.starmap(raw_loop, [(share, root, variant) for share in shares])
        return len(paths) / (time.perf_counter() - started)


def _warm_up(_: int) -> None:
    import regen.imaging.render  # noqa: F401  # what the raw loop runs


def pipeline(paths: list[Path], root: Path, bootstrap: str, processes: int,
             variant: str = "h400.jpg") -> tuple[float, CpuSpent]:
    state = Path(tempfile.mkdtemp(prefix="regen-bench-state-"))
    with worker(bootstrap, state, root, processes, REGEN_PREGENERATE_VARIANTS=variant,
                REGEN_VARIANTS=with_variant(variant)) as settings:
        events = [s.event for s in scan(paths, [root], batch_id=state.name)]
        # Warm up: one event through every stage so start-up is not timed.
        asyncio.run(_publish_and_wait(settings, bootstrap, events[:1]))
        before, started = sample(), time.perf_counter()
        asyncio.run(_publish_and_wait(settings, bootstrap, events[1:]))
        rate = (len(events) - 1) / (time.perf_counter() - started)
        return rate, CpuSpent(before, sample(), len(events) - 1)


async def _publish_and_wait(settings: Settings, bootstrap: str, events) -> None:
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)
    expected = {e.asset_id for e in events}
    await wait_for(settings, bootstrap, lambda c: c.target.id, expected, timeout=600)


def median(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def median_run(fn, repeats: int) -> tuple[float, CpuSpent]:
    """The run with the median rate (a tuple of rate and its CPU spent)."""
    runs = sorted((fn() for _ in range(repeats)), key=lambda run: run[0])
    return runs[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=9, help="copies of each corpus photo (18 photos each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="h400.jpg", help="the variant rendered (h400.jpg, full.webp, ...)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="regen-bench-media-"))
    paths = make_photos(root, args.copies)
    variant = args.variant
    print(f"{len(paths)} photos of {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.1f} MP), variant {variant}, "
          f"median of {args.repeats}", flush=True)

    if variant == "h400.jpg":  # the naive loop makes that one only
        naive = median(lambda: naive_loop(paths), args.repeats)
        print(f"naive Pillow loop        {naive:7.1f} thumbnails/s", flush=True)
    raw = median(lambda: raw_loop(paths, root, variant), args.repeats)
    print(f"raw render loop          {raw:7.1f} thumbnails/s"
          + (f"   {raw / naive:5.2f} x naive" if variant == "h400.jpg" else ""), flush=True)

    both = median(lambda: raw_loops_in_parallel(paths, root, variant), args.repeats)
    print(f"raw loop x 2 processes   {both:7.1f} thumbnails/s   {both / raw:5.2f} x raw loop "
          f"(the cores' own ceiling for 2 render processes)", flush=True)

    with broker(Path(tempfile.mkdtemp(prefix="regen-bench-broker-"))) as bootstrap:
        for processes in (1, 2):
            rate, cpu = median_run(lambda: pipeline(paths, root, bootstrap, processes, variant),  # noqa: B023
                                   args.repeats)
            print(f"pipeline, {processes} process{'es' if processes > 1 else '  '}   {rate:7.1f} thumbnails/s   "
                  f"{rate / raw:5.2f} x raw loop", flush=True)
            print(f"    {cpu.line()}", flush=True)


if __name__ == "__main__":
    main()
