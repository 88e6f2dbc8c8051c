"""Groups through a real broker and worker: a set of imports followed as one
group ends `partial` with the failed ids; its webhook receiver (a real
local HTTP server) gets signed progress and completion; a receiver that is
down gets its retries, then the completion is dead-lettered; a group that
never finishes is told as stuck (event and gauge)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from regen.schemas.events import AssetImported, GroupDeclared, Stuck
from regen.streams.codec import decode, header, now_iso
from regen.streams.results import read_records
from regen.streams.topics import ALERTS, DEADLETTER, GROUP_PROGRESS, topic_name
from regen.webhook_signature import SIGNATURE_HEADER, verify
from tests.helpers import eventually, import_event, publish, run
from tests.webhook_receiver import WebhookReceiver

SECRET = "a-long-random-test-secret"


def _member(event: AssetImported, group_id: str) -> AssetImported:
    from dataclasses import replace

    return replace(event, group_id=group_id)


def test_a_group_of_imports_ends_partial_and_its_webhook_hears_it_signed(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    photos = sorted((corpus / "photos").glob("Landscape_*.jpg"))[:4]
    for photo in photos:
        shutil.copy(photo, media / photo.name)
    shutil.copy(corpus / "bad" / "truncated_jpeg.jpg", media / "truncated.jpg")
    with WebhookReceiver() as receiver, WebhookReceiver(answer=503) as down:
        worker = start_worker(REGEN_MEDIA_ROOTS=str(media), REGEN_PREGENERATE_VARIANTS="h200.jpg",
                              REGEN_WEBHOOK_HOSTS=f"{receiver.host},{down.host}", REGEN_WEBHOOK_SECRET=SECRET,
                              REGEN_WEBHOOK_PROGRESS_INTERVAL="1", REGEN_WEBHOOK_RETRIES="2",
                              REGEN_GROUP_STUCK_AFTER="3")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        imports = [import_event(path, media, asset_id=f"case-{i}") for i, path in
                   enumerate([*(media / p.name for p in photos), media / "truncated.jpg"])]
        events = [GroupDeclared("case", now_iso(), total=5, label="five photos", webhook_url=receiver.url()),
                  *(_member(e, "case") for e in imports),
                  # the same five again, for a group whose receiver is down
                  GroupDeclared("unlucky", now_iso(), total=1, webhook_url=down.url("/down")),
                  _member(import_event(media / photos[0].name, media, asset_id="unlucky-0"), "unlucky"),
                  # a group that never finishes: 2 members declared, 1 announced (and rendered)
                  GroupDeclared("waiting", now_iso(), total=2),
                  _member(import_event(media / photos[1].name, media, asset_id="waiting-0"), "waiting")]
        run(publish(settings, bootstrap, events))

        def finished():
            status, group = worker.get("/groups/case")
            return status == 200 and group["finished_at"] and group

        group = eventually(finished, timeout=60)
        assert group, worker.get("/groups/case")
        assert (group["status"], group["total"], group["completed"], group["failed"], group["pending"]) == \
            ("partial", 5, 4, 1, 0)
        assert set(group["outputs"]) == {f"thumbnail:case-{i}/h200.jpg" for i in range(4)}
        assert [f["target"] for f in group["failures"]] == ["thumbnail:case-4"]
        assert "cannot decode" in group["failures"][0]["error"]
        for uri in group["outputs"].values():
            assert (settings.image_store / uri).is_file()

        shown = subprocess.run([sys.executable, "-m", "regen.cli.main", "status", "group", "case"], env=worker.env,
                               capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert "partial: 5/5 finished, 4 completed, 1 failed" in shown.stdout
        assert "thumbnail:case-4/h200.jpg" in shown.stdout

        # The completion reaches the receiver once, signed over its exact body.
        finished_posts = eventually(lambda: receiver.of("GroupFinished"), timeout=20)
        assert len(finished_posts) == 1, [p.json for p in receiver.posts]
        post = finished_posts[0]
        assert verify(SECRET, post.headers[SIGNATURE_HEADER], post.body, now=time.time())
        assert not verify("another-secret", post.headers[SIGNATURE_HEADER], post.body, now=time.time())
        assert post.json["status"] == "partial" and [f["target"] for f in post.json["failures"]] == \
            ["thumbnail:case-4"]
        # Progress: signed too, and at most one a second per group (the rate limit), the last
        # one posted no later than the completion's counts.
        progress = receiver.of("GroupProgress")
        assert progress and all(verify(SECRET, p.headers[SIGNATURE_HEADER], p.body, now=time.time())
                                for p in progress)
        gaps = [b.at - a.at for a, b in zip(progress, progress[1:], strict=False)]
        assert all(gap >= 0.9 for gap in gaps), gaps
        assert {p.json["group_id"] for p in receiver.posts} == {"case"}, "one group's posts go to its own receiver"

        # The receiver that is down: 1 + 2 retries of the completion, then a dead letter.
        def dead_lettered():
            letters = run(read_records(settings, bootstrap, DEADLETTER, idle_timeout=1.0))
            return [r for r in letters if header(r.headers, "kafka_dlt-original-topic") ==
                    topic_name(settings, GROUP_PROGRESS)]

        letters = eventually(dead_lettered, timeout=60, interval=1.0)
        assert len(letters) == 1, worker.tail(40)
        reason = header(letters[0].headers, "kafka_dlt-exception-message")
        assert "GroupFinished of group unlucky not delivered after 3 attempt(s)" in reason and "HTTP 503" in reason
        assert len(down.of("GroupFinished", "/down")) == 3

        # The group that never finishes is told stuck, once, and counted.
        def stuck_alerts():
            records = run(read_records(settings, bootstrap, ALERTS, idle_timeout=1.0))
            return [decode(r.value, r.headers, (Stuck,))[0] for r in records]

        alerts = eventually(stuck_alerts, timeout=30, interval=1.0)
        assert [(a.subject, a.id, a.status) for a in alerts] == [("group", "waiting", "generating")]
        assert alerts[0].stuck_for_s >= 3
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{settings.web_port}/metrics"],
                                 capture_output=True, text=True, timeout=10).stdout
        assert "regen_stuck_groups 1.0" in metrics
        assert 'regen_webhook_posts_total{outcome="delivered"}' in metrics
