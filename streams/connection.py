"""Where the Kafka broker is and how to talk to it: the one place that turns
Settings into the bootstrap address, TLS and SASL options of every Kafka
client regen builds (producers, consumers, admin clients and the Faust app)."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import faust
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from regen.settings import ENVIRONMENT, Settings
from regen.streams import local_broker
from regen.streams.broker_watch import watch_broker
from regen.streams.exceptions import BrokerError, ConfigError
from regen.streams.paced_clients import pace


def bootstrap_servers(settings: Settings) -> str:
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    running = local_broker.find_running(settings.state_dir)
    if running is None:
        raise BrokerError(
            f"no Kafka broker: start the local one with `regen broker start`, "
            f"or set {ENVIRONMENT['bootstrap_servers']} to yours"
        )
    return running.bootstrap


def kafka_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and
    AIOKafkaAdminClient; every one of them must be built with these."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL_"):
        # aiokafka takes these two names for SCRAM as well as for PLAIN.
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The same options as Faust's ``broker_credentials``. Faust's aiokafka
    driver turns SASLCredentials with an ssl_context into SASL_SSL, and passes
    the result to its consumer, its producer and its topic-creating client."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism,
                                 ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name (aiokafka's helper
    leaves no way to turn that off); an empty CA file means the system's CAs."""
    try:
        return create_ssl_context(cafile=settings.kafka_ssl_cafile or None,
                                  certfile=settings.kafka_ssl_certfile or None,
                                  keyfile=settings.kafka_ssl_keyfile or None)
    except (OSError, ssl.SSLError) as e:
        files = ", ".join(f"{ENVIRONMENT[name]}={getattr(settings, name)}"
                          for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
                          if getattr(settings, name))
        raise ConfigError(f"cannot load the Kafka TLS files ({files or 'system CAs'}): {e}") from e


async def start_client(client: Any, settings: Settings, bootstrap: str) -> None:
    """Start an aiokafka client, or raise BrokerError saying why it could not connect.

    Once started, it backs off while the broker is away and reports to the
    broker's watch (streams/paced_clients.py), like the worker's Faust clients."""
    pace(client, watch_broker(bootstrap, settings))
    with _connection_errors() as errors:
        try:
            await client.start()
            return
        except KafkaError as e:
            failure = e
    with contextlib.suppress(Exception):  # a half-started client still holds sockets and tasks
        await (client.close() if hasattr(client, "close") else client.stop())
    raise BrokerError(connection_failure(settings, bootstrap, errors[-1] if errors else str(failure))) from failure


def connection_failure(settings: Settings, bootstrap: str, cause: str) -> str:
    protocol = settings.kafka_security_protocol
    message = (f"cannot connect to Kafka at {bootstrap} with "
               f"{ENVIRONMENT['kafka_security_protocol']}={protocol}: {cause}")
    if protocol.startswith("SASL_"):
        message += (f". Check {ENVIRONMENT['kafka_sasl_username']} ({settings.kafka_sasl_username!r}), "
                    f"{ENVIRONMENT['kafka_sasl_password']} and {ENVIRONMENT['kafka_sasl_mechanism']} "
                    f"({settings.kafka_sasl_mechanism}), and that this address is the broker's {protocol} listener")
    elif protocol == "PLAINTEXT" and not settings.bootstrap_servers:
        message += ". Start a broker with `regen broker start` or set " + ENVIRONMENT["bootstrap_servers"]
    else:
        message += f". Check that this address is the broker's {protocol} listener"
    return message


@contextlib.contextmanager
def _connection_errors() -> Iterator[list[str]]:
    """aiokafka logs why each bootstrap server refused (bad credentials, TLS
    handshake) but raises only "Unable to bootstrap": keep the reason."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # The client's own logger, not aiokafka.conn's "Sending username
            # and password in the clear", which is a warning but no reason.
            if record.name == "aiokafka":
                seen.append(record.getMessage())

    handler, logger = Keep(logging.WARNING), logging.getLogger("aiokafka")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
