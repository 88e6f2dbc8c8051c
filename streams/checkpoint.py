"""When a record is delivered, and when its offset is committed: the rules, in order.

regen reads Kafka two ways. Source events, completions, retries and batch
progress go through Faust's consumer (``streams/consumer.py``), which hands
records one at a time to agents and commits the offsets they acked. The two
render lanes and the requests topic are read by an aiokafka consumer each
(``agents/lanes.py``), which takes a batch, handles it and commits it. Every rule below is here
because, without it, a test lost or stalled records; each says why.

Delivery through Faust's consumer (:class:`Sequencer`)

1. A record is handed to the agents only if it is the next offset of its
   partition. Faust otherwise marks the offsets it skipped as a "gap" that
   counts as acked, and the commit moves past records never processed.
   A partition whose next offset is unknown (just assigned, and records
   arrive before recovery has sought it) delivers nothing until recovery's
   seek places it at its committed offset (0 if it has none): delivering
   from wherever the fetcher stood let a record released by the last
   generation (rule 6) be passed over by the commit of the one after it, and
   the fleet test lost one record per partition that way.
2. A seek (recovery seeking to the committed offset, or rule 4) makes every
   record fetched before it stale: such a record is skipped and the partition
   is sought back to the next offset, so it is fetched again in order.
   aiokafka drops what it buffered for a partition on a seek, so a fetch that
   *starts* after the seek holds only records from the new position.
3. In a fetch that started after the partition's last seek, a record further
   on than the next offset is taken as it is: the offsets in between hold no
   record (a transaction's commit or abort marker, compacted records).
   aiokafka delivers a partition's records in order and skips only those, so
   there is nothing to wait for: a transactional publisher costs no stall.
4. Records dropped undelivered (flow suspended for a rebalance; a fetch that
   straddled a rebalance, whose records carry the wrong generation) have
   their partition sought back to the next offset: otherwise the next fetch
   continues after them and rule 3 would take the drop for a marker.
5. Only a delivered record moves the partition's next offset on.

Commits through Faust's consumer

6. An ack counts towards the commit only while the message's generation is
   the consumer's current one and flow is active: the same condition under
   which the stream processed it. Anything else is released (shutdown does
   not wait for it) but fetched and handled again after the rebalance.
7. The offset committed is the lowest record delivered and not yet counted,
   or, when every delivered record is counted, the next offset. Faust's own
   rule (the first run of acked offsets, allowed to start one past the
   committed offset) skipped a released record whenever the record after it
   was counted. A record counts as delivered from the moment it is handed
   over (an agent may ack it before the hand-over returns), and every ack
   must reach the consumer: Faust's compiled stream iterator writes acks
   into the consumer's bookkeeping directly, so it is turned off.

The render lanes and requests (:func:`commit_positions`)

8. A lane partition is read only by the worker that owns the same partition
   of the tables (Faust's assignment of the ``jobs`` changelog), and only
   once that worker's table recovery is complete: rendering writes the job's
   state, and a table partition has one writer.
9. A batch's offsets are committed only after every job in it has its
   outcome acknowledged by the broker (or is dead-lettered): a worker killed
   before that renders the batch again, to the same paths.
10. When Faust revokes partitions, the lane lets the batch in flight finish
    and commits it before the revocation returns, then stops reading until
    the new assignment's recovery is complete. The next owner starts from
    exactly where this one stopped.
11. Reading a partition again (after any rebalance) starts from the committed
    offset, never from the consumer's in-memory position, so records fetched
    but not rendered are never passed over.

The generation lane (:class:`InFlight`)

12. The generation lane keeps several records in flight at once, each
    handled on its own, and fetches the next as soon as one is done: a model
    call of a minute must not hold up the four others of a batch. A
    partition's offset is committed only past records that are done, and
    done in an unbroken run from the committed offset: a record finished
    after a slower one before it waits for that one (rule 9, record by
    record). Rules 10 and 11 hold as for the lanes: on a revocation, or when
    the partitions to read change, the lane fetches nothing more, lets the
    records in flight finish, commits, and only then reassigns.

At-least-once, never at-most-once: every handler in regen is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

P = TypeVar("P")  # a topic partition, whichever client names it


class Verdict(Enum):
    DELIVER = "deliver"  # the next offset (rule 1), or past a real hole (rule 3)
    DUPLICATE = "duplicate"  # below the next offset: delivered already
    STALE = "stale"  # fetched before the partition's last seek (rule 2): seek back, skip
    UNPLACED = "unplaced"  # next offset unknown (rule 1): seek to the committed offset, skip


@dataclass
class Sequencer(Generic[P]):
    """Rules 1-7 as bookkeeping, free of any Kafka client: which records to
    deliver, which to skip, when a partition must be fetched again, and how
    far its commit may go."""

    next_offset: dict[P, int] = field(default_factory=dict)
    # The fetch round during which each partition was last sought.
    sought_in: dict[P, int] = field(default_factory=dict)
    # Delivered records whose ack has not counted yet (rule 7), per partition.
    outstanding: dict[P, set[int]] = field(default_factory=dict)
    round: int = 0

    def fetch_started(self) -> int:
        """A new fetch begins; records it returns carry this round."""
        self.round += 1
        return self.round

    def sought(self, partition: P, offset: int) -> None:
        """The partition's position was set to ``offset`` (rules 1, 2 and 4):
        records from there on will be delivered again."""
        self.next_offset[partition] = offset
        self.sought_in[partition] = self.round
        waiting = self.outstanding.get(partition)
        if waiting:
            self.outstanding[partition] = {o for o in waiting if o < offset}

    def verdict(self, partition: P, offset: int, fetched_in: int) -> Verdict:
        expected = self.next_offset.get(partition)
        if expected is None:
            return Verdict.UNPLACED
        if offset == expected:
            return Verdict.DELIVER
        if offset < expected:
            return Verdict.DUPLICATE
        if fetched_in <= self.sought_in.get(partition, 0):
            return Verdict.STALE
        return Verdict.DELIVER  # rule 3: nothing lives in between

    def delivered(self, partition: P, offset: int) -> None:
        self.next_offset[partition] = offset + 1
        self.outstanding.setdefault(partition, set()).add(offset)

    def counted(self, partition: P, offset: int) -> None:
        """The record's ack counts towards the commit (rule 6)."""
        waiting = self.outstanding.get(partition)
        if waiting:
            waiting.discard(offset)

    def commit_bound(self, partition: P) -> int | None:
        """Rule 7: the offset the partition may commit, or None while it is
        unplaced."""
        expected = self.next_offset.get(partition)
        if expected is None:
            return None
        waiting = self.outstanding.get(partition)
        return min(waiting) if waiting else expected

    def forget(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            self.next_offset.pop(partition, None)
            self.sought_in.pop(partition, None)
            self.outstanding.pop(partition, None)


class Record(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


def commit_positions(records: Iterable[Record]) -> dict[int, int]:
    """Rule 9: per partition, the offset to commit once every record of the
    batch is done: the one after the last record (Kafka's committed offset is
    the next to read)."""
    positions: dict[int, int] = {}
    for record in records:
        positions[record.partition] = max(positions.get(record.partition, 0), record.offset + 1)
    return positions


def lane_partitions(actives: Iterable[tuple[str, int]], jobs_changelog: str) -> frozenset[int]:
    """Rule 8: the lane partitions a worker reads are the numbers of the
    ``jobs`` changelog partitions it owns as active (not as standby)."""
    return frozenset(partition for topic, partition in actives if topic == jobs_changelog)


@dataclass
class InFlight:
    """Rule 12 as bookkeeping: records started and done, per partition, and
    the offset each partition may commit."""

    started_offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> offsets in flight, ascending
    done_offsets: dict[int, set[int]] = field(default_factory=dict)

    def started(self, partition: int, offset: int) -> None:
        self.started_offsets.setdefault(partition, []).append(offset)
        self.started_offsets[partition].sort()

    def done(self, partition: int, offset: int) -> None:
        self.done_offsets.setdefault(partition, set()).add(offset)

    def __len__(self) -> int:
        return sum(len(offsets) for offsets in self.started_offsets.values()) - \
            sum(len(offsets) for offsets in self.done_offsets.values())

    def committable(self) -> dict[int, int]:
        """Per partition whose unbroken run of done records grew: the offset
        to commit (the one after the run). Forgets those records."""
        positions: dict[int, int] = {}
        for partition, offsets in self.started_offsets.items():
            done = self.done_offsets.get(partition, set())
            run = 0
            while run < len(offsets) and offsets[run] in done:
                done.discard(offsets[run])
                run += 1
            if run:
                positions[partition] = offsets[run - 1] + 1
                del offsets[:run]
        return positions

    def clear(self) -> None:
        self.started_offsets.clear()
        self.done_offsets.clear()
