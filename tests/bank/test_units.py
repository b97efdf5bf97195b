"""The pure parts, without a server: configuration and fault-rule matching."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from bank.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_THREADS,
    BankConfig,
)
from bank.faults import FaultRule, Plan, Target, plan_stage
from bank.fd_limit import fd_reserve, fit_connection_cap
from envsettings import SettingsError


def test_config_defaults() -> None:
    config = BankConfig.from_env("source", 5001, environ={})
    assert config.port == 5001
    assert config.ledger_path == Path("data/source_bank.db")
    assert config.token is None
    assert config.faults_enabled is False
    assert config.threads == DEFAULT_THREADS
    assert config.host == "127.0.0.1"
    assert (
        config.max_connections,
        config.idle_timeout,
        config.header_timeout,
        config.body_timeout,
        config.max_header_bytes,
    ) == (
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_IDLE_TIMEOUT,
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_MAX_HEADER_BYTES,
    )


def test_connection_limits_from_environment() -> None:
    config = BankConfig.from_env(
        "source",
        5001,
        environ={
            "HOST": "0.0.0.0",
            "BANK_MAX_CONNECTIONS": "50",
            "BANK_IDLE_TIMEOUT": "5",
            "BANK_HEADER_TIMEOUT": "2",
            "BANK_BODY_TIMEOUT": "3",
            "BANK_MAX_HEADER_BYTES": "4096",
        },
    )
    assert config.host == "0.0.0.0"
    assert (config.max_connections, config.idle_timeout) == (50, 5)
    assert (config.header_timeout, config.body_timeout, config.max_header_bytes) == (2, 3, 4096)


def test_the_connection_cap_fits_under_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fit_connection_cap(10, threads=4) == 10
    cap = fit_connection_cap(10**9, threads=4)
    assert cap + fd_reserve(4) <= resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= soft


def test_config_from_environment() -> None:
    config = BankConfig.from_env(
        "target",
        5002,
        environ={
            "PORT": "6000",
            "LEDGER_PATH": "/tmp/x.db",
            "BANK_TOKEN": "s3cret",
            "BANK_FAULTS": '[{"action": "latency", "latency_ms": 5}]',
        },
    )
    assert (config.port, config.ledger_path, config.token) == (6000, Path("/tmp/x.db"), "s3cret")
    assert config.faults_enabled
    assert [rule.action for rule in config.initial_faults] == ["latency"]


@pytest.mark.parametrize("value", ["1", "on", "ON", "true"])
def test_faults_switch_on(value: str) -> None:
    config = BankConfig.from_env("source", 5001, environ={"BANK_FAULTS": value})
    assert config.faults_enabled
    assert config.initial_faults == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"BANK_THREADS": "0"}, "BANK_THREADS"),
        ({"BANK_MAX_CONNECTIONS": "0"}, "BANK_MAX_CONNECTIONS"),
        ({"BANK_IDLE_TIMEOUT": "soon"}, "BANK_IDLE_TIMEOUT"),
        ({"BANK_HEADER_TIMEOUT": "0"}, "BANK_HEADER_TIMEOUT"),
        ({"BANK_BODY_TIMEOUT": "-1"}, "BANK_BODY_TIMEOUT"),
        ({"BANK_MAX_HEADER_BYTES": "10"}, "BANK_MAX_HEADER_BYTES"),
        ({"BANK_FAULTS": "maybe"}, "BANK_FAULTS"),
        ({"BANK_FAULTS": '[{"action": "latency"}]'}, "latency_ms"),
        ({"PORT": "\u00b2"}, "PORT"),  # passes str.isdigit, not int()
        ({"BANK_THREADS": "1_0"}, "BANK_THREADS"),
    ],
)
def test_bad_configuration_is_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        BankConfig.from_env("source", 5001, environ=env)


def test_plan_combines_matching_rules_and_counts_hits() -> None:
    rules = [
        FaultRule("latency", latency_ms=10),
        FaultRule("latency", kind="debit", latency_ms=5),
        FaultRule("hold_before", op_id="t1-debit"),
        FaultRule("fail_before", kind="credit"),
        FaultRule("drop_after", times=1),
        FaultRule("fail_after"),
    ]
    debit = Target("t1-debit", "debit")
    assert plan_stage(rules, debit, "before") == Plan(latency_ms=15, hold=True, outcome=None)
    assert plan_stage(rules, debit, "after") == Plan(outcome="drop")
    # drop_after fired its one time; fail_after takes over.
    assert plan_stage(rules, debit, "after") == Plan(outcome="fail")
    assert [rule.hits for rule in rules] == [1, 1, 1, 0, 1, 2]


def test_voids_match_only_rules_without_a_kind() -> None:
    rules = [FaultRule("fail_before", kind="debit"), FaultRule("fail_before", op_id="x")]
    assert plan_stage(rules, Target("y", None), "before") == Plan()
    assert plan_stage(rules, Target("x", None), "before") == Plan(outcome="fail")
