"""Event contracts: records and JSON Schema agree; the codec refuses poison."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields

import orjson
import pytest

from regen.schemas.events import EVENT_TYPES, AssetImported, ImageRequested, Target
from regen.schemas.validation import schema_for
from regen.streams.codec import decode, encode, header
from regen.streams.exceptions import PoisonEvent

SHA = "ab" * 32


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_record_and_schema_have_the_same_fields(name):
    cls = EVENT_TYPES[name]
    schema = schema_for(name)
    assert {f.name for f in fields(cls)} == set(schema["properties"])
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    assert required == set(schema["required"])


def _asset(**changes) -> AssetImported:
    values = dict(asset_id="a1", uri="photos/x.jpg", media_type="image", sha256=SHA, size_bytes=10,
                  imported_at="2026-11-21T10:00:00Z")
    values.update(changes)
    return AssetImported(**values)


def test_round_trip_with_cloudevents_headers():
    event = _asset(batch_id="b1")
    envelope = encode(event, "tests")
    assert envelope.key == b"a1"
    names = [k for k, _ in envelope.headers]
    assert names == ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"]
    decoded, ce_id = decode(envelope.value, envelope.headers, (AssetImported,))
    assert decoded == event and ce_id == envelope.ce_id
    assert header(envelope.headers, "ce_type") == "dev.regen.AssetImported.v1"


def test_nested_target_round_trips():
    event = ImageRequested(Target("thumbnail", "a1"), "h400.jpg", "req-1", force=True)
    decoded, _ = decode(encode(event, "t").value, [], (ImageRequested,))
    assert decoded == event


def test_a_body_without_headers_is_taken_as_the_topic_type():
    body = orjson.dumps(_asset().to_dict())
    decoded, ce_id = decode(body, None, (AssetImported,))
    assert decoded.asset_id == "a1" and ce_id is None


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "not valid JSON"),
    (None, "no value"),
    (json.dumps({"asset_id": "a1"}).encode(), "is a required property"),
    (orjson.dumps({**_asset().to_dict(), "sha256": "xyz"}), "sha256"),
    (orjson.dumps({**_asset().to_dict(), "media_type": "audio"}), "media_type"),
    (orjson.dumps({**_asset().to_dict(), "asset_id": "../../etc"}), "asset_id"),
    (orjson.dumps({**_asset().to_dict(), "extra": 1}), "Additional properties"),
])
def test_poison_bodies_are_refused_with_a_reason(value, reason):
    with pytest.raises(PoisonEvent, match=reason):
        decode(value, [], (AssetImported,))


def test_a_foreign_event_type_is_refused():
    envelope = encode(ImageRequested(Target("thumbnail", "a1"), "h400.jpg", "r"), "t")
    with pytest.raises(PoisonEvent, match="not accepted on this topic"):
        decode(envelope.value, envelope.headers, (AssetImported,))


def test_boundary_end_before_start_is_refused():
    body = {"annotation_id": "n1", "video_id": "v1", "start_frame": 10, "end_frame": 5, "revision": 1,
            "source": "v.mp4"}
    from regen.schemas.events import BoundaryChanged

    with pytest.raises(PoisonEvent, match="before start_frame"):
        decode(orjson.dumps(body), [], (BoundaryChanged,))


# --- records and JSON Schema declare the same bounds -------------------------

BOUND_KEYWORDS = ("maxLength", "minLength", "pattern", "format", "minimum", "maximum", "minItems", "maxItems",
                  "enum")


def expected_keywords(hint) -> dict:
    """The JSON Schema keywords a field's annotation stands for."""
    import typing

    from regen.schemas.bounds import (
        INT64_MAX,
        INT64_MIN,
        MAX_ITEMS,
        MAX_SHORT_CHARS,
        IsoTimestamp,
        Length,
        MaxItems,
        MinItems,
        OneOf,
        Pattern,
        Range,
    )

    marks = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *rest = typing.get_args(hint)
        marks = tuple(rest)
    args = typing.get_args(hint)
    if type(None) in args:
        return expected_keywords(next(a for a in args if a is not type(None)))
    found = {type(m): m for m in marks}
    if hint is str and OneOf in found:
        return {"enum": list(found[OneOf].values)}
    if hint is str:
        length = found.get(Length, Length(MAX_SHORT_CHARS))
        out = {"maxLength": length.max_length}
        if length.min_length:
            out["minLength"] = length.min_length
        if Pattern in found:
            out["pattern"] = found[Pattern].regex
        if IsoTimestamp in found:
            out["format"] = "date-time"
        return out
    if hint is int:
        bounds = found.get(Range, Range())
        return {"minimum": INT64_MIN if bounds.minimum is None else bounds.minimum,
                "maximum": INT64_MAX if bounds.maximum is None else bounds.maximum}
    if hint is float:
        bounds = found.get(Range, Range())
        return {k: v for k, v in (("minimum", bounds.minimum), ("maximum", bounds.maximum)) if v is not None}
    if typing.get_origin(hint) is typing.Literal:
        return {"enum": list(args)}
    if typing.get_origin(hint) is tuple:
        if args[-1] is Ellipsis:
            out = {"maxItems": found[MaxItems].count if MaxItems in found else MAX_ITEMS,
                   "items": expected_keywords(args[0])}
            if MinItems in found:
                out["minItems"] = found[MinItems].count
            return out
        return {"minItems": len(args), "maxItems": len(args), "items": expected_keywords(args[0])}
    return {}


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        target = schema["$defs"][ref.rsplit("/", 1)[1]] if ref.startswith("#") else _schema_file(ref)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _schema_file(name: str) -> dict:
    from importlib import resources

    return json.loads(resources.files("regen.schemas").joinpath("json", name).read_text())


