"""Thumbnails of photos and videos.

The fast path for JPEG: read the EXIF orientation first, let ``thumbnail()``
pick a DCT-scaled decode (``draft``) for the real target box, and transpose the
small result afterwards. Calling ``exif_transpose`` first would force a full
decode of the whole photo and is several times slower.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from regen.imaging.errors import CorruptImage, ResourceLimit, SourceTooLarge, UnsupportedMedia
from regen.imaging.fit import fit_image
from regen.imaging.limits import Limits
from regen.imaging.source import OpenFile, open_local_file
from regen.imaging.variants import Variant

try:  # HEIC/HEIF support is optional at import time so a broken wheel cannot stop JPEG work
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - declared as a dependency
    pillow_heif = None  # type: ignore[assignment]

# Truncated files are errors, never silently grey-padded thumbnails.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that displays the stored pixels upright.
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS_SIDES = {5, 6, 7, 8}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"}


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    width: int
    height: int
    format: str


def render_thumbnail(path: Path, variant: Variant, limits: Limits, media_type: str = "") -> EncodedImage:
    """Render ``variant`` of a file a person named (``regen render``, tests).
    Workers open sources confined to the media roots and call
    :func:`render_thumbnail_of` on the open file. Raises ImagingError."""
    with open_local_file(path, limits) as source:
        return render_thumbnail_of(source, variant, limits, media_type, is_video(path.name, media_type))


def is_video(name: str, media_type: str = "") -> bool:
    return media_type == "video" or (not media_type and Path(name).suffix.lower() in VIDEO_SUFFIXES)


def render_thumbnail_of(source: OpenFile, variant: Variant, limits: Limits, media_type: str = "",
                        video: bool | None = None, data: bytes | None = None) -> EncodedImage:
    """Render ``variant`` of an open source; ``data`` is its bytes if the
    caller already read them (to hash them: the bytes hashed are decoded)."""
    if video if video is not None else is_video(source.name, media_type):
        from regen.imaging.video import first_frame

        image = first_frame(source, limits)
        source.check_unchanged()
        return encode(_shrink(image, variant), variant)
    return encode(thumbnail_image(data if data is not None else source.read_all(), variant, limits,
                                  source.name), variant)


def thumbnail_image(data: bytes | Path, variant: Variant, limits: Limits, name: str = "") -> Image.Image:
    """Decode (DCT-scaled for JPEG), shrink and orient a still image.

    Only a complete decode becomes a thumbnail: every decoder error is
    CorruptImage. For every format but JPEG the full decode happens before
    the EXIF orientation is read, because reading EXIF can itself decode the
    image (a PNG's eXIf chunk may follow its pixels) and Pillow hands a
    second ``load()`` the partial pixels of a failed first one."""
    if isinstance(data, Path):
        with open_local_file(data, limits) as source:
            return thumbnail_image(source.read_all(), variant, limits, source.name)
    return oriented_thumbnail(data, variant, limits, name)[0]


def oriented_thumbnail(data: bytes, variant: Variant, limits: Limits,
                       name: str = "") -> tuple[Image.Image, tuple[int, int]]:
    """:func:`thumbnail_image`, and the size of the whole source as displayed
    (after its EXIF orientation): what an overlay scales its points from."""
    with warnings.catch_warnings():
        # Pillow warns (instead of failing) between 1x and 2x its pixel limit;
        # regen's limit is a hard one.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=limits.image_formats) as im:
                limits.check_pixels(im.width, im.height, name)
                im.seek(0)  # first frame of animations and multi-page files
                scalable = isinstance(im, JpegImageFile)
                if not scalable:
                    im.load()
                orientation = _orientation(im)
                # Fitted as stored, turned upright afterwards: a variant of a
                # photo stored on its side has its sides swapped.
                stored = variant.transposed() if orientation in SWAPS_SIDES else variant
                source_size = im.size
                oriented = (im.height, im.width) if orientation in SWAPS_SIDES else im.size
                if scalable:
                    # DCT-scaled decode to the smallest scale still >= the box:
                    # 2x faster than thumbnail()'s own draft (which asks for
                    # twice the box) at under one grey level of difference.
                    im.draft(None, stored.decode_size(*source_size))
                    im.load()
                # The exact size from the undecoded size, not thumbnail():
                # thumbnail() re-derives the free side from the aspect ratio,
                # which for a rotated photo is the constrained one (h200 came
                # out 199 high).
                small = fit_image(im, stored, source_size)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise SourceTooLarge(f"{name}: {e}") from e
        except UnidentifiedImageError as e:
            raise CorruptImage(f"{name}: not a {'/'.join(limits.image_formats)} image, or damaged "
                               f"(allowed formats: REGEN_IMAGE_FORMATS)") from e
        except MemoryError as e:
            raise ResourceLimit(f"{name}: decoding needs more memory than a render process may use "
                                f"(REGEN_RENDER_MEMORY_MB)") from e
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error) as e:
            # Pillow reports truncated data, bad chunks and decoder failures as
            # OSError/ValueError/SyntaxError; all mean the file is broken.
            raise CorruptImage(f"{name}: cannot decode ({type(e).__name__}: {e})") from e
    transpose = TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return (small.transpose(transpose) if transpose is not None else small), oriented


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF must not lose an otherwise good photo (pixels are decoded apart)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _shrink(im: Image.Image, variant: Variant) -> Image.Image:
    if variant.fit == "inside" and variant.target_size(im.width, im.height) == im.size:
        return im
    return fit_image(im, variant)


def encode(im: Image.Image, variant: Variant) -> EncodedImage:
    """Encode without metadata: no EXIF, XMP or comments reach the output.
    The ICC profile is kept, since dropping it shifts colours of wide-gamut photos."""
    im = _mode_for(im, variant.format)
    buf = io.BytesIO()
    options: dict = {}
    icc = im.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    if variant.format == "JPEG":
        options.update(quality=variant.quality, optimize=False, progressive=False)
    elif variant.format == "WEBP":
        options.update(quality=variant.quality, method=4)
    elif variant.format == "AVIF":
        # One encoder thread: the render processes (REGEN_RENDER_PROCESSES)
        # already keep every core busy. Speed 8 (of 0-10): measured on a
        # 512x512 photo, 2.8x faster than libavif's default 6 for 5% more bytes.
        options.update(quality=variant.quality, speed=8, max_threads=1)
    elif variant.format == "PNG":
        options.update(compress_level=6)
    try:
        im.save(buf, variant.format, **options)
    except (OSError, ValueError) as e:
        raise UnsupportedMedia(f"cannot encode {im.mode} image as {variant.format}: {e}") from e
    return EncodedImage(buf.getvalue(), im.width, im.height, variant.format)


def _mode_for(im: Image.Image, fmt: str) -> Image.Image:
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if fmt == "JPEG":
        if has_alpha:
            rgba = im.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            background.info = im.info
            return background
        return im if im.mode in ("RGB", "L") else _keep_info(im, im.convert("RGB"))
    if has_alpha:
        return im if im.mode == "RGBA" else _keep_info(im, im.convert("RGBA"))
    return im if im.mode in ("RGB", "L") else _keep_info(im, im.convert("RGB"))


def _keep_info(original: Image.Image, converted: Image.Image) -> Image.Image:
    icc = original.info.get("icc_profile")
    if icc and original.mode != "CMYK":  # a CMYK profile would lie about RGB pixels
        converted.info["icc_profile"] = icc
    return converted
