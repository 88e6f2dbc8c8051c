"""AssetImported -> render -> ImageGenerated/ImageFailed, through a real broker and worker."""

from __future__ import annotations

import subprocess
import sys

import orjson
from PIL import Image

from regen.schemas.events import ImageFailed, ImageGenerated, ImageRequested, Target
from regen.streams.codec import header
from regen.streams.publisher import Publisher
from regen.streams.results import read_records, wait_for
from regen.streams.topics import ASSETS_IMPORTED, DEADLETTER, IMAGES_RESULTS, topic_name
from tests.helpers import eventually, import_event, publish, run, variant_key


def test_importing_the_photos_yields_one_image_per_photo_and_variant(start_worker, settings, corpus, tmp_path):
    worker = start_worker()
    # The CLI importer, as a user runs it.
    result = subprocess.run([sys.executable, "-m", "regen.cli.main", "import", str(corpus / "photos"), "--batch", "b1",
                             "--json"], env=worker.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 18 and not any(line["duplicate"] for line in lines)
    asset_ids = {line["asset_id"] for line in lines}

    expected = {f"{a}/{v}" for a in asset_ids for v in settings.pregenerate_variants}
    seen = run(wait_for(settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], variant_key, expected, timeout=120))
    assert all(isinstance(c, ImageGenerated) for c in seen.values()), [c for c in seen.values()
                                                                        if isinstance(c, ImageFailed)]
    # One file per photo and variant, each a decodable image 400 px high.
    files = sorted(p for p in settings.image_store.rglob("*") if p.is_file())
    assert len(files) == 18 * len(settings.pregenerate_variants)
    assert not [p for p in files if p.name.endswith(".tmp")]
    for completion in seen.values():
        with Image.open(settings.image_store / completion.uri) as im:
            im.load()
            assert im.height == 400
    # Exactly one completion per (asset, variant): nothing rendered twice.
    records = run(read_records(settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"], IMAGES_RESULTS))
    assert len(records) == len(expected)

    # The projection answers over HTTP and from the CLI.
    some = sorted(asset_ids)[0]
    def all_completed():
        status, body = worker.get(f"/assets/{some}")
        return status == 200 and all(body["variants"].get(v, {}).get("status") == "completed"
                                     for v in settings.pregenerate_variants) and body
    body = eventually(all_completed)
    assert body, worker.get(f"/assets/{some}")
    assert body["variants"]["h400.jpg"]["output"]["sha256"] == seen[f"{some}/h400.jpg"].sha256
    cli = subprocess.run([sys.executable, "-m", "regen.cli.main", "status", "asset", some], env=worker.env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "completed" in cli.stdout and "h400.webp" in cli.stdout
    status, body = worker.get("/assets/no-such-asset")
    assert status == 404 and "no-such-asset" in body["error"]


def test_a_corrupt_file_fails_permanently_and_the_import_still_succeeds(start_worker, settings, corpus):
    worker = start_worker()
    bootstrap = worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    bad = import_event(corpus / "bad" / "truncated_jpeg.jpg", corpus)
    good = import_event(corpus / "bad" / "hopper.jpg", corpus)
    run(publish(settings, bootstrap, [bad, good]))
    expected = {f"{e.asset_id}/{v}" for e in (bad, good) for v in settings.pregenerate_variants}
    seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=60))
    for variant in settings.pregenerate_variants:
        failure = seen[f"{bad.asset_id}/{variant}"]
        assert isinstance(failure, ImageFailed)
        assert (failure.reason, failure.error_code, failure.attempts) == ("permanent", "corrupt", 1)
        assert "truncated" in failure.error
        assert isinstance(seen[f"{good.asset_id}/{variant}"], ImageGenerated)
    status, asset = worker.get(f"/assets/{bad.asset_id}")
    assert status == 200 and asset["sha256"] == bad.sha256, "the import itself is recorded"
    job_id = f"thumbnail:{bad.asset_id}:h400.jpg:r1"
    job = eventually(lambda: (j := worker.get(f"/jobs/{job_id}")[1]).get("status") == "failed" and j)
    assert job, worker.get(f"/jobs/{job_id}")
    assert (job["reason"], job["error_code"], job["attempts"]) == ("permanent", "corrupt", 1)


def test_a_malformed_event_is_dead_lettered_and_the_next_one_processed(start_worker, settings, corpus):
    worker = start_worker()
    bootstrap = worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    good = import_event(corpus / "photos" / "Landscape_5.jpg", corpus)

    async def go():
        async with Publisher(settings, bootstrap, source="tests") as publisher:
            await publisher.send_raw(ASSETS_IMPORTED, b"broken-1", b"{this is not json",
                                     [("ce_id", b"poison-1"), ("ce_type", b"dev.regen.AssetImported.v1")])
            await publisher.send_raw(ASSETS_IMPORTED, b"broken-2", orjson.dumps({"asset_id": "broken-2"}), [])
            await publisher.publish(good)

    run(go())
    expected = {f"{good.asset_id}/{v}" for v in settings.pregenerate_variants}
    seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=60))
    assert all(isinstance(c, ImageGenerated) for c in seen.values())

    letters = run(read_records(settings, bootstrap, DEADLETTER))
    assert sorted(r.key for r in letters) == [b"broken-1", b"broken-2"]
    first = next(r for r in letters if r.key == b"broken-1")
    assert first.value == b"{this is not json", "the original bytes are kept"
    assert header(first.headers, "ce_id") == "poison-1", "the original headers are kept"
    assert header(first.headers, "kafka_dlt-original-topic") == topic_name(settings, ASSETS_IMPORTED)
    assert header(first.headers, "kafka_dlt-original-offset") is not None
    assert header(first.headers, "kafka_dlt-original-consumer-group") == settings.app_id
    assert "not valid JSON" in header(first.headers, "kafka_dlt-exception-message")
    second = next(r for r in letters if r.key == b"broken-2")
    assert "required property" in header(second.headers, "kafka_dlt-exception-message")

    # `regen deadletters` shows both, readably and as JSON lines.
    listing = subprocess.run([sys.executable, "-m", "regen.cli.main", "deadletters"], env=worker.env,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "2 dead letter(s)" in listing.stdout and "not valid JSON" in listing.stdout
    as_json = subprocess.run([sys.executable, "-m", "regen.cli.main", "deadletters", "--json", "--limit", "1"],
                             env=worker.env, capture_output=True, text=True, timeout=60)
    rows = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["topic"] == topic_name(settings, ASSETS_IMPORTED)


def test_requests_render_then_hit_the_cache_and_unknown_targets_fail(start_worker, settings, corpus):
    worker = start_worker()
    bootstrap = worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    asset = import_event(corpus / "photos" / "Portrait_2.jpg", corpus)
    run(publish(settings, bootstrap, [asset]))
    run(wait_for(settings, bootstrap, variant_key,
                 {f"{asset.asset_id}/{v}" for v in settings.pregenerate_variants}, 60))

    def request(rid, variant="h200.jpg", target_id=asset.asset_id):
        return ImageRequested(Target("thumbnail", target_id), variant, rid)

    def by_request(c):
        return c.request_ids[0] if c.request_ids else None

    run(publish(settings, bootstrap, [request("first")]))
    first = run(wait_for(settings, bootstrap, by_request, {"first"}, 60))["first"]
    assert isinstance(first, ImageGenerated) and not first.cache_hit and first.height == 200
    run(publish(settings, bootstrap, [request("again"), request("unknown", target_id="never-imported"),
                                      request("badvariant", variant="h123.jpg")]))
    seen = run(wait_for(settings, bootstrap, by_request, {"again", "unknown", "badvariant"}, 60))
    assert isinstance(seen["again"], ImageGenerated) and seen["again"].cache_hit
    assert seen["again"].sha256 == first.sha256
    assert isinstance(seen["unknown"], ImageFailed) and seen["unknown"].error_code == "unknown_target"
    assert isinstance(seen["badvariant"], ImageFailed) and seen["badvariant"].error_code == "unknown_variant"
    assert "h123.jpg" in seen["badvariant"].error


def test_the_api_can_require_a_token(start_worker):
    worker = start_worker(REGEN_WEB_TOKEN="t0ken")
    status, body = worker.get("/assets/anything")
    assert status == 401 and "REGEN_WEB_TOKEN" in body["error"]
    assert worker.get("/assets/anything", token="wrong")[0] == 401
    assert worker.get("/assets/anything", token="t0ken")[0] == 404
    status, health = worker.get("/health")
    assert status == 200 and health["status"] == "ok" and health["render_processes"] == 2
    # Faust's own table dumps and router are off unless REGEN_WEB_DEBUG_ENDPOINTS is set.
    for path in ("/table/assets/", "/router/"):
        try:
            assert worker.get(path, token="t0ken")[0] == 404
        except ValueError:  # a non-JSON 404 body is a 404 all the same
            pass


def test_same_content_under_two_asset_ids_is_rendered_once(start_worker, settings, corpus):
    worker = start_worker()
    bootstrap = worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    original = import_event(corpus / "photos" / "Landscape_7.jpg", corpus)
    run(publish(settings, bootstrap, [original]))
    first = run(wait_for(settings, bootstrap, variant_key, {f"{original.asset_id}/h400.jpg"}, 60))
    copy = import_event(corpus / "photos" / "Landscape_7.jpg", corpus, asset_id="copy-of-landscape-7")
    run(publish(settings, bootstrap, [copy]))
    second = run(wait_for(settings, bootstrap, variant_key, {f"{copy.asset_id}/h400.jpg"}, 60))
    a, b = first[f"{original.asset_id}/h400.jpg"], second[f"{copy.asset_id}/h400.jpg"]
    assert not a.cache_hit and b.cache_hit, "same content, same output: no second render"
    assert (a.uri, a.sha256) == (b.uri, b.sha256)
