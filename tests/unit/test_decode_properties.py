"""For every topic regen consumes and every event type it accepts, ``decode``
over any bytes and headers returns an event or raises PoisonEvent, nothing
else; and whatever it accepts, regen can write and read back unchanged."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regen.schemas.events import (
    AssetImported,
    BackgroundPaused,
    BackgroundResumed,
    BoundaryChanged,
    CancelRequested,
    DeadLettersRedriven,
    GenerationRequested,
    GroupDeclared,
    GroupFinished,
    GroupProgress,
    ImageFailed,
    ImageGenerated,
    ImageRequested,
    Polygon,
    RetryFailed,
    SegmentationChanged,
    Stuck,
    Target,
)
from regen.schemas.jobs import BatchShard, DirtyFlag, GroupMemberChanged, RenderJob
from regen.schemas.outputs import OutputCollectDue, OutputReferenced, OutputReleased
from regen.streams.codec import decode, encode
from regen.streams.exceptions import PoisonEvent
from regen.streams.topics import ALL_TOPICS

SHA = "0f" * 32
AT = "2026-11-21T10:00:00.000Z"
VALID = {
    AssetImported: AssetImported("a1", "photos/x.jpg", "image", SHA, 10, AT, batch_id="b1"),
    BoundaryChanged: BoundaryChanged("n1", "v1", 0, 20, 3, "clip.mp4", crop=(0, 0, 10, 10)),
    ImageRequested: ImageRequested(Target("thumbnail", "a1"), "h400.jpg", "req-1"),
    ImageGenerated: ImageGenerated(Target("composite", "n1"), "full.png", 3, "composite:n1:full.png:r3",
                                   "n1/full.png", SHA, 10, 10, 99, 1.5, 1, False, AT, ("req-1",), (0, 10, 20)),
    ImageFailed: ImageFailed(Target("thumbnail", "a1"), "h400.jpg", 1, "thumbnail:a1:h400.jpg:r1", "permanent",
                             "corrupt", "truncated file", 1, AT, ("req-1",)),
    RenderJob: RenderJob("composite:n1:full.png:r3", Target("composite", "n1"), "full.png", 3, "background",
                         "clip.mp4", "", "video", AT, start_frame=0, end_frame=20, crop=(1, 2, 3, 4),
                         not_before=1.7e9, last_error="x"),
    DirtyFlag: DirtyFlag("v1", "n1", 3, True, AT, "dirty"),
    BatchShard: BatchShard("b1", 0, 3, 1, 1, 1, 1.7e9, ({"asset_id": "a", "variant": "v", "error": "e"},)),
    GroupDeclared: GroupDeclared("case-1", AT, total=14, label="case 1", webhook_url="http://hooks.local/x"),
    GroupMemberChanged: GroupMemberChanged("case-1", Target("thumbnail", "a1"), "h400.jpg", 1, "completed", AT,
                                           uri="ab/cd.jpg"),
    GroupProgress: GroupProgress("case-1", "generating", 14, 3, 1, 10, AT, None, AT),
    GroupFinished: GroupFinished("case-1", "partial", 2, 1, 1, AT, AT, {"thumbnail:a1/h400.jpg": "ab/cd.jpg"},
                                 ({"member": "thumbnail:a2/h400.jpg", "error": "corrupt"},)),
    Stuck: Stuck("job", "thumbnail:a1:h400.jpg:r1", "running", AT, 700.0, AT),
    SegmentationChanged: SegmentationChanged(
        "a1", 2, "photos/x.jpg", (Polygon("cell", ((0.0, 0.0), (10.5, 0.0), (5.0, 8.0)),
                                          (((4.0, 2.0), (6.0, 2.0), (5.0, 4.0)),)),),
        source_sha256=SHA, colors={"cell": "#ff000080"}),
    GenerationRequested: GenerationRequested("g1", 2, "local", "a red kite", {"width": 512, "style": None},
                                             group_id="case-7"),
    RetryFailed: RetryFailed("cmd-1", AT, "ops@host", reason="sources fixed", batch_id="b1", video_id="v1",
                             group_id="case-1", kind="thumbnail", since=AT, limit=100),
    CancelRequested: CancelRequested("cmd-2", AT, "ops@host", "batch", "b1", reason="wrong folder"),
    BackgroundPaused: BackgroundPaused("cmd-3", AT, "ops@host", "background", reason="maintenance"),
    BackgroundResumed: BackgroundResumed("cmd-4", AT, "ops@host", "background"),
    DeadLettersRedriven: DeadLettersRedriven("cmd-5", AT, "ops@host", {"0": 12, "3": 0}, reason="variant added",
                                             since=AT, event_type="dev.regen.ImageRequested.v1"),
    OutputReferenced: OutputReferenced("thumbnails/0f/0f0f/h400.jpg", "thumbnail:a1/h400.jpg", 1.7e9),
    OutputReleased: OutputReleased("composites/ab/abcd/full.png", "composite:n1/full.png", 1.7e9),
    OutputCollectDue: OutputCollectDue("generated/answers/ab/abcd", 1.7e9),
}
CASES = [(spec.suffix, cls) for spec in ALL_TOPICS for cls in spec.event_types]
CE_TYPES = [cls.ce_type for cls in VALID] + ["dev.regen.Unknown.v1", ""]

# JSON values, with the edges that broke things: huge and negative integers,
# 1e308, floats where ints go, deep nesting.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([2**31, 2**62, -1, 0, 1e308, -1e308, 0.5, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30), st.sampled_from(["", "/dev/zero", "../x", "2026-11-21T10:00:00Z", "thumbnail", "a" * 5000]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
headers = st.one_of(
    st.none(), st.just([]),
    st.lists(st.tuples(st.sampled_from(["ce_type", "ce_id", "other"]),
                       st.one_of(st.none(), st.binary(max_size=20), st.sampled_from(CE_TYPES).map(str.encode))),
             max_size=3),
    st.dictionaries(st.sampled_from(["ce_type", "ce_id"]), st.sampled_from(CE_TYPES).map(str.encode), max_size=2),
)


def mutated(body: dict) -> st.SearchStrategy[dict]:
    """A valid body with fields dropped, replaced by values of other types, or junk added."""
    names = sorted(body)
    drop = st.sets(st.sampled_from(names), max_size=3)
    replace = st.dictionaries(st.sampled_from(names + ["extra", "target"]), json_values, max_size=3)
    nested = st.dictionaries(st.sampled_from(["kind", "id", "x"]), json_values, max_size=3)

    def build(dropped, replaced, target):
        out = {k: v for k, v in body.items() if k not in dropped}
        out.update(replaced)
        if target and isinstance(out.get("target"), dict):
            out["target"] = {**out["target"], **target}
        return out

    return st.builds(build, drop, replace, nested)


def decodes_or_poison(value, hdrs, cls) -> None:
    expected = next(spec.event_types for spec in ALL_TOPICS if cls in spec.event_types)
    try:
        event, _ = decode(value, hdrs, expected)
    except PoisonEvent:
        return
    assert type(event) in expected
    # What decode accepts, regen can write and read back as the same event.
    again, _ = decode(encode(event, "t").value, [("ce_type", event.ce_type.encode())], expected)
    assert again == event


def dumps(value) -> bytes:
    return orjson.dumps(value)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("topic, cls", CASES, ids=[f"{t}-{c.__name__}" for t, c in CASES])
def test_valid_bodies_decode(topic, cls):
    envelope = encode(VALID[cls], "t")
    assert decode(envelope.value, envelope.headers, (cls,))[0] == VALID[cls]
    assert decode(envelope.value, None, (cls,))[0] == VALID[cls]


@pytest.mark.parametrize("topic, cls", CASES, ids=[f"{t}-{c.__name__}" for t, c in CASES])
@FAST
@given(value=st.one_of(st.none(), st.binary(max_size=200)), hdrs=headers)
def test_any_bytes(topic, cls, value, hdrs):
    decodes_or_poison(value, hdrs, cls)


@pytest.mark.parametrize("topic, cls", CASES, ids=[f"{t}-{c.__name__}" for t, c in CASES])
@FAST
@given(value=json_values, hdrs=headers)
def test_any_json_value(topic, cls, value, hdrs):
    decodes_or_poison(dumps(value), hdrs, cls)


@pytest.mark.parametrize("topic, cls", CASES, ids=[f"{t}-{c.__name__}" for t, c in CASES])
@FAST
@given(data=st.data(), with_ce_type=st.booleans())
def test_mutated_valid_bodies(topic, cls, data, with_ce_type):
    body = data.draw(mutated(VALID[cls].to_dict()))
    hdrs = [("ce_type", cls.ce_type.encode())] if with_ce_type else None
    decodes_or_poison(dumps(body), hdrs, cls)


@pytest.mark.parametrize("topic, cls", CASES, ids=[f"{t}-{c.__name__}" for t, c in CASES])
@FAST
@given(digits=st.integers(min_value=20, max_value=400), field=st.data())
def test_integers_beyond_64_bits(topic, cls, digits, field):
    """orjson cannot write these; they are spliced into the bytes."""
    body = VALID[cls].to_dict()
    name = field.draw(st.sampled_from(sorted(body)))
    raw = dumps({**body, name: 7}).replace(f'"{name}":7'.encode(), f'"{name}":{"9" * digits}'.encode())
    decodes_or_poison(raw, None, cls)
