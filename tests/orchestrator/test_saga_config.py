"""Settings, transfer requests and retry budgets: the pure parts, no processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.records import op_id
from orchestrator.saga import bounded_policy, unbounded_policy
from orchestrator.settings import Settings
from orchestrator.transfers import TransferRequest, new_transfer_id


def test_defaults_work_with_an_empty_environment() -> None:
    settings = Settings.from_env({})

    assert settings.resonate_url is None  # the embedded store
    assert settings.store_path == Path("data/promises.db")
    assert settings.source_bank_url == "http://127.0.0.1:5001"
    assert settings.target_bank_url == "http://127.0.0.1:5002"
    assert settings.group == "crossbank-workers"
    assert settings.step_attempts >= 1


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "RESONATE_URL": "http://store:8001/",
            "RESONATE_TOKEN": "s3cret",
            "SOURCE_BANK_URL": "http://source:5001",
            "BANK_TOKEN": "b4nk",
            "WORKER_GROUP": "eu-workers",
            "LEASE_TTL": "2.5",
            "STEP_ATTEMPTS": "7",
            "BANK_TIMEOUT": "0.5",
            "ATTENTION_AFTER": "60",
        }
    )

    assert settings.resonate_url == "http://store:8001"
    assert settings.resonate_token == "s3cret"
    assert settings.source_bank_url == "http://source:5001"
    assert settings.bank_token == "b4nk"
    assert settings.group == "eu-workers"
    assert (settings.lease_ttl, settings.step_attempts) == (2.5, 7)
    assert (settings.bank_timeout, settings.attention_after) == (0.5, 60.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEASE_TTL", "soon"),
        ("LEASE_TTL", "0"),
        ("LEASE_TTL", "nan"),
        ("STEP_ATTEMPTS", "0"),
        ("STEP_ATTEMPTS", "2.5"),
        ("BANK_TIMEOUT", "-1"),
        ("RESONATE_URL", "store:8001"),
        ("TARGET_BANK_URL", "ftp://bank"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_retry_budget_is_step_attempts_in_all() -> None:
    policy = bounded_policy(Settings(step_attempts=4, step_backoff=1, step_backoff_max=3))

    delays = [policy.next(attempt) for attempt in range(1, 6)]

    assert delays == [2, 3, 3, None, None]  # 1 try + 3 retries, capped backoff


def test_reversals_and_fences_retry_without_end_but_never_hot() -> None:
    policy = unbounded_policy(Settings(step_backoff=0, step_backoff_max=0))

    assert [policy.next(attempt) for attempt in (1, 10, 10_000)] == [1, 1, 1]


def test_op_ids_derive_from_the_transfer_id() -> None:
    assert [op_id("t-1", kind) for kind in ("debit", "credit", "reversal")] == [
        "t-1-debit",
        "t-1-credit",
        "t-1-reversal",
    ]


@pytest.mark.parametrize(
    ("transfer_id", "source", "target", "amount", "problem"),
    [
        ("", "a", "b", 1, "transfer id"),
        ("has:colon", "a", "b", 1, "transfer id"),
        ("has/slash", "a", "b", 1, "transfer id"),
        ("newline\n", "a", "b", 1, "transfer id"),
        ("t", "a", "a", 1, "must differ"),
        ("t", "a", "b", 0, "amount"),
        ("t", "a", "b", -5, "amount"),
        ("t", "a", "b", 1.5, "amount"),
        ("t", "a", "b", True, "amount"),
        ("t", "a", "b", 10**15, "amount"),
        ("t", "", "b", 1, "source account"),
    ],
)
def test_malformed_requests_are_refused(
    transfer_id: str, source: str, target: str, amount: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        TransferRequest(transfer_id, source, target, amount)


def test_new_transfer_ids_are_valid_and_distinct() -> None:
    ids = {new_transfer_id() for _ in range(100)}

    assert len(ids) == 100
    for transfer_id in ids:
        TransferRequest(transfer_id, "a", "b", 1)  # accepted as a transfer id


def test_request_round_trips_through_json() -> None:
    request = TransferRequest("t-9", "alice", "bob", 1250)

    assert TransferRequest.from_json(request.to_json()) == request


def test_saga_versions_are_read_and_checked() -> None:
    from envsettings import SettingsError
    from orchestrator.saga_versions import NEWEST, carried, group_for, starting_version

    chosen = Settings.from_env({"SAGA_VERSIONS": "2, 1", "SAGA_VERSION": "1"})
    assert (chosen.saga_versions, chosen.saga_version) == ((1, 2), 1)
    unset = Settings.from_env({"SAGA_VERSIONS": "", "SAGA_VERSION": ""})
    assert list(carried(unset)) == [1, 2]
    assert starting_version(unset) == NEWEST == 2
    assert (group_for("g", 1), group_for("g", 2)) == ("g", "g-v2")
    for variable, value in [
        ("SAGA_VERSIONS", "1,,2"),
        ("SAGA_VERSIONS", "0"),
        ("SAGA_VERSION", "1,2"),
    ]:
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: value})
    with pytest.raises(SettingsError, match="SAGA_VERSIONS names saga version 7"):
        carried(Settings(saga_versions=(1, 7)))
    # With the embedded store the starting process runs the transfer: it must carry it.
    with pytest.raises(SettingsError, match="does not carry"):
        starting_version(Settings(saga_versions=(1,), saga_version=2))
