"""Video pending counts: a composite's dirty-flag changes, re-keyed by video
(``annotations.dirty``), folded into the per-video set of stale
annotations, whose size is the pending count."""

from __future__ import annotations

import time

from regen.agents.context import WorkerContext
from regen.agents.handling import register_event_agent
from regen.projections import folds
from regen.projections.state import VideoState
from regen.schemas.jobs import DirtyFlag
from regen.streams.topics import ANNOTATIONS_DIRTY


def register_videos(ctx: WorkerContext) -> None:
    register_event_agent(ctx, ANNOTATIONS_DIRTY, "video-pending", on_dirty_flag)


async def on_dirty_flag(ctx: WorkerContext, flag: DirtyFlag) -> None:
    table = ctx.tables.videos
    before = VideoState.from_dict(table.get(flag.video_id))
    after = folds.video_flagged(before, flag, time.time())
    if after is not before:
        table[flag.video_id] = after.to_dict()
