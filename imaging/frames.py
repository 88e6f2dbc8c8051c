"""Reading selected frames, from a video (PyAV) or a folder of numbered images.

Frame numbers are 0-based in presentation order. Only the wanted frames are
kept in memory, so memory follows the (capped) span, not the video's length.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from imaging.composite import SpanOutOfRange, crop_box
from imaging.errors import CorruptImage, SourceMissing, UnsupportedMedia
from imaging.limits import Limits
from imaging.video import video_stream

_NUMBER = re.compile(r"(\d+)(?!.*\d)")
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def read_frames(source: Path, wanted: list[int], crop, limits: Limits) -> list[np.ndarray]:
    if source.is_dir():
        return _folder_frames(source, wanted, crop, limits)
    return _video_frames(source, wanted, crop, limits)


def folder_frame_paths(folder: Path) -> list[Path]:
    """Frame images sorted by the last number in their names (frame_2 before frame_10)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and _NUMBER.search(p.stem)]
    return sorted(files, key=lambda p: int(_NUMBER.search(p.stem).group(1)))


def _folder_frames(folder: Path, wanted: list[int], crop, limits: Limits) -> list[np.ndarray]:
    paths = folder_frame_paths(folder)
    if not paths:
        raise UnsupportedMedia(f"{folder.name}: no numbered frame images in the folder")
    if wanted[-1] >= len(paths):
        raise SpanOutOfRange(f"{folder.name}: frame {wanted[-1]} requested, the folder has {len(paths)} frames")
    frames = []
    for number in wanted:
        path = paths[number]
        try:
            with Image.open(path) as im:
                limits.check_pixels(im.width, im.height, path.name)
                box = crop_box(crop, im.width, im.height)
                rgb = im.convert("RGB")
                frames.append(np.asarray(rgb.crop(box) if box else rgb))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise CorruptImage(f"{folder.name}/{path.name}: cannot decode ({e})") from e
    _same_shape(frames, folder.name)
    return frames


def _video_frames(path: Path, wanted: list[int], crop, limits: Limits) -> list[np.ndarray]:
    import av

    if not path.exists():
        raise SourceMissing(f"{path.name}: no such video")
    want = set(wanted)
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path), mode="r") as container:
            stream = video_stream(container, path, limits)
            ctx = stream.codec_context
            box = crop_box(crop, ctx.width, ctx.height)
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise UnsupportedMedia(f"{path.name}: the video has no frame rate; use a folder of frames")
            time_base = stream.time_base or Fraction(1, 1)
            origin = stream.start_time or 0
            first = wanted[0]
            # Seek once, to the keyframe at or before the first wanted frame,
            # then decode forward; frame numbers come from presentation times.
            if first > 0:
                target_pts = origin + int(Fraction(first) / Fraction(rate) / time_base)
                container.seek(target_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                number = int(round((frame.pts - origin) * time_base * rate))
                if number > wanted[-1]:
                    break
                if number in want and number not in frames:
                    image = frame.to_image()
                    frames[number] = np.asarray(image.crop(box) if box else image)
                    if len(frames) == len(want):
                        break
    except (UnsupportedMedia, SpanOutOfRange, SourceMissing):
        raise
    except av.error.FFmpegError as e:
        raise CorruptImage(f"{path.name}: cannot decode video ({e})") from e
    missing = sorted(want - frames.keys())
    if missing:
        raise SpanOutOfRange(f"{path.name}: frames {missing[0]}…{missing[-1]} are not in the video "
                             f"({len(missing)} of {len(want)} missing)")
    ordered = [frames[n] for n in wanted]
    _same_shape(ordered, path.name)
    return ordered


def _same_shape(frames: list[np.ndarray], what: str) -> None:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise UnsupportedMedia(f"{what}: frames differ in size ({', '.join(map(str, sorted(shapes)))})")
