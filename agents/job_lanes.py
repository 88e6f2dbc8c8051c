"""The topic a render job travels on."""

from __future__ import annotations

from regen.kinds import KINDS
from regen.schemas.jobs import RenderJob
from regen.streams.topics import RENDER_BACKGROUND, RENDER_GENERATION, RENDER_INTERACTIVE, TopicSpec


def lane_topic(job: RenderJob) -> TopicSpec:
    """Jobs of a kind that calls out (an image model) go to the generation
    lane whoever waits for them: a minute-long call must not take a slot of
    the lanes thumbnails and requests share. The others by their lane."""
    kind = KINDS.get(job.target.kind)
    if kind is not None and kind.calls_out:
        return RENDER_GENERATION
    return RENDER_INTERACTIVE if job.lane == "interactive" else RENDER_BACKGROUND
