"""send_durably waits out what a retry can cure and raises what it cannot."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from regen.agents import context
from regen.agents.context import WorkerContext, worth_retrying


@pytest.mark.parametrize("error, retry", [
    (KafkaConnectionError(), True),
    (NotLeaderForPartitionError(), True),
    (KafkaTimeoutError(), True),  # the broker is away: what retrying is for
    (MessageSizeTooLargeError(), False),
    (TopicAuthorizationFailedError(), False),
])
def test_only_errors_a_retry_can_cure_are_retried(error, retry):
    assert worth_retrying(error) is retry


class FlakyProducer:
    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    async def send_and_wait(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def sender(producer) -> SimpleNamespace:
    return SimpleNamespace(app=SimpleNamespace(producer=producer))


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    async def instant(_delay):
        return None

    monkeypatch.setattr(context.asyncio, "sleep", instant)


def test_a_retriable_error_is_retried_until_the_send_succeeds():
    producer = FlakyProducer([KafkaConnectionError(), KafkaTimeoutError(), NotLeaderForPartitionError()])
    asyncio.run(WorkerContext.send_durably(sender(producer), "t", b"k", b"v", []))
    assert producer.calls == 4


def test_a_message_too_large_is_raised_at_once():
    producer = FlakyProducer([MessageSizeTooLargeError()])
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(WorkerContext.send_durably(sender(producer), "t", b"k", b"v" * 10, []))
    assert producer.calls == 1
