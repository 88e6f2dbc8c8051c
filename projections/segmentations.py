"""A segmented image's overlay state, and its pure folds.

One row per asset id in the ``segmentations`` table (keyed like the asset,
so it shares the asset's partition): the wanted revision's segmentation and,
per variant, the last outcome of its overlay. Revisions only grow, as for
annotations: an edit older than (or equal to) the wanted one changes
nothing, whatever order events arrive in, and a completion of an older
revision never becomes current.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated

from regen.projections.state import Record, VariantState
from regen.schemas.bounds import MaxItems, Revision, Sha256, Shape, SourcePath
from regen.schemas.events import MAX_POLYGONS, Color, Polygon, SegmentationChanged


@dataclass(frozen=True)
class SegmentationState(Record):
    asset_id: str
    source: SourcePath
    revision: Revision  # the wanted one: the newest SegmentationChanged folded
    changed_at: str
    polygons: Annotated[tuple[Polygon, ...], MaxItems(MAX_POLYGONS)] = ()
    colors: dict[str, Color] | None = None
    source_sha256: Sha256 | None = None
    # variant -> VariantState of its latest overlay (any revision)
    variants: dict[str, Annotated[dict, Shape(VariantState)]] = field(default_factory=dict)
    group_id: str | None = None

    def variant(self, name: str) -> VariantState | None:
        return VariantState.from_dict(self.variants.get(name))

    def settled(self, variant: str) -> bool:
        """Whether the wanted revision of ``variant`` has an outcome (an
        overlay, or a failure for good): nothing to render until a new edit."""
        entry = self.variant(variant)
        return entry is not None and entry.revision == self.revision and entry.status in ("completed", "failed")

    def detail(self) -> dict:
        """What a render job carries for the render process (RenderJob.detail)."""
        return {"polygons": [asdict(p) for p in self.polygons], "colors": self.colors}


def segmentation_changed(state: SegmentationState | None, event: SegmentationChanged, at: str) -> SegmentationState:
    if state is not None and event.revision <= state.revision:
        return state
    return SegmentationState(
        asset_id=event.asset_id, source=event.source, revision=event.revision, changed_at=at,
        polygons=event.polygons, colors=event.colors, source_sha256=event.source_sha256,
        variants=state.variants if state is not None else {}, group_id=event.group_id,
    )

