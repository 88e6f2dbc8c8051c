"""The dashboard in a real headless Chromium (Debian's), asserting on what a
person sees: a token form, numbers that update after events, thumbnails that
appear (through signed URLs: the token itself never leaves the header), and
the workers of the group, up or not answering. Updates arrive over the live
stream (/events/overview, server-sent events), not by polling."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from regen.cli.importer import scan
from tests.helpers import free_port, publish_all, run

CHROMIUM = os.environ.get("REGEN_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling out, and
# this machine's closed network refuses it (slowly).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "s3cret"
ADMIN_TOKEN = "c0mmander"
ARTIFACTS = Path(os.environ.get("REGEN_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def test_the_dashboard_shows_batches_images_failures_and_rates_as_they_happen(start_worker, corpus):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    worker = start_worker(REGEN_WEB_TOKEN=TOKEN, REGEN_ADMIN_TOKEN=ADMIN_TOKEN, REGEN_PREGENERATE_VARIANTS="h400.jpg")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    base = f"http://127.0.0.1:{settings.web_port}"
    photos = sorted((corpus / "photos").glob("Portrait_*.jpg"))[:5] + [corpus / "bad" / "broken.png"]
    imports = [s.event for s in scan(photos, [corpus], "walk")]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base}/dashboard")
            # The API wants a token: the page asks for it, and sends it in the Authorization header.
            expect(page.get_by_test_id("status")).to_contain_text("token needed", timeout=15_000)
            page.get_by_label("API token").fill(TOKEN)
            page.get_by_role("button", name="Show").click()
            expect(page.get_by_test_id("status")).to_contain_text("live", timeout=15_000)
            expect(page.get_by_test_id("login")).to_be_hidden()
            expect(page.get_by_test_id("batches")).to_contain_text("no batches yet")
            expect(page.get_by_test_id("images")).to_contain_text("nothing rendered yet")
            # One worker: it answers, with every partition.
            expect(page.get_by_test_id("status")).to_contain_text("1 worker")
            member = page.get_by_test_id("member")
            expect(member).to_have_count(1)
            expect(member).to_have_attribute("data-answered", "true")
            expect(member).to_contain_text("0, 1, 2, 3")

            # Playwright's sync API owns this thread's event loop: publish from another thread.
            with ThreadPoolExecutor(1) as publisher:
                publisher.submit(run, publish_all(settings, bootstrap, imports)).result()

            batch = page.locator('[data-batch="walk"]')
            expect(batch.get_by_test_id("batch-count")).to_have_text("6 / 6", timeout=60_000)
            expect(batch.get_by_test_id("batch-eta")).to_have_text("done")
            expect(batch.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
            expect(page.get_by_test_id("image")).to_have_count(5, timeout=15_000)
            # The thumbnails are real images the browser decoded, not broken icons.
            page.wait_for_function("() => [...document.querySelectorAll('[data-testid=image] img')]"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length === 5", timeout=15_000)
            # ...loaded by short-lived signed URLs: an <img> cannot send the header.
            sources = page.eval_on_selector_all("[data-testid=image] img", "images => images.map(i => i.src)")
            assert len(sources) == 5
            for source in sources:
                url = urlsplit(source)
                assert url.path.startswith("/images/thumbnails/"), source
                assert set(parse_qs(url.query)) == {"exp", "sig"}, source
            assert not [url for url in requested + sources if TOKEN in url], "the token appeared in a URL"
            url = urlsplit(sources[0])
            query = parse_qs(url.query)
            sig = query["sig"][0]
            tampered = f"{base}{url.path}?exp={query['exp'][0]}&sig={sig[:-1]}{'0' if sig[-1] != '0' else '1'}"
            assert page.request.get(tampered).status == 401
            assert page.request.get(sources[0]).status == 200
            failure = page.get_by_test_id("failure")
            expect(failure).to_have_count(1)
            expect(failure).to_contain_text("permanent")
            expect(failure).to_contain_text("broken.png")
            heights = [float(point.split(",")[1]) for point in
                       page.locator("#rates polyline").get_attribute("points").split()]
            assert min(heights) < 118, "the event rate chart shows the burst of events"
            expect(page.get_by_test_id("rate-summary")).to_contain_text("events/s")

            # An operator pauses background rendering: a banner says so, carried by the
            # same live stream as the rest (the page asks nothing more), and goes on resume.
            banner = page.get_by_test_id("background")
            expect(banner).to_be_hidden()
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert page.request.post(f"{base}/admin/pause", data={"lane": "background", "reason": "disk swap"},
                                     headers=admin).status == 202
            expect(banner).to_contain_text("background rendering paused", timeout=20_000)
            expect(banner).to_contain_text("disk swap")
            assert page.request.post(f"{base}/admin/resume", data={"lane": "background"}, headers=admin).status == 202
            expect(banner).to_be_hidden(timeout=20_000)
            assert not [u for u in requested if urlsplit(u).path == "/control/background"], "asked apart"

            # Every update came over the live stream: /api/overview was asked once before the token
            # (401) and once for the first paint, never polled; the stream opened by a signed URL.
            overview_gets = [u for u in requested if urlsplit(u).path == "/api/overview"]
            streams = [u for u in requested if urlsplit(u).path == "/events/overview"]
            assert len(overview_gets) == 2, overview_gets
            assert len(streams) == 1 and set(parse_qs(urlsplit(streams[0]).query)) == {"exp", "sig"}, streams

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            locked = browser.new_page()
            locked.goto(f"{base}/dashboard")
            expect(locked.get_by_test_id("status")).to_contain_text("token needed", timeout=15_000)
            locked.get_by_label("API token").fill("wrong")
            locked.get_by_role("button", name="Show").click()
            expect(locked.get_by_test_id("status")).to_contain_text("that token was refused", timeout=15_000)
            expect(locked.get_by_test_id("login")).to_be_visible()
            expect(locked.get_by_test_id("batches")).to_contain_text("no batches yet")
        finally:
            browser.close()


@pytest.mark.slow  # about 30 s: two workers, then the group's session timeout after one is killed
def test_the_dashboard_shows_every_worker_and_which_one_stopped_answering(start_worker, tmp_path):
    workers = [start_worker(REGEN_WEB_TOKEN=TOKEN, REGEN_STATE_DIR=str(tmp_path / f"state{i}"),
                            REGEN_WEB_PORT=str(free_port()), REGEN_RENDER_PROCESSES="1") for i in range(2)]
    asked, killed = (f"http://127.0.0.1:{w.settings.web_port}" for w in workers)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{asked}/dashboard")
            page.get_by_label("API token").fill(TOKEN)
            page.get_by_role("button", name="Show").click()
            status, members = page.get_by_test_id("status"), page.get_by_test_id("member")
            expect(status).to_contain_text("live · 2 workers", timeout=20_000)
            expect(page.locator('[data-testid=member][data-answered=true]')).to_have_count(2)

            workers[1].stop(signal.SIGKILL)
            # Until the group notices (its session timeout), the dead worker is listed as not answering...
            gone = page.locator(f'[data-member="{killed}"]')
            expect(gone).to_have_attribute("data-answered", "false", timeout=10_000)
            expect(gone).to_contain_text("not answering")
            expect(status).to_contain_text("1 of 2 workers answered")
            # ...then its partitions move to the survivor, and it leaves the list.
            expect(members).to_have_count(1, timeout=40_000)
            expect(members).to_contain_text("0, 1, 2, 3", timeout=15_000)
            expect(status).to_contain_text("live · 1 worker")
            # All of it pushed over the one stream the page opened: no polling.
            assert len([u for u in requested if urlsplit(u).path == "/api/overview"]) == 2
            assert len([u for u in requested if urlsplit(u).path == "/events/overview"]) == 1
        finally:
            browser.close()