def disagreements(schema: dict, node: dict, hint, where: str) -> list[str]:
    import typing
    from dataclasses import is_dataclass

    node = resolve(schema, node)
    bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if isinstance(bare, type) and is_dataclass(bare):
        hints = typing.get_type_hints(bare, include_extras=True)
        return [p for f in fields(bare) for p in disagreements(schema, node["properties"][f.name], hints[f.name],
                                                                 f"{where}.{f.name}")]
    expected = expected_keywords(hint)
    problems = []
    items = expected.pop("items", None)
    item_hint = _tuple_item(bare)
    if item_hint is not None and is_dataclass(_unannotated(item_hint)):  # an array of objects: each field too
        problems += disagreements(schema, node.get("items", {}), item_hint, f"{where}[]")
    elif items is not None:
        problems += _compare_items(schema, resolve(schema, node.get("items", {})), items, f"{where}[]")
    return problems + [f"{where}: {p}" for p in _compare(node, expected)]


def _compare_items(schema: dict, node: dict, expected: dict, where: str) -> list[str]:
    """Arrays of arrays (a polygon's points): each level's keywords."""
    expected = dict(expected)
    items = expected.pop("items", None)
    problems = [f"{where}: {p}" for p in _compare(node, expected)]
    if items is not None:
        problems += _compare_items(schema, resolve(schema, node.get("items", {})), items, f"{where}[]")
    return problems


def _unannotated(hint):
    import typing

    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _tuple_item(hint):
    """X of ``tuple[X, ...]`` (or of ``tuple[X, ...] | None``), else None."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is not tuple and len(args) == 1:
        return _tuple_item(_unannotated(args[0]))
    return args[0] if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis else None


def _compare(node: dict, expected: dict) -> list[str]:
    actual = {k: node[k] for k in BOUND_KEYWORDS if k in node}
    return [f"{k}: schema {actual.get(k)!r}, record {expected.get(k)!r}"
            for k in sorted(set(actual) | set(expected)) if actual.get(k) != expected.get(k)]


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_record_and_schema_declare_the_same_bounds(name):
    import typing

    cls = EVENT_TYPES[name]
    schema = schema_for(name)
    hints = typing.get_type_hints(cls, include_extras=True)
    problems = [p for f in fields(cls) for p in disagreements(schema, schema["properties"][f.name], hints[f.name],
                                                                 f"{name}.{f.name}")]
    assert not problems, "\n".join(problems)
