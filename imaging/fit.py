"""Fitting a decoded image to a variant: scale, crop (cover), pad (contain).

A cover crop is taken by ``resize(box=...)`` from the decoded image, never
by scaling the whole image first: a 10000 x 10 strip covering 8192 x 8192
would otherwise be scaled to 8 billion pixels before the crop.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from regen.imaging.variants import Variant

# The entropy search looks at the image at most this many pixels along each
# side: enough to tell a detailed region from a plain one, and the search
# costs well under a millisecond.
ENTROPY_SIDE = 256
ENTROPY_BINS = 64  # grey levels, quantised: stable against noise, cheap to count
# Entropies within this of the best count as equal; the tie goes to the
# offset nearest the centre, so a plain image is cropped like cover.
ENTROPY_TIE = 1e-6


def fit_image(im: Image.Image, variant: Variant, source_size: tuple[int, int] | None = None,
              reducing_gap: float | None = 2.0) -> Image.Image:
    """``im`` scaled, cropped or padded to ``variant`` in its current
    orientation. ``source_size`` is the size the output size is computed from
    when ``im`` is a reduced decode of it (a JPEG draft), so that the size
    does not depend on the decoder's rounding."""
    if variant.fit in ("cover", "cover-entropy"):
        return _cover(im, variant, reducing_gap)
    size = (variant.decode_size if variant.fit == "contain" else variant.target_size)(*(source_size or im.size))
    scaled = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=reducing_gap) if im.size != size else im.copy()
    return _pad(scaled, variant) if variant.fit == "contain" else scaled


def cover_box(size: tuple[int, int], target: tuple[int, int], offset: float = 0.5) -> tuple[float, float, float, float]:
    """The region of an image of ``size`` that, scaled, covers ``target``
    exactly: the whole of one axis and a window of the other, placed at
    ``offset`` (0: left or top, 0.5: centred, 1: right or bottom)."""
    (w, h), (tw, th) = size, target
    scale = max(tw / w, th / h)
    cw, ch = min(w, tw / scale), min(h, th / scale)
    x0, y0 = (w - cw) * offset, (h - ch) * offset
    return x0, y0, x0 + cw, y0 + ch


def _cover(im: Image.Image, variant: Variant, reducing_gap: float | None) -> Image.Image:
    assert variant.width is not None and variant.height is not None
    target = (variant.width, variant.height)
    offset = entropy_offset(im, target) if variant.fit == "cover-entropy" else 0.5
    box = cover_box(im.size, target, offset)
    if box == (0, 0, *im.size) and im.size == target:
        return im.copy()
    return im.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=reducing_gap)


def entropy_offset(im: Image.Image, target: tuple[int, int]) -> float:
    """Where along its long (cropped) axis a cover crop of ``im`` holds the
    most detail, as an offset for :func:`cover_box` (0.5 when nothing is cut).

    The image is shrunk to at most ENTROPY_SIDE a side in greyscale; every
    window position along the cropped axis is scored by the Shannon entropy
    of its grey-level histogram (from cumulative per-column histograms, so
    all positions cost one pass); the best wins, ties going to the centre.
    Deterministic: the same pixels give the same crop on every worker."""
    x0, y0, x1, y1 = cover_box(im.size, target, 0.0)
    cropped_x = (x1 - x0) < im.width
    if (x1 - x0) >= im.width and (y1 - y0) >= im.height:
        return 0.5
    scale = min(1.0, ENTROPY_SIDE / max(im.size))
    small_size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    small = im.resize(small_size, Image.Resampling.BOX) if small_size != im.size else im
    try:
        grey = np.asarray(small.convert("L"), dtype=np.uint8)
    except ValueError:  # a mode Pillow cannot turn grey (LAB): crop as cover does
        return 0.5
    if not cropped_x:
        grey = grey.T  # columns along the cropped axis
    length = grey.shape[1]
    window = max(1, min(length, round((x1 - x0 if cropped_x else y1 - y0) / (im.width if cropped_x else im.height)
                                      * length)))
    positions = length - window + 1
    if positions <= 1:
        return 0.5
    bins = (grey.astype(np.uint16) * ENTROPY_BINS // 256).astype(np.intp)
    # Per-column histograms, then cumulative along the axis: a window's
    # histogram is the difference of two rows.
    keys = np.arange(length) * ENTROPY_BINS + bins
    per_column = np.bincount(keys.ravel(), minlength=length * ENTROPY_BINS).reshape(length, ENTROPY_BINS)
    cumulative = np.vstack([np.zeros((1, ENTROPY_BINS), dtype=np.int64), np.cumsum(per_column, axis=0)])
    counts = cumulative[window:] - cumulative[:positions]
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    best = entropy.max()
    if best - entropy.min() <= ENTROPY_TIE:
        return 0.5  # nothing to choose between: exactly the centred crop
    candidates = np.flatnonzero(entropy >= best - ENTROPY_TIE)
    centre = (positions - 1) / 2
    chosen = int(candidates[np.argmin(np.abs(candidates - centre))])
    return chosen / (positions - 1)


def _pad(im: Image.Image, variant: Variant) -> Image.Image:
    """Centre ``im`` on a WxH canvas: white for JPEG (no alpha), else transparent."""
    assert variant.width is not None and variant.height is not None
    size = (variant.width, variant.height)
    if im.size == size:
        return im
    if variant.format == "JPEG":
        canvas = Image.new("RGB", size, (255, 255, 255))
    else:
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    layer = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA")
    mask = layer.getchannel("A") if layer.mode == "RGBA" else None
    canvas.paste(layer, ((size[0] - im.width) // 2, (size[1] - im.height) // 2), mask)
    icc = im.info.get("icc_profile")
    if icc and im.mode != "CMYK":
        canvas.info["icc_profile"] = icc
    return canvas
