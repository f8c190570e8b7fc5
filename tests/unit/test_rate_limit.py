"""RateLimit (daemon/logs.py): per-key budgets, the summary line, bounded keys."""

from __future__ import annotations

import logging

import pytest

from daemon.logs import OTHER_KEY, RateLimit, limited


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged():
    """A logger whose handler keeps what RateLimit lets through, and the filter's clock."""
    clock = Clock()
    limit = RateLimit(window=10, burst=3, keys=4, clock=clock)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    handler.addFilter(limit)
    logger = logging.getLogger("daemond.test-rate-limit")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, lines, clock, limit
    logger.removeHandler(handler)


def test_a_burst_per_key_passes_and_the_rest_is_summed_up_after_the_window(logged):
    logger, lines, clock, _ = logged
    for n in range(1000):
        logger.info("connect %d", n, extra=limited("from 10.0.0.1", "connections"))
        logger.info("disconnect %d", n, extra=limited("from 10.0.0.1"))
    logger.info("connect other", extra=limited("from 10.0.0.2", "connections"))
    logger.info("unrelated")
    assert lines == ["connect 0", "disconnect 0", "connect 1", "connect other", "unrelated"]
    clock.now += 10
    logger.info("later")
    assert lines[5:] == ["… and 998 more connections from 10.0.0.1 in the last 10 s", "later"]
    logger.info("connect again", extra=limited("from 10.0.0.1", "connections"))
    assert lines[-1] == "connect again"  # a new window


def test_keys_past_the_limit_share_one_budget(logged):
    logger, lines, clock, limit = logged
    for n in range(100):
        logger.info("refused %d", n, extra=limited(f"from 10.0.1.{n}", "refused connections"))
    assert len(lines) == 4 + 3  # four keys, then the shared one's burst
    limit.flush()
    assert lines[-1] == f"… and 93 more refused connections {OTHER_KEY} in the last 0 s"
