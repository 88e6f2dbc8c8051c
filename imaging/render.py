"""The one function a render process runs for a thumbnail job.

Everything it needs arrives in a picklable ThumbnailTask, so it runs the same
in a pool process, in a benchmark loop or from ``regen render`` offline.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imaging.errors import SourceChanged
from imaging.limits import Limits
from imaging.paths import resolve_media_path
from imaging.store import sha256_file, thumbnail_path, write_atomically
from imaging.thumbnails import render_thumbnail
from imaging.variants import parse_variant


@dataclass(frozen=True)
class ThumbnailTask:
    source_uri: str
    source_sha256: str  # as imported; "" to skip the check (offline use)
    variant: str
    media_roots: tuple[Path, ...]
    image_store: Path
    limits: Limits = Limits()
    force: bool = False
    media_type: str = ""  # "image", "video", or "" to go by the file's suffix


@dataclass(frozen=True)
class RenderOutcome:
    path: Path
    sha256: str
    width: int
    height: int
    bytes: int
    render_ms: float
    cache_hit: bool


def run_thumbnail_task(task: ThumbnailTask) -> RenderOutcome:
    started = time.perf_counter()
    variant = parse_variant(task.variant)
    source = resolve_media_path(task.source_uri, task.media_roots)
    actual_sha = sha256_file(source)
    if task.source_sha256 and actual_sha != task.source_sha256:
        raise SourceChanged(
            f"{task.source_uri}: content sha256 {actual_sha[:12]}… differs from the imported "
            f"{task.source_sha256[:12]}…; import the file again"
        )
    out = thumbnail_path(task.image_store, actual_sha, variant.name)
    if not task.force:
        existing = existing_output(out, started)
        if existing is not None:
            return existing
    image = render_thumbnail(source, variant, task.limits, task.media_type)
    write_atomically(out, image.data)
    return RenderOutcome(
        path=out,
        sha256=hashlib.sha256(image.data).hexdigest(),
        width=image.width,
        height=image.height,
        bytes=len(image.data),
        render_ms=(time.perf_counter() - started) * 1000,
        cache_hit=False,
    )


def existing_output(out: Path, started: float) -> RenderOutcome | None:
    """An output already in the store that decodes whole, or None."""
    try:
        data = out.read_bytes()
        with Image.open(out) as im:
            im.load()
            size = im.size
    except Exception:  # missing, truncated or corrupt: render it again
        return None
    return RenderOutcome(
        path=out,
        sha256=hashlib.sha256(data).hexdigest(),
        width=size[0],
        height=size[1],
        bytes=len(data),
        render_ms=(time.perf_counter() - started) * 1000,
        cache_hit=True,
    )


@dataclass(frozen=True)
class CompositeTask:
    source_uri: str  # a video file or a folder of numbered frames, below a media root
    start_frame: int
    end_frame: int
    crop: tuple[int, int, int, int] | None
    variant: str
    media_roots: tuple[Path, ...]
    image_store: Path
    limits: Limits = Limits()
    max_frames: int = 64
    force: bool = False


@dataclass(frozen=True)
class CompositeOutcome(RenderOutcome):
    frames: tuple[int, ...] = ()
    sampled: bool = False


def run_composite_task(task: CompositeTask) -> CompositeOutcome:
    from imaging.composite import composite, sample_frames, span_digest
    from imaging.frames import read_frames
    from imaging.paths import resolve_media_dir_or_file
    from imaging.store import composite_path
    from imaging.thumbnails import encode

    started = time.perf_counter()
    variant = parse_variant(task.variant)
    source = resolve_media_dir_or_file(task.source_uri, task.media_roots)
    wanted = sample_frames(task.start_frame, task.end_frame, task.max_frames)
    stat = source.stat()
    identity = f"{task.source_uri}:{stat.st_size}:{stat.st_mtime_ns}"
    out = composite_path(task.image_store, span_digest(identity, task.start_frame, task.end_frame,
                                                       task.crop, task.max_frames), variant.name)
    if not task.force:
        existing = existing_output(out, started)
        if existing is not None:
            return CompositeOutcome(**vars(existing), frames=tuple(wanted),
                                    sampled=len(wanted) < task.end_frame - task.start_frame + 1)
    frames = read_frames(source, wanted, task.crop, task.limits)
    result = composite(frames, wanted, (task.start_frame, task.end_frame))
    del frames
    image = result.image
    size = variant.target_size(image.width, image.height)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    encoded = encode(image, variant)
    write_atomically(out, encoded.data)
    return CompositeOutcome(
        path=out, sha256=hashlib.sha256(encoded.data).hexdigest(), width=encoded.width, height=encoded.height,
        bytes=len(encoded.data), render_ms=(time.perf_counter() - started) * 1000, cache_hit=False,
        frames=result.frames, sampled=result.sampled,
    )
