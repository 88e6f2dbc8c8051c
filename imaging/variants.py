"""Named output presets.

A variant's name says what it is: ``h400.webp`` is 400 px high (width by
aspect ratio), ``w800.jpg`` is 800 px wide, ``full.png`` keeps the source
size (none of these upscales), and ``512x512.jpg`` is exactly 512 x 512,
scaled to cover the box and cropped about the centre. Anything else (another
fit, a quality) is a preset: a plain name (``card``) defined in settings
(REGEN_PRESETS) as ``<size>[,<fit>],<format>[,q<quality>]``. Only variants
named in settings may be requested, so the image store stays bounded.

Fits of a ``WxH`` size (imaging/fit.py renders them):

- ``cover``: fills WxH exactly, cropping the overflow about the centre; a
  smaller source is scaled up (the output is WxH whatever the source).
- ``cover-entropy``: as cover, the crop placed where the image has the most
  detail (greyscale entropy along the long axis).
- ``contain``: the whole image scaled to fit inside WxH (up or down), padded
  to exactly WxH: transparent for png, webp and avif, white for jpg.
- ``inside``: the whole image scaled down to fit inside WxH, no padding,
  never upscaled (the output may be smaller than WxH on either side).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace

from regen.imaging.errors import InvalidVariant

FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "png": "PNG", "avif": "AVIF"}
LOSSY = frozenset({"JPEG", "WEBP", "AVIF"})
# The same visual quality costs AVIF a lower number than JPEG or WebP.
DEFAULT_QUALITY = {"JPEG": 82, "WEBP": 82, "AVIF": 60}
FITS = ("cover", "cover-entropy", "contain", "inside")
DEFAULT_FIT = "cover"  # of a WxH name: "512x512" reads as exactly that size
_NAME = re.compile(r"^(?:(?P<side>[hw])(?P<size>[1-9][0-9]{0,4})|(?P<w>[1-9][0-9]{0,4})x(?P<h>[1-9][0-9]{0,4})|full)"
                   r"\.(?P<ext>[a-z]+)$")
_SIZE = re.compile(r"^(?:(?P<side>[hw])(?P<size>[1-9][0-9]{0,4})|(?P<w>[1-9][0-9]{0,4})x(?P<h>[1-9][0-9]{0,4})|full)$")
_QUALITY = re.compile(r"^q(?P<q>[0-9]{1,3})$")
# A preset's name: no dot, so it can never be mistaken for a name that says what it is.
PRESET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
# Past this a "thumbnail" is not one, and a typo like h40000 would ask for a huge image.
MAX_SIDE = 8192
# Output pixels of a WxH variant (cover and contain allocate all of them):
# 40 MP is 8192 x 4883, 160 MB as RGBA.
MAX_PIXELS = 40_000_000
# Part of a preset's digest: bump it when a fit's algorithm changes what it
# renders, so stored outputs of the old algorithm are not served as current.
FIT_VERSION = 1
SYNTAX = "<W>x<H>|h<H>|w<W>|full[,cover|cover-entropy|contain|inside],jpg|webp|png|avif[,q<1-100>]"


@dataclass(frozen=True)
class Variant:
    name: str
    height: int | None  # None: no height bound
    width: int | None  # None: no width bound
    format: str  # Pillow format name
    quality: int = 82
    # "inside" for h/w/full (never upscales); a WxH size may have any of FITS.
    fit: str = "inside"
    # Of a preset: its definition, normalised ("512x512,cover,jpg,q80"); "" otherwise.
    preset: str = ""
    ext: str = ""  # of a preset, the file extension; others carry it in the name

    @property
    def extension(self) -> str:
        return self.ext or self.name.rsplit(".", 1)[1]

    @property
    def exact(self) -> bool:
        """Whether the output is exactly width x height (cover, contain)."""
        return self.fit in ("cover", "cover-entropy", "contain")

    @property
    def file_name(self) -> str:
        """The name of its output in the store. A preset's carries a digest of
        its definition: redefining ``card`` renders to a new file instead of
        finding the old one (store paths stay deterministic)."""
        if not self.preset:
            return self.name
        digest = hashlib.sha256(f"fit{FIT_VERSION}|{self.preset}".encode()).hexdigest()[:10]
        return f"{self.name}.{digest}.{self.extension}"

    def transposed(self) -> Variant:
        """The same variant for an image stored on its side (EXIF 5-8)."""
        return replace(self, width=self.height, height=self.width)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output size for an (already oriented) source."""
        if self.exact:
            assert self.width is not None and self.height is not None
            return self.width, self.height
        if self.width is not None and self.height is not None:  # inside: the binding side, never upscaled
            if width <= self.width and height <= self.height:
                return width, height
            if self.width * height <= self.height * width:
                return self.width, max(1, round(height * self.width / width))
            return max(1, round(width * self.height / height)), self.height
        if self.height is not None and height > self.height:
            return max(1, round(width * self.height / height)), self.height
        if self.width is not None and width > self.width:
            return self.width, max(1, round(height * self.width / width))
        return width, height

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The smallest size the whole source may be decoded at (a JPEG's
        DCT-scaled draft) without losing resolution the output needs."""
        if self.fit not in ("cover", "cover-entropy"):
            if self.fit == "contain":
                assert self.width is not None and self.height is not None
                scale = min(self.width / width, self.height / height)
                return max(1, round(width * scale)), max(1, round(height * scale))
            return self.target_size(width, height)
        assert self.width is not None and self.height is not None
        scale = max(self.width / width, self.height / height)
        return min(width, math.ceil(width * scale)), min(height, math.ceil(height * scale))


def parse_variant(name: str, preset: str = "") -> Variant:
    """The variant a name stands for; ``preset`` is its definition when the
    name is a preset's (REGEN_PRESETS), "" for a name that says what it is."""
    if preset:
        return parse_preset(name, preset)
    match = _NAME.match(name)
    if not match or match["ext"] not in FORMATS:
        raise InvalidVariant(
            f"variant {name!r} is not of the form h<height>.<ext>, w<width>.<ext>, <width>x<height>.<ext> or "
            f"full.<ext> with <ext> one of {', '.join(sorted(FORMATS))}, nor a preset defined in REGEN_PRESETS"
        )
    where = f"variant {name!r}"
    width, height = _size(where, match)
    fmt = _format(where, match["ext"])
    return Variant(name=name, height=height, width=width, format=fmt, quality=DEFAULT_QUALITY.get(fmt, 82),
                   fit=DEFAULT_FIT if match["w"] else "inside")


