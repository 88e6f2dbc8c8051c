"""Reading selected frames, from a video (PyAV) or a folder of numbered images.

Frame numbers are 0-based in presentation order. Only the wanted frames are
kept, written straight into one preallocated stack, so memory is the span's
(capped, budgeted) pixels once, not a list of frames plus a stacked copy.
Before that stack is allocated its size is checked against the composite's
pixel budget, and every decoded frame against the pixel limit; decoding
stops when the span's time budget runs out.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from regen.imaging.composite import SpanOutOfRange, crop_box
from regen.imaging.errors import CorruptImage, ResourceLimit, UnsupportedMedia, printable
from regen.imaging.limits import Limits
from regen.imaging.source import OpenFile, OpenFolder, open_local

_NUMBER = re.compile(r"(\d+)(?!.*\d)")
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
# Frame numbers in a folder's file names beyond this are not frame numbers.
MAX_FRAME_NUMBER = 10**9


@dataclass(frozen=True)
class FolderSpan:
    """The encoded bytes of a span's frames, read once from a folder: hashed
    for the composite's identity, then decoded, so both see the same bytes."""

    name: str
    frames: tuple[tuple[str, bytes], ...]  # (file name, bytes) in wanted order

    def digest(self) -> str:
        digest = hashlib.sha256()
        for _, data in self.frames:
            digest.update(hashlib.sha256(data).digest())
        return digest.hexdigest()


def folder_frame_names(folder: OpenFolder) -> list[str]:
    """Frame images sorted by the last number in their names (frame_2 before frame_10)."""
    numbered = []
    for entry in folder.entries():
        path = Path(entry)
        match = _NUMBER.search(path.stem)
        if path.suffix.lower() in FRAME_SUFFIXES and match and len(match.group(1)) <= 9:
            numbered.append((int(match.group(1)), entry))
    return [entry for _, entry in sorted(numbered)]


def read_folder_span(folder: OpenFolder, wanted: list[int], limits: Limits) -> FolderSpan:
    names = folder_frame_names(folder)
    if not names:
        raise UnsupportedMedia(f"{folder.name}: no numbered frame images in the folder")
    if wanted[-1] >= len(names):
        raise SpanOutOfRange(f"{folder.name}: frame {wanted[-1]} requested, the folder has {len(names)} frames")
    frames = []
    for number in wanted:
        with folder.open_entry(names[number], limits) as frame:
            frames.append((names[number], frame.read_all()))
    return FolderSpan(folder.name, tuple(frames))


class _Stack:
    """The span's frames, allocated once the first frame's size is known."""

    def __init__(self, count: int, crop, limits: Limits, name: str):
        self.count, self.crop, self.limits, self.name = count, crop, limits, name
        self.array: np.ndarray | None = None
        self.started = time.monotonic()

    def put(self, index: int, image: Image.Image) -> None:
        box = crop_box(self.crop, image.width, image.height)
        if box:
            image = image.crop(box)
        if self.array is None:
            self.limits.check_span_pixels(self.count, image.width, image.height, self.name)
            try:
                self.array = np.empty((self.count, image.height, image.width, 3), dtype=np.uint8)
            except MemoryError as e:
                raise ResourceLimit(f"{self.name}: no memory for {self.count} frames of "
                                    f"{image.width}x{image.height} (REGEN_RENDER_MEMORY_MB)") from e
        if self.array.shape[1:3] != (image.height, image.width):
            raise UnsupportedMedia(f"{self.name}: frames differ in size ({image.width}x{image.height} after "
                                   f"{self.array.shape[2]}x{self.array.shape[1]})")
        self.array[index] = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        self.check_time()

    def check_time(self) -> None:
        spent = time.monotonic() - self.started
        if spent > self.limits.decode_seconds:
            raise ResourceLimit(f"{self.name}: decoding the span took over {self.limits.decode_seconds:g} s "
                                f"(REGEN_DECODE_BUDGET); sample fewer frames or crop")


def decode_folder_span(span: FolderSpan, crop, limits: Limits) -> np.ndarray:
    stack = _Stack(len(span.frames), crop, limits, span.name)
    for index, (entry, data) in enumerate(span.frames):
        what = f"{span.name}/{printable(entry)}"
        try:
            with Image.open(io.BytesIO(data), formats=limits.image_formats) as im:
                limits.check_pixels(im.width, im.height, what)
                im.load()
                stack.put(index, im)
        except UnidentifiedImageError as e:
            raise CorruptImage(f"{what}: not a {'/'.join(limits.image_formats)} image, or damaged") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ResourceLimit(f"{what}: {e}") from e
        except MemoryError as e:
            raise ResourceLimit(f"{what}: decoding needs more memory than allowed (REGEN_RENDER_MEMORY_MB)") from e
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
            raise CorruptImage(f"{what}: cannot decode ({type(e).__name__}: {e})") from e
    assert stack.array is not None
    return stack.array


def decode_video_span(source: OpenFile, wanted: list[int], crop, limits: Limits) -> np.ndarray:
    import av

    from regen.imaging.video import checked_frames, open_container, video_stream

    position = {number: index for index, number in enumerate(wanted)}
    stack = _Stack(len(wanted), crop, limits, source.name)
    done: set[int] = set()
    try:
        with open_container(source, limits) as container:
            stream = video_stream(container, source.name, limits)
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise UnsupportedMedia(f"{source.name}: the video has no frame rate; use a folder of frames")
            time_base = stream.time_base or Fraction(1, 1)
            origin = stream.start_time or 0
            first = wanted[0]
            # Seek once, to the keyframe at or before the first wanted frame,
            # then decode forward; frame numbers come from presentation times.
            if first > 0:
                target_pts = origin + int(Fraction(first) / Fraction(rate) / time_base)
                container.seek(target_pts, stream=stream, backward=True, any_frame=False)
            for frame in checked_frames(container, stream, source.name, limits):
                stack.check_time()
                if frame.pts is None:
                    continue
                number = int(round((frame.pts - origin) * time_base * rate))
                if number > wanted[-1]:
                    break
                if number in position and number not in done:
                    stack.put(position[number], frame.to_image())
                    done.add(number)
                    if len(done) == len(wanted):
                        break
    except av.error.FFmpegError as e:
        raise CorruptImage(f"{source.name}: cannot decode video ({e.strerror or e})") from e
    except MemoryError as e:
        raise ResourceLimit(f"{source.name}: decoding needs more memory than allowed (REGEN_RENDER_MEMORY_MB)") from e
    source.check_unchanged()
    missing = sorted(set(wanted) - done)
    if missing:
        raise SpanOutOfRange(f"{source.name}: frames {missing[0]}…{missing[-1]} are not in the video "
                             f"({len(missing)} of {len(wanted)} missing)")
    assert stack.array is not None
    return stack.array


def read_frames(source: Path | OpenFile | OpenFolder, wanted: list[int], crop, limits: Limits) -> np.ndarray:
    """The wanted frames of a video or frame folder as one (frames, h, w, 3) stack."""
    if isinstance(source, Path):
        with open_local(source, limits) as opened:
            return read_frames(opened, wanted, crop, limits)
    if isinstance(source, OpenFolder):
        return decode_folder_span(read_folder_span(source, wanted, limits), crop, limits)
    return decode_video_span(source, wanted, crop, limits)
