"""Code shared by test modules: building media files, the bad corpus's
documented outcomes, publishing events, polling, and a worker process.

Plain functions and classes only; fixtures stay in the conftest.py files.
Test modules import from here, never from each other.
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
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import orjson
from PIL import Image

from regen.cli.importer import media_files, scan
from regen.imaging.errors import CorruptImage, SourceTooLarge
from regen.schemas.events import AssetImported, BoundaryChanged
from regen.settings import Settings
from regen.streams.publisher import Publisher

T = TypeVar("T")

# What each broken file of Pillow's test suite (shared/corpus/bad) must give:
# a typed, permanent error or a valid thumbnail. Never a crash, never a
# different exception type. A tuple is the size the thumbnail must have.
BAD_OUTCOMES: dict[str, type | str | tuple[int, int]] = {
    "truncated_jpeg.jpg": CorruptImage,
    "truncated_image.png": CorruptImage,
    "broken.png": CorruptImage,
    "zero_width.gif": CorruptImage,
    "decompression_bomb.gif": SourceTooLarge,
    "png_decompression_dos.png": CorruptImage,
    "crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif": CorruptImage,
    "crash-2020-10-test.tif": CorruptImage,
    "hopper_bad_exif.jpg": "ok",
    "invalid-exif.jpg": "ok",
    "junk_jpeg_header.jpg": "ok",
    "orientation_rectangle.jpg": (1, 2),
    "hopper.jpg": "ok",
    "hopper.png": "ok",
}


# --- media files -------------------------------------------------------------

def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 320x240 JPEGs in a new ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for i in range(count):
        pixels = base.copy()
        pixels[i % 240, :, :] = i % 256  # every file distinct
        Image.fromarray(pixels).save(folder / f"p{i:03d}.jpg", quality=85)
    return media_files(folder)


def write_ts(path: Path, size: tuple[int, int], frames: int, value: int = 200) -> Path:
    """An MPEG-TS clip of ``frames`` flat grey frames of ``size``."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), value, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- events ------------------------------------------------------------------

def import_event(path: Path, corpus: Path, asset_id: str | None = None) -> AssetImported:
    """The AssetImported the importer makes of ``path`` (optionally under another asset id)."""
    scanned = next(scan([path], [corpus], batch_id="t"))
    event = scanned.event
    if asset_id is not None:
        event = replace(event, asset_id=asset_id)
    return event


def edit(annotation: str, revision: int, video: str = "v1", start: int = 0, end: int = 20) -> BoundaryChanged:
    """A boundary edit of ``annotation`` over clip.mp4 (the ``media`` fixture's clip)."""
    return BoundaryChanged(annotation_id=annotation, video_id=video, start_frame=start, end_frame=end,
                           revision=revision, source="clip.mp4")


def variant_key(completion) -> str:
    """``asset/variant`` of a completion, the key most waits collect by."""
    return f"{completion.target.id}/{completion.variant}"


async def publish_all(settings: Settings, bootstrap: str, events: Iterable) -> None:
    """Publish ``events`` in one batch."""
    async with Publisher(settings, bootstrap, source="tests") as publisher:
        await publisher.publish_many(events)


async def publish(settings: Settings, bootstrap: str, events: Iterable) -> None:
    """Publish ``events`` one by one, each acknowledged before the next."""
    async with Publisher(settings, bootstrap, source="tests") as publisher:
        for event in events:
            await publisher.publish(event)


# --- waiting -----------------------------------------------------------------

def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def eventually(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.2) -> T:
    """Projections are folded from completion events a moment after they are
    published: poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


async def wait_for_job_status(worker: WorkerProcess, job_id: str, status: str, timeout: float = 20.0) -> None:
    """Poll the worker's /jobs until ``job_id`` is in ``status`` (a missing source being why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job = worker.get(f"/jobs/{job_id}")
        if code == 200 and job["status"] == status:
            assert job["error_code"] == "source_missing"
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {status}: {worker.get(f'/jobs/{job_id}')}")


# --- a worker process ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WorkerProcess:
    """`regen worker` in its own process group, with ``env`` as its environment."""

    env: dict[str, str]
    settings: Settings
    log: Path
    proc: subprocess.Popen | None = None
    logs_seen: list[str] = field(default_factory=list)

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "regen.cli.main", "worker"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return self
                assert body.get("status") != "crashed", f"worker crashed:\n{self.tail()}"
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {ready_timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def get(self, path: str, token: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.settings.web_port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read())

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- tripwires on upstream code ---------------------------------------------------

def source_digest(qualified_name: str) -> str:
    """The first 16 hex digits of the SHA-256 of an upstream method's source,
    named ``package.module.Class.method``: what the tripwire tests pin."""
    import hashlib
    import importlib
    import inspect

    module_name, class_name, method = qualified_name.rsplit(".", 2)
    function = getattr(getattr(importlib.import_module(module_name), class_name), method)
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


# --- overlays ------------------------------------------------------------------------

OVERLAY_MAGENTA = "#ff00ff"


def display_polygon(width: int, height: int) -> tuple[tuple[float, float], ...]:
    """A lopsided quadrilateral in the upper left of a displayed photo of
    ``width`` x ``height``: a mirrored or rotated drawing puts it elsewhere."""
    return ((0.08 * width, 0.10 * height), (0.55 * width, 0.12 * height), (0.40 * width, 0.35 * height),
            (0.12 * width, 0.62 * height))


def displayed_size(path: Path) -> tuple[int, int]:
    from PIL import ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).size


def overlay_errors(path: Path, points, output: Path) -> tuple[float, float, float]:
    """How far an overlay of ``points`` (filled magenta at the default
    opacity) over the photo at ``path`` is from a reference drawn without
    regen's code: the photo oriented by Pillow's exif_transpose, the polygon
    blended at full resolution, then scaled to the overlay's size.

    Returns the mean absolute error inside the polygon and outside it (away
    from the outline), and how far inside is from the untinted photo (large
    when the tint is really there)."""
    from PIL import ImageDraw, ImageFilter, ImageOps

    from regen.imaging.overlay import DEFAULT_FILL_ALPHA, outline_width

    with Image.open(output) as out:
        drawn = np.asarray(out.convert("RGB"), dtype=np.float64)
        size = out.size
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    mask = Image.new("L", upright.size, 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    opacity = mask.point(lambda v: v * DEFAULT_FILL_ALPHA // 255)
    tinted = Image.composite(Image.new("RGB", upright.size, (255, 0, 255)), upright, opacity)
    expected = np.asarray(tinted.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    plain = np.asarray(upright.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    coverage = mask.resize(size, Image.Resampling.BOX)
    margin = 2 * outline_width(size) + 3  # the outline and the edge's antialiasing
    inside = np.asarray(coverage.filter(ImageFilter.MinFilter(margin))) == 255
    outside = np.asarray(coverage.filter(ImageFilter.MaxFilter(margin))) == 0
    assert inside.sum() > 1000 and outside.sum() > 10000, "the polygon covers a real part of the image"
    return (float(np.abs(drawn[inside] - expected[inside]).mean()),
            float(np.abs(drawn[outside] - expected[outside]).mean()),
            float(np.abs(drawn[inside] - plain[inside]).mean()))
