"""Reading one file of the image store, confined to the store.

A uri handed to the HTTP API (or recorded in an event) is data from outside.
It is opened relative to the store root one component at a time, each with
``O_NOFOLLOW``, so neither ``..`` nor a symlink anywhere below the root can
lead out of the store, and no check-then-open race is left for a swapped
link. The descriptor is ``fstat``ed (a regular file, within the size cap)
and read; a name is never opened a second time. Blocking I/O: callers on an
event loop run this in a thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_URI_CHARS = 1024
MAX_NAME_BYTES = 255  # NAME_MAX on Linux: a longer component cannot exist

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
        # The root itself is the operator's setting: it may be a symlink.
        dir_fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        # Not naming the folder: this message may be an HTTP answer.
        raise StoreFileMissing(f"cannot open the image store (REGEN_IMAGE_STORE) for {_quoted(uri)}: "
                               f"{e.strerror}") from e
    try:
        for name in names[:-1]:
            parent_fd, dir_fd = dir_fd, _open_below(name, _OPEN_DIR, parent_fd=dir_fd, uri=uri)
            os.close(parent_fd)
        fd = _open_below(names[-1], _OPEN_FILE, parent_fd=dir_fd, uri=uri)
    finally:
        os.close(dir_fd)
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


def _open_below(name: str, flags: int, parent_fd: int, uri: str) -> int:
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError as e:
        raise StoreFileMissing(f"no file {_quoted(uri)} in the image store") from e
    except OSError as e:
        # ELOOP: a symlink (O_NOFOLLOW); ENOTDIR: a file where a folder was
        # expected; ENXIO and the like: a socket or device.
        raise StoreFileRefused(f"path {_quoted(uri)} is not a plain file in the image store "
                               f"({name!r}: {e.strerror})") from e


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
