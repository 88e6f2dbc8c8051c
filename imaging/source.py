"""Opening a source file named by an event: once, confined, within limits.

An event's path is data from outside, and so is the tree below a media root
(anyone who can write there can plant a symlink or a FIFO, or swap a file
between a check and an open). So a source is never checked by name and then
opened by name. It is opened once, as a descriptor, relative to the media
root's own descriptor, and no symlink is followed on any component below the
root (``openat2`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` where the
kernel has it; otherwise one ``openat`` per component with ``O_NOFOLLOW``).
Then ``fstat`` decides: a regular file within the byte limit, or a folder of
frames. Hashing and decoding read that same descriptor, so the bytes hashed
are the bytes decoded.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Self

from regen.imaging.errors import (
    NotARegularFile,
    PathOutsideRoots,
    SourceChanged,
    SourceMissing,
    StorageError,
    printable,
)
from regen.imaging.limits import Limits

# Longest path an event may name; PATH_MAX is 4096 on Linux.
MAX_URI_CHARS = 4096
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused by
# fstat right after). O_NOCTTY: a terminal device must never become ours.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HASH_CHUNK = 1 << 20
# Called with (root, path parts) right after a source is opened, before a
# byte is read: fault injection swaps the name for a symlink there, so tests
# show deterministically that what was opened is what gets read.
AFTER_OPEN: Callable[[Path, tuple[str, ...]], None] | None = None


@dataclass
class _Held:
    """A descriptor this object owns: closed once, by ``with`` or ``close``."""

    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class OpenFile(_Held):
    """A regular file opened once: read, hash and decode from ``fd`` only."""

    size: int
    name: str  # printable, for messages
    _fingerprint: tuple[int, int, int]

    def read_all(self) -> bytes:
        """The whole file (``size`` is already within the byte limit)."""
        chunks, offset = [], 0
        while offset < self.size:
            block = _pread(self, min(_HASH_CHUNK * 8, self.size - offset), offset)
            if not block:
                break
            chunks.append(block)
            offset += len(block)
        data = b"".join(chunks)
        if len(data) != self.size:
            raise SourceChanged(f"{self.name}: shrank from {self.size} to {len(data)} bytes while being read")
        return data

    def sha256(self) -> str:
        """Hash by reading the descriptor, for sources too big to hold (videos)."""
        digest, offset = hashlib.sha256(), 0
        while offset < self.size:
            block = _pread(self, _HASH_CHUNK, offset)
            if not block:
                break
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def stream(self) -> io.BufferedReader:
        """A file object on the descriptor (for FFmpeg), from the start; it
        does not close the descriptor."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        return open(self.fd, "rb", closefd=False)

    def check_unchanged(self) -> None:
        """Raise SourceChanged if the file was modified in place since it was
        opened: what was hashed may not be what was decoded."""
        if _fingerprint(os.fstat(self.fd)) != self._fingerprint:
            raise SourceChanged(f"{self.name}: modified while being rendered; it will be read again")



