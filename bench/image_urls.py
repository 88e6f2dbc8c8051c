"""Images by URL: cache hits of ``GET /images/{kind}/{id}/{variant}`` from one worker.

Through a real broker and one `regen worker`: a corpus photo is imported and
its h400.jpg rendered; then an aiohttp load loop on loopback keeps
``--connections`` requests in flight for ``--seconds`` and records each
one's latency. The baseline, measured in the same run with the same loop, is
a bare aiohttp server in a process of its own returning the same bytes from
memory with the same headers: the cost of HTTP on this machine, so the ratio
is what regen adds (routing, the table read, the file read off the event
loop and its sha256 check). Rounds alternate baseline and regen; medians
are printed.

    python -m bench.image_urls [--connections 8] [--seconds 5] [--rounds 3]

Targets: p99 <= 10 ms and >= 1,000 requests/s from one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from bench.harness import broker, free_port, worker
from regen.cli.importer import scan
from regen.streams.publisher import Publisher

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"
IMAGE_PATH = "/images/thumbnail/bench/h400.jpg"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(url: str, connections: int, seconds: float, headers: dict[str, str],
               expected_status: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of ``connections`` loops GETting ``url`` for ``seconds``."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> float:
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                assert response.status == expected_status, f"{url}: HTTP {response.status}"
            return time.perf_counter() - started

        for _ in range(connections * 20):  # warm up: connections open, caches filled
            await one()
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            while time.perf_counter() < stop:
                latencies.append(await one())

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, len(latencies) / elapsed


BASELINE_SERVER = """
import sys
from aiohttp import web
data = open(sys.argv[2], "rb").read()
etag = sys.argv[3]
async def image(request):
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="image/jpeg", headers=headers)
app = web.Application()
app.router.add_get("/images/{kind}/{id}/{variant}", image)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@contextlib.contextmanager
def baseline_server(image: Path, etag: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(port), str(image), etag])
    try:
        wait_http(f"http://127.0.0.1:{port}{IMAGE_PATH}", 200, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def wait_http(url: str, status: int, timeout: float) -> tuple[dict[str, str], bytes]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == status:
                    return dict(response.headers), response.read()
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer {status} in {timeout} s (last: {last})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="regen-bench-urls-"))
    try:
        media = work / "media"
        media.mkdir()
        photo = media / "photo.jpg"
        shutil.copyfile(sorted(CORPUS.glob("*.jpg"))[0], photo)
        with broker(work) as bootstrap, worker(bootstrap, work / "state", media, processes=1) as settings:
            wait_http(f"http://127.0.0.1:{settings.web_port}/health", 200, 120)
            event = next(scan([photo], [media], batch_id="bench")).event
            event = type(event)(**{**event.to_dict(), "asset_id": "bench"})

            async def publish() -> None:
                async with Publisher(settings, bootstrap, source="bench") as publisher:
                    await publisher.publish(event)

            asyncio.run(publish())
            regen_base = f"http://127.0.0.1:{settings.web_port}"
            headers, data = wait_http(regen_base + IMAGE_PATH, 200, 120)
            etag = headers["ETag"]
            (work / "image.jpg").write_bytes(data)
            print(f"image: {len(data)} bytes, ETag {etag[:14]}…; {args.connections} connections, "
                  f"{args.seconds:g} s a round, {args.rounds} rounds")
            with baseline_server(work / "image.jpg", etag) as baseline_base:
                results: dict[str, list[tuple[float, float, float]]] = {}
                for round_ in range(args.rounds):
                    for name, base, request_headers, status in (
                            ("baseline 200", baseline_base, {}, 200), ("regen 200", regen_base, {}, 200),
                            ("baseline 304", baseline_base, {"If-None-Match": etag}, 304),
                            ("regen 304", regen_base, {"If-None-Match": etag}, 304)):
                        figures = asyncio.run(load(base + IMAGE_PATH, args.connections, args.seconds,
                                                   request_headers, status))
                        results.setdefault(name, []).append(figures)
                        print(f"  round {round_ + 1} {name:>12}: p50 {figures[0]:6.2f} ms  p99 {figures[1]:6.2f} ms"
                              f"  {figures[2]:8.0f} requests/s")
            print("medians:")
            medians = {name: tuple(statistics.median(r[i] for r in runs) for i in range(3))
                       for name, runs in results.items()}
            for name, (p50, p99, rate) in medians.items():
                print(f"  {name:>12}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {rate:8.0f} requests/s")
            for answer in ("200", "304"):
                regen, bare = medians[f"regen {answer}"], medians[f"baseline {answer}"]
                print(f"regen/baseline {answer}: p50 {regen[0] / bare[0]:.2f}x  p99 {regen[1] / bare[1]:.2f}x  "
                      f"requests/s {regen[2] / bare[2]:.2f}x")
            p99, rate = medians["regen 200"][1], medians["regen 200"][2]
            print(f"targets (hits): p99 {p99:.2f} ms <= 10 ms: {'met' if p99 <= 10 else 'MISSED'}; "
                  f"{rate:.0f} requests/s >= 1000: {'met' if rate >= 1000 else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
