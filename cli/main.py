"""The `regen` command line.

Thin on purpose: it parses arguments, calls the library, and prints through
the pure functions in ``cli.format``. Every operational error is a RegenError
(or an ImagingError/SchemaError) caught once in ``main``: a one-line message
and exit 1. Usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click
import orjson

from regen.cli import format as fmt
from regen.imaging.errors import ImagingError
from regen.kinds import KINDS
from regen.kinds.base import Kind
from regen.log_limits import limit_repeats
from regen.schemas.events import EVENT_TYPES
from regen.schemas.exceptions import SchemaError
from regen.settings import ENVIRONMENT, Settings
from regen.streams.codec import WRITTEN_BY_REGEN
from regen.streams.exceptions import RegenError

EXIT_ERROR = 1


def _settings() -> Settings:
    return Settings.from_env()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="regen", prog_name="regen")
def cli() -> None:
    """regen keeps derived images (thumbnails, median composites) in step
    with their sources, as an event-sourced stream processor on Kafka.

    \b
    First time here?   regen demo         (broker, worker, sample import, summary)
    Day to day:        regen broker start; regen worker; regen import DIR
    An image, now:     regen get thumbnail ASSET_ID;  regen get composite ANNOTATION_ID
    Look things up:    regen status asset ID;  regen config

    Settings come from environment variables; `regen config` lists them all.
    """


# --- broker ----------------------------------------------------------------

@cli.group()
def broker() -> None:
    """Run a local single-node Kafka (KRaft) from Maven Central jars.

    Not needed when KAFKA_BOOTSTRAP_SERVERS names a broker of yours.
    """


@broker.command("start")
def broker_start() -> None:
    """Start the local broker (fetching its jars once) and print its address."""
    from regen.streams import local_broker

    settings = _settings()
    info = local_broker.start(settings.state_dir, progress=lambda m: click.echo(m, err=True))
    click.echo(f"Kafka is running at {info.bootstrap} (pid {info.pid}, log {info.log_file})")


@broker.command("stop")
def broker_stop() -> None:
    """Stop the local broker and delete its data."""
    from regen.streams import local_broker

    info = local_broker.stop(_settings().state_dir)
    click.echo("no local broker was running" if info is None else f"stopped the broker at {info.bootstrap}")


@broker.command("restart")
@click.option("--kill", is_flag=True, help="SIGKILL it instead of a clean shutdown (a crash).")
def broker_restart(kill: bool) -> None:
    """Restart the local broker keeping its data (topics, offsets, groups)."""
    from regen.streams import local_broker

    info = local_broker.restart(_settings().state_dir, progress=lambda m: click.echo(m, err=True), kill=kill)
    click.echo(f"Kafka is running again at {info.bootstrap} (pid {info.pid})")


@broker.command("status")
def broker_status() -> None:
    """Say whether the local broker is running, and where. Exit 1 if not."""
    from regen.streams import local_broker

    info = local_broker.find_running(_settings().state_dir)
    if info is None:
        raise RegenError("no local broker is running (start one with `regen broker start`)")
    click.echo(f"running at {info.bootstrap} (pid {info.pid}, data {info.data_dir})")


# --- worker and configuration ----------------------------------------------------

@cli.command()
@click.option("--web-port", type=int, help=f"Port of the HTTP API [env {ENVIRONMENT['web_port']}].")
@click.option("--processes", type=int, help=f"Render processes [env {ENVIRONMENT['render_processes']}].")
def worker(web_port: int | None, processes: int | None) -> None:
    """Run a worker: intake, render and projector agents, and the HTTP API."""
    from regen.agents.worker import run_worker

    overrides = {}
    if web_port is not None:
        overrides["web_port"] = web_port
    if processes is not None:
        overrides["render_processes"] = processes
    run_worker(_settings().with_overrides(**overrides))


@cli.command()
def config() -> None:
    """Print the effective settings and the environment variable for each."""
    click.echo(fmt.format_config(_settings().describe()))


# --- publishing ----------------------------------------------------------------

@cli.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch", "batch_id", help="Batch id recorded on every asset of this import.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file instead of a progress bar.")
@click.option("--follow", is_flag=True, help="Then wait for every pre-generated thumbnail, with a progress bar.")
def import_(folder: Path, batch_id: str | None, as_json: bool, follow: bool) -> None:
    """Import the photos and videos below FOLDER (which must be inside a media root).

    Hashes every file (SHA-256), skips files whose content was already seen in
    this import, and publishes one AssetImported per new file. With --batch,
    `regen status batch ID` shows the batch's progress.
    """
    from regen.cli.publishing import import_folder

    summary = asyncio.run(import_folder(_settings(), folder, batch_id, as_json, follow))
    outcome = summary.get("follow")
    if as_json:
        if outcome is not None:
            click.echo(orjson.dumps({"batch_id": batch_id, **outcome}).decode())
    else:
        click.echo(f"published {summary['published']} asset(s), skipped {summary['duplicates']} duplicate(s)"
                   + (f" in batch {batch_id}" if batch_id else ""))
        if outcome is not None:
            click.echo(f"{outcome['completed']} thumbnail(s) generated, {outcome['failed']} failed"
                       + (f", {outcome['unfinished']} unfinished" if outcome["unfinished"] else ""))
            for failure in outcome["failures"][:20]:
                click.echo(f"  failed {failure}")
            click.echo(f"followed by {outcome['via']}")
    if outcome is not None and outcome["unfinished"]:
        sys.exit(EXIT_ERROR)


# The events a publisher sends (regen writes the others).
PUBLISHED_BY_OTHERS = [name for name, cls in EVENT_TYPES.items() if cls not in WRITTEN_BY_REGEN]


@cli.command()
@click.argument("event_type", type=click.Choice(PUBLISHED_BY_OTHERS))
@click.option("--json", "body", required=True, help="The event body as JSON, or - to read it from stdin.")
def publish(event_type: str, body: str) -> None:
    """Validate and publish one event given as JSON."""
    from regen.cli.publishing import publish_json

    text = sys.stdin.read() if body == "-" else body
    ce_id = asyncio.run(publish_json(_settings(), event_type, text))
    click.echo(f"published {event_type} (ce_id {ce_id})")


@cli.command()
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many (the newest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per dead letter.")
@click.option("--redrive", is_flag=True, help="Publish the dead letters again to the topics they came from "
              "(a DeadLettersRedriven command: only those there now; still-poison ones come back).")
@click.option("--since", help="With --redrive: only those dead-lettered at or after this time (ISO 8601, UTC "
                              "unless stated).")
@click.option("--type", "event_type", metavar="CE_TYPE",
              help="With --redrive: only those of this CloudEvents type, e.g. dev.regen.ImageRequested.v1.")
@click.option("--reason", help="With --redrive: why, for the audit trail.")
@click.option("--dry-run", is_flag=True, help="With --redrive: list what would be redriven and publish nothing.")
def deadletters(limit: int, as_json: bool, redrive: bool, since: str | None, event_type: str | None,
                reason: str | None, dry_run: bool) -> None:
    """List events that could not be processed, with where they came from and why.

    With --redrive, publish them again once their cause is fixed (a
    variant configured, a bug deployed): each worker redrives the dead
    letters of its own partitions, with a header naming the command.
    """
    if redrive:
        return _redrive(since, event_type, reason, dry_run, as_json)
    if since or event_type or reason or dry_run:
        raise click.UsageError("--since, --type, --reason and --dry-run go with --redrive")
    from regen.streams.connection import bootstrap_servers
    from regen.streams.results import read_records
    from regen.streams.topics import DEADLETTER

    settings = _settings()
    records = asyncio.run(read_records(settings, bootstrap_servers(settings), DEADLETTER, idle_timeout=1.0))
    rows = [fmt.deadletter_fields(r) for r in records][-limit:] if limit > 0 else []
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
    else:
        click.echo(fmt.format_deadletters(rows, total=len(records)))


# --- operator commands (each an event on the control topic: cli/operator.py) ------------

def _publish_command(command, as_json: bool, dry_run: bool = False) -> None:
    from regen.cli import operator

    if dry_run:
        click.echo(orjson.dumps({"would_publish": type(command).__name__, "command": command.to_dict()}).decode()
                   if as_json else f"would publish {type(command).__name__}: "
                                   f"{orjson.dumps(command.to_dict()).decode()}\n(--dry-run: nothing published)")
        return
    ce_id = asyncio.run(operator.publish_command(_settings(), command))
    click.echo(orjson.dumps({"published": type(command).__name__, "ce_id": ce_id, "command": command.to_dict()}
                            ).decode() if as_json else operator.describe_published(command, ce_id))


@cli.command()
@click.option("--failed", is_flag=True, help="Retry failed jobs (required: the one kind of retry there is).")
@click.option("--batch", "batch_id", help="Only thumbnails of assets imported in this batch.")
@click.option("--video", "video_id", help="Only composites of this video's annotations.")
@click.option("--group", "group_id", help="Only members of this group.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only targets of this kind.")
@click.option("--since", help="Only jobs that failed at or after this time (ISO 8601, UTC unless stated).")
@click.option("--limit", type=click.IntRange(1, 1_000_000),
              help="At most this many jobs in all (split evenly over the partitions, oldest failures first).")
@click.option("--reason", help="Why, for the audit trail.")
@click.option("--dry-run", is_flag=True, help="List the failed jobs it would retry (from the SQL read model) and "
              "publish nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def retry(failed: bool, batch_id: str | None, video_id: str | None, group_id: str | None, kind: str | None,
          since: str | None, limit: int | None, reason: str | None, dry_run: bool, as_json: bool) -> None:
    """Render failed jobs again, e.g. after their sources were fixed.

    \b
    A job is retried when ALL of these hold:
      its status is failed (not cancelled or superseded),
      it is the job of its target's current revision,
      --batch: its asset was imported with that batch id,
      --video: its annotation belongs to that video,
      --group: its target belongs to that group,
      --kind: its target is of that kind,
      --since: it failed (finished) at or after that time.
    Each is asked for again as a forced background request (request id
    retry.<command id>). Without filters: every failed job.
    """
    from regen.cli import operator

    if not failed:
        raise click.UsageError("say --failed: failed jobs are what this retries (one target: `regen get KIND ID "
                               "--force`; everything: `regen replay --force`)")
    command = operator.make_command("RetryFailed", {
        "batch_id": batch_id, "video_id": video_id, "group_id": group_id, "kind": kind, "limit": limit,
        "since": operator.iso_time(since) if since else None, "reason": reason})
    if dry_run:
        from regen.cli import sql as sqlcli

        jobs = sqlcli.preview_retry(_settings(), command)
        click.echo(orjson.dumps({"would_publish": type(command).__name__, "command": command.to_dict(),
                                 "jobs": jobs}, default=str).decode()
                   if as_json else sqlcli.format_retry_preview(jobs, command))
        return
    _publish_command(command, as_json)


@cli.command()
@click.argument("scope", type=click.Choice(["job", "batch", "group"]))
@click.argument("entity_id", metavar="ID")
@click.option("--reason", help="Why, for the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def cancel(scope: str, entity_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel a job, or every job of a batch or group not yet rendering.

    Pending and retrying jobs end as cancelled (ImageFailed reason
    cancelled: their batch and group finish, counting them failed);
    a job already rendering finishes. ID: a job id
    (thumbnail:<asset>:<variant>:r<revision>), a batch id or a group id.
    """
    from regen.cli import operator

    _publish_command(operator.make_command("CancelRequested", {"scope": scope, "id": entity_id, "reason": reason}),
                     as_json)


