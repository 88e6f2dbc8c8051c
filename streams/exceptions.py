"""Errors raised by the Kafka-facing side of regen. The CLI catches RegenError once."""


class RegenError(Exception):
    """Base of every operational error regen reports to a person."""


class ConfigError(RegenError):
    """A setting has a value regen cannot use."""


class BrokerError(RegenError):
    """The Kafka broker cannot be reached, started or stopped."""


class PoisonEvent(RegenError):
    """An event that can never be processed: undecodable, invalid, or naming
    something that is not configured. It goes to the dead-letter topic."""
