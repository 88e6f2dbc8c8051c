"""Event contracts: records and JSON Schema agree; the codec refuses poison."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields

import orjson
import pytest

from schemas.events import EVENT_TYPES, AssetImported, ImageRequested, Target
from schemas.validation import schema_for
from streams.codec import decode, encode, header
from streams.exceptions import PoisonEvent

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
    from schemas.events import BoundaryChanged

    with pytest.raises(PoisonEvent, match="before start_frame"):
        decode(orjson.dumps(body), [], (BoundaryChanged,))
