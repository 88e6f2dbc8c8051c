"""Named output presets.

A variant's name says what it is: ``h400.webp`` is 400 px high (width by
aspect ratio), ``w800.jpg`` is 800 px wide, ``full.png`` keeps the source
size. Only variants named in settings may be requested, so the image store
stays bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regen.imaging.errors import InvalidVariant

FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}
_NAME = re.compile(r"^(?:(?P<side>[hw])(?P<size>[1-9][0-9]{0,4})|full)\.(?P<ext>[a-z]+)$")
# Past this a "thumbnail" is not one, and a typo like h40000 would ask for a huge image.
MAX_SIDE = 8192


@dataclass(frozen=True)
class Variant:
    name: str
    height: int | None  # None: no height bound
    width: int | None  # None: no width bound
    format: str  # Pillow format name
    quality: int = 82

    @property
    def extension(self) -> str:
        return self.name.rsplit(".", 1)[1]

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output size for an (already oriented) source; never upscales."""
        if self.height is not None and height > self.height:
            return max(1, round(width * self.height / height)), self.height
        if self.width is not None and width > self.width:
            return self.width, max(1, round(height * self.width / width))
        return width, height


def parse_variant(name: str) -> Variant:
    match = _NAME.match(name)
    if not match or match["ext"] not in FORMATS:
        raise InvalidVariant(
            f"variant {name!r} is not of the form h<height>.<ext>, w<width>.<ext> or "
            f"full.<ext> with <ext> one of {', '.join(sorted(FORMATS))}"
        )
    size = int(match["size"]) if match["size"] else None
    if size is not None and size > MAX_SIDE:
        raise InvalidVariant(f"variant {name!r}: {size} px is over the {MAX_SIDE} px limit")
    return Variant(
        name=name,
        height=size if match["side"] == "h" else None,
        width=size if match["side"] == "w" else None,
        format=FORMATS[match["ext"]],
    )
