"""Groups: any set of targets followed as one (a case's 14 generated images,
an import batch). Pure: state in, state out.

A member is one standing variant of one target. Members are announced from
their targets' partitions as GroupMemberChanged events keyed by the group
(``member_changes``), and folded here into the group's row, in the group's
partition (``member_changed``). A group's status:

- pending: no member has finished yet;
- generating: some have, not all;
- completed / partial / failed: every member finished, and none / some /
  all of them failed.

"Every member" is the declared total (GroupDeclared) if there is one, else
the members announced so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from regen.kinds.base import Completion, Kind
from regen.projections.instants import epoch
from regen.projections.state import Record
from regen.schemas.bounds import Count, ErrorText, Revision, Shape, StorePath
from regen.schemas.events import GroupDeclared, GroupFinished, GroupProgress, GroupStatus, ImageGenerated, Target
from regen.schemas.jobs import GroupMemberChanged
from regen.settings import Settings

MemberStatus = Literal["pending", "completed", "failed"]
FINISHED_STATUSES = frozenset({"completed", "partial", "failed"})


@dataclass(frozen=True)
class Member(Record):
    target: str  # kind:id
    variant: str
    revision: Revision
    status: MemberStatus
    at: str
    uri: StorePath | None = None
    error: ErrorText | None = None


@dataclass(frozen=True)
class GroupState(Record):
    group_id: str
    members: dict[str, Annotated[dict, Shape(Member)]] = field(default_factory=dict)
    declared_total: Count | None = None
    label: str | None = None
    webhook_url: str | None = None
    started_at: str | None = None  # the first member's announcement
    finished_at: str | None = None  # when every member had finished (None while not)
    updated_at: str | None = None  # the last change of any member: what "stuck" measures
    refused: Count = 0  # members past REGEN_GROUP_MAX_MEMBERS, not kept

    def member(self, name: str) -> Member | None:
        return Member.from_dict(self.members.get(name))

    def counts(self) -> dict[str, int]:
        statuses = [m.get("status") for m in self.members.values()]
        completed, failed = statuses.count("completed"), statuses.count("failed")
        total = max(self.declared_total or 0, len(statuses))
        return {"total": total, "completed": completed, "failed": failed, "pending": total - completed - failed}

    @property
    def status(self) -> GroupStatus:
        c = self.counts()
        if c["total"] == 0 or c["completed"] + c["failed"] == 0:
            return "pending"
        if c["pending"] > 0:
            return "generating"
        if c["failed"] == 0:
            return "completed"
        return "failed" if c["completed"] == 0 else "partial"


# --- announcing members, in the targets' partitions -------------------------------

def member_changes(kind: Kind, target_id: str, before: Any, after: Any, settings: Settings,
                   at: str) -> list[GroupMemberChanged]:
    """A source event folded into a target of a group: each standing variant
    is a member, pending at the target's revision. Said again on a
    redelivered event (the group's fold ignores what it already knows): a
    crash between the table write and the send must not lose a member."""
    group_id = kind.group(after)
    if group_id is None:
        return []
    if before is not None and kind.group(before) == group_id and kind.revision(before) == kind.revision(after) \
            and kind.schedule == "when idle":
        return []  # an unchanged "when idle" target: intake does not fold it again
    target = Target(kind.name, target_id)
    return [GroupMemberChanged(group_id=group_id, target=target, variant=variant, revision=kind.revision(after),
                               status="pending", at=at)
            for variant in kind.standing_variants(settings)]


def member_finished(kind: Kind, state: Any, completion: Completion, settings: Settings) -> GroupMemberChanged | None:
    """A completion of a group member's standing variant (a request for
    another variant of the target is not the group's business)."""
    group_id = kind.group(state)
    if group_id is None or completion.variant not in kind.standing_variants(settings):
        return None
    if isinstance(completion, ImageGenerated):
        return GroupMemberChanged(group_id=group_id, target=completion.target, variant=completion.variant,
                                  revision=completion.revision, status="completed", at=completion.generated_at,
                                  uri=completion.uri)
    return GroupMemberChanged(group_id=group_id, target=completion.target, variant=completion.variant,
                              revision=completion.revision, status="failed", at=completion.failed_at,
                              error=f"{completion.error_code}: {completion.error}"[:2000])


# --- folding, in the group's partition -----------------------------------------------

def group_declared(state: GroupState | None, event: GroupDeclared) -> GroupState:
    base = state or GroupState(group_id=event.group_id)
    changed = base.evolve(declared_total=event.total, label=event.label, webhook_url=event.webhook_url)
    return _refinish(changed, event.declared_at) if changed != base else base


def member_changed(state: GroupState | None, change: GroupMemberChanged, max_members: int) -> GroupState:
    """The same object back if the change tells nothing new.

    A newer revision resets a member to pending (its target changed); an
    older one is ignored. At the same revision a member never goes back to
    pending (a redelivered source event after the render finished), and the
    latest finish wins (a failed member asked for again and now rendered)."""
    base = state or GroupState(group_id=change.group_id)
    name = change.member
    current = base.member(name)
    if current is None and name not in base.members and len(base.members) >= max_members:
        return base.evolve(refused=base.refused + 1)
    if current is not None:
        if change.revision < current.revision:
            return base
        if change.revision == current.revision:
            if change.status == "pending" or (change.status == current.status and change.uri == current.uri
                                              and change.error == current.error):
                return base
    member = Member(target=str(change.target), variant=change.variant, revision=change.revision,
                    status=change.status, at=change.at, uri=change.uri, error=change.error)
    changed = base.evolve(members={**base.members, name: member.to_dict()},
                          started_at=base.started_at or change.at, updated_at=change.at)
    return _refinish(changed, change.at)


def _refinish(state: GroupState, at: str) -> GroupState:
    finished = state.status in FINISHED_STATUSES
    if finished and state.finished_at is None:
        return state.evolve(finished_at=at)
    if not finished and state.finished_at is not None:
        return state.evolve(finished_at=None)  # reopened: a member changed again, or the total grew
    return state


# --- what a change tells the world ---------------------------------------------------

def progress_of(state: GroupState, at: str) -> GroupProgress:
    c = state.counts()
    return GroupProgress(group_id=state.group_id, status=state.status, total=c["total"], completed=c["completed"],
                         failed=c["failed"], pending=c["pending"], started_at=state.started_at,
                         finished_at=state.finished_at, at=at)


def finished_of(state: GroupState) -> GroupFinished:
    c = state.counts()
    members = [(name, Member.from_dict(row)) for name, row in sorted(state.members.items())]
    return GroupFinished(
        group_id=state.group_id, status=state.status, total=c["total"], completed=c["completed"], failed=c["failed"],
        started_at=state.started_at, finished_at=state.finished_at or state.updated_at or "",
        outputs={name: m.uri for name, m in members if m is not None and m.status == "completed" and m.uri},
        failures=tuple({"member": name, "target": m.target, "variant": m.variant, "error": m.error or ""}
                       for name, m in members if m is not None and m.status == "failed"))


def announcements(before: GroupState | None, after: GroupState, at: str) -> list[GroupProgress | GroupFinished]:
    """Progress whenever the counts or status moved; GroupFinished when the
    group has just finished (again, if it was reopened)."""
    if before is not None and before.counts() == after.counts() and before.status == after.status:
        return []
    said: list[GroupProgress | GroupFinished] = [progress_of(after, at)]
    if after.finished_at is not None and (before is None or before.finished_at is None):
        said.append(finished_of(after))
    return said


def stuck_groups(groups: Iterable[GroupState], now: float, stuck_after: float) -> list[tuple[GroupState, float]]:
    """Unfinished groups whose members have not changed for ``stuck_after``
    seconds, with how long."""
    stuck = []
    for group in groups:
        since = epoch(group.updated_at)
        if group.finished_at is None and since is not None and now - since > stuck_after:
            stuck.append((group, now - since))
    return stuck


def group_answer(state: GroupState) -> dict:
    """What GET /groups/{id} answers."""
    c = state.counts()
    members = [(name, Member.from_dict(row)) for name, row in sorted(state.members.items())]
    return {
        "group_id": state.group_id, "label": state.label, "status": state.status, **c,
        "started_at": state.started_at, "finished_at": state.finished_at, "updated_at": state.updated_at,
        "outputs": {name: m.uri for name, m in members if m is not None and m.status == "completed"},
        "failures": [{"member": name, "target": m.target, "variant": m.variant, "error": m.error}
                     for name, m in members if m is not None and m.status == "failed"],
        "members": {name: {"status": m.status, "revision": m.revision, "at": m.at}
                    for name, m in members if m is not None},
        "refused_members": state.refused,
        "webhook": state.webhook_url is not None,
    }