def parse_preset(name: str, spec: str) -> Variant:
    """``card`` defined as ``512x512,cover,jpg,q80``: size first, then the
    fit, format and quality in any order (each at most once)."""
    where = f"preset {name}={spec!r}"
    if not PRESET_NAME.match(name):
        raise InvalidVariant(f"preset name {name!r} must be 1-40 of a-z, 0-9, '_' and '-', starting with a "
                             f"letter (no dot: names with one say what they are, like h400.jpg)")
    tokens = [t.strip().lower() for t in spec.split(",")]
    match = _SIZE.match(tokens[0])
    if not match:
        raise InvalidVariant(f"{where}: starts with {tokens[0]!r}, not a size; write {name}={SYNTAX}, "
                             f"e.g. {name}=512x512,cover,jpg,q80")
    width, height = _size(where, match)
    fit = ext = quality = None
    for token in tokens[1:]:
        q = _QUALITY.match(token)
        if token in FITS:
            fit = _once(where, "fit", fit, token)
        elif token in FORMATS:
            ext = _once(where, "format", ext, token)
        elif q:
            quality = _once(where, "quality", quality, int(q["q"]))
            if not 1 <= quality <= 100:
                raise InvalidVariant(f"{where}: quality {token} is out of range; write q1 to q100")
        else:
            raise InvalidVariant(f"{where}: {token!r} is not a fit ({', '.join(FITS)}), a format "
                                 f"({', '.join(sorted(FORMATS))}) or a quality (q1-q100); write {name}={SYNTAX}")
    if ext is None:
        raise InvalidVariant(f"{where}: names no format; add one of {', '.join(sorted(FORMATS))}, "
                             f"e.g. {name}={tokens[0]},{fit or DEFAULT_FIT},jpg")
    fmt = _format(where, ext)
    if fit is not None and fit != "inside" and width is None:
        raise InvalidVariant(f"{where}: fit {fit} needs both sides; write <W>x<H>,{fit} (h<H>, w<W> and full "
                             f"never crop, pad nor upscale)")
    if quality is not None and fmt not in LOSSY:
        raise InvalidVariant(f"{where}: {ext} is lossless, q{quality} would change nothing; remove it")
    fit = fit or (DEFAULT_FIT if width is not None and height is not None else "inside")
    quality = quality if quality is not None else DEFAULT_QUALITY.get(fmt, 82)
    canonical = ",".join([tokens[0], fit, "jpg" if ext == "jpeg" else ext] + ([f"q{quality}"] if fmt in LOSSY else []))
    return Variant(name=name, height=height, width=width, format=fmt, quality=quality, fit=fit,
                   preset=canonical, ext=ext)


