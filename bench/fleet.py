"""A fleet against one worker: two workers with one render process each,
against one worker with two, on the same photos through the same broker.

Scaling out should cost little over scaling up: the figure is the fleet's
throughput as a ratio to the single worker's (target >= 0.9), each the
median of ``--repeats`` runs measured here. Both use the thumbnails
benchmark's 8.6 MP photos, variant h400.jpg; worker start-up and the group's
first rebalance are not timed (one warm-up import through every worker).
Each figure also says where the CPU went per image (bench/cpu.py): a fleet
on one machine pays a second worker process and more broker requests.

The timed part must be long enough to measure a rate: with 3 copies (46
timed photos, about a second) start-up transients decided the figure (0.79 x
and 0.98 x on the same code); 12 copies (208 timed photos) take about 5 s.

    python -m bench.fleet [--copies 12] [--repeats 3] [--variant h400.jpg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.cpu import CpuSpent, sample
from bench.harness import broker, with_variant, worker
from bench.thumbnails import SIZE, _publish_and_wait, make_photos, median_run
from regen.cli.importer import scan
from regen.settings import Settings


def throughput(paths: list[Path], root: Path, bootstrap: str, workers: int, processes: int,
               variant: str) -> tuple[float, CpuSpent]:
    group = uuid.uuid4().hex[:8]
    base = Path(tempfile.mkdtemp(prefix="regen-bench-fleet-"))
    with contextlib.ExitStack() as stack:
        variants = {"REGEN_PREGENERATE_VARIANTS": variant, "REGEN_VARIANTS": with_variant(variant)}
        fleet: list[Settings] = [stack.enter_context(worker(bootstrap, base / f"w{n}", root, processes, group=group,
                                                            **variants))
                                 for n in range(workers)]
        for settings in fleet:
            _wait_ready(settings)
        settings = fleet[0]
        events = [s.event for s in scan(paths, [root], batch_id=group)]
        warm_up = workers * 4  # a few imports, so every member has rendered before the clock starts
        asyncio.run(_publish_and_wait(settings, bootstrap, events[:warm_up]))
        before, started = sample(), time.perf_counter()
        asyncio.run(_publish_and_wait(settings, bootstrap, events[warm_up:]))
        rate = (len(events) - warm_up) / (time.perf_counter() - started)
        return rate, CpuSpent(before, sample(), len(events) - warm_up)


def _wait_ready(settings: Settings, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    raise SystemExit(f"worker on port {settings.web_port} not ready in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12, help="copies of each corpus photo (18 photos each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="h400.jpg", help="the variant rendered (h400.jpg, full.webp, ...)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="regen-bench-media-"))
    paths = make_photos(root, args.copies)
    print(f"{len(paths)} photos of {SIZE[0]}x{SIZE[1]}, variant {args.variant}, median of {args.repeats}",
          flush=True)
    with broker(Path(tempfile.mkdtemp(prefix="regen-bench-broker-"))) as bootstrap:
        one, cpu = median_run(lambda: throughput(paths, root, bootstrap, 1, 2, args.variant), args.repeats)
        print(f"1 worker x 2 render processes   {one:7.1f} thumbnails/s", flush=True)
        print(f"    {cpu.line()}", flush=True)
        two, cpu = median_run(lambda: throughput(paths, root, bootstrap, 2, 1, args.variant), args.repeats)
        print(f"2 workers x 1 render process    {two:7.1f} thumbnails/s   {two / one:5.2f} x one worker "
              f"(target >= 0.9)", flush=True)
        print(f"    {cpu.line()}", flush=True)


if __name__ == "__main__":
    main()
