"""The typed decoder's refusals: every field checked against its annotation,
for regen's own events too (they skip JSON Schema)."""

from __future__ import annotations

import orjson
import pytest

from regen.projections.state import JobState
from regen.schemas.events import BoundaryChanged, ImageFailed, ImageGenerated, Target
from regen.schemas.jobs import BatchShard, DirtyFlag, RenderJob
from regen.streams.codec import decode, encode
from regen.streams.exceptions import PoisonEvent

SHA = "ab" * 32


def generated(**changes) -> dict:
    event = ImageGenerated(target=Target("thumbnail", "a1"), variant="h400.jpg", revision=1,
                           job_id="thumbnail:a1:h400.jpg:r1", uri="ab/cd/a1.h400.jpg", sha256=SHA, width=300,
                           height=400, bytes=1234, render_ms=12.5, attempts=1, cache_hit=False,
                           generated_at="2026-11-21T10:00:00.000Z", request_ids=("r1",))
    return {**event.to_dict(), **changes}


def job(**changes) -> dict:
    event = RenderJob(job_id="composite:n1:full.png:r3", target=Target("composite", "n1"), variant="full.png",
                      revision=3, lane="background", source_uri="clip.mp4", source_sha256="", media_type="video",
                      enqueued_at="2026-11-21T10:00:00Z", start_frame=0, end_frame=20, crop=(1, 2, 30, 40))
    return {**event.to_dict(), **changes}


def refused(cls, body, match: str) -> str:
    with pytest.raises(PoisonEvent, match=match) as caught:
        decode(orjson.dumps(body), [], (cls,))
    return str(caught.value)


def test_valid_events_of_every_regen_type_round_trip():
    for cls, body in ((ImageGenerated, generated()), (RenderJob, job())):
        event = cls.from_dict(body)
        assert decode(encode(event, "t").value, [], (cls,))[0] == event
    flag = DirtyFlag(video_id="v1", annotation_id="n1", revision=2, dirty=False, at="", status="current")
    assert decode(encode(flag, "t").value, [], (DirtyFlag,))[0] == flag
    shard = BatchShard(batch_id="b", partition=3, total=2, completed=1, failed=1, pending=0, at=1.5e9,
                       failures=({"asset_id": "a", "variant": "h400.jpg", "error": "x"},))
    assert decode(encode(shard, "t").value, [], (BatchShard,))[0] == shard


def test_a_tuple_field_comes_back_a_tuple():
    event, _ = decode(orjson.dumps(job()), [], (RenderJob,))
    assert event.crop == (1, 2, 30, 40) and isinstance(event.request_ids, tuple)


@pytest.mark.parametrize("body", [[], None, 7, "x", [generated()], 1.5, True])
def test_a_body_that_is_not_an_object_is_refused(body):
    message = refused(ImageGenerated, body, "expected a JSON object")
    assert repr(body)[:20] in message


def test_a_completion_with_a_number_for_its_time_is_refused():
    message = refused(ImageGenerated, generated(generated_at=123), r"ImageGenerated\.generated_at")
    assert "expected a string" in message and "123" in message


@pytest.mark.parametrize("field, value", [("generated_at", "yesterday at noon"),
                                          ("generated_at", "2026-13-45T99:00:00Z")])
def test_a_completion_time_that_is_not_iso_8601_is_refused(field, value):
    assert "ISO-8601" in refused(ImageGenerated, generated(**{field: value}), field)


def test_a_failure_time_is_checked_too():
    body = {**ImageFailed(Target("thumbnail", "a1"), "h400.jpg", 1, "j", "permanent", "corrupt", "bad", 1,
                          "2026-11-21T10:00:00Z").to_dict(), "failed_at": "soon, I promise"}
    refused(ImageFailed, body, r"ImageFailed\.failed_at: expected an ISO-8601")


def test_a_frame_number_beyond_32_bits_is_refused():
    message = refused(RenderJob, job(start_frame=2**62), r"RenderJob\.start_frame")
    assert "0 to 2147483647" in message and str(2**62) in message
    body = {"annotation_id": "n1", "video_id": "v1", "start_frame": 0, "end_frame": 2**31, "revision": 1,
            "source": "v.mp4"}
    refused(BoundaryChanged, body, "end_frame")


def test_a_huge_float_for_an_integer_is_refused():
    refused(ImageGenerated, generated(width=1e308), r"ImageGenerated\.width: expected an integer")
    huge = orjson.dumps(generated(bytes=1)).replace(b'"bytes":1', b'"bytes":' + b"9" * 30)
    with pytest.raises(PoisonEvent, match=r"ImageGenerated\.bytes: expected an integer"):
        decode(huge, [], (ImageGenerated,))  # orjson reads an integer beyond 64 bits as a float


