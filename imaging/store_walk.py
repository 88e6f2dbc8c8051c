"""Walking and deleting files of the image store, confined to the store.

A uri to delete comes from a record on a topic (untrusted): it is checked
like any store uri (``store_uri_parts``: relative, no ``..``, no NUL), and
the folders on the way are opened one at a time with ``O_NOFOLLOW`` from
the store's own descriptor, so no symlink anywhere below the store can lead
a deletion out of it. Only a regular file is unlinked (a symlink, folder,
FIFO or device named by a uri is left alone), then the folders it leaves
empty, up to but not including the store's top folders. Walks never follow
symlinks either. Blocking I/O: callers on an event loop use a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regen.imaging.store_files import StoreFileRefused, store_uri_parts

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OTHER = "other"  # what a file outside every kind's folder is counted as


@dataclass(frozen=True)
class StoreFile:
    uri: str  # relative to the store, "/"-separated
    bytes: int
    mtime: float


@dataclass
class Usage:
    """Files and bytes of the store per kind."""

    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, size: int) -> None:
        self.files[kind] = self.files.get(kind, 0) + 1
        self.bytes[kind] = self.bytes.get(kind, 0) + size


def remove_store_file(store: Path, uri: str) -> int | None:
    """Delete the regular file ``uri`` below ``store`` and the folders it
    leaves empty. Returns its size, or None if it was not there. Raises
    StoreFileRefused for a uri that could name anything outside the store
    or something other than a regular file."""
    names = store_uri_parts(uri)
    folders = _open_folders(store, names[:-1])
    if folders is None:
        return None
    try:
        parent = folders[-1]
        try:
            info = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise StoreFileRefused(f"{uri!r} is not a regular file in the image store; not deleted")
        try:
            os.unlink(names[-1], dir_fd=parent)
        except FileNotFoundError:
            return None  # another collector was first
        # Empty folders go too, deepest first; the top folder (a kind's) stays.
        for depth in range(len(names) - 2, 0, -1):
            try:
                os.rmdir(names[depth], dir_fd=folders[depth])
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY):
                    break
                raise
        return info.st_size
    finally:
        for fd in folders:
            os.close(fd)


def _open_folders(store: Path, names: list[str]) -> list[int] | None:
    """Descriptors of the store and each folder of ``names`` in turn (the
    caller closes them), or None if one is missing."""
    fds = [os.open(store, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for name in names:
            try:
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
            except FileNotFoundError:
                for fd in fds:
                    os.close(fd)
                return None
            except OSError as e:  # ELOOP / ENOTDIR: a symlink or a file where a folder should be
                raise StoreFileRefused(f"{name!r} on the way is not a plain folder of the image store "
                                       f"({e.strerror})") from e
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    return fds


def walk_store(store: Path) -> Iterator[StoreFile]:
    """Every regular file below ``store``; symlinks are neither followed nor listed."""
    pending = [("", store)]
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # removed meanwhile, or unreadable: nothing of ours to count
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            uri = f"{prefix}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((f"{uri}/", Path(entry.path)))
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    yield StoreFile(uri, info.st_size, info.st_mtime)
            except OSError:
                continue


def kind_of(uri: str, folders: Mapping[str, str]) -> str:
    """The kind whose folder (top folder -> kind name) holds ``uri``."""
    return folders.get(uri.split("/", 1)[0], OTHER)


def usage(store: Path, folders: Mapping[str, str]) -> Usage:
    found = Usage()
    for name in folders.values():
        found.files.setdefault(name, 0)
        found.bytes.setdefault(name, 0)
    for file in walk_store(store):
        found.add(kind_of(file.uri, folders), file.bytes)
    return found
