"""Source limits: what regen refuses to read or decode, whatever an event says.

Every number here is checked against what the file really is (its ``fstat``
size, each decoded frame's size), never only against what a header claims.
"""

from __future__ import annotations

from dataclasses import dataclass

from regen.imaging.errors import ResourceLimit, SourceTooLarge

# Pillow plugin names regen can be told to allow (Image.open(formats=...)).
KNOWN_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF"})
# FFmpeg demuxers regen can be told to allow, by the short name that appears
# in the demuxer's (comma-separated) name: "mov" is "mov,mp4,m4a,3gp,3g2,mj2".
KNOWN_VIDEO_CONTAINERS = frozenset({"mov", "matroska", "avi", "mpeg", "mpegts"})


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 50_000_000
    max_bytes: int = 200 * 1024 * 1024
    composite_pixels: int = 400_000_000
    decode_seconds: float = 30.0
    image_formats: tuple[str, ...] = tuple(sorted(KNOWN_IMAGE_FORMATS))
    video_containers: tuple[str, ...] = tuple(sorted(KNOWN_VIDEO_CONTAINERS))

    def check_size(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise SourceTooLarge(
                f"{what}: {size} bytes is over the {self.max_bytes}-byte limit (REGEN_MAX_SOURCE_BYTES)"
            )

    def check_pixels(self, width: int, height: int, what: str) -> None:
        if width <= 0 or height <= 0:
            raise SourceTooLarge(f"{what}: invalid size {width}x{height}")
        if width * height > self.max_pixels:
            raise SourceTooLarge(
                f"{what}: {width}x{height} = {width * height / 1e6:.1f} MP is over the "
                f"{self.max_pixels / 1e6:.1f} MP limit (REGEN_MAX_SOURCE_PIXELS)"
            )

    def check_span_pixels(self, frames: int, width: int, height: int, what: str) -> None:
        total = frames * width * height
        if total > self.composite_pixels:
            raise ResourceLimit(
                f"{what}: {frames} frames of {width}x{height} = {total / 1e6:.0f} MP is over the composite "
                f"budget of {self.composite_pixels / 1e6:.0f} MP (REGEN_COMPOSITE_PIXEL_BUDGET); "
                f"crop the span, or lower REGEN_COMPOSITE_MAX_FRAMES"
            )
