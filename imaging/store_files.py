"""Reading one file of the image store, confined to the store.

A uri handed to the HTTP API (or recorded in an event) is data from outside.
It is opened the way sources are (``imaging.source.open_beneath``: no
symlink followed below the root, in one ``openat2`` or one ``O_NOFOLLOW``
step per component), so neither ``..`` nor a symlink anywhere below the root
can lead out of the store, and no check-then-open race is left for a swapped
link. The descriptor is ``fstat``ed (a regular file, within the size cap)
and read; a name is never opened a second time. Blocking I/O: callers on an
event loop run this in a thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from regen.imaging.source import open_beneath

MAX_URI_CHARS = 1024
MAX_NAME_BYTES = 255  # NAME_MAX on Linux: a longer component cannot exist



class StoreFileError(Exception):
    """A store file that cannot be served; the message quotes the uri."""


class StoreFileMissing(StoreFileError, FileNotFoundError):
    """No such file (or folder on the way) in the store."""


class StoreFileRefused(StoreFileError):
    """The uri or what it names is not a plain file inside the store: an
    absolute path, ``..``, a NUL byte, an over-long name, a symlink, a
    folder, a FIFO or a device."""


class StoreFileTooLarge(StoreFileRefused):
    """A regular file over the caller's size cap."""


def read_store_file(store: Path, uri: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``uri`` (relative, ``/``-separated)
    below ``store``. Raises StoreFileMissing, StoreFileRefused or
    StoreFileTooLarge."""
    names = store_uri_parts(uri)
    try:
        fd = open_beneath(store, names)
    except FileNotFoundError as e:
        raise StoreFileMissing(f"no file {_quoted(uri)} in the image store") from e
    except OSError as e:
        # ELOOP/EXDEV: a symlink; ENOTDIR: a file where a folder was expected.
        raise StoreFileRefused(f"path {_quoted(uri)} is not a plain file in the image store "
                               f"({e.strerror})") from e
    try:
        return _read_regular(fd, uri, max_bytes)
    finally:
        os.close(fd)


def store_uri_parts(uri: str) -> list[str]:
    """The path components of ``uri``, or StoreFileRefused when it could
    name anything outside the store (or nothing at all)."""
    shown = _quoted(uri)
    if not uri:
        raise StoreFileRefused("an empty path names no file in the image store")
    if len(uri) > MAX_URI_CHARS:
        raise StoreFileRefused(f"path {shown} is over {MAX_URI_CHARS} characters")
    if "\x00" in uri:
        raise StoreFileRefused(f"path {shown} contains a NUL byte")
    if uri.startswith("/"):
        raise StoreFileRefused(f"path {shown} is absolute; store paths are relative to the store")
    names = uri.split("/")
    for name in names:
        if name in ("", ".", ".."):
            raise StoreFileRefused(f"path {shown} has an empty, '.' or '..' component")
        try:
            encoded = os.fsencode(name)
        except UnicodeEncodeError:
            raise StoreFileRefused(f"path {shown} is not a valid file name") from None
        if len(encoded) > MAX_NAME_BYTES:
            raise StoreFileRefused(f"path {shown} has a name over {MAX_NAME_BYTES} bytes")
    return names


def _read_regular(fd: int, uri: str, max_bytes: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise StoreFileRefused(f"path {_quoted(uri)} is not a regular file in the image store")
    if info.st_size > max_bytes:
        raise StoreFileTooLarge(f"path {_quoted(uri)}: {info.st_size} bytes is over the {max_bytes}-byte cap")
    chunks, total = [], 0
    # Read to EOF rather than trusting st_size: the file may grow meanwhile.
    while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise StoreFileTooLarge(f"path {_quoted(uri)} grew over the {max_bytes}-byte cap while read")
    return b"".join(chunks)


def _quoted(uri: str, limit: int = 120) -> str:
    return repr(uri) if len(uri) <= limit else repr(uri[:limit]) + "…"
