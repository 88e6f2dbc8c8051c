"""The image store: deterministic output paths and atomic writes.

Paths depend only on what is rendered (the source's content hash and the
variant), so a duplicate event, a retry or a replay writes the same path with
the same bytes instead of a second file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from regen.imaging.errors import StorageError


def thumbnail_path(store: Path, source_sha256: str, variant_name: str) -> Path:
    return store / "thumbnails" / source_sha256[:2] / source_sha256 / variant_name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror}") from e
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a partial one.

    1. write to a temporary file in the same directory (same filesystem),
    2. fsync it, so the bytes are on disk before the name points at them,
    3. rename over the target (atomic on POSIX),
    4. fsync the directory, so the rename itself survives a power cut.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror}") from e
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Temporary files of earlier attempts at this output that were killed
    mid-write. (A concurrent duplicate render losing its temporary file fails
    with a retriable error and then finds the finished output.)"""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass


def composite_path(store: Path, span_digest: str, variant_name: str) -> Path:
    return store / "composites" / span_digest[:2] / span_digest / variant_name


def overlay_path(store: Path, overlay_digest: str, variant_name: str) -> Path:
    return store / "overlays" / overlay_digest[:2] / overlay_digest / variant_name


# Largest output a check will read: far above any variant regen renders
# (a full-size PNG composite is tens of MB), so a forged completion claiming
# gigabytes cannot make a check read them.
MAX_OUTPUT_BYTES = 256 * 1024 * 1024


def output_problem(store: Path, uri: str, size: int, sha256: str) -> str | None:
    """What is wrong with a recorded output in the store: "missing",
    "truncated" (shorter than recorded), "changed" (other bytes),
    "unreadable" (not a plain file inside the store: a uri that leaves it, a
    symlink, a FIFO or device), or None. Opened confined to the store, never
    by a path a completion event could point elsewhere. Blocking: callers on
    an event loop run it in a thread."""
    from regen.imaging.store_files import StoreFileMissing, StoreFileRefused, StoreFileTooLarge, read_store_file

    try:
        data = read_store_file(store, uri, max_bytes=min(max(size, 0), MAX_OUTPUT_BYTES))
    except StoreFileMissing:
        return "missing"
    except StoreFileTooLarge:
        return "changed"
    except (StoreFileRefused, OSError):
        return "unreadable"
    if len(data) < size:
        return "truncated"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "changed"
    return None
