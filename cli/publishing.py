"""The CLI's Kafka side: importing a folder, publishing one event."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
from tqdm import tqdm

from cli.importer import media_files, scan
from schemas.exceptions import SchemaError
from schemas.validation import parse_event
from streams.connection import bootstrap_servers
from streams.exceptions import ConfigError
from streams.publisher import Publisher
from streams.settings import ENVIRONMENT, Settings


async def import_folder(settings: Settings, folder: Path, batch_id: str | None, as_json: bool) -> dict:
    real = folder.resolve()
    if not any(real.is_relative_to(Path(r).resolve()) for r in settings.media_roots):
        roots = ", ".join(map(str, settings.media_roots)) or "none configured"
        raise ConfigError(f"{folder} is not inside a media root ({roots}); add it to {ENVIRONMENT['media_roots']} "
                          f"so workers may read it")
    files = media_files(real)
    counts: dict = {"published": 0, "duplicates": 0, "files": len(files), "asset_ids": []}
    bar = tqdm(total=len(files), unit="file", desc="importing", disable=as_json or not sys.stderr.isatty(),
               file=sys.stderr)
    async with Publisher(settings, bootstrap_servers(settings)) as publisher:
        for scanned in scan(files, settings.media_roots, batch_id):
            if scanned.duplicate_of is None:
                await publisher.publish(scanned.event)
                counts["published"] += 1
                counts["asset_ids"].append(scanned.event.asset_id)
            else:
                counts["duplicates"] += 1
            if as_json:
                click.echo(orjson.dumps({
                    "asset_id": scanned.event.asset_id, "path": str(scanned.path), "sha256": scanned.event.sha256,
                    "duplicate": scanned.duplicate_of is not None, "duplicate_of": scanned.duplicate_of,
                }).decode())
            bar.update(1)
    bar.close()
    return counts


async def publish_json(settings: Settings, event_type: str, text: str) -> str:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise SchemaError(f"--json is not valid JSON: {e}") from e
    event = parse_event(event_type, body)
    async with Publisher(settings, bootstrap_servers(settings)) as publisher:
        return await publisher.publish(event)
