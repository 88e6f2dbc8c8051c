"""Where the Kafka broker is: the user's, or the local one `regen broker start` runs."""

from __future__ import annotations

from streams import local_broker
from streams.exceptions import BrokerError
from streams.settings import ENVIRONMENT, Settings


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
