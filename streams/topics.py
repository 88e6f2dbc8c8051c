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
    CONTROL_COMMANDS,
    AssetImported,
    BoundaryChanged,
    CancelRequested,
    DeadLettersRedriven,
    Event,
    GenerationRequested,
    GroupDeclared,
    GroupFinished,
    GroupProgress,
    ImageFailed,
    ImageGenerated,
    ImageRequested,
    RetryFailed,
    SegmentationChanged,
    Stuck,
)
from regen.schemas.jobs import BatchShard, DirtyFlag, GroupMemberChanged, RenderJob
from regen.schemas.outputs import OutputCollectDue, OutputReferenced, OutputReleased
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
    consumed: bool = True  # False: regen only writes it (alerts, for operators' tools)


ASSETS_IMPORTED = TopicSpec("assets.imported", (AssetImported,), description="AssetImported from publishers")
BOUNDARIES_CHANGED = TopicSpec("annotations.boundaries", (BoundaryChanged,),
                               description="BoundaryChanged from publishers")
SEGMENTATIONS_CHANGED = TopicSpec("segmentations.changed", (SegmentationChanged,),
                                  description="SegmentationChanged from publishers")
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
GROUPS_DECLARED = TopicSpec("groups.declared", (GroupDeclared,), description="GroupDeclared from publishers")
GROUP_MEMBERS = TopicSpec("groups.members", (GroupMemberChanged,), WEEK_MS,
                          "a group member became pending or finished, keyed by group")
GROUP_PROGRESS = TopicSpec("groups.progress", (GroupProgress, GroupFinished),
                           description="GroupProgress / GroupFinished, keyed by group (webhooks read it)")
# Which targets hold each store file, keyed by the file's uri (agents/lifecycle.py).
OUTPUT_REFERENCES = TopicSpec("outputs.references", (OutputReferenced, OutputReleased, OutputCollectDue), WEEK_MS,
                              "store outputs referenced, released and due for collection, keyed by uri")
ALERTS = TopicSpec("alerts", (Stuck,), description="Stuck jobs and groups, for operators' tools", consumed=False)
DEADLETTER = TopicSpec("deadletter", (), FOREVER, "events that could not be processed, with the reason",
                       consumed=False)
# Operator commands (agents/control.py). ``control`` is public: the CLI and
# the admin API publish there, and replaying it reproduces what was done.
# Each command that touches rows is copied to every partition of
# ``control.partitions`` (as many partitions as the tables, so Faust gives
# partition p to the owner of the tables' partition p), which applies it to
# its own rows.
CONTROL = TopicSpec("control", CONTROL_COMMANDS,
                    description="operator commands: retry, cancel, pause/resume background, redrive dead letters")
CONTROL_PARTITIONS = TopicSpec("control.partitions", (RetryFailed, CancelRequested, DeadLettersRedriven), WEEK_MS,
                               "each operator command copied to every partition, applied there by its owner")

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
    GROUPS_DECLARED,
    GROUP_MEMBERS,
    GROUP_PROGRESS,
    ALERTS,
    DEADLETTER,
    SEGMENTATIONS_CHANGED,
    GENERATIONS_REQUESTED,
    CONTROL,
    CONTROL_PARTITIONS,
    OUTPUT_REFERENCES,
)
SOURCE_TOPICS = (ASSETS_IMPORTED, BOUNDARIES_CHANGED, IMAGES_REQUESTED, SEGMENTATIONS_CHANGED, GENERATIONS_REQUESTED)
TOPIC_FOR_EVENT: dict[type[Event], TopicSpec] = {
    AssetImported: ASSETS_IMPORTED,
    BoundaryChanged: BOUNDARIES_CHANGED,
    ImageRequested: IMAGES_REQUESTED,
    ImageGenerated: IMAGES_RESULTS,
    ImageFailed: IMAGES_RESULTS,
    RenderJob: RENDER_BACKGROUND,
    DirtyFlag: ANNOTATIONS_DIRTY,
    BatchShard: BATCH_PROGRESS,
    GroupDeclared: GROUPS_DECLARED,
    GroupMemberChanged: GROUP_MEMBERS,
    GroupProgress: GROUP_PROGRESS,
    GroupFinished: GROUP_PROGRESS,
    Stuck: ALERTS,
    SegmentationChanged: SEGMENTATIONS_CHANGED,
    GenerationRequested: GENERATIONS_REQUESTED,
    **{command: CONTROL for command in CONTROL_COMMANDS},
    OutputReferenced: OUTPUT_REFERENCES,
    OutputReleased: OUTPUT_REFERENCES,
    OutputCollectDue: OUTPUT_REFERENCES,
}


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return settings.topic(spec.suffix)


def partition_for(key: str, partitions: int) -> int:
    """The partition a keyed event lands in: Kafka's default partitioner
    (murmur2 of the key bytes), which Faust's producer, aiokafka's and Java
    clients use alike, and which the README asks other publishers to use."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
