"""regen over an authenticated Kafka listener (SASL_PLAINTEXT, PLAIN).

A broker of its own, with a SASL listener beside the usual PLAINTEXT one:
the worker and the clients are pointed at the SASL port only, so any Kafka
client regen builds without the credentials fails to connect.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from regen.cli.importer import scan
from regen.schemas.events import ImageGenerated
from regen.settings import Settings
from regen.streams import local_broker
from regen.streams.exceptions import BrokerError
from regen.streams.results import wait_for
from tests.helpers import WorkerProcess, free_port, publish, run

PASSWORD = "regen-s3cret"
# A client that cannot log in must say so well within this; aiokafka gives
# up on bootstrap at once when the broker rejects the credentials.
FAIL_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory) -> local_broker.BrokerInfo:
    state = tmp_path_factory.mktemp("sasl-broker-state")
    info = local_broker.start(state, progress=lambda m: print(m, file=sys.stderr), heap="384m",
                              sasl_users={"regen": PASSWORD})
    try:
        yield info
    finally:
        local_broker.stop(state)


def sasl_env(broker: local_broker.BrokerInfo, tmp_path: Path, corpus: Path, password: str = PASSWORD) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:10]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REGEN_"))}
    return {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": broker.sasl_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "regen",
        "KAFKA_SASL_PASSWORD": password,
        "REGEN_APP_ID": f"regen-sasl-{run_id}",
        "REGEN_TOPIC_PREFIX": f"sasl-{run_id}",
        "REGEN_STATE_DIR": str(tmp_path / "state"),
        "REGEN_IMAGE_STORE": str(tmp_path / "images"),
        "REGEN_MEDIA_ROOTS": str(corpus),
        "REGEN_WEB_PORT": str(free_port()),
        "REGEN_RENDER_PROCESSES": "1",
        "REGEN_PREGENERATE_VARIANTS": "h400.jpg",
        "REGEN_LOG_LEVEL": "info",
    }


def test_a_worker_with_sasl_credentials_renders_an_imported_photo(sasl_broker, tmp_path, corpus):
    env = sasl_env(sasl_broker, tmp_path, corpus)
    settings = Settings.from_env(env)
    worker = WorkerProcess(env=env, settings=settings, log=tmp_path / "worker.log")
    try:
        worker.start()
        photo = sorted((corpus / "photos").glob("*.jpg"))[0]
        event = next(scan([photo], [corpus], batch_id="sasl")).event
        run(publish(settings, sasl_broker.sasl_bootstrap, [event]))

        seen = run(wait_for(settings, sasl_broker.sasl_bootstrap, lambda c: c.target.id, {event.asset_id},
                            timeout=120))
        completion = seen[event.asset_id]
        assert isinstance(completion, ImageGenerated), completion
        assert completion.variant == "h400.jpg"
        with Image.open(settings.image_store / completion.uri) as image:
            image.load()
            assert image.height == 400
    except BaseException:
        print(f"--- {worker.log} ---\n{worker.tail(120)}", file=sys.stderr)
        raise
    finally:
        worker.stop()


def test_a_wrong_password_fails_fast_and_says_so(sasl_broker, tmp_path, corpus):
    env = sasl_env(sasl_broker, tmp_path, corpus, password="not-the-password")

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "regen.cli.main", "get", "thumbnail", "some-asset", "--wait", "5"],
                            env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("regen: error: cannot connect to Kafka at " + sasl_broker.sasl_bootstrap), error
    assert "Authentication failed" in error and "KAFKA_SASL_PASSWORD" in error, error
    assert "not-the-password" not in result.stderr
    assert elapsed < FAIL_WITHIN_S, elapsed

    # The Python client raises the same error rather than retrying forever.
    settings = Settings.from_env(env)
    with pytest.raises(BrokerError, match="Authentication failed"):
        run(asyncio.wait_for(publish(settings, sasl_broker.sasl_bootstrap, []), FAIL_WITHIN_S))

    # A worker with the wrong password exits 1 at start instead of waiting for a broker.
    result = subprocess.run([sys.executable, "-m", "regen.cli.main", "worker"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "Authentication failed" in result.stderr, result.stderr[-2000:]


def test_a_client_without_credentials_is_refused_by_the_sasl_listener(sasl_broker, tmp_path, corpus):
    env = sasl_env(sasl_broker, tmp_path, corpus)
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        del env[name]
    settings = Settings.from_env(env)
    with pytest.raises(BrokerError, match="KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        run(asyncio.wait_for(publish(settings, sasl_broker.sasl_bootstrap, []), FAIL_WITHIN_S))
