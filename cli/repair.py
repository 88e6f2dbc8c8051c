"""`regen repair`: find outputs that are missing, truncated or changed (and
overlays never rendered or failed), and ask for them again (background
requests; the worker renders them)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from regen.cli.kind_tables import read_kind_tables
from regen.imaging.store import output_problem
from regen.projections.repair import Damage, find_damage
from regen.schemas.events import ImageFailed, ImageGenerated
from regen.settings import Settings
from regen.streams.client import ImageClient
from regen.streams.connection import bootstrap_servers


@dataclass
class RepairReport:
    damage: list[Damage]
    repaired: int = 0
    failed: int = 0
    unanswered: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(d.problem for d in self.damage))

    def to_json(self, dry_run: bool) -> dict:
        row = {"found": len(self.damage), "problems": self.counts(),
               "items": [{"target": str(d.target), "variant": d.variant, "uri": d.uri, "problem": d.problem}
                         for d in self.damage]}
        if not dry_run:
            row.update(repaired=self.repaired, failed=self.failed, unanswered=self.unanswered,
                       seconds=round(self.seconds, 2))
        return row

    def describe(self, dry_run: bool) -> str:
        if not self.damage:
            return "every recorded output is in the store and intact"
        problems = ", ".join(f"{n} {p}" for p, n in sorted(self.counts().items()))
        lines = [f"{len(self.damage)} output(s) to repair: {problems}"]
        if dry_run:
            lines += [f"  {d.problem:12s} {d.target} {d.variant}  {d.uri}".rstrip() for d in self.damage]
            return "\n".join(lines)
        lines.append(f"repaired {self.repaired}, failed {self.failed}"
                     + (f", {self.unanswered} not answered yet" if self.unanswered else "")
                     + f" in {self.seconds:.1f} s")
        lines += [f"  {f}" for f in self.failures[:10]]
        return "\n".join(lines)


async def find(settings: Settings, bootstrap: str, *, video_id: str | None, batch_id: str | None,
               limit: int | None) -> list[Damage]:
    rows = await read_kind_tables(settings, bootstrap)
    check = partial(output_problem, Path(settings.image_store))
    scope = {name: value for name, value in (("video", video_id), ("batch", batch_id)) if value is not None}
    return find_damage(rows, check, settings, scope=scope, limit=limit)


async def repair(settings: Settings, *, dry_run: bool, video_id: str | None = None, batch_id: str | None = None,
                 limit: int | None = None, timeout: float = 3600.0, progress: bool = True) -> RepairReport:
    bootstrap = bootstrap_servers(settings)
    started = time.monotonic()
    report = RepairReport(await find(settings, bootstrap, video_id=video_id, batch_id=batch_id, limit=limit))
    if dry_run or not report.damage:
        return report
    async with ImageClient(settings, bootstrap, source="regen/repair") as client:
        requests = [client.make_request(d.target, d.variant, priority="background", force=d.force)
                    for d in report.damage]
        with tqdm(total=len(requests), desc="repairing", unit=" images", disable=not progress) as bar:
            def counted(completion) -> None:
                bar.update()
                if isinstance(completion, ImageGenerated):
                    report.repaired += 1
                elif isinstance(completion, ImageFailed):
                    report.failed += 1
                    report.failures.append(f"{completion.target} {completion.variant}: {completion.reason}: "
                                           f"{completion.error}")

            report.unanswered = await client.request_all(requests, counted, timeout=timeout)
    report.seconds = time.monotonic() - started
    return report
