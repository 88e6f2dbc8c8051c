"""A real single-node Apache Kafka (KRaft) started from Maven Central jars.

For machines without Docker: ``mvn dependency:copy-dependencies`` fetches the
broker's jars once into a cache outside the repository, then the broker runs
as a plain ``java`` process on free loopback ports with its data in a
temporary folder. ``broker.json`` in the state directory records where it is,
so every other command can find it.

No shell is involved anywhere: every process is started from an argument list.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from regen.streams.exceptions import BrokerError

KAFKA_VERSION = "4.1.1"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
# The JVM starts and formats in about 5 s on two cores; 90 s allows a cold
# page cache and a busy machine without hanging forever on a broker that died.
START_TIMEOUT_S = 90.0
# A clean controlled shutdown takes a few seconds; past this we SIGKILL.
STOP_TIMEOUT_S = 30.0


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "regen" / f"kafka-{KAFKA_VERSION}"


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    bootstrap: str
    controller_port: int
    data_dir: str
    log_file: str
    started_at: float
    # SASL_PLAINTEXT listener with the PLAIN mechanism; empty unless asked for.
    sasl_bootstrap: str = ""

    def alive(self) -> bool:
        return _pid_alive(self.pid)


def record_path(state_dir: Path) -> Path:
    return state_dir / "broker.json"


def read_record(state_dir: Path) -> BrokerInfo | None:
    try:
        return BrokerInfo(**json.loads(record_path(state_dir).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def find_running(state_dir: Path) -> BrokerInfo | None:
    info = read_record(state_dir)
    return info if info is not None and info.alive() else None


def ensure_jars(progress=print) -> Path:
    """Fetch the broker's jars once. Returns the folder holding them."""
    libs = cache_dir() / "libs"
    marker = cache_dir() / ".complete"
    if marker.exists():
        return libs
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None:
        raise BrokerError("Java is not installed: the local Kafka broker needs a JDK 17 or newer "
                          "(`apt-get install openjdk-17-jdk-headless`), or set KAFKA_BOOTSTRAP_SERVERS "
                          "to a broker of yours")
    if mvn is None:
        raise BrokerError("Maven is not installed: it fetches Kafka's jars once (`apt-get install maven`), "
                          "or set KAFKA_BOOTSTRAP_SERVERS to a broker of yours")
    cache_dir().mkdir(parents=True, exist_ok=True)
    pom = cache_dir() / "pom.xml"
    pom.write_text(resources.files("regen.streams").joinpath("localkafka", "pom.xml").read_text())
    progress(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs} (once)…")
    staging = cache_dir() / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), MAVEN_DEPENDENCY_PLUGIN,
         "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not fetch Kafka's jars (exit {result.returncode}):\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.touch()
    return libs


