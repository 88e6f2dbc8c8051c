"""A case of generated images: wall time against the ideal.

Through a real broker and one `regen worker` (REGEN_GENERATION_CONCURRENCY=5)
calling a local model server (cli/stand_in_model.py) that answers each call
after 2 s: a case of 14 GenerationRequested events (one group), timed from
publishing them to the last completion. Five at a time, the ideal is
ceil(14 / 5) = 3 rounds of 2 s = 6 s; the target is at most 1.2 x that.

Baseline measured in the same run: one image alone (the 2 s call plus
regen's own overhead: intake, lane, post-processing, completion), so the
overhead per round can be read off too. Printed: median of the rounds.

    python -m bench.generated [--images 14] [--concurrency 5] [--delay 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness import broker, worker
from regen.cli.stand_in_model import ModelServer
from regen.schemas.events import GenerationRequested, ImageGenerated
from regen.settings import Settings
from regen.streams.publisher import Publisher
from regen.streams.results import wait_for


async def case(settings: Settings, bootstrap: str, images: int, delay: float, tag: str,
               timeout: float = 300) -> float:
    """Seconds from publishing a case of ``images`` requests to its last completion."""
    events = [GenerationRequested(target_id=f"{tag}-{i}", revision=1, generator="bench",
                                  prompt=f"case {tag} image {i} [slow:{delay:g}]",
                                  parameters={"width": 768, "height": 512}, group_id=tag)
              for i in range(images)]
    started = time.perf_counter()
    async with Publisher(settings, bootstrap, source="bench") as publisher:
        await publisher.publish_many(events)
    done = await wait_for(settings, bootstrap, lambda c: c.target.id, {e.target_id for e in events}, timeout)
    elapsed = time.perf_counter() - started
    failed = [c for c in done.values() if not isinstance(c, ImageGenerated)]
    if failed:
        raise SystemExit(f"{len(failed)} image(s) failed: {failed[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=14)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the model server takes per call")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ideal = math.ceil(args.images / args.concurrency) * args.delay

    with tempfile.TemporaryDirectory(prefix="regen-bench-generated-") as work_dir, ModelServer() as server:
        work = Path(work_dir)
        (work / "media").mkdir()
        generators = server.generator("bench", timeout_s=max(10.0, args.delay * 3), calls_per_minute=10_000)
        with broker(work) as bootstrap, worker(bootstrap, work / "worker", work / "media",
                                               REGEN_GENERATORS=json.dumps(generators),
                                               REGEN_GENERATION_CONCURRENCY=str(args.concurrency)) as settings:
            # Warm-up: the worker joins its group and reads its lanes; not timed.
            asyncio.run(case(settings, bootstrap, 1, 0, f"warm-{uuid.uuid4().hex[:6]}", timeout=180))
            singles, cases = [], []
            for _ in range(args.rounds):
                singles.append(asyncio.run(case(settings, bootstrap, 1, args.delay, f"one-{uuid.uuid4().hex[:6]}")))
                cases.append(asyncio.run(case(settings, bootstrap, args.images, args.delay,
                                              f"case-{uuid.uuid4().hex[:6]}")))
        calls = len(server.calls)

    single, wall = statistics.median(singles), statistics.median(cases)
    print(f"generated: {args.images} images, {args.concurrency} at a time, model {args.delay:g} s a call, "
          f"{args.rounds} round(s), {calls} model calls in all")
    print(f"  one image alone (baseline):   median {single:.2f} s  (overhead {single - args.delay:.2f} s "
          f"over the call)   rounds: {', '.join(f'{s:.2f}' for s in singles)}")
    print(f"  the case:                     median {wall:.2f} s   rounds: {', '.join(f'{c:.2f}' for c in cases)}")
    print(f"  ideal {math.ceil(args.images / args.concurrency)} rounds x {args.delay:g} s = {ideal:.1f} s; "
          f"wall / ideal = {wall / ideal:.2f} (target <= 1.20); wall / (rounds x one image) = "
          f"{wall / (math.ceil(args.images / args.concurrency) * single):.2f}")


if __name__ == "__main__":
    main()
