"""The uri an event carries for a file below a media root.

Opening what an event names is imaging.source's work (once, confined).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from regen.imaging.errors import PathOutsideRoots


def relative_uri(path: Path, media_roots: Sequence[Path]) -> str:
    """The uri an event carries for ``path``: relative to the first root holding it."""
    real = path.resolve()
    for root in media_roots:
        root = Path(root).resolve()
        if real.is_relative_to(root):
            return real.relative_to(root).as_posix()
    raise PathOutsideRoots(f"{path} is not below any media root ({', '.join(map(str, media_roots))})")