@dataclass
class OpenFolder(_Held):
    """A folder of frames opened once; its entries are opened through ``fd``."""

    name: str

    def entries(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as e:
            raise StorageError(f"{self.name}: cannot list ({e.strerror})") from e

    def open_entry(self, entry: str, limits: Limits) -> OpenFile:
        """An entry of this folder, by the same rules as any source: a
        symlinked frame is refused, not followed."""
        if "/" in entry or entry in (".", ".."):
            raise PathOutsideRoots(f"{printable(entry)!r} is not a plain file name")
        what = f"{self.name}/{printable(entry)}"
        try:
            fd = os.open(entry, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as e:
            raise _open_error(e, what) from e
        return _checked_file(fd, what, limits)



def open_source(uri: str, media_roots: Sequence[Path], limits: Limits, *,
                allow_folder: bool = False) -> OpenFile | OpenFolder:
    """Open ``uri`` (relative to a media root, or absolute inside one) below
    the first root that has it; with ``allow_folder``, a folder of frames
    comes back as an OpenFolder (a composite's source). Raises PathOutsideRoots for anything that
    would leave the roots (``..``, a symlink, an absolute path elsewhere),
    SourceMissing if no root has it, NotARegularFile for a FIFO, device or
    (unless ``allow_folder``) folder, SourceTooLarge over the byte limit."""
    if not media_roots:
        raise PathOutsideRoots("no media roots are configured (set REGEN_MEDIA_ROOTS)")
    shown = printable(uri, 200)
    if not uri or "\x00" in uri or len(uri) > MAX_URI_CHARS:
        raise PathOutsideRoots(f"path {shown!r} is empty, too long or contains a NUL byte")
    pure = PurePosixPath(uri)
    if ".." in pure.parts:
        raise PathOutsideRoots(f"path {shown!r} contains '..'; paths must stay inside the media roots")
    roots = [Path(r).resolve() for r in media_roots]
    attempts = [(root, _below(pure, root)) for root in roots] if pure.is_absolute() else \
        [(root, pure.parts) for root in roots]
    attempts = [(root, parts) for root, parts in attempts if parts is not None]
    if not attempts:
        raise PathOutsideRoots(f"path {shown!r} is outside the media roots ({', '.join(map(str, roots))})")
    for root, parts in attempts:
        try:
            fd = open_beneath(root, parts)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise _open_error(e, shown) from e
        if AFTER_OPEN is not None:
            AFTER_OPEN(root, tuple(parts))
        return _checked(fd, shown, limits, allow_folder)
    raise SourceMissing(f"no file {shown!r} under the media roots ({', '.join(map(str, roots))})")


def open_local(path: Path, limits: Limits, allow_folder: bool = True) -> OpenFile | OpenFolder:
    """A file or frame folder a person named on the command line (``regen
    render``): theirs to name, so symlinks are followed; still one
    descriptor, a regular file within the byte limit, or a folder."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise _open_error(e, printable(str(path))) from e
    return _checked(fd, printable(path.name), limits, allow_folder)


def open_local_file(path: Path, limits: Limits) -> OpenFile:
    opened = open_local(path, limits, allow_folder=False)
    assert isinstance(opened, OpenFile)
    return opened


def _below(path: PurePosixPath, root: Path) -> tuple[str, ...] | None:
    """The parts of absolute ``path`` below ``root``, or None if not under it."""
    try:
        return path.relative_to(PurePosixPath(root)).parts
    except ValueError:
        return None


def _checked(fd: int, what: str, limits: Limits, allow_folder: bool) -> OpenFile | OpenFolder:
    try:
        info = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise StorageError(f"{what}: {e.strerror}") from e
    if stat.S_ISDIR(info.st_mode) and allow_folder:
        return OpenFolder(fd, what)  # a read-only descriptor serves openat and listdir alike
    return _checked_file(fd, what, limits, info)


def _checked_file(fd: int, what: str, limits: Limits, info: os.stat_result | None = None) -> OpenFile:
    try:
        info = info or os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{what}: is a {_file_type(info.st_mode)}, not a regular file")
        limits.check_size(info.st_size, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return OpenFile(fd, info.st_size, what, _fingerprint(info))


def open_beneath(root: Path, parts: Sequence[str]) -> int:
    """A read-only descriptor of ``root/parts...``, no symlink followed below
    ``root`` (``root`` itself may be one: it is configuration). Raises OSError."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not parts:
            return os.dup(root_fd)  # the root itself: a folder, refused unless frames are wanted
        if _openat2_works():
            return _openat2(root_fd, "/".join(parts), _FILE_FLAGS)
        return _walk_open(root_fd, parts, _FILE_FLAGS)
    finally:
        os.close(root_fd)


def _walk_open(root_fd: int, parts: Sequence[str], flags: int) -> int:
    """One component at a time, none of them a symlink: the portable
    equivalent of openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) once '..'
    is ruled out."""
    current = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                following = os.open(part, _DIR_FLAGS, dir_fd=current)
            except NotADirectoryError:
                # O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a symlink: say what it is.
                if stat.S_ISLNK(os.stat(part, dir_fd=current, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, "a symlink", part) from None
                raise
            os.close(current)
            current = following
        return os.open(parts[-1], flags, dir_fd=current)
    finally:
        os.close(current)


# --- openat2(2) through ctypes: Python has no wrapper for it. -------------

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x02, 0x04, 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_openat2_state: list[bool] = []  # [works?] once probed
FORCE_COMPONENT_WALK = False  # tests set it to exercise the fallback


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path)
    fd = _libc.syscall(_SYS_OPENAT2, dir_fd, encoded, ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def _openat2_works() -> bool:
    if FORCE_COMPONENT_WALK:
        return False
    if not _openat2_state:
        try:
            root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.close(_openat2(root, ".", _DIR_FLAGS))
            finally:
                os.close(root)
            _openat2_state.append(True)
        except OSError:  # ENOSYS before Linux 5.6, EPERM under some seccomp filters
            _openat2_state.append(False)
    return _openat2_state[0]


def _open_error(e: OSError, what: str) -> Exception:
    if e.errno == errno.ENOENT:
        return SourceMissing(f"{what}: no such file under the media roots")
    if e.errno in (errno.ELOOP, errno.EXDEV):
        return PathOutsideRoots(f"{what}: a symlink below the media root; symlinks are not followed there")
    if e.errno == errno.ENOTDIR:
        return NotARegularFile(f"{what}: a component of the path is not a folder")
    if e.errno == errno.ENAMETOOLONG:
        return PathOutsideRoots(f"{what}: a name in the path is too long")
    return StorageError(f"{what}: {e.strerror}")


def _pread(f: OpenFile, size: int, offset: int) -> bytes:
    try:
        return os.pread(f.fd, size, offset)
    except OSError as e:
        raise StorageError(f"{f.name}: cannot read ({e.strerror})") from e


def _fingerprint(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "special file"
