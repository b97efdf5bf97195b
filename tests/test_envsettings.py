"""One parser for every part's settings: the readers, and each part refusing a bad value the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import envsettings
from bank.config import BankConfig
from envsettings import SettingsError
from orchestrator.settings import Settings as OrchestratorSettings
from promise_store.config import Settings as StoreSettings


def test_unset_empty_and_blank_mean_the_default() -> None:
    for env in ({}, {"N": ""}, {"N": "   "}):
        assert envsettings.integer(env, "N", 7, low=1) == 7
        assert envsettings.number(env, "N", 2.5, low=0) == 2.5
        assert envsettings.boolean(env, "N", True) is True
        assert envsettings.url(env, "N") is None
        assert envsettings.optional_string(env, "N") is None
        assert envsettings.string(env, "N", "dflt") == "dflt"
        assert envsettings.path(env, "N", "data/x.db") == Path("data/x.db")
        assert envsettings.optional_path(env, "N") is None


def test_values_are_read_within_their_range() -> None:
    assert envsettings.integer({"N": " 42 "}, "N", 1, low=1, high=100) == 42
    assert envsettings.integer({"N": "100"}, "N", 1, low=1, high=100) == 100
    assert envsettings.number({"N": "1e-3"}, "N", 1.0, low=0.0) == 0.001
    assert envsettings.number({"N": ".5"}, "N", 1.0, low=0.0, high=1.0) == 0.5
    assert envsettings.boolean({"N": "OFF"}, "N", True) is False
    assert envsettings.boolean({"N": "yes"}, "N", False) is True
    assert envsettings.url({"N": "https://store:8001/"}, "N") == "https://store:8001"
    assert envsettings.string({"N": " s3cret "}, "N", "") == "s3cret"


@pytest.mark.parametrize(
    "value",
    ["soon", "2.5", "1_000", "\u00b2", "\u0661\u0660", "0", "101", "1" * 5000, "0x10"],
)
def test_a_bad_integer_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^N must be an integer from 1 to 100, got ") as err:
        envsettings.integer({"N": value}, "N", 1, low=1, high=100)
    assert err.value.variable == "N"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "soon", "1,5", "-1", "2_0"])
def test_a_bad_number_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^N must be a number of at least 0, got "):
        envsettings.number({"N": value}, "N", 1.0, low=0)


@pytest.mark.parametrize(
    "value", ["store:8001", "ftp://bank", "http://", "http://bank:port", "http://bank:99999"]
)
def test_a_bad_url_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^N must be an http:// or https:// URL"):
        envsettings.url({"N": value}, "N")


def test_a_bad_boolean_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^N must be 1/on/true/yes or 0/off/false/no"):
        envsettings.boolean({"N": "maybe"}, "N", False)


@pytest.mark.parametrize(
    ("read", "variable"),
    [
        (lambda env: BankConfig.from_env("source", 5001, environ=env), "PORT"),
        (StoreSettings.from_env, "PORT"),
        (lambda env: BankConfig.from_env("source", 5001, environ=env), "BANK_THREADS"),
        (StoreSettings.from_env, "SNAPSHOT_EVERY"),
        (StoreSettings.from_env, "MAX_BODY_BYTES"),
        (StoreSettings.from_env, "REOFFER_AFTER"),
        (StoreSettings.from_env, "MAX_JSON_DEPTH"),
        (OrchestratorSettings.from_env, "STEP_ATTEMPTS"),
        (OrchestratorSettings.from_env, "LEASE_TTL"),
    ],
)
@pytest.mark.parametrize("value", ["soon", "\u00b2", "1_000", "nan"])
def test_every_part_refuses_a_bad_value_with_the_one_error_type(
    read: object, variable: str, value: str
) -> None:
    assert callable(read)
    with pytest.raises(SettingsError) as err:
        read({variable: value})
    assert err.value.variable == variable
    assert str(err.value).startswith(variable)


def test_the_store_keeps_a_body_it_journals_far_below_sqlites_value_limit() -> None:
    assert StoreSettings.from_env({"MAX_BODY_BYTES": str(64 << 20)}).limits.max_body_bytes == (
        64 << 20
    )
    with pytest.raises(SettingsError, match=r"^MAX_BODY_BYTES"):
        StoreSettings.from_env({"MAX_BODY_BYTES": str((64 << 20) + 1)})


def test_the_stores_delivery_settings_are_read() -> None:
    settings = StoreSettings.from_env(
        {"REOFFER_AFTER": "0.5", "MAX_WATCHED_OFFERS": "0", "MAX_JSON_DEPTH": "16"}
    )
    assert (settings.reoffer_after, settings.max_watched_offers, settings.max_json_depth) == (
        0.5,
        0,
        16,
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "source_bank"],
        [sys.executable, "-m", "promise_store"],
        [sys.executable, "-m", "orchestrator", "worker"],
        [sys.executable, "-m", "orchestrator", "balances"],
    ],
)
def test_a_part_started_with_a_bad_setting_says_which_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """A superscript two passes ``str.isdigit`` but not ``int``: it must still be a clear refusal."""
    env = {
        **os.environ,
        "PORT": "\u00b2",
        "STEP_ATTEMPTS": "\u00b2",
        "LEDGER_PATH": str(tmp_path / "ledger.db"),
        "STORE_PATH": str(tmp_path / "promises.db"),
    }
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert ("PORT" if "orchestrator" not in command else "STEP_ATTEMPTS") in lines[0]
    assert not (tmp_path / "ledger.db").exists()
    assert not (tmp_path / "promises.db").exists()
