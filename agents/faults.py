"""Fault injection for tests of the failure paths, off unless configured.

``REGEN_FAULT_HANG_PATTERN`` makes a render whose source path contains the
pattern hang the way a stuck decoder does, so the timeout that kills and
replaces the render process can be tested end to end.

``REGEN_FAULT_SWAP_TO`` replaces every source, right after the render
process opened it, with a symlink to the named file: the check-then-open
race an attacker would try, made certain instead of lucky.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HangIf:
    """A picklable wrapper around a render function (it crosses to the pool)."""

    pattern: str
    render: Callable[[Any], Any]

    def __call__(self, task: Any) -> Any:
        if self.pattern and self.pattern in task.source_uri:
            time.sleep(24 * 3600)
        return self.render(task)


@dataclass(frozen=True)
class SwapAfterOpen:
    """A picklable wrapper that installs the swap in the render process."""

    target: str
    render: Callable[[Any], Any]

    def __call__(self, task: Any) -> Any:
        from regen.imaging import source

        source.AFTER_OPEN = self._swap
        try:
            return self.render(task)
        finally:
            source.AFTER_OPEN = None

    def _swap(self, root: Path, parts: tuple[str, ...]) -> None:
        path = root.joinpath(*parts)
        link = path.with_name(f".{path.name}.swap")
        os.symlink(self.target, link)
        os.replace(link, path)  # atomic: the name now points outside
