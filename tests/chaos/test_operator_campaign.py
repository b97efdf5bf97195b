"""A short campaign whose faults include an operator's cancels and retries: no invariant breaks.

Real processes (two banks, the promise store, two workers), the campaign's own
runner: cancels strike transfers in flight and ones about to start, retries
strike transfers sleeping between two attempts (or any in flight), among
worker and bank kills, pauses, bank rules, a closed account and a cut link.
Every cancel that took effect must end its transfer failed or compensated
with reason ``cancelled``, every one too late must end committed, and every
action's operator record must be in the store (chaos/checks.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chaos.results import load_params
from chaos.runner import run_campaign
from chaos.schedule import CANCEL, RETRY, CampaignParams

# The client retries a store that is down on purpose; those warnings are expected.
pytestmark = pytest.mark.usefixtures("quiet_sdk_retries")

#: Three cancels (two of transfers about to start, one in flight) and two retries.
PARAMS = CampaignParams(
    seed=8,
    transfers=60,
    faults=16,
    duration=16.0,
    rate=4.0,
    quiesce_timeout=40.0,
    kinds=(
        CANCEL,
        RETRY,
        "kill_worker",
        "kill_source_bank",
        "pause",
        "latency",
        "close_account",
        "fail_before",
        "fail_after",
        "partition_worker_source_bank",
    ),
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cancels_and_retries_among_the_faults_keep_every_invariant(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = asyncio.run(run_campaign(PARAMS, workdir=tmp_path / "run", log=lines.append))
    summary = outcome.summary()
    print(summary)

    assert outcome.violations == [], summary
    assert sorted(outcome.injected_by_kind()) == sorted(PARAMS.fault_kinds), summary
    by_outcome = outcome.by_outcome()
    assert sum(by_outcome.values()) == PARAMS.transfers, summary
    assert set(by_outcome) <= {"committed", "compensated", "failed"}, summary
    assert outcome.operator_took_effect().get(CANCEL, 0) >= 1, summary
    assert not [note for note in outcome.notes if "operator records" in note], summary
    cancelled = [
        run
        for run in outcome.runs.values()
        if run.result is not None and run.result.get("reason") == "cancelled"
    ]
    assert len(cancelled) >= outcome.operator_took_effect()[CANCEL], summary

    results = tmp_path / "results.json"
    outcome.write(results)
    data = json.loads(results.read_text())
    acts = [record["act"] for record in data["schedule"] if record["act"] is not None]
    assert {act["kind"] for act in acts} == {CANCEL, RETRY}
    assert data["outcome"]["operator_actions"] == outcome.operator_actions()
    assert data["violations"] == []
    assert load_params(results) == PARAMS
