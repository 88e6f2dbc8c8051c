"""Every topic regen owns, named in one place.

Source topics carry what publishers send; render lanes carry internal jobs;
``images.results`` carries completions; ``deadletter`` carries what could not
be processed. All of them have ``settings.partitions`` partitions so Faust
tables can be co-partitioned with every topic that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from regen.schemas.events import (
    AssetImported,
    BoundaryChanged,
    Event,
    GenerationRequested,
    ImageFailed,
    ImageGenerated,
    ImageRequested,
)
from regen.schemas.jobs import BatchShard, DirtyFlag, RenderJob
from regen.settings import Settings

# Completion events are kept for replay; a week of render jobs is plenty to
# recover from any outage, and they can be re-derived from the source topics.
FOREVER = -1
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    event_types: tuple[type[Event], ...]
    retention_ms: int = FOREVER
    description: str = ""


ASSETS_IMPORTED = TopicSpec("assets.imported", (AssetImported,), description="AssetImported from publishers")
BOUNDARIES_CHANGED = TopicSpec("annotations.boundaries", (BoundaryChanged,),
                               description="BoundaryChanged from publishers")
IMAGES_REQUESTED = TopicSpec("images.requested", (ImageRequested,), description="ImageRequested from publishers")
GENERATIONS_REQUESTED = TopicSpec("generations.requested", (GenerationRequested,),
                                  description="GenerationRequested from publishers")
IMAGES_RESULTS = TopicSpec("images.results", (ImageGenerated, ImageFailed), description="ImageGenerated / ImageFailed")
RENDER_INTERACTIVE = TopicSpec("render.interactive", (RenderJob,), WEEK_MS, "render jobs someone waits for")
RENDER_BACKGROUND = TopicSpec("render.background", (RenderJob,), WEEK_MS, "pre-generation and idle composites")
# Jobs whose render first waits on a call outside regen (an image model, up
# to a minute): a lane of their own, read with several jobs in flight, so
# they never hold up the interactive or background lane (agents/generation_lane.py).
RENDER_GENERATION = TopicSpec("render.generation", (RenderJob,), WEEK_MS, "jobs waiting on an external image model")
RENDER_RETRY = TopicSpec("render.retry", (RenderJob,), WEEK_MS, "jobs waiting out a retry delay")
ANNOTATIONS_DIRTY = TopicSpec("annotations.dirty", (DirtyFlag,), description="dirty flag flips, keyed by video")
BATCH_PROGRESS = TopicSpec("batches.progress", (BatchShard,), WEEK_MS,
                           "per-partition progress of import batches, keyed by batch")
DEADLETTER = TopicSpec("deadletter", (), FOREVER, "events that could not be processed, with the reason")

ALL_TOPICS = (
    ASSETS_IMPORTED,
    BOUNDARIES_CHANGED,
    IMAGES_REQUESTED,
    IMAGES_RESULTS,
    RENDER_INTERACTIVE,
    RENDER_BACKGROUND,
    RENDER_GENERATION,
    RENDER_RETRY,
    ANNOTATIONS_DIRTY,
    BATCH_PROGRESS,
    DEADLETTER,
    GENERATIONS_REQUESTED,
)
SOURCE_TOPICS = (ASSETS_IMPORTED, BOUNDARIES_CHANGED, IMAGES_REQUESTED, GENERATIONS_REQUESTED)
TOPIC_FOR_EVENT: dict[type[Event], TopicSpec] = {
    AssetImported: ASSETS_IMPORTED,
    BoundaryChanged: BOUNDARIES_CHANGED,
    ImageRequested: IMAGES_REQUESTED,
    ImageGenerated: IMAGES_RESULTS,
    ImageFailed: IMAGES_RESULTS,
    RenderJob: RENDER_BACKGROUND,
    DirtyFlag: ANNOTATIONS_DIRTY,
    BatchShard: BATCH_PROGRESS,
    GenerationRequested: GENERATIONS_REQUESTED,
}


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return settings.topic(spec.suffix)


def partition_for(key: str, partitions: int) -> int:
    """The partition a keyed event lands in: Kafka's default partitioner
    (murmur2 of the key bytes), which Faust's producer, aiokafka's and Java
    clients use alike, and which the README asks other publishers to use."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
