"""Confining event paths to the configured media roots.

A path in an event is data from outside. It must name a file below one of the
media roots after every symlink is resolved: no ``..``, no absolute path
elsewhere, no link that points out.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Sequence

from imaging.errors import PathOutsideRoots, SourceMissing


def resolve_media_path(uri: str, media_roots: Sequence[Path]) -> Path:
    """Return the real path of the file ``uri`` (relative to a media root, or
    absolute inside one). Raises PathOutsideRoots, or SourceMissing if no root has it."""
    return _resolve(uri, media_roots, Path.is_file)


def resolve_media_dir_or_file(uri: str, media_roots: Sequence[Path]) -> Path:
    """Like resolve_media_path, for a source that may be a folder of frames."""
    return _resolve(uri, media_roots, Path.exists)


def _resolve(uri: str, media_roots: Sequence[Path], accept) -> Path:
    if not media_roots:
        raise PathOutsideRoots("no media roots are configured (set REGEN_MEDIA_ROOTS)")
    if not uri or "\x00" in uri:
        raise PathOutsideRoots(f"path {uri!r} is empty or contains a NUL byte")
    pure = PurePosixPath(uri)
    if ".." in pure.parts:
        raise PathOutsideRoots(f"path {uri!r} contains '..'; paths must stay inside the media roots")
    roots = [Path(r).resolve() for r in media_roots]
    candidates = [Path(uri)] if pure.is_absolute() else [root / uri for root in roots]
    inside_any = False
    for candidate in candidates:
        real = candidate.resolve()
        root = next((r for r in roots if real.is_relative_to(r)), None)
        if root is None:
            continue
        inside_any = True
        if accept(real):
            return real
    if not inside_any:
        raise PathOutsideRoots(
            f"path {uri!r} resolves outside the media roots ({', '.join(map(str, roots))})"
        )
    raise SourceMissing(f"no file {uri!r} under the media roots ({', '.join(map(str, roots))})")


def relative_uri(path: Path, media_roots: Sequence[Path]) -> str:
    """The uri an event carries for ``path``: relative to the first root holding it."""
    real = path.resolve()
    for root in media_roots:
        root = Path(root).resolve()
        if real.is_relative_to(root):
            return real.relative_to(root).as_posix()
    raise PathOutsideRoots(f"{path} is not below any media root ({', '.join(map(str, media_roots))})")