def test_a_float_field_takes_an_int_but_not_a_string_or_bool():
    assert decode(orjson.dumps(generated(render_ms=12)), [], (ImageGenerated,))[0].render_ms == 12.0
    refused(ImageGenerated, generated(render_ms="12"), "render_ms")
    refused(ImageGenerated, generated(render_ms=True), "render_ms")
    refused(ImageGenerated, generated(render_ms=-1), "render_ms")


def test_a_bool_is_not_an_integer_and_an_integer_is_not_a_bool():
    refused(ImageGenerated, generated(revision=True), r"ImageGenerated\.revision: expected an integer")
    refused(ImageGenerated, generated(cache_hit=1), r"cache_hit: expected true or false")


def test_a_missing_required_field_is_named():
    body = generated()
    del body["sha256"]
    refused(ImageGenerated, body, "required field 'sha256' is missing")


def test_nested_records_and_literals_are_checked():
    refused(ImageGenerated, generated(target={"kind": "thumbnail"}), r"ImageGenerated\.target: required field 'id'")
    refused(ImageGenerated, generated(target={"kind": "video", "id": "a1"}), r"target\.kind: expected one of")
    refused(ImageGenerated, generated(target=["thumbnail", "a1"]), r"target: expected a JSON object")
    refused(RenderJob, job(lane=["interactive"]), "lane: expected one of")


def test_fixed_and_open_tuples_are_checked_item_by_item():
    refused(RenderJob, job(crop=[1, 2, 3]), r"crop: expected exactly 4 items")
    refused(RenderJob, job(crop=[1, 2, 3, "4"]), r"crop\[3\]: expected an integer")
    refused(ImageGenerated, generated(request_ids=["ok", 5]), r"request_ids\[1\]")
    refused(ImageGenerated, generated(request_ids="r1"), r"request_ids: expected an array")


def test_batch_failures_must_be_objects_with_string_keys():
    shard = BatchShard(batch_id="b", partition=0, total=1, completed=0, failed=1, pending=0, at=1.0).to_dict()
    refused(BatchShard, {**shard, "failures": ["boom"]}, r"failures\[0\]: expected a JSON object")


@pytest.mark.parametrize("uri", ["/dev/zero", "../outside.jpg", "ab/../../etc/passwd", "a/..", "a\x00b", ""])
def test_a_completion_must_name_a_relative_path_inside_the_store(uri):
    refused(ImageGenerated, generated(uri=uri), r"ImageGenerated\.uri")


def test_a_store_path_may_contain_dots_that_are_not_a_parent_step():
    body = generated(uri="ab/x..y/a1..h400.jpg")
    assert decode(orjson.dumps(body), [], (ImageGenerated,))[0].uri == "ab/x..y/a1..h400.jpg"


def test_strings_are_bounded():
    message = refused(ImageGenerated, generated(job_id="j" * 5000), r"job_id: expected a string of 0 to 4096")
    assert len(message) < 300, "the refusal quotes the value, cut short"
    refused(ImageFailed, {**ImageFailed(Target("thumbnail", "a1"), "v", 1, "j", "permanent", "c", "e", 1,
                                        "2026-11-21T10:00:00Z").to_dict(), "error": "e" * 20000}, "error")


def test_unknown_fields_are_ignored():
    assert decode(orjson.dumps(generated(extra={"a": [1]})), [], (ImageGenerated,))[0].width == 300


def test_a_malformed_table_row_reads_as_no_row(caplog):
    row = {"job_id": "j", "target_kind": "thumbnail", "target_id": "a", "variant": "v", "revision": 1,
           "lane": "background", "status": "running", "created_at": "t", "updated_at": "t"}
    assert JobState.from_dict(row) is not None
    assert JobState.from_dict({**row, "updated_at": 123}) is None
    assert JobState.from_dict({**row, "output": {"uri": "/dev/zero"}}) is None
    assert JobState.from_dict([row]) is None
    assert "malformed JobState row" in caplog.text


def test_encode_escapes_text_that_is_not_utf8():
    failed = ImageFailed(Target("thumbnail", "a1"), "h400.jpg", 1, "j", "permanent", "corrupt",
                         "cannot open caf\udce9.jpg \ud800", 1, "2026-11-21T10:00:00Z")
    envelope = encode(failed, "t\udcff")
    event, _ = decode(envelope.value, envelope.headers, (ImageFailed,))
    assert event.error == "cannot open caf\\xe9.jpg \\ud800"
