"""Fault injection for tests of the failure paths, off unless configured.

``REGEN_FAULT_HANG_PATTERN`` makes a render whose source path contains the
pattern hang the way a stuck decoder does, so the timeout that kills and
replaces the render process can be tested end to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class HangIf:
    """A picklable wrapper around a render function (it crosses to the pool)."""

    pattern: str
    render: Callable[[Any], Any]

    def __call__(self, task: Any) -> Any:
        if self.pattern and self.pattern in task.source_uri:
            time.sleep(24 * 3600)
        return self.render(task)