def start(state_dir: Path, progress=print, heap: str = "512m", sasl_users: Mapping[str, str] | None = None
          ) -> BrokerInfo:
    """Start a broker unless one recorded in ``state_dir`` is running.

    ``sasl_users`` (name -> password) adds a SASL_PLAINTEXT listener on
    another port that accepts them with the PLAIN mechanism, to test
    regen's Kafka authentication; the PLAINTEXT listener stays."""
    running = find_running(state_dir)
    if running is not None:
        return running
    libs = ensure_jars(progress)
    state_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="regen-kafka-"))
    broker_port, controller_port = _free_port(), _free_port()
    sasl_port = _free_port() if sasl_users else 0
    config = data_dir / "server.properties"
    config.write_text(_server_properties(data_dir / "logs", broker_port, controller_port, sasl_port)
                      + _sasl_properties(sasl_users or {}))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(resources.files("regen.streams").joinpath("localkafka", "log4j2.properties").read_text())
    jvm = _jvm(libs, log4j, heap)
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    fmt = subprocess.run(
        # "--cluster-id=…" in one argument: a base64 id may start with "-",
        # which argparse would otherwise read as an option.
        [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "--config", str(config),
         "--ignore-formatted"],
        capture_output=True, text=True,
    )
    if fmt.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise BrokerError(f"formatting Kafka storage failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
    return _launch(state_dir, jvm, data_dir, broker_port, controller_port, sasl_port)


def restart(state_dir: Path, progress=print, heap: str = "512m", kill: bool = False) -> BrokerInfo:
    """Stop the recorded broker (SIGKILL if ``kill``: a crash) and start it
    again on the same ports with the same data: topics, offsets and
    committed positions survive, as on a real cluster's broker restart."""
    info = read_record(state_dir)
    if info is None:
        raise BrokerError("no local broker to restart: start one with `regen broker start`")
    if info.alive():
        if kill:
            os.killpg(info.pid, signal.SIGKILL)
            _wait_gone(info.pid)
        else:
            _terminate(info.pid)
    data_dir = Path(info.data_dir)
    jvm = _jvm(ensure_jars(progress), data_dir / "log4j2.properties", heap)
    broker_port = int(info.bootstrap.rsplit(":", 1)[1])
    sasl_port = int(info.sasl_bootstrap.rsplit(":", 1)[1]) if info.sasl_bootstrap else 0
    return _launch(state_dir, jvm, data_dir, broker_port, info.controller_port, sasl_port)


def _jvm(libs: Path, log4j: Path, heap: str) -> list[str]:
    java = shutil.which("java")
    assert java is not None  # ensure_jars checked
    # A development broker shares a small machine with the workers it serves:
    # the serial collector and the C1 compiler alone cut its CPU use for the
    # same traffic from half a core to a fifth (bench/thumbnails.py, measured
    # with /proc), at no cost visible to regen's throughput.
    return [java, f"-Xmx{heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:CICompilerCount=1", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}{os.sep}*"]


def _launch(state_dir: Path, jvm: list[str], data_dir: Path, broker_port: int, controller_port: int,
            sasl_port: int = 0) -> BrokerInfo:
    log_file = data_dir / "broker.log"
    with open(log_file, "ab") as log:
        # A new session: the broker outlives the `regen broker start` process
        # and does not get the terminal's Ctrl-C.
        proc = subprocess.Popen([*jvm, "kafka.Kafka", str(data_dir / "server.properties")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    info = BrokerInfo(proc.pid, f"127.0.0.1:{broker_port}", controller_port, str(data_dir), str(log_file), time.time(),
                      f"127.0.0.1:{sasl_port}" if sasl_port else "")
    try:
        _wait_until_ready(info, proc)
    except BrokerError:
        _terminate(proc.pid)
        raise
    record_path(state_dir).write_text(json.dumps(asdict(info), indent=2))
    return info


def stop(state_dir: Path) -> BrokerInfo | None:
    """Stop the recorded broker and remove its data. Returns what was stopped."""
    info = read_record(state_dir)
    if info is None:
        return None
    if info.alive():
        _terminate(info.pid)
    shutil.rmtree(info.data_dir, ignore_errors=True)
    record_path(state_dir).unlink(missing_ok=True)
    return info


def _server_properties(log_dir: Path, broker_port: int, controller_port: int, sasl_port: int = 0) -> str:
    # The SASL listener is for clients only: the controller and the broker
    # talk to each other over PLAINTEXT on loopback, so no broker login is needed.
    client_listeners = f"PLAINTEXT://127.0.0.1:{broker_port}" + (f",SASL://127.0.0.1:{sasl_port}" if sasl_port else "")
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners={client_listeners},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners={client_listeners}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={log_dir}",
        # regen creates its topics itself, with the partition count its tables need.
        "auto.create.topics.enable=false",
        "num.partitions=4",
        "offsets.topic.replication.factor=1",
        # 50 offsets partitions make the first consumer group wait seconds for nothing.
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Single member groups (tests, the demo) should not wait 3 s to rebalance.
        "group.initial.rebalance.delay.ms=0",
        # One machine, a handful of clients: fewer threads, less contention.
        "num.network.threads=1",
        "num.io.threads=2",
        "",
    ])


def _sasl_properties(users: Mapping[str, str]) -> str:
    """The accounts the SASL listener accepts, with the PLAIN mechanism."""
    if not users:
        return ""
    for name, password in users.items():
        # Both end up inside a quoted JAAS string; a quote or ; would end it.
        if not name.isidentifier() or any(c in password for c in '"\\;\n'):
            raise BrokerError(f"SASL user {name!r}: names must be identifiers, passwords without quotes, "
                              "backslashes, semicolons or newlines")
    accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return "\n".join([
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
        f"required {accounts};",
        "",
    ])


def _wait_until_ready(info: BrokerInfo, proc: subprocess.Popen) -> None:
    host, port = info.bootstrap.split(":")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"the Kafka broker exited with code {proc.returncode}; see {info.log_file}:\n"
                              f"{_tail(info.log_file)}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                if _metadata_ready(info.bootstrap):
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise BrokerError(f"the Kafka broker did not answer on {info.bootstrap} within {START_TIMEOUT_S:.0f} s; "
                      f"see {info.log_file}")


def _metadata_ready(bootstrap: str) -> bool:
    """The port opens before the controller has elected itself; ask for metadata."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


def _terminate(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie left by our own Popen is not a broker
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
