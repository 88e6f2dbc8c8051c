"""`regen get`: one request, its answer, and how long it took."""

from __future__ import annotations

import time
from dataclasses import dataclass

from regen.schemas.events import ImageFailed, ImageGenerated, Target
from regen.settings import Settings
from regen.streams.client import ImageClient, RequestTimeout, default_variant
from regen.streams.connection import bootstrap_servers


@dataclass(frozen=True)
class Answer:
    target: Target
    variant: str
    latency_ms: float
    completion: ImageGenerated | ImageFailed | None  # None: timed out
    path: str = ""
    timeout_s: float = 0.0

    @property
    def ok(self) -> bool:
        return isinstance(self.completion, ImageGenerated)

    def to_json(self) -> dict:
        c = self.completion
        row: dict = {"target": str(self.target), "variant": self.variant, "latency_ms": round(self.latency_ms, 1)}
        if isinstance(c, ImageGenerated):
            row.update(status="generated", path=self.path, cache_hit=c.cache_hit, sha256=c.sha256,
                       width=c.width, height=c.height, revision=c.revision, job_id=c.job_id)
        elif isinstance(c, ImageFailed):
            row.update(status="failed", reason=c.reason, error_code=c.error_code, error=c.error,
                       attempts=c.attempts, job_id=c.job_id)
        else:
            row.update(status="timeout", error=f"no answer within {self.timeout_s:g} s")
        return row

    def describe(self) -> str:
        c = self.completion
        took = f"{self.latency_ms:.0f} ms"
        if isinstance(c, ImageGenerated):
            how = "cache hit" if c.cache_hit else f"rendered in {c.render_ms:.0f} ms"
            return f"{self.path}\n{self.target} {self.variant}: {c.width}x{c.height}, {how}, answered in {took}"
        if isinstance(c, ImageFailed):
            return (f"{self.target} {self.variant} failed ({c.reason}, {c.error_code}): {c.error}\n"
                    f"answered in {took}")
        return (f"{self.target} {self.variant}: no answer within {self.timeout_s:g} s; is a worker running "
                f"(`regen worker`) and caught up? Try a longer --wait.")


async def get_image(settings: Settings, kind: str, target_id: str, variant: str | None, wait_s: float,
                    force: bool) -> Answer:
    target = Target(kind, target_id)  # type: ignore[arg-type]
    variant = variant or default_variant(settings, target.kind)
    async with ImageClient(settings, bootstrap_servers(settings), source="regen/cli") as client:
        started = time.monotonic()
        try:
            completion = await client.request(target, variant, force=force, timeout=wait_s)
        except RequestTimeout:
            completion = None
        latency_ms = (time.monotonic() - started) * 1000
    if completion is None:
        return Answer(target, variant, latency_ms, None, timeout_s=wait_s)
    path = str(settings.image_store / completion.uri) if isinstance(completion, ImageGenerated) else ""
    return Answer(target, variant, latency_ms, completion, path=path)
