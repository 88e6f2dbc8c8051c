"""Images by URL against real workers and a real broker: a page in real
headless Chromium (Debian's) whose ``<img>`` names a thumbnail variant
nobody rendered shows it on the first load, gets a 304 on reload, and shows
a source that failed once it is fixed on disk; with two workers, the one
that does not own the image forwards the query and answers the same."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from playwright.sync_api import sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from regen.agents.routing import ANSWERED_BY, normalize_url
from regen.projections.image_answers import signed_image_url
from regen.projections.signed_urls import image_url_key
from tests.helpers import eventually, free_port, import_event, publish_all, run

CHROMIUM = os.environ.get("REGEN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "img-t0ken"


def fetch(worker, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def answers_counted(worker, token: str | None = None) -> dict[str, float]:
    status, _, body = fetch(worker, "/metrics", {"Authorization": f"Bearer {token}"} if token else None)
    assert status == 200
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "regen_image_url_answers":
            for s in family.samples:
                if s.name.endswith("_total"):
                    counted[s.labels["answer"]] = s.value
    return counted


def events_in(worker, event_type: str) -> float:
    status, _, body = fetch(worker, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    return sum(s.value for family in text_string_to_metric_families(body.decode()) if family.name == "regen_events_in"
               for s in family.samples if s.name == "regen_events_in_total" and s.labels.get("type") == event_type)


def serve_page(folder: Path, html: str) -> tuple[ThreadingHTTPServer, str]:
    """The page a person opens, from a web server of its own (another origin than the worker's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(html)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                 partial(SimpleHTTPRequestHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/index.html"


def image_shown(page) -> bool:
    return page.evaluate("() => { const i = document.querySelector('img'); return i.complete && i.naturalWidth > 0 }")


def test_a_page_shows_a_never_rendered_thumbnail_revalidates_it_and_shows_a_fixed_source(
        start_worker, corpus, tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    media = tmp_path / "media"
    media.mkdir()
    good = media / "good.jpg"
    shutil.copy(corpus / "photos" / "Portrait_1.jpg", good)
    fixable = media / "fixable.jpg"
    shutil.copy(corpus / "photos" / "Landscape_2.jpg", fixable)
    imports = [import_event(good, media, "good"), import_event(fixable, media, "fixable")]
    original = fixable.read_bytes()
    fixable.write_bytes(original[: len(original) // 3])  # corrupt on disk: a copy cut short
    # h200.jpg is configured but not pre-generated: nobody renders it until it is viewed.
    worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h400.jpg",
                          REGEN_IMAGE_MAX_AGE="0", REGEN_IMAGE_RETRY_ON_VIEW_S="3", REGEN_IMAGE_WAIT_S="20",
                          REGEN_MAX_ATTEMPTS="1")
    run(publish_all(worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], imports))
    assert eventually(lambda: worker.get("/jobs/thumbnail:good:h400.jpg:r1")[1].get("status") == "completed", 60)
    assert eventually(lambda: worker.get("/jobs/thumbnail:fixable:h400.jpg:r1")[1].get("status") == "failed", 30)
    assert worker.get("/jobs/thumbnail:good:h200.jpg:r1")[0] == 404, "h200.jpg was rendered before anyone viewed it"
    base = f"http://127.0.0.1:{worker.settings.web_port}"
    good_page, good_url = serve_page(tmp_path / "site-good", f'<img src="{base}/images/thumbnail/good/h200.jpg">')
    fixed_page, fixed_url = serve_page(tmp_path / "site-fixed",
                                       f'<img src="{base}/images/thumbnail/fixable/h200.jpg">')

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                statuses: list[int] = []
                page.on("response", lambda r: statuses.append(r.status) if "/images/" in r.url else None)
                page.goto(good_url)
                page.wait_for_function("() => document.querySelector('img').complete", timeout=30_000)
                assert image_shown(page), f"the thumbnail did not show on the first load: {statuses}"
                width = page.evaluate("() => document.querySelector('img').naturalWidth")
                height = page.evaluate("() => document.querySelector('img').naturalHeight")
                assert height == 200 and width > 0
                assert statuses == [200]
                first = answers_counted(worker)
                assert first.get("rendered_on_view") == 1 and first.get("hit", 0) == 0, first
                job = worker.get("/jobs/thumbnail:good:h200.jpg:r1")[1]
                assert job["status"] == "completed" and job["lane"] == "interactive", job

                page.reload()
                page.wait_for_function("() => document.querySelector('img').complete", timeout=30_000)
                assert image_shown(page)
                again = answers_counted(worker)
                # The browser revalidated (max-age=0) with If-None-Match and got a 304, not the bytes again.
                assert again.get("not_modified") == 1 and again.get("hit", 0) == 0, again

                # A source that fails: answered as a failure (no image), saying why and when it is tried again.
                failed_page = browser.new_page()
                failed_page.goto(fixed_url)
                failed_page.wait_for_function("() => document.querySelector('img').complete", timeout=30_000)
                assert not image_shown(failed_page)
                status, headers, body = fetch(worker, "/images/thumbnail/fixable/h200.jpg")
                told = orjson.loads(body)
                assert status == 503 and told["status"] == "failed" and told["error_code"] == "source_changed", told
                assert 1 <= int(headers["Retry-After"]) <= 3
                assert answers_counted(worker).get("failed", 0) >= 2

                fixable.write_bytes(original)  # fixed on disk
                deadline = time.monotonic() + 30
                while not image_shown(failed_page) and time.monotonic() < deadline:
                    failed_page.reload()
                    failed_page.wait_for_function("() => document.querySelector('img').complete", timeout=30_000)
                assert image_shown(failed_page), "the fixed source never showed"
                assert failed_page.evaluate("() => document.querySelector('img').naturalHeight") == 200
                counted = answers_counted(worker)
                assert counted.get("retried_on_view", 0) >= 1 and counted.get("rendered_on_view") == 2, counted
                assert worker.get("/jobs/thumbnail:fixable:h200.jpg:r1")[1]["status"] == "completed"
            finally:
                browser.close()
    finally:
        good_page.shutdown()
        fixed_page.shutdown()


def test_a_worker_that_does_not_own_the_image_forwards_and_answers_the_same(start_worker, corpus, tmp_path):
    workers = [start_worker(REGEN_WEB_TOKEN=TOKEN, REGEN_STATE_DIR=str(tmp_path / f"state{i}"),
                            REGEN_WEB_PORT=str(free_port()), REGEN_RENDER_PROCESSES="1",
                            REGEN_PREGENERATE_VARIANTS="h400.jpg", REGEN_IMAGE_WAIT_S="20") for i in range(2)]
    photos = sorted((corpus / "photos").glob("*.jpg"))[:8]
    run(publish_all(workers[0].settings, workers[0].env["KAFKA_BOOTSTRAP_SERVERS"],
                    [import_event(path, corpus, f"asset{i}") for i, path in enumerate(photos)]))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    urls = {normalize_url(f"http://127.0.0.1:{w.settings.web_port}"): w for w in workers}

    def both_answer(path: str, headers: dict[str, str]):
        answered = [fetch(w, path, headers) for w in workers]
        return answered if all(status == 200 for status, _, _ in answered) else None

    # Each worker owns some of the partitions (a rebalance answers 503 meanwhile, never 404).
    owners = set()
    for i in range(len(photos)):
        path = f"/images/thumbnail/asset{i}/h400"  # negotiated among h400.jpg and h400.webp: webp is never rendered
        answered = eventually(partial(both_answer, path, {**bearer, "Accept": "image/webp,image/*"}), 60, 0.3)
        assert answered, f"{path} did not answer 200 from both workers"
        (_, first, body0), (_, second, body1) = answered
        assert body0 == body1 and first["ETag"] == second["ETag"] == f'"{hashlib.sha256(body0).hexdigest()}"'
        assert first["Content-Type"] == second["Content-Type"] == "image/webp"
        assert first["Vary"] == second["Vary"] == "Accept"
        assert first["Cache-Control"] == second["Cache-Control"] == "private, max-age=60"
        assert first[ANSWERED_BY] == second[ANSWERED_BY]  # the owner answered both: one was forwarded
        owner = urls[normalize_url(first[ANSWERED_BY])]
        owners.add(first[ANSWERED_BY])
        other = next(w for w in workers if w is not owner)
        # The non-owner passes If-None-Match on and the 304 (with its ETag) back.
        status, headers, body = fetch(other, path, {**bearer, "Accept": "image/webp", "If-None-Match": first["ETag"]})
        assert (status, headers["ETag"], body) == (304, first["ETag"], b"")
        # ...and Accept: asking the non-owner for JPEG gets the JPEG, a different image.
        status, headers, jpeg = fetch(other, path, {**bearer, "Accept": "image/jpeg"})
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert len(owners) == 2, f"one worker owned every image: {owners}"

    # Twelve people open a thumbnail nobody rendered, through both workers at once: one request, one render.
    requested_before = sum(events_in(w, "ImageRequested") for w in workers)
    with ThreadPoolExecutor(12) as viewers:
        seen = list(viewers.map(lambda i: fetch(workers[i % 2], "/images/thumbnail/asset3/h200.jpg", bearer),
                                range(12)))
    assert {status for status, _, _ in seen} == {200} and len({body for _, _, body in seen}) == 1
    assert sum(events_in(w, "ImageRequested") for w in workers) - requested_before == 1

    # An <img> sends no header: a signed URL opens that image (through the non-owner too), nothing else.
    key = image_url_key(TOKEN)
    signed = signed_image_url(key, "thumbnail", "asset0", "h400.jpg", int(time.time()) + 300)
    assert all(fetch(w, signed)[0] == 200 for w in workers)
    assert all(fetch(w, signed.replace("asset0", "asset1"))[0] == 401 for w in workers)
    assert all(fetch(w, "/images/thumbnail/asset0/h400.jpg")[0] == 401 for w in workers)
    # Unknown kind, variant or id: 404 saying what is valid.
    status, _, body = fetch(workers[0], "/images/thumbnails/asset0/h400.jpg", bearer)
    assert status == 404 and b"thumbnail" in body
    status, _, body = fetch(workers[1], "/images/thumbnail/asset0/h401.jpg", bearer)
    assert status == 404 and b"h400.jpg" in body
    status, _, body = fetch(workers[0], "/images/thumbnail/nobody/h400.jpg", bearer)
    assert status == 404 and b"never been imported" in body
    status, _, body = fetch(workers[1], "/images/thumbnail/..%2F..%2Fetc/h400.jpg", bearer)
    assert status == 404
