"""Generated images through a real broker, a real worker and a real local model
server (cli/stand_in_model.py): slow, hung, rate-limited, failing and
garbage-answering calls; the rate limit measured at the server."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from PIL import Image

from regen.cli.stand_in_model import ModelServer, colour_of
from regen.schemas.events import GenerationRequested, ImageFailed, ImageGenerated
from regen.streams.results import wait_for
from tests.helpers import free_port, publish_all, run

TOKEN = "s3cret-model-token-for-tests"


def ask(target_id: str, prompt: str, revision: int = 1, group: str | None = "case-1",
        generator: str = "local") -> GenerationRequested:
    return GenerationRequested(target_id=target_id, revision=revision, generator=generator, prompt=prompt,
                               parameters={"width": 640, "height": 480}, group_id=group)


def metrics_text(worker) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.settings.web_port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_a_case_goes_on_past_a_hung_call_and_every_failure_ends_as_it_should(start_worker, tmp_path: Path):
    with ModelServer(token=TOKEN) as server:
        by_url = {"image_base64": "", "image_url": "data.0.url"}
        generators = {**server.generator("local", timeout_s=2, cost_per_call=0.04),
                      # A 429's Retry-After holds every call to its generator: the busy one has its own.
                      **server.generator("crowded"),
                      **server.generator("by-url", allowed_hosts=["127.0.0.1"], **by_url),
                      **server.generator("elsewhere", allowed_hosts=["images.example"], **by_url)}
        worker = start_worker(REGEN_GENERATORS=json.dumps(generators), REGEN_TEST_MODEL_TOKEN=TOKEN,
                              REGEN_GENERATION_CONCURRENCY="5", REGEN_MAX_ATTEMPTS="2",
                              REGEN_RETRY_FIRST_DELAY="0.2", REGEN_RETRY_MAX_DELAY="1")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        events = [ask("hung", "a hung call [hang]"), ask("fine-1", "a red kite"), ask("fine-2", "a blue boat"),
                  ask("busy", "a busy model [429:1:2]", generator="crowded"), ask("flaky", "a flaky model [500:1]"),
                  ask("junk", "garbage out [garbage]"), ask("linked", "an image by URL [url]", generator="by-url"),
                  ask("foreign", "an image from elsewhere [url]", generator="elsewhere")]
        run(publish_all(settings, bootstrap, events))
        done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {e.target_id for e in events}, timeout=60))

    store = Path(settings.image_store)
    for target, prompt in (("fine-1", "a red kite"), ("fine-2", "a blue boat"), ("linked", "an image by URL [url]")):
        image = done[target]
        assert isinstance(image, ImageGenerated), image
        assert (image.variant, image.width, image.height, image.attempts) == ("h400.jpg", 533, 400, 1)
        with Image.open(store / image.uri) as im:  # the model's drawing, resized into the variant
            assert im.size == (533, 400) and im.format == "JPEG"
            assert all(abs(a - b) <= 6 for a, b in zip(im.convert("RGB").getpixel((20, 200)), colour_of(prompt),
                                                        strict=True))

    # The hung call was abandoned at its timeout, each attempt, and the
    # server saw the client go away: no socket is left to it.
    hung = done["hung"]
    assert isinstance(hung, ImageFailed) and (hung.reason, hung.error_code, hung.attempts) == \
        ("timeout", "generator_timeout", 2), hung
    hung_calls = server.calls_for("[hang]")
    assert len(hung_calls) == 2
    for call in hung_calls:
        assert call.abandoned_at is not None and 1.9 <= call.abandoned_at - call.started_at <= 3.5, call
    # ... and the case went on meanwhile: the others were answered while the first hung call was open.
    first_hang = hung_calls[0]
    for target in ("fine-1", "fine-2"):
        answered = server.calls_for(dict(zip([e.target_id for e in events], [e.prompt for e in events],
                                             strict=True))[target])[0]
        assert answered.ended_at is not None and answered.ended_at < first_hang.abandoned_at  # type: ignore[operator]

    # 429 with Retry-After: 2 (seconds): retried, and not before the server said.
    busy = done["busy"]
    assert isinstance(busy, ImageGenerated) and busy.attempts == 2, busy
    first, second = server.calls_for("[429")
    assert (first.status, second.status) == (429, 200)
    assert second.started_at - first.started_at >= 1.95
    # 500: retried once, then fine.
    flaky = done["flaky"]
    assert isinstance(flaky, ImageGenerated) and flaky.attempts == 2, flaky
    # Garbage: checked like any source, refused for good, never retried.
    junk = done["junk"]
    assert isinstance(junk, ImageFailed) and (junk.reason, junk.error_code, junk.attempts) == \
        ("permanent", "corrupt", 1), junk
    assert len(server.calls_for("[garbage]")) == 1
    # An image URL on a host the generator does not allow is never fetched.
    foreign = done["foreign"]
    assert isinstance(foreign, ImageFailed) and (foreign.reason, foreign.error_code) == \
        ("permanent", "image_host_not_allowed"), foreign

    # Every call carried the token (none was refused), and the token is in no log line.
    assert not [c for c in server.calls if c.status == 401]
    assert TOKEN not in worker.log.read_text(errors="replace")

    # Cost and latency per generator and outcome.
    text = metrics_text(worker)
    assert 'regen_generator_calls_total{generator="local",outcome="timeout"} 2.0' in text
    assert 'regen_generator_calls_total{generator="by-url",outcome="ok"} 1.0' in text
    assert 'regen_generator_calls_total{generator="crowded",outcome="rate_limited"} 1.0' in text
    # (garbage is a good answer to the generator; the render refuses it)
    ok_calls = sum(1 for c in server.calls if c.status == 200 and "[url]" not in c.prompt and "[429" not in c.prompt)
    assert f'regen_generator_calls_total{{generator="local",outcome="ok"}} {float(ok_calls)}' in text
    assert f'regen_generator_cost_total{{generator="local",outcome="ok"}} {ok_calls * 0.04:.2f}' in text
    assert 'regen_generator_seconds_bucket{generator="local",le="60.0",outcome="ok"}' in text


def test_a_newer_revision_supersedes_and_every_variant_comes_from_one_call(start_worker):
    with ModelServer() as server:
        worker = start_worker(REGEN_GENERATORS=json.dumps(server.generator("local")),
                              REGEN_GENERATED_VARIANTS="h400.jpg,h200.jpg")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        run(publish_all(settings, bootstrap, [ask("re", "first take [slow:1]"), ask("re", "second take", 2),
                                              ask("re", "an old take arriving late", 1)]))
        done = run(wait_for(settings, bootstrap, lambda c: f"{c.variant}:r{c.revision}" if c.target.id == "re"
                            else None, {"h400.jpg:r2", "h200.jpg:r2"}, timeout=60))
        assert all(isinstance(c, ImageGenerated) for c in done.values()), done
        # One model call for both variants of revision 2, and the late revision 1 asked nothing.
        assert len(server.calls_for("second take")) == 1
        assert not server.calls_for("an old take")
        with Image.open(Path(settings.image_store) / done["h200.jpg:r2"].uri) as small:
            assert small.size == (267, 200)
            assert all(abs(a - b) <= 6 for a, b in zip(small.convert("RGB").getpixel((10, 100)),
                                                        colour_of("second take"), strict=True))


# The rate limit's window in these tests: the production minute, shortened
# (rate_window_s) so a test waits seconds for the calls over the limit. The
# call window keeps GUARD_S (1 s) beyond it; the checks leave 1 s more for
# start-up jitter, as they did over the minute.
WINDOW_S = 5.0


def rate_limited(server: ModelServer, limit: int) -> str:
    return json.dumps(server.generator("local", calls_per_minute=limit, rate_window_s=WINDOW_S))


def test_the_rate_limit_holds_calls_per_minute_measured_at_the_server(start_worker):
    limit = 6
    with ModelServer() as server:
        worker = start_worker(REGEN_GENERATORS=rate_limited(server, limit),
                              REGEN_GENERATION_CONCURRENCY="5")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        events = [ask(f"r{i}", f"rate limited {i}") for i in range(limit + 2)]
        run(publish_all(settings, bootstrap, events))
        done = run(wait_for(settings, bootstrap, lambda c: c.target.id, {e.target_id for e in events}, timeout=120))
        assert all(isinstance(c, ImageGenerated) for c in done.values()), done

    starts = sorted(c.started_at for c in server.calls)
    assert len(starts) == limit + 2
    # In no window more than the limit ...
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + WINDOW_S) <= limit, starts
    # ... and the limit is used, not undercut: the calls over it start as the window lets them.
    assert starts[limit] - starts[0] < WINDOW_S + 2, starts


def test_two_workers_share_the_rate_limit_by_their_partitions(start_worker, tmp_path: Path):
    """Each worker takes the share of the lane's partitions it reads: the two
    together keep the limit, measured at the server, and use all of it."""
    limit = 8
    # Three targets in each of the 4 partitions: whichever way the partitions
    # are split, the workers' shares (2 calls a window per partition) are used up.
    targets = ["f0", "f10", "f11", "f1", "f2", "f4", "f3", "f5", "f7", "f6", "f17", "f18"]
    with ModelServer() as server:
        env = {"REGEN_GENERATORS": rate_limited(server, limit),
               "REGEN_GENERATION_CONCURRENCY": "5", "REGEN_RENDER_PROCESSES": "1"}
        workers = [start_worker(REGEN_STATE_DIR=str(tmp_path / f"state{n}"), REGEN_WEB_PORT=str(free_port()), **env)
                   for n in range(2)]
        settings, bootstrap = workers[0].settings, workers[0].env["KAFKA_BOOTSTRAP_SERVERS"]
        run(publish_all(settings, bootstrap, [ask(t, f"shared limit {t}") for t in targets]))
        done = run(wait_for(settings, bootstrap, lambda c: c.target.id, set(targets), timeout=150))
        assert all(isinstance(c, ImageGenerated) for c in done.values()), done

    starts = sorted(c.started_at for c in server.calls)
    assert len(starts) == len(targets)
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + WINDOW_S) <= limit, starts
    assert starts[limit] - starts[0] < WINDOW_S + 2, starts
    for worker in workers:  # both called: the limit was shared, not held by one
        assert "generator local for generated:" in worker.log.read_text(errors="replace"), worker.tail()
