"""The HTTP API of a real worker: Prometheus metrics, the token only in the
Authorization header, signed image URLs, what /health tells, and store paths
that cannot lead out of the store."""

from __future__ import annotations

import io
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from regen.cli.importer import scan
from tests.helpers import eventually, publish_all, run

TOKEN = "t0ken-in-a-header"


def fetch(worker, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and raw body of a GET (``path`` already URL-quoted)."""
    request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def import_photos(worker, corpus: Path, photos: list[Path], token: str | None = None) -> list[dict]:
    """Import ``photos`` and wait until the dashboard's overview lists every
    pre-generated variant of each."""
    run(publish_all(worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"],
                    [s.event for s in scan(photos, [corpus], "http")]))
    expected = len(photos) * len(worker.settings.pregenerate_variants)

    def images() -> list[dict] | None:
        status, body = worker.get("/api/overview", token=token)
        assert status == 200, body
        return body["recent_images"] if len(body["recent_images"]) >= expected else None

    listed = eventually(images, timeout=60)
    assert listed, f"not {expected} thumbnails listed after importing {len(photos)} photos"
    return listed


def scrape(worker, token: str | None = None) -> tuple[dict[str, str], dict]:
    status, headers, body = fetch(worker, "/metrics", token=token)
    assert status == 200, body[:500]
    return headers, {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}


def sample(families: dict, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` with these labels."""
    family = name.removesuffix("_total").removesuffix("_count")
    return sum(s.value for s in families[family].samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_are_prometheus_text_with_every_family_of_the_worker(start_worker, corpus):
    worker = start_worker(REGEN_PREGENERATE_VARIANTS="h400.jpg")
    photos = sorted((corpus / "photos").glob("Portrait_*.jpg"))[:2]
    images = import_photos(worker, corpus, photos)

    headers, families = scrape(worker)
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    expected = {"regen_events_in": "counter", "regen_renders": "counter", "regen_render_seconds": "histogram",
                "regen_retries": "counter", "regen_deadletters": "counter",
                "regen_requests_answered": "counter", "regen_queue_depth": "gauge",
                "regen_pending_dirty_annotations": "gauge", "regen_sql_read_model_behind": "gauge",
                "regen_sql_read_model_lag_seconds": "gauge", "regen_sql_read_model_records": "counter"}
    assert {name: families[name].type for name in expected if name in families} == expected

    # The counters moved with the import (a render is counted a moment after its image is listed).
    families = eventually(lambda: (f := scrape(worker)[1]) and
                          sample(f, "regen_renders_total", outcome="generated") == len(photos) and f)
    assert families, "regen_renders_total{outcome=generated} never reached the number of photos"
    assert sample(families, "regen_events_in_total", type="AssetImported") >= len(photos)
    assert sample(families, "regen_render_seconds_count") == len(photos)
    assert {s.labels["lane"] for s in families["regen_queue_depth"].samples} == {"interactive", "background"}
    # The worker's SQL projector applied the import's rows (asset, jobs, completions) and caught up.
    families = eventually(lambda: (f := scrape(worker)[1]) and sample(f, "regen_sql_read_model_behind") == 0
                          and sample(f, "regen_sql_read_model_records_total", outcome="applied") >= 3 * len(photos)
                          and f)
    assert families, "the SQL projector never caught up with the import"

    # Without a token nothing is signed: the overview's image URLs are plain and open.
    assert {image["url"] for image in images} == {f"/images/{image['uri']}" for image in images}
    status, headers, data = fetch(worker, images[0]["url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(data)).height == 400


def test_the_token_travels_only_in_the_header_and_images_open_by_signed_urls(start_worker, corpus):
    worker = start_worker(REGEN_WEB_TOKEN=TOKEN, REGEN_PREGENERATE_VARIANTS="h400.jpg,h200.jpg")
    photo = sorted((corpus / "photos").glob("Landscape_*.jpg"))[0]
    images = {image["variant"]: image for image in import_photos(worker, corpus, [photo], token=TOKEN)}
    image, other = images["h400.jpg"], images["h200.jpg"]

    url = urlsplit(image["url"])
    query = {k: v[0] for k, v in parse_qs(url.query, strict_parsing=True).items()}
    assert url.path == f"/images/{image['uri']}" and set(query) == {"exp", "sig"}
    assert TOKEN not in image["url"]
    status, headers, data = fetch(worker, image["url"])  # no header: the signature opens it
    assert status == 200 and headers["Content-Type"] == "image/jpeg", data[:300]
    assert Image.open(io.BytesIO(data)).height == 400
    assert fetch(worker, url.path, token=TOKEN)[0] == 200, "the header opens images too"

    tampered_sig = query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")
    refused = {
        "no signature": url.path,
        "tampered signature": f"{url.path}?exp={query['exp']}&sig={tampered_sig}",
        "later expiry": f"{url.path}?exp={int(query['exp']) + 3600}&sig={query['sig']}",
        "another image": f"/images/{other['uri']}?exp={query['exp']}&sig={query['sig']}",
        "the token as a signature": f"{url.path}?exp={query['exp']}&sig={TOKEN}",
    }
    for why, path in refused.items():
        status, headers, body = fetch(worker, path)
        assert status == 401, f"{why}: {path} answered {status}"
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert fetch(worker, url.path, token="wrong")[0] == 401

    # Everything the worker wrote so far came from header and signed requests.
    assert TOKEN not in worker.log.read_text(errors="replace")

    # ?token= opens nothing any more.
    for path in ("/api/overview", "/metrics", "/assets/anything", url.path):
        assert fetch(worker, f"{path}?token={TOKEN}")[0] == 401, path
    assert fetch(worker, "/metrics", token=TOKEN)[0] == 200


def test_health_tells_readiness_and_the_render_pool_only(start_worker):
    worker = start_worker(REGEN_WEB_TOKEN=TOKEN)
    status, headers, body = fetch(worker, "/health")
    assert status == 200
    health = orjson.loads(body)
    assert health["status"] == "ok" and health["render_processes"] == 2
    assert health["broker_unreachable_s"] is None, "the broker is up"
    assert set(health) <= {"status", "uptime_s", "broker_unreachable_s", "render_processes",
                           "render_processes_replaced", "background_paused", "stalled_partitions"}, health
    assert health["stalled_partitions"] == [], "a worker just started has no stalled partition"
    text = body.decode()
    for secret in (TOKEN, worker.settings.app_id, str(worker.settings.state_dir), str(worker.settings.image_store),
                   socket.gethostname(), str(worker.proc.pid)):
        assert secret not in text, f"/health tells {secret!r}: {text}"


def test_store_paths_that_lead_nowhere_good_answer_404_and_the_worker_stays_responsive(start_worker, tmp_path):
    worker = start_worker(REGEN_WEB_TOKEN=TOKEN)
    store = worker.settings.image_store
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"\xff\xd8 not for the web")
    (store / "thumbnails").mkdir(parents=True)
    (store / "thumbnails" / "ok.jpg").write_bytes(b"\xff\xd8 store bytes")
    (store / "thumbnails" / "out.jpg").symlink_to(outside / "secret.jpg")
    (store / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(store / "thumbnails" / "pipe.jpg")
    (store / "thumbnails" / "notes.txt").write_text("not an image")
    (store / "thumbnails" / "folder.jpg").mkdir()

    status, _, data = fetch(worker, "/images/thumbnails/ok.jpg", token=TOKEN)
    assert status == 200 and data == b"\xff\xd8 store bytes"
    for path in ("thumbnails/missing.jpg", "thumbnails/out.jpg", "linked/secret.jpg", "thumbnails/pipe.jpg",
                 "thumbnails/notes.txt", "thumbnails/folder.jpg", "%2E%2E/outside/secret.jpg",
                 "thumbnails/%2E%2E/%2E%2E/outside/secret.jpg", f"{'%2F' * 2}{str(outside)[1:]}/secret.jpg",
                 "thumbnails/ok.jpg%00.jpg", "thumbnails/" + "x" * 300 + ".jpg", "a/" * 600 + "x.jpg"):
        status, _, body = fetch(worker, f"/images/{path}", token=TOKEN)
        assert status == 404, f"/images/{path[:80]} answered {status}: {body[:300]!r}"
        assert b"not for the web" not in body
    # The FIFO was refused without waiting for a writer: the worker still answers.
    assert worker.get("/health")[0] == 200
