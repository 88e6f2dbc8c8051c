"""The bounce test, many times over: does a worker SIGKILLed three times ever
lose or stall a job?

Each round is what tests/integration/test_failures.py's bounce test does,
with a fresh topic prefix, group and image store: 300 imports (one
pre-generated variant each), the worker SIGKILLed after 1/8, 3/8 and 5/8 of
the completions and started again each time, then every completion waited
for (at most ``--patience`` seconds after the last start). A round that does
not complete is reported with where its missing jobs are: still in the lane
after the committed offset (stalled: the records are there, nobody reads
them) or nowhere (lost). No round restarts the worker a fourth time.

Not run by CI (about two minutes a round on two cores):

    python -m bench.bounce [--rounds 30] [--imports 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import broker, free_port
from bench.requests import make_photos
from regen.cli.importer import scan
from regen.schemas.jobs import RenderJob
from regen.settings import Settings
from regen.streams.codec import decode
from regen.streams.publisher import Publisher
from regen.streams.results import follow_completions, read_records, wait_for
from regen.streams.topics import RENDER_BACKGROUND, topic_name

VARIANT = "h400.jpg"


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None
        self.port = env["REGEN_WEB_PORT"]

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "regen.cli.main", "worker"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"worker not ready in 90 s; see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)


async def completions_reach(settings: Settings, bootstrap: str, count: int) -> None:
    seen = set()
    async for completion in follow_completions(settings, bootstrap, idle_timeout=120):
        seen.add((completion.target.id, completion.variant))
        if len(seen) >= count:
            return


async def where_missing(settings: Settings, bootstrap: str, missing: set[str]) -> tuple[int, int]:
    """(stalled, lost): missing jobs whose lane record lies at or after the
    lane's committed offset, and those with no such record."""
    records = await read_records(settings, bootstrap, RENDER_BACKGROUND, idle_timeout=1.0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}.lanes")
    finally:
        await admin.close()
    lane = topic_name(settings, RENDER_BACKGROUND)
    committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == lane}
    waiting = set()
    for record in records:
        job, _ = decode(record.value, record.headers, (RenderJob,))
        unread = record.offset >= committed.get(record.partition, 0)
        if isinstance(job, RenderJob) and job.target.id in missing and unread:
            waiting.add(job.target.id)
    return len(waiting), len(missing - waiting)


def one_round(bootstrap: str, work: Path, photos: list[Path], media: Path, patience: float) -> dict:
    run_id = uuid.uuid4().hex[:8]
    state = work / f"state-{run_id}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REGEN_APP_ID": f"bounce-{run_id}",
           "REGEN_TOPIC_PREFIX": f"bounce-{run_id}", "REGEN_STATE_DIR": str(state),
           "REGEN_IMAGE_STORE": str(state / "images"), "REGEN_MEDIA_ROOTS": str(media),
           "REGEN_WEB_PORT": str(free_port()), "REGEN_RENDER_PROCESSES": "2", "REGEN_RENDER_BATCH_SIZE": "8",
           "REGEN_PREGENERATE_VARIANTS": VARIANT, "REGEN_STUCK_AFTER": "600", "REGEN_LOG_LEVEL": "info"}
    settings = Settings.from_env(env)
    worker = Worker(env, work / f"worker-{run_id}.log")
    worker.start()
    try:
        events = [s.event for s in scan(photos, [media], f"bounce-{run_id}")]

        async def publish() -> None:
            async with Publisher(settings, bootstrap, source="bench.bounce") as publisher:
                await publisher.publish_many(events)

        asyncio.run(publish())
        for point in (len(events) // 8, len(events) * 3 // 8, len(events) * 5 // 8):
            asyncio.run(completions_reach(settings, bootstrap, point))
            worker.kill()
            worker.start()
        started = time.monotonic()
        expected = {e.asset_id for e in events}
        try:
            seen = asyncio.run(wait_for(settings, bootstrap, lambda c: c.target.id, expected, patience))
            missing: set[str] = set()
        except TimeoutError:
            seen = {}
            missing = expected  # narrowed below
        if missing:
            done = asyncio.run(_done(settings, bootstrap, expected))
            missing = expected - done
        stalled, lost = asyncio.run(where_missing(settings, bootstrap, missing)) if missing else (0, 0)
        return {"complete": not missing, "after_s": time.monotonic() - started, "stalled": stalled, "lost": lost,
                "seen": len(seen)}
    finally:
        worker.kill(signal.SIGTERM)
        shutil.rmtree(state, ignore_errors=True)


async def _done(settings: Settings, bootstrap: str, expected: set[str]) -> set[str]:
    done = set()
    async for completion in follow_completions(settings, bootstrap, idle_timeout=3):
        if completion.target.id in expected:
            done.add(completion.target.id)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--imports", type=int, default=300)
    parser.add_argument("--patience", type=float, default=120.0, help="seconds after the last restart")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regen-bench-bounce-"))
    media = work / "media"
    photos = make_photos(media, args.imports, "p")
    results = []
    try:
        with broker(work) as bootstrap:
            for n in range(1, args.rounds + 1):
                result = one_round(bootstrap, work, photos, media, args.patience)
                results.append(result)
                verdict = "complete" if result["complete"] else \
                    f"INCOMPLETE: {result['stalled']} stalled, {result['lost']} lost"
                print(f"round {n:2d}/{args.rounds}: {verdict}; last restart to all complete "
                      f"{result['after_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    complete = [r for r in results if r["complete"]]
    print(f"{len(complete)} of {len(results)} rounds complete; stalled jobs {sum(r['stalled'] for r in results)}, "
          f"lost jobs {sum(r['lost'] for r in results)}; last restart to all complete: median "
          f"{statistics.median(r['after_s'] for r in complete) if complete else float('nan'):.1f} s")
    if len(complete) != len(results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
