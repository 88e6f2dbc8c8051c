"""Source limits: what regen refuses to decode, whatever an event says."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import SourceTooLarge, StorageError


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 50_000_000
    max_bytes: int = 200 * 1024 * 1024

    def check_file_size(self, path: Path) -> int:
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise StorageError(f"{path.name}: {e.strerror}") from e
        if size > self.max_bytes:
            raise SourceTooLarge(
                f"{path.name}: {size} bytes is over the {self.max_bytes}-byte limit "
                f"(REGEN_MAX_SOURCE_BYTES)"
            )
        return size

    def check_pixels(self, width: int, height: int, what: str) -> None:
        if width <= 0 or height <= 0:
            raise SourceTooLarge(f"{what}: invalid size {width}x{height}")
        if width * height > self.max_pixels:
            raise SourceTooLarge(
                f"{what}: {width}x{height} = {width * height / 1e6:.1f} MP is over the "
                f"{self.max_pixels / 1e6:.1f} MP limit (REGEN_MAX_SOURCE_PIXELS)"
            )
