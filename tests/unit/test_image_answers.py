"""Images by URL, the pure part: variant negotiation, If-None-Match, what a
view answers from a target's output and job, and the one-request rule of the
renders viewers wait on."""

from __future__ import annotations

import asyncio

import pytest

from regen.agents.image_waiters import ViewRenders
from regen.projections import image_answers as answers
from regen.projections.signed_urls import image_url_key, signature_valid
from regen.projections.state import JobState
from regen.schemas.events import ImageGenerated, Target
from regen.settings import Settings
from regen.streams.exceptions import ConfigError

CONFIGURED = ("h400.jpg", "h400.webp", "h400.avif", "h200.jpg", "full.png", "card")
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SHA = "ab" * 32
OUTPUT = {"uri": f"thumbnails/ab/{SHA}/h400.jpg", "sha256": SHA, "width": 300, "height": 400, "bytes": 1234}
RULES = answers.Rules(retry_on_view_s=60, max_age_s=30, private=False, placeholder=False)
NOW = 1_800_000_000.0


def chosen(asked: str, accept: str | None) -> str | answers.Refused:
    result = answers.choose_variant(asked, CONFIGURED, accept)
    return result.variant if isinstance(result, answers.Chosen) else result


# --- negotiation -----------------------------------------------------------------------

@pytest.mark.parametrize(("accept", "expected"), [
    (CHROME, "h400.avif"),  # AVIF > WebP > JPEG when rated equally
    ("image/webp,image/jpeg", "h400.webp"),
    ("image/jpeg", "h400.jpg"),
    ("image/avif;q=0.5,image/webp;q=0.9,image/jpeg;q=0.9", "h400.webp"),
    ("image/*;q=0.8,image/jpeg", "h400.jpg"),  # the specific range wins over image/*
    ("image/avif;q=0,image/*", "h400.webp"),  # q=0: not acceptable, even though image/* takes it
    ("*/*", "h400.avif"),
    (None, "h400.avif"),
    ("text/html, IMAGE/JPEG ; q=1", "h400.jpg"),  # case and spaces
    ("image/webp;q=abc,image/jpeg;q=0.1", "h400.jpg"),  # a q that does not parse rates 0
])
def test_a_base_name_picks_the_format_accept_rates_highest(accept, expected):
    result = answers.choose_variant("h400", CONFIGURED, accept)
    assert result == answers.Chosen(expected, negotiated=True)


def test_a_name_with_extension_or_a_preset_is_exact_whatever_accept_says():
    assert answers.choose_variant("h400.jpg", CONFIGURED, "image/webp") == answers.Chosen("h400.jpg", False)
    assert answers.choose_variant("card", CONFIGURED, "image/webp") == answers.Chosen("card", False)
    assert chosen("h200", "image/webp") == answers.Refused(
        406, "'h200' comes as image/jpeg; the Accept header takes none of them")


def test_an_unknown_variant_is_a_404_naming_the_configured_ones():
    for asked in ("h999", "h400.gif", "../h400.jpg", "x" * 500):
        refused = chosen(asked, CHROME)
        assert isinstance(refused, answers.Refused) and refused.status == 404
        assert "h400.jpg, h400.webp" in refused.message and "h200" in refused.message
        assert len(refused.message) < 400


def test_a_hostile_accept_header_is_bounded():
    accept = ",".join(["text/plain"] * 10_000) + ",image/jpeg"
    assert len(answers.parse_accept(accept)) == answers.MAX_ACCEPT_ENTRIES
    assert chosen("h400", accept).status == 406  # the jpeg entry was past the bound


@pytest.mark.parametrize("target_id", ["a1", "photo_7.jpg", "x:y@z-1"])
def test_plain_ids_are_taken(target_id):
    assert answers.id_problem(target_id) is None


@pytest.mark.parametrize("target_id", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a b", "é", "x" * 201, "%2e%2e"])
def test_ids_that_could_be_path_tricks_or_unbounded_are_refused(target_id):
    assert answers.id_problem(target_id) is not None


# --- If-None-Match -------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "matches"), [
    (f'"{SHA}"', True),
    (f'W/"{SHA}"', True),  # weak comparison
    (f'"other", "{SHA}"', True),
    (f' "other" ,W/"{SHA}" ', True),
    ("*", True),
    ('"other"', False),
    (SHA, False),  # not quoted: not that entity tag
    ("", False),
    (None, False),
])
def test_if_none_match(header, matches):
    assert answers.none_match(header, answers.etag_of(SHA)) is matches


# --- what a view answers --------------------------------------------------------------------

def failed_job(finished_at: str = "2027-01-15T08:00:00.000Z") -> JobState:
    return JobState(job_id="thumbnail:a1:h400.jpg:r1", target_kind="thumbnail", target_id="a1", variant="h400.jpg",
                    revision=1, lane="interactive", status="failed", created_at=finished_at, updated_at=finished_at,
                    finished_at=finished_at, error="not a JPEG", error_code="corrupt", reason="permanent", attempts=1)


