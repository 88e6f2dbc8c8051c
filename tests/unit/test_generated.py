"""The generated kind's pure parts: generator settings, request templates,
answers, the call window (rate limit shares), rule 12's commit bookkeeping,
folds and the job's detail; and the HTTP call against a real local server."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from regen.agents.call_window import GUARD_S, CallWindow
from regen.agents.http_generator import (
    MAX_RETRY_AFTER_S,
    CallFailed,
    check_image_url,
    decode_base64_image,
    fill_template,
    find,
    generate,
    retry_after_s,
    status_failure,
)
from regen.cli.stand_in_model import ModelServer
from regen.generator_config import GeneratorConfig, parse_generators
from regen.kinds.base import GatherFailed
from regen.kinds.generated import Generated, ask_of
from regen.projections import generations, variant_folds
from regen.schemas.events import GenerationRequested, ImageFailed, ImageGenerated, Target
from regen.settings import Settings
from regen.streams.checkpoint import InFlight
from regen.streams.exceptions import ConfigError

AT = "2026-01-01T00:00:00Z"
SHA = "ab" * 32


def config(**changes) -> GeneratorConfig:
    entry = {"url": "http://127.0.0.1:9/v1", "request": {"prompt": "{prompt}"}, "image_base64": "data.0.b64_json",
             **changes}
    return parse_generators(json.dumps({"m": entry}))[0]


# --- settings ---------------------------------------------------------------------

def test_generators_are_read_from_json_and_the_secret_is_only_named():
    env = {"REGEN_GENERATORS": json.dumps({"m": {"url": "https://models.example/v1", "request": {"p": "{prompt}"},
                                                 "image_base64": "data.0.b64_json", "auth_env": "M_KEY",
                                                 "calls_per_minute": 30, "cost_per_call": 0.04}}),
           "REGEN_GENERATED_VARIANTS": "h200.jpg", "REGEN_GENERATION_CONCURRENCY": "7", "M_KEY": "do-not-print"}
    settings = Settings.from_env(env)
    m = settings.generator("m")
    assert m is not None and (m.calls_per_minute, m.cost_per_call, m.auth_env) == (30, 0.04, "M_KEY")
    assert (settings.generated_variants, settings.generation_concurrency) == (("h200.jpg",), 7)
    assert "do-not-print" not in repr(settings) and "M_KEY" in repr(settings)
    assert settings.generator("other") is None
    assert m.rate_window_s == 60.0  # calls_per_minute means per minute unless a test shortens the window


def test_a_generator_rate_window_is_the_call_window_s_span():
    """A shortened rate_window_s (for tests) counts calls_per_minute over it."""
    config = parse_generators(json.dumps({"m": {"url": "http://127.0.0.1:9/v1", "request": {},
                                                "image_base64": "a", "calls_per_minute": 2,
                                                "rate_window_s": 5}}))[0]
    window = CallWindow(config.calls_per_minute, config.rate_window_s)
    window.set_share(4, 4, now=0.0)
    assert (window.take(0.0), window.take(0.1)) == (0.0, 0.0)
    assert window.take(0.2) == pytest.approx(5.0 + GUARD_S - 0.2)
    assert window.take(5.0 + GUARD_S) == 0.0


def test_a_worker_keeps_each_generator_s_own_rate_window():
    from regen.agents.generation import GenerationServices
    from regen.agents.metrics import Metrics

    generators = {name: {"url": "http://127.0.0.1:9/v1", "request": {}, "image_base64": "a", **extra}
                  for name, extra in (("quick", {"rate_window_s": 5}), ("plain", {}))}
    services = GenerationServices(Settings.from_env({"REGEN_GENERATORS": json.dumps(generators)}), Metrics())
    assert {name: w.window_s for name, w in services.windows.items()} == {"quick": 5.0, "plain": 60.0}


@pytest.mark.parametrize("entry, message", [
    ({"request": {}, "image_base64": "a"}, "url must be an http"),
    ({"url": "ftp://x/y", "request": {}, "image_base64": "a"}, "url must be an http"),
    ({"url": "http://x/y", "image_base64": "a"}, "request is missing"),
    ({"url": "http://x/y", "request": {}}, "exactly one of image_base64"),
    ({"url": "http://x/y", "request": {}, "image_url": "data.0.url"}, "needs allowed_hosts"),
    ({"url": "http://x/y", "request": {}, "image_base64": "a", "auth_env": "sk-live-123 456"}, "the NAME"),
    ({"url": "http://x/y", "request": {}, "image_base64": "a", "timeout_s": 0}, "timeout_s=0"),
    ({"url": "http://x/y", "request": {}, "image_base64": "a", "calls_per_minute": "lots"}, "calls_per_minute"),
    ({"url": "http://x/y", "request": {}, "image_base64": "a", "rate_window_s": 0.5}, "rate_window_s=0.5"),
    ({"url": "http://x/y", "request": {}, "image_base64": "a", "retries": 3}, "unknown setting"),
])
def test_a_bad_generator_setting_says_what_is_wrong(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_generators(json.dumps({"m": entry}))


def test_generated_variants_must_be_configured_variants():
    with pytest.raises(ConfigError, match="REGEN_GENERATED_VARIANTS names w999.jpg"):
        Settings.from_env({"REGEN_GENERATED_VARIANTS": "w999.jpg"})
    with pytest.raises(ConfigError, match="not valid JSON"):
        Settings.from_env({"REGEN_GENERATORS": "{nope"})


# --- requests and answers ---------------------------------------------------------

def test_the_template_is_filled_with_the_prompt_and_parameters():
    template = {"prompt": "{prompt}", "style": "photo of {prompt}", "size": "{parameters.size}",
                "seed": "{parameters.seed}", "all": "{parameters}", "n": 1, "list": ["{prompt}", 2]}
    body = fill_template(template, 'a "kite"', {"size": "512x512"})
    assert body == {"prompt": 'a "kite"', "style": 'photo of a "kite"', "size": "512x512",
                    "all": {"size": "512x512"}, "n": 1, "list": ['a "kite"', 2]}  # seed: not given, left out


def test_the_image_is_found_by_its_path_or_the_answer_is_bad():
    answer = {"data": [{"b64_json": "QUJD"}]}
    assert find(answer, "data.0.b64_json") == "QUJD"
    for path in ("data.1.b64_json", "data.0.url", "data.x"):
        with pytest.raises(CallFailed, match="has no") as e:
            find(answer, path)
        assert e.value.permanent


def test_base64_is_decoded_within_its_bound():
    assert decode_base64_image(base64.b64encode(b"png!").decode(), 100) == b"png!"
    assert decode_base64_image("data:image/png;base64," + base64.b64encode(b"x").decode(), 100) == b"x"
    with pytest.raises(CallFailed, match="over 100 bytes"):
        decode_base64_image(base64.b64encode(b"x" * 200).decode(), 100)
    with pytest.raises(CallFailed, match="not base64"):
        decode_base64_image("not base64 at all!", 100)
    with pytest.raises(CallFailed, match="not a string"):
        decode_base64_image({"b64": 1}, 100)


def test_image_urls_only_from_allowed_hosts():
    allowed = config(image_base64="", image_url="data.0.url", allowed_hosts=["img.example"])
    assert check_image_url("https://img.example/a.png", allowed) == "https://img.example/a.png"
    for url in ("https://evil.example/a.png", "file:///etc/passwd", "https://user:pw@img.example/a.png",
                "https://img.example.evil.example/a.png", 42):
        with pytest.raises(CallFailed) as e:
            check_image_url(url, allowed)
        assert e.value.permanent


def test_statuses_map_onto_retries():
    assert status_failure(429, "7", "m", 0).retry_after == 7.0 and not status_failure(429, None, "m", 0).permanent
    assert not status_failure(503, None, "m", 0).permanent
    for status in (400, 401, 403, 404, 422, 302):
        assert status_failure(status, None, "m", 0).permanent
    assert retry_after_s("99999", 0) == MAX_RETRY_AFTER_S
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert retry_after_s("soon", 0) is None and retry_after_s(None, 0) is None


# --- the call window --------------------------------------------------------------

def test_a_worker_keeps_its_share_in_every_window():
    window = CallWindow(6, window_s=60)
    window.set_share(2, 4, now=0)  # half the partitions: 3 calls a minute
    assert [window.take(t) for t in (0, 1, 2)] == [0, 0, 0]
    assert window.take(3) == pytest.approx(60 + GUARD_S - 3)  # until the first call leaves the window
    assert window.take(61 + GUARD_S) == 0


def test_a_share_shrinks_at_once_and_grows_one_window_later():
    window = CallWindow(8, window_s=60)
    window.set_share(2, 4, now=0)  # 4 a minute
    assert window.share(0) == 4
    window.set_share(1, 4, now=10)
    assert window.share(10) == 2  # a partition went to another worker: fewer calls at once
    window.set_share(4, 4, now=20)
    assert window.share(20) == 2 and window.share(79) == 2  # its old owner may have used its share
    assert window.share(80) == 8


def test_a_first_share_applies_at_once_and_nothing_owned_calls_nothing():
    window = CallWindow(60)
    window.set_share(0, 4, now=0)  # starting: nothing assigned yet
    window.set_share(4, 4, now=1)
    assert window.share(1) == 60
    window.set_share(0, 4, now=2)
    assert window.take(2) == 60


def test_a_share_under_one_call_spaces_its_calls_out():
    window = CallWindow(2, window_s=60)
    window.set_share(1, 4, now=0)  # half a call a minute: one call every two minutes
    assert window.take(0) == 0
    assert window.take(60) == pytest.approx(60 + GUARD_S)


def test_retry_after_holds_every_call():
    window = CallWindow(60)
    window.set_share(1, 1, now=0)
    window.hold_until(5)
    assert window.take(1) == 4
    assert window.take(5) == 0


# --- rule 12 ----------------------------------------------------------------------

def test_offsets_are_committed_only_past_an_unbroken_run_of_finished_records():
    flight = InFlight()
    for offset in (10, 11, 12):
        flight.started(0, offset)
    flight.started(1, 5)
    flight.done(0, 11)  # finished before the one in front of it
    assert flight.committable() == {}
    flight.done(0, 10)
    flight.done(1, 5)
    assert flight.committable() == {0: 12, 1: 6}
    assert len(flight) == 1 and flight.committable() == {}
    flight.done(0, 12)
    assert flight.committable() == {0: 13}


# --- the kind ---------------------------------------------------------------------

def request(revision: int, prompt: str = "a kite", group: str | None = "case-1") -> GenerationRequested:
    return GenerationRequested(target_id="g1", revision=revision, generator="m", prompt=prompt,
                               parameters={"size": "512x512"}, group_id=group)


def test_a_newer_revision_replaces_the_prompt_and_an_older_or_equal_one_changes_nothing():
    state = generations.generation_requested(None, request(2), AT)
    assert generations.generation_requested(state, request(2, "another prompt"), AT) is state
    assert generations.generation_requested(state, request(1, "an old prompt"), AT) is state
    newer = generations.generation_requested(state, request(3, "a new prompt", group="case-2"), AT)
    assert (newer.revision, newer.prompt, newer.group_id) == (3, "a new prompt", "case-2")
    assert Generated().group(newer) == "case-2"


def test_the_job_carries_what_to_ask_and_a_forged_detail_fails_for_good():
    kind = Generated()
    settings = Settings()
    state = generations.generation_requested(None, request(1), AT)
    job = kind.plan(state, "h400.jpg", "background", AT)
    ask = ask_of(job)
    assert (ask.generator, ask.prompt, ask.parameters) == ("m", "a kite", {"size": "512x512"})
    other = kind.plan(generations.generation_requested(None, request(1, "another"), AT), "h400.jpg", "background", AT)
    assert job.source_uri != other.source_uri  # another question, another answer
    assert kind.render_call(job, settings)[1].answer_uri == job.source_uri
    for detail in (None, {"generator": "m"}, {"generator": "m", "prompt": "x" * 9000},
                   {"generator": "m", "prompt": "p", "parameters": {"deep": {"x": 1}}},
                   {"generator": "m", "prompt": "p", "parameters": [1]}):
        with pytest.raises(GatherFailed) as e:
            ask_of(job.__class__(**{**job.__dict__, "detail": detail}))
        assert e.value.permanent and e.value.code == "bad_job"


def test_completions_fold_per_variant_and_a_late_failure_never_hides_an_image():
    state = generations.generation_requested(None, request(1), AT)
    image = ImageGenerated(target=Target("generated", "g1"), variant="h400.jpg", revision=1, job_id="j", uri="a/b",
                           sha256=SHA, width=4, height=3, bytes=10, render_ms=1.0, attempts=1, cache_hit=False,
                           generated_at=AT)
    failure = ImageFailed(target=image.target, variant="h400.jpg", revision=1, job_id="j", reason="exhausted",
                          error_code="generator_error", error="500", attempts=3, failed_at=AT)
    done = variant_folds.variant_generated(state, image)
    assert Generated().current_output(done, "h400.jpg")["sha256"] == SHA  # type: ignore[index]
    assert variant_folds.variant_failed(done, failure) == done


# --- the call, against a real local server -----------------------------------------

def test_a_call_sends_the_token_and_gets_the_drawing():
    with ModelServer(token="t0k") as server:
        entry = server.generator("m", auth_env="REGEN_UNIT_MODEL_TOKEN")["m"]
        local = parse_generators(json.dumps({"m": entry}))[0]

        async def call(secret: str | None) -> bytes:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                return await generate(session, local, "a kite", {"width": 32, "height": 16}, secret)

        png = asyncio.run(call("t0k"))
        assert png.startswith(b"\x89PNG")
        with pytest.raises(CallFailed) as refused:
            asyncio.run(call("wrong"))
        assert refused.value.permanent and refused.value.code == "generator_refused"
        with pytest.raises(CallFailed, match="REGEN_UNIT_MODEL_TOKEN is not set"):
            asyncio.run(call(None))
        assert [c.status for c in server.calls] == [200, 401]


def test_an_undecodable_answer_is_forgotten_but_a_file_named_offline_is_kept(tmp_path):
    from regen.imaging.errors import CorruptImage
    from regen.imaging.generated import GeneratedTask, run_generated_task

    answers = tmp_path / "answers"
    (answers / "ab").mkdir(parents=True)
    stored = answers / "ab" / "abcd"
    stored.write_bytes(b"no image at all")
    with pytest.raises(CorruptImage):
        run_generated_task(GeneratedTask("ab/abcd", answers, "h200.jpg", tmp_path / "store"))
    assert not stored.exists()  # asking again calls the model

    named = tmp_path / "mine.png"
    named.write_bytes(b"no image either")
    kind = Generated()
    fn, task = kind.offline_call(named, tmp_path / "store", "h200.jpg", Settings(), {})
    with pytest.raises(CorruptImage):
        fn(task)
    assert named.read_bytes() == b"no image either"
