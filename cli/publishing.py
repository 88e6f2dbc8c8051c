"""The CLI's Kafka side: importing a folder, publishing one event."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
from tqdm import tqdm

from regen.cli.importer import media_files, scan
from regen.kinds import KINDS
from regen.schemas.events import AssetImported, ImageFailed
from regen.schemas.exceptions import SchemaError
from regen.schemas.validation import parse_event
from regen.settings import ENVIRONMENT, Settings
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import ConfigError
from regen.streams.publisher import Publisher
from regen.streams.results import end_offsets, follow_completions
from regen.streams.topics import IMAGES_RESULTS, topic_name

# `regen import --follow` gives up after this long without any completion.
FOLLOW_IDLE_TIMEOUT_S = 300.0


# Imports are published in chunks: one round trip per chunk, not per file.
PUBLISH_CHUNK = 200


async def import_folder(settings: Settings, folder: Path, batch_id: str | None, as_json: bool,
                        follow: bool = False) -> dict:
    real = folder.resolve()
    if not any(real.is_relative_to(Path(r).resolve()) for r in settings.media_roots):
        roots = ", ".join(map(str, settings.media_roots)) or "none configured"
        raise ConfigError(f"{folder} is not inside a media root ({roots}); add it to {ENVIRONMENT['media_roots']} "
                          f"so workers may read it")
    files = media_files(real)
    counts: dict = {"published": 0, "duplicates": 0, "files": len(files), "asset_ids": []}
    interactive = not as_json and sys.stderr.isatty()
    bar = tqdm(total=len(files), unit="file", desc="importing", disable=not interactive, file=sys.stderr)
    bootstrap = bootstrap_servers(settings)
    results_from = await end_offsets(settings, bootstrap, topic_name(settings, IMAGES_RESULTS)) if follow else None
    async with Publisher(settings, bootstrap) as publisher:
        chunk = []
        for scanned in scan(files, settings.media_roots, batch_id):
            if scanned.duplicate_of is None:
                chunk.append(scanned.event)
                counts["asset_ids"].append(scanned.event.asset_id)
            else:
                counts["duplicates"] += 1
            if as_json:
                click.echo(orjson.dumps({
                    "asset_id": scanned.event.asset_id, "path": str(scanned.path), "sha256": scanned.event.sha256,
                    "duplicate": scanned.duplicate_of is not None, "duplicate_of": scanned.duplicate_of,
                }).decode())
            if len(chunk) >= PUBLISH_CHUNK:
                counts["published"] += len(await publisher.publish_many(chunk))
                chunk = []
            bar.update(1)
        if chunk:
            counts["published"] += len(await publisher.publish_many(chunk))
    bar.close()
    if follow:
        outcome = None
        if batch_id:  # a batch has a live stream: its progress comes from a worker (cli/live_follow.py)
            from regen.cli.live_follow import follow_batch_live

            expected = len(counts["asset_ids"]) * len(settings.pregenerate_variants)
            outcome = await follow_batch_live(settings, batch_id, expected, interactive, FOLLOW_IDLE_TIMEOUT_S)
        if outcome is None:
            outcome = await follow_import(settings, bootstrap, counts["asset_ids"], results_from, interactive)
        counts["follow"] = outcome
    return counts


async def follow_import(settings: Settings, bootstrap: str, asset_ids: list[str], start_offsets: dict[int, int] | None,
                        show_bar: bool) -> dict:
    """Wait for every pre-generated variant of the imported assets, with a
    progress bar (rate, ETA); the outcome counts and the failures."""
    # What every kind rendered at once on import makes of these assets.
    following = [k for k in KINDS.values() if AssetImported in k.source_events and k.schedule == "at once"]
    wanted = {(k.name, asset_id, v) for k in following for asset_id in asset_ids for v in k.standing_variants(settings)}
    outcome: dict = {"completed": 0, "failed": 0, "failures": []}
    bar = tqdm(total=len(wanted), unit="image", desc="rendering", disable=not show_bar, file=sys.stderr)
    async for completion in follow_completions(settings, bootstrap, start_offsets=start_offsets,
                                               idle_timeout=FOLLOW_IDLE_TIMEOUT_S):
        key = (completion.target.kind, completion.target.id, completion.variant)
        if key not in wanted:
            continue
        wanted.discard(key)
        bar.update(1)
        if isinstance(completion, ImageFailed):
            outcome["failed"] += 1
            outcome["failures"].append(f"{completion.target.id} {completion.variant}: {completion.reason}: "
                                       f"{completion.error}")
        else:
            outcome["completed"] += 1
        if not wanted:
            break
    bar.close()
    outcome["unfinished"] = len(wanted)
    outcome["via"] = "completions on Kafka"
    return outcome


async def publish_json(settings: Settings, event_type: str, text: str) -> str:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise SchemaError(f"--json is not valid JSON: {e}") from e
    event = parse_event(event_type, body)
    async with Publisher(settings, bootstrap_servers(settings)) as publisher:
        return await publisher.publish(event)
