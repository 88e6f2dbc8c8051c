"""Median composites: the per-pixel median of an annotation's frames.

Moving background averages out, static content (a caption, a sign) stays
sharp. The median here is exact and always one of the frames' values: the
middle value for an odd count, the lower of the two middle values for an
even count.

``np.median`` sorts (partitions) along a strided axis and returns float64; the
bitwise search below finds the same order statistic in 8 passes of compare
and count over uint8 data, in row bands so the temporaries stay small.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from regen.imaging.errors import ImagingError

# Temporaries per band: frames x band bytes of booleans. 1 MiB keeps a band's
# comparison and counts in cache (measured: 1 MiB beat 256 KiB and 4 MiB).
BAND_BYTES = 1 << 20
# Frame numbers fit a signed 32-bit int: seeking converts them to
# timestamps in C, where a number near 2**63 overflows.
MAX_FRAME = 2**31 - 1


class SpanOutOfRange(ImagingError):
    code = "span_out_of_range"


def lower_median(stack: np.ndarray) -> np.ndarray:
    """Exact lower median over axis 0 of a uint8 stack (frames, ...)."""
    if stack.dtype != np.uint8:
        raise TypeError(f"expected a uint8 stack, got {stack.dtype}")
    count = stack.shape[0]
    if count == 0:
        raise ValueError("no frames to take the median of")
    rank = (count - 1) // 2  # 0-based rank of the lower median
    flat = stack.reshape(count, -1)
    pixels = flat.shape[1]
    band = max(1, min(pixels, BAND_BYTES // count))
    counter = np.uint8 if count < 256 else np.uint16
    # Every temporary is allocated once and reused band after band: the
    # loop is then compare, add and select over cache-resident memory.
    below = np.empty((count, band), dtype=bool)
    counts = np.empty(band, dtype=counter)
    result = np.empty(band, dtype=np.uint8)
    candidate = np.empty(band, dtype=np.uint8)
    keep = np.empty(band, dtype=bool)
    out = np.empty(pixels, dtype=np.uint8)
    for begin in range(0, pixels, band):
        block = flat[:, begin:begin + band]
        width = block.shape[1]
        r, c, cand, k, b = result[:width], counts[:width], candidate[:width], keep[:width], below[:, :width]
        r.fill(0)
        # Per column, the largest v with #(x < v) <= rank is the rank-th
        # smallest value; decided one bit at a time from the top: 8 passes.
        for bit in range(7, -1, -1):
            np.bitwise_or(r, np.uint8(1 << bit), out=cand)
            np.less(block, cand, out=b)
            np.add.reduce(b.view(np.uint8), axis=0, dtype=counter, out=c)  # a bool is one byte, 0 or 1
            np.less_equal(c, rank, out=k)
            np.copyto(r, cand, where=k)
        out[begin:begin + width] = r
    return out.reshape(stack.shape[1:])


def sample_frames(start: int, end: int, cap: int) -> list[int]:
    """Frames [start, end] inclusive; evenly sampled down to ``cap`` (ends kept)."""
    if start < 0 or end < start or end > MAX_FRAME:
        raise SpanOutOfRange(f"span [{start}, {end}] is empty, negative or past frame {MAX_FRAME}")
    count = end - start + 1
    if count <= cap:
        return list(range(start, end + 1))
    return sorted({int(round(x)) for x in np.linspace(start, end, cap)})


def crop_box(crop: tuple[int, int, int, int] | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) checked against the frame size, as a PIL box."""
    if crop is None:
        return None
    x, y, w, h = crop
    if w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise SpanOutOfRange(f"crop {x},{y},{w},{h} does not fit in a {width}x{height} frame")
    return x, y, x + w, y + h


@dataclass(frozen=True)
class Composite:
    image: Image.Image
    frames: tuple[int, ...]  # the frame numbers the median was taken over
    sampled: bool


def composite(frames: np.ndarray | list[np.ndarray], frame_numbers: list[int], span: tuple[int, int]) -> Composite:
    stack = frames if isinstance(frames, np.ndarray) else np.stack(frames)
    median = lower_median(stack)
    mode = "RGB" if median.ndim == 3 else "L"
    return Composite(Image.fromarray(median, mode), tuple(frame_numbers),
                     sampled=len(frame_numbers) < span[1] - span[0] + 1)


def span_digest(source_sha: str, start: int, end: int, crop, cap: int) -> str:
    """Names a composite by everything that decides its pixels, so the same
    span of the same source always lands on the same path."""
    text = f"{source_sha}|{start}|{end}|{','.join(map(str, crop)) if crop else '-'}|{cap}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
