"""Validating JSON bodies against the JSON Schema files."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from regen.schemas.events import EVENT_TYPES, Event
from regen.schemas.exceptions import SchemaError


@cache
def schema_for(event_name: str) -> dict[str, Any]:
    text = resources.files("regen.schemas").joinpath("json", f"{event_name}.json").read_text()
    return json.loads(text)


@cache
def _registry() -> Registry:
    """Every schema file by its $id, so one may $ref another (the events'
    target kinds are TargetKind.json)."""
    folder = resources.files("regen.schemas").joinpath("json")
    schemas = [json.loads(f.read_text()) for f in folder.iterdir() if f.name.endswith(".json")]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


@cache
def _validator(event_name: str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(event_name), registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_body(event_name: str, body: Any) -> None:
    if event_name not in EVENT_TYPES:
        raise SchemaError(f"unknown event type {event_name!r}; known: {', '.join(EVENT_TYPES)}")
    errors = sorted(_validator(event_name).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(body)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaError(f"{event_name}.{where}: {first.message}{more}")


def parse_event(event_name: str, body: Any) -> Event:
    cls = EVENT_TYPES.get(event_name)
    bulk = getattr(cls, "typed_only_fields", ())
    if bulk and type(body) is dict:
        # Thousands of points cost jsonschema ~80 ms an event, on the event
        # loop; the typed reader checks the same bounds (a unit test keeps
        # them equal) in ~2 ms, so these arrays are left to it.
        validate_body(event_name, {k: [] if k in bulk and type(v) is list else v for k, v in body.items()})
    else:
        validate_body(event_name, body)
    assert cls is not None  # validate_body refused an unknown name
    event = cls.from_dict(body)
    check_semantics(event)
    return event


def check_semantics(event: Event) -> None:
    """Rules neither JSON Schema nor a field's type can say."""
    start, end = getattr(event, "start_frame", None), getattr(event, "end_frame", None)
    if start is not None and end is not None and end < start:
        raise SchemaError(f"{type(event).__name__}: end_frame {end} is before start_frame {start}")
    problem = event.semantic_problem()
    if problem is not None:
        raise SchemaError(f"{type(event).__name__}: {problem}")
