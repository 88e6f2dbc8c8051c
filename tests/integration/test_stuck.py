"""A job that makes no progress is told as stuck: a Stuck event on the
alerts topic, once per episode, and the regen_stuck_jobs gauge."""

from __future__ import annotations

import time
import urllib.request

from regen.schemas.events import Stuck
from regen.streams.codec import decode
from regen.streams.results import read_records
from regen.streams.topics import ALERTS
from tests.helpers import eventually, import_event, publish, run


def test_a_hung_render_is_told_stuck_and_counted(start_worker, corpus):
    # The render hangs for its whole 20 s timeout; stuck after 2 s.
    worker = start_worker(REGEN_FAULT_HANG_PATTERN="Landscape_3", REGEN_RENDER_TIMEOUT="20", REGEN_STUCK_AFTER="2",
                          REGEN_PREGENERATE_VARIANTS="h200.jpg", REGEN_RENDER_PROCESSES="1")
    settings, bootstrap = worker.settings, worker.env["KAFKA_BOOTSTRAP_SERVERS"]
    event = import_event(corpus / "photos" / "Landscape_3.jpg", corpus, asset_id="hung")
    run(publish(settings, bootstrap, [event]))

    def stuck_alerts():
        records = run(read_records(settings, bootstrap, ALERTS, idle_timeout=1.0))
        return [decode(r.value, r.headers, (Stuck,))[0] for r in records]

    alerts = eventually(stuck_alerts, timeout=30, interval=1.0)
    assert [(a.subject, a.id, a.status) for a in alerts] == [("job", "thumbnail:hung:h200.jpg:r1", "running")], \
        worker.tail(40)
    assert alerts[0].stuck_for_s > 2 and alerts[0].since

    def gauge() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=5) as reply:
            lines = reply.read().decode().splitlines()
        return next(line for line in lines if line.startswith("regen_stuck_jobs "))

    assert eventually(lambda: gauge() == "regen_stuck_jobs 1.0", timeout=10), gauge()
    # Told once an episode: the sweeps of the next seconds (every second) say nothing new.
    time.sleep(4)
    assert len(stuck_alerts()) == 1