FAILED_AT = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_a_current_output_is_a_hit_or_a_304_for_a_client_that_holds_it():
    assert answers.decide(OUTPUT, None, None, None, NOW, RULES) == answers.Hit(OUTPUT)
    assert answers.decide(OUTPUT, None, f'W/"{SHA}"', None, NOW, RULES) == answers.NotModified(f'"{SHA}"')
    assert answers.decide(OUTPUT, None, '"older"', None, NOW, RULES) == answers.Hit(OUTPUT)


def test_no_output_renders_on_view():
    assert answers.decide(None, None, None, None, NOW, RULES) == answers.Render(force=False)
    running = failed_job().evolve(status="running")
    assert answers.decide(None, running, "*", None, NOW, RULES) == answers.Render(force=False)


def test_a_failure_is_tried_again_on_view_once_older_than_the_delay_and_once_per_delay():
    job = failed_job()
    early = answers.decide(None, job, None, None, FAILED_AT + 59, RULES)
    assert isinstance(early, answers.Failed)
    assert (early.reason, early.error_code, early.retry_at) == ("permanent", "corrupt", FAILED_AT + 60)
    assert answers.decide(None, job, None, None, FAILED_AT + 60, RULES) == answers.Render(force=True)
    # A view tried it 10 s ago (and it is failed again, or its retry not folded yet): not before 60 s after that.
    again = answers.decide(None, job, None, FAILED_AT + 100, FAILED_AT + 110, RULES)
    assert isinstance(again, answers.Failed) and again.retry_at == FAILED_AT + 160
    assert answers.decide(None, job, None, FAILED_AT + 100, FAILED_AT + 160, RULES) == answers.Render(force=True)


def test_headers_of_a_hit_a_304_a_pending_and_a_failed_answer():
    hit = answers.hit_headers(f'"{SHA}"', "image/jpeg", False, RULES)
    assert hit == {"ETag": f'"{SHA}"', "Cache-Control": "public, max-age=30", "Content-Type": "image/jpeg"}
    private = answers.Rules(retry_on_view_s=60, max_age_s=30, private=True, placeholder=False)
    assert answers.hit_headers('"x"', "image/webp", True, private)["Cache-Control"] == "private, max-age=30"
    assert answers.hit_headers('"x"', "image/webp", True, private)["Vary"] == "Accept"
    assert answers.not_modified_headers('"x"', True, RULES) == {"ETag": '"x"', "Cache-Control": "public, max-age=30",
                                                                "Vary": "Accept"}

    pending = answers.pending_answer(5.0, False, RULES)
    assert (pending.status, pending.headers["Retry-After"], pending.body["status"]) == (202, "2", "pending")
    failed = answers.Failed("permanent", "corrupt", "not a JPEG", "2027-01-15T08:00:00.000Z", FAILED_AT + 60)
    told = answers.failed_answer(failed, FAILED_AT + 20.5, False, RULES)
    assert (told.status, told.headers["Retry-After"], told.body["retry_after_s"]) == (503, "40", 40)
    assert told.body["error_code"] == "corrupt" and "not a JPEG" == told.body["error"]

    with_placeholder = answers.Rules(retry_on_view_s=60, max_age_s=30, private=False, placeholder=True)
    shown = answers.pending_answer(5.0, True, with_placeholder)
    assert (shown.status, shown.placeholder, shown.headers) == (200, "pending", {"Cache-Control": "no-store",
                                                                                "Vary": "Accept"})
    assert answers.failed_answer(failed, FAILED_AT, False, with_placeholder).placeholder == "failed"


def test_a_signed_image_url_opens_that_image_only_and_never_a_store_path():
    key = image_url_key("t0ken")
    url = answers.signed_image_url(key, "thumbnail", "a1", "h400", 2_000_000_000)
    path, query = url.split("?")
    params = dict(part.split("=") for part in query.split("&"))
    assert path == "/images/thumbnail/a1/h400"
    assert signature_valid(key, answers.signed_path("thumbnail", "a1", "h400"), params["exp"], params["sig"], NOW)
    assert not signature_valid(key, answers.signed_path("thumbnail", "a2", "h400"), params["exp"], params["sig"], NOW)
    assert not signature_valid(key, "thumbnail/a1/h400", params["exp"], params["sig"], NOW)  # a store path


# --- one request however many viewers ------------------------------------------------------

def generated(target_id: str, variant: str) -> ImageGenerated:
    return ImageGenerated(target=Target("thumbnail", target_id), variant=variant, revision=1,
                          job_id=f"thumbnail:{target_id}:{variant}:r1", uri=OUTPUT["uri"], sha256=SHA, width=300,
                          height=400, bytes=1234, render_ms=5.0, attempts=1, cache_hit=False,
                          generated_at="2027-01-15T08:00:00.000Z")


