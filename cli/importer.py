"""Scanning a folder into AssetImported events (no Kafka here)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from regen.imaging.paths import relative_uri
from regen.imaging.store import sha256_file
from regen.imaging.thumbnails import VIDEO_SUFFIXES
from regen.schemas.events import AssetImported
from regen.streams.codec import now_iso

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}
EXIF_IFD, DATETIME_ORIGINAL = 0x8769, 0x9003


@dataclass(frozen=True)
class ScannedFile:
    path: Path
    event: AssetImported
    duplicate_of: str | None  # asset_id of an earlier file with the same content


def media_files(folder: Path) -> list[Path]:
    """Photos and videos below ``folder``, in a stable order; hidden files skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if not name.startswith(".") and (suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def asset_id_for(uri: str) -> str:
    """Stable per path: importing the same folder twice names the same assets."""
    return "a" + hashlib.sha256(uri.encode()).hexdigest()[:19]


def scan(files: Sequence[Path], media_roots: Sequence[Path], batch_id: str | None) -> Iterator[ScannedFile]:
    by_sha: dict[str, str] = {}
    for path in files:
        uri = relative_uri(path, media_roots)
        sha = sha256_file(path)
        suffix = path.suffix.lower()
        event = AssetImported(
            asset_id=asset_id_for(uri), uri=uri, media_type="video" if suffix in VIDEO_SUFFIXES else "image",
            sha256=sha, size_bytes=path.stat().st_size, imported_at=now_iso(), batch_id=batch_id,
            captured_at=None if suffix in VIDEO_SUFFIXES else exif_capture_time(path),
        )
        duplicate_of = by_sha.get(sha)
        by_sha.setdefault(sha, event.asset_id)
        yield ScannedFile(path, event, duplicate_of)


def exif_capture_time(path: Path) -> str | None:
    """EXIF DateTimeOriginal as ISO 8601 (local time, no zone: EXIF has none)."""
    try:
        with Image.open(path) as im:
            raw = im.getexif().get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)
    except Exception:  # unreadable EXIF is not a reason to skip a file
        return None
    if not isinstance(raw, str) or len(raw) < 19:
        return None
    date, _, time = raw.strip().partition(" ")
    return f"{date.replace(':', '-')}T{time}" if time else None