def _switch_command(event_type: str, verb: str) -> click.Command:
    @click.argument("what", type=click.Choice(["background"]))
    @click.option("--reason", help="Why, for the audit trail.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
    def switch(what: str, reason: str | None, as_json: bool) -> None:
        from regen.cli import operator

        _publish_command(operator.make_command(event_type, {"lane": what, "reason": reason}), as_json)

    switch.__doc__ = (f"{verb.capitalize()} background rendering on every worker (imports' thumbnails, idle "
                      "composites); requests for images still render.")
    return click.command(verb)(switch)


cli.add_command(_switch_command("BackgroundPaused", "pause"))
cli.add_command(_switch_command("BackgroundResumed", "resume"))


def _redrive(since: str | None, event_type: str | None, reason: str | None, dry_run: bool, as_json: bool) -> None:
    from regen.cli import operator

    settings = _settings()
    command = asyncio.run(operator.redrive_command(settings, {
        "since": operator.iso_time(since) if since else None, "event_type": event_type, "reason": reason}))
    if dry_run:
        chosen = asyncio.run(operator.redrive_preview(settings, command))
        if as_json:
            click.echo(orjson.dumps({"would_publish": "DeadLettersRedriven", "command": command.to_dict(),
                                     "letters": chosen}).decode())
        else:
            click.echo(f"would redrive {len(chosen)} dead letter(s):")
            for row in chosen[:50]:
                click.echo(f"  deadletter[{row['partition']}]@{row['offset']} {row['ce_type'] or '-'} -> {row['to']}")
            click.echo("(--dry-run: nothing published)")
        return
    _publish_command(command, as_json)


# --- on demand ---------------------------------------------------------------------

@cli.command()
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.argument("target_id", metavar="ID")
@click.option("--variant", help="Variant name like h400.webp [default: the kind's first standing variant: "
                                "the first pre-generated one for thumbnails, REGEN_COMPOSITE_VARIANT for "
                                "composites].")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the image before giving up.")
@click.option("--force", is_flag=True, help="Render again even if an intact image is in the store.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line instead of text.")
def get(kind: str, target_id: str, variant: str | None, wait_s: float, force: bool, as_json: bool) -> None:
    """Request an image of kind KIND now and wait for it: a thumbnail of an
    asset ID, the median composite of an annotation ID, ...

    Served from the store when the image is current and intact (a cache hit),
    otherwise rendered ahead of background work. Prints the output path,
    whether it was a cache hit and the latency; exit 1 if it failed or did
    not come within --wait.
    """
    from regen.cli.requesting import get_image

    answer = asyncio.run(get_image(_settings(), kind, target_id, variant, wait_s, force))
    click.echo(orjson.dumps(answer.to_json()).decode() if as_json else answer.describe())
    if not answer.ok:
        sys.exit(EXIT_ERROR)


# --- replay and repair -------------------------------------------------------------

@cli.command()
@click.option("--from-beginning", "from_beginning", is_flag=True, help="Read the source topics from their start "
              "(the default).")
@click.option("--since", help="Only source events at or after this time (ISO 8601, UTC unless stated).")
@click.option("--topic", "topics", multiple=True, metavar="NAME",
              help="Source topic to read: assets.imported or annotations.boundaries (repeatable; default both).")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Only these variants (repeatable; e.g. one just added to REGEN_VARIANTS).")
@click.option("--force", is_flag=True, help="Render even outputs that are in the store and intact.")
@click.option("--dry-run", is_flag=True, help="Only count what would be asked for.")
@click.option("--no-wait", is_flag=True, help="Publish the requests and exit without waiting for the renders.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def replay(from_beginning: bool, since: str | None, topics: tuple[str, ...], variants: tuple[str, ...],
           force: bool, dry_run: bool, no_wait: bool, as_json: bool) -> None:
    """Rebuild images from the source topics.

    Reads every AssetImported and BoundaryChanged (or those since --since) and
    asks for each target's current image in the background lane: intact
    outputs are skipped, missing or changed ones rendered. Shows progress
    with a rate and ETA, then a summary. Safe to interrupt and run again.
    """
    from regen.cli import replay as replaying

    if from_beginning and since:
        raise click.UsageError("--from-beginning and --since exclude each other")
    settings = _settings()
    since_ms = replaying.parse_since(since) if since else None
    if dry_run:
        plan = replaying.dry_run(settings, topics=topics, since_ms=since_ms, variants=variants)
        by_kind = ", ".join(f"{n} {k}" for k, n in plan["by_kind"].items()) or "none"
        click.echo(orjson.dumps(plan).decode() if as_json else
                   f"would ask for {plan['targets']} image(s) ({by_kind}; "
                   f"variants {', '.join(plan['variants']) or '-'}) from {plan['seen']} source event(s)")
        return
    summary = asyncio.run(replaying.replay(settings, topics=topics, since_ms=since_ms, variants=variants, force=force,
                                           wait=not no_wait, progress=not as_json))
    click.echo(orjson.dumps(summary.to_json()).decode() if as_json else summary.describe())
    if summary.unanswered and not no_wait:
        sys.exit(EXIT_ERROR)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list the damaged outputs, with counts.")
@click.option("--limit", type=click.IntRange(min=1), help="Repair at most this many.")
@click.option("--video", "video_id", help="Only this video's composites.")
@click.option("--batch", "batch_id", help="Only this import batch's thumbnails.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON line.")
def repair(dry_run: bool, limit: int | None, video_id: str | None, batch_id: str | None, as_json: bool) -> None:
    """Find outputs that are missing, truncated or changed, and render them again.

    Every completed thumbnail and current composite in the projections is
    checked against the size and sha256 recorded when it was rendered;
    overlays also when their wanted revision was never rendered or failed
    (failed ones are asked for with force).
    """
    from regen.cli import repair as repairing

    if video_id and batch_id:
        raise click.UsageError("--video and --batch exclude each other")
    report = asyncio.run(repairing.repair(_settings(), dry_run=dry_run, video_id=video_id, batch_id=batch_id,
                                          limit=limit, progress=not as_json))
    click.echo(orjson.dumps(report.to_json(dry_run)).decode() if as_json else report.describe(dry_run))
    if not dry_run and (report.failed or report.unanswered):
        sys.exit(EXIT_ERROR)


@cli.command("rebuild-projections")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the rebuilt projections here, one JSON line per row.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as one JSON line.")
def rebuild_projections(output: Path | None, as_json: bool) -> None:
    """Fold the source and completion topics into fresh projections and
    report every difference from the live ones. Exit 1 if they differ."""
    from regen.cli import rebuild as rebuilding

    events, comparison = asyncio.run(rebuilding.rebuild_and_compare(_settings(), output))
    click.echo(orjson.dumps(rebuilding.to_json(events, comparison)).decode() if as_json
               else rebuilding.describe(events, comparison))
    if not comparison.equal:
        sys.exit(EXIT_ERROR)


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed, with sizes and a total.")
@click.option("--older-than", "older_than", metavar="DURATION",
              help="Spare files written more recently than this (90s, 15m, 2h, 1d) "
                   "[default: REGEN_GC_GRACE].")
@click.option("--seed-references", is_flag=True,
              help="Only tell the workers every file the projections hold, and exit: once, after upgrading a "
                   "store whose files were rendered before the GC timer kept references.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON line.")
def gc_(dry_run: bool, older_than: str | None, seed_references: bool, as_json: bool) -> None:
    """Remove store files that no projection references.

    Walks the image store (run it where the store is mounted); a file is
    removed when no target of any kind points at it, as the tables'
    changelogs say, and it is older than the grace period. Files outside
    the kinds' folders are never touched.
    """
    from regen.cli import gc as collecting
    from regen.projections.store_gc import parse_duration

    if seed_references:
        told = asyncio.run(collecting.seed_references(_settings()))
        click.echo(orjson.dumps({"references": told}).decode() if as_json else f"told {told} reference(s)")
        return
    try:
        seconds = parse_duration(older_than) if older_than is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from e
    report = asyncio.run(collecting.gc(_settings(), dry_run=dry_run, older_than=seconds, progress=not as_json))
    click.echo(orjson.dumps(report.to_json(dry_run)).decode() if as_json else report.describe(dry_run))
    if report.errors:
        sys.exit(EXIT_ERROR)


# --- queries ---------------------------------------------------------------------

@cli.group()
def status() -> None:
    """Ask a running worker about jobs and assets (HTTP API)."""


# name, route, formatter, help: one `regen status NAME ID` command each.
_STATUS_QUERIES = (
    ("asset", "/assets/{}", fmt.format_asset, "An asset and, per variant, its job status, output path and sha256."),
    ("job", "/jobs/{}", fmt.format_job,
     "One render job (ids look like thumbnail:<asset_id>:<variant>:r<revision>)."),
    ("annotation", "/annotations/{}", fmt.format_annotation,
     "An annotation: dirty flag, wanted and rendered revisions, last render."),
    ("video", "/videos/{}", fmt.format_video,
     "A video's pending count, dirty annotations, progress (rate, ETA) and failures."),
    ("batch", "/batches/{}", fmt.format_batch,
     "An import batch: completed, failed and pending thumbnails, rate, ETA, failures."),
    ("group", "/groups/{}", fmt.format_group,
     "A group (a case of generated images, ...): status, counts, each member's output or failure."),
)


@status.command("store")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def status_store(as_json: bool) -> None:
    """Files and bytes of the image store per kind, and what is waiting for GC
    (walks the store where it is mounted; reads the tables' changelogs)."""
    from regen.cli import gc as collecting

    found = asyncio.run(collecting.store_status(_settings()))
    click.echo(json.dumps(found.to_json(), indent=2) if as_json else found.describe())


def _add_status_query(name: str, route: str, formatter, help_text: str) -> None:
    @status.command(name, help=help_text)
    @click.argument("entity_id", metavar=f"{name.upper()}_ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    def query(entity_id: str, as_json: bool) -> None:
        _show(route.format(entity_id), as_json, formatter)


for _query in _STATUS_QUERIES:
    _add_status_query(*_query)


@status.command("background")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def status_background(as_json: bool) -> None:
    """Whether background rendering is paused: since when, by whom, why."""
    _show("/control/background", as_json, fmt.format_background)


def _show(path: str, as_json: bool, formatter) -> None:
    data = _get(_settings(), path)
    click.echo(json.dumps(data, indent=2) if as_json else formatter(data))


def _get(settings: Settings, path: str) -> dict:
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    request = urllib.request.Request(url)
    if settings.web_token:
        request.add_header("Authorization", f"Bearer {settings.web_token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = orjson.loads(e.read()).get("error", e.reason)
        except Exception:
            message = e.reason
        raise RegenError(f"{message} (HTTP {e.code} from {url})") from e
    except urllib.error.URLError as e:
        raise RegenError(f"no worker answers at {url} ({e.reason}); start one with `regen worker` "
                         f"or set {ENVIRONMENT['web_port']}") from e


# --- the SQL read model -------------------------------------------------------------

@cli.command("query")
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of a table.")
@click.option("--max-rows", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Print at most this many rows.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Abort the query after this many seconds.")
def query(sql: str, as_json: bool, max_rows: int, timeout_s: float) -> None:
    """Run SQL against the read model, on a read-only connection.

    \b
    Tables: jobs, targets, failures, results, batches, groups, tracking (README.md, "SQL read model").
    regen query "SELECT error_code, count(*) FROM failures GROUP BY error_code"
    """
    from regen.cli import sql as sqlcli

    result = sqlcli.run_query(_settings(), sql, max_rows, timeout_s)
    click.echo("\n".join(sqlcli.query_json_lines(result)) if as_json else sqlcli.format_query(result))


@cli.command()
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help="Only jobs in this status (pending, running, retrying, completed, failed, superseded); repeatable.")
@click.option("--since", help="Only jobs changed since: a duration (30m, 24h, 7d) or an ISO 8601 time.")
@click.option("--batch", "batch_id", help="Only jobs of this import batch.")
@click.option("--video", "video_id", help="Only jobs of this video's annotations.")
@click.option("--group", "group_id", help="Only jobs of this group.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only jobs of this kind of image.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Jobs per page.")
@click.option("--cursor", help="The next page: the cursor the previous page printed.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as one JSON object.")
def jobs(statuses: tuple[str, ...], since: str | None, batch_id: str | None, video_id: str | None,
         group_id: str | None, kind: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """List jobs from the SQL read model, newest change first."""
    import time

    from regen.cli import sql as sqlcli
    from regen.projections.sql_jobs import JobFilter, parse_since

    f = JobFilter(status=statuses, since=parse_since(since, time.time()) if since else None, batch=batch_id,
                  video=video_id, group=group_id, kind=kind, limit=limit, cursor=cursor)
    page = sqlcli.list_jobs(_settings(), f)
    click.echo(orjson.dumps(page.to_json()).decode() if as_json else sqlcli.format_jobs(page))


@cli.command("sql-projector")
@click.option("--until-caught-up", is_flag=True,
              help="Exit once every record there was at the start is applied (a one-off fill or check).")
def sql_projector(until_caught_up: bool) -> None:
    """Fill the SQL read model (REGEN_SQL_URL) from the topics, standalone.

    Workers run it themselves unless REGEN_SQL_PROJECTOR=off. Several may
    write one PostgreSQL database: none applies a record twice.
    """
    from regen.cli import sql as sqlcli

    sqlcli.run_projector(_settings(), until_caught_up, lambda m: click.echo(m, err=True))


# --- offline rendering -------------------------------------------------------------

@cli.group()
def render() -> None:
    """Render offline with the worker's imaging code (no Kafka), for debugging."""


def _offline_command(kind: Kind) -> click.Command:
    """`regen render KIND SOURCE -o OUTPUT`, with the kind's own options."""

    def run(source: Path, variant: str | None, output: Path, **options) -> None:
        settings = _settings()
        real = source.resolve()
        chosen = variant or (kind.standing_variants(settings) or settings.variants)[0]
        _render_offline(lambda store: kind.offline_call(real, store, chosen, settings, options), output)

    params = [
        click.Argument(["source"], type=click.Path(exists=True, path_type=Path)),
        click.Option(["--variant"], help="A variant name like h400.webp [default: the kind's first standing variant]."),
        click.Option(["-o", "--output"], type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="Where to write the image."),
        *(click.Option([o.name], type=o.type, required=o.required, default=o.default, help=o.help)
          for o in kind.offline_options),
    ]
    return click.Command(kind.name, callback=run, params=params, help=kind.offline_help)


for _kind in KINDS.values():
    render.add_command(_offline_command(_kind))


def _render_offline(call, output: Path) -> None:
    """Run exactly the task function a worker's render process runs, with a
    scratch image store and the source's folder as the only media root, and
    copy its output to OUTPUT."""
    import tempfile

    from regen.imaging.store import write_atomically

    with tempfile.TemporaryDirectory(prefix="regen-render-") as store:
        try:
            fn, task = call(Path(store))
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        outcome = fn(task)
        write_atomically(output, outcome.path.read_bytes())
    used = ""
    if getattr(outcome, "frames", None):
        used = f", median of {len(outcome.frames)} frames" + (" (sampled evenly)" if outcome.sampled else "")
    click.echo(f"{output}: {outcome.width}x{outcome.height}, {outcome.bytes} bytes{used}, "
               f"{outcome.render_ms:.0f} ms")


# --- demo ----------------------------------------------------------------------------

@cli.command()
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keep-running", is_flag=True, help="Leave the broker and worker running afterwards.")
def demo(folder: Path | None, keep_running: bool) -> None:
    """Show regen working end to end, then stop.

    Starts the local broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and a
    worker, imports FOLDER (or sample photos and a video it makes), waits for
    every thumbnail, and prints where they are.
    """
    from regen.cli.demo import run_demo

    run_demo(_settings(), folder, keep_running)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    limit_repeats()  # `regen worker` configures its own handlers, and bounds them too (agents/outages.py)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (RegenError, ImagingError, SchemaError) as e:
        click.echo(f"regen: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
