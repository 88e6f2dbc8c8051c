"""Integration fixtures: a real Kafka broker and real worker processes.

The broker is the one `regen broker start` runs (or the user's, when
KAFKA_BOOTSTRAP_SERVERS is set). Every test gets its own topic prefix,
consumer group, state directory and image store, so tests never see each
other's events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from regen.cli.samples import write_video
from regen.schemas.events import BoundaryChanged
from regen.streams import local_broker
from regen.streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    state = tmp_path_factory.mktemp("broker-state")
    info = local_broker.start(state, progress=lambda m: print(m, file=sys.stderr))
    try:
        yield info.bootstrap
    finally:
        local_broker.stop(state)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WorkerProcess:
    env: dict[str, str]
    settings: Settings
    log: Path
    proc: subprocess.Popen | None = None
    logs_seen: list[str] = field(default_factory=list)

    def start(self, ready_timeout: float = 90.0) -> "WorkerProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "regen.cli.main", "worker"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return self
                assert body.get("status") != "crashed", f"worker crashed:\n{self.tail()}"
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {ready_timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def get(self, path: str, token: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.settings.web_port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read())

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def regen_env(bootstrap, tmp_path, corpus) -> dict[str, str]:
    """Environment of an isolated regen installation on the shared broker."""
    run = uuid.uuid4().hex[:10]
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REGEN_APP_ID": f"regen-test-{run}",
        "REGEN_TOPIC_PREFIX": f"test-{run}",
        "REGEN_STATE_DIR": str(tmp_path / "state"),
        "REGEN_IMAGE_STORE": str(tmp_path / "images"),
        "REGEN_MEDIA_ROOTS": str(corpus),
        "REGEN_WEB_PORT": str(free_port()),
        "REGEN_RENDER_PROCESSES": "2",
        "REGEN_LOG_LEVEL": "info",
    }


@pytest.fixture
def start_worker(regen_env, tmp_path, request):
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        env = {**regen_env, **overrides}
        worker = WorkerProcess(env=env, settings=Settings.from_env(env), log=tmp_path / f"worker{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for worker in started:
        worker.stop()
        if failed:
            print(f"--- {worker.log} ---\n{worker.tail(120)}", file=sys.stderr)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def settings(regen_env) -> Settings:
    return Settings.from_env(regen_env)


def run(coro):
    return asyncio.run(coro)


def eventually(probe, timeout: float = 15.0, interval: float = 0.2):
    """Projections are folded from completion events a moment after they are
    published: poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A media root with a short clip (clip.mp4) for annotations."""
    folder = tmp_path / "media"
    write_video(folder / "clip.mp4", frames=48, size=(320, 180))
    return folder


def edit(annotation: str, revision: int, video: str = "v1", start: int = 0, end: int = 20) -> BoundaryChanged:
    return BoundaryChanged(annotation_id=annotation, video_id=video, start_frame=start, end_frame=end,
                           revision=revision, source="clip.mp4")
