"""Any number of workers, one view: three workers in one consumer group, and
every query answers the same from each of them.

A :class:`Fleet` starts the workers (each with its own state directory and
web port, one render process each) and asks all of them the same question,
so tests that kill or add a worker mid-batch can reuse it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from regen.agents.routing import ANSWERED_BY
from regen.cli.importer import scan
from regen.schemas.events import ImageGenerated
from regen.streams.results import wait_for
from tests.helpers import WorkerProcess, free_port, make_photos, publish_all, run, variant_key

TOKEN = "fleet-t0ken"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class Fleet:
    """Workers of one group, started by the ``start_worker`` fixture."""

    start_worker: object
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def add(self) -> WorkerProcess:
        n = len(self.workers)
        worker = self.start_worker(REGEN_STATE_DIR=str(self.tmp / f"state{n}"), REGEN_WEB_PORT=str(free_port()),
                                   REGEN_RENDER_PROCESSES="1", **self.env)  # type: ignore[operator]
        self.workers.append(worker)
        return worker

    @property
    def settings(self):
        return self.workers[0].settings

    @property
    def bootstrap(self) -> str:
        return self.workers[0].env["KAFKA_BOOTSTRAP_SERVERS"]

    def get(self, worker: WorkerProcess, path: str, token: str | None = TOKEN) -> Answer:
        request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as e:
            return Answer(e.code, dict(e.headers), e.read())

    def ask_all(self, path: str, token: str | None = TOKEN) -> list[Answer]:
        """The same GET of every live worker, in the order they were added."""
        return [self.get(w, path, token) for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def wait_all(self, path: str, ready, timeout: float = 30.0) -> list[Answer]:
        """Ask every worker until ``ready(answers)`` holds (the projections fold a moment after the events)."""
        deadline = time.monotonic() + timeout
        while True:
            answers = self.ask_all(path)
            if ready(answers) or time.monotonic() > deadline:
                return answers
            time.sleep(0.3)


def same_everywhere(answers: list[Answer], *fields: str) -> bool:
    """Every worker answered 200 with the same body (or the same ``fields`` of it)."""
    if any(a.status != 200 for a in answers):
        return False
    bodies = [a.json() for a in answers]
    if fields:
        bodies = [{k: b.get(k) for k in fields} for b in bodies]
    return all(b == bodies[0] for b in bodies)


BATCH_FIELDS = ("batch_id", "total", "completed", "failed", "pending", "done", "percent")


def test_three_workers_answer_every_query_alike(start_worker, corpus, tmp_path):
    media = tmp_path / "media"
    photos = make_photos(media, 120)
    fleet = Fleet(start_worker, tmp_path, env={"REGEN_MEDIA_ROOTS": f"{corpus}:{media}", "REGEN_WEB_TOKEN": TOKEN,
                                               "REGEN_PREGENERATE_VARIANTS": "h400.jpg"})
    for _ in range(3):
        fleet.add()
    settings, bootstrap = fleet.settings, fleet.bootstrap
    events = [s.event for s in scan(photos, [media], "fleet")]
    run(publish_all(settings, bootstrap, events))
    expected = {f"{e.asset_id}/h400.jpg" for e in events}
    seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=60))
    assert all(isinstance(c, ImageGenerated) for c in seen.values())

    # The batch lives on one worker; all three answer with its progress.
    answers = fleet.wait_all("/batches/fleet", lambda a: same_everywhere(a, *BATCH_FIELDS)
                             and a[0].json()["done"])
    assert same_everywhere(answers, *BATCH_FIELDS), [(a.status, a.body[:200]) for a in answers]
    assert {k: answers[0].json()[k] for k in ("total", "completed", "failed")} == \
        {"total": 120, "completed": 120, "failed": 0}

    # Every asset and job, from every worker, with the same content.
    def all_completed(answers: list[Answer]) -> bool:
        return same_everywhere(answers) and answers[0].json()["variants"]["h400.jpg"]["status"] == "completed"

    for event in events:
        answers = fleet.wait_all(f"/assets/{event.asset_id}", all_completed, timeout=10)
        assert all_completed(answers), (event.asset_id, [(a.status, a.body[:200]) for a in answers])
    for event in events[::12]:
        answers = fleet.ask_all(f"/jobs/thumbnail:{event.asset_id}:h400.jpg:r1")
        assert same_everywhere(answers) and answers[0].json()["status"] == "completed", answers
    # Each key is answered by its owner, whoever is asked: a third of the time the worker asked.
    answered_by = [a.headers[ANSWERED_BY] for e in events[:12] for a in fleet.ask_all(f"/assets/{e.asset_id}")]
    assert len(set(answered_by)) >= 2 and len(set(answered_by[:3])) == 1
    # A true 404 is the owner's, alike from everywhere; without the token nothing is forwarded.
    missing = fleet.ask_all("/annotations/never-edited")
    assert [a.status for a in missing] == [404] * 3 and len({a.headers[ANSWERED_BY] for a in missing}) == 1
    assert same_everywhere(fleet.ask_all("/videos/never-edited"))
    assert [a.status for a in fleet.ask_all(f"/assets/{events[0].asset_id}", token=None)] == [401] * 3

    # /metrics on each: Prometheus text of what that worker did, so the sum counts each render once.
    renders = 0.0
    for answer in fleet.ask_all("/metrics"):
        assert answer.status == 200, answer.body[:500]
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
        renders += sum(s.value for s in families["regen_renders"].samples
                       if s.name == "regen_renders_total" and s.labels == {"outcome": "generated"})
        assert not [s for f in families.values() for s in f.samples if "instance" in s.labels]
    assert renders == len(expected)

    # Any worker's overview covers the whole group.
    for answer in fleet.ask_all("/api/overview"):
        assert answer.status == 200, answer.body[:500]
        overview = answer.json()
        members = overview["members"]
        assert len(members) == 3 and all(m["answered"] for m in members), members
        assert sorted(p for m in members for p in m["partitions"]) == list(range(settings.partitions))
        assert overview["missing"] == []
        assert [b["batch_id"] for b in overview["batches"]] == ["fleet"]
