"""Request latency: how long a person waits for an image, idle and under load.

Through a real broker and one `regen worker` (2 render processes), with one
:class:`streams.client.ImageClient` asking one image at a time, as a viewer
would:

- idle:   uncached thumbnails (variant h200.jpg) of corpus photos on an idle worker;
- loaded: the same kind of requests, for other photos, while thousands of
          background thumbnails (AssetImported, variant h400.jpg) are queued;
- hit:    requests for images already rendered (cache hits).

Latency runs from publishing the ImageRequested to receiving the completion
that names it. Printed: p50 and p99 of each, the loaded/idle ratio of p99s,
and how much of the backlog was still queued when the loaded requests ended
(so the load was real throughout).

    python -m bench.requests [--requests 40] [--background 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import broker, worker
from regen.cli.importer import scan
from regen.schemas.events import ImageGenerated, Target
from regen.settings import Settings
from regen.streams.client import ImageClient
from regen.streams.publisher import Publisher
from regen.streams.results import follow_completions, wait_for

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"


def make_photos(folder: Path, count: int, tag: str) -> list[Path]:
    """``count`` distinct files from the corpus photos (1800x1200): each copy
    gets a few bytes after the JPEG end marker, so its sha256 (and so its
    output path) is its own while decoding costs exactly the same."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(CORPUS.glob("*.jpg"))
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        path = folder / f"{tag}{i:05d}_{source.name}"
        shutil.copyfile(source, path)
        with path.open("ab") as f:
            f.write(f"{tag}-{i}".encode())
        paths.append(path)
    return paths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def timed_requests(client: ImageClient, targets: list[Target], variant: str) -> list[float]:
    latencies = []
    for target in targets:
        started = time.perf_counter()
        completion = await client.request(target, variant, timeout=300)
        latencies.append((time.perf_counter() - started) * 1000)
        if not isinstance(completion, ImageGenerated):
            raise SystemExit(f"request for {target} failed: {completion}")
    return latencies


async def publish(settings: Settings, bootstrap: str, events) -> None:
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)


async def count_background(settings: Settings, bootstrap: str, counter: dict, wanted: set[str]) -> None:
    async for completion in follow_completions(settings, bootstrap, idle_timeout=600):
        if completion.target.id in wanted and completion.variant == "h400.jpg":
            counter["done"] += 1


async def measure(settings: Settings, bootstrap: str, interactive, background, requests: int) -> dict:
    idle_targets = [Target("thumbnail", e.asset_id) for e in interactive[:requests]]
    loaded_targets = [Target("thumbnail", e.asset_id) for e in interactive[requests:]]
    results: dict = {}
    async with ImageClient(settings, bootstrap, source="bench") as client:
        await timed_requests(client, [idle_targets[0]], "w120.jpg")  # warm-up, not counted
        results["idle"] = await timed_requests(client, idle_targets, "h200.jpg")

        counter = {"done": 0}
        follower = asyncio.create_task(count_background(settings, bootstrap, counter,
                                                        {e.asset_id for e in background}))
        await publish(settings, bootstrap, background)
        while counter["done"] < 20:  # the background lane is rendering now
            await asyncio.sleep(0.05)
        results["loaded"] = await timed_requests(client, loaded_targets, "h200.jpg")
        results["backlog_left"] = len(background) - counter["done"]
        follower.cancel()

        results["hit"] = await timed_requests(client, idle_targets * 3, "h200.jpg")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="uncached requests per phase")
    parser.add_argument("--background", type=int, default=2000, help="background thumbnails queued")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="regen-bench-requests-"))
    media = work / "media"
    interactive_photos = make_photos(media / "asked", 2 * args.requests, "a")
    background_photos = make_photos(media / "backlog", args.background, "b")
    try:
        with broker(work) as bootstrap, worker(bootstrap, work / "state", media, REGEN_PREGENERATE_VARIANTS="h400.jpg",
                                               REGEN_VARIANTS="h400.jpg,h200.jpg,w120.jpg,full.png") as settings:
            interactive = [s.event for s in scan(interactive_photos, [media], "asked")]
            background = [s.event for s in scan(background_photos, [media], "backlog")]
            # The photos that will be asked for are imported (and pre-generated) first.
            asyncio.run(publish(settings, bootstrap, interactive))
            asyncio.run(wait_for(settings, bootstrap, lambda c: c.target.id, {e.asset_id for e in interactive}, 300))
            results = asyncio.run(measure(settings, bootstrap, interactive, background, args.requests))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.requests} uncached requests per phase (h200.jpg of 1800x1200 photos), "
          f"{args.background} background thumbnails queued, 2 render processes", flush=True)
    for phase in ("idle", "loaded", "hit"):
        values = results[phase]
        slowest = ", ".join(f"#{i} {v:.0f}" for v, i in sorted((v, i) for i, v in enumerate(values))[-3:])
        print(f"{phase:7s} p50 {statistics.median(values):7.1f} ms   p99 {percentile(values, 99):7.1f} ms   "
              f"({len(values)} requests; slowest {slowest} ms)")
    ratio = percentile(results["loaded"], 99) / percentile(results["idle"], 99)
    print(f"loaded p99 / idle p99 = {ratio:.2f} x (target <= 3); cache hit p99 "
          f"{percentile(results['hit'], 99):.1f} ms (target <= 50)")
    print(f"background thumbnails still queued when the loaded requests ended: "
          f"{results['backlog_left']} of {args.background}")


if __name__ == "__main__":
    main()
