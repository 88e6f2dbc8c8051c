"""What a replay asks for: from source events, the current targets and variants.

Pure: the caller reads the topics and publishes the requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from regen.projections.repair import Checker
from regen.projections.state import AnnotationState, AssetState
from regen.schemas.events import AssetImported, BoundaryChanged, Event, Target


@dataclass(frozen=True)
class ReplayItem:
    target: Target
    variant: str


def replay_items(events: Iterable[Event], *, thumbnail_variants: tuple[str, ...], composite_variant: str,
                 only_variants: tuple[str, ...] = ()) -> list[ReplayItem]:
    """One item per target and variant, for the target's latest state: the
    last import of each asset, the highest revision of each annotation.

    ``only_variants`` restricts a replay (say, to a variant just added):
    thumbnails get exactly those, composites only if their variant is named.
    """
    assets: dict[str, AssetImported] = {}
    annotations: dict[str, BoundaryChanged] = {}
    for event in events:
        if isinstance(event, AssetImported):
            assets[event.asset_id] = event
        elif isinstance(event, BoundaryChanged):
            known = annotations.get(event.annotation_id)
            if known is None or event.revision > known.revision:
                annotations[event.annotation_id] = event
    thumbnails = only_variants or thumbnail_variants
    items = [ReplayItem(Target("thumbnail", asset_id), v) for asset_id in assets for v in thumbnails]
    if not only_variants or composite_variant in only_variants:
        items += [ReplayItem(Target("composite", annotation_id), composite_variant) for annotation_id in annotations]
    return items


def intact_in_store(item: ReplayItem, assets: dict[str, dict], annotations: dict[str, dict], check: Checker,
                    composite_variant: str) -> bool:
    """Whether the projections record an output for the item's current
    revision and the file is there with that size and sha256: a replay can
    skip it without asking a worker."""
    if item.target.kind == "thumbnail":
        asset = AssetState.from_dict(assets.get(item.target.id))
        entry = asset.variant(item.variant) if asset is not None else None
        if entry is None or entry.status != "completed" or entry.revision != asset.revision:
            return False
        output = entry.output
    else:
        annotation = AnnotationState.from_dict(annotations.get(item.target.id))
        if (annotation is None or annotation.dirty or item.variant != composite_variant
                or annotation.rendered_revision != annotation.wanted_revision):
            return False
        output = annotation.output
    return bool(output) and check(output["uri"], output["bytes"], output["sha256"]) is None
