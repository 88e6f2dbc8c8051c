"""Internal records of the store's lifecycle (topic ``outputs.references``).

Every record is keyed by the output's store uri, so everything said about
one file meets in one partition and has one writer: the worker owning it
(agents/lifecycle.py). Holders are named, not counted ("thumbnail:a1/h400.jpg"),
so a duplicate or a replayed record changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from regen.schemas.bounds import ShortText, StorePath
from regen.schemas.events import Event


@dataclass(frozen=True)
class OutputReferenced(Event):
    """A target's state now records this output (a render folded, a new span's composite)."""

    ce_type: ClassVar[str] = "dev.regen.OutputReferenced.v1"
    uri: StorePath
    holder: ShortText  # "<kind>:<target id>/<slot>", slot a variant or "answer"
    at: float  # seconds since the epoch, on the worker that saw the change

    @property
    def key(self) -> str:
        return self.uri


@dataclass(frozen=True)
class OutputReleased(Event):
    """A target's state no longer records this output (superseded, re-imported, failed)."""

    ce_type: ClassVar[str] = "dev.regen.OutputReleased.v1"
    uri: StorePath
    holder: ShortText
    at: float

    @property
    def key(self) -> str:
        return self.uri


@dataclass(frozen=True)
class OutputCollectDue(Event):
    """A worker's GC timer found this output without a holder for longer
    than the grace period; the agent owning the uri decides again, in order
    with every reference before it, and deletes the file."""

    ce_type: ClassVar[str] = "dev.regen.OutputCollectDue.v1"
    uri: StorePath
    released_at: float  # the release the timer saw: a newer one means it was held again meanwhile

    @property
    def key(self) -> str:
        return self.uri


OUTPUT_RECORDS: tuple[type[Event], ...] = (OutputReferenced, OutputReleased, OutputCollectDue)
