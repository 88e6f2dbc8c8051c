"""`regen demo`: broker, worker, an import, every thumbnail waited for, a summary.

It runs the same parts a deployment runs: the local Kafka broker, `regen
worker` as its own process, the importer publishing AssetImported, and the
completion events read back from Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import orjson
from tqdm import tqdm

from regen.cli import format as fmt
from regen.cli.publishing import import_folder
from regen.settings import ENVIRONMENT, Settings
from regen.streams import local_broker
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import RegenError
from regen.streams.results import wait_for

# A cold worker (JVM-free, but Faust, RocksDB and a rebalance) is ready in
# about 5 s here; 60 s covers a slow first import of the Python packages.
WORKER_READY_TIMEOUT_S = 60.0
# Thumbnails of the samples take a second or two; a user's folder may be large.
PER_IMAGE_TIMEOUT_S = 5.0
# The name the demo gives its stand-in image model in REGEN_GENERATORS.
DEMO_GENERATOR = "stand-in"


def run_demo(settings: Settings, folder: Path | None, keep_running: bool) -> None:
    say = lambda text: click.echo(click.style("regen demo: ", fg="cyan") + text, err=True)  # noqa: E731
    if folder is None:
        from regen.cli.samples import write_samples

        folder = settings.state_dir / "demo-media"
        say(f"making sample media in {folder} (photos in six EXIF orientations, a short video)")
        write_samples(folder)
    folder = folder.resolve()
    roots = settings.media_roots if any(folder.is_relative_to(r.resolve()) for r in settings.media_roots) \
        else (*settings.media_roots, folder)
    settings = settings.with_overrides(media_roots=roots, web_port=_port_or_free(settings.web_port))

    started_broker = False
    if not settings.bootstrap_servers and local_broker.find_running(settings.state_dir) is None:
        say("starting a local Kafka broker (the first run fetches its jars from Maven Central)")
        info = local_broker.start(settings.state_dir, progress=say)
        started_broker = True
        say(f"Kafka is up at {info.bootstrap}")
    bootstrap = bootstrap_servers(settings)

    log_path = settings.state_dir / "demo-worker.log"
    extra_env: dict[str, str] = {}
    model = None
    if not settings.generators:
        from regen.cli.stand_in_model import ModelServer

        # A stand-in, not a model: it answers each prompt with a flat colour
        # after 0.5 s, so the demo shows a generated case without a real endpoint.
        model = ModelServer(delay=0.5).start()
        extra_env[ENVIRONMENT["generators"]] = orjson.dumps(model.generator(DEMO_GENERATOR)).decode()
        say(f"started a stand-in image model at {model.url} (a local server drawing a colour per prompt, "
            f"not a real model endpoint; set {ENVIRONMENT['generators']} to use yours)")
    say(f"starting a worker (HTTP on port {settings.web_port}, log {log_path})")
    worker = _start_worker(settings, log_path, extra_env)
    try:
        _wait_for_health(settings, worker, log_path)
        batch_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        say(f"importing {folder} as batch {batch_id}")
        summary = asyncio.run(import_folder(settings, folder, batch_id, as_json=False))
        asset_ids = summary["asset_ids"]
        expected = {f"{a}/{v}" for a in asset_ids for v in settings.pregenerate_variants}
        say(f"published {len(asset_ids)} AssetImported; waiting for {len(expected)} thumbnails")
        completions = asyncio.run(_wait_with_progress(settings, bootstrap, expected))
        _print_summary(settings, completions, asset_ids)
        _progress_and_request_demo(settings, batch_id, asset_ids, say)
        video = next((p for p in sorted(folder.rglob("*.mp4"))), None)
        if video is not None:
            _annotation_demo(settings, bootstrap, video.relative_to(folder).as_posix(), say)
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[:4]
        if photos:
            _overlay_demo(settings, bootstrap, folder, photos, say)
        generator = DEMO_GENERATOR if model is not None else settings.generators[0].name
        _generated_case_demo(settings, bootstrap, generator, say)
    finally:
        if model is not None and not keep_running:
            model.stop()
        if keep_running:
            say(f"left running: worker pid {worker.pid}, dashboard http://{settings.web_host}:{settings.web_port}"
                f"/dashboard. Stop with `kill {worker.pid}` and `regen broker stop`.")
        else:
            _stop_worker(worker)
            if started_broker:
                local_broker.stop(settings.state_dir)
                say("stopped the worker and the broker")
            else:
                say("stopped the worker")


def _progress_and_request_demo(settings: Settings, batch_id: str, asset_ids: list[str], say) -> None:
    """The batch's progress projection, then two on-demand requests: one
    answered from the store, one rendered for a variant not pre-generated."""
    from regen.cli.main import _get
    from regen.cli.requesting import get_image

    deadline = time.monotonic() + 15
    batch: dict = {}
    while time.monotonic() < deadline:
        try:
            batch = _get(settings, f"/batches/{batch_id}")
        except RegenError:
            batch = {}
        if batch.get("done"):
            break
        time.sleep(0.5)
    if batch:
        click.echo(f"\nThe batch's progress projection (regen status batch {batch_id}):\n")
        click.echo(fmt.format_batch(batch))
    if not asset_ids:
        return
    other = next((v for v in settings.variants if v not in settings.pregenerate_variants), None)
    click.echo("\nAsking for images on demand (regen get thumbnail …):\n")
    for variant in (None, other):
        answer = asyncio.run(get_image(settings, "thumbnail", asset_ids[0], variant, 30.0, False))
        click.echo(answer.describe() + "\n")


async def _wait_with_progress(settings: Settings, bootstrap: str, expected: set[str]) -> dict:
    bar = tqdm(total=len(expected), unit="img", desc="thumbnails", file=sys.stderr)

    def key(completion) -> str:
        return f"{completion.target.id}/{completion.variant}"

    try:
        return await wait_for(settings, bootstrap, key, expected,
                              timeout=30 + PER_IMAGE_TIMEOUT_S * len(expected), on_progress=lambda _: bar.update(1))
    except TimeoutError as e:
        raise RegenError(f"{e}. The worker log may say why.") from e
    finally:
        bar.close()


def _print_summary(settings: Settings, completions: dict, asset_ids: list[str]) -> None:
    generated = [c for c in completions.values() if type(c).__name__ == "ImageGenerated"]
    failed = [c for c in completions.values() if type(c).__name__ == "ImageFailed"]
    rows = []
    for c in sorted(completions.values(), key=lambda c: (c.target.id, c.variant)):
        if type(c).__name__ == "ImageGenerated":
            rows.append((c.target.id, c.variant, "generated", f"{c.width}x{c.height}", f"{c.render_ms:.0f} ms", c.uri))
        else:
            rows.append((c.target.id, c.variant, f"failed ({c.reason})", "", "", c.error))
    click.echo(fmt.format_table(rows, ("asset", "variant", "outcome", "size", "render", "file / error")))
    click.echo("")
    click.echo(f"{len(generated)} thumbnail(s) generated, {len(failed)} failed, for {len(asset_ids)} asset(s).")
    click.echo(f"Files are under {settings.image_store}")
    if asset_ids:
        first = asset_ids[0]
        try:
            from regen.cli.main import _get

            click.echo("\nWhat the worker's projection says of the first asset (regen status asset …):\n")
            click.echo(fmt.format_asset(_get(settings, f"/assets/{first}")))
        except RegenError as e:
            click.echo(f"(could not query the worker: {e})")
        click.echo(f"\nQuery a running worker with:  {ENVIRONMENT['web_port']}={settings.web_port} "
                   f"regen status asset {first}")
        click.echo(f"or over HTTP:                 curl http://{settings.web_host}:{settings.web_port}/assets/{first}")


def _annotation_demo(settings: Settings, bootstrap: str, source: str, say) -> None:
    """A burst of boundary edits on three annotations, then the pending count
    falling to zero as each goes idle and gets one composite."""
    import av

    from regen.cli.main import _get
    from regen.schemas.events import BoundaryChanged
    from regen.streams.publisher import Publisher

    with av.open(str(settings.media_roots[-1] / source)) as container:
        frames = container.streams.video[0].frames or 48
    video_id = "demo-video"
    edits = []
    for revision in range(1, 21):  # three annotations dragged at once, 20 edits each
        for n in range(3):
            start = min(frames - 2, n * 8 + revision % 5)
            edits.append(BoundaryChanged(annotation_id=f"demo-annotation-{n}", video_id=video_id,
                                         start_frame=start, end_frame=min(frames - 1, start + 10 + revision),
                                         revision=revision, source=source))

    async def publish() -> None:
        async with Publisher(settings, bootstrap, source="regen/demo") as publisher:
            await publisher.publish_many(edits)

    say(f"publishing {len(edits)} BoundaryChanged for 3 annotations of {source}; each renders once, "
        f"{settings.idle_delay:g} s after its last edit")
    asyncio.run(publish())
    started = time.monotonic()
    deadline, last, seen_pending = started + 60 + settings.idle_delay, None, False
    while time.monotonic() < deadline:
        pending = _get(settings, f"/videos/{video_id}")["pending"]
        if pending != last:
            click.echo(f"  {time.monotonic() - started:5.1f} s  video {video_id}: {pending} annotation(s) pending")
            last = pending
        seen_pending = seen_pending or pending > 0
        if pending == 0 and (seen_pending or time.monotonic() - started > settings.idle_delay + 5):
            break
        time.sleep(0.2)
    if last != 0:
        raise RegenError(f"video {video_id} still has {last} pending annotation(s) after 60 s")
    annotation = _get(settings, "/annotations/demo-annotation-0")
    click.echo("\n" + fmt.format_annotation(annotation))


def _overlay_demo(settings: Settings, bootstrap: str, folder: Path, photos: list[Path], say) -> None:
    """A segmentation of each photo (a frame and a diamond with a hole, in
    the photo's displayed coordinates), followed as one group: each
    overlay rendered once its segmentation is idle, and the group's
    completion with every output."""
    from PIL import Image, ImageOps

    from regen.schemas.events import GroupDeclared, Polygon, SegmentationChanged
    from regen.streams.codec import now_iso

    group_id = f"demo-segmented-{time.strftime('%H%M%S')}"
    events: list = [GroupDeclared(group_id, now_iso(), total=len(photos) * len(settings.standing_overlay_variants()),
                                  label="the demo's segmented photos")]
    for n, path in enumerate(photos):
        with Image.open(path) as im:
            width, height = ImageOps.exif_transpose(im).size  # displayed size: what a person segments
        cx, cy, r = width / 2, height / 2, min(width, height) / 3
        diamond = ((cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy))
        hole = ((cx, cy - r / 3), (cx + r / 3, cy), (cx, cy + r / 3), (cx - r / 3, cy))
        frame = ((width * 0.05, height * 0.05), (width * 0.3, height * 0.05), (width * 0.3, height * 0.3),
                 (width * 0.05, height * 0.3))
        events.append(SegmentationChanged(
            asset_id=f"demo-photo-{n}", revision=1, source=path.relative_to(folder).as_posix(),
            polygons=(Polygon("cell", diamond, (hole,)), Polygon("label", frame)),
            colors={"cell": "#ff3030", "label": "#2060ff80"}, group_id=group_id))

    say(f"publishing a SegmentationChanged for {len(photos)} photos as group {group_id}; each overlay renders "
        f"{settings.idle_delay:g} s after its last edit")
    asyncio.run(_publish(settings, bootstrap, events))
    group = _wait_for_group(settings, group_id, 60 + settings.idle_delay)
    click.echo(f"\nThe group's projection (regen status group {group_id}):\n")
    click.echo(fmt.format_group(group))
    click.echo(f"Overlays are under {settings.image_store / 'overlays'}")


def _generated_case_demo(settings: Settings, bootstrap: str, generator: str, say) -> None:
    """A case of 14 images generated from prompts (10 evidence, 4 locations),
    followed as one group until it finishes."""
    from regen.schemas.events import GenerationRequested, GroupDeclared
    from regen.streams.codec import now_iso

    case = f"demo-case-{time.strftime('%H%M%S')}"
    prompts = [f"evidence {n}: a {thing} on a desk" for n, thing in enumerate(
        ("torn letter", "pocket watch", "muddy boot", "train ticket", "broken vase", "key ring", "red scarf",
         "ink bottle", "photograph", "glove"))] + \
        [f"location {n}: {place}" for n, place in enumerate(("a harbour at dusk", "a library", "a station",
                                                              "a garden"))]
    variants = settings.generated_variants or settings.variants[:1]
    events: list = [GroupDeclared(case, now_iso(), total=len(prompts) * len(variants), label="a generated case")]
    events += [GenerationRequested(target_id=f"{case}-{n}", revision=1, generator=generator, prompt=prompt,
                                   parameters={"width": 768, "height": 512}, group_id=case)
               for n, prompt in enumerate(prompts)]

    say(f"publishing {len(prompts)} GenerationRequested as group {case} (generator {generator!r}, "
        f"{settings.generation_concurrency} calls at a time)")
    started = time.monotonic()
    asyncio.run(_publish(settings, bootstrap, events))
    group = _wait_for_group(settings, case, 120)
    click.echo(f"\nThe case, as one group (regen status group {case}), in {time.monotonic() - started:.1f} s:\n")
    click.echo(fmt.format_group(group))


async def _publish(settings: Settings, bootstrap: str, events: list) -> None:
    from regen.streams.publisher import Publisher

    async with Publisher(settings, bootstrap, source="regen/demo") as publisher:
        await publisher.publish_many(events)


def _wait_for_group(settings: Settings, group_id: str, timeout_s: float) -> dict:
    """The group's view once it has finished (the worker's /groups)."""
    from regen.cli.main import _get

    deadline, group = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        try:
            group = _get(settings, f"/groups/{group_id}")
        except RegenError:
            group = {}
        if group.get("finished_at"):
            return group
        time.sleep(0.3)
    raise RegenError(f"group {group_id} did not finish in {timeout_s:.0f} s ({group or 'never seen'}); "
                     "the worker log may say why")


def _start_worker(settings: Settings, log_path: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ) | extra_env
    env[ENVIRONMENT["media_roots"]] = os.pathsep.join(str(r) for r in settings.media_roots)
    env[ENVIRONMENT["web_port"]] = str(settings.web_port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "regen.cli.main", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for_health(settings: Settings, worker: subprocess.Popen, log_path: Path) -> None:
    url = f"http://{settings.web_host}:{settings.web_port}/health"
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RegenError(f"the worker exited with code {worker.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError as e:
            if b'"crashed"' in e.read():
                raise RegenError(f"the worker could not recover its tables; see {log_path}") from e
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    raise RegenError(f"the worker did not answer on {url} within {WORKER_READY_TIMEOUT_S:.0f} s; see {log_path}")


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def _port_or_free(port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
