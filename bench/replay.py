"""Replay throughput: the skip path and a full rebuild, against the live pipeline.

One broker, one `regen worker` (2 render processes, variant h400.jpg), and
the same photos throughout (corpus photos, 1800x1200, each copy with its own
bytes so every one is its own asset and output):

- live:    AssetImported events in, every ImageGenerated out (the baseline);
- skip:    `regen replay` with every output in the store and intact;
- rebuild: `regen replay` after the image store was wiped (everything renders).

Printed: images per second for each (source events per second for the skip
path), and rebuild/live.

    python -m bench.replay [--photos 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import broker, worker
from bench.requests import make_photos
from regen.cli.importer import scan
from regen.cli.replay import replay
from regen.settings import Settings
from regen.streams.publisher import Publisher
from regen.streams.results import wait_for


async def live(settings: Settings, bootstrap: str, events) -> float:
    started = time.perf_counter()
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)
    await wait_for(settings, bootstrap, lambda c: c.target.id, {e.asset_id for e in events}, timeout=1800)
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="regen-bench-replay-"))
    media = work / "media"
    photos = make_photos(media, args.photos, "r")
    try:
        with broker(work) as bootstrap, worker(bootstrap, work / "state", media) as settings:
            events = [s.event for s in scan(photos, [media], "replay-bench")]
            asyncio.run(live(settings, bootstrap, events[:1]))  # warm-up: start-up is not timed
            live_rate = asyncio.run(live(settings, bootstrap, events[1:]))
            print(f"live pipeline   {live_rate:8.1f} images/s   ({len(events) - 1} imports)", flush=True)

            skip = asyncio.run(replay(settings, progress=False))
            assert skip.skipped == len(events) and not skip.rendered, skip.describe()
            print(f"replay, skip    {skip.targets / skip.seconds:8.1f} images/s   {skip.seen / skip.seconds:8.1f} "
                  f"source events/s (target >= 2000)", flush=True)

            shutil.rmtree(settings.image_store)
            rebuild = asyncio.run(replay(settings, progress=False))
            assert rebuild.rendered == len(events), rebuild.describe()
            rebuild_rate = rebuild.targets / rebuild.seconds
            print(f"replay, rebuild {rebuild_rate:8.1f} images/s   {rebuild_rate / live_rate:5.2f} x live "
                  f"(target >= 0.90)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
