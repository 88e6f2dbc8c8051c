"""Integration fixtures: a real Kafka broker and real worker processes.

The broker is the one `regen broker start` runs (or the user's, when
KAFKA_BOOTSTRAP_SERVERS is set). Every test gets its own topic prefix,
consumer group, state directory and image store, so tests never see each
other's events.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from regen.cli.samples import write_video
from regen.settings import Settings
from regen.streams import local_broker
from tests.helpers import WorkerProcess, free_port

INTEGRATION = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test below this folder is an integration test. (A ``pytestmark``
    in a conftest.py is ignored: marks are added here, before ``-m`` selects.)"""
    for item in items:
        if INTEGRATION in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


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
        # Killed, not stopped: nothing after a test checks how its workers
        # shut down (test_failures.py tests a clean stop where it matters),
        # and Faust's orderly stop costs about 2 s per worker. Each test has
        # its own topics and group, so nothing a killed worker leaves open
        # is seen by another.
        worker.stop(signal.SIGKILL)
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


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A media root with a short clip (clip.mp4) for annotations."""
    folder = tmp_path / "media"
    write_video(folder / "clip.mp4", frames=48, size=(320, 180))
    return folder


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL cluster (tests/postgres.py). Missing PostgreSQL
    fails the tests that need it, with what to install: CI must run them."""
    from tests.postgres import MISSING, LocalPostgres, postgres_bin

    if postgres_bin() is None:
        pytest.fail(MISSING)
    server = LocalPostgres.start()
    try:
        yield server
    finally:
        server.stop()