def test_many_viewers_of_one_missing_image_cause_one_request_and_all_wake_on_its_completion():
    async def scenario():
        sent = []

        async def publish(event):
            await asyncio.sleep(0.01)  # the broker's ack: other viewers arrive meanwhile
            sent.append(event)

        renders = ViewRenders(publish, stale_after_s=60)
        key = ("thumbnail", "a1", "h400.jpg")
        asked = await asyncio.gather(*(renders.requested(key, force=False) for _ in range(50)))
        assert [published for _, published in asked].count(True) == 1
        assert len(sent) == 1 and sent[0].target == Target("thumbnail", "a1") and not sent[0].force
        assert sent[0].priority == "interactive"
        renders.completed(generated("a2", "h400.jpg"))  # another image's completion wakes nobody here
        assert not any(future.done() for future, _ in asked)
        renders.completed(generated("a1", "h400.jpg"))
        assert all(future.result().target.id == "a1" for future, _ in asked)
        # The next miss of it (a new revision, say) asks again.
        _, published = await renders.requested(key, force=False)
        assert published and len(sent) == 2

    asyncio.run(scenario())


def test_a_retry_on_view_is_forced_is_not_folded_into_a_plain_request_and_is_remembered():
    async def scenario():
        sent = []

        async def publish(event):
            sent.append(event)

        renders = ViewRenders(publish, stale_after_s=60)
        key = ("thumbnail", "a1", "h400.jpg")
        await renders.requested(key, force=False)
        assert renders.last_retry(key) is None
        _, published = await renders.requested(key, force=True)
        assert published and sent[-1].force and renders.last_retry(key) is not None
        _, published = await renders.requested(key, force=False)  # joins the forced one
        assert not published and len(sent) == 2

    asyncio.run(scenario())


def test_a_request_the_broker_did_not_take_lets_the_next_view_ask_again():
    async def scenario():
        calls = []

        async def publish(event):
            calls.append(event)
            if len(calls) == 1:
                raise TimeoutError

        renders = ViewRenders(publish, stale_after_s=60)
        key = ("thumbnail", "a1", "h400.jpg")
        with pytest.raises(TimeoutError):
            await renders.requested(key, force=False)
        _, published = await renders.requested(key, force=False)
        assert published and len(calls) == 2

    asyncio.run(scenario())


def test_image_url_settings_are_validated():
    assert Settings.from_env({}).image_wait == 5.0
    parsed = Settings.from_env({"REGEN_IMAGE_WAIT_S": "0.5", "REGEN_IMAGE_MAX_AGE": "0",
                                "REGEN_IMAGE_RETRY_ON_VIEW_S": "2", "REGEN_IMAGE_PLACEHOLDER": "builtin"})
    assert (parsed.image_wait, parsed.image_max_age, parsed.image_retry_on_view, parsed.image_placeholder) == \
        (0.5, 0, 2.0, "builtin")
    for env, named in (({"REGEN_IMAGE_WAIT_S": "61"}, "REGEN_IMAGE_WAIT_S"),
                       ({"REGEN_IMAGE_RETRY_ON_VIEW_S": "0"}, "REGEN_IMAGE_RETRY_ON_VIEW_S"),
                       ({"REGEN_IMAGE_MAX_AGE": "-1"}, "REGEN_IMAGE_MAX_AGE"),
                       ({"REGEN_IMAGE_PLACEHOLDER": "/etc/passwd"}, "REGEN_IMAGE_PLACEHOLDER")):
        with pytest.raises(ConfigError, match=named):
            Settings.from_env(env)


# --- bytes kept in memory ----------------------------------------------------------------------

def test_checked_bytes_are_kept_within_a_budget_and_checked_again_after_a_while():
    from regen.agents.image_bytes import VerifiedBytes

    kept = VerifiedBytes(budget_bytes=800, recheck_s=30)
    kept.put("a.jpg", SHA, b"a" * 100, now=0)
    assert kept.get("a.jpg", SHA, now=29.9) == b"a" * 100
    assert kept.get("a.jpg", "cd" * 32, now=1) is None  # another sha256 recorded: not these bytes
    assert kept.get("a.jpg", SHA, now=30) is None  # read and check the file again
    kept.put("big.png", SHA, b"b" * 101, now=0)  # over an eighth of the budget: never kept
    assert kept.get("big.png", SHA, now=0) is None
    for i in range(9):
        kept.put(f"{i}.jpg", SHA, b"x" * 100, now=10)
    assert kept.total_bytes <= 800
    assert kept.get("a.jpg", SHA, now=10) is None and kept.get("0.jpg", SHA, now=10) is None  # least recent out
    assert kept.get("8.jpg", SHA, now=10) is not None
    kept.forget("8.jpg", SHA)
    assert kept.get("8.jpg", SHA, now=10) is None
