"""Groups: members' changes folded by group, progress and completion told
on ``groups.progress``, stuck groups told on ``alerts``.

Members are announced from their targets' partitions (intake, projector:
``announce_members``/``announce_finished``) re-keyed by group, so a group's
row has one writer: the worker owning the group's partition. Its progress
events are keyed by group too, which is what puts each group's webhooks on
one worker (agents/webhooks.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.agents.timers import guarded_timer
from regen.kinds.base import Completion, Kind
from regen.projections import groups
from regen.projections.groups import GroupState
from regen.schemas.events import GroupDeclared, Stuck
from regen.schemas.jobs import GroupMemberChanged
from regen.streams.codec import now_iso
from regen.streams.topics import ALERTS, GROUP_MEMBERS, GROUP_PROGRESS, GROUPS_DECLARED

log = logging.getLogger(__name__)

# Member changes are quick table updates; batched like intake's.
MEMBERS_BATCH = 200


@dataclass
class StuckMemory:
    """Groups already reported stuck, by the change they are stuck at: said
    once an episode, again only after the group moves and sticks again."""

    reported: dict[str, str | None] = field(default_factory=dict)


def register_groups(ctx: WorkerContext) -> StuckMemory:
    register_event_agent(ctx, GROUPS_DECLARED, "group-declared", on_group_declared)
    register_event_agent(ctx, GROUP_MEMBERS, "group-members", on_member_changed, batch=MEMBERS_BATCH)
    memory = StuckMemory()
    interval = max(1.0, min(30.0, ctx.settings.group_stuck_after / 4))

    @guarded_timer(ctx, interval, "group-watch")
    async def group_watch():
        if ctx.app.tables.recovery.completed.is_set():
            await report_stuck_groups(ctx, memory)

    return memory


async def announce_members(ctx: WorkerContext, kind: Kind, target_id: str, before: Any, after: Any) -> None:
    for change in groups.member_changes(kind, target_id, before, after, ctx.settings, now_iso()):
        await ctx.emit(GROUP_MEMBERS, change)


async def announce_finished(ctx: WorkerContext, kind: Kind, state: Any, completion: Completion) -> None:
    change = groups.member_finished(kind, state, completion, ctx.settings)
    if change is not None:
        await ctx.emit(GROUP_MEMBERS, change)


async def on_group_declared(ctx: WorkerContext, event: GroupDeclared) -> None:
    before = GroupState.from_dict(ctx.tables.groups.get(event.group_id))
    await _store(ctx, before, groups.group_declared(before, event))


async def on_member_changed(ctx: WorkerContext, change: GroupMemberChanged) -> None:
    before = GroupState.from_dict(ctx.tables.groups.get(change.group_id))
    after = groups.member_changed(before, change, ctx.settings.group_max_members)
    if after.refused != (before.refused if before else 0):
        log.warning("group %s is full (%d members, REGEN_GROUP_MAX_MEMBERS): %s not kept", change.group_id,
                    len(after.members), change.member)
    await _store(ctx, before, after)


async def _store(ctx: WorkerContext, before: GroupState | None, after: GroupState) -> None:
    if after is before:
        return
    ctx.tables.groups[after.group_id] = after.to_dict()
    for told in groups.announcements(before, after, now_iso()):
        await ctx.emit(GROUP_PROGRESS, told)
    if after.finished_at is not None and (before is None or before.finished_at is None):
        log.info("group %s %s: %s", after.group_id, after.status,
                 ", ".join(f"{n} {k}" for k, n in after.counts().items()))


async def report_stuck_groups(ctx: WorkerContext, memory: StuckMemory) -> None:
    now = time.time()
    rows = (GroupState.from_dict(v) for v in ctx.tables.groups.values())
    stuck = groups.stuck_groups((g for g in rows if g is not None), now, ctx.settings.group_stuck_after)
    ctx.metrics.stuck_groups.set(len(stuck))
    still = {}
    for group, idle_s in stuck:
        still[group.group_id] = group.updated_at
        if memory.reported.get(group.group_id, "") == group.updated_at:
            continue
        log.warning("group %s stuck: %s, no member changed for %.0f s", group.group_id, group.status, idle_s)
        await ctx.emit(ALERTS, Stuck(subject="group", id=group.group_id, status=group.status,
                                     since=group.updated_at, stuck_for_s=round(idle_s, 1), at=now_iso()))
    memory.reported = still
