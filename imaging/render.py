"""The one function a render process runs for a job, per kind (thumbnail,
composite, overlay).

Everything it needs arrives in a picklable task, so it runs the same
in a pool process, in a benchmark loop or from ``regen render`` offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from PIL import Image

from regen.imaging.composite import composite, sample_frames, span_digest
from regen.imaging.errors import InvalidOverlay, SourceChanged
from regen.imaging.fit import fit_image
from regen.imaging.frames import decode_folder_span, decode_video_span, read_folder_span
from regen.imaging.limits import Limits
from regen.imaging.overlay import draw_overlay
from regen.imaging.source import OpenFile, OpenFolder, open_source
from regen.imaging.store import composite_path, overlay_path, thumbnail_path, write_atomically
from regen.imaging.thumbnails import encode, is_video, oriented_thumbnail, render_thumbnail_of
from regen.imaging.variants import parse_variant


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
    preset: str = ""  # the definition when ``variant`` names a preset (REGEN_PRESETS)


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
    """Open the source once (confined to the media roots), hash the bytes
    that will be decoded, answer from the store if that content was already
    rendered, else render and write atomically."""
    started = time.perf_counter()
    variant = parse_variant(task.variant, task.preset)
    with open_source(task.source_uri, task.media_roots, task.limits) as source:
        assert isinstance(source, OpenFile)  # folders are refused without allow_folder
        video = is_video(source.name, task.media_type)
        # A photo is read into memory once: hashed and decoded from the same
        # bytes. A video is hashed from the descriptor and decoded from it,
        # and must be unchanged afterwards (check_unchanged).
        data = None if video else source.read_all()
        actual_sha = source.sha256() if data is None else hashlib.sha256(data).hexdigest()
        if task.source_sha256 and actual_sha != task.source_sha256:
            raise SourceChanged(
                f"{task.source_uri}: content sha256 {actual_sha[:12]}… differs from the imported "
                f"{task.source_sha256[:12]}…; import the file again"
            )
        out = thumbnail_path(task.image_store, actual_sha, variant.file_name)
        if not task.force:
            existing = existing_output(out, started)
            if existing is not None:
                return existing
        image = render_thumbnail_of(source, variant, task.limits, task.media_type, video=video, data=data)
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
    # Found again: touched, so the store's garbage collection, which spares
    # files touched within its grace period, cannot take it before the
    # completion naming it is folded (agents/lifecycle.py).
    with contextlib.suppress(OSError):
        os.utime(out)
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
    preset: str = ""  # the definition when ``variant`` names a preset (REGEN_PRESETS)


@dataclass(frozen=True)
class CompositeOutcome(RenderOutcome):
    frames: tuple[int, ...] = ()
    sampled: bool = False


def run_composite_task(task: CompositeTask) -> CompositeOutcome:
    """The median of a span of a video or frame folder. Its output is named
    by the content it reads (the video's bytes, or each wanted frame's), so
    rewriting a source can never bring an old image back as a cache hit."""
    started = time.perf_counter()
    variant = parse_variant(task.variant, task.preset)
    wanted = sample_frames(task.start_frame, task.end_frame, task.max_frames)
    sampled = len(wanted) < task.end_frame - task.start_frame + 1
    with open_source(task.source_uri, task.media_roots, task.limits, allow_folder=True) as source:
        span = read_folder_span(source, wanted, task.limits) if isinstance(source, OpenFolder) else None
        content = source.sha256() if isinstance(source, OpenFile) else span.digest()  # type: ignore[union-attr]
        out = composite_path(task.image_store, span_digest(content, task.start_frame, task.end_frame,
                                                           task.crop, task.max_frames), variant.file_name)
        if not task.force:
            existing = existing_output(out, started)
            if existing is not None:
                return CompositeOutcome(**vars(existing), frames=tuple(wanted), sampled=sampled)
        frames = decode_video_span(source, wanted, task.crop, task.limits) if isinstance(source, OpenFile) \
            else decode_folder_span(span, task.crop, task.limits)  # type: ignore[arg-type]  # span: read above
    del span
    result = composite(frames, wanted, (task.start_frame, task.end_frame))
    del frames
    image = result.image
    if variant.fit != "inside" or variant.target_size(image.width, image.height) != image.size:
        image = fit_image(image, variant, reducing_gap=None)
    encoded = encode(image, variant)
    write_atomically(out, encoded.data)
    return CompositeOutcome(
        path=out, sha256=hashlib.sha256(encoded.data).hexdigest(), width=encoded.width, height=encoded.height,
        bytes=len(encoded.data), render_ms=(time.perf_counter() - started) * 1000, cache_hit=False,
        frames=result.frames, sampled=result.sampled,
    )


# Bumped when the drawing changes, so an overlay drawn the old way is not
# taken for the new one (the store is content-addressed by what is drawn).
OVERLAY_DRAWING = b"regen-overlay-v1"


@dataclass(frozen=True)
class OverlayTask:
    source_uri: str
    source_sha256: str  # as the segmentation names it; "" to skip the check
    variant: str
    # (label, (outer ring, *holes)) in the displayed source's pixel coordinates
    shapes: tuple[tuple[str, tuple[tuple[tuple[float, float], ...], ...]], ...]
    colors: dict[str, str] | None
    media_roots: tuple[Path, ...]
    image_store: Path
    limits: Limits = Limits()
    force: bool = False


def overlay_digest(source_sha256: str, shapes, colors: dict[str, str] | None) -> str:
    """What names an overlay in the store: the source's content, the shapes
    and colours drawn, and the drawing's version."""
    drawn = orjson.dumps({"shapes": shapes, "colors": colors}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(OVERLAY_DRAWING + source_sha256.encode() + drawn).hexdigest()


def run_overlay_task(task: OverlayTask) -> RenderOutcome:
    """The image decoded, shrunk and oriented exactly as its thumbnail
    (DCT-scaled), the polygons scaled to that size and drawn, then encoded."""
    started = time.perf_counter()
    variant = parse_variant(task.variant)
    with open_source(task.source_uri, task.media_roots, task.limits) as source:
        assert isinstance(source, OpenFile)  # folders are refused without allow_folder
        data = source.read_all()
    actual_sha = hashlib.sha256(data).hexdigest()
    if task.source_sha256 and actual_sha != task.source_sha256:
        raise SourceChanged(f"{task.source_uri}: content sha256 {actual_sha[:12]}… differs from the "
                            f"{task.source_sha256[:12]}… the segmentation was drawn on")
    out = overlay_path(task.image_store, overlay_digest(actual_sha, task.shapes, task.colors), variant.name)
    if not task.force:
        existing = existing_output(out, started)
        if existing is not None:
            return existing
    small, displayed = oriented_thumbnail(data, variant, task.limits, source.name)
    del data
    try:
        drawn = draw_overlay(small, task.shapes, task.colors, displayed)
    except ValueError as e:  # a colour that does not parse
        raise InvalidOverlay(f"{task.source_uri}: {e}") from e
    image = encode(drawn, variant)
    write_atomically(out, image.data)
    return RenderOutcome(path=out, sha256=hashlib.sha256(image.data).hexdigest(), width=image.width,
                         height=image.height, bytes=len(image.data),
                         render_ms=(time.perf_counter() - started) * 1000, cache_hit=False)


def refuse_overlay(message: str) -> RenderOutcome:
    """The task of a job whose segmentation is malformed: fails for good,
    in the render process like any other render error."""
    raise InvalidOverlay(message)
