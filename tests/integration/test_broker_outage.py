"""A broker that goes away for a minute under load: the worker waits quietly,
says so on /health, and finishes everything once the broker is back.

Before the worker's Kafka clients were paced, the same outage kept a core
at 97 % and wrote 260,000 log lines a minute (streams/paced_clients.py).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from regen.cli.importer import scan
from regen.schemas.events import ImageGenerated
from regen.settings import Settings
from regen.streams import local_broker
from regen.streams.results import wait_for
from tests.helpers import WorkerProcess, make_photos, publish_all, run, variant_key

OUTAGE_S = 60.0
# The worker's own CPU over CPU_WINDOW_S of the outage, as a share of one
# core. An idle worker with its broker up uses about a tenth of a core here
# (Faust's timers and streams); the outage must add little to that.
CPU_WINDOW_S, CPU_LIMIT = 20.0, 0.30
# Log lines once the worker is ready: the load, the outage and the recovery
# (about 190 here, 60 of them from the outage on), and of those, from the
# outage on. Before it, Faust prints its topic and partition tables (about
# 200 lines, however long the worker runs).
LOG_LINES_LIMIT, OUTAGE_LOG_LINES_LIMIT = 300, 150


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def log_lines(worker: WorkerProcess) -> int:
    return worker.log.read_bytes().count(b"\n")


def health_when(worker: WorkerProcess, status: str, timeout: float) -> tuple[int, dict]:
    """/health once it reports ``status``, or as it is after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        code, health = worker.get("/health")
        if health.get("status") == status or time.monotonic() > deadline:
            return code, health
        time.sleep(0.5)


def stop_keeping_data(broker_state) -> None:
    """Stop the broker, keeping its ports and data for local_broker.restart."""
    info = local_broker.read_record(broker_state)
    assert info is not None and info.alive()
    os.killpg(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + local_broker.STOP_TIMEOUT_S
    while info.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if info.alive():
        os.killpg(info.pid, signal.SIGKILL)


@pytest.mark.slow  # about 2 minutes: a minute of it is the outage
def test_a_broker_stopped_for_a_minute_under_load(regen_env, tmp_path):
    broker_state = tmp_path / "own-broker"
    bootstrap = local_broker.start(broker_state, progress=lambda m: None).bootstrap
    try:
        media = tmp_path / "media"
        photos = make_photos(media, 200)
        env = {**regen_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REGEN_MEDIA_ROOTS": str(media),
               "REGEN_PREGENERATE_VARIANTS": "h400.jpg", "REGEN_RENDER_PROCESSES": "1"}
        worker = WorkerProcess(env=env, settings=Settings.from_env(env), log=tmp_path / "worker.log").start()
        lines_when_ready = log_lines(worker)
        try:
            settings = worker.settings
            events = [s.event for s in scan(photos, [media], "outage")]
            run(publish_all(settings, bootstrap, events))
            expected = {f"{e.asset_id}/h400.jpg" for e in events}
            run(wait_for(settings, bootstrap, variant_key, set(list(expected)[:1]), 60))  # it is rendering

            stop_keeping_data(broker_state)
            stopped, lines_before = time.monotonic(), log_lines(worker)
            code, health = health_when(worker, "broker_unreachable", timeout=20)
            assert (code, health["status"]) == (503, "broker_unreachable"), health
            assert health["broker_unreachable_s"] > 0

            cpu_before, measured_from = cpu_seconds(worker.proc.pid), time.monotonic()
            time.sleep(CPU_WINDOW_S)
            cpu_share = (cpu_seconds(worker.proc.pid) - cpu_before) / (time.monotonic() - measured_from)
            assert cpu_share < CPU_LIMIT, f"the worker used {cpu_share:.0%} of a core while the broker was away"

            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            code, health = worker.get("/health")
            assert code == 503 and health["broker_unreachable_s"] >= OUTAGE_S - 5, health
            local_broker.restart(broker_state, progress=lambda m: None)

            try:
                seen = run(wait_for(settings, bootstrap, variant_key, expected, timeout=180))
            except TimeoutError as e:
                raise AssertionError(f"{e}\nworker log:\n{worker.tail(60)}") from e
            assert all(isinstance(c, ImageGenerated) for c in seen.values())
            code, health = health_when(worker, "ok", timeout=30)
            assert (code, health["broker_unreachable_s"]) == (200, None), health

            log = worker.log.read_text(errors="replace")
            assert log.count("unreachable since") == 1, "one line when the broker goes away"
            assert log.count("back after") == 1, "one when it is back"
            lines = log_lines(worker)
            assert lines - lines_before < OUTAGE_LOG_LINES_LIMIT, f"{lines - lines_before} lines from the outage on"
            assert lines - lines_when_ready < LOG_LINES_LIMIT, f"{lines - lines_when_ready} lines once ready"
        finally:
            worker.stop()
    finally:
        local_broker.stop(broker_state)
