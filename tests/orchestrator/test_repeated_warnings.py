"""The same warning over and over is shown once, then about once every interval."""

from __future__ import annotations

import logging

import pytest

from orchestrator.repeated_warnings import RepeatedWarnings, limit_repeated_warnings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain_failed(detail: str = "connection refused") -> logging.LogRecord:
    return logging.LogRecord(
        "resonate_pg.connection",
        logging.WARNING,
        __file__,
        1,
        "postgres drain failed: %s",
        (detail,),
        None,
    )


def test_the_first_warning_is_shown_then_one_per_interval_with_the_count() -> None:
    clock = Clock()
    limiter = RepeatedWarnings(every=10.0, clock=clock)
    assert limiter.filter(drain_failed())
    shown = []
    for _ in range(80):  # 250 ms ticks for 20 s
        clock.now += 0.25
        record = drain_failed()
        if limiter.filter(record):
            shown.append(record.getMessage())
    assert shown == [
        "postgres drain failed: connection refused (39 more like it in the last 10s not shown)",
        "postgres drain failed: connection refused (39 more like it in the last 10s not shown)",
    ]


def test_other_warnings_and_lower_levels_are_not_held_back() -> None:
    limiter = RepeatedWarnings(every=10.0, clock=Clock())
    assert limiter.filter(drain_failed())
    listen = logging.LogRecord(
        "resonate_pg.connection", logging.WARNING, __file__, 1, "postgres listen failed", (), None
    )
    assert limiter.filter(listen)
    info = logging.LogRecord(
        "resonate_pg.connection",
        logging.INFO,
        __file__,
        1,
        "postgres drain failed: %s",
        ("x",),
        None,
    )
    assert limiter.filter(info)
    assert not limiter.filter(drain_failed("another detail"))


def test_installing_twice_keeps_one_limiter() -> None:
    logger = logging.getLogger("resonate_pg.connection")
    limit_repeated_warnings(5.0)
    limit_repeated_warnings(10.0)
    limiters = [f for f in logger.filters if isinstance(f, RepeatedWarnings)]
    assert [limiter.every for limiter in limiters] == [10.0]


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="every"):
        RepeatedWarnings(every=0.0)
