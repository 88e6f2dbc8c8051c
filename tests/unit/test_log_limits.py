"""The log's repeats are bounded: each kind of line a few times a window, then counted."""

from __future__ import annotations

import logging

import pytest

from regen.log_limits import RepeatLimit, limit_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged():
    """A logger whose handler keeps what it writes, behind a RepeatLimit on a fake clock."""
    clock, lines = Clock(), []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append((record.name, record.levelname, record.getMessage()))

    handler = Keep()
    handler.addFilter(RepeatLimit(handler, burst=3, window_s=60, clock=clock))
    logger = logging.getLogger("test.log_limits")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    yield logger, clock, lines
    logger.removeHandler(handler)


def test_a_repeated_line_is_written_a_burst_of_times_a_window_then_summed_up(logged):
    logger, clock, lines = logged
    for port in range(1000):
        logger.error("Unable connect to node with id %s: %s", 1, f"Connect call failed ('127.0.0.1', {port})")
        clock.now += 0.01  # 1,000 in 10 s
    assert len(lines) == 3
    clock.now += 55
    logger.error("Unable connect to node with id %s: %s", 1, "Connect call failed ('127.0.0.1', 5)")
    assert lines[3] == ("test.log_limits", "ERROR", "… 997 similar messages suppressed in the last 65 s; "
                        "the last: Unable connect to node with id 1: Connect call failed ('127.0.0.1', 999)")
    assert lines[4][2].endswith("('127.0.0.1', 5)"), "a new window starts with the line that ended the last"


def test_numbers_do_not_make_lines_different_even_formatted_before_logging(logged):
    logger, clock, lines = logged
    for partition in range(10):
        logger.info(f"opening partition {partition} for gen id 1")  # noqa: G004 - what Faust does
    assert [m for *_, m in lines] == [f"opening partition {p} for gen id 1" for p in range(3)]


def test_other_templates_loggers_and_levels_are_counted_apart(logged):
    logger, clock, lines = logged
    other = logging.getLogger("test.log_limits.other")
    for _ in range(5):
        logger.error("one thing")
        logger.warning("one thing")
        logger.error("another thing")
        other.error("one thing")  # propagates to the same handler
    assert len(lines) == 12


def test_a_flood_that_stops_is_summed_up_by_the_next_line_of_any_kind(logged):
    logger, clock, lines = logged
    for _ in range(50):
        logger.error("Failed fetch messages from %d: NodeNotReadyError", 1)
    clock.now += 61
    logger.warning("broker at %s back after %.0f s", "127.0.0.1:9092", 61)
    assert lines[-2][2].startswith("… 47 similar messages suppressed in the last 61 s; the last: Failed fetch")
    assert lines[-1][2] == "broker at 127.0.0.1:9092 back after 61 s"


def test_nothing_suppressed_nothing_summed_up(logged):
    logger, clock, lines = logged
    logger.error("once")
    clock.now += 120
    logger.error("twice")
    assert [m for *_, m in lines] == ["once", "twice"]


def test_installed_once_on_every_handler_of_a_logger():
    logger = logging.getLogger("test.log_limits.install")
    handlers = [logging.NullHandler(), logging.NullHandler()]
    for handler in handlers:
        logger.addHandler(handler)
    try:
        limit_repeats(logger)
        limit_repeats(logger)
        assert [sum(isinstance(f, RepeatLimit) for f in h.filters) for h in handlers] == [1, 1]
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
