"""Which partitions a worker reads have stopped progressing: a pure core, no Kafka.

A partition once stopped being consumed (committed 99, end 126, the worker
alive and its log quiet) and an operator found out by hand, minutes later.
This decides, from what a worker's readers say at each observation, which
partitions are stalled, so the worker can tell (agents/stall_watch.py).

The rules, in order:

1. Work waits in a partition when its committed offset is below its end
   offset (the highwater: one past the last offset written).
2. Except when only transaction markers remain: a transactional publisher
   ends each transaction with a commit marker, an offset no reader ever
   delivers, so a reader that handled every record commits the marker's
   offset and the partition shows "one behind" until the next record comes,
   which may be never. Offsets the reader has fetched past (its fetch
   position, which the Kafka client moves past markers) while it holds
   nothing fetched and unfinished, and with its commit at its commit bound,
   are such markers (or compacted records): nothing to do. A reader that
   holds records in hand (a batch in flight, records delivered and not yet
   counted) is never excused: that is exactly how a hung handler looks.
3. A partition its reader holds on purpose (background work paused by an
   operator) waits by design: not a stall.
4. A partition in which work waits, whose committed offset has not changed
   and whose reader finished none of its records for ``after_s`` seconds,
   is stalled.
5. A partition resets when its committed offset moves (either way: a rewind
   after a rebalance is a new start too), when its reader finishes one of
   its records (a lane commits a batch once its slowest render is done, so
   a long batch whose renders keep finishing is progressing, not stalled),
   when it catches up, when it is held, and when it leaves the readings
   (moved to another worker). A stall is told once when it begins and once
   when it ends.
6. While the readers could not progress at all (a rebalance, table
   recovery, the broker away), nobody observes; afterwards every partition
   not yet told stalled gets ``after_s`` again from that moment, so an
   outage is not taken for a stall. One already told stays told until it
   moves: the outage did not cure it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class PartitionKey:
    topic: str  # as shown to people: regen's topic suffix, e.g. "render.background"
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True)
class Reading:
    """What a reader says about one partition at one moment."""

    committed: int
    end: int
    # The reader's fetch position: everything below it was fetched. None:
    # unknown, so rule 2 cannot excuse anything.
    fetched_to: int | None = None
    # Records fetched and not finished: a batch in flight, records delivered
    # and not yet counted, or a commit not yet made for counted ones.
    in_hand: bool = False
    held: bool = False  # rule 3
    # Records its reader has finished of the batch in flight this partition
    # is in (the count only grows; rule 5); 0 for a partition in no batch and
    # for readers that commit as they finish: their commits say it.
    finished: int = 0

    def work_waits(self) -> bool:
        """Rules 1 and 2."""
        if self.committed >= self.end:
            return False
        only_markers_left = not self.in_hand and self.fetched_to is not None and self.fetched_to >= self.end
        return not only_markers_left


@dataclass(frozen=True)
class Stall:
    key: PartitionKey
    committed: int
    end: int
    since: float  # when the committed offset was first seen at this value
    in_hand: bool

    @property
    def behind(self) -> int:
        return self.end - self.committed


@dataclass(frozen=True)
class Changes:
    began: list[Stall]
    ended: list[Stall]


@dataclass
class _Watched:
    committed: int
    finished: int
    since: float


@dataclass
class StallDetector:
    after_s: float
    _watched: dict[PartitionKey, _Watched] = field(default_factory=dict)
    _stalled: dict[PartitionKey, Stall] = field(default_factory=dict)

    def observe(self, now: float, readings: Mapping[PartitionKey, Reading]) -> Changes:
        began: list[Stall] = []
        ended: list[Stall] = []
        for key in [k for k in self._watched if k not in readings]:  # rule 5: gone
            self._reset(key, ended)
        for key, reading in readings.items():
            if reading.held or not reading.work_waits():  # rules 1-3
                self._reset(key, ended)
                continue
            watched = self._watched.get(key)
            if watched is None or watched.committed != reading.committed:  # rule 5: moved
                self._reset(key, ended)
                self._watched[key] = _Watched(reading.committed, reading.finished, now)
                continue
            if watched.finished != reading.finished:  # rule 5: a record of it finished
                self._reset(key, ended)
                self._watched[key] = _Watched(reading.committed, reading.finished, now)
                continue
            if now - watched.since < self.after_s:
                continue
            stall = Stall(key, reading.committed, reading.end, watched.since, reading.in_hand)
            if key not in self._stalled:
                began.append(stall)
            self._stalled[key] = stall  # the end offset and what is in hand are kept current
        return Changes(began=sorted(began, key=lambda s: s.key), ended=sorted(ended, key=lambda s: s.key))

    def excuse(self, now: float) -> None:
        """Rule 6: the readers could not progress until ``now``."""
        for key, watched in self._watched.items():
            if key not in self._stalled:
                watched.since = max(watched.since, now)

    def stalled(self) -> list[Stall]:
        return sorted(self._stalled.values(), key=lambda s: s.key)

    def _reset(self, key: PartitionKey, ended: list[Stall]) -> None:
        self._watched.pop(key, None)
        stall = self._stalled.pop(key, None)
        if stall is not None:
            ended.append(stall)


def describe_stall(stall: Stall, reader: str, now: float) -> str:
    """The warning a person reads: what is stuck, how long, and what to do."""
    where = (f"{reader} has records of it in hand that have not finished (a handler or render that does not "
             "return?)" if stall.in_hand else
             f"{reader} has not fetched or handed on the records after it")
    return (f"{stall.key}: committed offset {stall.committed} has not moved for {now - stall.since:.0f} s with "
            f"{stall.behind} records after it (end offset {stall.end}); {where}. Look above in this worker's log "
            "for errors and check GET /health (render_processes); if it does not move again, restart this "
            "worker: another takes the partition over from the committed offset, and nothing is lost")


def describe_recovery(stall: Stall, now: float) -> str:
    return (f"{stall.key}: no longer stalled after {now - stall.since:.0f} s (it moved, caught up, was paused, "
            "or went to another worker)")
