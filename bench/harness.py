"""What every pipeline benchmark needs: a broker and one isolated worker."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from regen.settings import Settings
from regen.streams import local_broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def broker(work: Path) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a local broker for the run."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    info = local_broker.start(work / "broker", progress=print)
    try:
        yield info.bootstrap
    finally:
        local_broker.stop(work / "broker")


def with_variant(variant: str) -> str:
    """REGEN_VARIANTS for a worker that must also serve ``variant``."""
    return ",".join(dict.fromkeys([*Settings().variants, variant]))


@contextlib.contextmanager
def worker(bootstrap: str, state: Path, media: Path, processes: int = 2, group: str | None = None,
           **settings: str) -> Iterator[Settings]:
    """A `regen worker` subprocess with its own topics, group and state;
    ``settings`` are extra REGEN_* variables (e.g. REGEN_VARIANTS="...").
    Workers given the same ``group`` share topics and consumer group."""
    run_id = group or uuid.uuid4().hex[:8]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REGEN_APP_ID": f"bench-{run_id}",
           "REGEN_TOPIC_PREFIX": f"bench-{run_id}", "REGEN_STATE_DIR": str(state),
           "REGEN_IMAGE_STORE": str(state / "images"), "REGEN_MEDIA_ROOTS": str(media),
           "REGEN_WEB_PORT": str(free_port()), "REGEN_RENDER_PROCESSES": str(processes),
           "REGEN_PREGENERATE_VARIANTS": "h400.jpg", "REGEN_LOG_LEVEL": "warning", **settings}
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "regen.cli.main", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Settings.from_env(env)
    finally:
        proc.terminate()
        proc.wait(30)
