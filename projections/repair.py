"""Which recorded outputs need rendering again. Pure, given a checker for one output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from regen.projections.state import AnnotationState, AssetState
from regen.schemas.events import Target

# (uri, bytes, sha256) -> "missing" | "truncated" | "changed" | None
Checker = Callable[[str, int, str], "str | None"]


@dataclass(frozen=True)
class Damage:
    target: Target
    variant: str
    uri: str
    problem: str


def find_damage(assets: dict[str, dict], annotations: dict[str, dict], check: Checker, *,
                composite_variant: str, video_id: str | None = None, batch_id: str | None = None,
                limit: int | None = None) -> list[Damage]:
    """Completed thumbnails and current composites whose file is not what was
    recorded. ``video_id`` keeps one video's composites, ``batch_id`` one
    import batch's thumbnails."""
    found: list[Damage] = []

    def inspect(target: Target, variant: str, output: dict | None) -> None:
        if not output:
            return
        problem = check(output["uri"], output["bytes"], output["sha256"])
        if problem is not None:
            found.append(Damage(target, variant, output["uri"], problem))

    if video_id is None:
        for asset_id, value in sorted(assets.items()):
            asset = AssetState.from_dict(value)
            if asset is None or (batch_id is not None and asset.batch_id != batch_id):  # None: malformed row
                continue
            for variant, entry in sorted(asset.variants.items()):
                if entry.get("status") == "completed":
                    inspect(Target("thumbnail", asset_id), variant, entry.get("output"))
    if batch_id is None:
        for annotation_id, value in sorted(annotations.items()):
            annotation = AnnotationState.from_dict(value)
            if annotation is None or (video_id is not None and annotation.video_id != video_id):
                continue
            inspect(Target("composite", annotation_id), composite_variant, annotation.output)
    return found[:limit] if limit is not None else found
