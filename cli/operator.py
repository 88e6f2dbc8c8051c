"""Operator commands from the CLI: each one event on the ``control`` topic.

``regen retry --failed``, ``regen cancel``, ``regen pause|resume background``
and ``regen deadletters --redrive`` build a command (projections/control.py
checks it like any event), publish it, and print its id and how to follow
it. The workers apply it (agents/control.py); nothing is done here but
publishing, so a replay of the topic does the same.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from regen.projections.control import DeadLetter, build_command, redrive_destination
from regen.schemas.events import Event
from regen.schemas.exceptions import SchemaError
from regen.settings import Settings
from regen.streams.codec import now_iso
from regen.streams.connection import bootstrap_servers
from regen.streams.exceptions import RegenError
from regen.streams.publisher import Publisher
from regen.streams.results import end_offsets, read_records
from regen.streams.topics import ALL_TOPICS, CONTROL_PARTITIONS, DEADLETTER, topic_name


def operator_name() -> str:
    """Who runs the CLI, for the audit trail (not an identity anything trusts)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:200]


def iso_time(text: str, option: str = "--since") -> str:
    """An ISO 8601 time (UTC unless it says otherwise), written as the events write it."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RegenError(f"{option} {text!r} is not a time like 2026-11-21T14:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_command(event_type: str, fields: dict[str, Any], up_to: dict[int, int] | None = None) -> Event:
    body = {k: v for k, v in fields.items() if v is not None}
    try:
        return build_command(event_type, body, command_id=uuid.uuid4().hex, requested_by=operator_name(),
                             at=now_iso(), up_to=up_to)
    except SchemaError as e:
        raise RegenError(f"{e} (see `regen {_COMMAND_NAMES.get(event_type, '')} --help`)") from e


_COMMAND_NAMES = {"RetryFailed": "retry", "CancelRequested": "cancel", "BackgroundPaused": "pause",
                  "BackgroundResumed": "resume", "DeadLettersRedriven": "deadletters"}


async def publish_command(settings: Settings, command: Event) -> str:
    async with Publisher(settings, bootstrap_servers(settings), source="regen/cli") as publisher:
        return await publisher.publish(command)


async def redrive_command(settings: Settings, fields: dict[str, Any]) -> Event:
    """A redrive of what the dead-letter topic holds now (its end offsets)."""
    bootstrap = bootstrap_servers(settings)
    up_to = await end_offsets(settings, bootstrap, topic_name(settings, DEADLETTER))
    return make_command("DeadLettersRedriven", fields, up_to=up_to)


async def redrive_preview(settings: Settings, command: Any) -> list[dict[str, Any]]:
    """The dead letters ``command`` would publish again, and where to: the
    same selection the workers make (projections/control.py)."""
    redrivable = frozenset(topic_name(settings, spec) for spec in ALL_TOPICS
                           if spec.consumed and spec not in (DEADLETTER, CONTROL_PARTITIONS))
    records = await read_records(settings, bootstrap_servers(settings), DEADLETTER, idle_timeout=1.0)
    chosen = []
    for record in records:
        letter = DeadLetter(record.offset, record.timestamp or 0, record.key, record.value,
                            tuple(record.headers or ()))
        destination = redrive_destination(letter, command, record.partition, redrivable)
        if destination is not None:
            chosen.append({"partition": record.partition, "offset": record.offset, "to": destination,
                           "ce_type": dict(letter.headers).get("ce_type", b"").decode("utf-8", "replace")})
    return chosen


def follow_hint(command: Event) -> str:
    """How to see the command's effect."""
    fields = command.to_dict()
    name = type(command).__name__
    if name == "RetryFailed":
        if fields.get("batch_id"):
            return f"follow it with `regen status batch {fields['batch_id']}`"
        if fields.get("group_id"):
            return f"follow it with `regen status group {fields['group_id']}`"
        if fields.get("video_id"):
            return f"follow it with `regen status video {fields['video_id']}`"
        return "each retried job's request id is retry.<command id> (`regen status job ID` shows it)"
    if name == "CancelRequested":
        return f"follow it with `regen status {fields['scope']} {fields['id']}`"
    if name in ("BackgroundPaused", "BackgroundResumed"):
        return "every worker obeys within a second; `regen status background` shows the switch"
    return "`regen deadletters` lists what is left; a record still failing is dead-lettered again"


def describe_published(command: Event, ce_id: str) -> str:
    fields = command.to_dict()
    return (f"published {type(command).__name__} {fields['command_id']} (ce_id {ce_id})\n"
            f"{follow_hint(command)}")
