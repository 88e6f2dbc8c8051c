"""Drawing a segmentation's polygons over an image, at the output's size.

Coordinates. A polygon's points are pixel coordinates of the *displayed*
image: the stored file after its EXIF orientation is applied (what a
browser shows, and so what a browser-based segmentation tool hands back),
at the file's full resolution. x grows rightwards, y downwards, and (0, 0)
is the top-left corner of the top-left pixel, so pixel (i, j) covers
[i, i+1) x [j, j+1). A photo stored 1800x1200 with orientation 6 is shown
1200x1800, and its points range over 1200x1800.

Speed. The points are scaled to the output (a thumbnail-sized image that
was decoded DCT-scaled and oriented already) and drawn there, never at full
resolution: an overlay costs its thumbnail plus a few milliseconds.

Drawing. Polygons are painted in order: each one's fill blended over what
is there (so a later polygon tints an earlier one where they overlap), its
holes left untouched, then its outline drawn opaque over its outer ring and
its holes.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw

# "#rrggbb" fills at 40 %: the image stays readable under the polygon.
DEFAULT_FILL_ALPHA = 102
# The outline is this fraction of the output's short side (2 px at 400 px).
OUTLINE_FRACTION = 1 / 200

Point = tuple[float, float]
Ring = Sequence[Point]
# (label, (outer ring, *holes))
Shape = tuple[str, Sequence[Ring]]
RGBA = tuple[int, int, int, int]


def parse_color(text: str) -> RGBA:
    """``#rrggbb`` (default fill opacity) or ``#rrggbbaa`` (fill opacity aa/255)."""
    digits = text[1:]
    if not text.startswith("#") or len(digits) not in (6, 8):
        raise ValueError(f"colour {text!r} is not #rrggbb or #rrggbbaa")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    alpha = int(digits[6:8], 16) if len(digits) == 8 else DEFAULT_FILL_ALPHA
    return r, g, b, alpha


def label_color(label: str) -> RGBA:
    """A colour of its own for a label without one: a bright hue derived
    from its name, the same on every worker and every run."""
    hue = int.from_bytes(hashlib.sha256(label.encode("utf-8", "surrogatepass")).digest()[:2], "big") / 65536
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return round(r * 255), round(g * 255), round(b * 255), DEFAULT_FILL_ALPHA


def color_for(label: str, colors: Mapping[str, str] | None) -> RGBA:
    named = (colors or {}).get(label)
    return parse_color(named) if named is not None else label_color(label)


def outline_width(size: tuple[int, int]) -> int:
    return max(1, round(min(size) * OUTLINE_FRACTION))


def draw_overlay(image: Image.Image, shapes: Sequence[Shape], colors: Mapping[str, str] | None,
                 source_size: tuple[int, int]) -> Image.Image:
    """``image`` (the whole displayed source, scaled down to its output
    size) with ``shapes`` drawn over it; their points are in the
    coordinates of the displayed source, ``source_size`` (width, height)."""
    base = image if image.mode in ("RGB", "RGBA") else _convert(image)
    sx, sy = base.width / source_size[0], base.height / source_size[1]
    width = outline_width(base.size)
    draw = ImageDraw.Draw(base)
    for label, rings in shapes:
        r, g, b, alpha = color_for(label, colors)
        # Pillow fills the pixels whose index lies in the polygon; a pixel's
        # centre is at index + 0.5 in these coordinates, hence the shift.
        scaled = [[(x * sx - 0.5, y * sy - 0.5) for x, y in ring] for ring in rings]
        if alpha:
            _fill(base, scaled, (r, g, b), alpha)
        for ring in scaled:
            draw.line([*ring, ring[0]], fill=(r, g, b) if base.mode == "RGB" else (r, g, b, 255), width=width,
                      joint="curve")
    return base


def _fill(base: Image.Image, rings: list[list[Point]], rgb: tuple[int, int, int], alpha: int) -> None:
    """Blend ``rgb`` at ``alpha`` over the outer ring less its holes, through
    a mask only as large as the ring's bounding box (cut to the image)."""
    outer = rings[0]
    x0 = max(0, math.floor(min(x for x, _ in outer)))
    y0 = max(0, math.floor(min(y for _, y in outer)))
    x1 = min(base.width, math.ceil(max(x for x, _ in outer)) + 1)
    y1 = min(base.height, math.ceil(max(y for _, y in outer)) + 1)
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the image
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    pen = ImageDraw.Draw(mask)
    pen.polygon([(x - x0, y - y0) for x, y in outer], fill=alpha)
    for hole in rings[1:]:
        pen.polygon([(x - x0, y - y0) for x, y in hole], fill=0)
    colour = rgb if base.mode == "RGB" else (*rgb, 255)
    base.paste(colour, (x0, y0, x1, y1), mask)


def _convert(image: Image.Image) -> Image.Image:
    """Greyscale, palette and other modes to RGB (RGBA if they have alpha),
    keeping the ICC profile the encoder writes."""
    has_alpha = image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    converted = image.convert("RGBA" if has_alpha else "RGB")
    icc = image.info.get("icc_profile")
    if icc and image.mode != "CMYK":  # a CMYK profile would lie about RGB pixels
        converted.info["icc_profile"] = icc
    return converted
