"""The plan is a pure function of the seed: a failing campaign can be rerun exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from chaos.schedule import (
    CANCEL,
    CLOCK_KINDS,
    DISK_KINDS,
    FAULT_KINDS,
    IN_FLIGHT,
    KILL_POSTGRES,
    KILL_STORE,
    LINK_KINDS,
    MACHINE,
    NEXT_TO_START,
    OPERATOR_PICKS,
    POSTGRES,
    POWER_CUT,
    RETRY,
    SOURCE_BANK,
    STORE,
    TARGET_BANK,
    WAITING,
    CampaignParams,
    Fault,
    campaign_to_dict,
    default_kinds,
    kinds_for,
    plan,
)
from orchestrator.local.system import BACKENDS


def test_same_seed_gives_the_same_plan() -> None:
    params = CampaignParams(seed=42, transfers=300, faults=40, workers=3, duration=60)
    assert plan(params) == plan(params)


def test_another_seed_gives_another_plan() -> None:
    first = plan(CampaignParams(seed=1, transfers=50, faults=20))
    second = plan(CampaignParams(seed=2, transfers=50, faults=20))
    assert first.transfers != second.transfers
    assert first.faults != second.faults


def test_more_faults_do_not_change_the_workload() -> None:
    few = plan(CampaignParams(seed=7, transfers=80, faults=5))
    many = plan(CampaignParams(seed=7, transfers=80, faults=60))
    assert few.transfers == many.transfers


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_fault_kind_of_the_backend_is_planned_when_there_is_room(backend: str) -> None:
    kinds = default_kinds(backend)
    campaign = plan(CampaignParams(seed=3, faults=len(kinds), backend=backend))
    assert sorted(f.kind for f in campaign.faults) == sorted(kinds)


def test_power_cuts_are_drawn_only_when_named_and_only_where_files_sit_on_the_fs() -> None:
    assert POWER_CUT in kinds_for("store")
    assert POWER_CUT not in default_kinds("store")
    assert POWER_CUT not in kinds_for("postgres")
    unnamed = CampaignParams(seed=5, faults=200)
    assert not unnamed.power_cuts
    assert POWER_CUT not in {f.kind for f in plan(unnamed).faults}
    named = CampaignParams(seed=5, faults=20, kinds=(POWER_CUT, "kill_worker"))
    cuts = [f for f in plan(named).faults if f.kind == POWER_CUT]
    assert named.power_cuts
    assert cuts
    assert all(f.target == MACHINE and 0.1 <= f.duration <= 1.0 for f in cuts)


def test_the_unsynced_bank_control_needs_power_cuts() -> None:
    with pytest.raises(ValueError, match="unsynced_bank is a control for power cuts"):
        CampaignParams(seed=1, unsynced_bank=True)
    assert CampaignParams(seed=1, kinds=(POWER_CUT,), unsynced_bank=True).unsynced_bank


def test_postgres_is_killed_only_on_postgres_and_the_store_only_on_the_store() -> None:
    on_store = plan(CampaignParams(seed=5, faults=200))
    on_postgres = plan(CampaignParams(seed=5, faults=200, backend="postgres"))
    assert {f.kind for f in on_store.faults} == set(default_kinds("store"))
    assert {f.kind for f in on_postgres.faults} == set(default_kinds("postgres"))
    assert set(kinds_for("store")) | set(kinds_for("postgres")) == set(FAULT_KINDS)
    assert KILL_POSTGRES not in kinds_for("store")
    assert KILL_STORE not in kinds_for("postgres")
    for kind in kinds_for("postgres"):
        assert "store" not in kind.split("_")  # no link, disk or clock of a store that is not there
    for kind in kinds_for("store"):
        assert "postgres" not in kind
    assert STORE not in {f.target for f in on_postgres.faults}  # nor paused
    assert {f.target for f in on_postgres.faults if f.kind == KILL_POSTGRES} == {POSTGRES}
    assert on_store.transfers == on_postgres.transfers


def test_a_kind_the_backend_has_not_is_refused() -> None:
    with pytest.raises(ValueError, match="postgres backend"):
        CampaignParams(seed=1, kinds=(KILL_STORE,), backend="postgres")
    with pytest.raises(ValueError, match="store backend"):
        CampaignParams(seed=1, kinds=(KILL_POSTGRES,))
    with pytest.raises(ValueError, match="backend must be one of"):
        CampaignParams(seed=1, backend="sqlite")


def test_the_backend_is_part_of_the_replayable_parameters() -> None:
    params = CampaignParams(seed=9, backend="postgres")
    assert CampaignParams.from_dict(params.to_dict()) == params
    assert plan(CampaignParams.from_dict(params.to_dict())) == plan(params)


def test_faults_are_ordered_and_inside_the_campaign() -> None:
    params = CampaignParams(seed=11, faults=100, duration=20, workers=4)
    faults = plan(params).faults
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    assert all(0 < f.at < params.duration for f in faults)
    assert all(f.duration > 0 for f in faults)
    workers = {f"worker-{i}" for i in range(4)}
    for fault in faults:
        if fault.kind == "kill_worker":
            assert fault.target in workers
        if fault.kind == "close_account":
            assert fault.target.startswith("dst-")
        if fault.kind in {"latency", "fail_before", "fail_after", "drop_after"}:
            assert fault.target in {SOURCE_BANK, TARGET_BANK}
            rule = fault.bank_rule()
            assert rule["action"] == fault.kind
            if fault.target == TARGET_BANK:
                assert rule["kind"] in {"credit", None}
            else:
                assert rule["kind"] in {"debit", "reversal", None}


def test_workload_has_unique_ids_and_some_oversized_transfers() -> None:
    campaign = plan(CampaignParams(seed=5, transfers=400))
    ids = [t.transfer_id for t in campaign.transfers]
    assert len(set(ids)) == len(ids)
    opening = {a.account_id: a.opening_balance for a in campaign.accounts}
    assert all(t.amount > 0 for t in campaign.transfers)
    assert any(t.amount > opening[t.source_account] for t in campaign.transfers)
    assert all(t.source_account.startswith("src-") for t in campaign.transfers)
    assert all(t.target_account.startswith("dst-") for t in campaign.transfers)


def test_plan_survives_a_round_trip_through_json() -> None:
    campaign = plan(CampaignParams(seed=9, faults=30))
    data = json.loads(json.dumps(campaign_to_dict(campaign)))
    params = CampaignParams.from_dict(data["params"])
    assert plan(params) == campaign
    assert tuple(Fault.from_dict(f) for f in data["faults"]) == campaign.faults


@pytest.mark.parametrize(
    ("field", "value"),
    [("workers", 1), ("transfers", 0), ("concurrency", 0), ("faults", -1), ("duration", 0)],
)
def test_bad_parameters_are_refused_with_the_name(field: str, value: int) -> None:
    fields: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        CampaignParams(seed=1, **fields)


def test_a_campaign_can_be_focused_on_some_kinds() -> None:
    kinds = ("latency", "close_account")
    campaign = plan(CampaignParams(seed=4, faults=30, kinds=kinds))
    assert {f.kind for f in campaign.faults} == set(kinds)
    assert CampaignParams.from_dict(campaign.params.to_dict()) == campaign.params


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="kinds"):
        CampaignParams(seed=1, kinds=("meteor",))


def test_every_link_of_every_worker_can_be_cut_each_way() -> None:
    assert set(LINK_KINDS) >= {
        f"{mode}_{link}"
        for mode in ("partition", "oneway", "blackhole", "reset")
        for link in ("worker_store", "client_store", "worker_source_bank", "worker_target_bank")
    }
    faults = plan(CampaignParams(seed=6, faults=400, workers=3, duration=100)).faults
    for fault in faults:
        if fault.kind in LINK_KINDS:
            near = LINK_KINDS[fault.kind].near
            expected = {"client"} if near == "client" else {"worker-0", "worker-1", "worker-2"}
            assert fault.target in expected, fault
    targets = {f.target for f in faults if f.kind.endswith("_worker_store")}
    assert targets == {"worker-0", "worker-1", "worker-2"}


def test_clocks_are_stepped_both_ways_and_disks_filled_on_their_part() -> None:
    faults = plan(CampaignParams(seed=8, faults=300, duration=100)).faults
    steps = [f.clock_step for f in faults if f.kind in CLOCK_KINDS]
    assert min(steps) < 0 < max(steps)
    assert all(f.clock_step == 0 for f in faults if f.kind not in CLOCK_KINDS)
    for fault in faults:
        if fault.kind in DISK_KINDS:
            assert fault.target == DISK_KINDS[fault.kind]


def test_no_fault_starts_in_a_quiet_window() -> None:
    params = CampaignParams(seed=12, faults=200, duration=1000, quiet_period=100)
    faults = plan(params).faults
    assert len(faults) == 200
    assert all(int(f.at // 100) % 2 == 0 for f in faults), [f.at for f in faults]
    busy_windows = {int(f.at // 100) for f in faults}
    assert busy_windows == {0, 2, 4, 6, 8}
    # Without quiet windows the plan is what it always was.
    assert plan(CampaignParams(seed=12, faults=200, duration=1000)).faults != faults


@pytest.mark.parametrize(("field", "value"), [("rate", -1.0), ("quiet_period", -5.0)])
def test_bad_pacing_is_refused_with_the_name(field: str, value: float) -> None:
    fields: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        CampaignParams(seed=1, **fields)


#: Fingerprints of the fault schedules of earlier seeds, as they were before the
#: operator kinds existed: a new kind must not move them (see DRAWN_WHEN_NAMED).
_PINNED_PLANS = [
    (CampaignParams(seed=7, faults=25), "6694ab3a49903e49"),
    (CampaignParams(seed=20261125, faults=40, duration=60.0), "dc86a207f85030ad"),
    (CampaignParams(seed=7, faults=25, backend="postgres"), "bef7a67463c1c969"),
    (
        CampaignParams(
            seed=25, faults=16, duration=90, kinds=(POWER_CUT, "kill_worker", "pause", "fail_after")
        ),
        "10b8fb71205c4737",
    ),
]
_PINNED_FIELDS = (
    "at",
    "kind",
    "target",
    "duration",
    "op_kind",
    "times",
    "latency_ms",
    "clock_step",
)


@pytest.mark.parametrize(("params", "fingerprint"), _PINNED_PLANS)
def test_earlier_seeds_keep_their_plans(params: CampaignParams, fingerprint: str) -> None:
    faults = [[getattr(f, name) for name in _PINNED_FIELDS] for f in plan(params).faults]
    assert hashlib.sha256(json.dumps(faults).encode()).hexdigest()[:16] == fingerprint


def test_operator_actions_are_drawn_only_when_named() -> None:
    for backend in BACKENDS:
        assert {CANCEL, RETRY} <= set(kinds_for(backend))
        assert not {CANCEL, RETRY} & set(default_kinds(backend))
    unnamed = plan(CampaignParams(seed=5, faults=200)).faults
    assert not {CANCEL, RETRY} & {f.kind for f in unnamed}
    assert all(f.pick == 0 for f in unnamed)
    named = plan(CampaignParams(seed=5, faults=60, kinds=(CANCEL, RETRY, "kill_worker"))).faults
    actions = [f for f in named if f.kind in OPERATOR_PICKS]
    assert {f.kind for f in actions} == {CANCEL, RETRY}
    for fault in actions:
        assert fault.target in OPERATOR_PICKS[fault.kind]
        assert 1.0 <= fault.duration <= 8.0
        assert fault.describe().endswith(f"pick={fault.pick}")
    assert {f.target for f in actions if f.kind == CANCEL} == {IN_FLIGHT, NEXT_TO_START}
    assert {f.target for f in actions if f.kind == RETRY} == {WAITING, IN_FLIGHT}
    assert len({f.pick for f in actions}) > 1
    assert all(f.pick == 0 for f in named if f.kind not in OPERATOR_PICKS)


def test_an_operator_fault_survives_a_round_trip_and_old_results_still_load() -> None:
    campaign = plan(CampaignParams(seed=9, faults=20, kinds=(CANCEL, RETRY)))
    data = json.loads(json.dumps(campaign_to_dict(campaign)))
    assert tuple(Fault.from_dict(f) for f in data["faults"]) == campaign.faults
    old = {k: v for k, v in data["faults"][0].items() if k != "pick"}  # written before picks
    assert Fault.from_dict(old).pick == 0
