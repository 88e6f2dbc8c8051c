"""A case of 14 generated images (10 evidence, 4 locations) followed as one
group, through a real broker, a real worker, a real local model server and
a real webhook receiver: 4 images fail (a hung call, garbage, a server
error, a non-JSON answer), the other 10 are cropped to the case's 512x512
card preset, the group ends `partial` naming exactly the 4, and the
receiver gets signed progress and one signed completion."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from regen.cli.stand_in_model import ModelServer
from regen.schemas.events import GenerationRequested, GroupDeclared
from regen.streams.codec import now_iso
from regen.webhook_signature import SIGNATURE_HEADER, verify
from tests.helpers import eventually, publish_all, run
from tests.webhook_receiver import WebhookReceiver

SECRET = "case-webhook-secret-for-tests"
FAILING = {"evidence-3": "[hang]", "evidence-7": "[garbage]", "location-1": "[500:9]", "location-3": "[notjson]"}


def test_a_case_of_14_with_4_failures_ends_partial_naming_them(start_worker):
    targets = [f"evidence-{n}" for n in range(10)] + [f"location-{n}" for n in range(4)]
    with ModelServer() as server, WebhookReceiver() as receiver:
        worker = start_worker(
            REGEN_GENERATORS=json.dumps(server.generator("local", timeout_s=2)),
            REGEN_PRESETS="card=512x512,cover,jpg,q80", REGEN_VARIANTS="h400.jpg,h400.webp,full.png,card",
            REGEN_PREGENERATE_VARIANTS="h400.jpg", REGEN_GENERATED_VARIANTS="card", REGEN_MAX_ATTEMPTS="1",
            REGEN_WEBHOOK_HOSTS=receiver.host, REGEN_WEBHOOK_SECRET=SECRET, REGEN_WEBHOOK_PROGRESS_INTERVAL="1")
        settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
        events = [GroupDeclared("case-42", now_iso(), total=14, label="case 42", webhook_url=receiver.url("/case")),
                  *(GenerationRequested(target_id=f"case-42-{t}", revision=1, generator="local",
                                        prompt=f"{t} of case 42 {FAILING.get(t, '')}".strip(),
                                        parameters={"width": 800, "height": 600}, group_id="case-42")
                    for t in targets)]
        run(publish_all(settings, bootstrap, events))

        def finished():
            status, group = worker.get("/groups/case-42")
            return status == 200 and group["finished_at"] and group

        group = eventually(finished, timeout=90, interval=0.5)
        assert group, worker.get("/groups/case-42")
        assert (group["status"], group["total"], group["completed"], group["failed"]) == ("partial", 14, 10, 4)
        assert sorted(f["target"] for f in group["failures"]) == sorted(f"generated:case-42-{t}" for t in FAILING)
        for uri in group["outputs"].values():
            with Image.open(Path(settings.image_store) / uri) as im:
                assert (im.size, im.format) == ((512, 512), "JPEG")

        completion = eventually(lambda: receiver.of("GroupFinished"), timeout=20)
    assert len(completion) == 1
    body = completion[0]
    assert verify(SECRET, body.headers[SIGNATURE_HEADER], body.body, now=time.time())
    assert body.json["status"] == "partial" and len(body.json["outputs"]) == 10
    assert sorted(f["target"] for f in body.json["failures"]) == sorted(f"generated:case-42-{t}" for t in FAILING)
    progress = [p.json for p in receiver.of("GroupProgress")]
    assert progress and all(p["group_id"] == "case-42" for p in progress)
    assert progress[-1]["completed"] + progress[-1]["failed"] <= 14
    # The hung call was abandoned at its 2 s timeout and the case went on without it.
    hung = server.calls_for("[hang]")
    assert len(hung) == 1 and hung[0].abandoned_at is not None