def parse_presets(text: str) -> dict[str, str]:
    """``card=512x512,cover,jpg,q80;hero=1600x900,cover-entropy,avif,q60``
    as {name: definition}, each definition checked."""
    presets: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        name, sep, spec = (part.strip() for part in entry.partition("="))
        if not sep or not spec:
            raise InvalidVariant(f"{entry!r} is not <name>=<definition>; write e.g. card=512x512,cover,jpg,q80 "
                                 f"(presets separated by ';')")
        if name in presets:
            raise InvalidVariant(f"preset {name!r} is defined twice; keep one definition")
        parse_preset(name, spec)
        presets[name] = spec
    return presets


def _size(where: str, match: re.Match) -> tuple[int | None, int | None]:
    if match["w"]:
        width, height = int(match["w"]), int(match["h"])
        if max(width, height) > MAX_SIDE:
            raise InvalidVariant(f"{where}: {max(width, height)} px is over the {MAX_SIDE} px limit")
        if width * height > MAX_PIXELS:
            raise InvalidVariant(f"{where}: {width}x{height} is {width * height:,} pixels, over the "
                                 f"{MAX_PIXELS:,} limit; ask for a smaller size")
        return width, height
    size = int(match["size"]) if match["size"] else None
    if size is not None and size > MAX_SIDE:
        raise InvalidVariant(f"{where}: {size} px is over the {MAX_SIDE} px limit")
    return (size if match["side"] == "w" else None), (size if match["side"] == "h" else None)


def _format(where: str, ext: str) -> str:
    fmt = FORMATS[ext]
    if fmt == "AVIF" and not avif_available():
        raise InvalidVariant(f"{where}: this machine's Pillow cannot write AVIF (PIL.features.check('avif') is "
                             f"False); install a Pillow wheel with AVIF (11.3 or later) or choose webp")
    return fmt


def avif_available() -> bool:
    from PIL import features  # only where an avif variant is named: settings load without Pillow otherwise

    return bool(features.check("avif"))


def _once(where: str, what: str, current, value):
    if current is not None:
        raise InvalidVariant(f"{where}: two {what}s ({current}, {value}); keep one")
    return value


def from_another_definition(uri: str, variant: Variant) -> bool:
    """Whether a stored output ``uri`` of this preset's name was rendered
    from an earlier definition of it (its file name carries another digest):
    such a file is intact but must not answer a request any more."""
    if not variant.preset:
        return False
    file_name = uri.rsplit("/", 1)[-1]
    earlier = re.fullmatch(rf"{re.escape(variant.name)}\.[0-9a-f]{{10}}\.[a-z]+", file_name)
    return earlier is not None and file_name != variant.file_name
